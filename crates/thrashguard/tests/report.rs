//! `thrashguard report` on a real rescue: the event of the lab run in which thrashguard killed
//! a hog (`bench/results/lab/hog-disk-swap/thrashguard/r1`), rebuilt from that run's own files
//! (the daemon's decision and exit log lines, the kernel's signal tracepoint, and the pressure
//! trace replayed through the policy for the timeline), drawn by the real binary in all three
//! formats and decoded back; the HTML page is opened in headless Chromium (required when
//! THRASHGUARD_REQUIRE_CHROMIUM is set, as `.ci/run` does) and its screenshot must show the chart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use thrashguard_core::config::Config;
use thrashguard_core::history::{Event, EventAction, PhaseTag, Point, TIMELINE_ZERO, Victim};
use thrashguard_core::policy::{Evidence, Policy, Reason};
use thrashguard_core::report::{self, colors};
use thrashguard_core::snapshot::Snapshot;
use thrashguard_core::trace::{self, Line};
use thrashguard_core::units::{Kib, Micros};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const RUN: &str = "bench/results/lab/hog-disk-swap/thrashguard/r1";
const FIXTURE: &str = "crates/thrashguard/tests/fixtures/report/hog-disk-swap-lab.event.json";

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("thrashguard-report-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("a number: {v}"))
}

/// The event of the lab run's rescue, as the guard would have stored it.
fn lab_event() -> Event {
    let dir = repo().join(RUN);
    // the daemon's account: the decision with its evidence and victim, then the victim's exit
    let log = std::fs::read_to_string(dir.join("hog-disk-swap.daemon.log")).unwrap();
    let lines: Vec<Value> = log.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let d = lines.iter().find(|v| v["event"] == "decision").expect("a decision in the daemon log");
    let exit = lines.iter().find(|v| v["msg"].as_str().is_some_and(|m| m.contains(" exited "))).expect("the victim's exit");
    let exit_ms: f64 = exit["msg"].as_str().unwrap().split(" exited ").nth(1).unwrap().split(" ms").next().unwrap().parse().unwrap();
    let result: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("hog-disk-swap.result.json")).unwrap()).unwrap();
    // the kill on the trace's clock: the kernel's signal tracepoint
    let kill = result["events"].as_array().unwrap().iter().find(|e| e["event"] == "kill" && e["by"] == "thrashguard").expect("the kill");
    let kill_at = Micros::from_secs_f64(f(&kill["t"]));
    let victim_exit = Micros::from_secs_f64(f(&result["workload_end"]));
    assert_eq!(kill["pid"], d["victim_pid"]);

    // the timeline: the trace through the policy with the daemon's defaults; recovering from the
    // kill until the victim's exit, as the daemon waits on its pidfd
    let cfg = Config::default();
    let mut policy = Policy::new(cfg.policy.clone());
    let reader = thrashguard::replay::open_trace(&dir.join("hog-disk-swap.trace.jsonl.gz")).unwrap();
    let mut timeline = Vec::new();
    let mut finished = false;
    for (no, text) in reader.lines().enumerate().skip(1) {
        let Ok(line) = trace::parse_line(no + 1, &text.unwrap()) else { continue };
        let Line::Sample { t, .. } = line else { continue };
        let file = |n: &str| line.file(n).map(str::as_bytes);
        let at = Micros::from_secs_f64(t);
        let (Some(meminfo), Some(vmstat)) = (file("meminfo"), file("vmstat")) else { continue };
        let Ok(snap) = Snapshot::parse(at, file("pressure/memory"), meminfo, vmstat) else { continue };
        if !finished && at >= victim_exit {
            policy.rescue_finished(at);
            finished = true;
        }
        let step = policy.step(&snap.scope_sample());
        let mut p = Point::from_evidence(&step.evidence, step.phase);
        if at >= kill_at && !finished {
            p.phase = PhaseTag::Recovering;
        }
        timeline.push(p);
    }
    Event::rebase(&mut timeline, kill_at);

    let nearest = timeline.iter().min_by_key(|p| p.t.0.abs_diff(TIMELINE_ZERO.0)).copied().unwrap();
    let ms = |v: &Value| v.as_f64().map(|x| Micros((x * 1000.0) as u64));
    Event {
        id: Some(1),
        unix_ms: exit["ts_unix_ms"].as_i64().unwrap() - exit_ms as i64,
        host: "lab-guest".into(),
        scope: d["scope"].as_str().unwrap().into(),
        action: EventAction::Kill,
        reason: Reason::Thrashing,
        outcome: "killed".into(),
        victim: Victim {
            pid: d["victim_pid"].as_u64().unwrap() as u32,
            name: d["victim_name"].as_str().unwrap().into(),
            cmdline: String::new(),
            footprint: Kib(d["victim_footprint_kib"].as_u64().unwrap()),
            swap: Kib(d["victim_swap_kib"].as_u64().unwrap()),
            oom_score: None,
        },
        evidence: Evidence {
            at: Micros::from_secs_f64(f(&d["t_s"])),
            psi: true,
            full: d["full_stall_pct"].as_f64().map(|x| x / 100.0),
            some: nearest.some.map(f64::from),
            full_mean: d["full_stall_mean_pct"].as_f64().map(|x| x / 100.0),
            episode: ms(&d["episode_ms"]).unwrap(),
            available: Kib(d["available_kib"].as_u64().unwrap()),
            total: Kib(result["mem_total_kb"].as_u64().unwrap()),
            swap_total: Kib(result["swap_total_kb"].as_u64().unwrap()),
            headroom: Kib(d["headroom_kib"].as_u64().unwrap()),
            headroom_trend_kib_s: d["headroom_trend_kib_s"].as_f64(),
            exhaustion_in: ms(&d["exhaustion_in_ms"]),
            anon_refaults_per_s: d["refaults_anon_per_s"].as_f64(),
            file_refaults_per_s: d["refaults_file_per_s"].as_f64(),
            majfaults_per_s: d["majfaults_per_s"].as_f64(),
        },
        exit_after_ms: Some(exit_ms),
        timeline,
    }
}

