//! systemd's notification protocol without systemd: a real daemon with `NOTIFY_SOCKET` and
//! `WATCHDOG_USEC` set sends READY=1 once set up, then WATCHDOG=1 from its guard loop at
//! half the interval; a SIGSTOPped daemon (a stuck guard) stops pinging, and pings again
//! once continued; SIGTERM sends STOPPING=1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

mod common;
use common::{Daemon, tree};

/// Datagrams received until `until` (each with its arrival time).
fn receive(sock: &UnixDatagram, until: Instant) -> Vec<(Instant, String)> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return got;
        }
        sock.set_read_timeout(Some(left)).unwrap();
        match sock.recv(&mut buf) {
            Ok(n) => got.push((Instant::now(), String::from_utf8_lossy(&buf[..n]).into_owned())),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return got,
            Err(e) => panic!("recv: {e}"),
        }
    }
}

fn pings(msgs: &[(Instant, String)]) -> Vec<Instant> {
    msgs.iter().filter(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1")).map(|(t, _)| *t).collect()
}

#[test]
fn ready_then_watchdog_pings_from_the_loop_and_none_while_stopped() {
    let dir = tree("notify");
    let path = dir.0.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    // calm sampling every 5 s: only the watchdog's cap on the wait makes the loop ping in time
    let cfg = dir.0.join("tg.toml");
    std::fs::write(&cfg, "[guard]\nstatus_socket = \"\"\n[policy]\nmax_interval_ms = 5000\nmax_interval_with_trigger_ms = 5000\n").unwrap();

    let watchdog = Duration::from_millis(400);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_thrashguard"));
    child
        .args(["--config", cfg.to_str().unwrap(), "daemon", "--dry-run", "--no-self-protect", "--duration", "60"])
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", watchdog.as_micros().to_string());
    let mut d = Daemon::spawn_command(child);

    // READY=1 with a status line, after the guard's set-up
    let mut buf = [0u8; 4096];
    sock.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let n = sock.recv(&mut buf).expect("READY=1 within 20 s");
    let first = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(first.lines().any(|l| l == "READY=1"), "{first:?}");
    assert!(first.lines().any(|l| l.starts_with("STATUS=guarding")), "{first:?}");
    d.wait_for("systemd: READY sent; watchdog 400 ms");

    // WATCHDOG=1 at half the interval (200 ms), never later than the interval
    let msgs = receive(&sock, Instant::now() + Duration::from_secs(2));
    let p = pings(&msgs);
    assert!(p.len() >= 6, "{} pings in 2 s: {msgs:?}", p.len());
    let max_gap = p.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(max_gap < watchdog, "a gap of {max_gap:?} between pings");
    assert!(msgs.iter().any(|(_, m)| m.starts_with("STATUS=guarding; phase calm")), "{msgs:?}");

    // a stopped guard stops pinging (systemd would kill and restart it)...
    let pid = d.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    let _ = receive(&sock, Instant::now() + Duration::from_millis(100)); // one in flight
    let stopped = receive(&sock, Instant::now() + Duration::from_millis(1500));
    assert!(pings(&stopped).is_empty(), "pinged while stopped: {stopped:?}");
    // ...and pings again once continued
    assert!(std::process::Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    let resumed = receive(&sock, Instant::now() + Duration::from_secs(1));
    assert!(pings(&resumed).len() >= 2, "{resumed:?}");

    // SIGTERM: STOPPING=1
    let log = d.stop();
    let rest = receive(&sock, Instant::now() + Duration::from_millis(500));
    assert!(rest.iter().any(|(_, m)| m.contains("STOPPING=1")), "{rest:?}\n{log:#?}");
}

#[test]
fn without_notify_socket_nothing_is_said() {
    let dir = tree("notify-none");
    let cfg = dir.0.join("tg.toml");
    std::fs::write(&cfg, "[guard]\nstatus_socket = \"\"\n").unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_thrashguard"));
    child.args(["--config", cfg.to_str().unwrap(), "daemon", "--dry-run", "--no-self-protect", "--duration", "1"]);
    child.env_remove("NOTIFY_SOCKET").env("WATCHDOG_USEC", "100000");
    let mut d = Daemon::spawn_command(child);
    d.wait_for("guarding");
    let log = d.stop();
    assert!(!log.iter().any(|l| l.contains("systemd:")), "{log:#?}");
}
