//! Rules about the free-page reserve that allocations which cannot wait (GFP_ATOMIC: network
//! receive, interrupt handlers) live on.
//!
//! Owns `atomic-reserve`: vm.min_free_kbytes against the kernel's own floor, and packets the
//! kernel dropped because their buffers came from the emergency reserve (TcpExt
//! PFMemallocDrop), which is how a lifeline datagram is lost under pressure. Must never read
//! a file itself.

use super::{Fact, Finding, Outcome, Severity, ev};

/// What `atomic-reserve` needs.
#[derive(Clone, Debug, PartialEq)]
pub struct ReserveFacts {
    /// vm.min_free_kbytes.
    pub min_free_kbytes: Fact<u64>,
    /// MemTotal in KiB.
    pub mem_total_kib: Fact<u64>,
    /// TcpExt PFMemallocDrop since boot (`None`: the kernel does not count it, before 3.6).
    pub pfmemalloc_drop: Fact<Option<u64>>,
    /// PFMemallocDrop's rise over doctor's window and the window's length in seconds
    /// (`None` without a window, `--window 0`, or when the counters were not sampled).
    pub pfmemalloc_window: Option<(u64, f64)>,
}

/// The kernel's own default for min_free_kbytes (mm/page_alloc.c: sqrt(lowmem KiB x 16),
/// clamped to 128 KiB..256 MiB), with all of RAM taken as low memory (true on 64-bit).
pub fn kernel_default_min_free_kbytes(mem_total_kib: u64) -> u64 {
    (mem_total_kib.saturating_mul(16)).isqrt().clamp(128, 262_144)
}

const DOCS: &str = "https://docs.kernel.org/admin-guide/sysctl/vm.html#min-free-kbytes";

const DROP_WHY: &str = "Under memory pressure the kernel receives packets into buffers from its emergency \
                        reserve and then drops them, because only sockets that swap over the network may use that \
                        memory. Any datagram, a lifeline request included, can be lost exactly when the machine is in \
                        trouble. A larger reserve keeps ordinary buffers available longer.";

fn total_kib(f: &ReserveFacts) -> Option<u64> {
    f.mem_total_kib.as_ref().ok().copied()
}

