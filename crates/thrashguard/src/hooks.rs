//! Notifications after an action: the `notify.on_action` commands and desktop
//! notifications (notify-send), on a thread of their own.
//!
//! Owns the notification thread and the bounded queue the guard feeds it
//! ([`Notifier::send`] is a `try_send`: when the queue is full the notification is dropped
//! and counted, the guard never waits), running each command in a clean environment (the
//! `THRASHGUARD_*` variables of `thrashguard_core::notify` and `PATH`), stdin from
//! /dev/null, its output read up to a bound into the log, in a process group of its own
//! that is killed as a whole at the timeout and reaped; and finding the users' session
//! buses under /run/user for notify-send. It must never run anything on the guard thread,
//! never make the guard wait, and never decide anything: what a notification says is
//! rendered by the core.
//!
//! Signals: the thread blocks them all, so that SIGTERM wakes the guard thread out of its
//! poll. It must unblock them while it starts a command (the child inherits its mask), and
//! a SIGTERM or SIGINT taken by it in that moment would leave the guard asleep until its
//! poll times out (seen: 4 s to stop); such a signal is sent again to the process once the
//! mask is closed (see [`Forward`]).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use log::{info, warn};
use thrashguard_core::config::{Action, Desktop, NotifyConfig};
use thrashguard_core::notify::{ActionRecord, Outcome, ScopeName};
use thrashguard_core::policy::Rescue;
use thrashguard_core::policy::rank::Candidate;
use thrashguard_core::units::{Comm, Kib, ProcId};

use crate::act::{ActError, Acted};
use crate::procdir;

/// Actions waiting for the thread at most; more are dropped (and counted).
pub const QUEUE: usize = 16;
/// The thread's stack: the daemon locks all its memory, so it stays small.
const STACK: usize = 128 * 1024;
/// Output of one command kept for the log, per stream (the rest is read and discarded).
const OUTPUT_MAX: usize = 4096;
/// How long the thread waits between looks at the stop flag.
const SLICE: Duration = Duration::from_millis(100);
/// How long a killed process group's leader may take to be reaped.
const REAP_WAIT: Duration = Duration::from_secs(5);
/// `PATH` of every command run, and where notify-send is looked for.
pub const HOOK_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The victim as a notification names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Victim {
    /// pid and start time.
    pub id: ProcId,
    /// comm.
    pub name: Comm,
    /// RSS + swap.
    pub footprint: Kib,
    /// Swapped out.
    pub swap: Kib,
}

impl From<&Candidate> for Victim {
    fn from(c: &Candidate) -> Victim {
        Victim { id: c.id, name: c.comm, footprint: c.footprint, swap: c.swap }
    }
}

/// The process a lifeline request names: from the last scan when it is there, else from
/// its stat and status files (read before it is acted on, while they still exist).
pub fn victim_of(proc_dir: BorrowedFd<'_>, id: ProcId, known: &[Candidate]) -> Victim {
    if let Some(c) = known.iter().find(|c| c.id == id) {
        return c.into();
    }
    let mut v = Victim { id, name: Comm::new(b"?"), footprint: Kib::ZERO, swap: Kib::ZERO };
    let mut buf = [0u8; 4096];
    if let Ok(st) = procdir::read_pid_file(proc_dir, id.pid, "stat", &mut buf).map(thrashguard_core::parse::pid::parse_stat)
        && let Ok(st) = st
    {
        v.name = st.comm;
        v.footprint = Kib::from_pages(st.rss, rustix::param::page_size() as u64);
    }
    if let Ok(Ok(status)) = procdir::read_pid_file(proc_dir, id.pid, "status", &mut buf).map(thrashguard_core::parse::pid::parse_status)
        && status.vm_rss.is_some()
    {
        v.footprint = status.footprint();
        v.swap = status.vm_swap.unwrap_or_default();
    }
    v
}

/// The record of an action: `outcome` is what `act` returned (`None`: a dry run).
pub fn record(
    rescue: &Rescue,
    victim: Victim,
    scope: &str,
    action: Action,
    whole_cgroup: bool,
    outcome: Option<&Result<Acted, ActError>>,
) -> ActionRecord {
    let outcome = match outcome {
        None => Outcome::NotActed,
        Some(Ok(Acted::Signalled { .. })) if action == Action::Freeze => Outcome::Frozen,
        Some(Ok(Acted::Signalled { .. })) => Outcome::Killed,
        Some(Ok(Acted::Gone)) => Outcome::Gone,
        Some(Ok(Acted::Reused)) => Outcome::PidReused,
        Some(Err(_)) => Outcome::Failed,
    };
    ActionRecord {
        action,
        dry_run: outcome == Outcome::NotActed,
        outcome,
        reason: rescue.reason,
        victim: victim.id,
        name: victim.name,
        footprint: victim.footprint,
        swap: victim.swap,
        whole_cgroup,
        scope: ScopeName::new(scope),
        unix_ms: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
        full_stall_pct: rescue.evidence.full.map(|f| f * 100.0),
        headroom: rescue.evidence.headroom,
    }
}

