//! Rules about thrashing and the swap set-up that shapes it.
//!
//! Owns `thrashing` (the share of time every task waited for memory, PSI `memory full`,
//! over the window, with refault and swap-in rates and the processes that hold the most
//! memory and swap) and `swap-setup` (no swap at all, a zram device larger than RAM,
//! vm.swappiness at an extreme: a warning only while swap-ins and memory stalls show it
//! hurting). Must never read a file itself.

use super::memfacts::{MemFacts, Proc, basis, grew, size, span, sysctl_fix, windowed};
use super::{Evidence, Finding, Issue, Outcome, Severity, ev, worst_of};

/// PSI memory full over the window, percent: thrashing (doctor-checks.md #5: full avg10 > 5).
pub const FULL_WARNING_PCT: f64 = 5.0;
/// PSI memory full over the window, percent: the machine mostly waits for memory.
pub const FULL_CRITICAL_PCT: f64 = 30.0;
/// PSI memory full since boot, percent, that is worth knowing about without a window.
pub const FULL_SINCE_BOOT_INFO_PCT: f64 = 1.0;
/// PSI memory some, percent, that counts as "stalled" for swap-setup's evidence.
pub const SOME_STALL_PCT: f64 = 5.0;

/// Share of time stalled on `name` (a PSI `total_us` counter), percent: over the window,
/// or since boot (from the uptime) without one.
pub fn psi_share(f: &MemFacts, name: &str) -> Result<Option<f64>, String> {
    let p = f.pressure.as_ref().map_err(Clone::clone)?;
    if windowed(p) {
        return Ok(p.stall_pct(name));
    }
    let up = f.uptime_s.as_ref().map_err(|e| format!("no window (--window 0) and no uptime to share PSI totals by: {e}"))?;
    Ok(p.total(name).filter(|_| *up > 0.0).map(|us| us as f64 / (up * 1e6) * 100.0))
}

/// Evidence naming the `n` processes first by `key`, skipping those where it is zero.
fn top(procs: &[Proc], n: usize, label: &str, key: fn(&Proc) -> u64) -> Vec<Evidence> {
    let mut v: Vec<&Proc> = procs.iter().filter(|p| key(p) > 0).collect();
    v.sort_by_key(|p| std::cmp::Reverse(key(p)));
    v.iter().take(n).enumerate().map(|(i, p)| ev(format!("{label} #{}", i + 1), p.describe())).collect()
}

/// `thrashing`.
pub fn thrashing(f: &MemFacts) -> Outcome {
    let p = match &f.pressure {
        Ok(p) => p,
        Err(why) => return Outcome::NotChecked(why.clone()),
    };
    let full = match psi_share(f, "memory full total_us") {
        Ok(Some(v)) => v,
        Ok(None) => return Outcome::NotChecked("pressure/memory: no `full` line (PSI memory needs 4.20+)".into()),
        Err(why) => return Outcome::NotChecked(why),
    };
    let some = psi_share(f, "memory some total_us").ok().flatten().unwrap_or(0.0);
    let mut evidence = vec![
        basis(p),
        ev("PSI memory full (all tasks waiting)", format!("{full:.1} % {}", span(p))),
        ev("PSI memory some", format!("{some:.1} % {}", span(p))),
    ];
    if let Ok(w) = &f.vmstat {
        for c in ["workingset_refault_anon", "workingset_refault_file", "pswpin", "pgmajfault"] {
            evidence.push(w.evidence(c));
        }
    }
    match &f.procs {
        Ok(procs) => {
            evidence.extend(top(procs, 3, "largest footprint (RSS + swap)", |p| p.footprint().0));
            evidence.extend(top(procs, 3, "most swapped out", |p| p.swap.0));
        }
        Err(why) => evidence.push(ev("processes", format!("not readable: {why}"))),
    }
    let severity = if windowed(p) {
        match full {
            v if v >= FULL_CRITICAL_PCT => Severity::Critical,
            v if v >= FULL_WARNING_PCT => Severity::Warning,
            _ => return Outcome::Clear(evidence),
        }
    } else {
        match full {
            v if v >= FULL_WARNING_PCT => Severity::Warning,
            v if v >= FULL_SINCE_BOOT_INFO_PCT => Severity::Info,
            _ => return Outcome::Clear(evidence),
        }
    };
    let biggest = f.procs.iter().flatten().max_by_key(|p| p.footprint());
    let who = biggest.map_or("the largest process".to_string(), |p| format!("pid {} ({})", p.pid, p.comm));
    let fix = format!(
        "stop or limit {who}: kill it if it is expendable, or cap it: systemctl set-property <its unit> MemoryHigh=<size> \
         (persistent; for a one-off command: systemd-run --scope -p MemoryHigh=<size> <command>)\n\
         let a guard do it within a second: systemctl enable --now thrashguard"
    );
    Outcome::Found(Finding {
        id: "thrashing",
        severity,
        title: format!("the machine is thrashing: every task waited for memory {full:.1} % of the time {}", span(p)),
        evidence,
        explanation: "PSI memory `full` counts time in which every runnable task was stalled waiting for memory: \
                      pages being read back in (refaults, swap-ins) as fast as they are pushed out. The kernel's \
                      PSI documentation calls a workload that spends extended time in this state thrashing; \
                      the machine is busy but gets nothing done, and it can last minutes before the OOM killer \
                      acts. The fix is to give back memory: the largest footprints are listed."
            .into(),
        fix,
        docs: "https://docs.kernel.org/accounting/psi.html",
    })
}

