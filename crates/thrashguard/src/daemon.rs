//! The guard loop: sample -> policy step -> (on a decision) scan, re-check, act.
//!
//! Owns self-protection (mlockall, oom_score_adj -1000, optional SCHED_FIFO), the poll on
//! the PSI trigger and the victim's pidfd, the adaptive sleep, and one log line per
//! decision with its evidence. Every buffer is reserved in [`Guard::new`]; the steady-state
//! iteration ([`Guard::iterate`]) allocates nothing (tests/alloc.rs counts). The path from
//! decision to signal forks nothing and execs nothing. It never decides: the policy does.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use log::{error, info, warn};
use thrashguard_core::config::{Action, Config};
use thrashguard_core::history::{Event, EventAction, Point, Ring, RingSpan, Victim};
use thrashguard_core::lifeline::BodyWriter;
use thrashguard_core::lifeline::wire::{self, Action as LifelineAction};
use thrashguard_core::policy::rank::Candidate;
use thrashguard_core::policy::{Evidence, Phase, Policy, Reason, Rescue, Step};
use thrashguard_core::snapshot::ScopeSample;
use thrashguard_core::units::{Kib, Micros, Pid, ProcId};

use crate::act::{self, Acted};
use crate::cgroups::{self, CgroupScope, MemberBuffers};
use crate::hooks::{self, Notifier};
use crate::lifeline;
use crate::metrics::Metrics;
use crate::numa::{self, NodeScope as NumaNodeScope};
use crate::procdir;
use crate::sample::{Sampler, Wakeup, psi_trigger};
use crate::scan::{Preferences, ScanStats, Scanner};
use crate::systemd::SdNotify;

/// How often calm scopes are re-discovered (new cgroups, removed ones).
const REDISCOVER: Micros = Micros::from_secs(60);
/// While a scope is under pressure, scan processes this often, so that the scan at the
/// decision has fault and growth deltas to weigh.
const PRESCAN: Micros = Micros::from_secs(1);

/// Options from the command line that are not in the config file.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Where /proc is.
    pub proc_root: PathBuf,
    /// Where /sys is (cgroup hierarchies are found through mountinfo, mapped under it).
    pub sys_root: PathBuf,
    /// Override `guard.dry_run`.
    pub dry_run: bool,
    /// Skip mlockall / oom_score_adj / realtime (tests, unprivileged trials).
    pub no_self_protect: bool,
    /// Stop after this long (tests, benchmarks).
    pub duration: Option<Duration>,
}

/// Which pressure scope a decision belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScopeRef {
    /// The whole machine.
    System,
    /// A memory cgroup (index into the watched cgroups).
    Cgroup(usize),
    /// A NUMA node (index into the watched nodes).
    Node(usize),
}

/// What the scopes' steps in one tick add up to.
struct TickSummary {
    /// The soonest next sample any scope asks for.
    next: Micros,
    /// Scopes not calm.
    not_calm: usize,
    /// The first rescue decided, and its scope.
    pending: Option<(Rescue, ScopeRef)>,
}

impl TickSummary {
    /// Step one scope's policy and fold the result in. One rescue per tick: a scope that
    /// decides after another did is told its rescue failed, and retries shortly.
    fn fold(&mut self, policy: &mut Policy, sample: &ScopeSample, scope: ScopeRef) -> Step {
        let st = policy.step(sample);
        self.next = self.next.min(st.next_sample);
        self.not_calm += usize::from(st.phase != Phase::Calm);
        if let Some(r) = st.rescue {
            if self.pending.is_none() {
                self.pending = Some((r, scope));
            } else {
                policy.rescue_failed(sample.at);
            }
        }
        st
    }
}

/// A cgroup scope as logs name it: `v1:/path` or `v2:/path`.
fn scope_label(s: &CgroupScope) -> String {
    format!("{}{}", if s.v2 { "v2:" } else { "v1:" }, s.name)
}

/// Lifeline datagrams handled per wake-up at most (the rest wait for the next one).
const LIFELINE_BATCH: usize = 64;

/// How long a status body is served again instead of scanning /proc anew.
const STATUS_REUSE: Micros = Micros::from_millis(1000);

/// Candidates whose numa_maps a node-scope rescue reads (walking page tables is costly).
const NODE_TOP: usize = 16;

/// Actions whose events wait for their timeline at once; more are dropped (and counted).
const PENDING_EVENTS: usize = 4;

/// While an event waits for its timeline, sample at least this often.
const EVENT_SAMPLING: Micros = Micros::from_secs(1);

/// An action's event, waiting for the `history.after_s` of timeline after it.
#[derive(Debug)]
struct PendingEvent {
    event: Event,
    /// The victim, for the writer to read its command line (off the guard thread).
    victim: ProcId,
    /// When the action was taken (the guard's clock).
    at: Micros,
    /// When its timeline is complete.
    due: Micros,
}

/// The history side of the guard: the timeline ring, the events waiting for their
/// timeline, and the writer thread's queue.
#[derive(Debug)]
struct History {
    ring: Ring,
    pending: [Option<PendingEvent>; PENDING_EVENTS],
    writer: Option<crate::store::Writer>,
    /// Timeline buffers reserved for finished events (the writer hands them back).
    spare: Vec<Vec<Point>>,
    before: Micros,
    after: Micros,
    /// Events dropped: no free slot, or the writer's queue full.
    dropped: u64,
}

impl History {
    fn new(cfg: &Config) -> History {
        let span = RingSpan { min_interval: Micros::from_millis(cfg.policy.min_interval_ms), ..RingSpan::default() };
        History {
            ring: Ring::new(span),
            pending: std::array::from_fn(|_| None),
            writer: None,
            spare: Vec::new(),
            before: Micros::from_secs(u64::from(cfg.history.before_s)),
            after: Micros::from_secs(u64::from(cfg.history.after_s)),
            dropped: 0,
        }
    }

    fn drop_one(&mut self, why: &str) {
        self.dropped += 1;
        if self.dropped == 1 {
            warn!("history: {why}; event dropped (counted, logged only this once; total at exit)");
        }
    }

    /// Remember an action's event (no-op without a writer).
    fn remember(&mut self, event: Event, at: Micros, victim: ProcId) {
        if self.writer.is_none() {
            return;
        }
        match self.pending.iter_mut().find(|p| p.is_none()) {
            Some(slot) => *slot = Some(PendingEvent { event, victim, at, due: Micros(at.0 + self.after.0) }),
            None => self.drop_one(&format!("{PENDING_EVENTS} events already wait for their timeline")),
        }
    }

    /// The soonest event due, if any.
    fn next_due(&self) -> Option<Micros> {
        self.pending.iter().flatten().map(|p| p.due).min()
    }

    /// Hand the events whose timeline is complete at `now` (all of them with `all`) to the
    /// writer, with the ring's window [action - before, now] rebased onto the action.
    fn finish(&mut self, now: Micros, all: bool) {
        for i in 0..PENDING_EVENTS {
            if !self.pending[i].as_ref().is_some_and(|p| all || now >= p.due) {
                continue;
            }
            let Some(PendingEvent { mut event, victim, at, due }) = self.pending[i].take() else { continue };
            let Some(writer) = &self.writer else { return };
            let mut buf = match std::mem::take(&mut event.timeline) {
                kept if kept.capacity() > 0 => kept,
                _ => writer.spare().or_else(|| self.spare.pop()).unwrap_or_default(),
            };
            self.ring.copy_window(at.saturating_sub(self.before), now, &mut buf);
            Event::rebase(&mut buf, at);
            event.timeline = buf;
            if let Err((why, mut event)) = writer.submit(event, Some(victim)) {
                if all && why == crate::store::Refused::Full {
                    // shutting down: keep it for the next try
                    self.pending[i] = Some(PendingEvent { event, victim, at, due });
                    continue;
                }
                self.spare.push(std::mem::take(&mut event.timeline));
                self.drop_one(match why {
                    crate::store::Refused::Full => "the history writer is behind",
                    crate::store::Refused::Gone => "the history writer has stopped",
                });
            }
        }
    }

    /// The victim `pid` of a pending kill exited `ms` after the decision.
    fn exited(&mut self, pid: Pid, ms: f64) {
        if let Some(p) = self.pending.iter_mut().flatten().find(|p| p.event.victim.pid == pid.0 && p.event.exit_after_ms.is_none()) {
            p.event.exit_after_ms = Some(ms);
        }
    }
}

