//! The `/metrics` endpoint of a real daemon on loopback: scraped, checked by promtool
//! (required when THRASHGUARD_REQUIRE_PROMTOOL is set, as `.ci/run` does), and fed bad
//! requests (unknown path, wrong method, oversize, a client that sends nothing).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::Daemon;

/// Start a dry-run daemon with metrics on an ephemeral loopback port, sampling at least
/// every 200 ms even when calm; its address.
fn start() -> (Daemon, SocketAddr) {
    let config = std::env::temp_dir().join(format!("tg-metrics-{}-{:?}.toml", std::process::id(), std::thread::current().id()));
    std::fs::write(&config, "[policy]\nmax_interval_ms = 200\nmax_interval_with_trigger_ms = 200\n").unwrap();
    let mut daemon = Daemon::spawn(
        &["--config", config.to_str().unwrap(), "daemon", "--dry-run", "--no-self-protect", "--duration", "60"]
            .into_iter()
            .chain(["--metrics-listen", "127.0.0.1:0"])
            .collect::<Vec<_>>(),
    );
    let line = daemon.wait_for("metrics on http://");
    let _ = std::fs::remove_file(&config);
    let addr = line.split("metrics on http://").nth(1).unwrap().trim_end_matches("/metrics").trim().parse().unwrap();
    (daemon, addr)
}

/// Send `request` raw; (status line, body).
fn http(addr: SocketAddr, request: &[u8]) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (head.lines().next().unwrap_or("").to_string(), body.to_string())
}

fn value(text: &str, name: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok()).unwrap_or_else(|| panic!("{name} not in:\n{text}"))
}

#[test]
fn scraped_text_is_valid_prometheus() {
    let (_d, addr) = start();
    std::thread::sleep(Duration::from_millis(600));
    let (status, body) = http(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    for name in [
        "thrashguard_memory_stall_full_ratio",
        "thrashguard_memory_available_bytes",
        "thrashguard_memory_headroom_bytes",
        "thrashguard_refaults_pages_per_second{kind=\"file\"}",
        "thrashguard_policy_phase{phase=\"calm\"}",
        "thrashguard_decisions_total{reason=\"thrashing\"} 0",
        "thrashguard_actions_total{action=\"kill\",reason=\"sustained_stall\"} 0",
        "thrashguard_lifeline_rejected_total{reason=\"bad_auth\"} 0",
        "thrashguard_scan_duration_seconds_count",
        "# HELP thrashguard_memory_stall_full_ratio ",
        "# TYPE thrashguard_decisions_total counter",
    ] {
        assert!(body.contains(name), "{name} missing:\n{body}");
    }
    // the guard's own numbers, live: it has sampled, and this machine has memory
    assert!(value(&body, "thrashguard_loop_iterations_total") >= 1.0);
    let total = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kib: f64 = total.lines().next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(value(&body, "thrashguard_memory_total_bytes"), kib * 1024.0);

    match Command::new("promtool").args(["check", "metrics"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn() {
        Ok(mut p) => {
            p.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
            let o = p.wait_with_output().unwrap();
            assert!(
                o.status.success(),
                "promtool check metrics: {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        Err(e) => {
            assert!(std::env::var_os("THRASHGUARD_REQUIRE_PROMTOOL").is_none(), "promtool is required here: {e}");
            eprintln!("promtool not installed (apt-get install prometheus): the format check was skipped");
        }
    }
}

#[test]
fn bad_requests_get_errors_and_a_silent_client_blocks_nobody_for_long() {
    let (_d, addr) = start();
    assert_eq!(http(addr, b"GET /healthz HTTP/1.1\r\n\r\n"), ("HTTP/1.1 200 OK".into(), "ok\n".into()));
    assert_eq!(http(addr, b"GET /nope HTTP/1.1\r\n\r\n").0, "HTTP/1.1 404 Not Found");
    assert_eq!(http(addr, b"POST /metrics HTTP/1.1\r\n\r\n").0, "HTTP/1.1 405 Method Not Allowed");
    assert_eq!(http(addr, b"\x00\x01garbage\r\n\r\n").0, "HTTP/1.1 400 Bad Request");
    let big = format!("GET /metrics HTTP/1.1\r\nX-Pad: {}\r\n\r\n", "a".repeat(10_000));
    let (status, _) = http(addr, big.as_bytes());
    assert!(status.is_empty() || status == "HTTP/1.1 431 Request Header Fields Too Large", "{status}");

    // A client that connects and says nothing holds the one connection for at most the
    // 2 s timeout; the guard's loop is another thread and keeps counting meanwhile.
    let (_, first) = http(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
    let silent = TcpStream::connect(addr).unwrap();
    let t = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    let (status, later) = http(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(t.elapsed() < Duration::from_secs(5), "waited {:?}", t.elapsed());
    assert!(
        value(&later, "thrashguard_loop_iterations_total") > value(&first, "thrashguard_loop_iterations_total"),
        "the guard kept running"
    );
    drop(silent);
}

/// contrib/: the alert rules pass `promtool check rules` and their unit tests, and every
/// metric the rules and the Grafana dashboard query is one the daemon serves.
#[test]
fn alert_rules_and_dashboard_use_real_metrics() {
    let contrib = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib");
    let rules = std::fs::read_to_string(contrib.join("prometheus/thrashguard-alerts.yml")).unwrap();
    let dashboard = std::fs::read_to_string(contrib.join("grafana/thrashguard-dashboard.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    assert!(!dash["panels"].as_array().unwrap().is_empty());
    let m = thrashguard::metrics::Metrics::new();
    let served = String::from_utf8(m.render()).unwrap();
    for text in [&rules, &dashboard] {
        for name in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("thrashguard_")) {
            let base = name.trim_end_matches("_bucket");
            assert!(served.contains(&format!("# TYPE {base} ")), "{name} is queried but not served");
        }
    }
    for args in [&["check", "rules", "thrashguard-alerts.yml"][..], &["test", "rules", "thrashguard-alerts.test.yml"][..]] {
        match Command::new("promtool").args(args).current_dir(contrib.join("prometheus")).output() {
            Ok(o) => assert!(
                o.status.success(),
                "promtool {args:?}: {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => assert!(std::env::var_os("THRASHGUARD_REQUIRE_PROMTOOL").is_none(), "promtool is required here: {e}"),
        }
    }
}
