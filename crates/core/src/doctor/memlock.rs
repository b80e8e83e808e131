//! Rule `memory-lock` (doctor-checks.md #6, "Memory locking effective"): a process that
//! asked to keep its memory locked, but is not (or only partly), can be swapped out.
//!
//! Owns the per-process lock facts ([`LockProc`]: VmLck, VmPin, VmRSS, the soft
//! RLIMIT_MEMLOCK, and who wants a lock: the guard daemon itself, or a workload configured
//! to lock such as Elasticsearch with `bootstrap.memory_lock=true`), the parser of the
//! `Max locked memory` line of /proc/PID/limits, and the rule. Must never read a file
//! itself: the edge (crates/thrashguard/src/doctor_procs.rs) fills the facts.

use super::memfacts::size;
use super::{Evidence, Fact, Issue, Outcome, Severity, ev, worst_of};
use crate::units::Kib;

/// A lock smaller than this share of the process's RSS is "far below" it, percent
/// (*proposed*; the design's anchor for our own daemon is VmLck ≈ VmRSS, and mlockall locks
/// every mapping, so a fully locked process has VmLck >= VmRSS).
pub const PARTIAL_PCT: f64 = 50.0;
/// A lock of at least this share of the soft RLIMIT_MEMLOCK ran into the limit, percent
/// (*proposed*: a process that locks a small secret buffer, as gpg-agent or sshd do, stays
/// far below its limit; one capped by it stops right at it).
pub const AT_LIMIT_PCT: f64 = 90.0;

const DOCS_LIMIT: &str = "https://www.freedesktop.org/software/systemd/man/latest/systemd.exec.html#LimitCPU=";
const DOCS_ES: &str =
    "https://www.elastic.co/guide/en/elasticsearch/reference/current/setup-configuration-memory.html#bootstrap-memory_lock";
const DOCS_GUARD: &str = "docs/lifeline.md";

/// The soft `Max locked memory` limit of /proc/PID/limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// `unlimited` (or RLIM_INFINITY).
    Unlimited,
    /// The soft limit (the file gives bytes; rounded down to KiB).
    Soft(Kib),
    /// The file or its line could not be read.
    Unknown,
}

impl Limit {
    /// For evidence: `64 MiB`, `unlimited`, `unknown`.
    pub fn describe(self) -> String {
        match self {
            Limit::Unlimited => "unlimited".into(),
            Limit::Soft(k) => amount(k),
            Limit::Unknown => "unknown".into(),
        }
    }
}

/// A size for people, small ones in KiB: `64 KiB`, `8 MiB`, `2.0 GiB`.
pub fn amount(k: Kib) -> String {
    if k.0 < 1024 { format!("{} KiB", k.0) } else { size(k) }
}

/// The soft limit of the `Max locked memory` line of a /proc/PID/limits text.
pub fn memlock_soft_limit(limits: &str) -> Limit {
    let Some(rest) = limits.lines().find_map(|l| l.strip_prefix("Max locked memory")) else { return Limit::Unknown };
    match rest.split_whitespace().next() {
        Some("unlimited") => Limit::Unlimited,
        Some(n) => n.parse::<u64>().map_or(Limit::Unknown, |b| Limit::Soft(Kib(b / 1024))),
        None => Limit::Unknown,
    }
}

/// Why a process is expected to be locked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wants {
    /// Nothing says it wants a lock: judged only when a lock it took stopped at its limit.
    Unknown,
    /// A running `thrashguard daemon` (it locks itself with mlockall when it may).
    Guard,
    /// A workload configured to lock its memory; the text says how it was told to
    /// (`-Ebootstrap.memory_lock=true`).
    Configured(String),
}

/// Who wants a lock, from a process's comm and command-line arguments: the guard daemon,
/// or Elasticsearch told `bootstrap.memory_lock=true` on its command line (the Docker image
/// turns that environment variable into `-Ebootstrap.memory_lock=true`).
pub fn wants_lock(comm: &str, args: &[&str]) -> Wants {
    if comm == "thrashguard" && args.contains(&"daemon") {
        return Wants::Guard;
    }
    if let Some(a) = args.iter().find(|a| a.trim_start_matches("-E") == "bootstrap.memory_lock=true") {
        return Wants::Configured((*a).to_string());
    }
    Wants::Unknown
}