/// The stored form of a victim (the writer adds the command line).
fn victim_of(c: &Candidate) -> Victim {
    Victim {
        pid: c.id.pid.0,
        name: c.comm.to_string_lossy(),
        cmdline: String::new(),
        footprint: c.footprint,
        swap: c.swap,
        oom_score: c.oom_score,
    }
}

/// A rescue in flight: the victim was signalled, its exit not yet seen.
#[derive(Debug)]
struct InFlight {
    pidfd: OwnedFd,
    victim: Candidate,
    /// The scope rescued.
    scope: ScopeRef,
    /// When the sample that triggered the decision was taken.
    decided_at: Micros,
    deadline: Micros,
    /// Killed, and its memory not yet reaped with process_mrelease.
    unreleased: bool,
}

/// The unix socket `thrashguard status` reads from.
#[derive(Debug)]
struct StatusSocket {
    listener: std::os::unix::net::UnixListener,
    path: PathBuf,
}

impl StatusSocket {
    /// Bind `path` (mode 0666: it serves read-only state), creating its directory. `None`,
    /// with a warning, when it cannot (unprivileged, read-only /run) or when another live
    /// guard answers there.
    fn bind(path: &str) -> Option<StatusSocket> {
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::net::{UnixListener, UnixStream};
        if path.is_empty() {
            return None;
        }
        let path = PathBuf::from(path);
        if UnixStream::connect(&path).is_ok() {
            warn!("status socket {}: another guard answers there; `thrashguard status` will read that one", path.display());
            return None;
        }
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        // A socket file left by a guard that died: nobody answered on it above.
        if std::fs::symlink_metadata(&path).is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type())) {
            let _ = std::fs::remove_file(&path);
        }
        let bound = UnixListener::bind(&path).and_then(|l| {
            l.set_nonblocking(true)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
            Ok(l)
        });
        match bound {
            Ok(listener) => Some(StatusSocket { listener, path }),
            Err(e) => {
                warn!("status socket {}: {e}; `thrashguard status` will read /proc instead", path.display());
                None
            }
        }
    }
}

impl Drop for StatusSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Counters for logs and, later, metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Loop iterations.
    pub iterations: u64,
    /// Samples that failed to read or parse.
    pub bad_samples: u64,
    /// Decisions taken.
    pub decisions: u64,
    /// Victims signalled.
    pub actions: u64,
    /// Iterations in which some scope was under pressure (or recovering).
    pub pressure_ticks: u64,
}

