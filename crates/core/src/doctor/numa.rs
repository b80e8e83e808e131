//! Rules about memory that is short on one NUMA node while another has plenty.
//!
//! Owns `zone-reclaim`: vm.zone_reclaim_mode on a machine with several memory nodes, where
//! the kernel reclaims (and may write out or swap) local memory instead of allocating from a
//! node with free pages, with `zone_reclaim_failed` (since boot or growing in the window)
//! and direct scanning in the window as the evidence of harm. Must never read a file itself.

use super::{Fact, Finding, Outcome, Severity, ev};

/// What `zone-reclaim` needs.
#[derive(Clone, Debug, PartialEq)]
pub struct ZoneReclaimFacts {
    /// vm.zone_reclaim_mode.
    pub mode: Fact<u32>,
    /// Nodes with memory (/sys/devices/system/node/has_memory).
    pub memory_nodes: Fact<u32>,
    /// vmstat `zone_reclaim_failed` since boot (`None` when the kernel has no such counter).
    pub zone_reclaim_failed: Option<u64>,
    /// vmstat `zone_reclaim_success` since boot (6.x kernels).
    pub zone_reclaim_success: Option<u64>,
    /// Growth of `zone_reclaim_failed` over the `--window` (`None`: no window).
    pub failed_in_window: Option<u64>,
    /// Growth of `pgscan_direct` over the window: allocating tasks reclaiming now.
    pub direct_scan_in_window: Option<u64>,
    /// The window's length in seconds (0 without one).
    pub window_s: f64,
}

/// Count the nodes of a kernel node list (`0`, `0-1`, `0,2-3`); `None` when garbled.
pub fn count_node_list(text: &str) -> Option<u32> {
    let text = text.trim();
    if text.is_empty() {
        return Some(0);
    }
    text.split(',').try_fold(0u32, |n, part| {
        let count = match part.split_once('-') {
            Some((a, b)) => b.trim().parse::<u32>().ok()?.checked_sub(a.trim().parse::<u32>().ok()?)? + 1,
            None => part.trim().parse::<u32>().map(|_| 1).ok()?,
        };
        n.checked_add(count)
    })
}

const DOCS: &str = "https://docs.kernel.org/admin-guide/sysctl/vm.html#zone-reclaim-mode";

fn what_mode_does(mode: u32) -> String {
    let mut parts = vec![];
    if mode & 1 != 0 {
        parts.push("reclaim on the local node before using another");
    }
    if mode & 2 != 0 {
        parts.push("write dirty pages out to do it");
    }
    if mode & 4 != 0 {
        parts.push("swap pages out to do it");
    }
    if parts.is_empty() { format!("{mode} (no known bit)") } else { format!("{mode}: {}", parts.join(", ")) }
}

