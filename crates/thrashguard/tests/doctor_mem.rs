//! The memory rules of `doctor` end to end: over a tree copied from a real capture of this
//! kernel (crates/core/tests/fixtures/proc/6.18.44-host-mm: /proc and /sys files, counters
//! read twice 5 s apart as `FILE` and `FILE.later`), each problem staged by editing the
//! copied files, and the healthy capture as it was.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

const CAPTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../core/tests/fixtures/proc/6.18.44-host-mm");

mod common;
use common::Tree;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() { copy_dir(&e.path(), &dest) } else { std::fs::copy(e.path(), dest).map(|_| ()).unwrap() }
    }
}

/// A copy of the capture in a temp dir; the captured `pid` becomes process 4242.
fn captured(tag: &str) -> Tree {
    let t = common::tree(&format!("doctor-mem-{tag}"));
    copy_dir(Path::new(CAPTURE), &t.0);
    std::fs::rename(t.0.join("proc/pid"), t.0.join("proc/4242")).unwrap();
    t
}

impl Tree {
    fn proc(&self) -> PathBuf {
        self.0.join("proc")
    }

    /// Write a file under the tree (`proc/...` or `sys/...`).
    fn write(&self, rel: &str, text: &str) {
        common::write(&self.0, rel, text);
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.0.join(rel)).unwrap()
    }

    /// Set `name value` lines of a captured `name value` file (vmstat), adding missing ones.
    fn counters(&self, rel: &str, set: &[(&str, u64)]) {
        let mut text = String::new();
        let old = self.read(rel);
        for l in old.lines() {
            let name = l.split(' ').next().unwrap();
            match set.iter().find(|(n, _)| *n == name) {
                Some((n, v)) => text += &format!("{n} {v}\n"),
                None => text += &format!("{l}\n"),
            }
        }
        for (n, v) in set {
            if !old.lines().any(|l| l.split(' ').next() == Some(n)) {
                text += &format!("{n} {v}\n");
            }
        }
        self.write(rel, &text);
    }

    /// Set `Name:  value kB` lines of the captured meminfo.
    fn meminfo(&self, set: &[(&str, u64)]) {
        let text: String = self
            .read("proc/meminfo")
            .lines()
            .map(|l| {
                let name = l.split(':').next().unwrap();
                match set.iter().find(|(n, _)| *n == name) {
                    Some((n, v)) if l.ends_with("kB") => format!("{n}:  {v} kB\n"),
                    Some((n, v)) => format!("{n}:  {v}\n"),
                    None => format!("{l}\n"),
                }
            })
            .collect();
        self.write("proc/meminfo", &text);
    }

    /// A process staged from the captured one: comm, RSS and swap in KiB.
    fn process(&self, pid: u32, comm: &str, rss_kib: u64, swap_kib: u64) {
        let status: String = self
            .read("proc/4242/status")
            .lines()
            .map(|l| {
                if l.starts_with("VmRSS:") {
                    format!("VmRSS:\t{rss_kib:>8} kB\n")
                } else if l.starts_with("VmSwap:") {
                    format!("VmSwap:\t{swap_kib:>8} kB\n")
                } else if l.starts_with("Name:") {
                    format!("Name:\t{comm}\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        let dir = format!("proc/{pid}");
        self.write(&format!("{dir}/status"), &status);
        self.write(&format!("{dir}/comm"), &format!("{comm}\n"));
        self.write(&format!("{dir}/maps"), &self.read("proc/4242/maps"));
        self.write(&format!("{dir}/oom_score_adj"), "0\n");
    }

    /// Run doctor over the tree: (exit code, JSON).
    fn doctor(&self, window: &str) -> (i32, serde_json::Value) {
        let o = Command::new(env!("CARGO_BIN_EXE_thrashguard"))
            .args(["--proc-root", self.proc().to_str().unwrap(), "--sys-root", self.0.join("sys").to_str().unwrap()])
            .args(["doctor", "--json", "--window", window])
            .env_remove("THRASHGUARD_CONFIG")
            .output()
            .unwrap();
        let v = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)));
        (o.status.code().unwrap(), v)
    }

    /// What rule `id` concluded: `critical`/`warning`/`info`, `clear` or `not checked`;
    /// with the finding (or the whole document) for messages.
    fn outcome(&self, id: &str, window: &str) -> (String, serde_json::Value) {
        let (_, v) = self.doctor(window);
        if let Some(f) = v["findings"].as_array().unwrap().iter().find(|f| f["id"] == id) {
            return (f["severity"].as_str().unwrap().to_string(), f.clone());
        }
        if v["clear"].as_array().unwrap().iter().any(|c| c["id"] == id) {
            return ("clear".into(), v);
        }
        if v["not_checked"].as_array().unwrap().iter().any(|c| c["id"] == id) {
            return ("not checked".into(), v);
        }
        panic!("{id} did not run: {v:#}");
    }
}