/// One process's locked memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockProc {
    /// Its pid.
    pub pid: u32,
    /// Its comm.
    pub comm: String,
    /// VmRSS.
    pub rss: Kib,
    /// VmLck (mlock'ed virtual memory).
    pub locked: Kib,
    /// VmPin (pinned by drivers/RDMA; 3.18+), when present.
    pub pinned: Option<Kib>,
    /// Its soft RLIMIT_MEMLOCK.
    pub limit: Limit,
    /// Why it is expected to be locked.
    pub wants: Wants,
}

/// What `memory-lock` needs: every user process (kernel threads have no VmRSS and are left
/// out), or why the process table could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockFacts {
    /// The processes.
    pub procs: Fact<Vec<LockProc>>,
}

fn share(locked: Kib, rss: Kib) -> f64 {
    if rss.0 == 0 { 100.0 } else { locked.pct_of(rss) }
}

fn partial(p: &LockProc) -> bool {
    share(p.locked, p.rss) < PARTIAL_PCT
}

fn capped(p: &LockProc) -> bool {
    match p.limit {
        Limit::Soft(l) => p.locked.0 > 0 && partial(p) && l < p.rss && p.locked.0 as f64 >= l.0 as f64 * AT_LIMIT_PCT / 100.0,
        Limit::Unlimited | Limit::Unknown => false,
    }
}

fn evidence_of(p: &LockProc) -> Vec<Evidence> {
    let mut e = vec![
        ev(format!("pid {} ({}) VmLck", p.pid, p.comm), format!("{} KiB ({:.0} % of VmRSS)", p.locked.0, share(p.locked, p.rss))),
        ev(format!("pid {} ({}) VmRSS", p.pid, p.comm), format!("{} KiB", p.rss.0)),
        ev(format!("pid {} ({}) Max locked memory (soft)", p.pid, p.comm), p.limit.describe()),
    ];
    if let Some(pin) = p.pinned.filter(|k| k.0 > 0) {
        e.push(ev(format!("pid {} ({}) VmPin", p.pid, p.comm), format!("{} KiB", pin.0)));
    }
    if let Wants::Configured(how) = &p.wants {
        e.push(ev(format!("pid {} ({}) asked for a lock", p.pid, p.comm), how));
    }
    e
}

fn limit_fix(p: &LockProc) -> String {
    format!(
        "raise the memlock limit of pid {pid} ({comm}) and restart it: find its unit with systemctl status {pid}, then \
         systemctl edit <unit> and add\n  [Service]\n  LimitMEMLOCK=infinity\n(a drop-in in /etc/systemd/system/<unit>.d/); \
         started from a shell: ulimit -l unlimited first, or for its user in /etc/security/limits.conf: \
         <user> soft memlock unlimited and <user> hard memlock unlimited",
        pid = p.pid,
        comm = p.comm
    )
}

fn issue(p: &LockProc) -> Option<Issue> {
    let lck = amount(p.locked);
    let rss = amount(p.rss);
    match &p.wants {
        Wants::Guard if p.locked.0 == 0 => Some(Issue {
            severity: Severity::Warning,
            title: format!("the guard (pid {}) is not locked in memory: it can be swapped out", p.pid),
            explanation: "A guard that can be swapped out stalls with everything else when the machine thrashes, and \
                          reacts late. It locks itself with mlockall at start when it may (root, CAP_IPC_LOCK, or an \
                          RLIMIT_MEMLOCK above its size) and logs a warning when it cannot.",
            fix: format!(
                "run it as root, or give its unit AmbientCapabilities=CAP_IPC_LOCK and LimitMEMLOCK=infinity \
                 (systemctl edit thrashguard), keep guard.lock_memory = true, then restart it (its limit now: {})",
                p.limit.describe()
            ),
            docs: DOCS_GUARD,
        }),
        Wants::Guard if partial(p) => Some(Issue {
            severity: Severity::Warning,
            title: format!("the guard (pid {}) has only {lck} of its {rss} resident memory locked", p.pid),
            explanation: "mlockall locks every mapping, so a locked guard has VmLck at least its VmRSS. Less means the \
                          lock failed for later mappings (the memlock limit ran out) and those pages can be swapped out.",
            fix: format!(
                "give its unit LimitMEMLOCK=infinity (systemctl edit thrashguard; its limit now: {}) or \
                 AmbientCapabilities=CAP_IPC_LOCK, then restart it",
                p.limit.describe()
            ),
            docs: DOCS_GUARD,
        }),
        Wants::Configured(how) if partial(p) => Some(Issue {
            severity: Severity::Warning,
            title: format!("{} (pid {}) asked to lock its memory ({how}) but has only {lck} of {rss} locked", p.comm, p.pid),
            explanation: "Elasticsearch with bootstrap.memory_lock=true calls mlockall at start; when the memlock \
                          limit is too small the call fails and the heap can be swapped out, which turns garbage \
                          collections into seconds-long stalls. Elasticsearch's own bootstrap check (MlockallCheck) \
                          refuses to start in production mode for this reason.",
            fix: limit_fix(p),
            docs: DOCS_ES,
        }),
        Wants::Unknown if capped(p) => Some(Issue {
            severity: Severity::Warning,
            title: format!(
                "{} (pid {}) locked {lck} of its {rss} and stopped at its memlock limit ({})",
                p.comm,
                p.pid,
                p.limit.describe()
            ),
            explanation: "The process locks its memory, but the lock stopped where its soft RLIMIT_MEMLOCK ends: the \
                          rest can be swapped out, and further mlock calls fail with ENOMEM. Databases and search \
                          engines that lock memory (Elasticsearch, MongoDB, PostgreSQL with huge pages) expect the \
                          limit to be raised for them.",
            fix: limit_fix(p),
            docs: DOCS_LIMIT,
        }),
        _ => None,
    }
}

