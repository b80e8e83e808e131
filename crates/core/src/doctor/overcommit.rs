//! Rules about the kernel's overcommit policy against the workload that runs.
//!
//! Owns `overcommit`: vm.overcommit_memory (with overcommit_ratio / overcommit_kbytes) and
//! CommitLimit against Committed_AS; strict accounting (mode 2) close to its limit, and the
//! workloads whose own documentation asks for a mode (Redis needs 1 to fork for BGSAVE,
//! PostgreSQL recommends 2, MongoDB warns on 2), each named by the process found running.
//! The anchors disagree, so the mode alone is never a finding. Must never read a file itself.

use super::memfacts::{MemFacts, size, sysctl_fix};
use super::{Finding, Outcome, Severity, ev};

/// Committed_AS above this share of CommitLimit under mode 2: allocations are about to fail
/// (doctor-checks.md #4, proposed).
pub const NEAR_LIMIT: f64 = 0.9;

const DOCS: &str = "https://docs.kernel.org/mm/overcommit-accounting.html";

fn meaning(mode: u64) -> &'static str {
    match mode {
        0 => "heuristic (refuse only obvious overcommits)",
        1 => "always overcommit",
        2 => "strict: refuse beyond CommitLimit",
        _ => "unknown mode",
    }
}

/// `overcommit`.
pub fn overcommit(f: &MemFacts) -> Outcome {
    let mode = match f.number("vm.overcommit_memory") {
        Ok(m) => m,
        Err(why) => return Outcome::NotChecked(why),
    };
    let mut evidence = vec![ev("vm.overcommit_memory", format!("{mode}: {}", meaning(mode)))];
    let ratio = f.number("vm.overcommit_ratio").ok();
    let kbytes = f.number("vm.overcommit_kbytes").ok();
    if mode == 2 {
        if let Some(r) = ratio {
            evidence.push(ev("vm.overcommit_ratio", format!("{r} %")));
        }
        if let Some(k) = kbytes.filter(|&k| k > 0) {
            evidence.push(ev("vm.overcommit_kbytes", format!("{k} KiB")));
        }
    }
    let commit = f.meminfo.as_ref().ok().and_then(|m| Some((m.kib("CommitLimit")?, m.kib("Committed_AS")?, m)));
    if let Some((limit, committed, _)) = commit {
        evidence.push(ev("CommitLimit", size(limit)));
        evidence.push(ev("Committed_AS", format!("{} ({:.0} % of CommitLimit)", size(committed), committed.pct_of(limit))));
    }
    let redis = f.running(&["redis-server"]);
    let postgres = f.running(&["postgres", "postmaster"]);
    let mongod = f.running(&["mongod"]);
    for p in redis.iter().chain(&postgres).chain(&mongod).take(4) {
        evidence.push(ev("workload", format!("{} (pid {})", p.comm, p.pid)));
    }
    let fix_mode = |m: u64| sysctl_fix("90-thrashguard-overcommit", &[("vm.overcommit_memory", m.to_string())]);

    // Strict accounting about to refuse allocations: harm whatever runs.
    if mode == 2
        && let Some((limit, committed, m)) = commit
        && committed.0 as f64 > NEAR_LIMIT * limit.0 as f64
    {
        // CommitLimit = swap + (RAM - hugetlb) x ratio / 100: the ratio that leaves 20 % headroom.
        let swap = m.kib("SwapTotal").unwrap_or_default().0;
        let hugetlb = m.get("HugePages_Total").unwrap_or(0).saturating_mul(m.get("Hugepagesize").unwrap_or(0));
        let ram = m.total().0.saturating_sub(hugetlb).max(1);
        let want = (committed.0 as f64 / 0.8 - swap as f64).max(0.0);
        let fix = if kbytes.is_some_and(|k| k > 0) {
            sysctl_fix("90-thrashguard-overcommit", &[("vm.overcommit_kbytes", format!("{:.0}", want))])
        } else {
            let r = (want * 100.0 / ram as f64).ceil() as u64;
            if r <= 100 {
                sysctl_fix("90-thrashguard-overcommit", &[("vm.overcommit_ratio", r.to_string())])
            } else {
                format!("no ratio up to 100 % is enough: add swap (it counts in full), or leave strict mode:\n{}", fix_mode(0))
            }
        };
        return Outcome::Found(Finding {
            id: "overcommit",
            severity: Severity::Warning,
            title: format!(
                "strict overcommit: {:.0} % of the commit limit is taken ({} of {})",
                committed.pct_of(limit),
                size(committed),
                size(limit)
            ),
            evidence,
            explanation: "With vm.overcommit_memory=2 the kernel refuses any allocation that would take Committed_AS \
                          past CommitLimit: malloc and mmap return ENOMEM and fork fails, even with free memory \
                          left. Past 90 % a routine fork or a burst of allocations is enough. With explicit huge \
                          pages the limit is computed from RAM minus the huge page pool."
                .into(),
            fix,
            docs: DOCS,
        });
    }
    let conflict = !redis.is_empty() && !postgres.is_empty();
    if conflict {
        evidence.push(ev("note", "redis-server and postgres run together and want opposite modes (1 and 2)"));
    }
    if let Some(r) = redis.first().filter(|_| mode != 1) {
        return Outcome::Found(Finding {
            id: "overcommit",
            severity: Severity::Warning,
            title: format!("redis-server (pid {}) runs with vm.overcommit_memory={mode}; Redis needs 1", r.pid),
            evidence,
            explanation: "Redis saves and rewrites its data by forking; the child shares the parent's memory copy \
                          on write, but the kernel must still commit the parent's whole size for it. With mode 0 \
                          a large instance's fork can be refused, and with mode 2 it usually is: BGSAVE fails with \
                          `Can't save in background: fork: Cannot allocate memory`. Redis logs a warning about \
                          this at start-up."
                .into(),
            fix: fix_mode(1)
                + if conflict { "\n(postgres runs here too and prefers 2: put them on separate machines or accept mode 1)" } else { "" },
            docs: DOCS,
        });
    }
    if let Some(m) = mongod.first().filter(|_| mode == 2) {
        return Outcome::Found(Finding {
            id: "overcommit",
            severity: Severity::Warning,
            title: format!("mongod (pid {}) runs under strict overcommit (vm.overcommit_memory=2)", m.pid),
            evidence,
            explanation: "MongoDB warns at start-up when the kernel uses strict overcommit accounting: its allocator \
                          reserves address space it may never touch, and under mode 2 those reservations count \
                          against CommitLimit, so mongod can fail allocations with memory still free."
                .into(),
            fix: fix_mode(0),
            docs: DOCS,
        });
    }
    if let Some(p) = postgres.first().filter(|_| mode != 2 && !conflict) {
        return Outcome::Found(Finding {
            id: "overcommit",
            severity: Severity::Info,
            title: format!("postgres (pid {}) runs with vm.overcommit_memory={mode}; PostgreSQL recommends 2", p.pid),
            evidence,
            explanation: "PostgreSQL's documentation recommends strict overcommit on dedicated database servers: \
                          a backend then gets a clean allocation error instead of the OOM killer choosing the \
                          postmaster, which takes every connection down. It is advice for dedicated machines, \
                          not an error: size CommitLimit (overcommit_ratio, swap) before switching."
                .into(),
            fix: fix_mode(2) + "\nthen size the limit: sysctl -w vm.overcommit_ratio=<percent of RAM> (same file)",
            docs: "https://www.postgresql.org/docs/current/kernel-resources.html#LINUX-MEMORY-OVERCOMMIT",
        });
    }
    Outcome::Clear(evidence)
}

