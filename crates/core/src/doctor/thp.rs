//! Rules about transparent huge pages and the compaction they cost.
//!
//! Owns `thp` (the THP `enabled` and `defrag` modes against what they cost in the counters,
//! compaction stalls and split storms, and against workloads that document a mode: Redis
//! warns on `always`, MongoDB up to 7.0 wants `never` while 8.0 wants `always`) and
//! `compaction` (compaction that mostly fails, and free memory shattered into single
//! pages in /proc/buddyinfo). Must never read a file itself.

use super::memfacts::{MemFacts, basis, grew, span, windowed};
use super::{Finding, Outcome, Severity, ev};

/// `thp_split_page` per second over the window that counts as a split storm (proposed).
pub const SPLIT_STORM_PER_S: f64 = 100.0;
/// compact_fail / compact_stall above this: compaction mostly fails (doctor-checks.md #10).
pub const FAIL_SHARE: f64 = 0.5;
/// Fewest compaction stalls a failure share is judged on: in the window, and since boot.
pub const MIN_STALLS_WINDOW: u64 = 10;
/// The same since boot.
pub const MIN_STALLS_BOOT: u64 = 100;
/// A zone is shattered with fewer free blocks of order >= 3 than this (doctor-checks.md #10)...
pub const FEW_HIGH_ORDER: u64 = 16;
/// ...while it has at least this many free single pages (4 MiB of 4 KiB pages).
pub const MANY_ORDER0: u64 = 1024;

const DOCS_THP: &str = "https://docs.kernel.org/admin-guide/mm/transhuge.html";

/// The selected value of a sysfs choice list (`always [madvise] never` -> `madvise`).
pub fn selected(list: &str) -> Option<&str> {
    let start = list.find('[')? + 1;
    let end = start + list[start..].find(']')?;
    Some(&list[start..end])
}

fn thp_mode(f: &MemFacts, key: &str) -> Result<String, String> {
    let v = f.setting(key)?;
    selected(v).map(str::to_string).ok_or_else(|| format!("{key}: no [selected] value in {v:?}"))
}

fn thp_fix(enabled: &str, defrag: &str) -> String {
    format!(
        "echo {enabled} > /sys/kernel/mm/transparent_hugepage/enabled\necho {defrag} > /sys/kernel/mm/transparent_hugepage/defrag\n\
         to keep it: printf 'w /sys/kernel/mm/transparent_hugepage/enabled - - - - {enabled}\\nw /sys/kernel/mm/transparent_hugepage/defrag - - - - {defrag}\\n' \
         > /etc/tmpfiles.d/90-thrashguard-thp.conf (or transparent_hugepage={enabled} on the kernel command line)"
    )
}