/// What the guard and the thread share.
#[derive(Debug, Default)]
struct Shared {
    /// Dropped since the thread last said so.
    dropped: AtomicU64,
    /// Dropped in all.
    dropped_total: AtomicU64,
    /// Actions handed over.
    queued: AtomicU64,
    /// Set at shutdown: the running command is killed, the queue discarded.
    stop: AtomicBool,
}

/// Desktop notifications as set up at start.
#[derive(Clone, Debug)]
pub struct DesktopPlan {
    /// The notify-send program.
    pub notify_send: PathBuf,
    /// Where `user/UID/bus` are (`/run`).
    pub run_root: PathBuf,
    /// Only this user (an unprivileged daemon can notify no one else).
    pub only_uid: Option<u32>,
    /// `desktop = "always"`: say when no session was found.
    pub always: bool,
}

/// Everything the thread does for one action.
#[derive(Clone, Debug)]
struct Plan {
    hooks: Vec<Vec<String>>,
    timeout: Duration,
    desktop: Option<DesktopPlan>,
    proc_root: PathBuf,
    forward: Forward,
}

/// The handle the guard holds: a queue into the notification thread.
#[derive(Debug)]
pub struct Notifier {
    tx: Option<SyncSender<ActionRecord>>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// The signal-hook actions of [`Forward`], removed at drop.
    sig_ids: Vec<signal_hook::SigId>,
}

/// Signals the daemon handles (`daemon::main` registers them) that the notification
/// thread sends again when one arrives while it has them unblocked to start a command.
const FORWARDED: [(i32, rustix::process::Signal); 2] =
    [(libc::SIGTERM, rustix::process::Signal::TERM), (libc::SIGINT, rustix::process::Signal::INT)];

/// Flags raised by [`FORWARDED`] signals, looked at around each command's start.
#[derive(Clone, Debug, Default)]
pub struct Forward(Vec<(rustix::process::Signal, Arc<AtomicBool>)>);

impl Forward {
    /// Forward nothing (tests, or a process that handles none of the signals).
    pub fn none() -> Forward {
        Forward::default()
    }

    /// Watch each of [`FORWARDED`] that already has a handler (never turning a signal's
    /// default action into a handled one). Returns the ids to unregister.
    fn watch() -> (Forward, Vec<signal_hook::SigId>) {
        let mut fwd = Forward::none();
        let mut ids = Vec::new();
        for (raw, sig) in FORWARDED {
            if !has_handler(raw) {
                continue;
            }
            let flag = Arc::new(AtomicBool::new(false));
            if let Ok(id) = signal_hook::flag::register(raw, Arc::clone(&flag)) {
                fwd.0.push((sig, flag));
                ids.push(id);
            }
        }
        (fwd, ids)
    }

    fn lower(&self) {
        for (_, f) in &self.0 {
            f.store(false, Ordering::SeqCst);
        }
    }

    /// Send again, to the whole process, each signal that arrived since [`Forward::lower`]:
    /// this thread blocks it now, so it lands on one that waits for it. (When the guard
    /// thread had taken it itself, it sees it twice: both only set its stop flag.)
    fn resend(&self) {
        for (sig, f) in &self.0 {
            if f.swap(false, Ordering::SeqCst) {
                log::debug!("notify: {sig:?} arrived while starting a command; sent again for the guard thread");
                let _ = rustix::process::kill_process(rustix::process::getpid(), *sig);
            }
        }
    }
}

/// Whether `sig` has a handler installed (not the default action, not ignored).
fn has_handler(sig: i32) -> bool {
    // SAFETY: sigaction with a null new action only reads the current one into `old`, a
    // zeroed (valid) plain C struct of the right type.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN
    }
}

impl Notifier {
    /// Start the thread when there is anything to notify (`None` otherwise): hooks
    /// configured, or notify-send found (or `desktop = "always"`).
    pub fn start(cfg: &NotifyConfig, proc_root: &Path) -> Result<Option<Notifier>> {
        let desktop = desktop_plan(cfg.desktop, find_program("notify-send", HOOK_PATH), Path::new("/run"));
        for cmd in &cfg.on_action {
            let argv = cmd.argv();
            let prog = Path::new(argv.first().copied().unwrap_or_default());
            if std::fs::metadata(prog).map(|m| !m.is_file() || m.mode() & 0o111 == 0).unwrap_or(true) {
                warn!("notify.on_action: {} is not an executable file (yet); it will be tried at each action", prog.display());
            }
        }
        if cfg.on_action.is_empty() && desktop.is_none() {
            return Ok(None);
        }
        let (forward, sig_ids) = Forward::watch();
        let plan = Plan {
            hooks: cfg.on_action.iter().map(|c| c.argv().into_iter().map(String::from).collect()).collect(),
            timeout: Duration::from_secs(u64::from(cfg.timeout_s)),
            desktop,
            proc_root: proc_root.to_path_buf(),
            forward,
        };
        info!(
            "notify: {} command(s) after each action{}, {} s timeout",
            plan.hooks.len(),
            plan.desktop.as_ref().map_or(String::new(), |d| format!(", desktop notifications through {}", d.notify_send.display())),
            cfg.timeout_s
        );
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let shared = Arc::new(Shared::default());
        let thread_shared = Arc::clone(&shared);
        // The thread is born with every signal blocked (it inherits this thread's mask for
        // the moment of the spawn), so SIGTERM lands on the guard thread and ends its poll
        // at once. It unblocks them only while it starts a command (see `spawn`), which
        // would inherit the mask.
        let old = block_all_signals();
        let thread =
            std::thread::Builder::new().name("tg-notify".into()).stack_size(STACK).spawn(move || serve(&rx, &thread_shared, &plan));
        restore_signals(&old);
        let thread = thread.context("cannot start the notification thread")?;
        Ok(Some(Notifier { tx: Some(tx), shared, thread: Some(thread), sig_ids }))
    }

