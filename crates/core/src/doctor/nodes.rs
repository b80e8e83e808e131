//! Rules about memory spread over NUMA nodes.
//!
//! Owns `numa-imbalance` (a node's zone at or below its low watermark in /proc/zoneinfo,
//! or with per-node meminfo only, a node nearly out of free memory, while another has plenty:
//! allocations bound or preferring the full node reclaim and swap with memory free
//! elsewhere) and `numa-placement` (a process holding a large share of RAM on a multi-node
//! machine with the default local policy while allocations miss their node). Must never
//! read a file itself.

use super::memfacts::{MemFacts, ZoneMarks, basis, grew, size, span};
use super::{Finding, Outcome, Severity, ev};
use crate::units::Kib;

/// A node with less free memory than this share of its own, percent, is nearly exhausted
/// (proposed; its low watermark is usually lower still).
pub const STARVED_PCT: f64 = 2.0;
/// ...while another has more than this free, percent (doctor-checks.md #1: "> 10 % free").
pub const ROOMY_PCT: f64 = 10.0;
/// A process with this share of RAM or more is "big" for placement, percent (proposed).
pub const BIG_PCT: f64 = 25.0;

const DOCS: &str = "https://docs.kernel.org/admin-guide/mm/numa_memory_policy.html";

/// A zone with less than this share of its node's managed pages is left out of the
/// watermark test, percent (*proposed*: DMA's 16 MiB is kept for old devices and sits on
/// its own reserve; the zones that serve allocations hold the rest).
pub const ZONE_SHARE_PCT: f64 = 10.0;

/// `numa-imbalance`: judged on /proc/zoneinfo watermarks when it describes two or more
/// nodes, else on per-node meminfo (free share).
pub fn numa_imbalance(f: &MemFacts) -> Outcome {
    let why = match &f.zones {
        Ok(z) if node_ids(z).len() >= 2 => return by_watermarks(f, z),
        Ok(_) => "one node in /proc/zoneinfo".to_string(),
        Err(why) => why.clone(),
    };
    by_meminfo(f, why)
}

fn node_ids(zones: &[ZoneMarks]) -> Vec<u32> {
    let mut ids: Vec<u32> = zones.iter().map(|z| z.node).collect();
    ids.dedup();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// One node as zoneinfo shows it: its populated zones, free and managed in pages.
struct NodeZones<'a> {
    id: u32,
    zones: Vec<&'a ZoneMarks>,
    free: u64,
    managed: u64,
}

impl NodeZones<'_> {
    fn free_pct(&self) -> f64 {
        if self.managed == 0 { 0.0 } else { self.free as f64 * 100.0 / self.managed as f64 }
    }

    /// The zones that serve allocations (at least [`ZONE_SHARE_PCT`] of the node).
    fn significant(&self) -> impl Iterator<Item = &&ZoneMarks> {
        self.zones.iter().filter(|z| z.managed as f64 * 100.0 >= ZONE_SHARE_PCT * self.managed as f64)
    }
}