/// `memory-lock`.
pub fn memory_lock(f: &LockFacts) -> Outcome {
    let procs = match &f.procs {
        Ok(p) => p,
        Err(why) => return Outcome::NotChecked(why.clone()),
    };
    let mut issues = vec![];
    let mut evidence = vec![
        ev("processes with locked memory (VmLck > 0)", procs.iter().filter(|p| p.locked.0 > 0).count()),
        ev("guard daemons", procs.iter().filter(|p| p.wants == Wants::Guard).count()),
    ];
    for p in procs {
        if let Some(i) = issue(p) {
            evidence.extend(evidence_of(p));
            issues.push(i);
        }
    }
    worst_of("memory-lock", issues, evidence)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(pid: u32, comm: &str, rss_kib: u64, lck_kib: u64, limit: Limit, wants: Wants) -> LockProc {
        LockProc { pid, comm: comm.into(), rss: Kib(rss_kib), locked: Kib(lck_kib), pinned: Some(Kib(0)), limit, wants }
    }

    fn run(procs: Vec<LockProc>) -> Outcome {
        memory_lock(&LockFacts { procs: Ok(procs) })
    }

    const DEFAULT_LIMIT: Limit = Limit::Soft(Kib(8192)); // 8 MiB, systemd's default since v253

    #[test]
    fn limits_line() {
        let t = "Limit                     Soft Limit           Hard Limit           Units     \n\
                 Max open files            1024                 524288               files     \n\
                 Max locked memory         8388608              8388608              bytes     \n";
        assert_eq!(memlock_soft_limit(t), Limit::Soft(Kib(8192)));
        assert_eq!(memlock_soft_limit("Max locked memory         unlimited            unlimited            bytes\n"), Limit::Unlimited);
        assert_eq!(memlock_soft_limit("Max locked memory lots\n"), Limit::Unknown);
        assert_eq!(memlock_soft_limit("Max open files 1024 1024 files\n"), Limit::Unknown);
        assert_eq!(Limit::Soft(Kib(64)).describe(), "64 KiB");
        assert_eq!(Limit::Soft(Kib(8192)).describe(), "8 MiB");
    }

    #[test]
    fn who_wants_a_lock() {
        assert_eq!(wants_lock("thrashguard", &["/usr/bin/thrashguard", "daemon"]), Wants::Guard);
        assert_eq!(wants_lock("thrashguard", &["/usr/bin/thrashguard", "doctor"]), Wants::Unknown);
        assert_eq!(
            wants_lock(
                "java",
                &[
                    "/usr/share/elasticsearch/jdk/bin/java",
                    "-Xms4g",
                    "org.elasticsearch.bootstrap.Elasticsearch",
                    "-Ebootstrap.memory_lock=true"
                ]
            ),
            Wants::Configured("-Ebootstrap.memory_lock=true".into())
        );
        assert_eq!(wants_lock("java", &["java", "-Ebootstrap.memory_lock=false"]), Wants::Unknown);
    }

    #[test]
    fn a_lock_capped_by_the_limit_fires() {
        // a database locked 8 MiB of its 2 GiB and stopped at the 8 MiB default limit
        let Outcome::Found(f) = run(vec![proc(900, "mydb", 2 << 20, 8192, DEFAULT_LIMIT, Wants::Unknown)]) else { panic!() };
        assert_eq!((f.id, f.severity), ("memory-lock", Severity::Warning));
        assert_eq!(f.title, "mydb (pid 900) locked 8 MiB of its 2.0 GiB and stopped at its memlock limit (8 MiB)");
        assert!(f.fix.contains("LimitMEMLOCK=infinity") && f.fix.contains("ulimit -l unlimited"), "{}", f.fix);
        assert!(f.fix.contains("/etc/security/limits.conf") && f.fix.contains("systemctl status 900"), "{}", f.fix);
        let text = format!("{:?}", f.evidence);
        assert!(text.contains("8192 KiB (0 % of VmRSS)") && text.contains("2097152 KiB") && text.contains("8 MiB"), "{text}");
    }

    #[test]
    fn small_intentional_locks_and_full_locks_do_not() {
        // gpg-agent locks its 64 KiB secure memory: far below the limit
        assert!(matches!(run(vec![proc(10, "gpg-agent", 4096, 64, DEFAULT_LIMIT, Wants::Unknown)]), Outcome::Clear(_)));
        // locked at the limit, but the limit is larger than the process: it got all it asked for
        assert!(matches!(run(vec![proc(11, "tiny", 4000, 8000, DEFAULT_LIMIT, Wants::Unknown)]), Outcome::Clear(_)));
        // unlimited: nothing capped it
        assert!(matches!(run(vec![proc(12, "db", 2 << 20, 8192, Limit::Unlimited, Wants::Unknown)]), Outcome::Clear(_)));
        // an unknown limit is never guessed at
        assert!(matches!(run(vec![proc(13, "db", 2 << 20, 8192, Limit::Unknown, Wants::Unknown)]), Outcome::Clear(_)));
        // a process that locks nothing and was not asked to
        assert!(matches!(run(vec![proc(14, "bash", 5000, 0, DEFAULT_LIMIT, Wants::Unknown)]), Outcome::Clear(_)));
    }

    #[test]
    fn elasticsearch_asked_to_lock() {
        let es = |lck| proc(2000, "java", 4 << 20, lck, Limit::Soft(Kib(64)), Wants::Configured("-Ebootstrap.memory_lock=true".into()));
        let Outcome::Found(f) = run(vec![es(0)]) else { panic!() };
        assert_eq!(f.severity, Severity::Warning);
        assert!(f.title.starts_with("java (pid 2000) asked to lock its memory (-Ebootstrap.memory_lock=true)"), "{}", f.title);
        assert!(f.explanation.contains("MlockallCheck"));
        assert!(f.fix.contains("LimitMEMLOCK=infinity"));
        // locked: VmLck covers the heap
        assert!(matches!(run(vec![es(5 << 20)]), Outcome::Clear(_)));
    }

    #[test]
    fn the_guard_itself() {
        let guard = |lck| proc(4321, "thrashguard", 2280, lck, DEFAULT_LIMIT, Wants::Guard);
        let Outcome::Found(f) = run(vec![guard(0)]) else { panic!() };
        assert_eq!(f.severity, Severity::Warning);
        assert_eq!(f.title, "the guard (pid 4321) is not locked in memory: it can be swapped out");
        assert!(f.fix.contains("CAP_IPC_LOCK") && f.fix.contains("LimitMEMLOCK=infinity"), "{}", f.fix);
        let Outcome::Found(f) = run(vec![guard(500)]) else { panic!() };
        assert!(f.title.contains("only 500 KiB of its 2 MiB"), "{}", f.title);
        // mlockall: VmLck (the locked mappings) is above VmRSS
        let Outcome::Clear(e) = run(vec![guard(8720)]) else { panic!() };
        assert!(e.iter().any(|e| e.name == "guard daemons" && e.value == "1"));
    }

    #[test]
    fn several_at_once_and_not_checked() {
        let Outcome::Found(f) = run(vec![
            proc(900, "mydb", 2 << 20, 8192, DEFAULT_LIMIT, Wants::Unknown),
            proc(4321, "thrashguard", 2280, 0, DEFAULT_LIMIT, Wants::Guard),
        ]) else {
            panic!()
        };
        assert!(f.evidence.iter().any(|e| e.name == "also"), "{:?}", f.evidence);
        assert!(f.fix.contains("CAP_IPC_LOCK") && f.fix.contains("ulimit -l"), "both fixes: {}", f.fix);
        assert!(matches!(memory_lock(&LockFacts { procs: Err("/proc: no process directories".into()) }), Outcome::NotChecked(_)));
    }
}
