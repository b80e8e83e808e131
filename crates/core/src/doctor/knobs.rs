//! Rules about single vm settings and limits that bite on their own.
//!
//! Owns `max-map-count` (a process close to vm.max_map_count: its next mmap fails),
//! `vm-extremes` (min_free_kbytes so high it starves everything else, vfs_cache_pressure 0
//! or huge, watermark_scale_factor at the top of its range), `hugepages` (a huge page pool
//! that sits unused, stranded from everything else) and `oom-protection` (so much memory
//! exempt from the OOM killer that it has nothing left to kill, or PostgreSQL backends that
//! inherited the postmaster's exemption). Must never read a file itself.

use super::memfacts::{MemFacts, Proc, size, sysctl_fix};
use super::{Finding, Issue, Outcome, Severity, ev, worst_of};
use crate::units::Kib;

/// A process above this share of vm.max_map_count (doctor-checks.md #7).
pub const MAP_COUNT_SHARE: f64 = 0.8;
/// min_free_kbytes above this share of RAM, percent (proposed; the kernel: "too high will
/// OOM your machine instantly").
pub const MIN_FREE_MAX_PCT: f64 = 5.0;
/// vfs_cache_pressure above this: dentries and inodes go first (proposed).
pub const VFS_CACHE_PRESSURE_HIGH: u64 = 1000;
/// watermark_scale_factor at or above this (10 % of memory between watermarks; proposed).
pub const WSF_HIGH: u64 = 1000;
/// Unused huge page pool above this share of RAM, percent (doctor-checks.md #19).
pub const HUGEPAGES_UNUSED_PCT: f64 = 10.0;
/// RSS of processes at oom_score_adj -1000 above this share of RAM, percent (#13).
pub const OOM_EXEMPT_PCT: f64 = 50.0;

const DOCS_VM: &str = "https://docs.kernel.org/admin-guide/sysctl/vm.html";

/// `max-map-count`.
pub fn max_map_count(f: &MemFacts) -> Outcome {
    let limit = match f.number("vm.max_map_count") {
        Ok(l) => l,
        Err(why) => return Outcome::NotChecked(why),
    };
    let procs = match &f.procs {
        Ok(p) => p,
        Err(why) => return Outcome::NotChecked(why.clone()),
    };
    let mut evidence = vec![ev("vm.max_map_count", limit)];
    let mut by_maps: Vec<&Proc> = procs.iter().filter(|p| p.vmas.is_some()).collect();
    by_maps.sort_by_key(|p| std::cmp::Reverse(p.vmas));
    if by_maps.is_empty() {
        return Outcome::NotChecked("no process's maps could be read (needs root)".into());
    }
    for p in by_maps.iter().take(3) {
        evidence.push(ev(format!("pid {} ({}) mappings", p.pid, p.comm), p.vmas.unwrap_or(0)));
    }
    let top = by_maps[0];
    let vmas = top.vmas.unwrap_or(0);
    if (vmas as f64) <= MAP_COUNT_SHARE * limit as f64 {
        return Outcome::Clear(evidence);
    }
    let want = (vmas.saturating_mul(2)).max(262_144);
    Outcome::Found(Finding {
        id: "max-map-count",
        severity: Severity::Warning,
        title: format!(
            "{} (pid {}) has {vmas} memory mappings, {:.0} % of vm.max_map_count ({limit})",
            top.comm,
            top.pid,
            vmas as f64 * 100.0 / limit.max(1) as f64
        ),
        evidence,
        explanation: "Every mmap, mprotect split or thread stack adds a mapping, and a process at vm.max_map_count \
                      gets ENOMEM from its next one even with memory free: the JVM, Elasticsearch and MongoDB \
                      then crash or fail allocations with misleading out-of-memory errors. Elasticsearch requires \
                      at least 262144; MongoDB twice its connection limit."
            .into(),
        fix: sysctl_fix("90-thrashguard-max-map-count", &[("vm.max_map_count", want.to_string())]),
        docs: "https://docs.kernel.org/admin-guide/sysctl/vm.html#max-map-count",
    })
}