fn by_watermarks(f: &MemFacts, zones: &[ZoneMarks]) -> Outcome {
    let kib = |pages: u64| pages.saturating_mul(f.page_kib);
    let nodes: Vec<NodeZones> = node_ids(zones)
        .into_iter()
        .map(|id| {
            let zs: Vec<&ZoneMarks> = zones.iter().filter(|z| z.node == id && z.managed > 0).collect();
            NodeZones { id, free: zs.iter().map(|z| z.free).sum(), managed: zs.iter().map(|z| z.managed).sum(), zones: zs }
        })
        .collect();
    let mut evidence = vec![ev("watermarks from", "/proc/zoneinfo (free vs min/low/high of each populated zone)")];
    for n in &nodes {
        for z in &n.zones {
            evidence.push(ev(
                format!("node {} zone {}", n.id, z.name),
                format!("free {} KiB, min {} KiB, low {} KiB, high {} KiB", kib(z.free), kib(z.min), kib(z.low), kib(z.high)),
            ));
        }
    }
    // The starved zone: at or below low, the one deepest under its watermark first.
    let starved = nodes
        .iter()
        .flat_map(|n| n.significant().map(move |z| (n, *z)))
        .filter(|(_, z)| z.free <= z.low)
        .min_by(|(_, a), (_, b)| (a.free as f64 / a.low.max(1) as f64).total_cmp(&(b.free as f64 / b.low.max(1) as f64)));
    let Some((low_node, zone)) = starved else { return Outcome::Clear(evidence) };
    let roomy = nodes
        .iter()
        .filter(|n| n.id != low_node.id && n.free_pct() > ROOMY_PCT && n.significant().all(|z| z.free > z.high))
        .max_by(|a, b| a.free_pct().total_cmp(&b.free_pct()));
    let Some(high_node) = roomy else { return Outcome::Clear(evidence) };
    let (mark, value) = if zone.free <= zone.min { ("min", zone.min) } else { ("low", zone.low) };
    let title = format!(
        "node {} zone {} is at its {mark} watermark (free {} KiB <= {mark} {} KiB) while node {} has {:.0} % free",
        low_node.id,
        zone.name,
        kib(zone.free),
        kib(value),
        high_node.id,
        high_node.free_pct()
    );
    found_imbalance(f, low_node.id, title, evidence)
}

fn by_meminfo(f: &MemFacts, zoneinfo_unused: String) -> Outcome {
    let nodes = match &f.nodes {
        Ok(n) => n,
        Err(why) => return Outcome::NotChecked(why.clone()),
    };
    let mut evidence: Vec<_> = nodes
        .iter()
        .map(|n| ev(format!("node {} free", n.id), format!("{} of {} ({:.1} %)", size(n.free), size(n.total), n.free_pct())))
        .collect();
    if nodes.len() < 2 {
        return Outcome::Clear(evidence);
    }
    evidence.push(ev("zone watermarks", format!("not used ({zoneinfo_unused}): judged on per-node meminfo")));
    let starved: Vec<_> = nodes.iter().filter(|n| n.free_pct() < STARVED_PCT).collect();
    let roomy = nodes.iter().filter(|n| n.free_pct() > ROOMY_PCT).max_by(|a, b| a.free_pct().total_cmp(&b.free_pct()));
    let (Some(low), Some(high)) = (starved.first(), roomy) else { return Outcome::Clear(evidence) };
    let title = format!(
        "node {} is nearly out of memory ({:.1} % free) while node {} has {:.0} % free",
        low.id,
        low.free_pct(),
        high.id,
        high.free_pct()
    );
    found_imbalance(f, low.id, title, evidence)
}

fn found_imbalance(f: &MemFacts, low: u32, title: String, mut evidence: Vec<super::Evidence>) -> Outcome {
    if let Ok(w) = &f.vmstat {
        evidence.push(basis(w));
        for c in ["pgscan_direct", "numa_miss", "numa_foreign", "zone_reclaim_failed"] {
            evidence.push(w.evidence(c));
        }
    }
    if let Ok(mode) = f.number("vm.zone_reclaim_mode") {
        evidence.push(ev("vm.zone_reclaim_mode", mode));
    }
    let biggest = f.procs.iter().flatten().max_by_key(|p| p.footprint());
    let who = biggest.map_or("<the process>".to_string(), |p| format!("{} (pid {})", p.comm, p.pid));
    Outcome::Found(Finding {
        id: "numa-imbalance",
        severity: Severity::Warning,
        title,
        evidence,
        explanation: "Memory that is bound to a node (numactl --membind, a cpuset's mems, MPOL_BIND) or that \
                      zone reclaim keeps local must come from that node: when it runs out, the kernel reclaims, \
                      swaps or OOM-kills there although another node has plenty free. Even with the default \
                      policy, processes on the full node pay remote latency for everything new."
            .into(),
        fix: format!(
            "see which processes hold memory on node {low}: numastat -p {who}; check their binding (numactl --show, the cpuset's cpuset.mems)\n\
             spread a big one: numactl --interleave=all <command> (in its unit: ExecStart=/usr/bin/numactl --interleave=all ...)\n\
             and keep reclaim from staying local: sysctl -w vm.zone_reclaim_mode=0 (kept in /etc/sysctl.d/90-thrashguard-numa.conf)"
        ),
        docs: DOCS,
    })
}