/// The guard and everything it reserved.
#[derive(Debug)]
pub struct Guard {
    cfg: Config,
    opts: Options,
    sampler: Sampler,
    policy: Policy,
    scanner: Scanner,
    scopes: Vec<CgroupScope>,
    nodes: Vec<NumaNodeScope>,
    members: Vec<u32>,
    member_bufs: MemberBuffers,
    /// The poll set of [`Guard::wait`], reserved for every trigger and the victim's pidfd.
    poll_set: Vec<libc::pollfd>,
    /// What woke the last [`Guard::wait`]: a PSI trigger, the lifeline socket, the status
    /// socket. The sockets are asked only when readable, so no wake-up pays for a receive
    /// or an accept that finds nothing (an accept4 allocates a socket inode before it can
    /// say EAGAIN).
    ready: Ready,
    /// The lifeline server, when a key is authorized.
    pub lifeline: Option<lifeline::Server>,
    /// Where lifeline reply bodies are rendered.
    reply_body: Box<[u8]>,
    /// The system scope's last evidence and phase (for status).
    last_system: Option<(Evidence, Phase)>,
    /// The last lifeline rescue: when, and its outcome (a retry inside the release wait
    /// gets the same answer, not a second victim).
    last_lifeline_rescue: Option<(Micros, Option<(Candidate, &'static str)>)>,
    /// The last sysrq letter sent through the lifeline, and when.
    last_sysrq: Option<(Micros, u8)>,
    /// Whether swap was in use at the last sample (no status reads without it); true until
    /// the first sample says otherwise.
    swap_in_use: bool,
    /// The cgroup2 mount (under --sys-root), for `victim.whole_cgroup`.
    v2_mount: Option<PathBuf>,
    discovered_at: Micros,
    scanned_at: Option<Micros>,
    mem_total: Kib,
    wakeup: Wakeup,
    in_flight: Option<InFlight>,
    /// A process a lifeline `kill` request killed, its memory not yet reaped.
    killed_unreleased: Option<OwnedFd>,
    /// Prometheus handles, when `metrics.listen` is set.
    metrics: Option<Metrics>,
    /// The queue into the notification thread (`[notify]`), when there is anything to run.
    notifier: Option<Notifier>,
    /// Where `thrashguard status` connects, when bound.
    status: Option<StatusSocket>,
    /// This host's name, for status replies.
    host_name: String,
    /// The last status body served on the socket, its length and when it was made: reused
    /// for a second, so that local clients cannot make the guard scan /proc in a loop.
    status_cache: (Box<[u8]>, usize, Option<Micros>),
    next: Micros,
    /// The timeline ring and the events waiting for their timeline.
    history: History,
    /// What happened so far.
    pub counters: Counters,
    /// The last decision: scope name and victim (for status and tests).
    pub last_decision: Option<(String, Candidate)>,
    last_sample_error: bool,
    /// systemd's notification socket and watchdog (a no-op without systemd).
    sd_notify: SdNotify,
}

impl Guard {
    /// Open the kernel files and reserve all memory the loop needs.
    pub fn new(cfg: Config, opts: Options) -> Result<Guard> {
        let start = Instant::now();
        let sampler = Sampler::open(&opts.proc_root, start)?;
        let wakeup = match &sampler.no_psi {
            Some(why) => Wakeup::Timer { why: why.clone() },
            None => psi_trigger(&opts.proc_root.join("pressure/memory")),
        };
        let prefs = Preferences::new(&cfg.victim.prefer, &cfg.victim.avoid)?;
        let scanner = Scanner::new(&opts.proc_root, cfg.guard.max_processes as usize, Pid(std::process::id()), prefs)?;
        let policy = Policy::new(cfg.policy.clone());
        let members = Vec::with_capacity(cfg.guard.max_processes as usize);
        let poll_set = Vec::with_capacity(4 + cfg.cgroups.max_scopes as usize);
        let history = History::new(&cfg);
        let mut guard = Guard {
            cfg,
            opts,
            sampler,
            policy,
            scanner,
            scopes: Vec::new(),
            nodes: Vec::new(),
            members,
            member_bufs: MemberBuffers::default(),
            poll_set,
            ready: Ready::default(),
            lifeline: None,
            reply_body: vec![0u8; wire::MAX_REPLY_BODY].into_boxed_slice(),
            last_system: None,
            last_lifeline_rescue: None,
            last_sysrq: None,
            swap_in_use: true,
            v2_mount: None,
            discovered_at: Micros::ZERO,
            scanned_at: None,
            mem_total: Kib::ZERO,
            wakeup,
            in_flight: None,
            killed_unreleased: None,
            metrics: None,
            notifier: None,
            status: None,
            host_name: lifeline::hostname(),
            status_cache: (vec![0u8; wire::MAX_REPLY_BODY].into_boxed_slice(), 0, None),
            next: Micros::ZERO,
            history,
            counters: Counters::default(),
            last_decision: None,
            last_sample_error: false,
            sd_notify: SdNotify::default(),
        };
        guard.v2_mount = cgroups::v2_mount(&guard.opts.proc_root, &guard.opts.sys_root);
        guard.lifeline = lifeline::Server::open(&guard.cfg.lifeline)?;
        guard.status = StatusSocket::bind(&guard.cfg.guard.status_socket);
        guard.notifier = Notifier::start(&guard.cfg.notify, &guard.opts.proc_root)?;
        if guard.cfg.metrics.address()?.is_some() {
            guard.metrics = Some(Metrics::new());
        }
        // The system's PSI trigger wakes the guard at the first stall of the machine: of the
        // system scope and of every NUMA node scope (their stall is the machine's).
        let stall_wakeup = matches!(guard.wakeup, Wakeup::Trigger { .. });
        if stall_wakeup {
            guard.policy.set_calm_interval(Some(Micros::from_millis(guard.cfg.policy.max_interval_with_trigger_ms)));
            guard.policy.set_stall_wakeup(true);
        }
        guard.mem_total = guard.sampler.sample().map(|s| s.mem.mem_total).unwrap_or_default();
        guard.discover();
        guard.nodes = numa::discover(&guard.opts.sys_root, &guard.cfg.policy, stall_wakeup);
        if !guard.nodes.is_empty() {
            info!("watching {} NUMA nodes as scopes of their own", guard.nodes.len());
        }
        Ok(guard)
    }

    /// Store an event for every action from now on, through `writer` (started before the
    /// guard goes real-time, so that its thread does not inherit the priority). Reserves
    /// the timeline buffers of the events.
    pub fn attach_history(&mut self, writer: crate::store::Writer) {
        let cap = self.history.ring.capacity();
        self.history.spare = (0..2).map(|_| Vec::with_capacity(cap)).collect();
        self.history.writer = Some(writer);
    }

    /// At shutdown: hand every pending event to the writer with the timeline so far, then
    /// wait (a little) for it to store them. Returns the events dropped over the run.
    pub fn finish_history(&mut self) -> u64 {
        let now = self.sampler.now();
        // the queue may be full: give the writer a moment before dropping
        for _ in 0..200 {
            self.history.finish(now, true);
            if self.history.pending.iter().all(Option::is_none) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for i in 0..PENDING_EVENTS {
            if self.history.pending[i].take().is_some() {
                self.history.drop_one("the history writer is behind at shutdown");
            }
        }
        if let Some(w) = self.history.writer.take()
            && !w.finish(Duration::from_secs(5))
        {
            warn!("history: the writer did not finish within 5 s; events still queued are lost");
        }
        self.history.dropped
    }

    /// Names of the cgroup scopes watched.
    pub fn scope_names(&self) -> Vec<String> {
        self.scopes.iter().map(scope_label).collect()
    }

    /// The scope names with how each one is watched (for the log at start and rediscovery).
    fn describe_scopes(&self) -> String {
        let how = |s: &CgroupScope| match s.psi() {
            (true, true) => " (PSI trigger)",
            (true, false) => " (PSI)",
            _ => " (no PSI: usage and faults)",
        };
        self.scopes.iter().map(|s| scope_label(s) + how(s)).collect::<Vec<_>>().join(", ")
    }

    /// How a scope is named in logs: `system`, the cgroup path, or `node1`.
    pub fn scope_name(&self, scope: ScopeRef) -> String {
        match scope {
            ScopeRef::System => "system".into(),
            ScopeRef::Cgroup(i) => self.scopes.get(i).map_or_else(|| "cgroup?".into(), |s| s.name.clone()),
            ScopeRef::Node(i) => self.nodes.get(i).map_or_else(|| "node?".into(), |n| format!("node{}", n.node)),
        }
    }

    /// (Re)discover memory cgroups with limits, keeping the scopes still there as they are.
    /// Allocates: it runs at start and then only while every scope is calm.
    fn discover(&mut self) {
        self.discovered_at = self.sampler.now();
        if !self.cfg.cgroups.watch || self.cfg.cgroups.max_scopes == 0 || self.mem_total.0 == 0 {
            return;
        }
        let before = self.scope_names();
        let known = std::mem::take(&mut self.scopes);
        let max = self.cfg.cgroups.max_scopes as usize;
        self.scopes = cgroups::discover(&self.opts.proc_root, &self.opts.sys_root, self.mem_total, max, &self.cfg.policy, known);
        if self.scope_names() != before {
            info!("watching {} memory cgroup(s) with limits: {}", self.scopes.len(), self.describe_scopes());
        }
    }

    /// Run the rescue path once without acting (scan, rank, and the kill path up to the
    /// signal on the guard itself), so that under MCL_ONFAULT its code and buffers are
    /// resident before they are needed.
    pub fn warm_up(&mut self) {
        self.scanner.scan(None);
        let _ = self.scanner.pick(self.cfg.victim.rank_by);
        if self.opts.proc_root == Path::new("/proc") {
            let _ = act::rehearse(self.scanner.proc_dir().as_fd());
        }
        self.scanned_at = Some(self.sampler.now());
    }

    fn policy_mut(&mut self, scope: ScopeRef) -> &mut Policy {
        match scope {
            ScopeRef::Cgroup(i) if i < self.scopes.len() => &mut self.scopes[i].policy,
            ScopeRef::Node(i) if i < self.nodes.len() => &mut self.nodes[i].policy,
            _ => &mut self.policy,
        }
    }

    /// Other memory-pressure daemons running now, by process name (from the last scan).
    pub fn other_guards(&self) -> Vec<String> {
        const OTHERS: [&str; 3] = ["earlyoom", "systemd-oomd", "nohang"];
        let mut found: Vec<String> = self
            .scanner
            .candidates()
            .iter()
            .filter(|c| !c.kernel_thread && c.id.pid.0 != std::process::id())
            .map(|c| c.comm.to_string_lossy())
            .filter(|n| OTHERS.contains(&n.as_str()))
            .collect();
        found.sort();
        found.dedup();
        found
    }

    /// Whether PSI is in use, and how the loop wakes up.
    pub fn describe(&self) -> String {
        match (&self.sampler.no_psi, &self.wakeup) {
            (Some(why), _) => format!("no PSI ({why}): deciding from meminfo/vmstat signals only"),
            (None, Wakeup::Trigger { spec, .. }) => format!("PSI trigger `{spec}` on pressure/memory"),
            (None, Wakeup::Timer { why }) => format!("PSI without trigger ({why}): sampling on the timer"),
        }
    }

    /// Run until `stop` is set (SIGTERM/SIGINT) or the duration ends.
    pub fn run(&mut self, stop: &AtomicBool) {
        let end = self.opts.duration.map(|d| self.sampler.now().0 + d.as_micros() as u64);
        while !stop.load(Ordering::Relaxed) && end.is_none_or(|e| self.sampler.now().0 < e) {
            self.iterate();
        }
    }

    /// One pass: wait for a trigger, the victim's exit or the interval; then [`Guard::tick`],
    /// then the watchdog ping: from this loop itself, so a guard stuck anywhere in it stops
    /// pinging and systemd restarts it.
    pub fn iterate(&mut self) {
        self.wait();
        if self.ready.lifeline {
            self.serve_lifeline();
        }
        if self.ready.status {
            self.serve_status();
        }
        self.tick();
        self.ping_systemd();
    }

    /// Hand the guard systemd's notification socket (`thrashguard daemon` only).
    pub fn set_sd_notify(&mut self, sd_notify: SdNotify) {
        self.sd_notify = sd_notify;
    }

    /// WATCHDOG=1 when due, and STATUS= with the system scope's phase when it changed.
    /// Allocates nothing.
    fn ping_systemd(&mut self) {
        if !self.sd_notify.enabled() {
            return;
        }
        self.sd_notify.tick(self.sampler.now());
        let phase = self.last_system.map_or(Phase::Calm, |(_, p)| p).as_str();
        let (decisions, actions) = (self.counters.decisions, self.counters.actions);
        self.sd_notify.status(format_args!("guarding; phase {phase}; {decisions} decisions, {actions} actions"));
    }

    /// Answer the lifeline datagrams waiting, at most [`LIFELINE_BATCH`] per wake-up so that
    /// a flood cannot starve the guard's own sampling.
    pub fn serve_lifeline(&mut self) {
        let Some(mut server) = self.lifeline.take() else { return };
        for _ in 0..LIFELINE_BATCH {
            let t0 = Instant::now();
            match server.receive() {
                lifeline::Received::Nothing => break,
                lifeline::Received::Refused => {}
                lifeline::Received::Request(req, from) => {
                    let mut body = std::mem::take(&mut self.reply_body);
                    let (len, result) = self.lifeline_act(req.action, &server.host_name, &mut body);
                    server.send_reply(&req, from, &body[..len]);
                    lifeline::log_request(&server, &req, from, result, t0.elapsed());
                    // The reply is out: now reap what the request killed.
                    self.release_killed();
                    self.reply_body = body;
                }
            }
        }
        if let Some(m) = &mut self.metrics {
            m.lifeline(&server.counters);
        }
        self.lifeline = Some(server);
    }

    /// Answer the `thrashguard status` clients waiting (at most [`LIFELINE_BATCH`]): the
    /// lifeline's status body, written once without blocking, then the connection closed.
    pub fn serve_status(&mut self) {
        let Some(status) = self.status.take() else { return };
        for _ in 0..LIFELINE_BATCH {
            let Ok((mut stream, _)) = status.listener.accept() else { break };
            let now = self.sampler.now();
            let (mut body, mut len, at) = std::mem::take(&mut self.status_cache);
            let fresh = at.filter(|t| now.saturating_sub(*t) < STATUS_REUSE);
            if fresh.is_none() {
                let host = std::mem::take(&mut self.host_name);
                let mut w = BodyWriter::new(&mut body);
                let _ = self.write_status(&mut w, &host);
                len = w.written().len();
                self.host_name = host;
            }
            // A client too slow to take a few KiB at once gets nothing: the guard never waits.
            let _ = stream.set_nonblocking(true);
            let _ = std::io::Write::write(&mut stream, &body[..len]);
            self.status_cache = (body, len, Some(fresh.unwrap_or(now)));
        }
        self.status = Some(status);
    }

    /// Carry out one lifeline request; render the reply body into `body`. Returns its length
    /// and a short result for the log.
    fn lifeline_act(&mut self, action: LifelineAction, host: &str, body: &mut [u8]) -> (usize, &'static str) {
        use std::fmt::Write;
        let mut w = BodyWriter::new(body);
        let result = match action {
            LifelineAction::Status => {
                let _ = self.write_status(&mut w, host);
                "status sent"
            }
            // A client retries when a reply is lost: a second rescue inside the release wait
            // answers with the first one's outcome instead of taking a second victim, even
            // while that first victim is still exiting.
            LifelineAction::Rescue
                if self.in_flight.is_some() && self.last_lifeline_rescue.is_none_or(|(at, _)| !self.is_retry(at, self.sampler.now())) =>
            {
                let _ = write!(w, "{{\"ok\":false,\"action\":\"rescue\",\"error\":\"a rescue is already in flight\"}}");
                "rescue already in flight"
            }
            LifelineAction::Rescue => {
                let now = self.sampler.now();
                let recent = self.last_lifeline_rescue.filter(|(at, _)| self.is_retry(*at, now));
                let (outcome, repeat) = match recent {
                    Some((_, outcome)) => (outcome, true),
                    None => {
                        self.counters.decisions += 1;
                        if let Some(m) = &self.metrics {
                            m.decision(Reason::Lifeline);
                        }
                        let swap_in_use = self.swap_in_use;
                        let evidence = self.last_system.map(|(e, _)| e).unwrap_or_default();
                        let outcome = self.rescue(Rescue { reason: Reason::Lifeline, evidence }, ScopeRef::System, swap_in_use);
                        self.last_lifeline_rescue = Some((now, outcome));
                        (outcome, false)
                    }
                };
                let _ = match outcome {
                    Some((victim, what)) => {
                        let _ = write!(
                            w,
                            "{{\"ok\":{},\"action\":\"rescue\",\"repeat\":{repeat},\"result\":\"{what}\",\"pid\":{},\"name\":",
                            what != "failed",
                            victim.id.pid
                        );
                        let _ = w.json_str(&victim.comm.to_string_lossy());
                        write!(w, ",\"footprint_kib\":{}}}", victim.footprint.0)
                    }
                    None => write!(w, "{{\"ok\":false,\"action\":\"rescue\",\"repeat\":{repeat},\"error\":\"no eligible victim\"}}"),
                };
                if repeat { "repeat of the last rescue" } else { "rescue" }
            }
            LifelineAction::Kill { pid, start_time } | LifelineAction::Freeze { pid, start_time } => {
                let kill = matches!(action, LifelineAction::Kill { .. });
                let name = action.name();
                match self.lifeline_target(Pid(pid), start_time) {
                    Err(why) => {
                        let _ = write!(w, "{{\"ok\":false,\"action\":\"{name}\",\"pid\":{pid},\"error\":\"{why}\"}}");
                        why
                    }
                    Ok((id, victim)) => {
                        let dir = self.scanner.proc_dir().as_fd();
                        let who = self.notifier.as_ref().map(|_| hooks::victim_of(dir, id, self.scanner.candidates()));
                        let r = if kill { act::kill(dir, id, Duration::ZERO) } else { act::freeze(dir, id) };
                        if let (Some(n), Some(who)) = (&self.notifier, who) {
                            let asked = Rescue { reason: Reason::Lifeline, evidence: self.last_system.map(|(e, _)| e).unwrap_or_default() };
                            n.send(hooks::record(&asked, who, "system", if kill { Action::Kill } else { Action::Freeze }, false, Some(&r)));
                        }
                        let what = match r {
                            Ok(Acted::Signalled { pidfd, killed }) => {
                                self.counters.actions += 1;
                                if let Some(m) = &self.metrics {
                                    m.action(if kill { Action::Kill } else { Action::Freeze }, Reason::Lifeline);
                                }
                                if killed {
                                    self.killed_unreleased = Some(pidfd);
                                }
                                if kill { "killed" } else { "frozen" }
                            }
                            Ok(Acted::Gone) => "gone",
                            Ok(Acted::Reused) => "pid reused: nothing sent",
                            Err(_) => "failed",
                        };
                        let evidence = self.last_system.map(|(e, _)| e).unwrap_or_default();
                        let acted = if kill { EventAction::Kill } else { EventAction::Freeze };
                        let now = self.sampler.now();
                        self.record("system".into(), &Rescue { reason: Reason::Lifeline, evidence }, (id, victim), acted, what, now);
                        let ok = what == "killed" || what == "frozen";
                        let _ = write!(w, "{{\"ok\":{ok},\"action\":\"{name}\",\"pid\":{pid},\"result\":\"{what}\"}}");
                        what
                    }
                }
            }
            LifelineAction::Thaw { pid } => {
                let dir = self.scanner.proc_dir().as_fd();
                let what = match act::identify(dir, Pid(pid)).map(|id| act::thaw(dir, id)) {
                    Some(Ok(Acted::Signalled { .. })) => "resumed",
                    None | Some(Ok(Acted::Gone)) => "no such process",
                    _ => "failed",
                };
                let _ = write!(w, "{{\"ok\":{},\"action\":\"thaw\",\"pid\":{pid},\"result\":\"{what}\"}}", what == "resumed");
                what
            }
            LifelineAction::Sysrq(letter) => {
                // the same letter again within the release wait is a retry, not a new request
                let now = self.sampler.now();
                let repeat = self.last_sysrq.is_some_and(|(at, l)| l == letter && self.is_retry(at, now));
                let done = if repeat {
                    Ok(())
                } else {
                    self.last_sysrq = Some((now, letter));
                    let path = self.opts.proc_root.join("sysrq-trigger");
                    std::fs::OpenOptions::new().write(true).open(path).and_then(|mut f| std::io::Write::write_all(&mut f, &[letter]))
                };
                let what = match (&done, repeat) {
                    (_, true) => "already sent",
                    (Ok(()), false) => "sent",
                    (Err(_), false) => "failed",
                };
                let _ =
                    write!(w, "{{\"ok\":{},\"action\":\"sysrq\",\"letter\":\"{}\",\"result\":\"{what}\"}}", done.is_ok(), letter as char);
                what
            }
        };
        (w.written().len(), result)
    }

    /// Whether a lifeline request at `now` repeats one acted on at `at`: inside the release
    /// wait, a client retrying after a lost reply, not a new request.
    fn is_retry(&self, at: Micros, now: Micros) -> bool {
        now.saturating_sub(at) < Micros::from_millis(self.cfg.policy.release_wait_ms)
    }

    /// A process a lifeline request may act on: it exists, is the one named (start time),
    /// and is not PID 1, a kernel thread or the guard itself.
    /// Returns it with what the history stores of it (footprint from the last scan when it
    /// was in it, else its RSS).
    fn lifeline_target(&mut self, pid: Pid, start_time: Option<u64>) -> Result<(ProcId, Victim), &'static str> {
        let mut buf = [0u8; 1024];
        let text = procdir::read_pid_file(self.scanner.proc_dir().as_fd(), pid, "stat", &mut buf).map_err(|_| "no such process")?;
        let st = thrashguard_core::parse::pid::parse_stat(text).map_err(|_| "unreadable stat")?;
        if pid.0 == 1 || pid.0 == std::process::id() || st.is_kernel_thread() {
            return Err("refused: PID 1, a kernel thread or thrashguard itself");
        }
        if start_time.is_some_and(|s| s != st.start_time) {
            return Err("not the same process (start time differs)");
        }
        let id = ProcId { pid, start_time: st.start_time };
        let scanned = self.scanner.candidates().iter().find(|c| c.id == id);
        let victim = match scanned {
            Some(c) => victim_of(c),
            None => Victim {
                pid: pid.0,
                name: st.comm.to_string_lossy(),
                footprint: Kib::from_pages(st.rss, rustix::param::page_size() as u64),
                ..Victim::default()
            },
        };
        Ok((id, victim))
    }

    /// The `status` reply: pressure, headroom, the policy's phase, the top 5 processes by
    /// footprint (from a fresh scan), the last action.
    fn write_status(&mut self, w: &mut BodyWriter<'_>, host: &str) -> std::fmt::Result {
        use std::fmt::Write;
        self.timed_scan(self.swap_in_use);
        self.scanned_at = Some(self.sampler.now());
        let (e, phase) = self.last_system.unwrap_or((Evidence::default(), Phase::Calm));
        w.write_str("{\"ok\":true,\"action\":\"status\",\"host\":")?;
        w.json_str(host)?;
        let phase = phase.as_str();
        write!(
            w,
            ",\"phase\":\"{phase}\",\"psi\":{},\"full_stall_pct\":{},\"some_stall_pct\":{},\"available_kib\":{},\"total_kib\":{},\"headroom_kib\":{},\"swap_total_kib\":{},\"decisions\":{},\"actions\":{},\"top\":[",
            e.psi,
            JsonPct(e.full),
            JsonPct(e.some),
            e.available.0,
            e.total.0,
            e.headroom.0,
            e.swap_total.0,
            self.counters.decisions,
            self.counters.actions
        )?;
        let cands = self.scanner.candidates();
        let mut top: [Option<usize>; 5] = [None; 5];
        for (i, c) in cands.iter().enumerate() {
            if c.kernel_thread || c.exiting {
                continue;
            }
            let mut slot = Some(i);
            for t in top.iter_mut() {
                match (*t, slot) {
                    (None, _) => {
                        *t = slot;
                        break;
                    }
                    (Some(j), Some(k)) if cands[k].footprint > cands[j].footprint => {
                        *t = Some(k);
                        slot = Some(j);
                    }
                    _ => {}
                }
            }
        }
        for (n, i) in top.iter().flatten().enumerate() {
            let c = &cands[*i];
            write!(w, "{}{{\"pid\":{},\"name\":", if n > 0 { "," } else { "" }, c.id.pid)?;
            w.json_str(&c.comm.to_string_lossy())?;
            write!(w, ",\"rss_kib\":{},\"swap_kib\":{}}}", c.footprint.0.saturating_sub(c.swap.0), c.swap.0)?;
        }
        w.write_str("],\"last_action\":")?;
        match &self.last_decision {
            Some((scope, v)) => {
                write!(w, "{{\"pid\":{},\"name\":", v.id.pid)?;
                w.json_str(&v.comm.to_string_lossy())?;
                w.write_str(",\"scope\":")?;
                w.json_str(scope)?;
                w.write_str("}")?;
            }
            None => w.write_str("null")?,
        }
        w.write_str("}")
    }

    /// Everything after the wait: notice the victim's exit, sample every scope, decide, act.
    /// In steady state (no decision) this allocates nothing.
    pub fn tick(&mut self) {
        self.counters.iterations += 1;
        self.reap_in_flight();
        let snap = match self.sampler.sample() {
            Ok(s) => s,
            Err(e) => {
                self.counters.bad_samples += 1;
                if let Some(m) = &self.metrics {
                    m.bad_sample();
                }
                if !self.last_sample_error {
                    error!("cannot sample: {e}; retrying every {} ms", self.cfg.policy.min_interval_ms);
                }
                self.last_sample_error = true;
                self.next = Micros::from_millis(self.cfg.policy.min_interval_ms);
                return;
            }
        };
        self.last_sample_error = false;
        self.mem_total = snap.mem.mem_total;
        let swap_in_use = snap.mem.swap_total > snap.mem.swap_free;
        self.swap_in_use = swap_in_use;
        let mut tick = TickSummary { next: Micros(u64::MAX), not_calm: 0, pending: None };
        let system = tick.fold(&mut self.policy, &snap.scope_sample(), ScopeRef::System);
        self.last_system = Some((system.evidence, system.phase));
        self.history.ring.push(Point::from_evidence(&system.evidence, system.phase));
        let global_swap = (snap.mem.swap_total, snap.mem.swap_free);
        for (i, scope) in self.scopes.iter_mut().enumerate() {
            if let Some(sample) = scope.sample(snap.at, global_swap) {
                let _ = tick.fold(&mut scope.policy, &sample, ScopeRef::Cgroup(i));
            }
        }
        for (i, node) in self.nodes.iter_mut().enumerate() {
            if let Some(sample) = node.sample(&snap) {
                let _ = tick.fold(&mut node.policy, &sample, ScopeRef::Node(i));
            }
        }
        let TickSummary { next, not_calm, pending } = tick;
        let calm = not_calm == 0;
        if let Some(m) = &self.metrics {
            m.tick(&system.evidence, system.phase, not_calm);
        }
        // A trigger woke us: stalls have started. The policy may still call it calm (its
        // trailing second reaches back to a reading taken before them); look again soon.
        self.next =
            if std::mem::take(&mut self.ready.stall) { next.min(Micros::from_millis(self.cfg.policy.min_interval_ms)) } else { next };
        if !calm {
            self.counters.pressure_ticks += 1;
        }
        if let Some((rescue, scope)) = pending {
            self.counters.decisions += 1;
            if let Some(m) = &self.metrics {
                m.decision(rescue.reason);
            }
            if self.in_flight.is_some() {
                self.policy_mut(scope).rescue_failed(snap.at);
            } else {
                let _ = self.rescue(rescue, scope, swap_in_use);
                self.release_killed();
            }
        } else if !calm && self.in_flight.is_none() && self.scanned_at.is_none_or(|t| snap.at.saturating_sub(t) >= PRESCAN) {
            // Pressure is building: scan now so the decision's scan has deltas to weigh.
            self.timed_scan(swap_in_use);
            self.scanned_at = Some(snap.at);
        } else if calm && self.in_flight.is_none() && snap.at.saturating_sub(self.discovered_at) >= REDISCOVER {
            self.discover();
        }
        // events whose timeline is complete go to the writer; while one waits, sample often
        // enough to draw the time after its action
        self.history.finish(snap.at, false);
        if let Some(due) = self.history.next_due() {
            let until = due.saturating_sub(snap.at).max(Micros::from_millis(self.cfg.policy.min_interval_ms));
            self.next = self.next.min(until).min(EVENT_SAMPLING);
        }
    }

    fn wait(&mut self) {
        // Wake at least every half watchdog interval, so the pings keep up while calm.
        let timeout = Duration::from_micros(self.next.0).min(self.sd_notify.max_wait().unwrap_or(Duration::MAX));
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // Every armed trigger (system, cgroup v2 scopes) and the victim's pidfd, in the
        // set reserved at start: poll(2) on raw fds, so nothing is borrowed across ticks.
        let set = &mut self.poll_set;
        set.clear();
        let mut add = |fd: BorrowedFd<'_>, events: i16| {
            if set.len() < set.capacity() {
                set.push(libc::pollfd { fd: fd.as_raw_fd(), events, revents: 0 });
            }
        };
        if let Wakeup::Trigger { file, .. } = &self.wakeup {
            add(file.as_fd(), libc::POLLPRI);
        }
        if let Some(f) = &self.in_flight {
            add(f.pidfd.as_fd(), libc::POLLIN);
        }
        for fd in self.scopes.iter().filter_map(CgroupScope::trigger) {
            add(fd, libc::POLLPRI);
        }
        if let Some(l) = &self.lifeline {
            add(l.fd(), libc::POLLIN);
        }
        if let Some(s) = &self.status {
            add(s.listener.as_fd(), libc::POLLIN);
        }
        // SAFETY: `set` holds `set.len()` initialised pollfds whose fds belong to files
        // owned by `self`, which outlive the call; poll only writes `revents`. EINTR (a
        // signal) just ends the wait early.
        let _ = unsafe { libc::poll(set.as_mut_ptr(), set.len() as libc::nfds_t, ms) };
        let readable = |fd: Option<BorrowedFd<'_>>| {
            fd.is_some_and(|fd| {
                set.iter().any(|p| p.fd == fd.as_raw_fd() && p.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0)
            })
        };
        self.ready = Ready {
            stall: set.iter().any(|p| p.events == libc::POLLPRI && p.revents & (libc::POLLPRI | libc::POLLERR) != 0),
            lifeline: readable(self.lifeline.as_ref().map(|l| l.fd())),
            status: readable(self.status.as_ref().map(|s| s.listener.as_fd())),
        };
    }