/// `vm-extremes`.
pub fn vm_extremes(f: &MemFacts) -> Outcome {
    let keys = ["vm.min_free_kbytes", "vm.vfs_cache_pressure", "vm.watermark_scale_factor"];
    let values: Vec<_> = keys.iter().map(|k| f.number(k)).collect();
    if let Some(Err(why)) = values.iter().find(|v| v.is_err()).filter(|_| values.iter().all(Result::is_err)) {
        return Outcome::NotChecked(why.clone());
    }
    let mut evidence = vec![];
    for (k, v) in keys.iter().zip(&values) {
        evidence.push(ev(*k, v.as_ref().map_or_else(|e| format!("not readable: {e}"), ToString::to_string)));
    }
    let mut issues = vec![];
    if let (Ok(min_free), Ok(m)) = (&values[0], &f.meminfo) {
        let pct = Kib(*min_free).pct_of(m.total());
        evidence.push(ev("MemTotal", size(m.total())));
        if pct > MIN_FREE_MAX_PCT {
            let sane = super::reserve::kernel_default_min_free_kbytes(m.total().0).max(m.total().0 / 100);
            issues.push(Issue {
                docs: DOCS_VM,
                severity: Severity::Warning,
                title: format!("vm.min_free_kbytes is {:.1} % of RAM ({})", pct, size(Kib(*min_free))),
                explanation: "min_free_kbytes is memory the kernel keeps free for itself; every zone's watermarks \
                              scale from it. Far above the default, ordinary allocations hit the min watermark \
                              with gigabytes nominally free: constant reclaim, and the kernel documentation warns \
                              that setting it too high will OOM the machine instantly.",
                fix: sysctl_fix("90-thrashguard-vm-extremes", &[("vm.min_free_kbytes", sane.to_string())]),
            });
        }
    }
    if let Ok(v) = values[1] {
        if v == 0 {
            issues.push(Issue {
                docs: DOCS_VM,
                severity: Severity::Warning,
                title: "vm.vfs_cache_pressure is 0: dentries and inodes are never reclaimed".into(),
                explanation: "With vfs_cache_pressure 0 the kernel never reclaims the dentry and inode caches. A \
                              workload that touches many files (backups, builds, find) grows them until memory \
                              runs out; the kernel documentation says this can lead to out-of-memory conditions.",
                fix: sysctl_fix("90-thrashguard-vm-extremes", &[("vm.vfs_cache_pressure", "100".into())]),
            });
        } else if v > VFS_CACHE_PRESSURE_HIGH {
            issues.push(Issue {
                docs: DOCS_VM,
                severity: Severity::Info,
                title: format!("vm.vfs_cache_pressure is {v}: dentries and inodes are dropped first"),
                explanation: "Above 100 the kernel prefers reclaiming dentries and inodes over page cache; far above \
                              it, path lookups and stat calls go to disk again after every bit of pressure.",
                fix: sysctl_fix("90-thrashguard-vm-extremes", &[("vm.vfs_cache_pressure", "100".into())]),
            });
        }
    }
    if let Ok(v) = values[2]
        && v >= WSF_HIGH
    {
        issues.push(Issue {
            docs: DOCS_VM,
            severity: Severity::Info,
            title: format!("vm.watermark_scale_factor is {v}: kswapd keeps {:.0} % of memory free", v as f64 / 100.0),
            explanation: "watermark_scale_factor sets the gap between watermarks in units of 0.01 % of memory; at \
                          1000 and above kswapd reclaims until a tenth or more of RAM is free, evicting cache the \
                          workload would have used. Values of 100-200 are usually enough against direct reclaim.",
            fix: sysctl_fix("90-thrashguard-vm-extremes", &[("vm.watermark_scale_factor", "200".into())]),
        });
    }
    worst_of("vm-extremes", issues, evidence)
}

/// `hugepages`.
pub fn hugepages(f: &MemFacts) -> Outcome {
    let m = match &f.meminfo {
        Ok(m) => m,
        Err(why) => return Outcome::NotChecked(why.clone()),
    };
    let (Some(total), Some(free), Some(size_kib)) = (m.get("HugePages_Total"), m.get("HugePages_Free"), m.get("Hugepagesize")) else {
        return Outcome::NotChecked("meminfo: no HugePages_* lines (kernel without hugetlbfs)".into());
    };
    let rsvd = m.get("HugePages_Rsvd").unwrap_or(0);
    let unused = Kib(free.saturating_sub(rsvd).saturating_mul(size_kib));
    let mut evidence = vec![
        ev("HugePages_Total", total),
        ev("HugePages_Free", free),
        ev("HugePages_Rsvd", rsvd),
        ev("Hugepagesize", format!("{size_kib} KiB")),
        ev("unused pool (Free - Rsvd)", format!("{} ({:.0} % of RAM)", size(unused), unused.pct_of(m.total()))),
    ];
    if unused.pct_of(m.total()) <= HUGEPAGES_UNUSED_PCT {
        return Outcome::Clear(evidence);
    }
    let keep = total.saturating_sub(free.saturating_sub(rsvd));
    evidence.push(ev("in use or reserved", format!("{keep} pages")));
    Outcome::Found(Finding {
        id: "hugepages",
        severity: Severity::Warning,
        title: format!("{} of explicit huge pages sit unused ({:.0} % of RAM)", size(unused), unused.pct_of(m.total())),
        evidence,
        explanation: "Pages in the hugetlb pool are taken out of ordinary memory when the pool is sized: nothing \
                      else can use them, not the page cache, not a process that does not map hugetlbfs. A pool \
                      nobody uses is RAM the machine does not have. PostgreSQL with huge_pages=try silently falls \
                      back to normal pages when the pool does not fit, leaving it unused."
            .into(),
        fix: sysctl_fix("90-thrashguard-hugepages", &[("vm.nr_hugepages", keep.to_string())])
            + "\n(or size it for the workload that should use it, and make that workload fail loudly without it: huge_pages=on in PostgreSQL)",
        docs: "https://docs.kernel.org/admin-guide/mm/hugetlbpage.html",
    })
}