/// The committed fixture is that event (`THRASHGUARD_BLESS=1` rewrites it); the policy's
/// phases may drift with the policy, the recorded numbers may not.
#[test]
fn fixture_is_the_lab_rescue() {
    let ev = lab_event();
    let path = repo().join(FIXTURE);
    if std::env::var_os("THRASHGUARD_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, serde_json::to_string_pretty(&ev).unwrap() + "\n").unwrap();
    }
    let mut stored: Event = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for (a, b) in stored.timeline.iter_mut().zip(&ev.timeline) {
        a.phase = b.phase;
    }
    assert_eq!(stored, ev, "{FIXTURE} is stale: rerun with THRASHGUARD_BLESS=1");
    // the episode is in it: stall before the kill, the victim's 1.2 GiB back after
    assert_eq!((ev.victim.pid, ev.victim.name.as_str()), (345, "python3"));
    assert!(ev.timeline.len() > 200, "{} points", ev.timeline.len());
    let before = ev.timeline.iter().filter(|p| (-3.0..0.0).contains(&Event::seconds(p)));
    assert!(before.clone().filter_map(|p| p.full).fold(0.0, f32::max) > 0.3);
    // the victim's exit restarts the policy's window: the next half second is not measured,
    // and is stored as such (a gap), never as a quiet zero
    let exit_s = ev.exit_after_ms.unwrap() / 1000.0;
    let after_exit: Vec<&Point> = ev.timeline.iter().filter(|p| (exit_s..exit_s + 0.45).contains(&Event::seconds(p))).collect();
    assert!(!after_exit.is_empty() && after_exit.iter().all(|p| p.full.is_none() && p.swap_in_per_s.is_none()), "{after_exit:?}");
    assert!(ev.timeline.iter().filter(|p| Event::seconds(p) > exit_s + 0.6).all(|p| p.full.is_some()));
    assert!(ev.timeline.iter().any(|p| p.phase == PhaseTag::Pressure));
    assert!(ev.timeline.iter().any(|p| p.phase == PhaseTag::Recovering));
    let avail =
        |lo: f64, hi: f64| ev.timeline.iter().filter(|p| (lo..hi).contains(&Event::seconds(p))).map(|p| p.available.0).max().unwrap();
    assert!(avail(2.0, 8.0) > avail(-2.0, 0.0) + 500 * 1024, "memory came back");
}