fn text(v: &serde_json::Value) -> String {
    v.to_string()
}

/// The lab guest's capture (Debian 12, kernel 6.1, TCG, no swap; `bench/lab/wss-check
/// --capture`), read as it is: every rule runs or says what it lacked, nothing fails.
#[test]
fn debian_6_1_guest_capture_as_it_is() {
    let guest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/fixtures/proc/6.1.0-50-amd64-guest");
    for window in ["0", "5"] {
        let o = Command::new(env!("CARGO_BIN_EXE_thrashguard"))
            .args(["--proc-root", guest.join("proc").to_str().unwrap(), "--sys-root", guest.join("sys").to_str().unwrap()])
            .args(["doctor", "--json", "--window", window])
            .env_remove("THRASHGUARD_CONFIG")
            .output()
            .unwrap();
        let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
        assert!(!out.contains("\"error\""), "window {window}: {v:#}");
        // warnings (hpet, no lifeline daemon), nothing critical
        assert_eq!(o.status.code(), Some(1), "window {window}: {v:#}{err}");
        let ids = |key: &str| -> Vec<String> { v[key].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap().to_string()).collect() };
        let severity = |id: &str| v["findings"].as_array().unwrap().iter().find(|f| f["id"] == id).map(|f| f["severity"].clone());
        assert_eq!(severity("swap-setup"), Some("info".into()), "no swap in this boot: {v:#}");
        assert_eq!(severity("clocksource"), Some("warning".into()), "hpet under TCG: {v:#}");
        assert_eq!(severity("sysrq"), Some("info".into()), "kernel.sysrq 438 has no SysRq-F: {v:#}");
        let clear = ids("clear");
        for id in [
            "zone-reclaim",
            "atomic-reserve",
            "direct-reclaim",
            "thrashing",
            "overcommit",
            "thp",
            "dirty-limits",
            "max-map-count",
            "oom-kills",
            "fd-limits",
        ] {
            assert!(clear.iter().any(|c| c == id), "window {window}: {id} not clear: {v:#}");
        }
        let mut not_checked = ids("not_checked");
        not_checked.sort();
        assert_eq!(not_checked, ["allocation-failures", "hung-tasks", "listen-backlog"], "only kmsg and net/listeners are missing: {v:#}");
    }
}

#[test]
fn the_captured_host_as_it_was() {
    let t = captured("asis");
    let (_, v) = t.doctor("5");
    let clear: &[&str] = &[
        "direct-reclaim",
        "thrashing",
        "overcommit",
        "thp",
        "compaction",
        "numa-imbalance",
        "numa-placement",
        "zone-reclaim",
        "max-map-count",
        "vm-extremes",
        "hugepages",
        "oom-protection",
    ];
    for &id in clear {
        assert!(v["clear"].as_array().unwrap().iter().any(|c| c["id"] == id), "{id} not clear: {v:#}");
    }
}

