//! The lifeline end to end on loopback: keys made by `thrashguard keygen`, a real daemon,
//! `thrashguard send`, raw datagrams for every rejection, a restart, and a flood.
//!
//! Safety: the rescue test ranks victims by oom_score and its children carry
//! oom_score_adj 1000, so the daemon's choice can only fall on them, never on a process of
//! the machine running the test.
// Test helpers may panic: a panic is a failing test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use thrashguard_core::lifeline::gate::{open_reply, request};
use thrashguard_core::lifeline::keys::{SecretKey, host_id};
use thrashguard_core::lifeline::wire::{Action, MAX_DATAGRAM};

const HOST: &str = "lifeline-test";

fn tg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_thrashguard")).args(args).env_remove("THRASHGUARD_CONFIG").output().expect("run thrashguard")
}

mod common;
use common::Daemon;

/// A daemon on `config`, once its lifeline listens.
fn start(config: &Path) -> Daemon {
    let mut d = Daemon::spawn(&["--config", config.to_str().unwrap(), "daemon", "--no-self-protect", "--duration", "60"]);
    d.wait_for("lifeline on udp");
    d
}

struct Setup {
    dir: PathBuf,
    config: PathBuf,
    port: u16,
}

/// Keys made by the real `keygen`, an authorized-keys file, and a config on a free port.
fn setup(name: &str, extra: &str) -> Setup {
    let dir = std::env::temp_dir().join(format!("tg-lifeline-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for (stem, hmac) in [("ops", false), ("host", false), ("shared", true), ("stranger", false)] {
        let mut args = vec!["keygen", "--out", dir.to_str().unwrap(), "--name", stem];
        if hmac {
            args.push("--hmac");
        }
        let o = tg(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    // keygen never overwrites
    assert!(!tg(&["keygen", "--out", dir.to_str().unwrap(), "--name", "ops"]).status.success());
    let authorized = dir.join("authorized");
    let text = std::fs::read_to_string(dir.join("ops.pub")).unwrap() + &std::fs::read_to_string(dir.join("shared.pub")).unwrap();
    std::fs::write(&authorized, text).unwrap();
    std::fs::set_permissions(&authorized, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = dir.join("tg.toml");
    std::fs::write(
        &config,
        format!(
            "[history]\npath = \"{}\"\n[lifeline]\nlisten = \"127.0.0.1:{port}\"\nauthorized_keys = \"{}\"\nhost_key = \"{}\"\nhost_id = \"{HOST}\"\n{extra}",
            dir.join("history.db").display(),
            authorized.display(),
            dir.join("host.key").display()
        ),
    )
    .unwrap();
    Setup { dir, config, port }
}

fn key(s: &Setup, stem: &str) -> SecretKey {
    SecretKey::parse(&std::fs::read_to_string(s.dir.join(format!("{stem}.key"))).unwrap()).unwrap().0
}

fn send(s: &Setup, stem: &str, action: &[&str], extra: &[&str]) -> (bool, String) {
    let addr = format!("127.0.0.1:{}", s.port);
    let key = s.dir.join(format!("{stem}.key"));
    let host_pub = s.dir.join("host.pub");
    let mut args = vec!["send", addr.as_str()];
    args.extend_from_slice(action);
    args.extend_from_slice(&["--key", key.to_str().unwrap(), "--host-pub", host_pub.to_str().unwrap(), "--host-id", HOST, "--json"]);
    args.extend_from_slice(extra);
    let o = tg(&args);
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr))
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// A raw request datagram.
fn datagram(key: &SecretKey, host: &str, action: Action, ts: u64, nonce: u8) -> Vec<u8> {
    let mut out = [0u8; MAX_DATAGRAM];
    let n = request(key, host_id(host), action, ts, [nonce; 16], &mut out).unwrap();
    out[..n].to_vec()
}

/// Send raw bytes; the authentic reply's body, if one comes within `wait`.
fn raw(port: u16, bytes: &[u8], key: &SecretKey, nonce: u8, wait: Duration) -> Option<String> {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(wait)).unwrap();
    sock.send_to(bytes, ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    open_reply(&buf[..n], [nonce; 16], host_id(HOST), &key.verify_key()).ok().map(|b| String::from_utf8_lossy(b).into_owned())
}

#[test]
fn status_round_trip_with_both_schemes() {
    let s = setup("status", "");
    let d = start(&s.config);
    for stem in ["ops", "shared"] {
        let (ok, out) = send(&s, stem, &["status"], &[]);
        assert!(ok, "{stem}: {out}");
        let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
        assert_eq!(v["reply"]["ok"], true, "{v}");
        assert_eq!(v["reply"]["host"], HOST);
        assert!(v["reply"]["top"].as_array().is_some_and(|t| !t.is_empty() && t.len() <= 5), "{v}");
        assert!(v["reply"]["available_kib"].as_u64().unwrap() > 0, "{v}");
    }
    // --count: a ping through the guard loop
    let (ok, out) = send(&s, "shared", &["status"], &["--count", "5"]);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!((v["sent"].as_u64(), v["answered"].as_u64()), (Some(5), Some(5)), "{v}");
    assert!(v["rtt_ms"]["p99"].as_f64().is_some_and(|ms| ms > 0.0), "{v}");
    // a key the daemon does not trust gets silence; so does a request for another host
    let (ok, out) = send(&s, "stranger", &["status"], &["--timeout", "300", "--retries", "0"]);
    assert!(!ok && out.contains("no authentic reply"), "{out}");
    let log = d.stop();
    assert!(log.iter().any(|l| l.contains("refused 1 datagram(s) as unknown_key")), "{log:#?}");
    // 7 requests (more when a slow reply made the client retry with a fresh nonce)
    let accepted: u64 = log
        .iter()
        .find_map(|l| l.split("lifeline: ").nth(1)?.split(" accepted").next()?.parse().ok())
        .unwrap_or_else(|| panic!("no totals: {log:#?}"));
    assert!(accepted >= 7, "{log:#?}");
}

#[test]
fn every_rejection_is_silent_and_counted() {
    let s = setup("reject", "");
    let d = start(&s.config);
    let ops = key(&s, "ops");
    let host_key = SecretKey::parse(&std::fs::read_to_string(s.dir.join("host.key")).unwrap()).unwrap().0;
    let wait = Duration::from_millis(300);
    // a valid request is answered, signed by the host key
    let good = datagram(&ops, HOST, Action::Status, now_ms(), 1);
    assert!(raw(s.port, &good, &host_key, 1, Duration::from_secs(5)).is_some_and(|b| b.contains("\"ok\":true")));
    // the same datagram again: a replay
    assert_eq!(raw(s.port, &good, &host_key, 1, wait), None, "replay answered");
    // bit flips anywhere
    for at in [0, 5, 7, 12, 20, 35, 45, good.len() - 1] {
        let mut bad = datagram(&ops, HOST, Action::Status, now_ms(), 2 + at as u8);
        bad[at] ^= 0x10;
        assert_eq!(raw(s.port, &bad, &host_key, 2 + at as u8, wait), None, "flip at {at} answered");
    }
    let fresh = |n: u8| datagram(&ops, HOST, Action::Status, now_ms(), n);
    assert_eq!(raw(s.port, &fresh(100)[..40], &host_key, 100, wait), None, "truncated");
    let mut oversize = fresh(101);
    oversize.extend_from_slice(&[0u8; 1500]);
    assert_eq!(raw(s.port, &oversize, &host_key, 101, wait), None, "oversize");
    assert_eq!(raw(s.port, &datagram(&ops, HOST, Action::Status, now_ms() - 120_000, 102), &host_key, 102, wait), None, "old");
    assert_eq!(raw(s.port, &datagram(&ops, HOST, Action::Status, now_ms() + 120_000, 103), &host_key, 103, wait), None, "future");
    assert_eq!(raw(s.port, &datagram(&ops, "other-host", Action::Status, now_ms(), 104), &host_key, 104, wait), None, "other host");
    let stranger = key(&s, "stranger");
    assert_eq!(raw(s.port, &datagram(&stranger, HOST, Action::Status, now_ms(), 105), &host_key, 105, wait), None, "wrong key");
    // captured now, replayed after a restart
    let captured = datagram(&ops, HOST, Action::Status, now_ms(), 106);
    assert!(raw(s.port, &captured, &host_key, 106, Duration::from_secs(5)).is_some());
    let log = d.stop();
    for reason in ["replay", "bad_auth", "size", "stale", "future", "wrong_host", "unknown_key"] {
        assert!(log.iter().any(|l| l.contains("refused") && l.contains(&format!(" {reason}"))), "no {reason} in {log:#?}");
    }
    std::thread::sleep(Duration::from_millis(20));
    let d = start(&s.config);
    assert_eq!(raw(s.port, &captured, &host_key, 106, wait), None, "replayed after a restart");
    let log = d.stop();
    assert!(log.iter().any(|l| l.contains("before_start")), "{log:#?}");
}

#[test]
fn rescue_and_kill_act_on_the_right_process() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("needs root (oom_score_adj of the children, kill): skipped");
        return;
    }
    let s = setup("rescue", "[victim]\nrank_by = \"oom_score\"\n");
    // children at oom_score_adj 1000, by size: the biggest is the only possible victim
    let mut kids: Vec<Child> = [8usize, 64, 16]
        .iter()
        .map(|mib| {
            let c = Command::new("python3")
                .args(["-c", &format!("import time; b = bytearray({mib} << 20); b[::4096] = b'x' * len(b[::4096]); print('ready', flush=True); time.sleep(120)")])
                .stdout(Stdio::piped())
                .spawn()
                .expect("python3");
            std::fs::write(format!("/proc/{}/oom_score_adj", c.id()), "1000").unwrap();
            c
        })
        .collect();
    for k in &mut kids {
        let mut line = String::new();
        BufReader::new(k.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        assert!(line.contains("ready"));
    }
    let d = start(&s.config);
    let (ok, out) = send(&s, "ops", &["rescue"], &[]);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(v["reply"]["result"], "killed", "{v}");
    assert_eq!(v["reply"]["pid"], kids[1].id(), "the biggest child: {v}");
    let status = kids[1].wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9));
    assert!(kids[0].try_wait().unwrap().is_none() && kids[2].try_wait().unwrap().is_none(), "the others live");
    // a retried rescue (the client lost the reply) answers with the first outcome
    let (ok, out) = send(&s, "ops", &["rescue"], &[]);
    assert!(ok && out.contains("\"repeat\":true") && out.contains(&kids[1].id().to_string()), "{out}");
    assert!(kids[0].try_wait().unwrap().is_none() && kids[2].try_wait().unwrap().is_none(), "no second victim");
    // kill by pid, with a wrong start time first (refused), then the right one
    let pid = kids[2].id().to_string();
    let (ok, out) = send(&s, "shared", &["kill", &format!("{pid}@1")], &[]);
    assert!(!ok && out.contains("start time differs"), "{out}");
    assert!(kids[2].try_wait().unwrap().is_none());
    let (ok, out) = send(&s, "shared", &["kill", &pid], &[]);
    assert!(ok && out.contains("killed"), "{out}");
    assert!(kids[2].wait().is_ok());
    // PID 1 is never a target
    let (ok, out) = send(&s, "shared", &["kill", "1"], &[]);
    assert!(!ok && out.contains("refused"), "{out}");
    let log = d.stop();
    let at = |what: &str| log.iter().position(|l| l.contains(what));
    let asked = at("lifeline: rescue from").expect("the request logged");
    // the reply went out before the victim's memory was reaped (process_mrelease blocks
    // until the address space is gone: the operator must not wait for it)
    if let Some(reaped) = at("process_mrelease reaped") {
        assert!(asked < reaped, "{log:#?}");
    }
    // an operator's rescue is a decision; the retry is not a second one; kill is an action
    assert!(at("1 decisions, 2 actions").is_some(), "{log:#?}");
    let decision = &log[at("did kill").expect("decision line")];
    assert!(decision.contains("lifeline:") && !decision.contains("over 0.0 s"), "{decision}");
    for mut k in kids {
        let _ = k.kill();
        let _ = k.wait();
    }
}

