//! The pressure trace format (shared/design/trace-format.md): JSON Lines of raw /proc text.
//!
//! Owns decoding a trace's header and lines, encoding lines for `record`, and [`Replayer`],
//! which runs the daemon's very policy over a trace's samples. Replay is deterministic: the
//! trace's `t` is the clock and a rescue is taken as released at once. It must never open
//! or decompress a file (the edge hands in lines) and never act on anything.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::policy::{Policy, PolicyConfig, Rescue};
use crate::snapshot::Snapshot;
use crate::units::Micros;

/// The format name in every header.
pub const FORMAT: &str = "thrashguard-trace";
/// The newest version this build reads and the one it writes.
pub const VERSION: u64 = 1;
/// /proc paths (relative to /proc) the policy needs in each sample.
pub const POLICY_FILES: [&str; 3] = ["pressure/memory", "meminfo", "vmstat"];

/// A trace that cannot be read, with the 1-based line.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {what}")]
pub struct TraceError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub what: String,
}

fn err(line: usize, what: impl Into<String>) -> TraceError {
    TraceError { line, what: what.into() }
}

/// Line 1 of a trace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// Format version.
    pub version: u64,
    /// Nominal sampling period.
    pub interval_ms: u64,
    /// /proc paths each sample carries.
    pub files: Vec<String>,
    /// Free-form; never changes replay results.
    #[serde(default)]
    pub meta: Map<String, Value>,
}

/// Decode and check line 1.
pub fn parse_header(text: &str) -> Result<Header, TraceError> {
    let value: Value = serde_json::from_str(text).map_err(|e| err(1, format!("header is not JSON: {e}")))?;
    match value.get("format").and_then(Value::as_str) {
        Some(FORMAT) => {}
        Some(other) => return Err(err(1, format!("format is {other:?}, not {FORMAT:?}"))),
        None => return Err(err(1, "not a thrashguard trace: no \"format\" in the header")),
    }
    let header: Header = serde_json::from_value(value).map_err(|e| err(1, format!("bad header: {e}")))?;
    if header.version > VERSION {
        return Err(err(1, format!("trace version {} is newer than this build reads ({VERSION})", header.version)));
    }
    Ok(header)
}

/// One later line.
#[derive(Clone, Debug, PartialEq)]
pub enum Line {
    /// File texts at `t`; a file that could not be read is `None`.
    Sample {
        /// Seconds since the trace started.
        t: f64,
        /// Path -> text.
        files: Map<String, Value>,
    },
    /// An annotation (replay ignores it when deciding).
    Event {
        /// Seconds since the trace started.
        t: f64,
        /// The whole object.
        body: Map<String, Value>,
    },
}

impl Line {
    /// The text of `file` in a sample (`None` when absent, null, or not a sample).
    pub fn file(&self, file: &str) -> Option<&str> {
        match self {
            Line::Sample { files, .. } => files.get(file).and_then(Value::as_str),
            Line::Event { .. } => None,
        }
    }
}

/// Decode line `no` (1-based) after the header.
pub fn parse_line(no: usize, text: &str) -> Result<Line, TraceError> {
    let Value::Object(mut obj) = serde_json::from_str(text).map_err(|e| err(no, format!("not JSON: {e}")))? else {
        return Err(err(no, "not a JSON object"));
    };
    let t = obj.get("t").and_then(Value::as_f64).filter(|t| t.is_finite() && *t >= 0.0).ok_or_else(|| err(no, "missing or bad \"t\""))?;
    if obj.contains_key("event") {
        return Ok(Line::Event { t, body: obj });
    }
    obj.remove("t");
    Ok(Line::Sample { t, files: obj })
}

/// Encode the header line (no trailing newline).
pub fn header_line(interval_ms: u64, files: &[&str], meta: Map<String, Value>) -> String {
    let h = Header { format: FORMAT.into(), version: VERSION, interval_ms, files: files.iter().map(|f| (*f).to_string()).collect(), meta };
    serde_json::to_string(&h).unwrap_or_default()
}

/// Encode a sample line (no trailing newline). `t` is rounded to the microsecond.
pub fn sample_line(t: Micros, files: &[(&str, Option<&str>)]) -> String {
    let mut obj = Map::new();
    obj.insert("t".into(), Value::from(round_secs(t)));
    for (name, text) in files {
        obj.insert((*name).into(), text.map_or(Value::Null, |s| Value::String(s.into())));
    }
    Value::Object(obj).to_string()
}