/// `swap-setup`.
pub fn swap_setup(f: &MemFacts) -> Outcome {
    let m = match &f.meminfo {
        Ok(m) => m,
        Err(why) => return Outcome::NotChecked(why.clone()),
    };
    let total = m.total();
    let swap_total = m.kib("SwapTotal").unwrap_or_default();
    let mut evidence = vec![ev("MemTotal", size(total)), ev("SwapTotal", size(swap_total))];
    let mut issues = Vec::new();
    if swap_total.0 == 0 {
        issues.push(Issue {
            severity: Severity::Info,
            title: "no swap: under pressure the kernel can only evict page cache, executables included".into(),
            explanation: "Without swap, anonymous memory (heaps, stacks) can never leave RAM, so when memory runs \
                          short the only pages the kernel can reclaim are file pages, including the code of \
                          running programs. It then thrashes on the page cache of executables, rereading them from \
                          disk, and the machine can freeze for minutes before the OOM killer acts. A small swap \
                          (zram is enough) gives it cold anonymous pages to move out first.",
            fix: "a compressed swap in RAM: apt install systemd-zram-generator (Fedora: zram-generator-defaults), \
                  kept by /etc/systemd/zram-generator.conf ([zram0] zram-size = ram / 2)\n\
                  or a swap file: fallocate -l 4G /swapfile && chmod 600 /swapfile && mkswap /swapfile && swapon /swapfile; \
                  keep it: echo '/swapfile none swap sw 0 0' >> /etc/fstab"
                .into(),
            docs: "https://docs.kernel.org/admin-guide/mm/concepts.html#anonymous-memory",
        });
    }
    match &f.swaps {
        Ok(devs) => {
            for d in devs {
                evidence.push(ev(format!("swap {}", d.name), format!("{} ({} used)", size(d.size), size(d.used))));
            }
        }
        Err(why) => evidence.push(ev("/proc/swaps", format!("not readable: {why}"))),
    }
    for (name, disksize) in &f.zram_disksize {
        match disksize {
            Ok(bytes) => {
                let kib = crate::units::Kib(bytes / 1024);
                evidence.push(ev(format!("{name} disksize"), format!("{} ({:.0} % of RAM)", size(kib), kib.pct_of(total))));
                if kib > total {
                    issues.push(Issue {
                        severity: Severity::Info,
                        title: format!("{name} is larger than RAM ({} for {} of RAM)", size(kib), size(total)),
                        explanation: "zram keeps swapped-out pages compressed in RAM, typically at 2-3:1. A device \
                                      larger than RAM lets compressed pages fill most of memory before swap is \
                                      full, so the machine thrashes long before the OOM killer sees swap run out.",
                        fix: format!(
                            "swapoff /dev/{name} && zramctl --reset /dev/{name} && zramctl --size {}M /dev/{name} && mkswap /dev/{name} && swapon /dev/{name}\n\
                             to keep it: zram-size = ram / 2 in /etc/systemd/zram-generator.conf",
                            total.0 / 2048
                        ),
                        docs: "https://docs.kernel.org/admin-guide/blockdev/zram.html",
                    });
                }
            }
            Err(why) => evidence.push(ev(format!("{name} disksize"), format!("not readable: {why}"))),
        }
    }
    if let Ok(sw) = f.number("vm.swappiness") {
        evidence.push(ev("vm.swappiness", sw));
        if swap_total.0 > 0 && (sw == 0 || sw >= 150) {
            let swapped_in = f.vmstat.as_ref().ok().and_then(|w| grew(w, "pswpin")).unwrap_or(0);
            let stalled = psi_share(f, "memory some total_us").ok().flatten().unwrap_or(0.0);
            let span = f.vmstat.as_ref().map_or("since boot".into(), span);
            evidence.push(ev(format!("pswpin {span}"), swapped_in));
            evidence.push(ev(format!("PSI memory some {span}"), format!("{stalled:.1} %")));
            let hurting = swapped_in > 0 && stalled >= SOME_STALL_PCT;
            let all_zram = f.swaps.as_ref().is_ok_and(|d| !d.is_empty() && d.iter().all(|d| d.name.starts_with("/dev/zram")));
            let target = if sw == 0 {
                10
            } else if all_zram {
                100
            } else {
                60
            };
            issues.push(Issue {
                severity: if hurting { Severity::Warning } else { Severity::Info },
                title: if hurting {
                    format!("vm.swappiness is {sw} while swap-ins and memory stalls go on ({swapped_in} pages, {stalled:.1} % stalled)")
                } else {
                    format!("vm.swappiness is {sw}, an extreme (no sign of harm now)")
                },
                explanation: if sw == 0 {
                    "Swappiness 0 tells reclaim to evict page cache almost always before anonymous memory, so \
                     under pressure the cache of running programs is thrown out while cold heap pages stay. \
                     Some databases ask for it (Aerospike); with swap-ins and stalls going on it is making \
                     pressure worse, not avoiding swap."
                } else {
                    "Swappiness above 100 makes reclaim prefer swapping anonymous memory over evicting page \
                     cache; that suits zram, where swapping is cheap, but on a disk every swapped page comes \
                     back at disk latency. With swap-ins and memory stalls going on, the setting is part of \
                     the cost."
                },
                fix: sysctl_fix("90-thrashguard-swap-setup", &[("vm.swappiness", target.to_string())]),
                docs: "https://docs.kernel.org/admin-guide/sysctl/vm.html#swappiness",
            });
        }
    }
    worst_of("swap-setup", issues, evidence)
}

