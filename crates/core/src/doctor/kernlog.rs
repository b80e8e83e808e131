//! Rules whose evidence is the kernel log: allocations that failed, processes the OOM
//! killer took, and tasks the hung-task detector caught blocked.
//!
//! Owns `allocation-failures` (page allocation and SLUB failures, with the free-page reserve
//! settings and, for multi-page requests, the free blocks of /proc/buddyinfo), `oom-kills`
//! (the vmstat `oom_kill` counter over the window and since boot, with the victims the log
//! names) and `hung-tasks` (`blocked for more than N seconds` reports, told apart by what the
//! PSI memory and io stall shares say now). The log arrives parsed ([`KernelLog`]); must never read a file itself.

use super::window::Window;
use super::{Evidence, Fact, Finding, Outcome, Severity, ev};
use crate::parse::buddyinfo::Zone;
use crate::parse::kmsg::{Entry, Event, cannot_wait};

/// The kernel log as read at the edge.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelLog {
    /// Where it came from (`/dev/kmsg`, or the `--kmsg` file).
    pub source: String,
    /// Its events, in log order.
    pub entries: Vec<Entry>,
    /// Microseconds since boot now (/proc/uptime), to say how long ago an event was;
    /// `None` when unknown (a log from another machine or a captured tree without uptime).
    pub now_usec: Option<u64>,
}

impl KernelLog {
    /// `at 1234 s after boot (5 min ago)` for an entry.
    pub fn when(&self, e: &Entry) -> String {
        match (e.usec, self.now_usec) {
            (Some(u), Some(now)) if now >= u => format!("{} s after boot ({} ago)", u / 1_000_000, ago((now - u) / 1_000_000)),
            (Some(u), _) => format!("{} s after boot", u / 1_000_000),
            (None, _) => "time not logged".into(),
        }
    }

    /// Whether an entry is within `secs` of now.
    pub fn within(&self, e: &Entry, secs: u64) -> bool {
        match (e.usec, self.now_usec) {
            (Some(u), Some(now)) => now.saturating_sub(u) <= secs * 1_000_000,
            _ => false,
        }
    }
}