/// `atomic-reserve`.
pub fn atomic_reserve(f: &ReserveFacts) -> Outcome {
    let min_free = match &f.min_free_kbytes {
        Ok(v) => *v,
        Err(why) => return Outcome::NotChecked(why.clone()),
    };
    let mut evidence = vec![ev("vm.min_free_kbytes", format!("{min_free} KiB"))];
    let total = f.mem_total_kib.as_ref().ok().copied();
    if let Some(total) = total {
        evidence.push(ev("MemTotal", format!("{} MiB", total / 1024)));
        evidence.push(ev("kernel default for this RAM", format!("{} KiB", kernel_default_min_free_kbytes(total))));
    }
    let persist = |v: u64| {
        format!("sysctl -w vm.min_free_kbytes={v}\nto keep it: echo 'vm.min_free_kbytes = {v}' > /etc/sysctl.d/90-thrashguard.conf")
    };
    if min_free < 1024 {
        let target = total.map_or(1024, kernel_default_min_free_kbytes).max(1024);
        return Outcome::Found(Finding {
            id: "atomic-reserve",
            severity: Severity::Critical,
            title: format!("vm.min_free_kbytes is {min_free} KiB, below 1 MiB"),
            evidence,
            explanation: "min_free_kbytes sizes the reserve that allocations which cannot wait (network receive, \
                          interrupts) are served from. The kernel documentation calls values below 1024 KiB \
                          subtly broken: under pressure such allocations fail, packets are dropped and drivers \
                          log page allocation failures."
                .into(),
            fix: persist(target),
            docs: DOCS,
        });
    }
    if let Some((delta, seconds)) = f.pfmemalloc_window {
        let drops = f.pfmemalloc_drop.as_ref().ok().copied().flatten().unwrap_or(delta);
        evidence.push(ev(
            "TcpExt PFMemallocDrop",
            format!("{drops} since boot, +{delta} in {seconds:.0} s ({:.1}/s)", delta as f64 / seconds.max(f64::MIN_POSITIVE)),
        ));
        if delta > 0 {
            let fix = super::kernlog::reserve_fix(Some(min_free), None, total_kib(f));
            return Outcome::Found(Finding {
                id: "atomic-reserve",
                severity: Severity::Warning,
                title: format!("{delta} packets were dropped for lack of memory in the last {seconds:.0} s (PFMemallocDrop)"),
                evidence,
                explanation: DROP_WHY.into(),
                fix,
                docs: DOCS,
            });
        }
        if drops == 0 {
            return Outcome::Clear(evidence);
        }
        evidence.pop();
    }
    match &f.pfmemalloc_drop {
        Err(why) => Outcome::NotChecked(why.clone()),
        Ok(None) => {
            evidence.push(ev("TcpExt PFMemallocDrop", "not counted by this kernel"));
            Outcome::Clear(evidence)
        }
        Ok(Some(0)) => {
            evidence.push(ev("TcpExt PFMemallocDrop", 0));
            Outcome::Clear(evidence)
        }
        Ok(Some(drops)) => {
            evidence.push(ev("TcpExt PFMemallocDrop (since boot)", drops));
            let cap = total.map_or(u64::MAX, |t| t / 50); // 2 % of RAM
            let suggested = min_free.saturating_mul(2).min(cap).max(min_free);
            let fix = if suggested > min_free {
                persist(suggested)
            } else {
                "min_free_kbytes is already 2 % of RAM: raise vm.watermark_scale_factor instead (e.g. \
                 sysctl -w vm.watermark_scale_factor=100; keep it in /etc/sysctl.d/90-thrashguard.conf), \
                 which wakes kswapd earlier without growing the reserve"
                    .into()
            };
            Outcome::Found(Finding {
                id: "atomic-reserve",
                severity: Severity::Warning,
                title: format!("{drops} packets were dropped for lack of memory (PFMemallocDrop)"),
                evidence,
                explanation: DROP_WHY.into(),
                fix,
                docs: DOCS,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(min_free: u64, drops: Option<u64>) -> ReserveFacts {
        ReserveFacts {
            min_free_kbytes: Ok(min_free),
            mem_total_kib: Ok(24 * 1024 * 1024),
            pfmemalloc_drop: Ok(drops),
            pfmemalloc_window: None,
        }
    }

    #[test]
    fn kernel_default_matches_the_kernel() {
        // this host: 24 GiB -> 67584 KiB printed by /proc/sys/vm/min_free_kbytes is the
        // default raised by khugepaged; the plain formula gives sqrt(24 GiB in KiB x 16)
        assert_eq!(kernel_default_min_free_kbytes(25_165_824), 20_066);
        assert_eq!(kernel_default_min_free_kbytes(1_496_020), 4_892);
        assert_eq!(kernel_default_min_free_kbytes(1024), 128);
        assert_eq!(kernel_default_min_free_kbytes(u64::MAX), 262_144);
    }

    #[test]
    fn fires_on_drops_and_on_a_tiny_reserve_only() {
        assert!(matches!(atomic_reserve(&facts(67_584, Some(0))), Outcome::Clear(_)));
        assert!(matches!(atomic_reserve(&facts(67_584, None)), Outcome::Clear(_)));
        let Outcome::Found(f) = atomic_reserve(&facts(67_584, Some(12))) else { panic!() };
        assert_eq!(f.severity, Severity::Warning);
        assert!(f.fix.contains("vm.min_free_kbytes=135168"), "{}", f.fix);
        let Outcome::Found(f) = atomic_reserve(&facts(512, Some(0))) else { panic!() };
        assert_eq!(f.severity, Severity::Critical);
        assert!(f.fix.contains("vm.min_free_kbytes=20066"), "{}", f.fix);
        // at 2 % of RAM already: the other knob
        let Outcome::Found(f) = atomic_reserve(&facts(24 * 1024 * 1024 / 50, Some(3))) else { panic!() };
        assert!(f.fix.contains("watermark_scale_factor"), "{}", f.fix);
    }

    #[test]
    fn the_window_decides_when_there_is_one() {
        let windowed = |total, delta| ReserveFacts { pfmemalloc_window: Some((delta, 5.0)), ..facts(67_584, Some(total)) };
        let Outcome::Found(f) = atomic_reserve(&windowed(40, 10)) else { panic!() };
        assert_eq!(f.severity, Severity::Warning);
        assert!(f.title.contains("10 packets") && f.title.contains("last 5 s"), "{}", f.title);
        assert!(f.evidence.iter().any(|e| e.value == "40 since boot, +10 in 5 s (2.0/s)"), "{:?}", f.evidence);
        assert!(f.fix.contains("vm.min_free_kbytes=135168"), "{}", f.fix);
        assert!(matches!(atomic_reserve(&windowed(0, 0)), Outcome::Clear(_)));
        // old drops, none now: the since-boot warning as without a window
        let Outcome::Found(f) = atomic_reserve(&windowed(40, 0)) else { panic!() };
        assert!(f.title.starts_with("40 packets"), "{}", f.title);
    }

    #[test]
    fn missing_facts_say_so() {
        let f = ReserveFacts { min_free_kbytes: Err("sys/vm/min_free_kbytes: no such file".into()), ..facts(1, None) };
        assert_eq!(atomic_reserve(&f), Outcome::NotChecked("sys/vm/min_free_kbytes: no such file".into()));
        let f = ReserveFacts { pfmemalloc_drop: Err("net/netstat: permission denied".into()), ..facts(65536, None) };
        assert!(matches!(atomic_reserve(&f), Outcome::NotChecked(_)));
    }
}