    /// Hand an action to the thread without waiting: when its queue is full the
    /// notification is dropped and counted (the thread says so in the log).
    pub fn send(&self, rec: ActionRecord) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(rec) {
            Ok(()) => {
                self.shared.queued.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_)) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                self.shared.dropped_total.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

impl Drop for Notifier {
    /// Stop: the command running is killed (its whole group), what is queued is discarded
    /// and counted, the thread joined.
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for id in self.sig_ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
        info!(
            "notify: {} action(s) notified, {} dropped (queue full)",
            self.shared.queued.load(Ordering::Relaxed),
            self.shared.dropped_total.load(Ordering::Relaxed)
        );
    }
}

/// Block every signal in the calling thread; returns the mask it had.
fn block_all_signals() -> libc::sigset_t {
    // SAFETY: sigfillset and pthread_sigmask write only the two local, properly sized
    // sigset_t values (zeroed first, a valid bit pattern for this plain C struct) and
    // change only the calling thread's mask.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
        old
    }
}

/// Put back the mask [`block_all_signals`] returned.
fn restore_signals(old: &libc::sigset_t) {
    // SAFETY: `old` is a mask pthread_sigmask filled in; only this thread's mask changes.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, old, std::ptr::null_mut());
    }
}

/// Start `cmd` with no signal blocked: a child inherits the starting thread's mask, and
/// the notification thread blocks everything. A signal of `forward` that arrives in the
/// moment the mask is open is sent again once it is closed (it may have been taken here,
/// where it would not wake the guard).
fn spawn(cmd: &mut Command, forward: &Forward) -> std::io::Result<Child> {
    forward.lower();
    // SAFETY: sigemptyset writes the local, zeroed sigset_t; pthread_sigmask changes only
    // this thread's mask and writes the previous one into `old`.
    let old = unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::pthread_sigmask(libc::SIG_SETMASK, &none, &mut old);
        old
    };
    // The guard runs with THP disabled (daemon::run); its hooks are ordinary programs.
    // SAFETY: the closure runs in the child between fork and exec and only makes one
    // async-signal-safe system call.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, || {
            let _ = rustix::thread::disable_transparent_huge_pages(false);
            Ok(())
        });
    }
    let child = cmd.spawn();
    restore_signals(&old);
    forward.resend();
    child
}

/// Desktop notifications as `desktop` asks, given where notify-send is (if anywhere):
/// said once at start.
fn desktop_plan(desktop: Desktop, notify_send: Option<PathBuf>, run_root: &Path) -> Option<DesktopPlan> {
    let euid = rustix::process::geteuid();
    let only_uid = (!euid.is_root()).then(|| euid.as_raw());
    match (desktop, notify_send) {
        (Desktop::Never, _) => None,
        (Desktop::Auto, None) => {
            info!("notify: no desktop notifications (notify-send is not installed)");
            None
        }
        (Desktop::Always, None) => {
            warn!("notify.desktop = \"always\", but notify-send is not in {HOOK_PATH}; will try {HOOK_PATH} at each action");
            Some(DesktopPlan { notify_send: PathBuf::from("notify-send"), run_root: run_root.to_path_buf(), only_uid, always: true })
        }
        (d, Some(p)) => Some(DesktopPlan { notify_send: p, run_root: run_root.to_path_buf(), only_uid, always: d == Desktop::Always }),
    }
}

/// `name` in the first directory of the colon-separated `path` that has it executable.
pub fn find_program(name: &str, path: &str) -> Option<PathBuf> {
    path.split(':').map(|dir| Path::new(dir).join(name)).find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0))
}

/// A user session with a D-Bus session bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// The user.
    pub uid: u32,
    /// The group owning the bus socket (the user's primary group).
    pub gid: u32,
    /// `RUN/user/UID`.
    pub runtime_dir: PathBuf,
    /// `RUN/user/UID/bus`.
    pub bus: PathBuf,
}

