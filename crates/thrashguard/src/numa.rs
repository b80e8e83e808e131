//! NUMA nodes as pressure scopes of their own.
//!
//! One node can be exhausted (a process bound to it with mbind/cpusets, or a node-local
//! allocation storm) while the machine as a whole has plenty free, so the system scope's
//! gate never opens. Owns finding the nodes with memory under `--sys-root`
//! (devices/system/node/nodeN) and reading each node's meminfo and vmstat through
//! pre-opened files. Only machines with two or more memory nodes get node scopes. It must
//! never decide or signal.

use std::path::Path;

use thrashguard_core::parse::{meminfo, vmstat};
use thrashguard_core::policy::{Policy, PolicyConfig};
use thrashguard_core::snapshot::{ScopeSample, Snapshot};
use thrashguard_core::units::Micros;

use crate::sample::ProcFile;

/// One watched NUMA node.
#[derive(Debug)]
pub struct NodeScope {
    /// Node number.
    pub node: u32,
    /// This node's own policy state.
    pub policy: Policy,
    meminfo: ProcFile,
    vmstat: ProcFile,
}

impl NodeScope {
    /// One sample: the node's memory and refaults, the machine's PSI and swap.
    pub fn sample(&mut self, system: &Snapshot) -> Option<ScopeSample> {
        let mem = meminfo::parse("node meminfo", self.meminfo.read().ok()?).ok()?;
        let vm = vmstat::parse("node vmstat", self.vmstat.read().ok()?).ok()?;
        Some(ScopeSample::node(system.at, system, &mem, &vm))
    }
}

/// The memory nodes under `sys_root`, as scopes; empty on a single-node machine. A node
/// scope's stall is the machine's, so `stall_wakeup` (the system's PSI trigger is armed)
/// holds for every node too (see [`Policy::set_stall_wakeup`]).
pub fn discover(sys_root: &Path, cfg: &PolicyConfig, stall_wakeup: bool) -> Vec<NodeScope> {
    let base = sys_root.join("devices/system/node");
    let Ok(rd) = std::fs::read_dir(&base) else { return Vec::new() };
    let mut nodes: Vec<NodeScope> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let node: u32 = name.strip_prefix("node")?.parse().ok()?;
            let mut mi = ProcFile::open(e.path().join("meminfo")).ok()?;
            let total = meminfo::parse("node meminfo", mi.read().ok()?).ok()?.mem_total;
            if total.0 == 0 {
                return None; // a CPU-only node
            }
            let vmstat = ProcFile::open(e.path().join("vmstat")).ok()?;
            let mut policy = Policy::new(cfg.clone());
            policy.set_calm_interval(Some(Micros::from_millis(cfg.max_interval_ms)));
            policy.set_stall_wakeup(stall_wakeup);
            Some(NodeScope { node, policy, meminfo: mi, vmstat })
        })
        .collect();
    if nodes.len() < 2 {
        return Vec::new();
    }
    nodes.sort_by_key(|n| n.node);
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_memory_nodes_and_a_cpu_only_one() {
        let tmp = std::env::temp_dir().join(format!("tg-numa-{}", std::process::id()));
        for (n, total) in [(0, 1000), (1, 2000), (2, 0)] {
            let d = tmp.join(format!("devices/system/node/node{n}"));
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(d.join("meminfo"), format!("Node {n} MemTotal: {total} kB\nNode {n} MemFree: 10 kB\n")).expect("w");
            std::fs::write(d.join("vmstat"), "workingset_refault_anon 1\nworkingset_refault_file 2\n").expect("w");
        }
        std::fs::write(tmp.join("devices/system/node/possible"), "0-2\n").expect("w");
        let nodes = discover(&tmp, &PolicyConfig::default(), true);
        assert_eq!(nodes.iter().map(|n| n.node).collect::<Vec<_>>(), vec![0, 1]);
        // a node short of memory but calm, under the system's trigger: sampled every
        // max_interval_ms, as the system scope is; without the trigger, every min_interval_ms
        let cfg = PolicyConfig::default();
        let short_calm = |stall_wakeup: bool| {
            let mut node = discover(&tmp, &cfg, stall_wakeup).remove(0);
            let mut next = Micros::ZERO;
            for at in 0..30 {
                let s = ScopeSample {
                    at: Micros::from_millis(at * 100),
                    stall: Some(Default::default()),
                    total: thrashguard_core::units::Kib(1000),
                    available: thrashguard_core::units::Kib(10),
                    ..Default::default()
                };
                next = node.policy.step(&s).next_sample;
            }
            next
        };
        assert_eq!(short_calm(true), Micros::from_millis(cfg.max_interval_ms));
        assert_eq!(short_calm(false), Micros::from_millis(cfg.min_interval_ms));
        // one node alone is no scope: that is the system
        std::fs::remove_dir_all(tmp.join("devices/system/node/node1")).expect("rm");
        assert!(discover(&tmp, &PolicyConfig::default(), true).is_empty());
        std::fs::remove_dir_all(&tmp).expect("cleanup");
    }
}