#[test]
fn a_flood_of_garbage_changes_nothing() {
    let s = setup("flood", "");
    let d = start(&s.config);
    let port = s.port;
    let flood = std::thread::spawn(move || {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut buf = [0u8; 256];
        for i in 0..100_000u32 {
            for b in buf.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = state as u8;
            }
            // some with the right magic and version, so they get past the first bytes
            if i % 2 == 0 {
                buf[..5].copy_from_slice(b"TGLL\x01");
            }
            let len = 40 + (state as usize % 200);
            let _ = sock.send_to(&buf[..len], ("127.0.0.1", port));
        }
    });
    let mut answered = 0;
    let mut asked = 0;
    while !flood.is_finished() || asked == 0 {
        asked += 1;
        let (ok, out) = send(&s, "shared", &["status"], &["--timeout", "500", "--retries", "4"]);
        if ok {
            answered += 1;
        } else {
            eprintln!("unanswered during the flood: {out}");
        }
    }
    flood.join().unwrap();
    let log = d.stop();
    let stop = log.iter().find(|l| l.contains("stopping after")).unwrap();
    assert!(stop.ends_with(" 0 actions"), "{stop}");
    eprintln!("{answered}/{asked} status requests answered during the flood; {:?}", log.iter().find(|l| l.contains("accepted;")));
    assert_eq!(answered, asked, "every valid request answered during the flood");
    let mut f = std::fs::File::create(s.dir.join("done")).unwrap();
    f.write_all(b"ok").unwrap();
}