/// Every `RUN/user/UID` with a `bus` socket owned by UID (`only_uid`: that user alone),
/// by uid.
pub fn sessions(run_root: &Path, only_uid: Option<u32>) -> Vec<Session> {
    let Ok(dir) = std::fs::read_dir(run_root.join("user")) else { return Vec::new() };
    let mut found: Vec<Session> = dir
        .filter_map(|e| {
            let e = e.ok()?;
            let uid: u32 = e.file_name().to_str()?.parse().ok()?;
            let bus = e.path().join("bus");
            let meta = std::fs::symlink_metadata(&bus).ok()?;
            (meta.file_type().is_socket() && meta.uid() == uid && only_uid.is_none_or(|u| u == uid)).then(|| Session {
                uid,
                gid: meta.gid(),
                runtime_dir: e.path(),
                bus,
            })
        })
        .collect();
    found.sort_by_key(|s| s.uid);
    found
}

/// The notify-send command for one session, run as its user (unless that is us already)
/// with only its bus in the environment.
pub fn desktop_command(notify_send: &Path, session: &Session, rec: &ActionRecord) -> Command {
    let (summary, body) = rec.desktop_text();
    let mut cmd = Command::new(notify_send);
    cmd.arg("--app-name=thrashguard")
        .arg(format!("--urgency={}", rec.urgency()))
        .arg(summary)
        .arg(body)
        .env_clear()
        .env("PATH", HOOK_PATH)
        .env("DBUS_SESSION_BUS_ADDRESS", format!("unix:path={}", session.bus.display()))
        .env("XDG_RUNTIME_DIR", &session.runtime_dir)
        .current_dir("/");
    if rustix::process::geteuid().as_raw() != session.uid {
        cmd.uid(session.uid).gid(session.gid);
    }
    cmd
}

/// A `notify.on_action` command for one action: argv as configured, a clean environment
/// of `PATH` and the record's variables.
pub fn hook_command(argv: &[String], env: &[(&'static str, String)]) -> Command {
    let mut cmd = Command::new(argv.first().map_or("", String::as_str));
    cmd.args(argv.iter().skip(1)).env_clear().env("PATH", HOOK_PATH).envs(env.iter().map(|(k, v)| (k, v))).current_dir("/");
    cmd
}

/// The thread: one action at a time, every hook in order, then the desktop.
fn serve(rx: &Receiver<ActionRecord>, shared: &Shared, plan: &Plan) {
    while let Ok(rec) = rx.recv() {
        if shared.stop.load(Ordering::Relaxed) {
            let left = 1 + rx.try_iter().count();
            info!("notify: stopping; {left} queued action(s) not notified");
            break;
        }
        notify_one(&rec, shared, plan);
        let dropped = shared.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            warn!("notify: {dropped} action(s) not notified: the queue of {QUEUE} was full (hooks slower than actions)");
        }
    }
}

fn notify_one(rec: &ActionRecord, shared: &Shared, plan: &Plan) {
    let what = format!("{} of {} ({})", rec.action_str(), rec.victim.pid, rec.name);
    if !plan.hooks.is_empty() {
        let env = rec.env(&crate::procdir::victim_cmdline(&plan.proc_root, rec.victim));
        for argv in &plan.hooks {
            let label = argv.first().map_or("", String::as_str);
            run_logged(hook_command(argv, &env), label, &what, plan, &shared.stop);
            if shared.stop.load(Ordering::Relaxed) {
                return;
            }
        }
    }
    if let Some(d) = &plan.desktop {
        let found = sessions(&d.run_root, d.only_uid);
        if found.is_empty() && d.always {
            warn!("notify: no desktop session bus under {}/user to notify {what}", d.run_root.display());
        }
        for s in &found {
            let label = format!("notify-send (uid {})", s.uid);
            run_logged(desktop_command(&d.notify_send, s, rec), &label, &what, plan, &shared.stop);
        }
    }
}

/// Up to [`OUTPUT_MAX`] bytes of one output stream.
#[derive(Debug, Default)]
pub struct Captured {
    /// What was kept.
    pub bytes: Vec<u8>,
    /// Bytes read past the bound and discarded.
    pub discarded: usize,
    eof: bool,
}

impl Captured {
    fn take(&mut self, chunk: &[u8]) {
        let room = OUTPUT_MAX.saturating_sub(self.bytes.len()).min(chunk.len());
        self.bytes.extend_from_slice(&chunk[..room]);
        self.discarded += chunk.len() - room;
    }
}

/// How a command ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// It exited and its output closed.
    Exited(ExitStatus),
    /// Still running, or its group still holding its output open, at the timeout: the
    /// whole group was killed. `reaped`: the command itself was waited for.
    TimedOut {
        /// Whether the command was reaped.
        reaped: bool,
    },
    /// The daemon is stopping: the group was killed.
    Stopped,
}

/// One command's run.
#[derive(Debug)]
pub struct Ran {
    /// Its pid, which is also its process group.
    pub pid: u32,
    /// How it ended.
    pub ended: Ended,
    /// How long it took.
    pub elapsed: Duration,
    /// Its standard output.
    pub stdout: Captured,
    /// Its standard error.
    pub stderr: Captured,
}