/// `oom-protection`.
pub fn oom_protection(f: &MemFacts) -> Outcome {
    let procs = match &f.procs {
        Ok(p) => p,
        Err(why) => return Outcome::NotChecked(why.clone()),
    };
    let exempt: Vec<&Proc> = procs.iter().filter(|p| p.oom_score_adj == Some(-1000)).collect();
    let rss = Kib(exempt.iter().map(|p| p.rss.0).sum());
    let mut evidence = vec![ev("processes at oom_score_adj -1000", exempt.len()), ev("their RSS", size(rss))];
    let ram = f.meminfo.as_ref().ok().map(|m| m.total());
    if let Some(ram) = ram {
        evidence.push(ev("share of RAM", format!("{:.0} %", rss.pct_of(ram))));
    }
    let mut by_rss = exempt.clone();
    by_rss.sort_by_key(|p| std::cmp::Reverse(p.rss));
    for p in by_rss.iter().take(3) {
        evidence.push(ev("exempt", p.describe()));
    }
    let pg: Vec<&&Proc> = exempt.iter().filter(|p| p.comm == "postgres" || p.comm == "postmaster").collect();
    let fix_units = "find where it is set: systemctl show -p OOMScoreAdjust <unit>; remove OOMScoreAdjust=-1000 from the unit (systemctl edit <unit>), \
                     keeping it only for sshd and the guard itself";
    if ram.is_some_and(|r| rss.pct_of(r) > OOM_EXEMPT_PCT) {
        return Outcome::Found(Finding {
            id: "oom-protection",
            severity: Severity::Warning,
            title: format!("{:.0} % of RAM is held by processes the OOM killer may not kill", rss.pct_of(ram.unwrap_or(Kib(1)))),
            evidence,
            explanation: "oom_score_adj -1000 exempts a process from the OOM killer. When exempt processes hold most \
                          of memory, an out-of-memory situation can only be resolved by killing the small rest, \
                          again and again, or by a kernel panic; the machine thrashes instead of recovering."
                .into(),
            fix: fix_units.into(),
            docs: "https://docs.kernel.org/filesystems/proc.html",
        });
    }
    if pg.len() > 1 {
        return Outcome::Found(Finding {
            id: "oom-protection",
            severity: Severity::Warning,
            title: format!("{} postgres processes run at oom_score_adj -1000: backends inherited the postmaster's", pg.len()),
            evidence,
            explanation: "PostgreSQL's documentation protects only the postmaster: its backends must go back to 0 \
                          (PG_OOM_ADJUST_FILE), or a runaway query's backend cannot be killed and the OOM killer \
                          takes something else. Only the postmaster should be exempt."
                .into(),
            fix: "in the postgres unit: Environment=PG_OOM_ADJUST_FILE=/proc/self/oom_score_adj PG_OOM_ADJUST_VALUE=0 \
                  (systemctl edit postgresql), then restart it"
                .into(),
            docs: "https://www.postgresql.org/docs/current/kernel-resources.html#LINUX-MEMORY-OVERCOMMIT",
        });
    }
    Outcome::Clear(evidence)
}

#[cfg(test)]
mod tests {
    use super::super::memfacts::Fields;
    use super::*;

    fn proc(pid: u32, comm: &str, rss_mib: u64, vmas: u64, adj: i64) -> Proc {
        Proc { pid, comm: comm.into(), rss: Kib(rss_mib << 10), swap: Kib(0), vmas: Some(vmas), oom_score_adj: Some(adj) }
    }