#[cfg(test)]
mod tests {
    use super::super::memfacts::{Fields, SwapDev};
    use super::super::window::{Counters, Window};
    use super::*;
    use crate::units::Kib;

    fn pair(name: &str, a: u64, b: u64, seconds: f64) -> Window {
        let mut first = Counters::default();
        first.set(name, a);
        let mut last = Counters::default();
        last.set(name, b);
        Window { first, last, seconds }
    }

    fn proc(pid: u32, comm: &str, rss_mib: u64, swap_mib: u64) -> Proc {
        Proc { pid, comm: comm.into(), rss: Kib(rss_mib * 1024), swap: Kib(swap_mib * 1024), vmas: Some(40), oom_score_adj: Some(0) }
    }

    fn stalled(full_us_in_5s: u64) -> MemFacts {
        let mut f = MemFacts::unread();
        let mut w = pair("memory full total_us", 1_000, 1_000 + full_us_in_5s, 5.0);
        w.first.set("memory some total_us", 2_000);
        w.last.set("memory some total_us", 2_000 + full_us_in_5s * 2);
        f.pressure = Ok(w);
        f.vmstat = Ok(pair("pswpin", 100, 5_100, 5.0));
        f.procs =
            Ok(vec![proc(1, "systemd", 12, 0), proc(812, "java", 8000, 900), proc(90, "postgres", 2000, 0), proc(7, "hog", 3000, 50)]);
        f
    }