/// `thp`.
pub fn thp(f: &MemFacts) -> Outcome {
    let enabled = match thp_mode(f, "thp.enabled") {
        Ok(e) => e,
        Err(why) => return Outcome::NotChecked(format!("{why} (a kernel without CONFIG_TRANSPARENT_HUGEPAGE has none)")),
    };
    let defrag = thp_mode(f, "thp.defrag").unwrap_or_else(|_| "unknown".into());
    let mut evidence = vec![ev("THP enabled", &enabled), ev("THP defrag", &defrag)];
    let (mut stalls, mut split_rate) = (0, None);
    if let Ok(w) = &f.vmstat {
        evidence.push(basis(w));
        stalls = grew(w, "compact_stall").unwrap_or(0);
        evidence.push(ev(format!("compact_stall {}", span(w)), stalls));
        for c in ["thp_fault_alloc", "thp_fault_fallback", "thp_split_page"] {
            evidence.push(w.evidence(c));
        }
        split_rate = w.rate("thp_split_page");
    }
    if let Some(a) = f.meminfo.as_ref().ok().and_then(|m| m.kib("AnonHugePages")) {
        evidence.push(ev("AnonHugePages", super::memfacts::size(a)));
    }
    let redis = f.running(&["redis-server"]);
    let mongod = f.running(&["mongod"]);
    let always = enabled == "always";
    let finding = |severity, title: String, explanation: &str, fix: String| {
        Outcome::Found(Finding {
            id: "thp",
            severity,
            title,
            evidence: evidence.clone(),
            explanation: explanation.into(),
            fix,
            docs: DOCS_THP,
        })
    };
    if always && defrag == "always" && stalls > 0 {
        let span = f.vmstat.as_ref().map_or(String::new(), span);
        return finding(
            Severity::Warning,
            format!("THP enabled=always with defrag=always: {stalls} allocations stalled in compaction {span}"),
            "With defrag=always a page fault that could use a huge page compacts memory synchronously until it \
             gets one: the faulting thread stops while pages are migrated. compact_stall counts exactly those \
             waits. defrag=defer+madvise keeps huge pages for those who ask and moves compaction to kcompactd.",
            thp_fix(if redis.is_empty() { "always" } else { "madvise" }, "defer+madvise"),
        );
    }
    if let Some(rate) = split_rate.filter(|&r| r > SPLIT_STORM_PER_S) {
        return finding(
            Severity::Warning,
            format!("huge pages are being split at {rate:.0}/s"),
            "Each split breaks a 2 MiB page back into 512 small ones, under the page table lock of the process, \
             typically when memory under a huge page is partly freed, swapped or migrated. A sustained storm \
             means THP costs more than it saves for this workload.",
            thp_fix("madvise", "defer+madvise"),
        );
    }
    if let Some(r) = redis.first().filter(|_| always) {
        return finding(
            Severity::Warning,
            format!("redis-server (pid {}) runs with THP enabled=always", r.pid),
            "Redis warns at start-up when THP is `always`: after a fork for BGSAVE every write copies a whole \
             2 MiB page instead of 4 KiB, which inflates memory use and latency. Redis 6.2+ turns THP off for \
             itself (disable-thp yes) but the setting still affects every other process.",
            thp_fix("madvise", &defrag),
        );
    }
    if let Some(m) = mongod.first().filter(|_| always) {
        return finding(
            Severity::Info,
            format!("mongod (pid {}) runs with THP enabled=always: right for MongoDB 8.0, wrong before", m.pid),
            "MongoDB up to 7.0 asks for THP `never` (its allocator fragments huge pages); MongoDB 8.0, with the \
             new TCMalloc, asks for `always` with defrag=defer+madvise. Which one applies depends on the version \
             running here.",
            format!("MongoDB <= 7.0:\n{}\nMongoDB 8.0: keep always, set defrag=defer+madvise", thp_fix("never", "never")),
        );
    }
    if always && defrag == "always" {
        return finding(
            Severity::Info,
            "THP enabled=always with defrag=always (no compaction stalls yet)".into(),
            "Every fault that could use a huge page may stop to compact memory; nothing stalled in compaction \
             so far, so it costs nothing yet, but it will once memory fragments.",
            thp_fix("always", "defer+madvise"),
        );
    }
    Outcome::Clear(evidence)
}

