//! A thousand steady-state iterations of the guard loop allocate nothing: the sampler's
//! preads, the parsers, the policy of the system scope and of a cgroup scope all run on
//! memory reserved before the loop (a counting global allocator proves it).
// Test helpers may panic: a panic is a failing test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_arguments)]

use std::path::{Path, PathBuf};

#[path = "../../core/tests/support/counting.rs"]
mod counting;

#[global_allocator]
static ALLOC: counting::Counting = counting::Counting;

fn fixture(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/fixtures/proc/6.1.0-50-amd64").join(file)
}

/// A fake machine under a temp dir: its proc root (with a v1 memory controller mount in
/// self/mountinfo), its sys root, and the directory of a v1 cgroup `limited` (made later).
fn fake_roots(name: &str) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    let tmp = std::env::temp_dir().join(format!("tg-alloc-{name}-{}", std::process::id()));
    let (proc_root, sys_root) = (tmp.join("proc"), tmp.join("sys"));
    std::fs::create_dir_all(proc_root.join("self")).unwrap();
    std::fs::write(proc_root.join("self/mountinfo"), "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n").unwrap();
    let cg = sys_root.join("fs/cgroup/memory/limited");
    (tmp, proc_root, sys_root, cg)
}

/// The files that make `cg` a v1 memory cgroup with a 512 MiB limit.
fn limit_512_mib(cg: &Path) {
    std::fs::create_dir_all(cg).unwrap();
    std::fs::write(cg.join("memory.limit_in_bytes"), "536870912\n").unwrap();
    std::fs::write(cg.join("memory.usage_in_bytes"), "1048576\n").unwrap();
    std::fs::write(cg.join("memory.stat"), "total_pgmajfault 5\ntotal_inactive_file 0\n").unwrap();
}

#[test]
fn a_thousand_iterations_allocate_nothing() {
    let (tmp, proc_root, sys_root, cg) = fake_roots("loop");
    std::fs::create_dir_all(proc_root.join("pressure")).unwrap();
    for f in ["meminfo", "vmstat", "pressure/memory"] {
        std::fs::copy(fixture(f), proc_root.join(f)).unwrap();
    }
    limit_512_mib(&cg);
    std::fs::write(cg.join("cgroup.procs"), "").unwrap();

    let mut cfg = thrashguard_core::config::Config::default();
    cfg.guard.max_processes = 1024;
    // stalls below are real to the policy, but no decision may fall inside the test
    cfg.policy.sustain_ms = 600_000;
    cfg.policy.sustain_corroborated_ms = 600_000;
    // metrics on: every tick updates them, and that must not allocate either
    cfg.metrics.listen = "127.0.0.1:0".into();
    let opts = thrashguard::daemon::Options {
        proc_root: proc_root.clone(),
        sys_root: sys_root.clone(),
        no_self_protect: true,
        ..Default::default()
    };
    let mut guard = thrashguard::daemon::Guard::new(cfg, opts).unwrap();
    assert_eq!(guard.scope_names(), vec!["v1:/limited".to_string()]);
    // warm up: first samples, lazily initialised statics
    for _ in 0..10 {
        guard.tick();
    }
    // the counter counts
    let probe = counting::allocations();
    drop(std::hint::black_box(vec![0u8; 64]));
    assert_eq!(counting::allocations(), probe + 1);

    // Stalls that grow between ticks, rendered before counting and written with pwrite:
    // the policy walks its episode path, not only the calm one.
    use std::os::unix::fs::FileExt;
    let psi = std::fs::OpenOptions::new().write(true).open(proc_root.join("pressure/memory")).unwrap();
    let texts: Vec<Vec<u8>> = (0..1000u64)
        .map(|i| {
            format!(
                "some avg10=50.00 avg60=10.00 avg300=2.00 total={:020}\nfull avg10=40.00 avg60=8.00 avg300=1.00 total={:020}\n",
                i * 90_000,
                i * 80_000
            )
            .into_bytes()
        })
        .collect();
    let before = counting::allocations();
    for text in &texts {
        psi.write_at(text, 0).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1));
        guard.tick();
    }
    let allocations = counting::allocations() - before;
    assert_eq!(guard.counters.bad_samples, 0);
    assert_eq!(guard.counters.decisions, 0);
    assert!(guard.counters.pressure_ticks > 100, "the episode path ran: {:?}", guard.counters);
    std::fs::remove_dir_all(&tmp).unwrap();
    assert_eq!(allocations, 0, "the steady-state loop allocated {allocations} times in 1000 iterations");
}