/// Run `cmd` with stdin from /dev/null, its output captured, in a process group of its
/// own; wait for it to exit and close its output, at most `timeout`, then kill the whole
/// group and reap it. `stop` cuts the wait short the same way; `forward`: see [`spawn`].
pub fn run(mut cmd: Command, timeout: Duration, stop: &AtomicBool, forward: &Forward) -> std::io::Result<Ran> {
    let t0 = Instant::now();
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    let mut child = spawn(&mut cmd, forward)?;
    let pid = child.id();
    let pidfd =
        rustix::process::Pid::from_raw(pid as i32).and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok());
    let out: Option<OwnedFd> = child.stdout.take().map(OwnedFd::from);
    let err: Option<OwnedFd> = child.stderr.take().map(OwnedFd::from);
    let (mut stdout, mut stderr) = (Captured::default(), Captured::default());
    stdout.eof = out.is_none();
    stderr.eof = err.is_none();
    let deadline = t0 + timeout;
    let mut exited: Option<ExitStatus> = None;
    let ended = loop {
        if exited.is_none() {
            exited = child.try_wait().ok().flatten();
        }
        if let Some(status) = exited
            && stdout.eof
            && stderr.eof
        {
            break Ended::Exited(status);
        }
        if stop.load(Ordering::Relaxed) {
            kill_group(pid, &mut child, exited.is_some());
            break Ended::Stopped;
        }
        let now = Instant::now();
        if now >= deadline {
            let reaped = kill_group(pid, &mut child, exited.is_some());
            break Ended::TimedOut { reaped };
        }
        let slice = (deadline - now).min(SLICE);
        let ts = rustix::time::Timespec { tv_sec: slice.as_secs() as i64, tv_nsec: i64::from(slice.subsec_nanos()) };
        use rustix::event::{PollFd, PollFlags};
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(3);
        let mut which = Vec::with_capacity(3);
        for (i, (fd, cap)) in [(&out, &stdout), (&err, &stderr)].into_iter().enumerate() {
            if let Some(fd) = fd.as_ref().filter(|_| !cap.eof) {
                fds.push(PollFd::new(fd, PollFlags::IN));
                which.push(i);
            }
        }
        match (&pidfd, exited) {
            (Some(p), None) => fds.push(PollFd::new(p, PollFlags::IN)),
            // no pidfd (kernel before 5.3): look again after a short wait
            (None, None) if fds.is_empty() => std::thread::sleep(slice.min(Duration::from_millis(10))),
            _ => {}
        }
        if fds.is_empty() {
            continue;
        }
        if rustix::event::poll(&mut fds, Some(&ts)).is_err() {
            continue;
        }
        let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        for (k, &i) in which.iter().enumerate() {
            if !ready[k] {
                continue;
            }
            let (fd, cap) = if i == 0 { (&out, &mut stdout) } else { (&err, &mut stderr) };
            if let Some(fd) = fd {
                drain_once(fd.as_fd(), cap);
            }
        }
    };
    Ok(Ran { pid, ended, elapsed: t0.elapsed(), stdout, stderr })
}

/// One read from a ready pipe into `cap`; end of file (or an error) closes the stream.
fn drain_once(fd: BorrowedFd<'_>, cap: &mut Captured) {
    let mut buf = [0u8; 4096];
    match rustix::io::read(fd, &mut buf) {
        Ok(0) => cap.eof = true,
        Ok(n) => cap.take(&buf[..n]),
        Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
        Err(_) => cap.eof = true,
    }
}

