//! Prometheus metrics: the handles the guard updates and the `/metrics` endpoint.
//!
//! Owns every metric's name, HELP and labels (one [`Metrics`] registry, no global), and the
//! HTTP thread that serves them: std `TcpListener` + httparse, one connection at a time,
//! 2 s timeouts, an 8 KiB request cap, `GET /metrics` and `GET /healthz` only,
//! `Connection: close`. Every handle is created at start (label sets included), so an
//! update from the guard thread is an atomic store or add: nothing is allocated, locked
//! or waited on there. Encoding and sockets live on the HTTP thread only. It must never
//! decide or act, and never make the guard wait for a scrape.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use prometheus::{Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntGauge, Opts, Registry, TextEncoder};
use thrashguard_core::config::Action;
use thrashguard_core::lifeline::Reject;
use thrashguard_core::policy::{Evidence, Phase, Reason};

use crate::lifeline::LifelineCounters;

/// Largest request the endpoint reads.
const MAX_REQUEST: usize = 8192;
/// Read and write timeout of one scrape.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Stack of the HTTP thread (its buffers are on the heap).
const THREAD_STACK: usize = 256 * 1024;

/// The metric handles the guard updates.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    full_stall: Gauge,
    some_stall: Gauge,
    available: IntGauge,
    total: IntGauge,
    headroom: IntGauge,
    headroom_trend: Gauge,
    refaults: [Gauge; 2],
    majfaults: Gauge,
    phase: [IntGauge; Phase::ALL.len()],
    scopes_under_pressure: IntGauge,
    decisions: [IntCounter; Reason::ALL.len()],
    actions: [[IntCounter; Reason::ALL.len()]; 2],
    last_action: Gauge,
    iterations: IntCounter,
    bad_samples: IntCounter,
    scan_seconds: Histogram,
    lifeline_accepted: IntCounter,
    lifeline_rejected: [IntCounter; Reject::ALL.len()],
    lifeline_send_errors: IntCounter,
    /// The lifeline counters as last published (the server counts; we add the difference).
    lifeline_seen: LifelineCounters,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: T) -> T {
    // Names are fixed and distinct: registering can only fail on a programming error.
    r.register(Box::new(m.clone())).expect("metric names are unique");
    m
}

fn gauge(r: &Registry, name: &str, help: &str) -> Gauge {
    register(r, Gauge::new(name, help).expect("valid metric"))
}

fn int_gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    register(r, IntGauge::new(name, help).expect("valid metric"))
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    register(r, IntCounter::new(name, help).expect("valid metric"))
}

/// A labelled metric family made by `make` (`IntCounterVec::new`, …), registered.
#[allow(clippy::expect_used)]
fn vector<V: prometheus::core::Collector + Clone + 'static>(
    r: &Registry,
    make: fn(Opts, &[&str]) -> prometheus::Result<V>,
    name: &str,
    help: &str,
    labels: &[&str],
) -> V {
    register(r, make(Opts::new(name, help), labels).expect("valid metric"))
}

