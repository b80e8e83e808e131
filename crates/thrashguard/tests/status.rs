//! `thrashguard status`: from a running guard's socket (a stale socket file left by a dead
//! guard is replaced, a live one is never stolen), and from /proc when none answers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::Daemon;

fn tg() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_thrashguard"));
    c.env_remove("THRASHGUARD_CONFIG");
    c
}

fn config(dir: &Path, socket: &Path) -> PathBuf {
    let c = dir.join("tg.toml");
    std::fs::write(
        &c,
        format!("[guard]\nstatus_socket = {:?}\n[policy]\nmax_interval_ms = 200\nmax_interval_with_trigger_ms = 200\n", socket),
    )
    .unwrap();
    c
}

fn start(config: &Path) -> Daemon {
    let mut d = Daemon::spawn(&["--config", config.to_str().unwrap(), "daemon", "--dry-run", "--no-self-protect", "--duration", "60"]);
    d.wait_for("guarding");
    d
}

fn status(config: &Path, extra: &[&str]) -> serde_json::Value {
    let o = tg().args(["--config", config.to_str().unwrap()]).args(extra).args(["status", "--json"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn from_the_guard_then_from_proc_when_it_is_gone() {
    let dir = std::env::temp_dir().join(format!("tg-status-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("run/status.sock");
    let cfg = config(&dir, &socket);
    // a dead guard's socket file: nobody listens on it
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());

    let d = start(&cfg);
    let v = status(&cfg, &[]);
    assert_eq!(v["source"], "daemon", "{v}");
    assert_eq!(v["phase"], "calm");
    assert!(v["total_kib"].as_u64().unwrap() > 0 && v["top"].as_array().is_some_and(|t| !t.is_empty()), "{v}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o666);

    // a burst of local clients is served from one scan a second, all of them answered
    let t = Instant::now();
    for _ in 0..200 {
        use std::io::Read;
        let mut s = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        assert!(body.starts_with("{\"ok\":true"), "{body}");
    }
    eprintln!("200 status requests in {:?}", t.elapsed());

    // a second guard on the same socket leaves the first one's alone
    let second = start(&cfg);
    assert_eq!(status(&cfg, &[])["source"], "daemon");
    drop(second);
    assert_eq!(status(&cfg, &[])["source"], "daemon", "the first guard still answers");

    // text form
    let o = tg().args(["--config", cfg.to_str().unwrap(), "status"]).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("from the running guard") && text.contains("PID  NAME"), "{text}");

    d.stop();
    let deadline = Instant::now() + Duration::from_secs(10);
    while socket.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!socket.exists(), "the guard removed its socket on the way out");
    let v = status(&cfg, &[]);
    assert_eq!(v["source"], "proc", "{v}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn from_a_captured_tree() {
    let dir = std::env::temp_dir().join(format!("tg-status-tree-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/fixtures/proc/6.18.44-host");
    let proc = dir.join("proc");
    std::fs::create_dir_all(proc.join("pressure")).unwrap();
    for f in ["meminfo", "vmstat", "pressure/memory"] {
        std::fs::copy(fixtures.join(f), proc.join(f)).unwrap();
    }
    std::fs::create_dir_all(proc.join("4242")).unwrap();
    std::fs::copy(fixtures.join("pid/stat"), proc.join("4242/stat")).unwrap();
    std::fs::copy(fixtures.join("pid/status"), proc.join("4242/status")).unwrap();
    let cfg = config(&dir, &dir.join("none.sock"));
    let v = status(&cfg, &["--proc-root", proc.to_str().unwrap()]);
    assert_eq!(v["source"], "proc");
    let meminfo = std::fs::read_to_string(proc.join("meminfo")).unwrap();
    let total: u64 = meminfo.lines().next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(v["total_kib"], total, "{v}");
    std::fs::remove_dir_all(&dir).unwrap();
}