    /// Scan every process of /proc, timing it for the metrics.
    fn timed_scan(&mut self, swap_in_use: bool) -> ScanStats {
        timed_scan(&mut self.scanner, self.metrics.as_ref(), None, swap_in_use)
    }

    /// Reap the memory of what was just killed (process_mrelease), once whoever asked has
    /// been answered: it returns only when the address space is torn down.
    fn release_killed(&mut self) {
        if let Some(pidfd) = self.killed_unreleased.take()
            && act::release(pidfd.as_fd())
        {
            info!("process_mrelease reaped the memory of the process the lifeline killed");
        }
        if let Some(f) = self.in_flight.as_mut().filter(|f| f.unreleased) {
            f.unreleased = false;
            let t0 = Instant::now();
            if act::release(f.pidfd.as_fd()) {
                info!("process_mrelease reaped {}'s memory in {:.0} ms", f.victim.id.pid, t0.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }

    /// Notice the victim's exit (or give up waiting) and re-arm the policy.
    fn reap_in_flight(&mut self) {
        let Some(f) = &self.in_flight else { return };
        let now = self.sampler.now();
        let exited = act::wait_exit(f.pidfd.as_fd(), Duration::ZERO);
        if exited || now >= f.deadline {
            if exited {
                let ms = now.saturating_sub(f.decided_at).0 as f64 / 1000.0;
                info!("victim {} ({}) exited {ms:.0} ms after the sample that triggered the rescue", f.victim.id.pid, f.victim.comm);
                let pid = f.victim.id.pid;
                self.history.exited(pid, ms);
            } else {
                warn!(
                    "victim {} ({}) has not exited after {} ms; re-arming",
                    f.victim.id.pid, f.victim.comm, self.cfg.policy.release_wait_ms
                );
            }
            let scope = f.scope;
            self.in_flight = None;
            self.policy_mut(scope).rescue_finished(now);
        }
    }

    /// Scan the scope, pick the victim, re-check, act. Returns the victim and what became of
    /// it (`None`: no eligible victim).
    fn rescue(&mut self, rescue: Rescue, scope: ScopeRef, swap_in_use: bool) -> Option<(Candidate, &'static str)> {
        let t0 = Instant::now();
        let members = match scope {
            ScopeRef::Cgroup(i) if i < self.scopes.len() => {
                self.scopes[i].members(&mut self.member_bufs, &mut self.members);
                Some(self.members.as_slice())
            }
            _ => None,
        };
        let stats = timed_scan(&mut self.scanner, self.metrics.as_ref(), members, swap_in_use);
        self.scanned_at = Some(self.sampler.now());
        if let ScopeRef::Node(i) = scope
            && let Some(n) = self.nodes.get(i)
        {
            self.scanner.weigh_by_node(n.node, NODE_TOP);
        }
        let victim = self.scanner.pick(self.cfg.victim.rank_by);
        let scan_ms = t0.elapsed().as_secs_f64() * 1000.0;
        let scope_name = self.scope_name(scope);
        let Some(victim) = victim else {
            warn!(
                "{scope_name}: {rescue}; but no eligible victim among {} processes ({} vanished, {} unreadable)",
                stats.recorded, stats.gone, stats.unreadable
            );
            let now = self.sampler.now();
            self.policy_mut(scope).rescue_failed(now);
            return None;
        };
        // Re-check before acting: a spike may have freed itself while we scanned. (An
        // operator's lifeline request is acted on as asked.)
        if rescue.reason != Reason::Lifeline
            && let Some(pct) = self.available_pct(scope)
            && pct > self.cfg.policy.available_below_pct
        {
            info!("{scope_name}: {rescue}; pressure resolved while scanning (available {pct:.1}%), nothing done");
            let now = self.sampler.now();
            self.policy_mut(scope).rescue_finished(now);
            return Some((victim, "pressure resolved: nothing done"));
        }
        let action = self.cfg.guard.action;
        let dry = self.opts.dry_run || self.cfg.guard.dry_run;
        let whole = if dry { None } else { self.whole_cgroup_of(victim.id.pid) };
        let outcome = if dry {
            None
        } else {
            let dir = self.scanner.proc_dir().as_fd();
            Some(match (action, &whole) {
                (Action::Kill, Some(cg)) => act::kill_cgroup(dir, victim.id, cg),
                (Action::Freeze, Some(cg)) => act::freeze_cgroup(dir, victim.id, cg, true),
                (Action::Kill, None) => act::kill(dir, victim.id, Duration::from_millis(self.cfg.guard.sigterm_grace_ms)),
                (Action::Freeze, None) => act::freeze(dir, victim.id),
            })
        };
        let now = self.sampler.now();
        let verb = if dry { "would" } else { "did" };
        log_decision(&rescue, &victim, action, verb, scan_ms, stats.recorded, &scope_name);
        let acted = if action == Action::Freeze { EventAction::Freeze } else { EventAction::Kill };
        let (event_action, what) = match &outcome {
            None => (EventAction::DryRun, "dry run"),
            Some(Ok(Acted::Signalled { .. })) => (acted, if action == Action::Freeze { "frozen" } else { "killed" }),
            Some(Ok(Acted::Gone)) => (acted, "gone"),
            Some(Ok(Acted::Reused)) => (acted, "pid reused: nothing sent"),
            Some(Err(_)) => (acted, "failed"),
        };
        self.record(scope_name.clone(), &rescue, (victim.id, victim_of(&victim)), event_action, what, now);
        if let Some(n) = &self.notifier {
            n.send(hooks::record(&rescue, (&victim).into(), &scope_name, action, whole.is_some(), outcome.as_ref()));
        }
        self.last_decision = Some((scope_name, victim));
        match outcome {
            None => {
                self.policy_mut(scope).rescue_finished(now);
                Some((victim, "dry run: nothing done"))
            }
            Some(Ok(Acted::Signalled { pidfd, killed })) => {
                self.counters.actions += 1;
                if let Some(m) = &self.metrics {
                    m.action(action, rescue.reason);
                }
                if action == Action::Freeze {
                    info!("froze {} ({}); resume with `thrashguard thaw {}`", victim.id.pid, victim.comm, victim.id.pid);
                    self.policy_mut(scope).rescue_finished(now);
                } else {
                    let deadline = Micros(now.0 + self.cfg.policy.release_wait_ms * 1000);
                    self.in_flight = Some(InFlight { pidfd, victim, scope, decided_at: rescue.evidence.at, deadline, unreleased: killed });
                }
                Some((victim, if action == Action::Freeze { "frozen" } else { "killed" }))
            }
            Some(Ok(Acted::Gone)) => {
                info!("victim {} ({}) exited by itself before the signal", victim.id.pid, victim.comm);
                self.policy_mut(scope).rescue_finished(now);
                Some((victim, "gone"))
            }
            Some(Ok(Acted::Reused)) => {
                warn!("pid {} was reused before the signal; nothing sent, retrying", victim.id.pid);
                self.policy_mut(scope).rescue_failed(now);
                Some((victim, "failed"))
            }
            Some(Err(e)) => {
                error!("cannot {} {} ({}): {e}", action.as_str(), victim.id.pid, victim.comm);
                self.policy_mut(scope).rescue_failed(now);
                Some((victim, "failed"))
            }
        }
    }

    /// Remember an action for the history (its event is stored once `history.after_s` of
    /// timeline has followed it).
    fn record(&mut self, scope: String, rescue: &Rescue, (id, victim): (ProcId, Victim), action: EventAction, outcome: &str, at: Micros) {
        if self.history.writer.is_none() {
            return;
        }
        let event = Event {
            id: None,
            unix_ms: crate::store::unix_ms_now(),
            host: self.host_name.clone(),
            scope,
            action,
            reason: rescue.reason,
            outcome: outcome.into(),
            victim,
            evidence: rescue.evidence,
            exit_after_ms: None,
            timeline: Vec::new(),
        };
        self.history.remember(event, at, id);
    }

    /// With `victim.whole_cgroup`, the victim's cgroup v2 directory (never the root); the
    /// process alone otherwise, or when it has none.
    fn whole_cgroup_of(&self, pid: Pid) -> Option<PathBuf> {
        if !self.cfg.victim.whole_cgroup {
            return None;
        }
        let dir = self.v2_mount.as_deref().and_then(|m| act::cgroup_v2_dir(&self.opts.proc_root, pid, m));
        if dir.is_none() {
            warn!("victim.whole_cgroup: {pid} is in no cgroup v2 below the root; acting on the process alone");
        }
        dir
    }

    /// Available memory of a scope now, as a percentage of its total.
    fn available_pct(&mut self, scope: ScopeRef) -> Option<f64> {
        let snap = self.sampler.sample().ok()?;
        let s = match scope {
            ScopeRef::System => snap.scope_sample(),
            ScopeRef::Cgroup(i) => self.scopes.get_mut(i)?.sample(snap.at, (snap.mem.swap_total, snap.mem.swap_free))?,
            ScopeRef::Node(i) => self.nodes.get_mut(i)?.sample(&snap)?,
        };
        Some(s.available.pct_of(s.total))
    }
}

/// Scan `members` (or every process of /proc), timing it for the metrics. A function of
/// the fields it needs, so a caller can pass members borrowed from the guard.
fn timed_scan(scanner: &mut Scanner, metrics: Option<&Metrics>, members: Option<&[u32]>, swap_in_use: bool) -> ScanStats {
    let t = Instant::now();
    let stats = scanner.scan_with(members, swap_in_use);
    if let Some(m) = metrics {
        m.scan(t.elapsed());
    }
    stats
}

fn log_decision(rescue: &Rescue, victim: &Candidate, action: Action, verb: &str, scan_ms: f64, scanned: u32, scope: &str) {
    let e = &rescue.evidence;
    let line = serde_json::json!({
        "event": "decision",
        "scope": scope,
        "t_s": e.at.as_secs_f64(),
        "action": action.as_str(),
        "dry_run": verb == "would",
        "reason": rescue.reason.as_str(),
        "full_stall_pct": e.full.map(|f| f * 100.0),
        "full_stall_mean_pct": e.full_mean.map(|m| m * 100.0),
        "episode_ms": e.episode.as_millis(),
        "available_kib": e.available.0,
        "headroom_kib": e.headroom.0,
        "headroom_trend_kib_s": e.headroom_trend_kib_s,
        "exhaustion_in_ms": e.exhaustion_in.map(|t| t.as_millis()),
        "refaults_anon_per_s": e.anon_refaults_per_s,
        "refaults_file_per_s": e.file_refaults_per_s,
        "majfaults_per_s": e.majfaults_per_s,
        "victim_pid": victim.id.pid.0,
        "victim_name": victim.comm.to_string(),
        "victim_footprint_kib": victim.footprint.0,
        "victim_swap_kib": victim.swap.0,
        "scan_ms": scan_ms,
        "scanned": scanned,
        "text": format!("{scope}: {verb} {} {} ({}, {} MiB): {rescue}", action.as_str(), victim.id.pid, victim.comm, victim.footprint.mib()),
    });
    // Text mode prints the sentence; JSON mode the whole object.
    if log::max_level() >= log::LevelFilter::Warn {
        log::warn!(target: "decision", "{}", if crate::logging::json_enabled() { line.to_string() } else { line["text"].as_str().unwrap_or_default().to_string() });
    }
}

/// Lock memory, protect from the OOM killer, optionally go real-time. Returns what could
/// not be done, for one warning at start.
pub fn protect_self(cfg: &Config) -> Vec<String> {
    // Always the real /proc: this is about this process, never a captured tree.
    let proc_root = Path::new("/proc");
    let mut missing = Vec::new();
    if cfg.guard.lock_memory
        && let Err(why) = lock_memory(proc_root)
    {
        missing.push(format!("lock memory ({why}): the guard may be swapped out under pressure"));
    }
    if let Err(e) = std::fs::write(proc_root.join("self/oom_score_adj"), b"-1000") {
        missing.push(format!("protect itself from the OOM killer (oom_score_adj -1000: {e})"));
    }
    if cfg.guard.realtime {
        let param = libc::sched_param { sched_priority: 1 };
        // SAFETY: sched_setscheduler(0, ...) affects only the calling thread; `param` is a
        // valid, initialised struct that outlives the call.
        let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
        if rc != 0 {
            missing.push(format!("run at real-time priority ({})", std::io::Error::last_os_error()));
        }
    }
    if !rustix::process::geteuid().is_root() {
        missing.push("signal other users' processes (not root; needs CAP_KILL)".into());
    }
    missing
}

/// What the last poll found: a PSI trigger fired, a socket is readable.
#[derive(Clone, Copy, Debug, Default)]
struct Ready {
    stall: bool,
    lifeline: bool,
    status: bool,
}

/// Locked memory the guard may need beyond what it reserved at start (logging, a rescue).
const LOCK_MARGIN_KIB: u64 = 64 * 1024;

/// mlockall, but only where the lock cannot make later allocations fail: with
/// CAP_IPC_LOCK, or an RLIMIT_MEMLOCK with room to spare. (MCL_FUTURE under a small limit
/// turns every later mmap into ENOMEM: a guard that aborts on its first allocation.)
fn lock_memory(proc_root: &Path) -> Result<(), String> {
    let status = std::fs::read_to_string(proc_root.join("self/status")).unwrap_or_default();
    const CAP_IPC_LOCK: u32 = 14;
    let cap = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(str::trim)
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0);
    if !cap {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Memlock).current;
        let vm_kib = thrashguard_core::parse::pid::status_kib(&status, "VmSize").map_or(u64::MAX / 2, |k| k.0);
        if let Some(bytes) = limit
            && bytes / 1024 < vm_kib + LOCK_MARGIN_KIB
        {
            return Err(format!(
                "no CAP_IPC_LOCK and RLIMIT_MEMLOCK is {} KiB, below the {} KiB it would need",
                bytes / 1024,
                vm_kib + LOCK_MARGIN_KIB
            ));
        }
    }
    drop_startup_pages();
    use rustix::mm::MlockAllFlags as F;
    rustix::mm::mlockall(F::CURRENT | F::FUTURE | F::ONFAULT)
        .or_else(|e| if e == rustix::io::Errno::INVAL { rustix::mm::mlockall(F::CURRENT | F::FUTURE) } else { Err(e) })
        .map_err(|e| format!("mlockall: {e}"))
}

/// Drop every page of the program's read-only file mappings (code, constants) from this
/// process's page tables just before mlockall, so the lock pins what the loop really runs
/// (warm-up and the loop fault it back from the page cache) instead of start-up code
/// (argument and config parsing) that happened to be resident. Only mappings that are not
/// writable and hold no private (copy-on-write) page are touched: MADV_DONTNEED on them
/// discards nothing, the next access reads the same bytes from the file. Relocated
/// read-only data (RELRO) holds private pages and is left alone.
pub(crate) fn drop_startup_pages() {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else { return };
    let mut candidate: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        if let Some((start, end)) = first.split_once('-')
            && let (Ok(start), Ok(end)) = (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16))
        {
            // A mapping's header: range, perms, offset, dev, inode, path.
            let perms = fields.next().unwrap_or("");
            let file_backed = fields.nth(3).is_some_and(|path| path.starts_with('/'));
            candidate = (file_backed && perms.starts_with('r') && perms.ends_with('p') && !perms.contains('w')).then_some((start, end));
        } else if first == "Anonymous:"
            && let Some((start, end)) = candidate.take()
            && fields.next() == Some("0")
        {
            // SAFETY: a whole private, never-written, file-backed mapping of this process
            // with no private page: dropping its page-table entries loses no data.
            let _ = unsafe { rustix::mm::madvise(start as *mut std::ffi::c_void, end - start, rustix::mm::Advice::LinuxDontNeed) };
        }
    }
}