/// Encode an event line (no trailing newline).
pub fn event_line(t: Micros, event: &str, fields: Map<String, Value>) -> String {
    let mut obj = Map::new();
    obj.insert("t".into(), Value::from(round_secs(t)));
    obj.insert("event".into(), Value::from(event));
    obj.extend(fields);
    Value::Object(obj).to_string()
}

fn round_secs(t: Micros) -> f64 {
    (t.0 as f64 / 1000.0).round() / 1000.0
}

/// One decision taken during replay.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Decision {
    /// The `t` of the sample that caused it, in seconds.
    pub t: f64,
    /// `kill` or `freeze`.
    pub action: &'static str,
    /// The rescue with its reason and evidence.
    #[serde(skip)]
    pub rescue: Rescue,
    /// Human-readable reason.
    pub reason: String,
}

/// Runs the policy over a trace's lines, in order.
#[derive(Debug)]
pub struct Replayer {
    policy: Policy,
    action: &'static str,
    /// Samples fed to the policy.
    pub samples: u64,
    /// Samples skipped because a required file was missing or garbled.
    pub skipped: u64,
}

impl Replayer {
    /// A replayer with the daemon's policy configuration and the configured action name.
    pub fn new(cfg: PolicyConfig, action: &'static str) -> Replayer {
        Replayer { policy: Policy::new(cfg), action, samples: 0, skipped: 0 }
    }

    /// Feed one decoded line; returns the decision it caused, if any.
    pub fn feed(&mut self, line: &Line) -> Option<Decision> {
        let Line::Sample { t, .. } = line else { return None };
        let at = Micros::from_secs_f64(*t);
        let (Some(meminfo), Some(vmstat)) = (line.file("meminfo"), line.file("vmstat")) else {
            self.skipped += 1;
            return None;
        };
        let pressure = line.file("pressure/memory").map(str::as_bytes);
        let Ok(snap) = Snapshot::parse(at, pressure, meminfo.as_bytes(), vmstat.as_bytes()) else {
            self.skipped += 1;
            return None;
        };
        self.samples += 1;
        let step = self.policy.step(&snap.scope_sample());
        let rescue = step.rescue?;
        // Replay acts on nothing: the victim's memory counts as released at once.
        self.policy.rescue_finished(at);
        Some(Decision { t: *t, action: self.action, reason: rescue.to_string(), rescue })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_checks() {
        let h = parse_header(r#"{"format":"thrashguard-trace","version":1,"interval_ms":100,"files":["meminfo"],"meta":{"kernel":"6.1"}}"#)
            .expect("valid");
        assert_eq!(h.interval_ms, 100);
        assert!(
            parse_header(r#"{"format":"thrashguard-trace","version":2,"interval_ms":100,"files":[]}"#).unwrap_err().what.contains("newer")
        );
        assert!(parse_header(r#"{"format":"other","version":1}"#).is_err());
        assert!(parse_header("not json").is_err());
        assert!(parse_header(r#"{"version":1}"#).is_err());
    }

    #[test]
    fn lines_roundtrip() {
        let text = sample_line(Micros(12_304_000), &[("meminfo", Some("MemTotal: 1 kB\n")), ("vmstat", None)]);
        let line = parse_line(2, &text).expect("valid");
        assert_eq!(line.file("meminfo"), Some("MemTotal: 1 kB\n"));
        assert_eq!(line.file("vmstat"), None);
        let Line::Sample { t, .. } = line else { panic!("sample") };
        assert_eq!(t, 12.304);
        let ev = parse_line(3, &event_line(Micros(3_000_000), "mark", Map::new())).expect("valid");
        assert!(matches!(ev, Line::Event { .. }));
        assert!(parse_line(4, "{}").is_err());
        assert!(parse_line(4, r#"{"t":-1}"#).is_err());
        assert!(parse_line(4, "[1]").is_err());
        assert!(parse_line(4, "{\"t\":1, \"meminfo\": \"Mem").is_err());
    }

    #[test]
    fn replayer_skips_bad_samples() {
        let mut r = Replayer::new(PolicyConfig::default(), "kill");
        let missing = parse_line(2, r#"{"t":0.1,"meminfo":null,"vmstat":"pswpin 1\n"}"#).expect("valid");
        let garbled = parse_line(3, r#"{"t":0.2,"meminfo":"garbage","vmstat":"pswpin 1\n"}"#).expect("valid");
        assert_eq!(r.feed(&missing), None);
        assert_eq!(r.feed(&garbled), None);
        assert_eq!((r.samples, r.skipped), (0, 2));
    }
}