#[test]
fn direct_reclaim_staged() {
    let t = captured("direct");
    assert_eq!(t.outcome("direct-reclaim", "5").0, "clear");
    t.counters("proc/vmstat.later", &[("allocstall_normal", 40), ("pgscan_direct", 9000), ("pgscan_kswapd", 20000)]);
    let (sev, f) = t.outcome("direct-reclaim", "5");
    assert_eq!(sev, "warning", "{f:#}");
    assert!(text(&f).contains("two readings 5 s apart") && text(&f).contains("watermark_scale_factor=200"), "{f:#}");
    // one reading: judged on totals since boot (the capture had none), and says so
    let (sev, v) = t.outcome("direct-reclaim", "0");
    assert_eq!(sev, "clear", "{v:#}");
    t.counters("proc/vmstat", &[("pgscan_direct", 9000), ("pgscan_kswapd", 20000)]);
    let (sev, f) = t.outcome("direct-reclaim", "0");
    assert_eq!(sev, "warning", "{f:#}");
    assert!(text(&f).contains("--window 0"), "{f:#}");
    // garbled vmstat: not checked, never a failure
    t.write("proc/vmstat", "pgscan_direct lots\n");
    assert_eq!(t.outcome("direct-reclaim", "5").0, "not checked");
}

/// The captured pressure/memory with `add_us` more stall (some and full) in the later reading.
fn stall_later(t: &Tree, add_us: u64) {
    let text: String = t
        .read("proc/pressure/memory")
        .lines()
        .map(|l| {
            let (head, total) = l.rsplit_once("total=").unwrap();
            format!("{head}total={}\n", total.parse::<u64>().unwrap() + add_us)
        })
        .collect();
    t.write("proc/pressure/memory.later", &text);
}

#[test]
fn thrashing_staged() {
    let t = captured("thrash");
    assert_eq!(t.outcome("thrashing", "5").0, "clear");
    t.process(812, "java", 7_900_000, 900_000);
    t.process(813, "hog", 3_000_000, 0);
    // every task stalled 0.6 s of the 5 s window: 12 %
    stall_later(&t, 600_000);
    t.counters("proc/vmstat.later", &[("pswpin", 9_708_446), ("workingset_refault_anon", 50_000)]);
    let (sev, f) = t.outcome("thrashing", "5");
    assert_eq!(sev, "warning", "{f:#}");
    assert!(text(&f).contains("pid 812 (java): RSS 7.5 GiB, swap 878 MiB"), "{f:#}");
    assert!(f["fix"].as_str().unwrap().starts_with("stop or limit pid 812 (java)"), "{f:#}");
    stall_later(&t, 2_500_000);
    assert_eq!(t.outcome("thrashing", "5").0, "critical");
    // one reading: the share since boot (the capture's uptime), said so
    let (sev, v) = t.outcome("thrashing", "0");
    assert_eq!(sev, "clear", "{v:#}");
    assert!(text(&v).contains("--window 0"));
    t.write("proc/pressure/memory", "some avg10=0.00\n");
    assert_eq!(t.outcome("thrashing", "5").0, "not checked");
}