/// `lifeline self-test` against a live daemon: its socket is found on the configured port,
/// the keys load, and a guard started without self-protection is called out as not locked
/// in memory (critical, exit 2): what an operator must fix before relying on the lifeline.
#[test]
fn self_test_sees_the_live_daemon() {
    let s = setup("selftest", "");
    let d = start(&s.config);
    let o = tg(&["--config", s.config.to_str().unwrap(), "lifeline", "self-test", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let clear: Vec<&str> = v["clear"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert!(clear.contains(&"lifeline-socket"), "{v:#}");
    let socket = v["clear"].as_array().unwrap().iter().find(|c| c["id"] == "lifeline-socket").unwrap();
    assert!(socket.to_string().contains(&format!("127.0.0.1:{}", s.port)), "{socket}");
    let daemon = v["findings"].as_array().unwrap().iter().find(|f| f["id"] == "lifeline-daemon").expect("an unlocked daemon is a finding");
    assert_eq!(daemon["severity"], "critical", "{daemon:#}");
    assert_eq!(o.status.code(), Some(2));
    d.stop();
}

/// The lifeline on IPv6: a daemon listening on [::1] answers a client that names it so.
#[test]
fn status_over_ipv6() {
    let s = setup("v6", "");
    let port = UdpSocket::bind("[::1]:0").map(|u| u.local_addr().unwrap().port());
    let Ok(port) = port else {
        eprintln!("no IPv6 loopback here: skipped");
        return;
    };
    let text = std::fs::read_to_string(&s.config).unwrap().replace(&format!("127.0.0.1:{}", s.port), &format!("[::1]:{port}"));
    std::fs::write(&s.config, text).unwrap();
    let d = start(&s.config);
    let addr = format!("[::1]:{port}");
    let key = s.dir.join("ops.key");
    let host_pub = s.dir.join("host.pub");
    let o = tg(&[
        "send",
        &addr,
        "status",
        "--key",
        key.to_str().unwrap(),
        "--host-pub",
        host_pub.to_str().unwrap(),
        "--host-id",
        HOST,
        "--json",
    ]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{out}");
    let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(v["reply"]["ok"], true, "{v}");
    d.stop();
}
