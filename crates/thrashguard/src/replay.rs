//! `thrashguard replay`: run the daemon's policy over a recorded trace.
//!
//! Owns opening the trace (plain or gzipped) and printing decisions as text or JSON
//! lines. The deciding is `thrashguard_core::trace::Replayer`, the very code the daemon
//! runs. It touches nothing on the machine.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use thrashguard_core::config::Config;
use thrashguard_core::trace::{self, Replayer};

/// Open a trace, transparently gunzipping (by magic bytes, not by name).
pub fn open_trace(path: &Path) -> Result<Box<dyn BufRead>> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut magic = [0u8; 2];
    let n = file.read(&mut magic)?;
    let file = File::open(path)?;
    Ok(if n == 2 && magic == [0x1f, 0x8b] {
        Box::new(BufReader::new(flate2::read::GzDecoder::new(file)))
    } else {
        Box::new(BufReader::new(file))
    })
}

/// Summary of a replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Decisions printed.
    pub decisions: u64,
    /// Samples fed to the policy.
    pub samples: u64,
    /// Samples skipped (missing or garbled files).
    pub skipped: u64,
}

#[derive(serde::Serialize)]
struct JsonDecision<'a> {
    t: f64,
    action: &'a str,
    reason: &'a str,
}

#[derive(serde::Serialize)]
struct JsonSummary {
    summary: bool,
    decisions: u64,
    samples: u64,
}

/// Replay `path` with `cfg`, writing decisions to `out`. A trace cut short (a recorder
/// killed mid-line, a gzip stream never finished) replays up to the cut with a warning;
/// a damaged line elsewhere is an error naming the file and line.
pub fn run(path: &Path, cfg: &Config, json: bool, out: &mut dyn Write) -> Result<Summary> {
    let reader = open_trace(path)?;
    let mut lines = reader.lines().peekable();
    let header = match lines.next() {
        Some(Ok(h)) => h,
        Some(Err(e)) => bail!("{}: line 1: {e}", path.display()),
        None => bail!("{}: empty trace", path.display()),
    };
    let header = trace::parse_header(&header).with_context(|| path.display().to_string())?;
    if !header.files.iter().any(|f| f == "meminfo") {
        bail!("{}: line 1: the trace does not carry meminfo", path.display());
    }
    let mut replayer = Replayer::new(cfg.policy.clone(), cfg.guard.action.as_str());
    let mut decisions = 0u64;
    let mut no = 1;
    while let Some(text) = lines.next() {
        no += 1;
        let text = match text {
            Ok(t) => t,
            Err(e) => {
                log::warn!("{}: trace ends early at line {no} ({e}); replayed what came before", path.display());
                break;
            }
        };
        if text.trim().is_empty() {
            continue;
        }
        let line = match trace::parse_line(no, &text) {
            Ok(l) => l,
            Err(e) if lines.peek().is_none() => {
                log::warn!("{}: last line {no} is cut short ({}); ignored", path.display(), e.what);
                break;
            }
            Err(e) => return Err(anyhow::Error::new(e).context(path.display().to_string())),
        };
        if let Some(d) = replayer.feed(&line) {
            decisions += 1;
            if json {
                writeln!(out, "{}", serde_json::to_string(&JsonDecision { t: d.t, action: d.action, reason: &d.reason })?)?;
            } else {
                writeln!(out, "t={:.3} {} {}", d.t, d.action, d.reason)?;
            }
        }
    }
    let summary = Summary { decisions, samples: replayer.samples, skipped: replayer.skipped };
    if json {
        writeln!(out, "{}", serde_json::to_string(&JsonSummary { summary: true, decisions, samples: summary.samples })?)?;
    } else {
        writeln!(out, "{} decisions over {} samples ({} skipped)", decisions, summary.samples, summary.skipped)?;
    }
    Ok(summary)
}