/// `compaction`.
pub fn compaction(f: &MemFacts) -> Outcome {
    let w = match &f.vmstat {
        Ok(w) => w,
        Err(why) => return Outcome::NotChecked(why.clone()),
    };
    let (stall, fail) = (grew(w, "compact_stall"), grew(w, "compact_fail"));
    let (Some(stall), Some(fail)) = (stall, fail) else {
        return Outcome::NotChecked("vmstat: no compact_stall / compact_fail (kernel without compaction)".into());
    };
    let (boot_stall, boot_fail) = (w.total("compact_stall").unwrap_or(0), w.total("compact_fail").unwrap_or(0));
    let share = |f: u64, s: u64| if s > 0 { f as f64 / s as f64 } else { 0.0 };
    let mut evidence = vec![
        basis(w),
        w.evidence("compact_stall"),
        w.evidence("compact_fail"),
        w.evidence("compact_success"),
        ev(
            "failed share",
            format!("{:.0} % {} ({:.0} % since boot)", share(fail, stall) * 100.0, span(w), share(boot_fail, boot_stall) * 100.0),
        ),
    ];
    let mut shattered = vec![];
    match &f.buddyinfo {
        Ok(zones) => {
            for z in zones.iter().filter(|z| z.name == "Normal") {
                let (o0, high) = (z.free.first().copied().unwrap_or(0), z.blocks_from(3));
                evidence.push(ev(format!("node {} Normal free blocks", z.node), format!("order 0: {o0}, order >= 3: {high}")));
                if high < FEW_HIGH_ORDER && o0 >= MANY_ORDER0 {
                    shattered.push(z.node);
                }
            }
        }
        Err(why) => evidence.push(ev("buddyinfo", format!("not readable: {why}"))),
    }
    let min = if windowed(w) { MIN_STALLS_WINDOW } else { MIN_STALLS_BOOT };
    let failing_now = stall >= min && share(fail, stall) > FAIL_SHARE;
    let failing_before = boot_stall >= MIN_STALLS_BOOT && share(boot_fail, boot_stall) > FAIL_SHARE;
    let workloads = f.running(&["redis-server", "mongod"]);
    let mut fix = "one-off: echo 1 > /proc/sys/vm/compact_memory\n\
                   compact in the background before it is needed: sysctl -w vm.compaction_proactiveness=40 \
                   (keep it in /etc/sysctl.d/90-thrashguard-compaction.conf); a larger vm.min_free_kbytes also keeps \
                   higher orders free\n\
                   stop synchronous compaction on faults: echo defer+madvise > /sys/kernel/mm/transparent_hugepage/defrag"
        .to_string();
    if let Some(p) = workloads.first() {
        fix += &format!("\n{} (pid {}) runs here: its documentation asks for THP madvise or never", p.comm, p.pid);
    }
    let (severity, title) = if failing_now {
        (Severity::Warning, format!("compaction fails {:.0} % of the time {}", share(fail, stall) * 100.0, span(w)))
    } else if failing_before || !shattered.is_empty() {
        let what = if failing_before {
            format!("compaction failed {:.0} % of {boot_stall} attempts since boot", share(boot_fail, boot_stall) * 100.0)
        } else {
            format!("free memory on node {} is in single pages: almost no blocks of order 3 or more", shattered[0])
        };
        (Severity::Info, what)
    } else {
        return Outcome::Clear(evidence);
    };
    Outcome::Found(Finding {
        id: "compaction",
        severity,
        title,
        evidence,
        explanation: "An allocation of several contiguous pages (huge pages, jumbo-frame network buffers, some \
                      drivers) that finds none free makes the allocating thread compact memory, migrating pages \
                      to build a block. When that mostly fails, the thread waited for nothing and the allocation \
                      falls back or fails: latency spikes and `page allocation failure: order:N` in the kernel log."
            .into(),
        fix,
        docs: "https://docs.kernel.org/admin-guide/sysctl/vm.html#compaction-proactiveness",
    })
}

#[cfg(test)]
mod tests {
    use super::super::memfacts::Proc;
    use super::super::window::{Counters, Window};
    use super::*;
    use crate::parse::buddyinfo::Zone;
    use crate::units::Kib;

    fn window(first: &[(&str, u64)], last: &[(&str, u64)], seconds: f64) -> Window {
        let mk = |v: &[(&str, u64)]| {
            let mut c = Counters::default();
            for (k, n) in v {
                c.set(k, *n);
            }
            c
        };
        Window { first: mk(first), last: mk(last), seconds }
    }