#[test]
fn swap_setup_staged() {
    let t = captured("swap");
    // the capture has no swap at all
    let (sev, f) = t.outcome("swap-setup", "5");
    assert_eq!(sev, "info", "{f:#}");
    assert!(text(&f).contains("executables"), "{f:#}");
    // a swap file: clear
    t.write("proc/swaps", &(t.read("proc/swaps") + "/swapfile                               file\t\t4194300\t\t0\t\t-2\n"));
    t.meminfo(&[("SwapTotal", 4_194_300), ("SwapFree", 4_194_300)]);
    assert_eq!(t.outcome("swap-setup", "5").0, "clear");
    // swappiness 180 on a disk while swap-ins and stalls go on: warning
    t.write("proc/sys/vm/swappiness", "180\n");
    assert_eq!(t.outcome("swap-setup", "5").0, "info", "no harm in the window");
    stall_later(&t, 600_000);
    t.counters("proc/vmstat.later", &[("pswpin", 9_708_446)]);
    let (sev, f) = t.outcome("swap-setup", "5");
    assert_eq!(sev, "warning", "{f:#}");
    assert!(f["fix"].as_str().unwrap().contains("vm.swappiness=60"), "{f:#}");
    // a zram device twice the RAM
    t.write("proc/sys/vm/swappiness", "100\n");
    t.write("proc/swaps", &(t.read("proc/swaps").lines().next().unwrap().to_string() + "\n/dev/zram0 partition 49367312 0 100\n"));
    t.write("sys/block/zram0/disksize", "50552127488\n");
    let (sev, f) = t.outcome("swap-setup", "5");
    assert_eq!(sev, "info", "{f:#}");
    assert!(f["title"].as_str().unwrap().contains("zram0 is larger than RAM"), "{f:#}");
    t.write("proc/meminfo", "MemTotal: 12");
    assert_eq!(t.outcome("swap-setup", "5").0, "not checked");
}

#[test]
fn overcommit_staged() {
    let t = captured("overcommit");
    assert_eq!(t.outcome("overcommit", "5").0, "clear");
    // strict mode with 95 % of the limit committed
    t.write("proc/sys/vm/overcommit_memory", "2\n");
    t.meminfo(&[("CommitLimit", 12_341_828), ("Committed_AS", 11_724_736)]);
    let (sev, f) = t.outcome("overcommit", "5");
    assert_eq!(sev, "warning", "{f:#}");
    assert!(f["fix"].as_str().unwrap().contains("vm.overcommit_ratio="), "{f:#}");
    t.meminfo(&[("Committed_AS", 3_000_000)]);
    assert_eq!(t.outcome("overcommit", "5").0, "clear");
    // a Redis under the default heuristic mode
    t.write("proc/sys/vm/overcommit_memory", "0\n");
    t.process(6379, "redis-server", 2_000_000, 0);
    let (sev, f) = t.outcome("overcommit", "5");
    assert_eq!(sev, "warning", "{f:#}");
    assert!(f["title"].as_str().unwrap().contains("redis-server (pid 6379)"), "{f:#}");
    t.write("proc/sys/vm/overcommit_memory", "always\n");
    assert_eq!(t.outcome("overcommit", "5").0, "not checked");
}

#[test]
fn thp_staged() {
    let t = captured("thp");
    assert_eq!(t.outcome("thp", "5").0, "clear", "madvise/madvise as captured");
    t.write("sys/kernel/mm/transparent_hugepage/enabled", "[always] madvise never\n");
    t.write("sys/kernel/mm/transparent_hugepage/defrag", "[always] defer defer+madvise madvise never\n");
    assert_eq!(t.outcome("thp", "5").0, "info", "no stalls yet");
    t.counters("proc/vmstat.later", &[("compact_stall", 12)]);
    let (sev, f) = t.outcome("thp", "5");
    assert_eq!(sev, "warning", "{f:#}");
    assert!(f["fix"].as_str().unwrap().contains("defer+madvise > /sys/kernel/mm/transparent_hugepage/defrag"), "{f:#}");
    // a Redis with enabled=always, no stalls
    t.counters("proc/vmstat.later", &[("compact_stall", 0)]);
    t.write("sys/kernel/mm/transparent_hugepage/defrag", "always defer [defer+madvise] madvise never\n");
    t.process(6379, "redis-server", 2_000_000, 0);
    let (sev, f) = t.outcome("thp", "5");
    assert_eq!(sev, "warning", "{f:#}");
    assert!(f["title"].as_str().unwrap().contains("redis-server (pid 6379)"), "{f:#}");
    std::fs::remove_file(t.0.join("sys/kernel/mm/transparent_hugepage/enabled")).unwrap();
    assert_eq!(t.outcome("thp", "5").0, "not checked");
}