    fn found(o: Outcome) -> Finding {
        match o {
            Outcome::Found(f) => f,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn thrashing_by_full_share_names_the_largest() {
        assert!(matches!(thrashing(&stalled(100_000)), Outcome::Clear(_)), "2 %");
        let f = found(thrashing(&stalled(500_000)));
        assert_eq!(f.severity, Severity::Warning, "10 %");
        let names: Vec<&str> = f.evidence.iter().map(|e| e.value.as_str()).collect();
        assert!(names.contains(&"pid 812 (java): RSS 7.8 GiB, swap 900 MiB"), "{names:?}");
        assert_eq!(f.evidence.iter().filter(|e| e.name.starts_with("largest footprint")).count(), 3);
        assert_eq!(f.evidence.iter().filter(|e| e.name.starts_with("most swapped")).count(), 2, "only those with swap");
        assert!(f.fix.starts_with("stop or limit pid 812 (java)"), "{}", f.fix);
        assert_eq!(found(thrashing(&stalled(2_000_000))).severity, Severity::Critical, "40 %");
    }

    #[test]
    fn thrashing_since_boot_without_a_window() {
        let mut f = stalled(0);
        f.pressure = Ok(Window::single(pair("memory full total_us", 0, 20_000_000, 0.0).last));
        f.uptime_s = Ok(1000.0);
        let g = found(thrashing(&f));
        assert_eq!(g.severity, Severity::Info, "2 % since boot");
        assert!(g.evidence[0].value.contains("--window 0"));
        f.uptime_s = Err("uptime: no such file".into());
        assert!(matches!(thrashing(&f), Outcome::NotChecked(_)));
    }

    #[test]
    fn thrashing_not_checked_without_psi() {
        let mut f = stalled(0);
        f.pressure = Err("pressure/memory: no such file".into());
        assert!(matches!(thrashing(&f), Outcome::NotChecked(_)));
        f.pressure = Ok(pair("io full total_us", 0, 1, 5.0));
        assert!(matches!(thrashing(&f), Outcome::NotChecked(m) if m.contains("full")));
    }

    fn swap_facts(swap_total_kib: u64, swappiness: &str) -> MemFacts {
        let mut f = stalled(0);
        let mut m = Fields::default();
        m.set("MemTotal", 8 * 1024 * 1024);
        m.set("SwapTotal", swap_total_kib);
        f.meminfo = Ok(m);
        f.swaps = Ok(if swap_total_kib > 0 {
            vec![SwapDev { name: "/swapfile".into(), size: Kib(swap_total_kib), used: Kib(0) }]
        } else {
            vec![]
        });
        f.set("vm.swappiness", swappiness);
        f
    }

    #[test]
    fn swap_setup_cases() {
        assert!(matches!(swap_setup(&swap_facts(4 << 20, "60")), Outcome::Clear(_)));
        let g = found(swap_setup(&swap_facts(0, "60")));
        assert_eq!(g.severity, Severity::Info);
        assert!(g.explanation.contains("executables"), "{}", g.explanation);
        // extreme swappiness, quiet: info; with swap-ins and stalls: warning
        let quiet = found(swap_setup(&swap_facts(4 << 20, "0")));
        assert_eq!(quiet.severity, Severity::Info);
        let mut hurt = swap_facts(4 << 20, "180");
        hurt.pressure = stalled(500_000).pressure;
        let g = found(swap_setup(&hurt));
        assert_eq!(g.severity, Severity::Warning, "{g:?}");
        assert!(g.fix.starts_with("sysctl -w vm.swappiness=60"), "{}", g.fix);
        // swappiness with no swap at all is moot
        assert!(!found(swap_setup(&swap_facts(0, "0"))).title.contains("swappiness"));
    }

    #[test]
    fn swap_setup_zram_larger_than_ram() {
        let mut f = swap_facts(16 << 20, "100");
        f.swaps = Ok(vec![SwapDev { name: "/dev/zram0".into(), size: Kib(16 << 20), used: Kib(0) }]);
        f.zram_disksize.insert("zram0".into(), Ok(16 << 30));
        let g = found(swap_setup(&f));
        assert_eq!(g.severity, Severity::Info);
        assert!(g.title.contains("zram0 is larger than RAM") && g.fix.contains("--size 4096M"), "{g:?}");
        f.zram_disksize.insert("zram0".into(), Ok(4 << 30));
        assert!(matches!(swap_setup(&f), Outcome::Clear(_)));
        f.zram_disksize.insert("zram0".into(), Err("block/zram0/disksize: gone".into()));
        assert!(matches!(swap_setup(&f), Outcome::Clear(_)));
    }

    #[test]
    fn swap_setup_not_checked_without_meminfo() {
        let mut f = swap_facts(0, "60");
        f.meminfo = Err("meminfo: permission denied".into());
        assert!(matches!(swap_setup(&f), Outcome::NotChecked(_)));
    }
}