/// `numa-placement`.
pub fn numa_placement(f: &MemFacts) -> Outcome {
    let nodes = match &f.nodes {
        Ok(n) => n,
        Err(why) => return Outcome::NotChecked(why.clone()),
    };
    let mut evidence = vec![ev("NUMA nodes", nodes.len())];
    if nodes.len() < 2 {
        return Outcome::Clear(evidence);
    }
    let procs = match &f.procs {
        Ok(p) => p,
        Err(why) => return Outcome::NotChecked(why.clone()),
    };
    let ram = Kib(nodes.iter().map(|n| n.total.0).sum());
    let Some(big) = procs.iter().max_by_key(|p| p.footprint()) else { return Outcome::Clear(evidence) };
    evidence.push(ev("largest process", format!("{} = {:.0} % of RAM", big.describe(), big.footprint().pct_of(ram))));
    let policy = match &f.top_policy {
        Some((pid, Ok(line))) if *pid == big.pid => line.split_whitespace().nth(1).unwrap_or("unknown").to_string(),
        Some((_, Err(why))) => format!("unknown ({why})"),
        _ => "unknown".into(),
    };
    evidence.push(ev("its memory policy (numa_maps, first mapping)", &policy));
    if let Ok(b) = f.number("kernel.numa_balancing") {
        evidence.push(ev("kernel.numa_balancing", b));
    }
    let mut missing = 0;
    if let Ok(w) = &f.vmstat {
        evidence.push(basis(w));
        evidence.push(w.evidence("numa_miss"));
        evidence.push(w.evidence("numa_foreign"));
        missing = grew(w, "numa_miss").unwrap_or(0).max(grew(w, "numa_foreign").unwrap_or(0));
    }
    if big.footprint().pct_of(ram) < BIG_PCT || policy != "default" || missing == 0 {
        return Outcome::Clear(evidence);
    }
    let span = f.vmstat.as_ref().map_or(String::new(), span);
    let mongo = if big.comm == "mongod" { " (MongoDB itself warns when it is not started interleaved)" } else { "" };
    Outcome::Found(Finding {
        id: "numa-placement",
        severity: Severity::Info,
        title: format!(
            "{} (pid {}) holds {:.0} % of RAM with the default local policy; {missing} allocations missed their node {span}",
            big.comm,
            big.pid,
            big.footprint().pct_of(ram)
        ),
        evidence,
        explanation: format!(
            "With the default policy a process's memory comes from the node it runs on until that node is full, \
             then spills to others (numa_miss/numa_foreign count those spills). A process bigger than one node \
             ends up lopsided: its threads on one node wait on remote memory, and the full node reclaims first{mongo}. \
             Interleaving spreads its pages evenly."
        ),
        fix: format!(
            "start it interleaved: numactl --interleave=all <its command> (in its unit: ExecStart=/usr/bin/numactl --interleave=all ...), \
             or bind it to one node that fits it; check with numastat -p {}",
            big.pid
        ),
        docs: DOCS,
    })
}

#[cfg(test)]
mod tests {
    use super::super::memfacts::{Node, Proc, ZoneMarks};
    use super::super::window::{Counters, Window};
    use super::*;

    fn node(id: u32, total_gib: u64, free_mib: u64) -> Node {
        Node { id, total: Kib(total_gib << 20), free: Kib(free_mib << 10) }
    }