/// A cgroup rescue lists the pressured cgroup's processes (its whole subtree) without
/// allocating: the walk that runs when memory is shortest.
#[test]
fn listing_a_cgroups_members_allocates_nothing() {
    let (tmp, proc_root, sys_root, cg) = fake_roots("members");
    // a subtree 3 levels deep with many pids: more than one chunk of cgroup.procs
    let mut expected = Vec::new();
    let mut dir = cg.clone();
    for level in 0..3u32 {
        std::fs::create_dir_all(dir.join("sibling")).unwrap();
        std::fs::write(dir.join("sibling/cgroup.procs"), format!("{}\n", 900_000 + level)).unwrap();
        expected.push(900_000 + level);
        let pids: Vec<u32> = (0..3000).map(|i| level * 100_000 + i).collect();
        std::fs::write(dir.join("cgroup.procs"), pids.iter().map(|p| format!("{p}\n")).collect::<String>()).unwrap();
        expected.extend(pids);
        dir = dir.join(format!("child{level}"));
        std::fs::create_dir_all(&dir).unwrap();
    }
    limit_512_mib(&cg);
    let scopes = thrashguard::cgroups::discover(
        &proc_root,
        &sys_root,
        thrashguard_core::units::Kib(16 << 20),
        8,
        &thrashguard_core::policy::PolicyConfig::default(),
        Vec::new(),
    );
    let scope = scopes.iter().find(|s| s.name == "/limited").expect("the limited cgroup is a scope");
    let mut bufs = thrashguard::cgroups::MemberBuffers::default();
    let mut members = Vec::with_capacity(16_384);
    scope.members(&mut bufs, &mut members); // first call: lazily initialised statics
    expected.sort_unstable();
    assert_eq!(members, expected);
    let before = counting::allocations();
    for _ in 0..100 {
        scope.members(&mut bufs, &mut members);
    }
    let allocations = counting::allocations() - before;
    assert_eq!(members.len(), expected.len());
    // a capacity smaller than the cgroup: truncated, never grown
    let mut small = Vec::with_capacity(10);
    scope.members(&mut bufs, &mut small);
    assert_eq!((small.len(), small.capacity()), (10, 10));
    std::fs::remove_dir_all(&tmp).unwrap();
    assert_eq!(allocations, 0, "100 member walks allocated {allocations} times");
}

/// The watchdog ping and the STATUS= line, sent from the guard loop on the cached
/// notification socket, allocate nothing.
#[test]
fn watchdog_pings_allocate_nothing() {
    let path = std::env::temp_dir().join(format!("tg-alloc-notify-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    let mut n = thrashguard::systemd::SdNotify::connect(path.as_os_str(), Some(std::time::Duration::from_millis(2))).unwrap();
    n.ready("guarding", thrashguard_core::units::Micros(0));
    n.tick(thrashguard_core::units::Micros(500)); // warm up
    let before = counting::allocations();
    for i in 1..=1000u64 {
        n.tick(thrashguard_core::units::Micros(i * 1000));
        let phase = if i % 100 < 50 { "calm" } else { "pressure" };
        n.status(format_args!("guarding; phase {phase}; {} decisions, {} actions", i / 100, i / 200));
        if i % 50 == 0 {
            // keep the receiver's queue from filling
            let mut buf = [0u8; 256];
            sock.set_nonblocking(true).unwrap();
            while sock.recv(&mut buf).is_ok() {}
        }
    }
    let allocations = counting::allocations() - before;
    std::fs::remove_file(&path).unwrap();
    assert_eq!(allocations, 0, "1000 pings allocated {allocations} times");
}