fn ago(s: u64) -> String {
    match s {
        0..120 => format!("{s} s"),
        120..7200 => format!("{} min", s / 60),
        7200..172_800 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

/// What `allocation-failures` needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocFacts {
    /// The kernel log.
    pub log: Fact<KernelLog>,
    /// vm.min_free_kbytes.
    pub min_free_kbytes: Fact<u64>,
    /// vm.watermark_scale_factor.
    pub watermark_scale_factor: Fact<u64>,
    /// MemTotal in KiB.
    pub mem_total_kib: Fact<u64>,
    /// /proc/buddyinfo.
    pub buddyinfo: Fact<Vec<Zone>>,
}

const VM_DOCS: &str = "https://docs.kernel.org/admin-guide/sysctl/vm.html#min-free-kbytes";

/// The min_free_kbytes the fix suggests: twice the current value, at most 2 % of RAM; `None`
/// when it is already there.
pub fn doubled_reserve(min_free: u64, mem_total_kib: Option<u64>) -> Option<u64> {
    let cap = mem_total_kib.map_or(u64::MAX, |t| t / 50);
    let s = min_free.saturating_mul(2).min(cap);
    (s > min_free).then_some(s)
}

/// The fix lines for a reserve too small: min_free_kbytes doubled (capped) and
/// watermark_scale_factor doubled (at most 1000), each persisted.
pub fn reserve_fix(min_free: Option<u64>, wsf: Option<u64>, mem_total_kib: Option<u64>) -> String {
    let mut lines = vec![];
    let mut keep = vec![];
    if let Some(v) = min_free.and_then(|m| doubled_reserve(m, mem_total_kib)) {
        lines.push(format!("sysctl -w vm.min_free_kbytes={v}"));
        keep.push(format!("vm.min_free_kbytes = {v}"));
    }
    if let Some(w) = wsf {
        let to = w.saturating_mul(2).clamp(w, 1000);
        if to > w {
            lines.push(format!("sysctl -w vm.watermark_scale_factor={to}"));
            keep.push(format!("vm.watermark_scale_factor = {to}"));
        }
    }
    if lines.is_empty() {
        return "the reserve is already large (2 % of RAM, watermark_scale_factor 1000): find what allocates in \
                interrupt context (the process named above, often a network driver) and give the machine more memory"
            .into();
    }
    format!("{}\nto keep it: printf '{}\\n' > /etc/sysctl.d/90-thrashguard.conf", lines.join("\n"), keep.join("\\n"))
}

/// `allocation-failures`.
pub fn allocation_failures(f: &AllocFacts) -> Outcome {
    let log = match &f.log {
        Ok(l) => l,
        Err(why) => return Outcome::NotChecked(why.clone()),
    };
    let failures: Vec<&Entry> =
        log.entries.iter().filter(|e| matches!(e.event, Event::AllocFailure { .. } | Event::SlubFailure { .. })).collect();
    if failures.is_empty() {
        return Outcome::Clear(vec![ev("kernel log", format!("{}: {} events, no allocation failure", log.source, log.entries.len()))]);
    }
    let atomic = failures
        .iter()
        .filter(|e| match &e.event {
            Event::AllocFailure { mode, flags, .. } => cannot_wait(mode, flags),
            Event::SlubFailure { gfp } => {
                let (mode, flags) = gfp.split_once('(').map_or((gfp.as_str(), ""), |(m, f)| (m, f.trim_end_matches(')')));
                cannot_wait(mode, flags)
            }
            _ => false,
        })
        .count();
    let max_order = failures.iter().filter_map(|e| if let Event::AllocFailure { order, .. } = e.event { Some(order) } else { None }).max();
    let mut evidence = vec![ev("kernel log", log.source.clone())];
    for e in failures.iter().rev().take(5) {
        let (name, value) = match &e.event {
            Event::AllocFailure { comm, order, mode, flags } => {
                let names = if flags.is_empty() { String::new() } else { format!("({flags})") };
                (format!("page allocation failure by {comm}"), format!("order:{order} mode:{mode}{names}, {}", log.when(e)))
            }
            Event::SlubFailure { gfp } => ("SLUB allocation failure".to_string(), format!("gfp={gfp}, {}", log.when(e))),
            _ => continue,
        };
        evidence.push(ev(name, value));
    }
    if failures.len() > 5 {
        evidence.push(ev("earlier failures not listed", failures.len() - 5));
    }
    let min_free = f.min_free_kbytes.as_ref().ok().copied();
    let wsf = f.watermark_scale_factor.as_ref().ok().copied();
    let total = f.mem_total_kib.as_ref().ok().copied();
    for (name, v) in [("vm.min_free_kbytes", &f.min_free_kbytes), ("vm.watermark_scale_factor", &f.watermark_scale_factor)] {
        evidence.push(ev(name, v.as_ref().map_or_else(|e| format!("unknown ({e})"), u64::to_string)));
    }
    if let Some(t) = total {
        evidence.push(ev("MemTotal", format!("{} MiB", t / 1024)));
    }
    let mut fix = reserve_fix(min_free, wsf, total);
    let mut explanation = String::from(
        "The kernel could not find free pages for an allocation. Allocations that cannot wait (GFP_ATOMIC, \
         GFP_NOWAIT: network receive, interrupt handlers) only get the small reserve kept below the min watermark, \
         so when it runs dry packets are dropped and drivers fail. A larger vm.min_free_kbytes (or \
         watermark_scale_factor, which makes kswapd start earlier) keeps more of it free.",
    );
    if let Some(order) = max_order.filter(|&o| o >= 1) {
        match &f.buddyinfo {
            Ok(zones) => {
                for z in zones.iter().filter(|z| z.name != "DMA") {
                    evidence.push(ev(
                        format!("free blocks of order >= {order}, node {} zone {}", z.node, z.name),
                        format!("{} (order 0: {})", z.blocks_from(order as usize), z.free.first().copied().unwrap_or(0)),
                    ));
                }
            }
            Err(why) => evidence.push(ev("buddyinfo", format!("unknown ({why})"))),
        }
        explanation.push_str(&format!(
            " An order-{order} request needs {} contiguous pages: free memory broken into single pages (see the \
             free blocks per order) cannot serve it, so fragmentation, not only the amount free, is the cause.",
            1u64 << order.min(20)
        ));
        fix.push_str(
            "\nas a one-off, compact memory now: echo 1 > /proc/sys/vm/compact_memory\n\
             for network drivers with jumbo frames (MTU 9000) use a smaller MTU or a driver that receives into single pages",
        );
    }
    let title = format!(
        "{} allocation failure{} in the kernel log ({atomic} that could not wait){}",
        failures.len(),
        if failures.len() == 1 { "" } else { "s" },
        max_order.map_or(String::new(), |o| format!(", up to order {o}"))
    );
    Outcome::Found(Finding { id: "allocation-failures", severity: Severity::Warning, title, evidence, explanation, fix, docs: VM_DOCS })
}

/// What `oom-kills` needs.
#[derive(Clone, Debug, PartialEq)]
pub struct OomFacts {
    /// /proc/vmstat over the window (`oom_kill`, since 4.13).
    pub vmstat: Fact<Window>,
    /// The kernel log.
    pub log: Fact<KernelLog>,
}

/// How recent a kill in the log must be to count as a warning without a window rise.
pub const RECENT_SECS: u64 = 3600;

fn constraint_text(c: Option<&str>) -> &'static str {
    match c {
        Some("CONSTRAINT_NONE") => "global (the whole machine ran out)",
        Some("CONSTRAINT_MEMCG") => "memory cgroup limit",
        Some("CONSTRAINT_CPUSET") => "cpuset (its allowed nodes ran out)",
        Some("CONSTRAINT_MEMORY_POLICY") => "memory policy (its allowed nodes ran out)",
        Some(_) => "other",
        None => "not logged (kernel before 4.19)",
    }
}

