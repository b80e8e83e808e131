//! The facts doctor's memory rules share, already read and parsed, and the helpers those
//! rules have in common (judging a counter over the window or since boot, sizes for people,
//! persistent sysctl fixes, detecting a known workload by its process name).
//!
//! Owns [`MemFacts`] (counters over the window, /proc/meminfo fields, vm sysctls and THP
//! settings, the process table with footprint, VMA count and oom_score_adj, swap devices,
//! zram sizes, /proc/buddyinfo, per-node memory, /proc/zoneinfo watermarks) and the list of settings the edge reads
//! ([`SETTINGS`]). The edge fills it; the rules in `reclaim`, `thrash`, `overcommit`, `thp`,
//! `nodes` and `knobs` judge it. Must never read a file itself.

use std::collections::BTreeMap;

use super::window::Window;
use super::{Evidence, Fact, ev};
use crate::parse::buddyinfo::Zone;
pub use crate::parse::zoneinfo::Zone as ZoneMarks;
use crate::parse::{ParseError, numbered_lines, parse_u64, words};
use crate::units::Kib;

/// Where a setting lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Root {
    /// Under `--proc-root` (sysctls: `sys/vm/...`).
    Proc,
    /// Under `--sys-root` (`kernel/mm/transparent_hugepage/...`).
    Sys,
}

/// The settings the memory rules read: key (as shown in evidence), root, path under it.
pub const SETTINGS: &[(&str, Root, &str)] = &[
    ("vm.swappiness", Root::Proc, "sys/vm/swappiness"),
    ("vm.overcommit_memory", Root::Proc, "sys/vm/overcommit_memory"),
    ("vm.overcommit_ratio", Root::Proc, "sys/vm/overcommit_ratio"),
    ("vm.overcommit_kbytes", Root::Proc, "sys/vm/overcommit_kbytes"),
    ("vm.dirty_ratio", Root::Proc, "sys/vm/dirty_ratio"),
    ("vm.dirty_bytes", Root::Proc, "sys/vm/dirty_bytes"),
    ("vm.dirty_background_ratio", Root::Proc, "sys/vm/dirty_background_ratio"),
    ("vm.dirty_background_bytes", Root::Proc, "sys/vm/dirty_background_bytes"),
    ("vm.max_map_count", Root::Proc, "sys/vm/max_map_count"),
    ("vm.vfs_cache_pressure", Root::Proc, "sys/vm/vfs_cache_pressure"),
    ("vm.watermark_scale_factor", Root::Proc, "sys/vm/watermark_scale_factor"),
    ("vm.min_free_kbytes", Root::Proc, "sys/vm/min_free_kbytes"),
    ("vm.zone_reclaim_mode", Root::Proc, "sys/vm/zone_reclaim_mode"),
    ("kernel.numa_balancing", Root::Proc, "sys/kernel/numa_balancing"),
    ("thp.enabled", Root::Sys, "kernel/mm/transparent_hugepage/enabled"),
    ("thp.defrag", Root::Sys, "kernel/mm/transparent_hugepage/defrag"),
];

/// Every `Name: value [kB]` field of /proc/meminfo (sizes in KiB, HugePages_* as counts).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fields(BTreeMap<String, u64>);

impl Fields {
    /// Parse a /proc/meminfo text; MemTotal must be there (a truncated read loses it).
    pub fn parse(file: &'static str, buf: &[u8]) -> Result<Fields, ParseError> {
        let mut f = Fields::default();
        for (no, line) in numbered_lines(buf) {
            let colon = line.iter().position(|&b| b == b':').ok_or(ParseError::new(file, no, "expected `Name: value`"))?;
            let value = words(&line[colon + 1..]).next().and_then(parse_u64).ok_or(ParseError::new(file, no, "bad number"))?;
            f.0.insert(String::from_utf8_lossy(&line[..colon]).into_owned(), value);
        }
        match f.get("MemTotal") {
            Some(t) if t > 0 => Ok(f),
            _ => Err(ParseError::new(file, 0, "MemTotal missing or zero (truncated?)")),
        }
    }

    /// A field's value as printed.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.0.get(name).copied()
    }

    /// A size field.
    pub fn kib(&self, name: &str) -> Option<Kib> {
        self.get(name).map(Kib)
    }

    /// MemTotal (always present: [`Fields::parse`] insists).
    pub fn total(&self) -> Kib {
        self.kib("MemTotal").unwrap_or_default()
    }

    /// Set a field (tests).
    pub fn set(&mut self, name: &str, value: u64) {
        self.0.insert(name.to_string(), value);
    }
}

