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

/// Replay `path` with `cfg`, writing decisions to `out`.
pub fn run(path: &Path, cfg: &Config, json: bool, out: &mut dyn Write) -> Result<Summary> {
    let reader = open_trace(path)?;
    let mut lines = reader.lines();
    let header =
        lines.next().with_context(|| format!("{}: empty trace", path.display()))?.with_context(|| format!("{}: line 1", path.display()))?;
    let header = trace::parse_header(&header).with_context(|| path.display().to_string())?;
    if !header.files.iter().any(|f| f == "meminfo") {
        bail!("{}: line 1: the trace does not carry meminfo", path.display());
    }
    let mut replayer = Replayer::new(cfg.policy.clone(), cfg.guard.action.as_str());
    let mut decisions = 0u64;
    for (i, text) in lines.enumerate() {
        let no = i + 2;
        let text = text.with_context(|| format!("{}: line {no}", path.display()))?;
        if text.trim().is_empty() {
            continue;
        }
        let line = trace::parse_line(no, &text).with_context(|| path.display().to_string())?;
        if let Some(d) = replayer.feed(&line) {
            decisions += 1;
            if json {
                writeln!(out, "{}", serde_json::json!({"t": d.t, "action": d.action, "reason": d.reason}))?;
            } else {
                writeln!(out, "t={:.3} {} {}", d.t, d.action, d.reason)?;
            }
        }
    }
    let summary = Summary { decisions, samples: replayer.samples, skipped: replayer.skipped };
    if json {
        writeln!(out, "{}", serde_json::json!({"summary": true, "decisions": decisions, "samples": summary.samples}))?;
    } else {
        writeln!(out, "{} decisions over {} samples ({} skipped)", decisions, summary.samples, summary.skipped)?;
    }
    Ok(summary)
}
