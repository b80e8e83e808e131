//! A NUMA node runs out while the machine has plenty: the node scope rescues, choosing
//! the process whose memory sits on that node, not the biggest one elsewhere; the system
//! scope stays quiet. The real guard loop (dry run) over a synthetic /proc and /sys.
// Test helpers may panic: a panic is a failing test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use thrashguard::daemon::{Guard, Options};
use thrashguard_core::config::Config;

fn w(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn process(proc_root: &Path, pid: u32, comm: &str, rss_mib: u64, numa: &str) {
    let d = proc_root.join(pid.to_string());
    let pages = rss_mib * 256;
    w(
        &d.join("stat"),
        &format!(
            "{pid} ({comm}) R 1 {pid} {pid} 0 -1 4194304 10 0 5 0 5 5 0 0 20 0 1 0 {} 100000 {pages} 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n",
            500 + pid
        ),
    );
    w(&d.join("status"), &format!("Name:\t{comm}\nVmRSS:\t{} kB\nVmSwap:\t0 kB\n", rss_mib * 1024));
    w(&d.join("oom_score_adj"), "0\n");
    w(&d.join("numa_maps"), numa);
}

#[test]
fn an_exhausted_node_is_rescued_by_the_process_on_it() {
    let tmp = std::env::temp_dir().join(format!("tg-numa-e2e-{}", std::process::id()));
    let (proc_root, sys_root) = (tmp.join("proc"), tmp.join("sys"));
    let _ = std::fs::remove_dir_all(&tmp);
    // the machine: 8 GiB, half of it available, no swap
    w(&proc_root.join("meminfo"), "MemTotal: 8388608 kB\nMemFree: 4194304 kB\nMemAvailable: 4194304 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n");
    w(&proc_root.join("vmstat"), "pswpin 0\npgmajfault 0\nworkingset_refault_anon 0\nworkingset_refault_file 0\n");
    w(
        &proc_root.join("pressure/memory"),
        "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
    );
    w(&proc_root.join("self/mountinfo"), "");
    // node 0 roomy, node 1 exhausted
    let node = sys_root.join("devices/system/node");
    w(
        &node.join("node0/meminfo"),
        "Node 0 MemTotal: 4194304 kB\nNode 0 MemFree: 3145728 kB\nNode 0 Active(file): 0 kB\nNode 0 Inactive(file): 0 kB\n",
    );
    w(
        &node.join("node1/meminfo"),
        "Node 1 MemTotal: 4194304 kB\nNode 1 MemFree: 20480 kB\nNode 1 Active(file): 0 kB\nNode 1 Inactive(file): 0 kB\n",
    );
    for n in ["node0", "node1"] {
        w(&node.join(n).join("vmstat"), "workingset_refault_anon 0\nworkingset_refault_file 0\n");
    }
    // the biggest process lives on node 0; the one filling node 1 is smaller
    process(&proc_root, 100, "big-on-node0", 3000, "7f00 default anon=768000 N0=768000 kernelpagesize_kB=4\n");
    process(
        &proc_root,
        101,
        "on-node1",
        1000,
        "7f00 bind:1 anon=250000 N1=250000 kernelpagesize_kB=4\n7f10 default file=/lib/x N0=6 kernelpagesize_kB=4\n",
    );
    process(&proc_root, 102, "small", 10, "7f00 default N1=2560 kernelpagesize_kB=4\n");

    let mut cfg = Config::default();
    cfg.guard.dry_run = true;
    cfg.guard.max_processes = 256;
    cfg.policy.sustain_ms = 400;
    cfg.policy.sustain_corroborated_ms = 400;
    cfg.policy.min_interval_ms = 10;
    let opts = Options { proc_root: proc_root.clone(), sys_root: sys_root.clone(), no_self_protect: true, ..Default::default() };
    let mut guard = Guard::new(cfg, opts).unwrap();

    // stalls: half of every interval fully stalled, for up to 5 s
    let psi = std::fs::OpenOptions::new().write(true).open(proc_root.join("pressure/memory")).unwrap();
    let start = Instant::now();
    while guard.counters.decisions == 0 && start.elapsed() < Duration::from_secs(5) {
        let us = start.elapsed().as_micros() as u64 / 2;
        let text =
            format!("some avg10=50.00 avg60=5.00 avg300=1.00 total={us:020}\nfull avg10=50.00 avg60=5.00 avg300=1.00 total={us:020}\n");
        psi.write_at(text.as_bytes(), 0).unwrap();
        guard.tick();
        std::thread::sleep(Duration::from_millis(20));
    }
    let (scope, victim) = guard.last_decision.clone().expect("a decision");
    std::fs::remove_dir_all(&tmp).unwrap();
    assert_eq!(guard.counters.decisions, 1);
    assert_eq!(scope, "node1");
    assert_eq!(victim.comm.to_string(), "on-node1");
    assert!(victim.scope_share_permille > 990, "{victim:?}");
}