    fn facts(nodes: Vec<Node>, miss_in_window: u64, policy: &str) -> MemFacts {
        let mut f = MemFacts::unread();
        f.nodes = Ok(nodes);
        let mut a = Counters::default();
        a.set("numa_miss", 100);
        a.set("numa_foreign", 100);
        let mut b = a.clone();
        b.set("numa_miss", 100 + miss_in_window);
        f.vmstat = Ok(Window { first: a, last: b, seconds: 5.0 });
        f.procs = Ok(vec![
            Proc { pid: 4, comm: "mongod".into(), rss: Kib(40 << 20), swap: Kib(0), vmas: None, oom_score_adj: None },
            Proc { pid: 5, comm: "sshd".into(), rss: Kib(1 << 10), swap: Kib(0), vmas: None, oom_score_adj: None },
        ]);
        f.top_policy = Some((4, Ok(format!("7f00 {policy} anon=10 N0=10 kernelpagesize_kB=4"))));
        f
    }

    #[test]
    fn imbalance_between_nodes() {
        assert!(matches!(numa_imbalance(&facts(vec![node(0, 64, 30_000)], 0, "default")), Outcome::Clear(_)), "one node");
        assert!(matches!(numa_imbalance(&facts(vec![node(0, 64, 30_000), node(1, 64, 20_000)], 0, "default")), Outcome::Clear(_)));
        let Outcome::Found(g) = numa_imbalance(&facts(vec![node(0, 64, 600), node(1, 64, 20_000)], 0, "default")) else { panic!() };
        assert_eq!(g.severity, Severity::Warning);
        assert!(g.title.starts_with("node 0 is nearly out of memory (0.9 % free) while node 1 has 31 % free"), "{}", g.title);
        assert!(g.fix.contains("numastat -p mongod (pid 4)"), "{}", g.fix);
        // both short: no node to take from, so no imbalance (it is plain shortage)
        assert!(matches!(numa_imbalance(&facts(vec![node(0, 64, 600), node(1, 64, 700)], 0, "default")), Outcome::Clear(_)));
    }

    /// The real zoneinfo of the 6.18 host (one node) made into two nodes: node 1 a copy of
    /// node 0; `free` sets (node, zone) -> free pages.
    fn two_node_zones(free: &[(u32, &str, u64)]) -> Vec<ZoneMarks> {
        let one = include_str!("../../tests/fixtures/proc/6.18.44-host/zoneinfo");
        let text = format!("{one}{}", one.replace("Node 0, zone", "Node 1, zone"));
        let mut zones = crate::parse::zoneinfo::parse("zoneinfo", text.as_bytes()).unwrap();
        for z in &mut zones {
            if let Some((_, _, pages)) = free.iter().find(|(n, name, _)| *n == z.node && *name == z.name) {
                z.free = *pages;
            }
        }
        zones
    }

    fn zone_facts(zones: Vec<ZoneMarks>) -> MemFacts {
        let mut f = facts(vec![node(0, 64, 30_000), node(1, 64, 30_000)], 0, "default");
        f.zones = Ok(zones);
        f
    }

