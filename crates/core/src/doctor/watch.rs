//! `doctor --watch`: what changed between two runs of the rules.
//!
//! Owns the comparison of two reports (a finding appears or clears, keyed by id, severity and
//! title, so a finding whose severity or title changed clears and appears again) and the
//! rendering of one change as a text line or a JSON line. Time arrives as a number; must never
//! read a clock, a file or sleep.

use super::{Report, Severity};

/// What identifies a finding across runs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    /// Rule id.
    pub id: &'static str,
    /// Severity.
    pub severity: Severity,
    /// Title.
    pub title: String,
}

/// The keys of a report's findings.
pub fn keys(r: &Report) -> Vec<Key> {
    r.findings().into_iter().map(|f| Key { id: f.id, severity: f.severity, title: f.title.clone() }).collect()
}

/// One change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A finding that was not there before.
    Appeared(Key),
    /// A finding that is gone.
    Cleared(Key),
}

/// Changes from `before` to `now`: cleared ones first, then new ones, each in report order.
pub fn diff(before: &[Key], now: &[Key]) -> Vec<Change> {
    let mut out: Vec<Change> = before.iter().filter(|k| !now.contains(k)).cloned().map(Change::Cleared).collect();
    out.extend(now.iter().filter(|k| !before.contains(k)).cloned().map(Change::Appeared));
    out
}

/// `2026-11-23T14:05:09Z` for seconds since the Unix epoch (UTC).
pub fn rfc3339(unix_secs: u64) -> String {
    let (y, m, d, h, mi, s, _) = crate::units::utc_fields(i64::try_from(unix_secs.saturating_mul(1000)).unwrap_or(i64::MAX));
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `2026-11-23T14:05:09Z + WARNING [oom-kills] title` (`-` when it cleared).
pub fn render_text(c: &Change, unix_secs: u64) -> String {
    let (sign, k) = match c {
        Change::Appeared(k) => ('+', k),
        Change::Cleared(k) => ('-', k),
    };
    format!("{} {sign} {} [{}] {}", rfc3339(unix_secs), k.severity.as_str().to_uppercase(), k.id, k.title)
}

/// One JSON line: `{"schema":1,"type":"appeared"|"cleared","time":..,"time_unix_ms":..,"id":..,"severity":..,"title":..}`.
pub fn to_json(c: &Change, unix_ms: u64) -> serde_json::Value {
    let (kind, k) = match c {
        Change::Appeared(k) => ("appeared", k),
        Change::Cleared(k) => ("cleared", k),
    };
    serde_json::json!({
        "schema": 1,
        "type": kind,
        "time": rfc3339(unix_ms / 1000),
        "time_unix_ms": unix_ms,
        "id": k.id,
        "severity": k.severity.as_str(),
        "title": k.title,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(id: &'static str, s: Severity, t: &str) -> Key {
        Key { id, severity: s, title: t.into() }
    }

    #[test]
    fn appear_clear_and_change() {
        let a = vec![k("oom-kills", Severity::Info, "old"), k("sysrq", Severity::Info, "mask")];
        let b = vec![k("oom-kills", Severity::Warning, "new"), k("sysrq", Severity::Info, "mask")];
        let d = diff(&a, &b);
        assert_eq!(d, vec![Change::Cleared(a[0].clone()), Change::Appeared(b[0].clone())]);
        assert!(diff(&b, &b).is_empty());
        assert_eq!(diff(&[], &b).len(), 2);
    }

    #[test]
    fn time_and_lines() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_442_709), "2026-11-23T14:05:09Z");
        let c = Change::Appeared(k("oom-kills", Severity::Warning, "t"));
        assert_eq!(render_text(&c, 0), "1970-01-01T00:00:00Z + WARNING [oom-kills] t");
        assert_eq!(render_text(&Change::Cleared(k("x", Severity::Info, "y")), 0), "1970-01-01T00:00:00Z - INFO [x] y");
        let j = to_json(&c, 1_500);
        assert_eq!(j["type"], "appeared");
        assert_eq!(j["time_unix_ms"], 1500);
        assert_eq!(j["severity"], "warning");
    }
}