#[test]
fn compaction_staged() {
    let t = captured("compaction");
    assert_eq!(t.outcome("compaction", "5").0, "clear");
    t.counters("proc/vmstat.later", &[("compact_stall", 40), ("compact_fail", 31), ("compact_success", 9)]);
    let (sev, f) = t.outcome("compaction", "5");
    assert_eq!(sev, "warning", "{f:#}");
    assert!(text(&f).contains("order >= 3"), "buddyinfo in the evidence: {f:#}");
    // free memory shattered into single pages, compaction quiet: info
    t.counters("proc/vmstat.later", &[("compact_stall", 0), ("compact_fail", 0)]);
    t.write("proc/buddyinfo", "Node 0, zone      DMA      0      0      0      0      0      0      0      0      1      1      3 \nNode 0, zone   Normal  90112   4000     10      2      1      0      0      0      0      0      0 \n");
    let (sev, f) = t.outcome("compaction", "5");
    assert_eq!(sev, "info", "{f:#}");
    t.write("proc/buddyinfo", "Node 0, zone Normal 1 x\n");
    assert_eq!(t.outcome("compaction", "5").0, "clear", "garbled buddyinfo: said in the evidence, counters still judged");
}

#[test]
fn dirty_limits_staged() {
    let t = captured("dirty");
    // the capture: 20 % of 23.5 GiB = 4.7 GiB, nothing much dirty
    let (sev, f) = t.outcome("dirty-limits", "5");
    assert_eq!(sev, "info", "{f:#}");
    t.write("proc/sys/vm/dirty_ratio", "10\n");
    assert_eq!(t.outcome("dirty-limits", "5").0, "clear", "2.4 GiB");
    // 256 GiB of RAM, 3 GiB dirty
    t.write("proc/sys/vm/dirty_ratio", "20\n");
    t.meminfo(&[("MemTotal", 268_435_456), ("Dirty", 3_145_728)]);
    let (sev, f) = t.outcome("dirty-limits", "5");
    assert_eq!(sev, "warning", "{f:#}");
    assert!(f["title"].as_str().unwrap().contains("51.2 GiB"), "{f:#}");
    t.write("proc/sys/vm/dirty_bytes", "\n");
    assert_eq!(t.outcome("dirty-limits", "5").0, "not checked");
}

/// A second node made from the captured node0 (same size), each node's MemFree in KiB.
fn two_nodes(t: &Tree, free0: u64, free1: u64) {
    let node0 = t.read("sys/devices/system/node/node0/meminfo");
    let with_free = |text: &str, node: u32, free: u64| -> String {
        text.lines()
            .map(|l| {
                let l = l.replacen("Node 0", &format!("Node {node}"), 1);
                if l.contains(" MemFree:") { format!("Node {node} MemFree:        {free} kB\n") } else { format!("{l}\n") }
            })
            .collect()
    };
    t.write("sys/devices/system/node/node0/meminfo", &with_free(&node0, 0, free0));
    t.write("sys/devices/system/node/node1/meminfo", &with_free(&node0, 1, free1));
    t.write("sys/devices/system/node/has_memory", "0-1\n");
}

#[test]
fn numa_imbalance_staged() {
    let t = captured("numa-imbalance");
    assert_eq!(t.outcome("numa-imbalance", "5").0, "clear", "one node as captured");
    two_nodes(&t, 6_000_000, 5_000_000);
    assert_eq!(t.outcome("numa-imbalance", "5").0, "clear");
    two_nodes(&t, 120_000, 5_000_000);
    let (sev, f) = t.outcome("numa-imbalance", "5");
    assert_eq!(sev, "warning", "{f:#}");
    assert!(f["title"].as_str().unwrap().starts_with("node 0 is nearly out of memory"), "{f:#}");
    t.write("sys/devices/system/node/node1/meminfo", "Node 1 MemTotal: lots\n");
    assert_eq!(t.outcome("numa-imbalance", "5").0, "not checked");
}