/// One process, as read from /proc/PID (kernel threads are never listed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proc {
    /// Its pid.
    pub pid: u32,
    /// /proc/PID/comm.
    pub comm: String,
    /// VmRSS.
    pub rss: Kib,
    /// VmSwap.
    pub swap: Kib,
    /// Lines of /proc/PID/maps (memory mappings); `None` when unreadable.
    pub vmas: Option<u64>,
    /// /proc/PID/oom_score_adj; `None` when unreadable.
    pub oom_score_adj: Option<i64>,
}

impl Proc {
    /// RSS + swap.
    pub fn footprint(&self) -> Kib {
        self.rss.saturating_add(self.swap)
    }

    /// `pid 812 (java): RSS 7.9 GiB, swap 1.0 GiB`.
    pub fn describe(&self) -> String {
        format!("pid {} ({}): RSS {}, swap {}", self.pid, self.comm, size(self.rss), size(self.swap))
    }
}

/// One line of /proc/swaps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwapDev {
    /// Filename column (`/dev/zram0`, `/swapfile`).
    pub name: String,
    /// Size.
    pub size: Kib,
    /// Used.
    pub used: Kib,
}

/// Parse /proc/swaps (a header line, then `Filename Type Size Used Priority`).
pub fn parse_swaps(file: &'static str, buf: &[u8]) -> Result<Vec<SwapDev>, ParseError> {
    let mut out = Vec::new();
    for (no, line) in numbered_lines(buf) {
        if no == 1 {
            if !line.starts_with(b"Filename") {
                return Err(ParseError::new(file, no, "no Filename header"));
            }
            continue;
        }
        let w: Vec<&[u8]> = words(line).collect();
        let (Some(name), Some(sz), Some(used)) = (w.first(), w.get(2).and_then(|s| parse_u64(s)), w.get(3).and_then(|s| parse_u64(s)))
        else {
            return Err(ParseError::new(file, no, "expected `Filename Type Size Used Priority`"));
        };
        out.push(SwapDev { name: String::from_utf8_lossy(name).into_owned(), size: Kib(sz), used: Kib(used) });
    }
    Ok(out)
}

/// Memory of one NUMA node (/sys/devices/system/node/nodeN/meminfo).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Node {
    /// N.
    pub id: u32,
    /// MemTotal of the node.
    pub total: Kib,
    /// MemFree of the node.
    pub free: Kib,
}

impl Node {
    /// Free share in percent.
    pub fn free_pct(&self) -> f64 {
        self.free.pct_of(self.total)
    }
}

/// What doctor's memory rules read.
#[derive(Clone, Debug, PartialEq)]
pub struct MemFacts {
    /// /proc/vmstat over the window.
    pub vmstat: Fact<Window>,
    /// PSI totals over the window.
    pub pressure: Fact<Window>,
    /// /proc/uptime, seconds (turns PSI totals into a share since boot without a window).
    pub uptime_s: Fact<f64>,
    /// /proc/meminfo.
    pub meminfo: Fact<Fields>,
    /// The [`SETTINGS`] by key, as read (trimmed).
    pub settings: BTreeMap<&'static str, Fact<String>>,
    /// Every user process.
    pub procs: Fact<Vec<Proc>>,
    /// /proc/swaps.
    pub swaps: Fact<Vec<SwapDev>>,
    /// /sys/block/zramN/disksize in bytes, by device name (`zram0`).
    pub zram_disksize: BTreeMap<String, Fact<u64>>,
    /// /proc/buddyinfo.
    pub buddyinfo: Fact<Vec<Zone>>,
    /// Memory per NUMA node.
    pub nodes: Fact<Vec<Node>>,
    /// /proc/zoneinfo: free pages and watermarks of every zone of every node.
    pub zones: Fact<Vec<ZoneMarks>>,
    /// The page size, KiB (zoneinfo counts pages).
    pub page_kib: u64,
    /// On several nodes: the largest process's pid and the first line of its
    /// /proc/PID/numa_maps (its memory policy), or why it could not be read.
    pub top_policy: Option<(u32, Fact<String>)>,
}

impl MemFacts {
    /// Nothing read (tests fill in what a rule needs).
    pub fn unread() -> MemFacts {
        fn no<T>() -> Fact<T> {
            Err("not read".to_string())
        }
        MemFacts {
            vmstat: no(),
            pressure: no(),
            uptime_s: no(),
            meminfo: no(),
            settings: BTreeMap::new(),
            procs: no(),
            swaps: no(),
            zram_disksize: BTreeMap::new(),
            buddyinfo: no(),
            nodes: no(),
            zones: no(),
            page_kib: 4,
            top_policy: None,
        }
    }

    /// A setting as text.
    pub fn setting(&self, key: &str) -> Fact<&str> {
        match self.settings.get(key) {
            Some(Ok(v)) => Ok(v.as_str()),
            Some(Err(why)) => Err(why.clone()),
            None => Err(format!("{key}: not read")),
        }
    }

