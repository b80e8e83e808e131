//! `doctor` and `lifeline self-test` end to end: over captured trees (a healthy lifeline
//! set-up, one with most files missing, one with garbled files) and the live machine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

mod common;
use common::{Tree, write};

/// An empty captured tree for one test.
fn tree(tag: &str) -> Tree {
    common::tree(&format!("doctor-{tag}"))
}

/// Run thrashguard; (exit code, parsed JSON of stdout).
fn doctor(args: &[&str]) -> (i32, serde_json::Value) {
    let o = Command::new(env!("CARGO_BIN_EXE_thrashguard")).args(args).env_remove("THRASHGUARD_CONFIG").output().unwrap();
    let v = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)));
    (o.status.code().unwrap(), v)
}

fn ids(v: &serde_json::Value, key: &str) -> Vec<String> {
    v[key].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap().to_string()).collect()
}

/// A captured /proc of a guarded host: a daemon locked in memory and immune to the OOM
/// killer, its lifeline socket on port 7411, no dropped packets; plus a config whose
/// authorized-keys file holds one HMAC secret (mode 0600).
fn healthy(t: &Tree, drops: u64) -> PathBuf {
    let proc = t.0.join("proc");
    write(&proc, "4321/comm", "thrashguard\n");
    write(&proc, "4321/cmdline", "/usr/bin/thrashguard\0daemon\0");
    write(&proc, "4321/status", "Name:\tthrashguard\nVmLck:\t    8720 kB\nVmRSS:\t    2280 kB\n");
    write(&proc, "4321/oom_score_adj", "-1000\n");
    write(&proc, "77/comm", "sshd\n");
    write(&proc, "77/cmdline", "sshd\0-D\0");
    write(&proc, "sys/vm/min_free_kbytes", "67584\n");
    write(&proc, "meminfo", &std::fs::read_to_string("/proc/meminfo").unwrap());
    write(&proc, "net/netstat", "TcpExt: SyncookiesSent PFMemallocDrop\nTcpExt: 0 0\n");
    write(
        &proc,
        "net/udp",
        &format!(
            "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n  5: 00000000:1CF3 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 99 2 0000000000000000 {drops}\n"
        ),
    );
    let keys = t.0.join("keys");
    let o = Command::new(env!("CARGO_BIN_EXE_thrashguard"))
        .args(["keygen", "--hmac", "--name", "shared", "--out", keys.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success());
    let authorized = keys.join("authorized");
    std::fs::copy(keys.join("shared.pub"), &authorized).unwrap();
    std::fs::set_permissions(&authorized, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let config = t.0.join("tg.toml");
    std::fs::write(&config, format!("[lifeline]\nlisten = \"0.0.0.0:7411\"\nauthorized_keys = \"{}\"\n", authorized.display())).unwrap();
    config
}

#[test]
fn a_guarded_captured_host_is_healthy() {
    let t = tree("healthy");
    let config = healthy(&t, 0);
    let proc = t.0.join("proc");
    let root = rustix::process::geteuid().is_root();
    let (code, v) =
        doctor(&["--config", config.to_str().unwrap(), "--proc-root", proc.to_str().unwrap(), "lifeline", "self-test", "--json"]);
    assert_eq!(v["schema"], 1);
    let clear = ids(&v, "clear");
    for id in ["lifeline-daemon", "lifeline-socket", "atomic-reserve"] {
        assert!(clear.contains(&id.to_string()), "{id} not clear: {v:#}");
    }
    if root {
        assert!(clear.contains(&"lifeline-keys".to_string()), "{v:#}");
        assert_eq!(code, 0, "{v:#}");
    }
    assert!(v["not_checked"].as_array().unwrap().is_empty(), "{v:#}");
}

#[test]
fn each_lifeline_problem_is_found() {
    let t = tree("problems");
    let config = healthy(&t, 40);
    let proc = t.0.join("proc");
    // unlocked daemon, packets dropped for lack of memory, a flooded socket
    write(&proc, "4321/status", "Name:\tthrashguard\nVmLck:\t       0 kB\n");
    write(&proc, "net/netstat", "TcpExt: SyncookiesSent PFMemallocDrop\nTcpExt: 0 12\n");
    let (code, v) =
        doctor(&["--config", config.to_str().unwrap(), "--proc-root", proc.to_str().unwrap(), "lifeline", "self-test", "--json"]);
    assert_eq!(code, 2, "{v:#}");
    let findings = v["findings"].as_array().unwrap();
    let sev = |id: &str| findings.iter().find(|f| f["id"] == id).map(|f| f["severity"].as_str().unwrap().to_string());
    assert_eq!(sev("lifeline-daemon").as_deref(), Some("critical"), "{v:#}");
    assert_eq!(sev("lifeline-socket").as_deref(), Some("warning"), "{v:#}");
    assert_eq!(sev("atomic-reserve").as_deref(), Some("warning"), "{v:#}");
    assert_eq!(findings[0]["severity"], "critical", "most severe first");
    // key file others can write: the daemon would refuse to start
    let authorized = t.0.join("keys/authorized");
    std::fs::set_permissions(&authorized, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let (_, v) = doctor(&["--config", config.to_str().unwrap(), "--proc-root", proc.to_str().unwrap(), "lifeline", "self-test", "--json"]);
    let f = v["findings"].as_array().unwrap().iter().find(|f| f["id"] == "lifeline-keys").cloned().unwrap();
    assert_eq!(f["severity"], "critical");
    assert!(f["evidence"][0]["value"].as_str().unwrap().contains("writable by group or others"), "{f:#}");
    // no daemon at all
    std::fs::remove_dir_all(proc.join("4321")).unwrap();
    let (code, v) =
        doctor(&["--config", config.to_str().unwrap(), "--proc-root", proc.to_str().unwrap(), "lifeline", "self-test", "--json"]);
    assert!(ids(&v, "findings").contains(&"lifeline-daemon".to_string()) && code == 2, "{v:#}");
}

#[test]
fn missing_and_garbled_files_are_not_checked_never_fatal() {
    let t = tree("missing");
    let (code, v) = doctor(&["--proc-root", t.0.to_str().unwrap(), "doctor", "--json"]);
    assert!(code == 0 || code == 1, "{code} {v:#}");
    let nc = ids(&v, "not_checked");
    assert!(nc.contains(&"atomic-reserve".to_string()) && nc.contains(&"lifeline-daemon".to_string()), "{v:#}");
    write(&t.0, "sys/vm/min_free_kbytes", "lots\n");
    write(&t.0, "net/udp", "header\n  1: zz:zz\n");
    write(&t.0, "net/netstat", "TcpExt: PFMemallocDrop\nTcpExt:\n");
    let config = t.0.join("tg.toml");
    std::fs::write(&config, "[lifeline]\nauthorized_keys = \"/nonexistent/authorized\"\n").unwrap();
    let (code, v) = doctor(&["--config", config.to_str().unwrap(), "--proc-root", t.0.to_str().unwrap(), "doctor", "--json"]);
    assert!(code == 0 || code == 1, "{code} {v:#}");
    let missing: Vec<&str> = v["not_checked"].as_array().unwrap().iter().map(|n| n["missing"].as_str().unwrap()).collect();
    assert!(missing.iter().any(|m| m.contains("not a number")), "{v:#}");
}

#[test]
fn the_live_machine_gives_valid_json_and_text() {
    let (code, v) = doctor(&["doctor", "--json"]);
    assert!((0..=2).contains(&code), "{code}");
    assert_eq!(v["schema"], 1);
    assert_eq!(v["summary"]["exit_code"], code);
    let o =
        Command::new(env!("CARGO_BIN_EXE_thrashguard")).args(["lifeline", "self-test"]).env_remove("THRASHGUARD_CONFIG").output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.starts_with("thrashguard lifeline self-test: "), "{text}");
    assert!(!text.contains('\x1b'), "no colour when not on a terminal");
}

/// zone_reclaim_mode staged on a captured two-node machine: critical once reclaim failed,
/// a warning before, info on one node, clear when off.
#[test]
fn zone_reclaim_on_a_captured_two_node_machine() {
    let t = tree("zone");
    let (proc, sys) = (t.0.join("proc"), t.0.join("sys"));
    let vmstat = std::fs::read_to_string("/proc/vmstat").unwrap();
    let staged = |failed: u64| {
        vmstat
            .lines()
            .map(|l| if l.starts_with("zone_reclaim_failed ") { format!("zone_reclaim_failed {failed}") } else { l.to_string() })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    };
    let zone = |mode: &str, nodes: &str, failed: u64| {
        write(&proc, "sys/vm/zone_reclaim_mode", mode);
        write(&sys, "devices/system/node/has_memory", nodes);
        write(&proc, "vmstat", &staged(failed));
        let (_, v) = doctor(&["--proc-root", proc.to_str().unwrap(), "--sys-root", sys.to_str().unwrap(), "doctor", "--json"]);
        let found = v["findings"].as_array().unwrap().iter().find(|f| f["id"] == "zone-reclaim").cloned();
        let clear = ids(&v, "clear").contains(&"zone-reclaim".to_string());
        (found.map(|f| f["severity"].as_str().unwrap().to_string()), clear)
    };
    if !vmstat.contains("zone_reclaim_failed ") {
        eprintln!("this kernel has no zone_reclaim_failed counter: staged evidence skipped");
        return;
    }
    assert_eq!(zone("1\n", "0-1\n", 35), (Some("critical".into()), false));
    assert_eq!(zone("1\n", "0-1\n", 0), (Some("warning".into()), false));
    assert_eq!(zone("1\n", "0\n", 0), (Some("info".into()), false));
    assert_eq!(zone("0\n", "0-1\n", 35), (None, true));
}
