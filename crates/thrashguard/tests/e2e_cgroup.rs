//! End to end, on this host, safely: zram swap, a memory cgroup with a 512 MiB limit, a
//! real hog thrashing inside it, a bigger idle process outside it, and the real daemon.
//! The hog must be chosen and killed; the bigger bystander must live.
//!
//! Safety: the hog joins the cgroup before it allocates a byte, its memory+swap is capped
//! (memsw / swap.max) so even a dead daemon leaves the kernel's cgroup OOM killer as a
//! backstop, and every process and the cgroup are removed on exit (Drop guards).
//! Needs root, a memory cgroup hierarchy and swap (zram0 is set up when free); without them
//! the test says why and passes vacuously only when `THRASHGUARD_E2E=optional`.
// Test helpers may panic: a panic is a failing test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_arguments)]

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

/// Body of the child processes: runs only when spawned by the test below with TG_ROLE set.
#[test]
fn helper_process() {
    let Ok(role) = std::env::var("TG_ROLE") else { return };
    if let Ok(list) = std::env::var("TG_CGROUP_PROCS") {
        for procs in list.split(':') {
            std::fs::write(procs, format!("{}\n", std::process::id())).expect("join cgroup");
        }
    }
    let mib: usize = std::env::var("TG_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
    let mut mem: Vec<Vec<u8>> = Vec::new();
    // 16 MiB chunks, each page written with varying bytes (not "same-filled": zram must work)
    for c in 0..mib / 16 {
        let mut chunk = vec![0u8; 16 * MIB];
        for (i, page) in chunk.chunks_mut(4096).enumerate() {
            page[0] = (i ^ c) as u8;
            page[100] = (i >> 8) as u8;
        }
        mem.push(chunk);
    }
    println!("ready");
    loop {
        if role == "hog" {
            // keep touching everything: the working set no longer fits the limit
            for chunk in &mut mem {
                for page in chunk.chunks_mut(4096) {
                    page[1] = page[1].wrapping_add(1);
                }
            }
        } else {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

struct Reaper(Vec<Child>);
impl Drop for Reaper {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Cgroup(PathBuf);
impl Drop for Cgroup {
    fn drop(&mut self) {
        // the members are dead by now (Reaper drops first); retry while they exit
        for _ in 0..50 {
            if std::fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

struct ZramSwap(bool);
impl Drop for ZramSwap {
    fn drop(&mut self) {
        if self.0 {
            let _ = Command::new("swapoff").arg("/dev/zram0").status();
            let _ = std::fs::write("/sys/block/zram0/reset", "1");
        }
    }
}

fn total_swap_kib() -> u64 {
    let m = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    m.lines().find(|l| l.starts_with("SwapTotal:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Swap for the hog: existing swap, or zram0 set up (and torn down) by this test.
fn ensure_swap() -> Result<ZramSwap, String> {
    if total_swap_kib() >= 1024 * 1024 {
        return Ok(ZramSwap(false));
    }
    let zram = Path::new("/sys/block/zram0");
    if !zram.exists() {
        let _ = Command::new("modprobe").arg("zram").status();
    }
    if std::fs::read_to_string(zram.join("disksize")).map_err(|e| format!("no zram0: {e}"))?.trim() != "0" {
        return Err("zram0 is in use by something else and there is no swap".into());
    }
    std::fs::write(zram.join("disksize"), "2G").map_err(|e| format!("zram0 disksize: {e}"))?;
    let guard = ZramSwap(true);
    let ok = |c: &mut Command| c.stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    if !ok(Command::new("mkswap").arg("/dev/zram0")) || !ok(Command::new("swapon").arg("/dev/zram0")) {
        return Err("mkswap/swapon /dev/zram0 failed".into());
    }
    Ok(guard)
}

/// A memory cgroup with a 512 MiB limit and memory+swap capped at 2 GiB; on a hybrid host
/// (v1 memory controller beside a cgroup2 mount) also the cgroup of the same path in the
/// unified hierarchy, as systemd makes for every unit: that is where its PSI lives.
fn make_cgroup() -> Result<(Cgroup, String, Option<Cgroup>), String> {
    let name = format!("thrashguard-e2e-{}", std::process::id());
    let v1 = Path::new("/sys/fs/cgroup/memory");
    if v1.join("memory.limit_in_bytes").exists() {
        let dir = v1.join(&name);
        std::fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let cg = Cgroup(dir.clone());
        std::fs::write(dir.join("memory.limit_in_bytes"), (512 * MIB).to_string()).map_err(|e| e.to_string())?;
        // may be absent without swap accounting; the test's own timeout is the backstop then
        let _ = std::fs::write(dir.join("memory.memsw.limit_in_bytes"), (2048 * MIB).to_string());
        let unified = Path::new("/sys/fs/cgroup/unified");
        let psi = if unified.join("cgroup.procs").exists() && std::fs::create_dir(unified.join(&name)).is_ok() {
            Some(Cgroup(unified.join(&name)))
        } else {
            None
        };
        return Ok((cg, format!("/{name}"), psi));
    }
    // pure cgroup v2 (mounted at /sys/fs/cgroup with the memory controller)
    let v2 = Path::new("/sys/fs/cgroup");
    if std::fs::read_to_string(v2.join("cgroup.controllers")).unwrap_or_default().contains("memory") {
        let _ = std::fs::write(v2.join("cgroup.subtree_control"), "+memory");
        let dir = v2.join(&name);
        std::fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let cg = Cgroup(dir.clone());
        std::fs::write(dir.join("memory.max"), (512 * MIB).to_string()).map_err(|e| e.to_string())?;
        let _ = std::fs::write(dir.join("memory.swap.max"), (1536 * MIB).to_string());
        return Ok((cg, format!("/{name}"), None));
    }
    Err("no memory cgroup hierarchy".into())
}

fn spawn_helper(role: &str, mib: usize, cgroup_procs: Option<&Path>) -> Child {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args(["--exact", "helper_process", "--nocapture", "--test-threads=1"]).env("TG_ROLE", role).env("TG_MIB", mib.to_string());
    if let Some(p) = cgroup_procs {
        cmd.env("TG_CGROUP_PROCS", p);
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("spawn helper")
}

fn wait_ready(child: &mut Child) {
    let out = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(out).lines();
    while let Some(Ok(l)) = lines.next() {
        if l.contains("ready") {
            return;
        }
    }
    panic!("helper died before it was ready");
}

fn precondition_failed(why: String) {
    if std::env::var("THRASHGUARD_E2E").as_deref() == Ok("optional") {
        eprintln!("SKIPPED end-to-end cgroup test: {why}");
        return;
    }
    panic!("end-to-end cgroup test cannot run: {why} (set THRASHGUARD_E2E=optional to skip)");
}

#[test]
fn hog_in_a_limited_cgroup_is_killed_and_the_bigger_bystander_lives() {
    if std::env::var("TG_ROLE").is_ok() {
        return;
    }
    if !rustix::process::geteuid().is_root() {
        return precondition_failed("not root".into());
    }
    let _swap = match ensure_swap() {
        Ok(s) => s,
        Err(e) => return precondition_failed(e),
    };
    let (cgroup, cg_name, psi_twin) = match make_cgroup() {
        Ok(c) => c,
        Err(e) => return precondition_failed(e),
    };
    let mut procs = cgroup.0.join("cgroup.procs").into_os_string();
    if let Some(twin) = &psi_twin {
        procs.push(":");
        procs.push(twin.0.join("cgroup.procs"));
    }
    let procs = PathBuf::from(procs);
    // v2, or v1 with its unified twin: the scope has PSI; the trigger needs a real kernel
    let has_psi = (psi_twin.is_some() || !cgroup.0.starts_with("/sys/fs/cgroup/memory")) && Path::new("/proc/pressure/memory").exists();

    let mut kids = Reaper(Vec::new());
    // the bystander: 1.5 GiB, idle, outside the cgroup: bigger than the hog ever gets in RAM
    kids.0.push(spawn_helper("idle", 1536, None));
    wait_ready(&mut kids.0[0]);
    let bystander = kids.0[0].id();

    // the rescue's event goes to a history of the test's own, stored a second after it
    let hist = std::env::temp_dir().join(format!("tg-e2e-history-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&hist);
    std::fs::create_dir_all(&hist).expect("history dir");
    let db = hist.join("history.db");
    let config = hist.join("tg.toml");
    std::fs::write(&config, format!("[history]\npath = \"{}\"\nafter_s = 1\n", db.display())).expect("config");
    let daemon = Command::new(env!("CARGO_BIN_EXE_thrashguard"))
        .args(["--config", config.to_str().expect("utf-8"), "--log-format", "json", "daemon", "--duration", "90"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start daemon");
    kids.0.push(daemon);
    // wait for the daemon to start watching (its first line), so it discovers the cgroup
    let err = kids.0[1].stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = Vec::new();
    let started = Instant::now();
    while !log.iter().any(|l: &String| l.contains("guarding")) {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => log.push(l),
            Err(_) => panic!("daemon did not start: {log:#?}"),
        }
    }
    let watch_line = log.iter().find(|l| l.contains(&cg_name)).unwrap_or_else(|| panic!("daemon does not watch {cg_name}: {log:#?}"));
    if has_psi {
        assert!(watch_line.contains(&format!("{cg_name} (PSI trigger)")), "the scope reads PSI with a trigger: {watch_line}");
    }

    // the hog: joins the cgroup first, then 1 GiB, touched over and over
    let t_hog = Instant::now();
    kids.0.push(spawn_helper("hog", 1024, Some(&procs)));
    let hog = kids.0[2].id();
    let status = loop {
        if let Some(st) = kids.0[2].try_wait().expect("try_wait") {
            break st;
        }
        if t_hog.elapsed() > Duration::from_secs(75) {
            panic!("hog not rescued within 75 s; daemon log: {log:#?}");
        }
        while let Ok(l) = rx.try_recv() {
            log.push(l);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let rescue_s = t_hog.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(300));
    while let Ok(l) = rx.try_recv() {
        log.push(l);
    }
    let decisions: Vec<serde_json::Value> =
        log.iter().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).filter(|v| v["event"] == "decision").collect();
    eprintln!("hog rescued {rescue_s:.1} s after start (daemon up {:.1} s); decisions: {decisions:#?}", started.elapsed().as_secs_f64());
    assert_eq!(status.signal(), Some(9), "the hog was not SIGKILLed: {status:?}; log {log:#?}");
    assert_eq!(decisions.len(), 1, "one episode, one decision: {decisions:#?}");
    let d = &decisions[0];
    assert_eq!(d["scope"], cg_name.as_str(), "{d}");
    assert_eq!(d["victim_pid"], hog, "{d}");
    assert_eq!(d["dry_run"], false);
    if has_psi {
        // decided on stall time, not on the no-PSI fallback
        assert!(["thrashing", "stall_near_exhaustion", "sustained_stall"].contains(&d["reason"].as_str().unwrap_or("")), "{d}");
        assert!(d["full_stall_mean_pct"].as_f64().unwrap_or(0.0) > 0.0, "{d}");
    }
    // the time from the triggering sample to the victim's exit is measured and logged
    let exit_line = log.iter().find(|l| l.contains("exited") && l.contains(&hog.to_string()));
    eprintln!("{exit_line:?}");
    assert!(exit_line.is_some(), "no exit-time line: {log:#?}");
    // the bystander, bigger and outside, lives
    assert!(kids.0[0].try_wait().expect("try_wait").is_none(), "the bystander {bystander} died");
    // the rescue is in the history: the cgroup scope, the victim, its exit time, a timeline
    let deadline = Instant::now() + Duration::from_secs(15);
    while !log.iter().any(|l| l.contains("stored event")) && Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            log.push(l);
        }
    }
    let o = Command::new(env!("CARGO_BIN_EXE_thrashguard"))
        .args(["history", "--json", "--db", db.to_str().expect("utf-8")])
        .output()
        .expect("thrashguard history");
    let events: Vec<serde_json::Value> =
        String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).expect("an event per line")).collect();
    assert_eq!(events.len(), 1, "{events:#?}; {log:#?}");
    let e = &events[0];
    assert_eq!(
        (e["scope"].as_str(), e["action"].as_str(), e["outcome"].as_str()),
        (Some(cg_name.as_str()), Some("kill"), Some("killed")),
        "{e}"
    );
    assert_eq!(e["victim"]["pid"], hog, "{e}");
    assert_eq!(e["reason"], d["reason"], "{e}");
    assert!(e["exit_after_ms"].as_f64().is_some_and(|ms| ms > 0.0), "the exit time: {e}");
    assert!(e["timeline"].as_array().is_some_and(|t| t.len() > 5), "{e}");
    let _ = std::fs::remove_dir_all(&hist);
}