    #[test]
    fn imbalance_by_zone_watermarks() {
        // as captured, twice: plenty free everywhere
        let Outcome::Clear(e) = numa_imbalance(&zone_facts(two_node_zones(&[]))) else { panic!() };
        assert!(
            e.iter().any(|e| e.name == "node 1 zone Normal" && e.value == "free 650744 KiB, min 13652 KiB, low 17064 KiB, high 20476 KiB"),
            "{e:?}"
        );
        assert!(!e.iter().any(|e| e.name.contains("Movable")), "empty zones are left out: {e:?}");
        // node 0's Normal zone at its low watermark (4266 pages), node 1 roomy
        let Outcome::Found(g) = numa_imbalance(&zone_facts(two_node_zones(&[(0, "Normal", 4266)]))) else { panic!() };
        assert_eq!(g.severity, Severity::Warning);
        assert!(
            g.title.starts_with("node 0 zone Normal is at its low watermark (free 17064 KiB <= low 17064 KiB) while node 1 has 97 % free"),
            "{}",
            g.title
        );
        assert!(g.fix.contains("numastat -p mongod (pid 4)"), "{}", g.fix);
        // below min: said so
        let Outcome::Found(g) = numa_imbalance(&zone_facts(two_node_zones(&[(0, "Normal", 3000)]))) else { panic!() };
        assert!(g.title.contains("is at its min watermark (free 12000 KiB <= min 13652 KiB)"), "{}", g.title);
        // one pressed zone above low is fine; a tiny DMA zone at its low mark does not count
        assert!(matches!(numa_imbalance(&zone_facts(two_node_zones(&[(0, "Normal", 4267)]))), Outcome::Clear(_)));
        assert!(matches!(numa_imbalance(&zone_facts(two_node_zones(&[(0, "DMA", 10)]))), Outcome::Clear(_)));
        // both nodes short: no node to take from
        let both = two_node_zones(&[(0, "Normal", 4000), (1, "Normal", 5000)]);
        assert!(matches!(numa_imbalance(&zone_facts(both)), Outcome::Clear(_)), "node 1's Normal is below its high mark");
    }

    #[test]
    fn meminfo_is_the_fallback() {
        // zoneinfo unreadable, or of one node: per-node meminfo decides, and says why
        let mut f = facts(vec![node(0, 64, 600), node(1, 64, 20_000)], 0, "default");
        f.zones = Err("/proc/zoneinfo: Permission denied".into());
        let Outcome::Found(g) = numa_imbalance(&f) else { panic!() };
        assert!(g.title.starts_with("node 0 is nearly out of memory"), "{}", g.title);
        assert!(
            g.evidence.iter().any(|e| e.value.contains("Permission denied") && e.value.contains("per-node meminfo")),
            "{:?}",
            g.evidence
        );
        let one = include_bytes!("../../tests/fixtures/proc/6.18.44-host/zoneinfo");
        f.zones = Ok(crate::parse::zoneinfo::parse("zoneinfo", one).unwrap());
        assert!(matches!(numa_imbalance(&f), Outcome::Found(_)), "one node in zoneinfo");
        // zoneinfo of two nodes wins over meminfo
        f.zones = Ok(two_node_zones(&[]));
        assert!(matches!(numa_imbalance(&f), Outcome::Clear(_)));
    }

    #[test]
    fn placement_of_a_big_process() {
        let two = || vec![node(0, 64, 10_000), node(1, 64, 10_000)];
        let Outcome::Found(g) = numa_placement(&facts(two(), 500, "default")) else { panic!() };
        assert_eq!(g.severity, Severity::Info);
        assert!(g.title.starts_with("mongod (pid 4) holds 31 % of RAM"), "{}", g.title);
        assert!(g.explanation.contains("MongoDB itself warns"));
        assert!(matches!(numa_placement(&facts(two(), 0, "default")), Outcome::Clear(_)), "no misses");
        assert!(matches!(numa_placement(&facts(two(), 500, "interleave:0-1")), Outcome::Clear(_)));
        assert!(matches!(numa_placement(&facts(vec![node(0, 128, 10)], 500, "default")), Outcome::Clear(_)), "one node");
    }

    #[test]
    fn not_checked() {
        let mut f = facts(vec![], 0, "default");
        f.nodes = Err("devices/system/node: no such file".into());
        assert!(matches!(numa_imbalance(&f), Outcome::NotChecked(_)));
        assert!(matches!(numa_placement(&f), Outcome::NotChecked(_)));
        let mut f = facts(vec![node(0, 64, 10), node(1, 64, 10)], 1, "default");
        f.procs = Err("no processes".into());
        assert!(matches!(numa_placement(&f), Outcome::NotChecked(_)));
    }
}