/// `oom-kills`.
pub fn oom_kills(f: &OomFacts) -> Outcome {
    if let (Err(a), Err(b)) = (&f.vmstat, &f.log) {
        return Outcome::NotChecked(format!("{a}; {b}"));
    }
    let mut evidence: Vec<Evidence> = vec![];
    let (total, delta, seconds) = match &f.vmstat {
        Ok(w) => {
            evidence.push(w.evidence("oom_kill"));
            (w.total("oom_kill"), w.delta("oom_kill"), w.seconds)
        }
        Err(why) => {
            evidence.push(ev("oom_kill", format!("unknown ({why})")));
            (None, None, 0.0)
        }
    };
    let kills: Vec<&Entry> = match &f.log {
        Ok(log) => log.entries.iter().filter(|e| matches!(e.event, Event::OomKill { .. })).collect(),
        Err(_) => vec![],
    };
    let mut recent = false;
    let mut memcg = 0;
    match &f.log {
        Ok(log) => {
            evidence.push(ev("kernel log", format!("{}: {} OOM kill(s) logged", log.source, kills.len())));
            for e in kills.iter().rev().take(5) {
                if let Event::OomKill { pid, comm, anon_rss_kib, constraint } = &e.event {
                    let rss = anon_rss_kib.map_or("anon-rss not logged".into(), |k| format!("anon-rss {} MiB", k / 1024));
                    evidence.push(ev(
                        format!("killed {comm} (pid {pid})"),
                        format!("{rss}, constraint: {}, {}", constraint_text(constraint.as_deref()), log.when(e)),
                    ));
                }
            }
            recent = kills.iter().any(|e| log.within(e, RECENT_SECS));
            memcg =
                kills.iter().filter(|e| matches!(&e.event, Event::OomKill { constraint: Some(c), .. } if c == "CONSTRAINT_MEMCG")).count();
        }
        Err(why) => evidence.push(ev("kernel log", format!("not read ({why}): victims unknown"))),
    }
    let since_boot = total.unwrap_or(0).max(kills.len() as u64);
    if since_boot == 0 && delta.unwrap_or(0) == 0 {
        return Outcome::Clear(evidence);
    }
    let (severity, title) = match delta {
        Some(d) if d > 0 => (Severity::Warning, format!("the OOM killer killed {d} process(es) in the last {seconds:.0} s")),
        _ if recent => (Severity::Warning, format!("the OOM killer killed a process within the last {} min", RECENT_SECS / 60)),
        _ => (Severity::Info, format!("the OOM killer has killed {since_boot} process(es) since boot, none recently")),
    };
    let fix = if memcg > 0 && memcg == kills.len() {
        "every logged kill hit a memory cgroup limit: raise that cgroup's limit (systemctl set-property UNIT \
         MemoryMax=...; persisted in the unit's drop-in) or fix the leak in the killed program; \
         its memory.events counts each oom_kill"
            .to_string()
    } else {
        "find what grew (the victim is often the largest, not the culprit): `journalctl -k -g 'invoked oom-killer'` \
         names the task whose allocation failed. Then add memory or swap, cap the culprit with a cgroup limit \
         (systemctl set-property UNIT MemoryMax=...), or let thrashguard act earlier, before the kernel must kill"
            .to_string()
    };
    Outcome::Found(Finding {
        id: "oom-kills",
        severity,
        title,
        evidence,
        explanation: "The kernel's OOM killer ends a process with SIGKILL when an allocation cannot be satisfied \
                      even after reclaim. The process loses its work without a chance to save it, and a machine \
                      usually thrashes for a while before the kernel gives up. A kill inside a memory cgroup means \
                      that group hit its own limit; a global one means the whole machine ran out."
            .into(),
        fix,
        docs: "https://docs.kernel.org/admin-guide/mm/concepts.html#oom-killer",
    })
}