#[test]
fn numa_placement_staged() {
    let t = captured("numa-placement");
    assert_eq!(t.outcome("numa-placement", "5").0, "clear", "one node as captured");
    two_nodes(&t, 3_000_000, 3_000_000);
    t.process(777, "bigdb", 9_000_000, 0);
    t.write("proc/777/numa_maps", &t.read("proc/4242/numa_maps"));
    assert_eq!(t.outcome("numa-placement", "5").0, "clear", "no misses in the window");
    t.counters("proc/vmstat.later", &[("numa_miss", 4096)]);
    let (sev, f) = t.outcome("numa-placement", "5");
    assert_eq!(sev, "info", "{f:#}");
    assert!(f["title"].as_str().unwrap().starts_with("bigdb (pid 777) holds"), "{f:#}");
    // interleaved: fine
    t.write("proc/777/numa_maps", &t.read("proc/777/numa_maps").replace(" default ", " interleave:0-1 "));
    assert_eq!(t.outcome("numa-placement", "5").0, "clear");
}

#[test]
fn zone_reclaim_judged_over_the_window() {
    let t = captured("zone-window");
    two_nodes(&t, 3_000_000, 3_000_000);
    t.write("proc/sys/vm/zone_reclaim_mode", "1\n");
    assert_eq!(t.outcome("zone-reclaim", "5").0, "warning", "on, no failures");
    t.counters("proc/vmstat.later", &[("zone_reclaim_failed", 7)]);
    let (sev, f) = t.outcome("zone-reclaim", "5");
    assert_eq!(sev, "critical", "{f:#}");
    assert!(f["title"].as_str().unwrap().contains("costing now: 7 failures"), "{f:#}");
    t.counters("proc/vmstat.later", &[("zone_reclaim_failed", 0), ("pgscan_direct", 5000)]);
    assert_eq!(t.outcome("zone-reclaim", "5").0, "critical", "direct scanning now");
    assert_eq!(t.outcome("zone-reclaim", "0").0, "warning", "no window, no failures since boot");
}

#[test]
fn max_map_count_staged() {
    let t = captured("maps");
    assert_eq!(t.outcome("max-map-count", "5").0, "clear", "37 mappings of 65530");
    t.process(900, "java", 1_000_000, 0);
    let line = t.read("proc/4242/maps").lines().next().unwrap().to_string() + "\n";
    t.write("proc/900/maps", &line.repeat(60_000));
    let (sev, f) = t.outcome("max-map-count", "5");
    assert_eq!(sev, "warning", "{f:#}");
    assert!(f["title"].as_str().unwrap().starts_with("java (pid 900) has 60000 memory mappings"), "{f:#}");
    t.write("proc/sys/vm/max_map_count", "262144\n");
    assert_eq!(t.outcome("max-map-count", "5").0, "clear");
    t.write("proc/sys/vm/max_map_count", "many\n");
    assert_eq!(t.outcome("max-map-count", "5").0, "not checked");
}

#[test]
fn vm_extremes_staged() {
    let t = captured("extremes");
    assert_eq!(t.outcome("vm-extremes", "5").0, "clear");
    t.write("proc/sys/vm/vfs_cache_pressure", "0\n");
    let (sev, f) = t.outcome("vm-extremes", "5");
    assert_eq!(sev, "warning", "{f:#}");
    t.write("proc/sys/vm/vfs_cache_pressure", "100\n");
    t.write("proc/sys/vm/min_free_kbytes", "2097152\n");
    let (sev, f) = t.outcome("vm-extremes", "5");
    assert_eq!(sev, "warning", "{f:#}");
    assert!(f["title"].as_str().unwrap().starts_with("vm.min_free_kbytes is 8.5 % of RAM"), "{f:#}");
    t.write("proc/sys/vm/min_free_kbytes", "67584\n");
    t.write("proc/sys/vm/watermark_scale_factor", "3000\n");
    assert_eq!(t.outcome("vm-extremes", "5").0, "info");
}