impl Metrics {
    /// Every metric, registered, at zero.
    #[allow(clippy::expect_used)]
    pub fn new() -> Metrics {
        let r = Registry::new();
        let refaults = vector(
            &r,
            prometheus::GaugeVec::new,
            "thrashguard_refaults_pages_per_second",
            "Workingset refaults (pages re-read soon after eviction) per second over the trailing second, as the policy saw them",
            &["kind"],
        );
        let phase = vector(
            &r,
            prometheus::IntGaugeVec::new,
            "thrashguard_policy_phase",
            "1 for the system scope's current policy phase, 0 for the others",
            &["phase"],
        );
        let decisions = vector(
            &r,
            prometheus::IntCounterVec::new,
            "thrashguard_decisions_total",
            "Rescues decided, by reason (an operator's lifeline rescue included)",
            &["reason"],
        );
        let actions = vector(
            &r,
            prometheus::IntCounterVec::new,
            "thrashguard_actions_total",
            "Victims signalled (killed or frozen), by action and reason",
            &["action", "reason"],
        );
        let rejected = vector(
            &r,
            prometheus::IntCounterVec::new,
            "thrashguard_lifeline_rejected_total",
            "Lifeline datagrams refused, by reason",
            &["reason"],
        );
        let reasons = Reason::ALL.map(Reason::as_str);
        let m = Metrics {
            full_stall: gauge(
                &r,
                "thrashguard_memory_stall_full_ratio",
                "Share of the trailing second in which every non-idle task stalled on memory (PSI full)",
            ),
            some_stall: gauge(
                &r,
                "thrashguard_memory_stall_some_ratio",
                "Share of the trailing second in which some task stalled on memory (PSI some)",
            ),
            available: int_gauge(&r, "thrashguard_memory_available_bytes", "MemAvailable of the system scope"),
            total: int_gauge(&r, "thrashguard_memory_total_bytes", "MemTotal of the system scope"),
            headroom: int_gauge(&r, "thrashguard_memory_headroom_bytes", "MemAvailable plus free swap"),
            headroom_trend: gauge(
                &r,
                "thrashguard_memory_headroom_trend_bytes_per_second",
                "Slope of headroom over the last 5 s (negative: shrinking); 0 until known",
            ),
            refaults: ["anon", "file"].map(|k| refaults.with_label_values(&[k])),
            majfaults: gauge(&r, "thrashguard_major_faults_per_second", "Major page faults per second over the trailing second"),
            phase: Phase::ALL.map(|p| phase.with_label_values(&[p.as_str()])),
            scopes_under_pressure: int_gauge(
                &r,
                "thrashguard_scopes_under_pressure",
                "Scopes (system, memory cgroups, NUMA nodes) not calm at the last tick",
            ),
            decisions: reasons.map(|reason| decisions.with_label_values(&[reason])),
            actions: [Action::Kill, Action::Freeze].map(|a| reasons.map(|reason| actions.with_label_values(&[a.as_str(), reason]))),
            last_action: gauge(&r, "thrashguard_last_action_timestamp_seconds", "Unix time of the last victim signalled; 0 if none"),
            iterations: counter(&r, "thrashguard_loop_iterations_total", "Passes of the guard loop"),
            bad_samples: counter(&r, "thrashguard_sample_errors_total", "Samples of the kernel's files that failed to read or parse"),
            scan_seconds: register(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "thrashguard_scan_duration_seconds",
                        "Time to scan /proc and rank processes (at a rescue, a lifeline status, or as pressure builds)",
                    )
                    .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]),
                )
                .expect("valid metric"),
            ),
            lifeline_accepted: counter(&r, "thrashguard_lifeline_accepted_total", "Lifeline requests authenticated and acted on"),
            lifeline_rejected: Reject::ALL.map(|reason| rejected.with_label_values(&[reason.as_str()])),
            lifeline_send_errors: counter(&r, "thrashguard_lifeline_send_errors_total", "Lifeline replies that could not be sent"),
            lifeline_seen: LifelineCounters::default(),
            registry: r,
        };
        let info =
            vector(&m.registry, prometheus::IntGaugeVec::new, "thrashguard_build_info", "Always 1; the version in a label", &["version"]);
        info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        m
    }

    /// The system scope's evidence and phase at this tick, and how many scopes are not calm.
    pub fn tick(&self, e: &Evidence, phase: Phase, not_calm: usize) {
        self.iterations.inc();
        // NaN (Prometheus' "no value") where not measured, never a quiet 0
        let measured = |v: Option<f64>| v.unwrap_or(f64::NAN);
        self.full_stall.set(measured(e.full));
        self.some_stall.set(measured(e.some));
        self.available.set(e.available.0.saturating_mul(1024) as i64);
        self.total.set(e.total.0.saturating_mul(1024) as i64);
        self.headroom.set(e.headroom.0.saturating_mul(1024) as i64);
        self.headroom_trend.set(e.headroom_trend_kib_s.unwrap_or(0.0) * 1024.0);
        self.refaults[0].set(measured(e.anon_refaults_per_s));
        self.refaults[1].set(measured(e.file_refaults_per_s));
        self.majfaults.set(measured(e.majfaults_per_s));
        for (g, p) in self.phase.iter().zip(Phase::ALL) {
            g.set(i64::from(p == phase));
        }
        self.scopes_under_pressure.set(not_calm as i64);
    }

    /// A loop pass whose sample failed.
    pub fn bad_sample(&self) {
        self.iterations.inc();
        self.bad_samples.inc();
    }

    /// A rescue decided.
    pub fn decision(&self, reason: Reason) {
        self.decisions[reason.index()].inc();
    }

    /// A victim signalled.
    pub fn action(&self, action: Action, reason: Reason) {
        self.actions[usize::from(action == Action::Freeze)][reason.index()].inc();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        self.last_action.set(now);
    }

    /// A scan took this long.
    pub fn scan(&self, took: Duration) {
        self.scan_seconds.observe(took.as_secs_f64());
    }

    /// Bring the lifeline counters up to the server's.
    pub fn lifeline(&mut self, c: &LifelineCounters) {
        let seen = &mut self.lifeline_seen;
        self.lifeline_accepted.inc_by(c.accepted.saturating_sub(seen.accepted));
        self.lifeline_send_errors.inc_by(c.send_errors.saturating_sub(seen.send_errors));
        for (i, m) in self.lifeline_rejected.iter().enumerate() {
            m.inc_by(c.rejected[i].saturating_sub(seen.rejected[i]));
        }
        *seen = *c;
    }

    /// The text exposition (what `/metrics` serves).
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8192);
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Bind `addr` and serve `metrics` from a thread of its own. Binding fails loudly (the
/// operator asked for it); everything after that is the thread's business.
pub fn serve(addr: SocketAddr, metrics: Metrics) -> Result<SocketAddr> {
    let listener = TcpListener::bind(addr).with_context(|| format!("metrics: cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new().name("metrics".into()).stack_size(THREAD_STACK).spawn(move || {
        let mut buf = vec![0u8; MAX_REQUEST];
        for stream in listener.incoming() {
            match stream {
                Ok(s) => answer(s, &metrics, &mut buf),
                // Out of descriptors and the like: back off instead of spinning.
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    })?;
    Ok(bound)
}

/// Read one request (up to [`MAX_REQUEST`] bytes, [`IO_TIMEOUT`]) and answer it.
fn answer(mut s: TcpStream, metrics: &Metrics, buf: &mut [u8]) {
    let _ = s.set_read_timeout(Some(IO_TIMEOUT));
    let _ = s.set_write_timeout(Some(IO_TIMEOUT));
    let mut len = 0;
    let (status, kind, body): (&str, &str, Vec<u8>) = loop {
        if len == buf.len() {
            break ("431 Request Header Fields Too Large", "text/plain", b"request too large\n".to_vec());
        }
        match s.read(&mut buf[len..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => len += n,
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..len]) {
            Ok(httparse::Status::Partial) => continue,
            Err(_) => break ("400 Bad Request", "text/plain", b"bad request\n".to_vec()),
            Ok(httparse::Status::Complete(_)) => {
                let path = req.path.unwrap_or("").split('?').next().unwrap_or("");
                break match (req.method, path) {
                    (Some("GET"), "/metrics") => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", metrics.render()),
                    (Some("GET"), "/healthz") => ("200 OK", "text/plain", b"ok\n".to_vec()),
                    (Some("GET"), _) => ("404 Not Found", "text/plain", b"try /metrics\n".to_vec()),
                    _ => ("405 Method Not Allowed", "text/plain", b"GET only\n".to_vec()),
                };
            }
        }
    };
    let head = format!("HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    let _ = s.write_all(head.as_bytes()).and_then(|()| s.write_all(&body));
}

#[cfg(test)]
mod tests {
    use super::*;
    use thrashguard_core::units::Kib;

    #[test]
    fn every_metric_is_there_from_the_start() {
        let m = Metrics::new();
        let text = String::from_utf8(m.render()).unwrap();
        for name in [
            "thrashguard_memory_stall_full_ratio",
            "thrashguard_decisions_total{reason=\"thrashing\"} 0",
            "thrashguard_actions_total{action=\"freeze\",reason=\"lifeline\"} 0",
            "thrashguard_lifeline_rejected_total{reason=\"replay\"} 0",
            "thrashguard_policy_phase{phase=\"calm\"} 0",
            "thrashguard_scan_duration_seconds_bucket",
            "thrashguard_build_info{version=",
        ] {
            assert!(text.contains(name), "{name} missing:\n{text}");
        }
    }

    #[test]
    fn updates_land_in_the_text() {
        let mut m = Metrics::new();
        let e =
            Evidence { full: Some(0.25), available: Kib(1024), headroom: Kib(2048), anon_refaults_per_s: Some(7.0), ..Evidence::default() };
        m.tick(&e, Phase::Pressure, 2);
        m.decision(Reason::Thrashing);
        m.action(Action::Kill, Reason::Thrashing);
        let mut c = LifelineCounters { accepted: 3, ..LifelineCounters::default() };
        c.rejected[Reject::Replay.index()] = 2;
        m.lifeline(&c);
        c.accepted = 4;
        m.lifeline(&c);
        let text = String::from_utf8(m.render()).unwrap();
        for line in [
            "thrashguard_memory_stall_full_ratio 0.25",
            "thrashguard_memory_available_bytes 1048576",
            "thrashguard_refaults_pages_per_second{kind=\"anon\"} 7",
            // not measured: Prometheus' NaN, never a quiet 0
            "thrashguard_refaults_pages_per_second{kind=\"file\"} NaN",
            "thrashguard_policy_phase{phase=\"pressure\"} 1",
            "thrashguard_scopes_under_pressure 2",
            "thrashguard_decisions_total{reason=\"thrashing\"} 1",
            "thrashguard_actions_total{action=\"kill\",reason=\"thrashing\"} 1",
            "thrashguard_lifeline_accepted_total 4",
            "thrashguard_lifeline_rejected_total{reason=\"replay\"} 2",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
        assert!(!text.contains("thrashguard_last_action_timestamp_seconds 0\n"));
    }
}