/// `thrashguard status` when no guard answers: a dry-run guard of its own over
/// `opts.proc_root` (no lifeline, no sockets, nothing locked), sampling for `window` so the
/// stall shares cover a real interval, then the same status body the daemon serves.
pub fn status_from_proc(mut cfg: Config, opts: Options, window: Duration) -> Result<serde_json::Value> {
    cfg.lifeline.authorized_keys.clear();
    cfg.guard.status_socket.clear();
    cfg.metrics.listen.clear();
    cfg.notify =
        thrashguard_core::config::NotifyConfig { on_action: Vec::new(), desktop: thrashguard_core::config::Desktop::Never, ..cfg.notify };
    cfg.guard.dry_run = true;
    let mut guard = Guard::new(cfg, Options { dry_run: true, no_self_protect: true, duration: None, ..opts })?;
    let end = Instant::now() + window;
    guard.tick();
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100).min(end.saturating_duration_since(Instant::now())));
        guard.tick();
    }
    let mut body = vec![0u8; wire::MAX_REPLY_BODY];
    let host = guard.host_name.clone();
    let mut w = BodyWriter::new(&mut body);
    guard.write_status(&mut w, &host).map_err(|_| anyhow::anyhow!("status does not fit in {} bytes", wire::MAX_REPLY_BODY))?;
    Ok(serde_json::from_slice(w.written())?)
}