#[test]
fn hugepages_and_oom_protection_staged() {
    let t = captured("hugepages");
    assert_eq!(t.outcome("hugepages", "5").0, "clear");
    assert_eq!(t.outcome("oom-protection", "5").0, "clear");
    // 4 GiB pool of 2 MiB pages, all free
    t.meminfo(&[("HugePages_Total", 2048), ("HugePages_Free", 2048)]);
    let (sev, f) = t.outcome("hugepages", "5");
    assert_eq!(sev, "warning", "{f:#}");
    assert!(f["fix"].as_str().unwrap().starts_with("sysctl -w vm.nr_hugepages=0"), "{f:#}");
    // a 14 GiB process exempt from the OOM killer
    t.process(4000, "bigcache", 14_000_000, 0);
    t.write("proc/4000/oom_score_adj", "-1000\n");
    let (sev, f) = t.outcome("oom-protection", "5");
    assert_eq!(sev, "warning", "{f:#}");
    assert!(text(&f).contains("pid 4000 (bigcache)"), "{f:#}");
}

/// The limits of this test process with its `Max locked memory` soft limit set (`unlimited`
/// or bytes), as a real /proc/PID/limits text.
fn limits_with_memlock(soft: &str) -> String {
    std::fs::read_to_string("/proc/self/limits")
        .unwrap()
        .lines()
        .map(|l| {
            if l.starts_with("Max locked memory") {
                format!("Max locked memory         {soft:<21}{soft:<21}bytes     \n")
            } else {
                format!("{l}\n")
            }
        })
        .collect()
}

#[test]
fn memory_lock_staged() {
    let t = captured("memlock");
    assert_eq!(t.outcome("memory-lock", "0").0, "clear", "nothing locks as captured");
    // a database that locked 8 MiB of its 2 GiB and stopped at the 8 MiB default limit
    t.process(5432, "mydb", 2_097_152, 0);
    t.write("proc/5432/status", &t.read("proc/5432/status").replace("VmLck:\t       0 kB", "VmLck:\t    8192 kB"));
    t.write("proc/5432/limits", &limits_with_memlock("8388608"));
    let (sev, f) = t.outcome("memory-lock", "0");
    assert_eq!(sev, "warning", "{f:#}");
    assert_eq!(f["title"], "mydb (pid 5432) locked 8 MiB of its 2.0 GiB and stopped at its memlock limit (8 MiB)", "{f:#}");
    assert!(text(&f).contains("8192 KiB (0 % of VmRSS)") && text(&f).contains("2097152 KiB"), "{f:#}");
    assert!(f["fix"].as_str().unwrap().contains("LimitMEMLOCK=infinity"), "{f:#}");
    // the limit raised: clear
    t.write("proc/5432/limits", &limits_with_memlock("unlimited"));
    assert_eq!(t.outcome("memory-lock", "0").0, "clear");
    // Elasticsearch told to lock, not locked (its limit is 64 KiB)
    t.process(9200, "java", 4_194_304, 0);
    t.write(
        "proc/9200/cmdline",
        "/usr/share/elasticsearch/jdk/bin/java\0-Xms4g\0org.elasticsearch.bootstrap.Elasticsearch\0-Ebootstrap.memory_lock=true\0",
    );
    t.write("proc/9200/limits", &limits_with_memlock("65536"));
    let (sev, f) = t.outcome("memory-lock", "0");
    assert_eq!(sev, "warning", "{f:#}");
    assert!(f["title"].as_str().unwrap().starts_with("java (pid 9200) asked to lock its memory (-Ebootstrap.memory_lock=true)"), "{f:#}");
    // locked: clear again
    t.write("proc/9200/status", &t.read("proc/9200/status").replace("VmLck:\t       0 kB", "VmLck:\t 4300000 kB"));
    assert_eq!(t.outcome("memory-lock", "0").0, "clear");
    // a guard daemon that is not locked
    t.process(4321, "thrashguard", 2280, 0);
    t.write("proc/4321/cmdline", "/usr/bin/thrashguard\0daemon\0");
    let (sev, f) = t.outcome("memory-lock", "0");
    assert_eq!(sev, "warning", "{f:#}");
    assert_eq!(f["title"], "the guard (pid 4321) is not locked in memory: it can be swapped out", "{f:#}");
    // a garbled status line is only that process's loss; no process table at all: not checked
    t.write("proc/4321/status", "Name:\tthrashguard\nVmLck: lots\n");
    assert_eq!(t.outcome("memory-lock", "0").0, "clear");
    for e in std::fs::read_dir(t.proc()).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_str().unwrap().parse::<u32>().is_ok() {
            std::fs::remove_dir_all(e.path()).unwrap();
        }
    }
    let (sev, v) = t.outcome("memory-lock", "0");
    assert_eq!(sev, "not checked", "{v:#}");
    assert!(text(&v).contains("no process directories"), "{v:#}");
}