    fn facts(procs: Vec<Proc>) -> MemFacts {
        let mut f = MemFacts::unread();
        f.procs = Ok(procs);
        let mut m = Fields::default();
        m.set("MemTotal", 16 << 20);
        m.set("HugePages_Total", 0);
        m.set("HugePages_Free", 0);
        m.set("HugePages_Rsvd", 0);
        m.set("Hugepagesize", 2048);
        f.meminfo = Ok(m);
        f.set("vm.max_map_count", "65530");
        f.set("vm.min_free_kbytes", "67584");
        f.set("vm.vfs_cache_pressure", "100");
        f.set("vm.watermark_scale_factor", "10");
        f
    }

    fn sev(o: Outcome) -> Option<Severity> {
        match o {
            Outcome::Found(f) => Some(f.severity),
            Outcome::Clear(_) => None,
            Outcome::NotChecked(m) => panic!("{m}"),
        }
    }

    #[test]
    fn map_count() {
        assert_eq!(sev(max_map_count(&facts(vec![proc(1, "init", 10, 120, 0)]))), None);
        let Outcome::Found(g) = max_map_count(&facts(vec![proc(1, "init", 10, 120, 0), proc(9, "java", 10, 60_000, 0)])) else { panic!() };
        assert!(g.title.starts_with("java (pid 9) has 60000 memory mappings, 92 %"), "{}", g.title);
        assert!(g.fix.starts_with("sysctl -w vm.max_map_count=262144"), "{}", g.fix);
        let mut f = facts(vec![proc(1, "init", 10, 120, 0)]);
        f.procs = Ok(vec![Proc { vmas: None, ..proc(1, "init", 10, 0, 0) }]);
        assert!(matches!(max_map_count(&f), Outcome::NotChecked(_)));
        f.settings.insert("vm.max_map_count", Err("gone".into()));
        assert!(matches!(max_map_count(&f), Outcome::NotChecked(_)));
    }

    #[test]
    fn extremes() {
        assert_eq!(sev(vm_extremes(&facts(vec![]))), None);
        let mut f = facts(vec![]);
        f.set("vm.min_free_kbytes", "1048576"); // 6 % of 16 GiB
        let Outcome::Found(g) = vm_extremes(&f) else { panic!() };
        assert_eq!(g.severity, Severity::Warning);
        assert!(g.fix.starts_with("sysctl -w vm.min_free_kbytes=167772"), "{}", g.fix);
        let mut f = facts(vec![]);
        f.set("vm.vfs_cache_pressure", "0");
        assert_eq!(sev(vm_extremes(&f)), Some(Severity::Warning));
        f.set("vm.vfs_cache_pressure", "5000");
        assert_eq!(sev(vm_extremes(&f)), Some(Severity::Info));
        f.set("vm.watermark_scale_factor", "1000");
        let Outcome::Found(g) = vm_extremes(&f) else { panic!() };
        assert!(g.evidence.iter().any(|e| e.name == "also"), "{g:?}");
        let mut f = MemFacts::unread();
        f.settings.insert("vm.min_free_kbytes", Err("gone".into()));
        assert!(matches!(vm_extremes(&f), Outcome::NotChecked(_)));
    }

    #[test]
    fn hugepage_pool() {
        assert_eq!(sev(hugepages(&facts(vec![]))), None);
        let mut f = facts(vec![]);
        if let Ok(m) = &mut f.meminfo {
            m.set("HugePages_Total", 2048);
            m.set("HugePages_Free", 2000);
            m.set("HugePages_Rsvd", 100);
        }
        let Outcome::Found(g) = hugepages(&f) else { panic!() };
        assert!(g.fix.starts_with("sysctl -w vm.nr_hugepages=148"), "{}", g.fix);
        let mut f = facts(vec![]);
        f.meminfo = Ok(Fields::parse("meminfo", b"MemTotal: 100 kB\n").unwrap());
        assert!(matches!(hugepages(&f), Outcome::NotChecked(_)));
    }

    #[test]
    fn oom_exemptions() {
        assert_eq!(sev(oom_protection(&facts(vec![proc(1, "sshd", 10, 1, -1000), proc(2, "java", 9000, 1, 0)]))), None);
        assert_eq!(sev(oom_protection(&facts(vec![proc(2, "java", 9000, 1, -1000)]))), Some(Severity::Warning));
        let pg = vec![proc(10, "postgres", 100, 1, -1000), proc(11, "postgres", 100, 1, -1000)];
        assert_eq!(sev(oom_protection(&facts(pg))), Some(Severity::Warning));
        assert_eq!(sev(oom_protection(&facts(vec![proc(10, "postgres", 100, 1, -1000), proc(11, "postgres", 100, 1, 0)]))), None);
        let mut f = facts(vec![]);
        f.procs = Err("no /proc".into());
        assert!(matches!(oom_protection(&f), Outcome::NotChecked(_)));
    }
}