fn report(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_thrashguard"))
        .arg("report")
        .args(args)
        .env_remove("THRASHGUARD_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn decode_png(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    let rgb = match info.color_type {
        png::ColorType::Rgb => buf,
        png::ColorType::Rgba => buf.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect(),
        other => panic!("colour type {other:?}"),
    };
    (info.width, info.height, rgb)
}

/// Pixels within `tol` of colour `c` in each channel.
fn near(px: &[u8], c: colors::Rgb, tol: u8) -> usize {
    px.chunks_exact(3).filter(|p| p[0].abs_diff(c.0) <= tol && p[1].abs_diff(c.1) <= tol && p[2].abs_diff(c.2) <= tol).count()
}

#[test]
fn all_three_formats_from_the_stored_event() {
    let dir = tmpdir("formats");
    let fixture = repo().join(FIXTURE);
    let ev: Event = serde_json::from_str(&std::fs::read_to_string(&fixture).unwrap()).unwrap();
    for ext in ["png", "svg", "html"] {
        let out = dir.join(format!("event.{ext}"));
        let o = report(&["--event", fixture.to_str().unwrap(), "--out", out.to_str().unwrap()], None);
        assert!(o.status.success(), "{ext}: {}", String::from_utf8_lossy(&o.stderr));
        assert!(String::from_utf8_lossy(&o.stderr).contains("kill 345 python3 (1212 MiB) thrashing"));
    }
    let (w, h, px) = decode_png(&std::fs::read(dir.join("event.png")).unwrap());
    assert_eq!((w, h), report::SIZE);
    for c in [colors::FULL, colors::SOME, colors::HEADROOM, colors::AVAILABLE, colors::SWAP_IN, colors::MAJFAULTS, colors::ACTION] {
        assert!(near(&px, c, 0) > 50, "{c:?}: {} pixels", near(&px, c, 0));
    }
    let svg = std::fs::read_to_string(dir.join("event.svg")).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let polylines = doc.descendants().filter(|n| n.has_tag_name("polyline")).count();
    assert!(polylines >= 7, "{polylines} polylines");
    assert!(doc.descendants().any(|n| n.text().is_some_and(|t| t.trim() == "kill 345 python3 (1212 MiB) thrashing")));
    let html = std::fs::read_to_string(dir.join("event.html")).unwrap();
    assert_eq!(report::event_from_html(&html), Some(ev));
    for bad in ["://", "src=", "href=", "url(", "@import"] {
        assert!(!html.contains(bad), "{bad} in the page");
    }
    // no temporary files left beside the outputs
    let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["event.html", "event.png", "event.svg"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn event_from_stdin_and_from_json_lines() {
    let dir = tmpdir("stdin");
    let ev = lab_event();
    let one = serde_json::to_string(&ev).unwrap();
    let mut other = ev.clone();
    other.victim.name = "otherhog".into();
    let lines = format!("{one}\n{}\n", serde_json::to_string(&other).unwrap());
    let out = dir.join("r.svg");
    let o = report(&["--event", "-", "--out", out.to_str().unwrap()], Some(lines.as_bytes()));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let svg = std::fs::read_to_string(&out).unwrap();
    assert!(svg.contains("python3") && !svg.contains("otherhog"), "the first line is drawn");
    // an existing file is replaced whole
    let o = report(&["--event", "-", "--out", out.to_str().unwrap()], Some(serde_json::to_string(&other).unwrap().as_bytes()));
    assert!(o.status.success());
    assert!(std::fs::read_to_string(&out).unwrap().contains("otherhog"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_invocations_are_clear_errors() {
    let dir = tmpdir("bad");
    let fixture = repo().join(FIXTURE);
    let fx = fixture.to_str().unwrap();
    let out = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let check = |o: Output, code: i32, what: &str| {
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert_eq!(o.status.code(), Some(code), "{what}: {err}");
        assert!(err.contains(what), "want {what:?} in {err:?}");
        assert!(!err.contains("panicked"), "{err}");
    };
    check(report(&["--event", fx, "--out", &out("r.pdf")], None), 2, "the format comes from the extension: .png, .svg or .html");
    check(report(&["--event", fx, "--out", &out("noext")], None), 2, "from the extension");
    check(report(&["--out", &out("r.png")], None), 2, "required");
    check(report(&["7", "--event", fx, "--out", &out("r.png")], None), 2, "cannot be used with");
    check(report(&["--event", fx], None), 2, "--out");
    check(report(&["7", "--db", &out("none.db"), "--out", &out("r.png")], None), 1, "no history yet at");
    check(report(&["--event", &out("missing.json"), "--out", &out("r.png")], None), 1, "cannot open");
    check(report(&["--event", "-", "--out", &out("r.png")], Some(b"")), 1, "empty");
    check(report(&["--event", "-", "--out", &out("r.png")], Some(b"{\"id\": 3}")), 1, "not a thrashguard event");
    check(report(&["--event", "-", "--out", &out("r.png")], Some(b"\xff\xfe")), 1, "stdin");
    check(report(&["--event", fx, "--out", &out("no/such/dir/r.png")], None), 1, "cannot create");
    std::fs::create_dir(dir.join("d.png")).unwrap();
    check(report(&["--event", fx, "--out", &out("d.png")], None), 1, "cannot rename");
    let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["d.png"], "nothing written, no temporary file left");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The guard's own path: the event stored in the history database, drawn by id, and the
/// output of `history --json` piped into `report --event -`.
#[test]
fn from_the_history_store_by_id_and_through_history_json() {
    let dir = tmpdir("store");
    let db = dir.join("history.db");
    let mut ev = lab_event();
    ev.id = None;
    let id = {
        let mut store = thrashguard::store::Store::open(&db, Duration::from_secs(100 * 365 * 86_400)).unwrap();
        store.insert(&mut ev).unwrap()
    };
    let stored = thrashguard::store::load_event(&db, id).unwrap().expect("stored");
    assert_eq!(stored.victim, ev.victim);
    assert_eq!(stored.timeline.len(), ev.timeline.len());

    let (png, dbs) = (dir.join("by-id.png"), db.to_str().unwrap());
    let o = report(&[&id.to_string(), "--db", dbs, "--out", png.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (w, h, px) = decode_png(&std::fs::read(&png).unwrap());
    assert_eq!((w, h), report::SIZE);
    assert!(near(&px, colors::FULL, 0) > 50 && near(&px, colors::ACTION, 0) > 50);

    let o = report(&[&(id + 1).to_string(), "--db", dbs, "--out", dir.join("x.png").to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains(&format!("no event {}", id + 1)), "{}", String::from_utf8_lossy(&o.stderr));

    let history = Command::new(env!("CARGO_BIN_EXE_thrashguard"))
        .args(["history", "--json", "--db", dbs])
        .env_remove("THRASHGUARD_CONFIG")
        .output()
        .unwrap();
    assert!(history.status.success(), "{}", String::from_utf8_lossy(&history.stderr));
    let page = dir.join("piped.html");
    let o = report(&["--event", "-", "--out", page.to_str().unwrap()], Some(&history.stdout));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let back = report::event_from_html(&std::fs::read_to_string(&page).unwrap()).expect("the page carries the event");
    assert_eq!(back, stored);
    let _ = std::fs::remove_dir_all(&dir);
}

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(name)).find(|p| p.is_file()))
}

/// Headless Chromium with no network and a throwaway profile.
fn chromium_cmd(bin: &Path, profile: &Path) -> Command {
    let mut c = Command::new(bin);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-sync",
        "--disable-component-update",
        "--hide-scrollbars",
        "--proxy-server=127.0.0.1:9",
        "--proxy-bypass-list=<-loopback>",
        "--host-resolver-rules=MAP * ~NOTFOUND",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    c
}

/// Run `cmd` to its end, killed (and the test failed) after `limit`.
fn output_within(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd.spawn().expect("chromium starts");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output { status, stdout: out.join().unwrap(), stderr: err.join().unwrap() }
}

#[test]
fn html_page_in_headless_chromium_shows_the_chart() {
    let Some(bin) = chromium() else {
        assert!(std::env::var_os("THRASHGUARD_REQUIRE_CHROMIUM").is_none(), "chromium is required here (apt-get install chromium)");
        eprintln!("chromium not installed (apt-get install chromium chromium-driver): the browser check was skipped");
        return;
    };
    let dir = tmpdir("chromium");
    let page = dir.join("event.html");
    let o = report(&["--event", repo().join(FIXTURE).to_str().unwrap(), "--out", page.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let url = format!("file://{}", page.canonicalize().unwrap().display());

    let shot = dir.join("shot.png");
    let mut cmd = chromium_cmd(&bin, &dir.join("profile"));
    cmd.arg(format!("--screenshot={}", shot.display())).arg("--window-size=1280,1000").arg(&url);
    let o = output_within(cmd, Duration::from_secs(120));
    assert!(shot.is_file(), "no screenshot: {}", String::from_utf8_lossy(&o.stderr));
    let (w, h, px) = decode_png(&std::fs::read(&shot).unwrap());
    assert_eq!((w, h), (1280, 1000));
    // the chart is drawn (antialiased, so near the series colours) and the page is not blank
    for c in [colors::FULL, colors::HEADROOM, colors::AVAILABLE, colors::SWAP_IN, colors::ACTION] {
        assert!(near(&px, c, 40) > 100, "{c:?}: {} pixels in the screenshot", near(&px, c, 40));
    }

    // the DOM after scripts ran: the event JSON parsed in the browser and filled in the local time
    let mut cmd = chromium_cmd(&bin, &dir.join("profile"));
    cmd.arg("--dump-dom").arg(&url);
    let o = output_within(cmd, Duration::from_secs(120));
    let dom = String::from_utf8_lossy(&o.stdout);
    let local = dom.split("<span id=\"local-time\">").nth(1).and_then(|s| s.split("</span>").next()).unwrap_or_default();
    assert!(local.contains("GMT"), "the page's script did not run (CSP hash?): {local:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Render time of each format for a 1,200-point event (the ring's capacity): printed, and a
/// loose bound so a pathological slowdown fails (`cargo test --release -- --nocapture` for the numbers).
#[test]
fn render_time_for_1200_points() {
    let mut ev = lab_event();
    let base = ev.timeline.clone();
    ev.timeline = (0..1200)
        .map(|i| {
            let mut p = base[i % base.len()];
            p.t = Micros(TIMELINE_ZERO.0 - 60_000_000 + i as u64 * 100_000);
            p
        })
        .collect();
    for (name, f) in [
        ("png", &(|e: &Event| report::png(e).map(|b| b.len())) as &dyn Fn(&Event) -> Result<usize, report::ReportError>),
        ("svg", &|e: &Event| report::svg(e).map(|s| s.len())),
        ("html", &|e: &Event| report::html(e).map(|s| s.len())),
    ] {
        let t0 = Instant::now();
        let n = f(&ev).unwrap();
        let took = t0.elapsed();
        eprintln!("report {name}: 1200 points in {:.1} ms, {n} bytes", took.as_secs_f64() * 1000.0);
        assert!(took.as_secs() < 60, "{name} took {took:?}");
    }
}