/// Entry point of `thrashguard daemon`.
pub fn main(cfg: Config, opts: Options) -> Result<()> {
    // SAFETY: first thing in the daemon, before it spawns any thread (the metrics server,
    // the lifeline and any later thread start below); logging set-up spawns none.
    let sd_notify = unsafe { SdNotify::from_env() };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    // No transparent huge pages for the guard's own memory, before it reserves its buffers:
    // under THP `always` a first touch (or khugepaged, with max_ptes_none at 511) turns each
    // 2 MiB of a large reservation into a huge page, and mlockall keeps it. Measured in the
    // lab guest after a rescue: the scan table's mapping 6144 KiB AnonHugePages, RSS 12 MiB
    // (the host, THP madvise, 3.9 MiB). Hooks' children get THP back (hooks::spawn).
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        log::debug!("PR_SET_THP_DISABLE: {e}");
    }
    // Reserve everything first, then lock it.
    let mut guard = Guard::new(cfg, opts)?;
    if let (Some(addr), Some(m)) = (guard.cfg.metrics.address()?, &guard.metrics) {
        let bound = crate::metrics::serve(addr, m.clone())?;
        info!("metrics on http://{bound}/metrics");
    }
    // the history writer before going real-time: its thread must not inherit the priority
    if guard.cfg.history.enabled {
        match crate::store::Writer::spawn(&guard.cfg.history, &guard.opts.proc_root) {
            Ok(w) => guard.attach_history(w),
            Err(e) => warn!("history: cannot start the writer thread ({e}); events will not be stored"),
        }
    }
    let missing = if guard.opts.no_self_protect { Vec::new() } else { protect_self(&guard.cfg) };
    guard.warm_up();
    let dry = if guard.opts.dry_run || guard.cfg.guard.dry_run { " (dry run: acting on nothing)" } else { "" };
    info!(
        "guarding{dry}: {}; action {}, victims ranked by {:?}; {} memory cgroup scope(s)",
        guard.describe(),
        guard.cfg.guard.action.as_str(),
        guard.cfg.victim.rank_by,
        guard.scopes.len()
    );
    if !missing.is_empty() {
        warn!("running with reduced power; cannot: {}", missing.join("; "));
    }
    let others = guard.other_guards();
    if !others.is_empty() {
        warn!("another memory-pressure daemon runs too ({}): two guards race to pick victims; stop one", others.join(", "));
    }
    match &guard.lifeline {
        Some(l) => info!("{}", l.describe()),
        None => info!("lifeline off (no key in {})", guard.cfg.lifeline.authorized_keys),
    }
    // Set up (memory locked, triggers armed, rescue path warm): tell systemd.
    if sd_notify.enabled() {
        match sd_notify.watchdog() {
            Some(w) => info!("systemd: READY sent; watchdog {} ms, pinged from the guard loop", w.as_millis()),
            None => info!("systemd: READY sent; no watchdog"),
        }
    }
    // The SIGTERM grace blocks the loop: longer than half the watchdog, a rescue trips it.
    if let Some(half) = sd_notify.max_wait()
        && Duration::from_millis(guard.cfg.guard.sigterm_grace_ms) >= half
    {
        warn!(
            "guard.sigterm_grace_ms = {} is at least half the systemd watchdog ({} ms): a rescue's grace would get the guard \
             killed by the watchdog; raise WatchdogSec= with `systemctl edit thrashguard` or shorten the grace",
            guard.cfg.guard.sigterm_grace_ms,
            half.as_millis() * 2
        );
    }
    guard.set_sd_notify(sd_notify);
    let now = guard.sampler.now();
    let ready = format!("guarding{dry}: {}", guard.describe());
    guard.sd_notify.ready(&ready, now);
    guard.run(&stop);
    let dropped = guard.finish_history();
    if dropped > 0 {
        warn!("history: {dropped} event(s) dropped over the run");
    }
    guard.sd_notify.stopping();
    info!(
        "stopping after {} iterations, {} decisions, {} actions",
        guard.counters.iterations, guard.counters.decisions, guard.counters.actions
    );
    if let Some(l) = &guard.lifeline {
        let c = &l.counters;
        let refused: Vec<String> = thrashguard_core::lifeline::Reject::ALL
            .iter()
            .filter(|r| c.rejected[r.index()] > 0)
            .map(|r| format!("{} {}", c.rejected[r.index()], r.as_str()))
            .collect();
        info!("lifeline: {} accepted; refused: {}", c.accepted, if refused.is_empty() { "none".into() } else { refused.join(", ") });
    }
    Ok(())
}

