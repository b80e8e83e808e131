//! The binary driven from the outside: record a real trace and replay it, replay's JSON
//! contract, and every bad input (missing, garbled, truncated, foreign, newer) with its
//! message and exit code.
// Test helpers may panic: a panic is a failing test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_thrashguard")).args(args).env_remove("THRASHGUARD_CONFIG").output().expect("run thrashguard")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tg-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn shared(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/traces/shared").join(name).display().to_string()
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn replay_json_contract() {
    let o = tg(&["replay", "--json", &shared("hog-disk-swap.trace.jsonl.gz")]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    let (last, decisions) = lines.split_last().expect("lines");
    assert_eq!(last["summary"], true);
    assert_eq!(last["decisions"].as_u64(), Some(decisions.len() as u64));
    assert!(last["samples"].as_u64().unwrap() > 1000);
    assert!(!decisions.is_empty());
    for d in decisions {
        assert!(d["t"].is_f64());
        assert_eq!(d["action"], "kill");
        assert!(d["reason"].as_str().is_some_and(|r| !r.is_empty()));
    }
    // key order as documented: t, action, reason
    assert!(out.starts_with("{\"t\":"), "{out}");
}

#[test]
fn replay_of_plain_and_gzipped_agree_and_freeze_is_configurable() {
    let gz = shared("many-medium-disk-swap.trace.jsonl.gz");
    let plain = tmp("plain.trace.jsonl");
    let mut d = flate2::read::GzDecoder::new(std::fs::File::open(&gz).unwrap());
    let mut f = std::fs::File::create(&plain).unwrap();
    std::io::copy(&mut d, &mut f).unwrap();
    let a = tg(&["replay", "--json", &gz]);
    let b = tg(&["replay", "--json", plain.to_str().unwrap()]);
    assert_eq!(a.stdout, b.stdout);
    let cfg = tmp("freeze.toml");
    std::fs::write(&cfg, "[guard]\naction = \"freeze\"\n").unwrap();
    let c = tg(&["--config", cfg.to_str().unwrap(), "replay", "--json", &gz]);
    assert!(String::from_utf8_lossy(&c.stdout).contains("\"action\":\"freeze\""));
}

#[test]
fn bad_traces_give_clear_errors() {
    let missing = tg(&["replay", "/nonexistent/x.trace.jsonl"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing).1.contains("/nonexistent/x.trace.jsonl"));

    let foreign = tmp("foreign.trace.jsonl");
    std::fs::write(&foreign, "{\"format\":\"other\",\"version\":1}\n").unwrap();
    let o = tg(&["replay", foreign.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("line 1"), "{}", text(&o).1);

    let newer = tmp("newer.trace.jsonl");
    std::fs::write(&newer, "{\"format\":\"thrashguard-trace\",\"version\":9,\"interval_ms\":100,\"files\":[\"meminfo\"]}\n").unwrap();
    let o = tg(&["replay", newer.to_str().unwrap()]);
    assert!(text(&o).1.contains("newer"), "{}", text(&o).1);

    let garbled = tmp("garbled.trace.jsonl");
    let header =
        "{\"format\":\"thrashguard-trace\",\"version\":1,\"interval_ms\":100,\"files\":[\"pressure/memory\",\"meminfo\",\"vmstat\"]}";
    std::fs::write(&garbled, format!("{header}\n{{\"t\":0.1,\"meminfo\":null}}\nnot json\n{{\"t\":0.3}}\n")).unwrap();
    let o = tg(&["replay", garbled.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("line 3"), "{}", text(&o).1);

    let empty = tmp("empty.trace.jsonl");
    std::fs::write(&empty, "").unwrap();
    assert_eq!(tg(&["replay", empty.to_str().unwrap()]).status.code(), Some(1));
}

#[test]
fn a_trace_cut_short_replays_up_to_the_cut() {
    // a gzip stream never finished and a half-written last line
    let bytes = std::fs::read(shared("hog-disk-swap.trace.jsonl.gz")).unwrap();
    let cut = tmp("cut.trace.jsonl.gz");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let o = tg(&["replay", "--json", cut.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("ends early"), "{err}");
    assert!(out.lines().last().unwrap().contains("\"summary\":true"));

    let mut plain = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut plain).unwrap();
    let half = &plain[..plain.len() / 2];
    let cut_plain = tmp("cut.trace.jsonl");
    std::fs::write(&cut_plain, half).unwrap();
    let o = tg(&["replay", cut_plain.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o).1);
    assert!(text(&o).1.contains("cut short"), "{}", text(&o).1);
}

#[test]
fn record_then_replay_a_real_trace() {
    let out = tmp("rec.trace.jsonl.gz");
    let o = tg(&["record", "--out", out.to_str().unwrap(), "--duration", "1.2", "--interval-ms", "100", "--note", "cli test"]);
    assert!(o.status.success(), "{}", text(&o).1);
    let o = tg(&["replay", "--json", out.to_str().unwrap()]);
    let (stdout, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["decisions"], 0, "a calm host: {stdout}");
    assert!((8..=14).contains(&summary["samples"].as_u64().unwrap()), "{summary}");
    let mut header = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(flate2::read::GzDecoder::new(std::fs::File::open(&out).unwrap())),
        &mut header,
    )
    .unwrap();
    let h: serde_json::Value = serde_json::from_str(&header).unwrap();
    assert_eq!(h["format"], "thrashguard-trace");
    assert_eq!(h["meta"]["note"], "cli test");
}

#[test]
fn record_reads_a_captured_proc_tree() {
    let root = tmp("proc-root");
    std::fs::create_dir_all(root.join("pressure")).unwrap();
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/fixtures/proc/6.1.0-50-amd64");
    for f in ["meminfo", "vmstat", "pressure/memory"] {
        std::fs::copy(fx.join(f), root.join(f)).unwrap();
    }
    let out = tmp("captured.trace.jsonl");
    let o =
        tg(&["--proc-root", root.to_str().unwrap(), "record", "--out", out.to_str().unwrap(), "--duration", "0.3", "--interval-ms", "100"]);
    assert!(o.status.success(), "{}", text(&o).1);
    let body = std::fs::read_to_string(&out).unwrap();
    assert!(body.contains("MemAvailable:          0 kB"), "recorded the captured tree, not /proc");
}

#[test]
fn config_errors_exit_78_and_name_the_key() {
    let cfg = tmp("bad.toml");
    std::fs::write(&cfg, "[policy]\nsustain_ms = 5\n").unwrap();
    let o = tg(&["--config", cfg.to_str().unwrap(), "check-config"]);
    assert_eq!(o.status.code(), Some(78));
    assert!(text(&o).1.contains("policy.sustain_ms"), "{}", text(&o).1);
    let o = tg(&["--config", "/nonexistent.toml", "check-config"]);
    assert_eq!(o.status.code(), Some(78));
    let good = tmp("good.toml");
    let defaults = tg(&["default-config"]);
    std::fs::File::create(&good).unwrap().write_all(&defaults.stdout).unwrap();
    assert!(tg(&["--config", good.to_str().unwrap(), "check-config"]).status.success());
    assert_eq!(tg(&["no-such-command"]).status.code(), Some(2));
}

#[test]
fn daemon_dry_run_starts_and_stops_cleanly() {
    let o = tg(&["daemon", "--dry-run", "--no-self-protect", "--duration", "0.5"]);
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("guarding (dry run"), "{err}");
    assert!(err.contains("stopping after"), "{err}");
}

#[test]
fn a_captured_tree_is_read_never_written() {
    // A trigger written into a captured pressure file would overwrite its first line.
    let root = tmp("captured-proc");
    let sys = tmp("captured-sys");
    std::fs::create_dir_all(root.join("pressure")).unwrap();
    std::fs::create_dir_all(root.join("self")).unwrap();
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/fixtures/proc/6.1.0-50-amd64");
    for f in ["meminfo", "vmstat", "pressure/memory"] {
        std::fs::copy(fx.join(f), root.join(f)).unwrap();
    }
    // a v2 cgroup with a limit: its memory.pressure must not take a trigger either
    std::fs::write(root.join("self/mountinfo"), "30 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n").unwrap();
    let cg = sys.join("fs/cgroup/app");
    std::fs::create_dir_all(&cg).unwrap();
    for (f, body) in [
        ("memory.max", "536870912\n"),
        ("memory.current", "1048576\n"),
        ("memory.stat", "pgmajfault 5\ninactive_file 0\nactive_file 0\n"),
        ("memory.pressure", "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"),
        ("cgroup.procs", ""),
    ] {
        std::fs::write(cg.join(f), body).unwrap();
    }
    let snapshot = |dir: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        let mut files = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else {
                    files.push((e.path(), std::fs::read(e.path()).unwrap()));
                }
            }
        }
        files.sort();
        files
    };
    let before = (snapshot(&root), snapshot(&sys));
    let o = tg(&[
        "--proc-root",
        root.to_str().unwrap(),
        "--sys-root",
        sys.to_str().unwrap(),
        "daemon",
        "--dry-run",
        "--no-self-protect",
        "--duration",
        "0.5",
    ]);
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("not a kernel pressure file"), "said why it samples on the timer: {err}");
    assert!(err.contains("1 memory cgroup scope"), "{err}");
    assert!(before == (snapshot(&root), snapshot(&sys)), "the daemon wrote into the captured tree");
}

#[test]
fn unprivileged_it_runs_and_says_what_it_cannot_do() {
    if !rustix::process::geteuid().is_root() || Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("needs root and setpriv to drop to nobody: skipped");
        return;
    }
    let o = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_thrashguard"),
            "daemon",
            "--dry-run",
            "--duration",
            "0.5",
        ])
        .output()
        .expect("setpriv");
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("running with reduced power"), "{err}");
    assert!(err.contains("lock memory"), "{err}");
    assert!(err.contains("signal other users' processes"), "{err}");
}