/// SIGKILL to the whole process group `pgid` (the command and everything it started),
/// then reap the command unless it was already. Returns whether it is reaped.
fn kill_group(pgid: u32, child: &mut Child, reaped: bool) -> bool {
    if let Some(p) = rustix::process::Pid::from_raw(pgid as i32) {
        let _ = rustix::process::kill_process_group(p, rustix::process::Signal::KILL);
    }
    if reaped {
        return true;
    }
    let end = Instant::now() + REAP_WAIT;
    while Instant::now() < end {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// [`run`], and what became of it in the log: the output's lines, the exit, a kill.
fn run_logged(cmd: Command, label: &str, what: &str, plan: &Plan, stop: &AtomicBool) {
    let timeout = plan.timeout;
    let ran = match run(cmd, timeout, stop, &plan.forward) {
        Ok(r) => r,
        Err(e) => {
            warn!("notify: cannot run {label} for the {what}: {e}");
            return;
        }
    };
    for (stream, cap) in [("stdout", &ran.stdout), ("stderr", &ran.stderr)] {
        for line in String::from_utf8_lossy(&cap.bytes).lines().filter(|l| !l.trim().is_empty()) {
            info!("notify: {label} (pid {}) {stream}: {line}", ran.pid);
        }
        if cap.discarded > 0 {
            info!("notify: {label} (pid {}) {stream}: {} more byte(s) not logged", ran.pid, cap.discarded);
        }
    }
    let ms = ran.elapsed.as_millis();
    match ran.ended {
        Ended::Exited(s) if s.success() => info!("notify: {label} (pid {}) for the {what} exited 0 after {ms} ms", ran.pid),
        Ended::Exited(s) => match s.signal() {
            Some(sig) => warn!("notify: {label} (pid {}) for the {what} was killed by signal {sig} after {ms} ms", ran.pid),
            None => warn!("notify: {label} (pid {}) for the {what} exited {} after {ms} ms", ran.pid, s.code().unwrap_or(-1)),
        },
        Ended::TimedOut { reaped } => warn!(
            "notify: {label} (pid {}) for the {what} timed out after {} s; killed its process group {}{}",
            ran.pid,
            timeout.as_secs(),
            ran.pid,
            if reaped { "" } else { " (not reaped yet)" }
        ),
        Ended::Stopped => info!("notify: {label} (pid {}) for the {what} killed with its process group: the daemon is stopping", ran.pid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use thrashguard_core::policy::{Evidence, Reason};
    use thrashguard_core::units::Pid;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tg-hooks-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn rec() -> ActionRecord {
        let rescue =
            Rescue { reason: Reason::Thrashing, evidence: Evidence { full: Some(0.5), headroom: Kib(1000), ..Evidence::default() } };
        let victim =
            Victim { id: ProcId { pid: Pid(77), start_time: 1 }, name: Comm::new(b"hog"), footprint: Kib(300 * 1024), swap: Kib(5) };
        record(&rescue, victim, "/user.slice", Action::Kill, false, Some(&Ok(Acted::Gone)))
    }

    #[test]
    fn outcomes_from_what_act_returned() {
        let r = rec();
        assert_eq!((r.outcome, r.dry_run, r.full_stall_pct, r.headroom), (Outcome::Gone, false, Some(50.0), Kib(1000)));
        assert_eq!(r.scope.as_str(), "/user.slice");
        assert!(r.unix_ms > 1_600_000_000_000);
        let rescue = Rescue { reason: Reason::Lifeline, evidence: Evidence::default() };
        let v = Victim { id: ProcId { pid: Pid(1), start_time: 1 }, name: Comm::new(b"x"), footprint: Kib(1), swap: Kib(0) };
        let dry = record(&rescue, v, "system", Action::Freeze, false, None);
        assert_eq!((dry.outcome, dry.dry_run, dry.action_str()), (Outcome::NotActed, true, "dry_run"));
        let err = Err(ActError::Syscall { what: "pidfd_open", errno: rustix::io::Errno::PERM });
        assert_eq!(record(&rescue, v, "system", Action::Kill, false, Some(&err)).outcome, Outcome::Failed);
        assert_eq!(record(&rescue, v, "system", Action::Kill, false, Some(&Ok(Acted::Reused))).outcome, Outcome::PidReused);
    }

    /// A fake /run: uid 1000 and 1001 with a bus socket, 1002 with a plain file, a
    /// non-numeric entry, and a socket owned by another uid than its directory says.
    #[test]
    fn sessions_from_a_fake_run_tree() {
        let run = tmp("run");
        let me = rustix::process::geteuid().as_raw();
        let mut listeners = Vec::new();
        for uid in [me.to_string(), "4000000".into()] {
            std::fs::create_dir_all(run.join("user").join(&uid)).unwrap();
            listeners.push(UnixListener::bind(run.join("user").join(&uid).join("bus")).unwrap());
        }
        std::fs::create_dir_all(run.join("user/1002")).unwrap();
        std::fs::write(run.join("user/1002/bus"), "").unwrap();
        std::fs::create_dir_all(run.join("user/gdm")).unwrap();
        // only the socket whose owner is the uid it is filed under counts (ours; the one
        // under 4000000 is owned by us, not by 4000000)
        let found = sessions(&run, None);
        assert_eq!(found.iter().map(|s| s.uid).collect::<Vec<_>>(), vec![me], "{found:?}");
        assert_eq!(found[0].bus, run.join("user").join(me.to_string()).join("bus"));
        assert_eq!(sessions(&run, Some(me + 1)), vec![]);
        assert_eq!(sessions(&run.join("nowhere"), None), vec![]);

        let cmd = desktop_command(Path::new("/usr/bin/notify-send"), &found[0], &rec());
        assert_eq!(cmd.get_program(), "/usr/bin/notify-send");
        let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(
            args,
            [
                "--app-name=thrashguard",
                "--urgency=normal",
                "thrashguard found already gone hog (77)",
                "thrashing: full stall 50.0 %, footprint 300 MiB (/user.slice)"
            ]
        );
        let envs: Vec<(String, String)> = cmd
            .get_envs()
            .map(|(k, v)| (k.to_string_lossy().into_owned(), v.map(|v| v.to_string_lossy().into_owned()).unwrap_or_default()))
            .collect();
        let bus = format!("unix:path={}", found[0].bus.display());
        assert!(envs.contains(&("DBUS_SESSION_BUS_ADDRESS".into(), bus)), "{envs:?}");
        assert!(envs.contains(&("XDG_RUNTIME_DIR".into(), found[0].runtime_dir.display().to_string())), "{envs:?}");
        assert!(envs.contains(&("PATH".into(), HOOK_PATH.into())), "{envs:?}");
        assert_eq!(envs.len(), 3, "a clean environment: {envs:?}");
        drop(listeners);
        std::fs::remove_dir_all(&run).unwrap();
    }

    /// The desktop path for real with a stand-in notify-send: it runs (as the session's
    /// user: ours here), with the bus in its environment and the text as arguments.
    #[test]
    fn a_stand_in_notify_send_runs_with_the_bus() {
        let dir = tmp("desk");
        let run = dir.join("run");
        let me = rustix::process::geteuid().as_raw();
        std::fs::create_dir_all(run.join("user").join(me.to_string())).unwrap();
        let _bus = UnixListener::bind(run.join("user").join(me.to_string()).join("bus")).unwrap();
        let out = dir.join("out");
        let fake = dir.join("notify-send");
        std::fs::write(&fake, format!("#!/bin/sh\necho \"$DBUS_SESSION_BUS_ADDRESS|$*\" > {}\necho shown\n", out.display())).unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let session = &sessions(&run, None)[0];
        let ran = run_cmd(desktop_command(&fake, session, &rec()), Duration::from_secs(5));
        assert_eq!(ran.ended, Ended::Exited(ExitStatus::from_raw(0)), "{ran:?}");
        assert_eq!(ran.stdout.bytes, b"shown\n");
        let said = std::fs::read_to_string(&out).unwrap();
        assert!(
            said.starts_with(&format!("unix:path={}|--app-name=thrashguard --urgency=normal thrashguard", session.bus.display())),
            "{said}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// As root, a session of another user gets notify-send run as that user (uid and
    /// group of its bus socket): the fork path of the spawn, with the switch in the child.
    #[test]
    fn notify_send_runs_as_the_sessions_user() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("needs root (chown, setuid): skipped");
            return;
        }
        let dir = tmp("asuser");
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        let user_dir = dir.join("run/user/65534");
        std::fs::create_dir_all(&user_dir).unwrap();
        let _bus = UnixListener::bind(user_dir.join("bus")).unwrap();
        std::os::unix::fs::lchown(user_dir.join("bus"), Some(65534), Some(65533)).unwrap();
        let out = dir.join("out");
        let fake = dir.join("notify-send");
        std::fs::write(&fake, format!("#!/bin/sh\necho \"$(id -u) $(id -g) $(id -G)\" > {}\n", out.display())).unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let found = sessions(&dir.join("run"), None);
        assert_eq!(found.iter().map(|s| (s.uid, s.gid)).collect::<Vec<_>>(), vec![(65534, 65533)]);
        let ran = run_cmd(desktop_command(&fake, &found[0], &rec()), Duration::from_secs(5));
        assert_eq!(ran.ended, Ended::Exited(ExitStatus::from_raw(0)), "{ran:?}");
        // no supplementary group of root's is kept
        assert_eq!(std::fs::read_to_string(&out).unwrap().trim(), "65534 65533 65533");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn run_cmd(cmd: Command, timeout: Duration) -> Ran {
        run(cmd, timeout, &AtomicBool::new(false), &Forward::none()).unwrap()
    }

    #[test]
    fn hook_environment_is_clean_and_complete() {
        let env = rec().env("hog --big");
        let argv = vec!["/usr/bin/env".to_string()];
        let ran = run_cmd(hook_command(&argv, &env), Duration::from_secs(5));
        let text = String::from_utf8(ran.stdout.bytes).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort_unstable();
        let mut want: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        want.push(format!("PATH={HOOK_PATH}"));
        want.sort_unstable();
        assert_eq!(lines, want);
    }

    /// Commands start with no signal blocked, even when started from a thread that
    /// blocks them all (the notification thread).
    #[test]
    fn commands_start_with_an_empty_signal_mask() {
        let t = std::thread::spawn(|| {
            let old = block_all_signals();
            let argv: Vec<String> = ["/bin/grep", "^SigBlk", "/proc/self/status"].map(String::from).to_vec();
            let ran = run_cmd(hook_command(&argv, &[]), Duration::from_secs(5));
            let mine = std::fs::read_to_string("/proc/thread-self/status").unwrap();
            restore_signals(&old);
            (String::from_utf8(ran.stdout.bytes).unwrap(), mine)
        });
        let (child, mine) = t.join().unwrap();
        assert_eq!(child.split_whitespace().nth(1), Some("0000000000000000"), "{child}");
        let blocked = mine.lines().find_map(|l| l.strip_prefix("SigBlk:")).map(|m| u64::from_str_radix(m.trim(), 16).unwrap()).unwrap();
        let sigterm = 1u64 << (libc::SIGTERM - 1);
        assert_eq!(blocked & sigterm, sigterm, "the blocking thread itself keeps SIGTERM blocked: {blocked:x}");
    }

    #[test]
    fn output_is_bounded_and_drained() {
        // 1 MiB on stdout: 4 KiB kept, the rest read and discarded, so the writer never blocks
        let argv: Vec<String> = ["/bin/sh", "-c", "head -c 1048576 /dev/zero; echo err >&2; exit 3"].map(String::from).to_vec();
        let ran = run_cmd(hook_command(&argv, &[]), Duration::from_secs(10));
        assert_eq!(ran.ended, Ended::Exited(ExitStatus::from_raw(3 << 8)), "{ran:?}");
        assert_eq!((ran.stdout.bytes.len(), ran.stdout.discarded), (OUTPUT_MAX, 1_048_576 - OUTPUT_MAX));
        assert_eq!(ran.stderr.bytes, b"err\n");
    }

    #[test]
    fn a_missing_program_is_an_error_not_a_panic() {
        let argv = vec!["/nonexistent/hook".to_string()];
        let e = run(hook_command(&argv, &[]), Duration::from_secs(1), &AtomicBool::new(false), &Forward::none()).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        // an empty argv (never from a valid config) also fails cleanly
        assert!(run(hook_command(&[], &[]), Duration::from_secs(1), &AtomicBool::new(false), &Forward::none()).is_err());
    }

    /// The command and what it left running in its group are killed at the timeout; a
    /// background child that escaped into its own group would not be, which is documented.
    #[test]
    fn the_whole_group_is_killed_at_the_timeout() {
        let dir = tmp("timeout");
        let pidfile = dir.join("pid");
        let script = format!("sleep 1000 & echo $! > {}; wait", pidfile.display());
        let argv: Vec<String> = ["/bin/sh".into(), "-c".into(), script].to_vec();
        let t0 = Instant::now();
        let ran = run_cmd(hook_command(&argv, &[]), Duration::from_secs(1));
        assert_eq!(ran.ended, Ended::TimedOut { reaped: true }, "{ran:?}");
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
        let sleep_pid: u32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        // the sleep was killed; it is a zombie until init reaps it, at most
        let end = Instant::now() + Duration::from_secs(5);
        let alive = |pid: u32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
        };
        while alive(sleep_pid) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(sleep_pid), "the hook's background sleep {sleep_pid} survived");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stopping_cuts_a_hanging_command_short() {
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            s.store(true, Ordering::Relaxed);
        });
        let argv: Vec<String> = ["/bin/sleep", "1000"].map(String::from).to_vec();
        let t0 = Instant::now();
        let ran = run(hook_command(&argv, &[]), Duration::from_secs(600), &stop, &Forward::none()).unwrap();
        assert_eq!(ran.ended, Ended::Stopped);
        assert!(t0.elapsed() < Duration::from_secs(2));
        t.join().unwrap();
    }

    #[test]
    fn finds_programs_on_a_path() {
        assert_eq!(find_program("sh", "/nonexistent:/bin"), Some(PathBuf::from("/bin/sh")));
        assert_eq!(find_program("no-such-program-here", HOOK_PATH), None);
        // a directory or a non-executable file is not a program
        let dir = tmp("find");
        std::fs::create_dir_all(dir.join("a/prog")).unwrap();
        std::fs::create_dir_all(dir.join("b")).unwrap();
        std::fs::write(dir.join("b/prog"), "").unwrap();
        assert_eq!(find_program("prog", &format!("{}:{}", dir.join("a").display(), dir.join("b").display())), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        // a thread that never takes anything: every send past the queue is dropped at once
        let (tx, _rx) = std::sync::mpsc::sync_channel(QUEUE);
        let n = Notifier { tx: Some(tx), shared: Arc::new(Shared::default()), thread: None, sig_ids: Vec::new() };
        let t0 = Instant::now();
        for _ in 0..QUEUE + 10 {
            n.send(rec());
        }
        assert!(t0.elapsed() < Duration::from_millis(100));
        assert_eq!(n.shared.queued.load(Ordering::Relaxed), QUEUE as u64);
        assert_eq!(n.shared.dropped_total.load(Ordering::Relaxed), 10);
    }

    #[test]
    fn cmdline_only_of_the_same_process() {
        let me = std::process::id();
        let stat = std::fs::read("/proc/self/stat").unwrap();
        let st = thrashguard_core::parse::pid::parse_stat(&stat).unwrap();
        let text = crate::procdir::victim_cmdline(Path::new("/proc"), ProcId { pid: Pid(me), start_time: st.start_time });
        assert!(!text.is_empty() && !text.contains('\0'), "{text:?}");
        assert_eq!(crate::procdir::victim_cmdline(Path::new("/proc"), ProcId { pid: Pid(me), start_time: st.start_time + 1 }), "");
        assert_eq!(crate::procdir::victim_cmdline(Path::new("/nonexistent"), ProcId { pid: Pid(me), start_time: st.start_time }), "");
    }
}
