//! The policy on every recorded trace under tests/traces: thrash traces are rescued
//! inside their label's window, benign traces never.
// The test harness loads fixtures from disk; the crate under test never does.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use thrashguard_core::policy::PolicyConfig;
use thrashguard_core::trace::{self, Decision, Line, Replayer};

fn traces_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/traces")
}

fn lines(path: &Path) -> Vec<String> {
    let file = std::fs::File::open(path).expect("trace opens");
    let reader: Box<dyn Read> =
        if path.extension().is_some_and(|e| e == "gz") { Box::new(flate2::read::GzDecoder::new(file)) } else { Box::new(file) };
    BufReader::new(reader).lines().map(|l| l.expect("trace line")).collect()
}

/// Replay; `strip` names files to blank out of every sample (to simulate a kernel without them).
fn replay(path: &Path, strip: &[&str]) -> (Vec<Decision>, u64) {
    let lines = lines(path);
    trace::parse_header(&lines[0]).expect("header");
    let mut r = Replayer::new(PolicyConfig::default(), "kill");
    let mut out = Vec::new();
    for (i, text) in lines.iter().enumerate().skip(1) {
        let mut line = trace::parse_line(i + 1, text).expect("line");
        if let Line::Sample { files, .. } = &mut line {
            for f in strip {
                files.insert((*f).to_string(), serde_json::Value::Null);
            }
        }
        out.extend(r.feed(&line));
    }
    (out, r.samples)
}

fn all_traces() -> Vec<(PathBuf, serde_json::Value)> {
    let mut found = Vec::new();
    let mut dirs = vec![traces_dir()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("traces dir") {
            let path = entry.expect("entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
            if path.is_dir() {
                dirs.push(path);
            } else if let Some(stem) = name.strip_suffix(".trace.jsonl.gz").or_else(|| name.strip_suffix(".trace.jsonl")) {
                let label = std::fs::read_to_string(dir.join(format!("{stem}.label.json"))).expect("every trace has a label");
                found.push((path, serde_json::from_str(&label).expect("label is JSON")));
            }
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(found.len() >= 5, "expected the shared traces, found {}", found.len());
    found
}

#[test]
fn every_trace_meets_its_label() {
    let mut report = String::new();
    let mut failures = Vec::new();
    for (path, label) in all_traces() {
        let (decisions, samples) = replay(&path, &[]);
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let first = decisions.first().map(|d| d.t);
        match label["expect"].as_str() {
            Some("rescue") => {
                let (lo, hi, onset) = (
                    label["not_before"].as_f64().expect("not_before"),
                    label["deadline"].as_f64().expect("deadline"),
                    label["onset"].as_f64().expect("onset"),
                );
                report += &format!(
                    "{name}: {samples} samples, first decision {first:?} (onset {onset}, +{:.2} s)\n",
                    first.unwrap_or(f64::NAN) - onset
                );
                if !first.is_some_and(|t| t >= lo && t <= hi) {
                    failures.push(format!("{name}: first decision {first:?}, wanted within [{lo}, {hi}]"));
                }
            }
            Some("none") => {
                report += &format!("{name}: {samples} samples, decisions {}\n", decisions.len());
                if let Some(d) = decisions.first() {
                    failures.push(format!("{name}: benign, yet decided at {}: {}", d.t, d.reason));
                }
            }
            other => panic!("{name}: unknown expect {other:?}"),
        }
    }
    println!("{report}");
    assert!(failures.is_empty(), "{failures:#?}\n{report}");
}

/// Times of the kernel OOM killer's kills recorded in a trace's event lines.
fn kernel_oom_kills(path: &Path) -> Vec<f64> {
    lines(path)
        .iter()
        .skip(1)
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "kill" && v["by"] == "kernel-oom")
        .filter_map(|v| v["t"].as_f64())
        .collect()
}

/// Without PSI the policy cannot see a stall, so its fallback acts where memory and swap
/// are both gone (`low_memory`), as earlyoom does. On a benign trace that may only happen
/// where the kernel's own OOM killer acted within the next second (hog-noswap: the
/// fallback decides 11 ms before the kernel kills the same hog); anywhere else it is a
/// wrong kill.
#[test]
fn without_psi_benign_traces_stay_benign() {
    for (path, label) in all_traces() {
        if label["expect"] == "none" {
            let (decisions, samples) = replay(&path, &["pressure/memory"]);
            assert!(samples > 0);
            let ooms = kernel_oom_kills(&path);
            let wrong: Vec<_> = decisions
                .iter()
                .filter(|d| !(d.reason.starts_with("low_memory") && ooms.iter().any(|&k| (0.0..=1.0).contains(&(k - d.t)))))
                .collect();
            assert!(wrong.is_empty(), "{}: {:?}", path.display(), wrong.first().map(|d| (d.t, &d.reason)));
        }
    }
}

#[test]
fn replay_is_deterministic() {
    let (path, _) = all_traces().into_iter().find(|(p, _)| p.to_string_lossy().contains("hog")).expect("a hog trace");
    let a: Vec<_> = replay(&path, &[]).0.into_iter().map(|d| (d.t, d.reason)).collect();
    let b: Vec<_> = replay(&path, &[]).0.into_iter().map(|d| (d.t, d.reason)).collect();
    assert_eq!(a, b);
    assert!(!a.is_empty());
}