/// `zone-reclaim`.
pub fn zone_reclaim(f: &ZoneReclaimFacts) -> Outcome {
    let mode = match &f.mode {
        Ok(m) => *m,
        Err(why) => return Outcome::NotChecked(why.clone()),
    };
    let mut evidence = vec![ev("vm.zone_reclaim_mode", what_mode_does(mode))];
    if mode == 0 {
        return Outcome::Clear(evidence);
    }
    let nodes = match &f.memory_nodes {
        Ok(n) => *n,
        Err(why) => return Outcome::NotChecked(format!("zone_reclaim_mode is {mode}, but the NUMA nodes are unknown: {why}")),
    };
    evidence.push(ev("NUMA nodes with memory", nodes));
    if let Some(failed) = f.zone_reclaim_failed {
        evidence.push(ev("zone_reclaim_failed (since boot)", failed));
    }
    if let Some(ok) = f.zone_reclaim_success {
        evidence.push(ev("zone_reclaim_success (since boot)", ok));
    }
    let window = format!("in the last {:.0} s", f.window_s);
    if let Some(d) = f.failed_in_window {
        evidence.push(ev(format!("zone_reclaim_failed {window}"), d));
    }
    if let Some(d) = f.direct_scan_in_window {
        evidence.push(ev(format!("pgscan_direct {window}"), d));
    }
    let fix = "sysctl -w vm.zone_reclaim_mode=0\nto keep it: echo 'vm.zone_reclaim_mode = 0' > /etc/sysctl.d/90-thrashguard.conf \
               (and remove the setting from any tuned profile that sets it, e.g. hpc-compute)"
        .to_string();
    if nodes < 2 {
        return Outcome::Found(Finding {
            id: "zone-reclaim",
            severity: Severity::Info,
            title: format!("vm.zone_reclaim_mode is {mode} on a single-node machine (harmless here)"),
            evidence,
            explanation: "Zone reclaim only changes where memory comes from when there are several NUMA nodes to \
                          choose from; with one it does nothing. It will matter if this configuration moves to a \
                          multi-socket machine."
                .into(),
            fix,
            docs: DOCS,
        });
    }
    let failed = f.zone_reclaim_failed.unwrap_or(0);
    let failing_now = f.failed_in_window.unwrap_or(0);
    let scanning_now = f.direct_scan_in_window.unwrap_or(0);
    let (severity, title) = if failing_now > 0 || scanning_now > 0 {
        (
            Severity::Critical,
            format!(
                "zone reclaim is on across {nodes} nodes and is costing now: {failing_now} failures, {scanning_now} pages scanned directly {window}"
            ),
        )
    } else if failed > 0 {
        (Severity::Critical, format!("zone reclaim is on across {nodes} nodes and has failed {failed} times"))
    } else {
        (Severity::Warning, format!("vm.zone_reclaim_mode is {mode} on a machine with {nodes} memory nodes"))
    };
    Outcome::Found(Finding {
        id: "zone-reclaim",
        severity,
        title,
        evidence,
        explanation: "With zone reclaim on, an allocation that finds its local node full reclaims that node's page \
                      cache (and, with bits 2 and 4, writes out or swaps) instead of taking free memory from \
                      another node. Processes stall in reclaim and caches are thrown away while gigabytes sit free \
                      elsewhere: latency spikes with plenty of free memory. The kernel disables it by default \
                      since 3.16; it pays only when every workload fits in one node."
            .into(),
        fix,
        docs: DOCS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(mode: u32, nodes: u32, failed: u64) -> ZoneReclaimFacts {
        ZoneReclaimFacts {
            mode: Ok(mode),
            memory_nodes: Ok(nodes),
            zone_reclaim_failed: Some(failed),
            zone_reclaim_success: Some(0),
            failed_in_window: None,
            direct_scan_in_window: None,
            window_s: 0.0,
        }
    }

    fn sev(o: Outcome) -> Option<Severity> {
        if let Outcome::Found(f) = o { Some(f.severity) } else { None }
    }

    #[test]
    fn node_lists() {
        assert_eq!(count_node_list("0\n"), Some(1));
        assert_eq!(count_node_list("0-1"), Some(2));
        assert_eq!(count_node_list("0,2-3"), Some(3));
        assert_eq!(count_node_list(""), Some(0));
        assert_eq!(count_node_list("3-1"), None);
        assert_eq!(count_node_list("x"), None);
    }

    #[test]
    fn fires_by_nodes_and_evidence() {
        assert!(matches!(zone_reclaim(&facts(0, 4, 9)), Outcome::Clear(_)));
        assert_eq!(sev(zone_reclaim(&facts(1, 1, 0))), Some(Severity::Info));
        assert_eq!(sev(zone_reclaim(&facts(1, 2, 0))), Some(Severity::Warning));
        assert_eq!(sev(zone_reclaim(&facts(7, 2, 35))), Some(Severity::Critical));
        let Outcome::Found(f) = zone_reclaim(&facts(3, 2, 0)) else { panic!() };
        assert!(f.evidence[0].value.contains("write dirty pages"), "{:?}", f.evidence);
        assert!(f.fix.starts_with("sysctl -w vm.zone_reclaim_mode=0"));
    }

    #[test]
    fn the_window_makes_it_critical_now() {
        let now = |failed: u64, scanned: u64| ZoneReclaimFacts {
            failed_in_window: Some(failed),
            direct_scan_in_window: Some(scanned),
            window_s: 5.0,
            ..facts(1, 2, 0)
        };
        assert_eq!(sev(zone_reclaim(&now(0, 0))), Some(Severity::Warning));
        let Outcome::Found(f) = zone_reclaim(&now(3, 0)) else { panic!() };
        assert_eq!(f.severity, Severity::Critical);
        assert!(f.title.contains("costing now: 3 failures, 0 pages scanned directly in the last 5 s"), "{}", f.title);
        assert_eq!(sev(zone_reclaim(&now(0, 800))), Some(Severity::Critical));
        // one node: still harmless
        assert_eq!(sev(zone_reclaim(&ZoneReclaimFacts { memory_nodes: Ok(1), ..now(3, 800) })), Some(Severity::Info));
    }

    #[test]
    fn unknown_facts_are_not_checked() {
        let f = ZoneReclaimFacts { mode: Err("sys/vm/zone_reclaim_mode: no such file".into()), ..facts(0, 1, 0) };
        assert!(matches!(zone_reclaim(&f), Outcome::NotChecked(_)));
        let f = ZoneReclaimFacts { memory_nodes: Err("no /sys".into()), ..facts(1, 1, 0) };
        assert!(matches!(zone_reclaim(&f), Outcome::NotChecked(_)));
        // off is off, nodes or not
        let f = ZoneReclaimFacts { memory_nodes: Err("no /sys".into()), ..facts(0, 1, 0) };
        assert!(matches!(zone_reclaim(&f), Outcome::Clear(_)));
    }
}
