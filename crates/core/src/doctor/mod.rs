//! `doctor`: turn facts read from the kernel into findings, each with its evidence, a plain
//! explanation and the exact fix.
//!
//! Owns the finding model ([`Finding`], [`Severity`], [`Outcome`]), the rules (one small
//! pure function each, grouped by subject in the submodules), the report with its exit
//! status, and both renderings: text for people and the JSON schema of docs/doctor.md.
//! Facts arrive already read and parsed ([`Fact`] says what could not be read); a rule
//! that lacks one says "not checked" and names it. It must never read a file itself.

pub mod kernlog;
pub mod knobs;
pub mod lifeline;
pub mod memfacts;
pub mod memlock;
pub mod net;
pub mod nodes;
pub mod numa;
pub mod overcommit;
pub mod reclaim;
pub mod reserve;
pub mod system;
pub mod thp;
pub mod thrash;
pub mod watch;
pub mod window;

use serde::Serialize;

/// A fact as read at the edge: the value, or what could not be read (and why).
pub type Fact<T> = Result<T, String>;

/// How much a finding matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing; nothing to do unless the workload says otherwise.
    Info,
    /// Harm is likely, or the counters show it.
    Warning,
    /// Harm is happening, or the guard cannot do its job.
    Critical,
}

impl Severity {
    /// Lower-case name, as in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// One counter or setting a rule used, with its value as read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Evidence {
    /// What it is (`vm.min_free_kbytes`, `TcpExt PFMemallocDrop`).
    pub name: String,
    /// Its value, with unit.
    pub value: String,
}

/// `name = value` evidence.
pub fn ev(name: impl Into<String>, value: impl ToString) -> Evidence {
    Evidence { name: name.into(), value: value.to_string() }
}

/// What a rule found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable id (`lifeline-daemon`), never reused for another meaning.
    pub id: &'static str,
    /// How much it matters.
    pub severity: Severity,
    /// One line.
    pub title: String,
    /// The counters and settings it rests on.
    pub evidence: Vec<Evidence>,
    /// Why it matters, in two to four sentences.
    pub explanation: String,
    /// The exact command or setting, and how to make it persistent.
    pub fix: String,
    /// Where the kernel (or our) documentation explains it.
    pub docs: &'static str,
}

/// One of several things a rule can find at once (`vm-extremes`, `swap-setup`): the rule
/// reports the most severe, names the others in its evidence and gives every fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    /// How much it matters.
    pub severity: Severity,
    /// One line.
    pub title: String,
    /// Why it matters.
    pub explanation: &'static str,
    /// The fix.
    pub fix: String,
    /// Where it is documented.
    pub docs: &'static str,
}

/// The finding `id` for the most severe of `issues` (the others as `also` evidence, every
/// fix in order), or clear with `evidence` when there is none.
pub fn worst_of(id: &'static str, mut issues: Vec<Issue>, mut evidence: Vec<Evidence>) -> Outcome {
    issues.sort_by_key(|i| std::cmp::Reverse(i.severity));
    let Some(first) = issues.first() else { return Outcome::Clear(evidence) };
    for other in issues.iter().skip(1) {
        evidence.push(ev("also", &other.title));
    }
    Outcome::Found(Finding {
        id,
        severity: first.severity,
        title: first.title.clone(),
        evidence,
        explanation: first.explanation.into(),
        fix: issues.iter().map(|i| i.fix.as_str()).collect::<Vec<_>>().join("\n"),
        docs: first.docs,
    })
}

/// What one rule concluded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Something to report.
    Found(Finding),
    /// Checked, nothing wrong; the evidence says what was looked at.
    Clear(Vec<Evidence>),
    /// A fact it needs could not be read.
    NotChecked(String),
}

/// One rule's id and outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleResult {
    /// The rule's id.
    pub id: &'static str,
    /// What it concluded.
    pub outcome: Outcome,
}

/// Every rule's outcome, in the order run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The results.
    pub results: Vec<RuleResult>,
}

/// Exit status of a doctor run: nothing above info.
pub const EXIT_OK: i32 = 0;
/// Exit status: at least one warning, nothing critical.
pub const EXIT_WARNING: i32 = 1;
/// Exit status: at least one critical finding.
pub const EXIT_CRITICAL: i32 = 2;
/// Exit status: doctor itself failed.
pub const EXIT_FAILED: i32 = 3;

impl Report {
    /// Add a rule's outcome.
    pub fn push(&mut self, id: &'static str, outcome: Outcome) {
        self.results.push(RuleResult { id, outcome });
    }

    /// Findings, most severe first (stable within a severity).
    pub fn findings(&self) -> Vec<&Finding> {
        let mut f: Vec<&Finding> =
            self.results.iter().filter_map(|r| if let Outcome::Found(f) = &r.outcome { Some(f) } else { None }).collect();
        f.sort_by_key(|f| std::cmp::Reverse(f.severity));
        f
    }

    /// The exit status: 0 nothing above info, 1 warnings, 2 critical.
    pub fn exit_code(&self) -> i32 {
        match self.findings().first().map(|f| f.severity) {
            Some(Severity::Critical) => EXIT_CRITICAL,
            Some(Severity::Warning) => EXIT_WARNING,
            _ => EXIT_OK,
        }
    }