/// What `hung-tasks` needs.
#[derive(Clone, Debug, PartialEq)]
pub struct HungFacts {
    /// The kernel log.
    pub log: Fact<KernelLog>,
    /// PSI totals over the window (`memory full total_us`, `io full total_us`).
    pub pressure: Fact<Window>,
    /// kernel.hung_task_timeout_secs (0: the detector is off).
    pub timeout_secs: Fact<u64>,
}

/// PSI full stall share over the window, percent, above which `hung-tasks` blames that
/// resource for blocked tasks now.
pub const HUNG_BLAME_FULL_PCT: f64 = 10.0;

/// `hung-tasks`.
pub fn hung_tasks(f: &HungFacts) -> Outcome {
    let log = match &f.log {
        Ok(log) => log,
        Err(why) => return Outcome::NotChecked(why.clone()),
    };
    let hung: Vec<&Entry> = log.entries.iter().filter(|e| matches!(e.event, Event::HungTask { .. })).collect();
    let mut evidence = vec![ev("kernel log", format!("{}: {} hung-task report(s)", log.source, hung.len()))];
    match &f.timeout_secs {
        Ok(0) => evidence.push(ev("kernel.hung_task_timeout_secs", "0 (the detector is off: blocked tasks go unreported)")),
        Ok(t) => evidence.push(ev("kernel.hung_task_timeout_secs", t.to_string())),
        Err(why) => evidence.push(ev("kernel.hung_task_timeout_secs", format!("unknown ({why})"))),
    }
    if hung.is_empty() {
        return Outcome::Clear(evidence);
    }
    for e in hung.iter().rev().take(5) {
        if let Event::HungTask { comm, seconds } = &e.event {
            evidence.push(ev(format!("blocked: {comm}"), format!("more than {seconds} s, {}", log.when(e))));
        }
    }
    let share = |name: &str| f.pressure.as_ref().ok().filter(|w| w.seconds > 0.0).and_then(|w| w.stall_pct(name));
    let (mem, io) = (share("memory full total_us"), share("io full total_us"));
    for (label, v) in [("PSI memory full now", mem), ("PSI io full now", io)] {
        evidence.push(ev(label, v.map_or("not sampled".into(), |v| format!("{v:.1} %"))));
    }
    let recent = hung.iter().any(|e| log.within(e, RECENT_SECS));
    let (severity, title) = if recent {
        (Severity::Warning, format!("{} task(s) blocked for minutes, the last within {} min", hung.len(), RECENT_SECS / 60))
    } else {
        (Severity::Info, format!("{} hung-task report(s) since boot, none recently", hung.len()))
    };
    let fix = match (mem, io) {
        (Some(m), _) if m >= HUNG_BLAME_FULL_PCT => format!(
            "memory stalls now ({m:.0} % full): tasks wait on page faults and reclaim. See the `thrashing` finding: \
             stop or cap the process that grows (systemctl set-property UNIT MemoryMax=...), add memory or swap, \
             or let thrashguard rescue the machine before tasks block"
        ),
        (_, Some(i)) if i >= HUNG_BLAME_FULL_PCT => format!(
            "I/O stalls now ({i:.0} % full): the tasks wait on storage. Find the slow device (`iostat -x 1`: \
             await and %util), the kernel log for disk or NFS errors, and who writes (`iotop -o`)"
        ),
        _ => "nothing stalls now. When it happens again, list the blocked tasks and where they wait: \
              `echo w > /proc/sysrq-trigger` (needs kernel.sysrq to allow it) and `journalctl -k`, or \
              `cat /proc/PID/stack` of tasks in state D (`ps -eo pid,stat,wchan:32,comm | awk '$2 ~ /D/'`)"
            .into(),
    };
    Outcome::Found(Finding {
        id: "hung-tasks",
        severity,
        title,
        evidence,
        explanation: "The kernel's hung-task detector reports a task that stayed in uninterruptible sleep (state D) \
                      longer than kernel.hung_task_timeout_secs. Such a task waits for the kernel itself: for a \
                      disk or network file system to answer, for a lock, or, on a thrashing machine, for its own \
                      pages to come back from swap or for reclaim. What stalls now tells which."
            .into(),
        fix,
        docs: "https://docs.kernel.org/admin-guide/sysctl/kernel.html#hung-task-timeout-secs",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::window::Counters;
    use crate::parse::kmsg;

    fn log(text: &str, now_s: u64) -> Fact<KernelLog> {
        Ok(KernelLog { source: "/dev/kmsg".into(), entries: kmsg::parse(text), now_usec: Some(now_s * 1_000_000) })
    }

    fn alloc(text: &str) -> AllocFacts {
        AllocFacts {
            log: log(text, 100_000),
            min_free_kbytes: Ok(67_584),
            watermark_scale_factor: Ok(10),
            mem_total_kib: Ok(24 * 1024 * 1024),
            buddyinfo: crate::parse::buddyinfo::parse("buddyinfo", include_bytes!("../../tests/fixtures/proc/6.18.44-host/buddyinfo"))
                .map_err(|e| e.to_string()),
        }
    }

    #[test]
    fn allocation_failures_fire_on_any_failure() {
        assert!(matches!(allocation_failures(&alloc(include_str!("../../tests/fixtures/kmsg/6.18.44-host.kmsg"))), Outcome::Clear(_)));
        let Outcome::Found(f) = allocation_failures(&alloc(
            "[86554.227453] irq/5-600c0004.: page allocation failure: order:0, mode:0x820(GFP_ATOMIC), nodemask=(null)\n",
        )) else {
            panic!()
        };
        assert_eq!(f.severity, Severity::Warning);
        assert!(f.title.contains("1 allocation failure") && f.title.contains("1 that could not wait"), "{}", f.title);
        assert!(f.fix.contains("vm.min_free_kbytes=135168") && f.fix.contains("vm.watermark_scale_factor=20"), "{}", f.fix);
        assert!(!f.evidence.iter().any(|e| e.name.contains("free blocks")), "order 0: no buddyinfo");
        assert!(
            f.evidence.iter().any(|e| e.value.contains("order:0 mode:0x820(GFP_ATOMIC), 86554 s after boot (3 h ago)")),
            "{:?}",
            f.evidence
        );
        let Outcome::Found(f) = allocation_failures(&alloc(include_str!("../../tests/fixtures/kmsg/public-reports.log"))) else { panic!() };
        assert!(
            f.title.starts_with("8 allocation failures") && f.title.contains("6 that could not wait") && f.title.contains("order 5"),
            "{}",
            f.title
        );
        let frag = f.evidence.iter().find(|e| e.name == "free blocks of order >= 5, node 0 zone Normal").unwrap();
        assert_eq!(frag.value, "559 (order 0: 250)");
        assert!(f.fix.contains("compact_memory"));
    }

    #[test]
    fn reserve_fix_caps() {
        assert_eq!(doubled_reserve(67_584, Some(24 * 1024 * 1024)), Some(135_168));
        assert_eq!(doubled_reserve(500_000, Some(24 * 1024 * 1024)), Some(503_316));
        assert_eq!(doubled_reserve(503_316, Some(24 * 1024 * 1024)), None);
        assert!(reserve_fix(Some(503_316), Some(1000), Some(24 * 1024 * 1024)).contains("already large"));
        assert!(reserve_fix(None, Some(600), None).contains("watermark_scale_factor=1000"));
    }

    #[test]
    fn allocation_failures_not_checked_without_a_log() {
        let f = AllocFacts { log: Err("/dev/kmsg: permission denied".into()), ..alloc("") };
        assert_eq!(allocation_failures(&f), Outcome::NotChecked("/dev/kmsg: permission denied".into()));
        // the rest unknown still reports, saying so
        let f = AllocFacts {
            min_free_kbytes: Err("no file".into()),
            buddyinfo: Err("no buddyinfo".into()),
            ..alloc("x: page allocation failure: order:3, mode:0xd0\n")
        };
        let Outcome::Found(f) = allocation_failures(&f) else { panic!() };
        assert!(f.evidence.iter().any(|e| e.value == "unknown (no buddyinfo)"));
    }

    fn vm(first: u64, last: u64, seconds: f64) -> Fact<Window> {
        let mut a = Counters::default();
        a.set("oom_kill", first);
        let mut b = Counters::default();
        b.set("oom_kill", last);
        Ok(Window { first: a, last: b, seconds })
    }

    const KILL: &str = "[ 7063.247407] Memory cgroup out of memory: Killed process 63214 (uwsgi) total-vm:3149468kB, anon-rss:164992kB\n";

    fn sev(o: Outcome) -> Option<Severity> {
        if let Outcome::Found(f) = o { Some(f.severity) } else { None }
    }

    #[test]
    fn oom_kills_by_window_recency_and_boot() {
        assert!(matches!(oom_kills(&OomFacts { vmstat: vm(0, 0, 5.0), log: log("", 8000) }), Outcome::Clear(_)));
        assert_eq!(sev(oom_kills(&OomFacts { vmstat: vm(1, 2, 5.0), log: log("", 8000) })), Some(Severity::Warning));
        // logged 937 s ago: recent
        let Outcome::Found(f) = oom_kills(&OomFacts { vmstat: vm(1, 1, 5.0), log: log(KILL, 8000) }) else { panic!() };
        assert_eq!(f.severity, Severity::Warning);
        let victim = f.evidence.iter().find(|e| e.name == "killed uwsgi (pid 63214)").unwrap();
        assert!(victim.value.contains("anon-rss 161 MiB") && victim.value.contains("memory cgroup limit"), "{victim:?}");
        assert!(f.fix.contains("MemoryMax"));
        // a day later: info
        assert_eq!(sev(oom_kills(&OomFacts { vmstat: vm(1, 1, 5.0), log: log(KILL, 90_000) })), Some(Severity::Info));
        // no window (--window 0): since boot only
        assert_eq!(sev(oom_kills(&OomFacts { vmstat: vm(3, 3, 0.0), log: Err("no log".into()) })), Some(Severity::Info));
        // the log alone
        assert_eq!(sev(oom_kills(&OomFacts { vmstat: Err("no vmstat".into()), log: log(KILL, 90_000) })), Some(Severity::Info));
        assert!(matches!(oom_kills(&OomFacts { vmstat: Err("a".into()), log: Err("b".into()) }), Outcome::NotChecked(_)));
    }

    fn hung(text: &str, pressure: Fact<Window>) -> HungFacts {
        HungFacts { log: log(text, 10_000), pressure, timeout_secs: Ok(120) }
    }

    fn psi(mem_full_us: u64, io_full_us: u64) -> Fact<Window> {
        let mut a = Counters::default();
        a.set("memory full total_us", 0);
        a.set("io full total_us", 0);
        let mut b = Counters::default();
        b.set("memory full total_us", mem_full_us);
        b.set("io full total_us", io_full_us);
        Ok(Window { first: a, last: b, seconds: 5.0 })
    }

    const HUNG: &str = "[ 9000.000000] INFO: task kworker/u8:2:123 blocked for more than 122 seconds.\n\
                        [ 9500.000000] INFO: task postgres:4242 blocked for more than 245 seconds.\n";

    #[test]
    fn hung_tasks_recent_blame_what_stalls_now() {
        let Outcome::Found(f) = hung_tasks(&hung(HUNG, psi(2_000_000, 0))) else { panic!("fires") };
        assert_eq!(f.severity, Severity::Warning);
        assert!(f.title.starts_with("2 task(s)"), "{}", f.title);
        assert!(f.evidence.iter().any(|e| e.name == "blocked: postgres" && e.value.contains("245")), "{:?}", f.evidence);
        assert!(f.evidence.iter().any(|e| e.name == "blocked: kworker/u8:2"), "comm with a colon: {:?}", f.evidence);
        assert!(f.fix.starts_with("memory stalls now (40 %"), "{}", f.fix);
        let Outcome::Found(f) = hung_tasks(&hung(HUNG, psi(0, 1_000_000))) else { panic!("fires") };
        assert!(f.fix.starts_with("I/O stalls now (20 %"), "{}", f.fix);
        let Outcome::Found(f) = hung_tasks(&hung(HUNG, Err("no PSI".into()))) else { panic!("fires") };
        assert!(f.fix.contains("sysrq"), "{}", f.fix);
    }

    #[test]
    fn hung_tasks_long_ago_are_info_and_none_is_clear() {
        let mut facts = hung(HUNG, psi(0, 0));
        facts.log = log(HUNG, 100_000);
        let Outcome::Found(f) = hung_tasks(&facts) else { panic!("fires") };
        assert_eq!(f.severity, Severity::Info);
        assert!(matches!(hung_tasks(&hung("[ 1.0] eth0: link up\n", psi(0, 0))), Outcome::Clear(_)));
        let mut off = hung("", psi(0, 0));
        off.timeout_secs = Ok(0);
        let Outcome::Clear(ev) = hung_tasks(&off) else { panic!("clear") };
        assert!(ev.iter().any(|e| e.value.starts_with("0 (the detector is off")));
        assert!(matches!(hung_tasks(&HungFacts { log: Err("/dev/kmsg: permission denied".into()), ..off }), Outcome::NotChecked(_)));
    }
}