/// The real zoneinfo of the 6.18 host (crates/core/tests/fixtures/proc/6.18.44-host, one
/// node) written as two nodes, node 1 a copy of node 0, with `pages free` of each node's
/// Normal zone set.
fn two_node_zoneinfo(t: &Tree, free0: u64, free1: u64) {
    let one = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../core/tests/fixtures/proc/6.18.44-host/zoneinfo")).unwrap();
    let with_free = |node: u32, free: u64| -> String {
        let mut in_normal = false;
        one.lines()
            .map(|l| {
                let l = l.replacen("Node 0, zone", &format!("Node {node}, zone"), 1);
                if l.starts_with("Node ") {
                    in_normal = l.ends_with(" Normal");
                }
                if in_normal && l.starts_with("  pages free") { format!("  pages free     {free}\n") } else { format!("{l}\n") }
            })
            .collect()
    };
    t.write("proc/zoneinfo", &(with_free(0, free0) + &with_free(1, free1)));
}

#[test]
fn numa_imbalance_by_zone_watermarks() {
    let t = captured("numa-zones");
    // per-node meminfo says both nodes have plenty; the watermarks decide
    two_nodes(&t, 6_000_000, 5_000_000);
    two_node_zoneinfo(&t, 162_686, 162_686);
    let (sev, v) = t.outcome("numa-imbalance", "5");
    assert_eq!(sev, "clear", "{v:#}");
    assert!(text(&v).contains("free 650744 KiB, min 13652 KiB, low 17064 KiB, high 20476 KiB"), "{v:#}");
    // node 0's Normal zone under its min watermark (3413 pages), node 1 with plenty
    two_node_zoneinfo(&t, 3000, 162_686);
    let (sev, f) = t.outcome("numa-imbalance", "5");
    assert_eq!(sev, "warning", "{f:#}");
    assert!(
        f["title"]
            .as_str()
            .unwrap()
            .starts_with("node 0 zone Normal is at its min watermark (free 12000 KiB <= min 13652 KiB) while node 1"),
        "{f:#}"
    );
    assert!(text(&f).contains("/proc/zoneinfo"), "{f:#}");
    // garbled zoneinfo: per-node meminfo decides again (and says why)
    t.write("proc/zoneinfo", "Node 0, zone Normal\n  pages free lots\n");
    two_nodes(&t, 120_000, 5_000_000);
    let (sev, f) = t.outcome("numa-imbalance", "5");
    assert_eq!(sev, "warning", "{f:#}");
    assert!(f["title"].as_str().unwrap().starts_with("node 0 is nearly out of memory"), "{f:#}");
    assert!(text(&f).contains("zoneinfo: line 2: bad number"), "{f:#}");
}