    fn count(&self, s: Severity) -> usize {
        self.findings().iter().filter(|f| f.severity == s).count()
    }

    /// Human text: a summary line, findings most severe first with their fix, then what was
    /// clear and what could not be checked. `color` adds ANSI colour to severities.
    pub fn render_text(&self, title: &str, color: bool) -> String {
        use std::fmt::Write;
        let paint = |s: Severity, text: &str| {
            if !color {
                return text.to_string();
            }
            let code = match s {
                Severity::Critical => "1;31",
                Severity::Warning => "1;33",
                Severity::Info => "1;36",
            };
            format!("\x1b[{code}m{text}\x1b[0m")
        };
        let mut out = String::new();
        let (c, w, i) = (self.count(Severity::Critical), self.count(Severity::Warning), self.count(Severity::Info));
        let _ = writeln!(out, "{title}: {c} critical, {w} warning, {i} info");
        for f in self.findings() {
            let _ = writeln!(out, "\n{} [{}] {}", paint(f.severity, &f.severity.as_str().to_uppercase()), f.id, f.title);
            for e in &f.evidence {
                let _ = writeln!(out, "    {}: {}", e.name, e.value);
            }
            let _ = writeln!(out, "  why: {}", f.explanation);
            let _ = writeln!(out, "  fix: {}", f.fix.replace('\n', "\n       "));
            if !f.docs.is_empty() {
                let _ = writeln!(out, "  see: {}", f.docs);
            }
        }
        let clear: Vec<&str> = self.results.iter().filter(|r| matches!(r.outcome, Outcome::Clear(_))).map(|r| r.id).collect();
        if !clear.is_empty() {
            let _ = writeln!(out, "\nok: {}", clear.join(", "));
        }
        for r in &self.results {
            if let Outcome::NotChecked(why) = &r.outcome {
                let _ = writeln!(out, "not checked [{}]: {why}", r.id);
            }
        }
        out
    }

    /// The JSON document of docs/doctor.md (schema 1).
    pub fn to_json(&self, tool: &str) -> serde_json::Value {
        let clear: Vec<serde_json::Value> = self
            .results
            .iter()
            .filter_map(|r| if let Outcome::Clear(e) = &r.outcome { Some(serde_json::json!({"id": r.id, "evidence": e})) } else { None })
            .collect();
        let not_checked: Vec<serde_json::Value> = self
            .results
            .iter()
            .filter_map(
                |r| if let Outcome::NotChecked(m) = &r.outcome { Some(serde_json::json!({"id": r.id, "missing": m})) } else { None },
            )
            .collect();
        serde_json::json!({
            "schema": 1,
            "tool": tool,
            "summary": {
                "critical": self.count(Severity::Critical),
                "warning": self.count(Severity::Warning),
                "info": self.count(Severity::Info),
                "exit_code": self.exit_code(),
            },
            "findings": self.findings(),
            "clear": clear,
            "not_checked": not_checked,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(id: &'static str, severity: Severity) -> Outcome {
        Outcome::Found(Finding {
            id,
            severity,
            title: format!("{id} title"),
            evidence: vec![ev("x", 1)],
            explanation: "because".into(),
            fix: "do it".into(),
            docs: "",
        })
    }

    #[test]
    fn exit_code_follows_the_worst_finding() {
        let mut r = Report::default();
        r.push("a", Outcome::Clear(vec![]));
        r.push("b", Outcome::NotChecked("no file".into()));
        assert_eq!(r.exit_code(), EXIT_OK);
        r.push("c", finding("c", Severity::Info));
        assert_eq!(r.exit_code(), EXIT_OK);
        r.push("d", finding("d", Severity::Warning));
        assert_eq!(r.exit_code(), EXIT_WARNING);
        r.push("e", finding("e", Severity::Critical));
        assert_eq!(r.exit_code(), EXIT_CRITICAL);
        assert_eq!(r.findings().iter().map(|f| f.id).collect::<Vec<_>>(), ["e", "d", "c"]);
    }

    #[test]
    fn text_and_json_carry_everything() {
        let mut r = Report::default();
        r.push("a", Outcome::Clear(vec![ev("y", 2)]));
        r.push("b", Outcome::NotChecked("net/netstat: permission denied".into()));
        r.push("d", finding("d", Severity::Warning));
        let text = r.render_text("doctor", false);
        assert!(text.starts_with("doctor: 0 critical, 1 warning, 0 info"), "{text}");
        assert!(text.contains("WARNING [d] d title") && text.contains("fix: do it") && text.contains("ok: a"));
        assert!(text.contains("not checked [b]: net/netstat: permission denied"));
        assert!(!text.contains('\x1b'));
        assert!(r.render_text("doctor", true).contains("\x1b[1;33mWARNING"));
        let j = r.to_json("doctor");
        assert_eq!(j["schema"], 1);
        assert_eq!(j["summary"]["exit_code"], 1);
        assert_eq!(j["findings"][0]["severity"], "warning");
        assert_eq!(j["findings"][0]["evidence"][0]["value"], "1");
        assert_eq!(j["clear"][0]["id"], "a");
        assert_eq!(j["not_checked"][0]["missing"], "net/netstat: permission denied");
    }
}