#[cfg(test)]
mod tests {
    use super::super::memfacts::{Fields, Proc};
    use super::*;
    use crate::units::Kib;

    fn facts(mode: &str, limit_mib: u64, committed_mib: u64, comms: &[&str]) -> MemFacts {
        let mut f = MemFacts::unread();
        f.set("vm.overcommit_memory", mode);
        f.set("vm.overcommit_ratio", "50");
        f.set("vm.overcommit_kbytes", "0");
        let mut m = Fields::default();
        m.set("MemTotal", 16 << 20);
        m.set("SwapTotal", 0);
        m.set("CommitLimit", limit_mib << 10);
        m.set("Committed_AS", committed_mib << 10);
        f.meminfo = Ok(m);
        f.procs = Ok(comms
            .iter()
            .enumerate()
            .map(|(i, c)| Proc {
                pid: 100 + i as u32,
                comm: c.to_string(),
                rss: Kib(1 << 20),
                swap: Kib(0),
                vmas: None,
                oom_score_adj: None,
            })
            .collect());
        f
    }

    fn found(o: Outcome) -> Finding {
        match o {
            Outcome::Found(f) => f,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn strict_mode_near_its_limit() {
        assert!(matches!(overcommit(&facts("2", 8192, 4000, &[])), Outcome::Clear(_)));
        let f = found(overcommit(&facts("2", 8192, 7800, &[])));
        assert_eq!(f.severity, Severity::Warning);
        // 7800 MiB / 0.8 = 9750 MiB of 16 GiB: ratio 60
        assert!(f.fix.starts_with("sysctl -w vm.overcommit_ratio=60"), "{}", f.fix);
        // far past what RAM can give
        let f = found(overcommit(&facts("2", 8192, 8000 * 3, &[])));
        assert!(f.fix.contains("add swap"), "{}", f.fix);
        // the heuristic mode never has a "limit" to be near
        assert!(matches!(overcommit(&facts("0", 8192, 9000, &[])), Outcome::Clear(_)));
    }

    #[test]
    fn workloads_are_named() {
        let f = found(overcommit(&facts("0", 8192, 100, &["bash", "redis-server"])));
        assert_eq!(f.severity, Severity::Warning);
        assert!(f.title.contains("redis-server (pid 101)") && f.fix.starts_with("sysctl -w vm.overcommit_memory=1"), "{f:?}");
        assert!(matches!(overcommit(&facts("1", 8192, 100, &["redis-server"])), Outcome::Clear(_)));
        assert_eq!(found(overcommit(&facts("2", 8192, 100, &["mongod"]))).severity, Severity::Warning);
        assert!(matches!(overcommit(&facts("0", 8192, 100, &["mongod"])), Outcome::Clear(_)));
        let f = found(overcommit(&facts("0", 8192, 100, &["postgres", "postgres"])));
        assert_eq!(f.severity, Severity::Info);
        assert!(matches!(overcommit(&facts("2", 8192, 100, &["postgres"])), Outcome::Clear(_)));
        // both: Redis's hard need wins, the conflict is said
        let f = found(overcommit(&facts("2", 8192, 100, &["postgres", "redis-server"])));
        assert!(f.title.contains("redis-server") && f.fix.contains("postgres runs here too"), "{f:?}");
        // nothing known runs: the mode is nobody's business
        assert!(matches!(overcommit(&facts("2", 8192, 100, &["bash"])), Outcome::Clear(_)));
    }

    #[test]
    fn not_checked_without_the_mode() {
        let mut f = facts("0", 1, 1, &[]);
        f.settings.insert("vm.overcommit_memory", Err("sys/vm/overcommit_memory: no such file".into()));
        assert!(matches!(overcommit(&f), Outcome::NotChecked(_)));
        // the meminfo lines missing: the mode rules still run
        let mut f = facts("0", 1, 1, &["redis-server"]);
        f.meminfo = Err("meminfo: gone".into());
        assert_eq!(found(overcommit(&f)).severity, Severity::Warning);
    }
}
