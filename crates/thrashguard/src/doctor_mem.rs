//! The memory rules of `thrashguard doctor`: read the facts they share
//! ([`thrashguard_core::doctor::memfacts::MemFacts`]) under `--proc-root` and `--sys-root`,
//! and run them.
//!
//! Owns reading /proc/swaps, /proc/uptime, /proc/buddyinfo, /proc/zoneinfo, the vm sysctls,
//! THP settings, zram sizes, per-node meminfo (numa_maps of the largest process only, and
//! only on several nodes). The process table comes from the run's one walk
//! ([`crate::doctor_procs`]), meminfo from its one parse. A file that cannot be read
//! becomes the rule's "not checked". It must never change anything on the machine.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use thrashguard_core::doctor::memfacts::{self, Fields, MemFacts, Node, Root, SETTINGS};
use thrashguard_core::doctor::window::Sampled;
use thrashguard_core::doctor::{Fact, Report, knobs, memlock, nodes, overcommit, reclaim, thp, thrash};
use thrashguard_core::parse::{self, buddyinfo};

use crate::doctor::read;
use crate::doctor_procs::Table;

fn node_memory(sys_root: &Path) -> Fact<Vec<Node>> {
    let dir = sys_root.join("devices/system/node");
    let entries = fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut nodes = Vec::new();
    for entry in entries.flatten() {
        let Some(id) = entry.file_name().to_str().and_then(|n| n.strip_prefix("node")?.parse::<u32>().ok()) else { continue };
        let file = entry.path().join("meminfo");
        let text = fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let m = parse::meminfo::parse("node/meminfo", &text).map_err(|e| format!("{}: {e}", file.display()))?;
        nodes.push(Node { id, total: m.mem_total, free: m.mem_free });
    }
    if nodes.is_empty() {
        return Err(format!("{}: no nodeN directories", dir.display()));
    }
    nodes.sort_by_key(|n| n.id);
    Ok(nodes)
}

/// Read every fact the memory rules use.
pub fn mem_facts(proc_root: &Path, sys_root: &Path, sampled: &Sampled, meminfo: &Fact<Fields>, table: &Table) -> MemFacts {
    let mut settings = BTreeMap::new();
    for &(key, root, rel) in SETTINGS {
        let base = if root == Root::Proc { proc_root } else { sys_root };
        settings.insert(key, read(base, rel).map(|t| t.trim().to_string()));
    }
    let swaps = read(proc_root, "swaps").and_then(|t| memfacts::parse_swaps("swaps", t.as_bytes()).map_err(|e| e.to_string()));
    let mut zram_disksize = BTreeMap::new();
    for dev in swaps.iter().flatten() {
        if let Some(name) = dev.name.strip_prefix("/dev/").filter(|n| n.starts_with("zram")) {
            let size = read(sys_root, &format!("block/{name}/disksize"))
                .and_then(|t| t.trim().parse::<u64>().map_err(|_| format!("block/{name}/disksize: not a number: {:?}", t.trim())));
            zram_disksize.insert(name.to_string(), size);
        }
    }
    let uptime_s = read(proc_root, "uptime").and_then(|t| {
        t.split_whitespace().next().and_then(|s| s.parse::<f64>().ok()).ok_or_else(|| format!("uptime: not a number: {:?}", t.trim()))
    });
    let buddyinfo = read(proc_root, "buddyinfo").and_then(|t| buddyinfo::parse("buddyinfo", t.as_bytes()).map_err(|e| e.to_string()));
    let procs = table.processes();
    let nodes = node_memory(sys_root);
    let zones = read(proc_root, "zoneinfo").and_then(|t| parse::zoneinfo::parse("zoneinfo", t.as_bytes()).map_err(|e| e.to_string()));
    let top_policy = match (&nodes, &procs) {
        (Ok(n), Ok(p)) if n.len() > 1 => p.iter().max_by_key(|p| p.footprint()).map(|p| {
            let first = read(proc_root, &format!("{}/numa_maps", p.pid)).map(|t| t.lines().next().unwrap_or("").to_string());
            (p.pid, first)
        }),
        _ => None,
    };
    MemFacts {
        vmstat: sampled.vmstat.clone(),
        pressure: sampled.pressure.clone(),
        uptime_s,
        meminfo: meminfo.clone(),
        settings,
        procs,
        swaps,
        zram_disksize,
        buddyinfo,
        nodes,
        zones,
        page_kib: (rustix::param::page_size() / 1024) as u64,
        top_policy,
    }
}

/// Run the memory rules, in the order of docs/doctor.md.
pub fn push_rules(r: &mut Report, proc_root: &Path, sys_root: &Path, sampled: &Sampled, meminfo: &Fact<Fields>, table: &Table) {
    let f = mem_facts(proc_root, sys_root, sampled, meminfo, table);
    r.push("direct-reclaim", reclaim::direct_reclaim(&f));
    r.push("thrashing", thrash::thrashing(&f));
    r.push("swap-setup", thrash::swap_setup(&f));
    r.push("overcommit", overcommit::overcommit(&f));
    r.push("thp", thp::thp(&f));
    r.push("compaction", thp::compaction(&f));
    r.push("dirty-limits", reclaim::dirty_limits(&f));
    r.push("numa-imbalance", nodes::numa_imbalance(&f));
    r.push("numa-placement", nodes::numa_placement(&f));
    r.push("max-map-count", knobs::max_map_count(&f));
    r.push("vm-extremes", knobs::vm_extremes(&f));
    r.push("hugepages", knobs::hugepages(&f));
    r.push("oom-protection", knobs::oom_protection(&f));
    r.push("memory-lock", memlock::memory_lock(&table.lock_facts()));
}