/// A fraction as a JSON percentage with one decimal, `null` when not measured (written
/// without allocating, for the status reply).
struct JsonPct(Option<f64>);

impl std::fmt::Display for JsonPct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(v) if v.is_finite() => write!(f, "{:.1}", v * 100.0),
            _ => f.write_str("null"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::drop_startup_pages;
    use std::io::Write;

    /// Dropping the read-only file pages loses nothing: code still runs, constants read the
    /// same, and a private file mapping whose pages were copy-on-written and then made
    /// read-only (what the loader does to relocated data, RELRO) keeps the written bytes.
    #[test]
    fn dropping_startup_pages_loses_nothing() {
        let path = std::env::temp_dir().join(format!("tg-drop-{}", std::process::id()));
        std::fs::File::create(&path).unwrap().write_all(&[b'f'; 8192]).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        use rustix::mm::{MapFlags, ProtFlags};
        // SAFETY: a fresh private mapping of our own 8 KiB file, used only through `bytes`
        // while it lives and unmapped at the end.
        let ptr = unsafe { rustix::mm::mmap(std::ptr::null_mut(), 8192, ProtFlags::READ | ProtFlags::WRITE, MapFlags::PRIVATE, &file, 0) }
            .unwrap();
        // SAFETY: the mapping above, 8 KiB, readable and writable.
        let bytes = unsafe { std::slice::from_raw_parts_mut(ptr.cast::<u8>(), 8192) };
        bytes[0] = b'r'; // copy-on-write: a private page, like relocated data
        // SAFETY: the same mapping, now read-only like RELRO after relocation.
        unsafe { rustix::mm::mprotect(ptr, 8192, rustix::mm::MprotectFlags::READ) }.unwrap();
        let before = format!("{:?}", (1..50).map(|i| i * i).collect::<Vec<u64>>());

        drop_startup_pages();

        assert_eq!(bytes[0], b'r', "a copy-on-written page must survive");
        assert_eq!(bytes[4096], b'f');
        assert_eq!(format!("{:?}", (1..50).map(|i| i * i).collect::<Vec<u64>>()), before);
        // SAFETY: unmapping the mapping made above; `bytes` is not used after this.
        unsafe { rustix::mm::munmap(ptr, 8192) }.unwrap();
        std::fs::remove_file(&path).unwrap();
    }
}
