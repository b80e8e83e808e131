//! `thrashguard record`: write a pressure trace (shared/design/trace-format.md).
//!
//! Owns sampling the policy's files at a fixed interval and writing them raw, optionally
//! gzipped when the output ends in `.gz`. It stops cleanly on SIGINT/SIGTERM so a gzip
//! stream is always finished. It must never decide or act.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{Map, Value};
use thrashguard_core::trace;

use crate::sample::Sampler;

/// `record` arguments.
#[derive(Clone, Debug)]
pub struct RecordArgs {
    /// Output file; `.gz` compresses.
    pub out: PathBuf,
    /// Stop after this long (until interrupted when absent).
    pub duration: Option<Duration>,
    /// Sampling interval.
    pub interval: Duration,
    /// Where /proc is.
    pub proc_root: PathBuf,
    /// Free text in the header's meta.
    pub note: Option<String>,
}

fn kernel_release(proc_root: &Path) -> Option<String> {
    std::fs::read_to_string(proc_root.join("sys/kernel/osrelease")).ok().map(|s| s.trim().to_string())
}

/// Run `record`; returns the number of samples written.
pub fn run(args: &RecordArgs) -> Result<u64> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    let start = Instant::now();
    let mut sampler = Sampler::open(&args.proc_root, start)?;
    let file = File::create(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut out: Box<dyn Write> = if args.out.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::write::GzEncoder::new(BufWriter::new(file), flate2::Compression::default()))
    } else {
        Box::new(BufWriter::new(file))
    };
    let mut meta = Map::new();
    if let Some(k) = kernel_release(&args.proc_root) {
        meta.insert("kernel".into(), Value::from(k));
    }
    if let Some(n) = &args.note {
        meta.insert("note".into(), Value::from(n.as_str()));
    }
    let interval_ms = args.interval.as_millis() as u64;
    writeln!(out, "{}", trace::header_line(interval_ms, &trace::POLICY_FILES, meta))?;
    let mut n = 0u64;
    let mut next = start;
    while !stop.load(Ordering::Relaxed) && args.duration.is_none_or(|d| start.elapsed() < d) {
        let at = sampler.now();
        // A failed parse still records the raw text: the trace is the evidence.
        let _ = sampler.sample();
        let raw = sampler.raw();
        let files: Vec<(&str, Option<&str>)> =
            raw.iter().map(|(name, bytes)| (*name, bytes.and_then(|b| std::str::from_utf8(b).ok()))).collect();
        writeln!(out, "{}", trace::sample_line(at, &files))?;
        n += 1;
        next += args.interval;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now; // late under pressure: keep the real timestamps, do not burst
        }
    }
    out.flush()?;
    drop(out); // finishes the gzip stream
    Ok(n)
}