    fn facts(enabled: &str, defrag: &str, stalls_in_window: u64) -> MemFacts {
        let mut f = MemFacts::unread();
        f.set("thp.enabled", enabled);
        f.set("thp.defrag", defrag);
        f.vmstat = Ok(window(
            &[("compact_stall", 10), ("compact_fail", 2), ("thp_split_page", 0)],
            &[("compact_stall", 10 + stalls_in_window), ("compact_fail", 2), ("thp_split_page", 0)],
            5.0,
        ));
        f.procs = Ok(vec![]);
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
    fn selected_values() {
        assert_eq!(selected("always [madvise] never\n"), Some("madvise"));
        assert_eq!(selected("always defer [defer+madvise] madvise never"), Some("defer+madvise"));
        assert_eq!(selected("always madvise never"), None);
        assert_eq!(selected("[always"), None);
    }

    #[test]
    fn thp_by_cost_and_workload() {
        assert_eq!(sev(thp(&facts("always [madvise] never", "always defer defer+madvise [madvise] never", 5))), None);
        assert_eq!(sev(thp(&facts("[always] madvise never", "[always] defer defer+madvise madvise never", 5))), Some(Severity::Warning));
        assert_eq!(sev(thp(&facts("[always] madvise never", "[always] defer defer+madvise madvise never", 0))), Some(Severity::Info));
        assert_eq!(sev(thp(&facts("[always] madvise never", "always defer [defer+madvise] madvise never", 5))), None);
        let with = |comm: &str| {
            let mut f = facts("[always] madvise never", "always defer [defer+madvise] madvise never", 0);
            f.procs = Ok(vec![Proc { pid: 9, comm: comm.into(), rss: Kib(1), swap: Kib(0), vmas: None, oom_score_adj: None }]);
            f
        };
        let Outcome::Found(r) = thp(&with("redis-server")) else { panic!() };
        assert_eq!(r.severity, Severity::Warning);
        assert!(r.title.contains("redis-server (pid 9)") && r.fix.starts_with("echo madvise >"), "{r:?}");
        assert_eq!(sev(thp(&with("mongod"))), Some(Severity::Info));
        // a split storm
        let mut f = facts("always [madvise] never", "[madvise]", 0);
        f.vmstat = Ok(window(&[("thp_split_page", 0)], &[("thp_split_page", 5000)], 5.0));
        assert_eq!(sev(thp(&f)), Some(Severity::Warning));
    }

    #[test]
    fn thp_not_checked() {
        let mut f = facts("", "", 0);
        f.settings.insert("thp.enabled", Err("kernel/mm/transparent_hugepage/enabled: no such file".into()));
        assert!(matches!(thp(&f), Outcome::NotChecked(m) if m.contains("CONFIG_TRANSPARENT_HUGEPAGE")));
        assert!(matches!(thp(&facts("garbled", "", 0)), Outcome::NotChecked(_)));
    }

    fn compaction_facts(first: (u64, u64), last: (u64, u64), seconds: f64) -> MemFacts {
        let mut f = MemFacts::unread();
        f.vmstat = Ok(window(
            &[("compact_stall", first.0), ("compact_fail", first.1)],
            &[("compact_stall", last.0), ("compact_fail", last.1)],
            seconds,
        ));
        f.buddyinfo = Ok(vec![Zone { node: 0, name: "Normal".into(), free: vec![112, 57, 949, 1423, 1477, 1241, 945, 526, 182, 1, 607] }]);
        f.procs = Ok(vec![]);
        f
    }

    #[test]
    fn compaction_failing_or_shattered() {
        assert_eq!(sev(compaction(&compaction_facts((0, 0), (0, 0), 5.0))), None);
        assert_eq!(sev(compaction(&compaction_facts((100, 10), (140, 40), 5.0))), Some(Severity::Warning), "30 of 40");
        assert_eq!(sev(compaction(&compaction_facts((100, 10), (104, 4 + 10), 5.0))), None, "too few to judge");
        assert_eq!(sev(compaction(&compaction_facts((500, 400), (500, 400), 5.0))), Some(Severity::Info), "the past");
        assert_eq!(sev(compaction(&compaction_facts((0, 0), (500, 400), 0.0))), Some(Severity::Warning), "no window: since boot");
        let mut f = compaction_facts((0, 0), (0, 0), 5.0);
        f.buddyinfo = Ok(vec![Zone { node: 0, name: "Normal".into(), free: vec![90_000, 4000, 10, 2, 1, 0, 0, 0, 0, 0, 0] }]);
        let Outcome::Found(g) = compaction(&f) else { panic!() };
        assert!(g.title.contains("single pages") && g.severity == Severity::Info, "{g:?}");
    }

    #[test]
    fn compaction_not_checked() {
        let mut f = compaction_facts((0, 0), (0, 0), 5.0);
        f.vmstat = Err("vmstat: gone".into());
        assert!(matches!(compaction(&f), Outcome::NotChecked(_)));
        f.vmstat = Ok(window(&[], &[], 5.0));
        assert!(matches!(compaction(&f), Outcome::NotChecked(_)));
        // buddyinfo unreadable: judged on the counters alone
        let mut f = compaction_facts((100, 10), (140, 40), 5.0);
        f.buddyinfo = Err("buddyinfo: gone".into());
        assert_eq!(sev(compaction(&f)), Some(Severity::Warning));
    }
}