    /// A numeric setting.
    pub fn number(&self, key: &str) -> Fact<u64> {
        let v = self.setting(key)?;
        v.parse().map_err(|_| format!("{key}: not a number: {v:?}"))
    }

    /// Set a setting (tests).
    pub fn set(&mut self, key: &'static str, value: &str) {
        self.settings.insert(key, Ok(value.to_string()));
    }

    /// The processes whose comm is one of `names`, largest first.
    pub fn running(&self, names: &[&str]) -> Vec<&Proc> {
        let mut v: Vec<&Proc> = self.procs.iter().flatten().filter(|p| names.contains(&p.comm.as_str())).collect();
        v.sort_by_key(|p| std::cmp::Reverse(p.footprint()));
        v
    }
}

/// Whether the window has two readings.
pub fn windowed(w: &Window) -> bool {
    w.seconds > 0.0
}

/// How much a counter grew over the window, or its total since boot without one.
pub fn grew(w: &Window, name: &str) -> Option<u64> {
    if windowed(w) { w.delta(name) } else { w.total(name) }
}

/// [`grew`] summed over every counter starting with `prefix`.
pub fn grew_prefix(w: &Window, prefix: &str) -> Option<u64> {
    if windowed(w) { w.delta_prefix(prefix) } else { w.total_prefix(prefix) }
}

/// What a rate-based rule judged on.
pub fn basis(w: &Window) -> Evidence {
    if windowed(w) {
        ev("judged on", format!("two readings {:.0} s apart", w.seconds))
    } else {
        ev("judged on", "totals since boot (no window: --window 0)")
    }
}

/// `over the last 5 s` or `since boot`.
pub fn span(w: &Window) -> String {
    if windowed(w) { format!("in the last {:.0} s", w.seconds) } else { "since boot".to_string() }
}

/// A size for people: `512 MiB`, `7.9 GiB`.
pub fn size(k: Kib) -> String {
    if k.0 >= 1024 * 1024 { format!("{:.1} GiB", k.0 as f64 / (1024.0 * 1024.0)) } else { format!("{} MiB", k.0 / 1024) }
}

/// The fix for sysctls: `sysctl -w` each, and a file under /etc/sysctl.d that keeps them.
pub fn sysctl_fix(file: &str, settings: &[(&str, String)]) -> String {
    let now: Vec<String> = settings.iter().map(|(k, v)| format!("sysctl -w {k}={v}")).collect();
    let keep: String = settings.iter().map(|(k, v)| format!("{k} = {v}\\n")).collect();
    format!("{}\nto keep it: printf '{keep}' > /etc/sysctl.d/{file}.conf", now.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_fields() {
        let f = Fields::parse("meminfo", b"MemTotal: 1000 kB\nCommitLimit: 500 kB\nHugePages_Total:       0\n").unwrap();
        assert_eq!(f.kib("CommitLimit"), Some(Kib(500)));
        assert_eq!(f.get("HugePages_Total"), Some(0));
        assert!(Fields::parse("meminfo", b"MemFree: 1 kB\n").is_err());
        assert!(Fields::parse("meminfo", b"MemTotal 1 kB\n").is_err());
        assert!(Fields::parse("meminfo", b"MemTotal: 10").is_err(), "cut short");
    }

    #[test]
    fn swaps() {
        let s = parse_swaps(
            "swaps",
            b"Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/dev/zram0                              partition\t8388604\t\t1024\t\t100\n",
        )
        .unwrap();
        assert_eq!(s, vec![SwapDev { name: "/dev/zram0".into(), size: Kib(8_388_604), used: Kib(1024) }]);
        assert_eq!(parse_swaps("swaps", b"Filename Type Size Used Priority\n").unwrap(), vec![]);
        assert!(parse_swaps("swaps", b"garbage\n").is_err());
        assert!(parse_swaps("swaps", b"Filename Type\n/swapfile file x\n").is_err());
    }

    #[test]
    fn helpers() {
        assert_eq!(size(Kib(512 * 1024)), "512 MiB");
        assert_eq!(size(Kib(3 * 1024 * 1024 / 2)), "1.5 GiB");
        let fix = sysctl_fix("90-x", &[("vm.a", "1".into()), ("vm.b", "2".into())]);
        assert_eq!(fix, "sysctl -w vm.a=1\nsysctl -w vm.b=2\nto keep it: printf 'vm.a = 1\\nvm.b = 2\\n' > /etc/sysctl.d/90-x.conf");
        let mut f = MemFacts::unread();
        f.set("vm.swappiness", "60");
        assert_eq!(f.number("vm.swappiness"), Ok(60));
        f.set("vm.swappiness", "x");
        assert!(f.number("vm.swappiness").is_err());
        assert!(f.number("vm.nothing").is_err());
    }
}
