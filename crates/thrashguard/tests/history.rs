//! The event history: the SQLite store (round trip, queries, retention, a corrupt file, an
//! unwritable path), the writer thread under a flood, and end to end a real daemon whose
//! lifeline `kill` and `freeze` of its own sleeping children become events that
//! `thrashguard history` lists with their timelines.
//!
//! Safety: the only processes acted on are `sleep` children this test started.
// Test helpers may panic: a panic is a failing test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use thrashguard::store::{self, Store};
use thrashguard_core::config::HistoryConfig;
use thrashguard_core::history::{Event, EventAction, PhaseTag, Point, TIMELINE_ZERO, Victim};
use thrashguard_core::policy::{Evidence, Reason};
use thrashguard_core::units::{Kib, Micros};

mod common;
use common::{Daemon, tree};

const DAY_MS: i64 = 86_400_000;

fn tg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_thrashguard")).args(args).env_remove("THRASHGUARD_CONFIG").output().expect("run thrashguard")
}

fn event(unix_ms: i64, pid: u32, points: usize) -> Event {
    Event {
        id: None,
        unix_ms,
        host: "testhost".into(),
        scope: "system".into(),
        action: EventAction::Kill,
        reason: Reason::Thrashing,
        outcome: "killed".into(),
        victim: Victim {
            pid,
            name: "hog".into(),
            cmdline: "python3 hog.py --big".into(),
            footprint: Kib(3 << 20),
            swap: Kib(1 << 20),
            oom_score: Some(900),
        },
        evidence: Evidence {
            at: Micros(123_456_789),
            psi: true,
            full: Some(0.8731),
            some: Some(0.95),
            full_mean: Some(0.61),
            episode: Micros(4_200_000),
            available: Kib(120_000),
            total: Kib(16 << 20),
            headroom: Kib(150_000),
            headroom_trend_kib_s: Some(-50_000.5),
            exhaustion_in: Some(Micros(3_000_000)),
            anon_refaults_per_s: Some(12_000.0),
            file_refaults_per_s: Some(3_000.25),
            majfaults_per_s: Some(800.0),
            ..Evidence::default()
        },
        exit_after_ms: Some(41.5),
        timeline: (0..points)
            .map(|i| Point {
                t: Micros(TIMELINE_ZERO.0 - 60_000_000 + i as u64 * 100_000),
                full: Some((i % 100) as f32 / 100.0),
                some: Some(0.3),
                headroom: Kib(1_000_000 - i as u64),
                available: Kib(900_000),
                swap_in_per_s: Some(i as f32),
                file_refaults_per_s: Some(7.5),
                majfaults_per_s: Some(1.0),
                phase: if i % 2 == 0 { PhaseTag::Pressure } else { PhaseTag::Calm },
            })
            .collect(),
    }
}

fn now_ms() -> i64 {
    store::unix_ms_now()
}

#[test]
fn round_trip_since_and_load_by_id() {
    let t = tree("hist-roundtrip");
    let db = t.0.join("state/history.db");
    // reading creates nothing
    let e = store::list(&db, None).unwrap_err();
    assert!(e.downcast_ref::<store::NoHistory>().is_some() && e.to_string().contains("no history yet at"), "{e}");
    assert!(!db.exists(), "a read created the database");
    let o = tg(&["history", "--db", db.to_str().unwrap()]);
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), format!("no history yet at {}", db.display()));
    assert!(!db.exists());

    let mut s = Store::open(&db, Duration::from_secs(90 * 86_400)).unwrap();
    let now = now_ms();
    let mut written = Vec::new();
    for (i, age_ms) in [3 * 3_600_000, 2 * 3_600_000, 60_000].into_iter().enumerate() {
        let mut e = event(now - age_ms, 1000 + i as u32, 900);
        let id = s.insert(&mut e).unwrap();
        assert_eq!(e.id, Some(id));
        written.push(e);
    }
    drop(s);
    let all = store::list(&db, None).unwrap();
    assert_eq!(all, written, "everything comes back as written, timelines included");
    let recent = store::list(&db, Some(now - 2 * 3_600_000 - 1000)).unwrap();
    assert_eq!(recent.iter().map(|e| e.victim.pid).collect::<Vec<_>>(), [1001, 1002]);
    assert_eq!(store::load_event(&db, written[1].id.unwrap()).unwrap().as_ref(), Some(&written[1]));
    assert_eq!(store::load_event(&db, 999_999).unwrap(), None);

    // the command: a table, --since, --json lines that parse back into events
    let o = tg(&["history", "--db", db.to_str().unwrap(), "--since", "150m"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].contains("ID") && lines[0].contains("FULL%") && lines[0].contains("OUTCOME"), "{text}");
    assert!(lines[1].contains("1001") && lines[1].contains("hog") && lines[1].contains("3072") && lines[1].contains("87.3"), "{text}");
    let o = tg(&["history", "--db", db.to_str().unwrap(), "--json"]);
    let back: Vec<Event> = String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(back, written);
    // a bad duration is a usage error naming the value
    let o = tg(&["history", "--db", db.to_str().unwrap(), "--since", "3x"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("\"3x\""), "{}", String::from_utf8_lossy(&o.stderr));
    // the default path comes from the configuration
    let cfg = t.0.join("tg.toml");
    std::fs::write(&cfg, format!("[history]\npath = \"{}\"\n", db.display())).unwrap();
    let o = tg(&["--config", cfg.to_str().unwrap(), "history", "--since", "2m"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 2, "{}", String::from_utf8_lossy(&o.stdout));
    let o = tg(&["--config", cfg.to_str().unwrap(), "history", "--since", "1s"]);
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("no events"), "{}", String::from_utf8_lossy(&o.stdout));
}

#[test]
fn retention_deletes_old_events_on_open_and_insert() {
    let t = tree("hist-retention");
    let db = t.0.join("history.db");
    let mut s = Store::open(&db, Duration::from_secs(365 * 86_400)).unwrap();
    let now = now_ms();
    for age_days in [100, 50, 10] {
        s.insert(&mut event(now - age_days * DAY_MS, age_days as u32, 5)).unwrap();
    }
    drop(s);
    assert_eq!(store::list(&db, None).unwrap().len(), 3);
    // reopened keeping 60 days: the 100-day-old one goes at once
    let mut s = Store::open(&db, Duration::from_secs(60 * 86_400)).unwrap();
    assert_eq!(store::list(&db, None).unwrap().iter().map(|e| e.victim.pid).collect::<Vec<_>>(), [50, 10]);
    // an insert prunes too (here: an event already past retention is gone at once)
    s.insert(&mut event(now - 70 * DAY_MS, 70, 5)).unwrap();
    s.insert(&mut event(now, 1, 5)).unwrap();
    assert_eq!(store::list(&db, None).unwrap().iter().map(|e| e.victim.pid).collect::<Vec<_>>(), [50, 10, 1]);
}

/// A real database with `n` events, closed (checkpointed), as bytes.
fn real_db(dir: &Path, n: usize) -> Vec<u8> {
    let db = dir.join("real.db");
    let mut s = Store::open(&db, Duration::from_secs(86_400)).unwrap();
    for i in 0..n {
        s.insert(&mut event(now_ms(), i as u32, 600)).unwrap();
    }
    drop(s);
    assert!(!dir.join("real.db-wal").exists(), "closed cleanly: no -wal left");
    std::fs::read(&db).unwrap()
}

fn aside_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".corrupt-"))
        .collect();
    v.sort();
    v
}

#[test]
fn a_corrupt_database_is_moved_aside_and_a_fresh_one_started() {
    let t = tree("hist-corrupt");
    let keep = Duration::from_secs(86_400);
    let good = real_db(&t.0, 20);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", (0..50_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("header-only", good[..100].to_vec()),
        ("torn-page", {
            let mut b = good.clone();
            for x in &mut b[4096..8192] {
                *x = 0xA5;
            }
            b
        }),
    ];
    for (name, bytes) in cases {
        let dir = t.0.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("history.db");
        std::fs::write(&db, &bytes).unwrap();
        std::fs::write(dir.join("history.db-wal"), b"stale wal").unwrap();
        // a reader says what is wrong (and never moves anything)
        assert!(store::list(&db, None).is_err() || name == "truncated" || name == "torn-page", "{name}");
        let (mut s, note) = store::open_or_recover(&db, keep).unwrap_or_else(|e| panic!("{name}: {e}"));
        let note = note.unwrap_or_else(|| panic!("{name}: not reported"));
        assert!(note.contains("moved it aside to") && note.contains(".corrupt-"), "{name}: {note}");
        let aside = aside_files(&dir);
        // the database and its -wal (with the -shm a reader made), all moved
        assert!(aside.iter().any(|n| n.ends_with("-wal")), "{name}: {aside:?}");
        let dbs: Vec<&String> = aside.iter().filter(|n| !n.ends_with("-wal") && !n.ends_with("-shm")).collect();
        assert_eq!(dbs.len(), 1, "{name}: {aside:?}");
        assert_eq!(std::fs::read(dir.join(aside.iter().find(|n| n.ends_with("-wal")).unwrap())).unwrap(), b"stale wal", "{name}");
        let moved = dir.join(dbs[0]);
        assert_eq!(std::fs::read(&moved).unwrap(), bytes, "{name}: kept as it was");
        // the fresh one works
        s.insert(&mut event(now_ms(), 7, 10)).unwrap();
        drop(s);
        assert_eq!(store::list(&db, None).unwrap().len(), 1, "{name}");
        // and is not moved again
        let (_s, note) = store::open_or_recover(&db, keep).unwrap();
        assert_eq!(note, None, "{name}");
    }
    // a SQLite database that is not ours, and one from a newer thrashguard
    for (name, sql) in [("foreign", "CREATE TABLE t (x);"), ("newer", "PRAGMA user_version = 99;")] {
        let dir = t.0.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("history.db");
        rusqlite::Connection::open(&db).unwrap().execute_batch(sql).unwrap();
        assert!(store::list(&db, None).is_err() || name == "newer", "{name}");
        let (_, note) = store::open_or_recover(&db, keep).unwrap();
        assert!(note.is_some_and(|n| n.contains("moved it aside")), "{name}");
    }
}

#[test]
fn an_unwritable_path_is_an_error_never_a_panic() {
    let t = tree("hist-unwritable");
    let file = t.0.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let keep = Duration::from_secs(86_400);
    // a path through a regular file: unwritable even for root
    let db = file.join("history.db");
    let e = Store::open(&db, keep).unwrap_err();
    assert!(matches!(e, store::OpenError::Unwritable(_)), "{e}");
    let why = store::open_or_recover(&db, keep).unwrap_err();
    assert!(why.contains("a-file"), "{why}");
    // a directory where the database should be
    std::fs::create_dir_all(t.0.join("dir.db")).unwrap();
    assert!(matches!(Store::open(&t.0.join("dir.db"), keep), Err(store::OpenError::Unwritable(_))));
    assert!(t.0.join("dir.db").is_dir(), "never moved aside: it is not a corrupt database");
    // the writer takes events and drops them into the log, and stops when told
    let cfg = HistoryConfig { path: db.to_string_lossy().into_owned(), ..HistoryConfig::default() };
    let w = store::Writer::spawn(&cfg, Path::new("/proc")).unwrap();
    for i in 0..3 {
        w.submit(event(now_ms(), i, 10), None).unwrap();
    }
    assert!(w.finish(Duration::from_secs(10)));
}

/// Submitting never blocks: a flood into a slow (here: real, on disk) writer is refused
/// beyond the queue, in microseconds, and what was taken is stored.
#[test]
fn a_flood_of_events_never_blocks_the_sender() {
    let t = tree("hist-flood");
    let db = t.0.join("history.db");
    let cfg = HistoryConfig { path: db.to_string_lossy().into_owned(), ..HistoryConfig::default() };
    let w = store::Writer::spawn(&cfg, Path::new("/proc")).unwrap();
    let (mut taken, mut refused, mut worst) = (0usize, 0usize, Duration::ZERO);
    for i in 0..2000u32 {
        let e = event(now_ms(), i, 900);
        let t0 = Instant::now();
        let r = w.submit(e, None);
        worst = worst.max(t0.elapsed());
        match r {
            Ok(()) => taken += 1,
            Err((why, _)) => {
                assert_eq!(why, store::Refused::Full);
                refused += 1;
            }
        }
    }
    assert!(w.finish(Duration::from_secs(60)));
    eprintln!("flood: {taken} taken, {refused} refused, slowest submit {worst:?}");
    assert!(refused > 0, "the queue is bounded");
    assert!(worst < Duration::from_millis(50), "a submit blocked for {worst:?}");
    assert_eq!(store::list(&db, None).unwrap().len(), taken);
}

/// What one event costs: bytes on disk and time to insert (printed; loose bounds).
#[test]
fn event_size_and_insert_time() {
    let t = tree("hist-cost");
    let db = t.0.join("history.db");
    let mut s = Store::open(&db, Duration::from_secs(86_400)).unwrap();
    let n = 200;
    // 90 s of timeline at the guard's fastest rate (10 Hz): 900 points
    let mut times = Vec::new();
    for i in 0..n {
        let mut e = event(now_ms(), i, 900);
        let t0 = Instant::now();
        s.insert(&mut e).unwrap();
        times.push(t0.elapsed());
    }
    drop(s);
    times.sort();
    let size = std::fs::metadata(&db).unwrap().len();
    let json = serde_json::to_string(&event(0, 0, 900)).unwrap().len();
    eprintln!(
        "history cost: {n} events of 900 points: {size} bytes on disk, {} bytes/event (full JSON would be {json}); insert p50 {:?}, p99 {:?}, max {:?}",
        size / u64::from(n),
        times[times.len() / 2],
        times[times.len() * 99 / 100],
        times[times.len() - 1]
    );
    assert!(size / u64::from(n) < 64 * 1024);
}

/// Lifeline keys (`keygen`), an authorized file, and a config with `[history]` in `dir`.
fn setup(dir: &Path, history: &str) -> (PathBuf, u16) {
    let (authorized, port) = common::lifeline_keys(dir, &[("ops", false), ("host", false)], &["ops"]);
    let config = dir.join("tg.toml");
    std::fs::write(
        &config,
        format!(
            "[guard]\nstatus_socket = \"\"\n[lifeline]\nlisten = \"127.0.0.1:{port}\"\nauthorized_keys = \"{}\"\nhost_key = \"{}\"\nhost_id = \"hist\"\n[history]\n{history}\n",
            authorized.display(),
            dir.join("host.key").display()
        ),
    )
    .unwrap();
    (config, port)
}

fn send(dir: &Path, port: u16, action: &[&str]) -> String {
    let addr = format!("127.0.0.1:{port}");
    let key = dir.join("ops.key");
    let host_pub = dir.join("host.pub");
    let mut args = vec!["send", addr.as_str()];
    args.extend_from_slice(action);
    args.extend_from_slice(&["--key", key.to_str().unwrap(), "--host-pub", host_pub.to_str().unwrap(), "--host-id", "hist", "--json"]);
    let o = tg(&args);
    assert!(o.status.success(), "{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn sleeper() -> Child {
    Command::new("sleep").arg("120").spawn().expect("sleep")
}

fn start(config: &Path) -> Daemon {
    let mut d = Daemon::spawn(&["--config", config.to_str().unwrap(), "daemon", "--no-self-protect", "--duration", "90"]);
    d.wait_for("lifeline on udp");
    d
}

#[test]
fn a_lifeline_kill_and_freeze_become_events_with_timelines() {
    let t = tree("hist-e2e");
    let db = t.0.join("var/history.db");
    let (config, port) = setup(&t.0, &format!("path = \"{}\"\nafter_s = 1\nbefore_s = 5", db.display()));
    let mut d = start(&config);
    // some timeline before the action
    std::thread::sleep(Duration::from_millis(1500));
    let mut victim = sleeper();
    let mut frozen = sleeper();
    std::thread::sleep(Duration::from_millis(100)); // exec'd: its cmdline is sleep's
    let out = send(&t.0, port, &["kill", &victim.id().to_string()]);
    assert!(out.contains("\"result\":\"killed\""), "{out}");
    let out = send(&t.0, port, &["freeze", &frozen.id().to_string()]);
    assert!(out.contains("\"result\":\"frozen\""), "{out}");
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&victim.wait().unwrap()), Some(9));
    d.wait_for(&format!("stored event 2: freeze {}", frozen.id()));
    let o = tg(&["history", "--db", db.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let events: Vec<Event> = String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events.len(), 2, "{events:#?}");
    let (k, f) = (&events[0], &events[1]);
    assert_eq!((k.action, k.reason, k.outcome.as_str(), k.victim.pid), (EventAction::Kill, Reason::Lifeline, "killed", victim.id()));
    assert_eq!(k.victim.name, "sleep");
    assert_eq!((f.action, f.outcome.as_str(), f.victim.pid), (EventAction::Freeze, "frozen", frozen.id()));
    assert_eq!(f.victim.cmdline, "sleep 120", "a frozen victim is still there: its command line is read");
    assert!((now_ms() - k.unix_ms).abs() < 60_000, "{}", k.unix_ms);
    for e in [k, f] {
        let secs: Vec<f64> = e.timeline.iter().map(Event::seconds).collect();
        assert!(secs.iter().any(|s| *s <= 0.0) && secs.iter().any(|s| *s > 0.0), "points before and after the action: {secs:?}");
        assert!(secs.iter().all(|s| (-5.5..=3.0).contains(s)), "inside [-before, after]: {secs:?}");
        assert!(secs.windows(2).all(|w| w[0] < w[1]), "oldest first");
        assert!(e.timeline.iter().any(|p| p.available.0 > 0), "real samples");
        assert!(e.evidence.available.0 > 0, "the evidence at the action");
    }
    // one of them by id, as `report --event` will read it
    assert_eq!(store::load_event(&db, f.id.unwrap()).unwrap().as_ref(), Some(f));
    let o = tg(&["history", "--db", db.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.lines().count() == 3 && text.contains("lifeline") && text.contains("frozen"), "{text}");
    let log = d.stop();
    assert!(!log.iter().any(|l| l.contains("dropped")), "{log:#?}");
    let _ = frozen.kill();
    let _ = frozen.wait();
}

#[test]
fn a_corrupt_database_is_reported_once_and_the_guard_goes_on() {
    let t = tree("hist-e2e-corrupt");
    let db = t.0.join("history.db");
    std::fs::write(&db, vec![0x5Au8; 20_000]).unwrap();
    let (config, port) = setup(&t.0, &format!("path = \"{}\"\nafter_s = 1", db.display()));
    let mut d = start(&config);
    let mut victim = sleeper();
    send(&t.0, port, &["kill", &victim.id().to_string()]);
    victim.wait().unwrap();
    d.wait_for("stored event 1");
    let log = d.stop();
    let reports: Vec<&String> = log.iter().filter(|l| l.contains("moved it aside")).collect();
    assert_eq!(reports.len(), 1, "{log:#?}");
    assert!(reports[0].contains("WARN") || reports[0].to_lowercase().contains("warn"), "{}", reports[0]);
    assert_eq!(aside_files(&t.0).len(), 1);
    assert_eq!(store::list(&db, None).unwrap().len(), 1);
}

#[test]
fn an_unwritable_database_is_reported_once_and_events_are_logged() {
    let t = tree("hist-e2e-unwritable");
    std::fs::write(t.0.join("a-file"), b"x").unwrap();
    let db = t.0.join("a-file/history.db");
    let (config, port) = setup(&t.0, &format!("path = \"{}\"\nafter_s = 1", db.display()));
    let mut d = start(&config);
    let mut kids: Vec<Child> = (0..2).map(|_| sleeper()).collect();
    for k in &mut kids {
        let out = send(&t.0, port, &["kill", &k.id().to_string()]);
        assert!(out.contains("killed"), "{out}");
        k.wait().unwrap();
    }
    d.wait_for(&format!("history event (not stored): kill {}", kids[1].id()));
    // the guard still answers
    assert!(send(&t.0, port, &["status"]).contains("\"ok\":true"));
    let log = d.stop();
    assert_eq!(log.iter().filter(|l| l.contains("events will only be logged")).count(), 1, "{log:#?}");
    assert_eq!(log.iter().filter(|l| l.contains("history event (not stored)")).count(), 2, "{log:#?}");
    assert!(log.iter().any(|l| l.contains("stopping after")), "{log:#?}");
}

/// More actions at once than the guard keeps slots for: every one is carried out and
/// answered at once; the events beyond the slots are dropped, counted and logged once.
#[test]
fn a_flood_of_actions_does_not_block_the_guard() {
    let t = tree("hist-e2e-flood");
    let db = t.0.join("history.db");
    let (config, port) = setup(&t.0, &format!("path = \"{}\"\nafter_s = 30", db.display()));
    let mut d = start(&config);
    let mut kids: Vec<Child> = (0..10).map(|_| sleeper()).collect();
    let t0 = Instant::now();
    for k in &kids {
        let out = send(&t.0, port, &["kill", &k.id().to_string()]);
        assert!(out.contains("\"result\":\"killed\""), "{out}");
    }
    let took = t0.elapsed();
    for k in &mut kids {
        k.wait().unwrap();
    }
    d.wait_for("event dropped");
    let log = d.stop();
    eprintln!("10 lifeline kills answered in {took:?}");
    assert_eq!(log.iter().filter(|l| l.contains("event dropped")).count(), 1, "logged once: {log:#?}");
    assert!(log.iter().any(|l| l.contains("6 event(s) dropped over the run")), "{log:#?}");
    // the four kept were stored at shutdown with the timeline so far
    let events = store::list(&db, None).unwrap();
    assert_eq!(events.iter().map(|e| e.victim.pid).collect::<Vec<_>>(), kids[..4].iter().map(Child::id).collect::<Vec<_>>());
    assert!(events.iter().all(|e| !e.timeline.is_empty()));
}

/// As an unprivileged user (`setpriv` to nobody): the daemon with a history directory it
/// cannot write reports it once and runs; `history` reads a root-owned database that is
/// readable, and never creates one.
#[test]
fn unprivileged_daemon_and_reader() {
    if !rustix::process::geteuid().is_root() || Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("needs root and setpriv to drop privileges: skipped");
        return;
    }
    let t = tree("hist-nobody");
    std::fs::set_permissions(&t.0, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let ro = t.0.join("ro");
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::set_permissions(&ro, std::os::unix::fs::PermissionsExt::from_mode(0o555)).unwrap();
    let config = t.0.join("tg.toml");
    std::fs::write(
        &config,
        format!(
            "[guard]\nstatus_socket = \"\"\nlock_memory = false\n[lifeline]\nauthorized_keys = \"{}\"\n[history]\npath = \"{}\"\n",
            t.0.join("none").display(),
            ro.join("history.db").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let bin = env!("CARGO_BIN_EXE_thrashguard");
    let nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--", bin])
            .args(args)
            .env_remove("THRASHGUARD_CONFIG")
            .output()
            .unwrap()
    };
    let o = nobody(&["--config", config.to_str().unwrap(), "daemon", "--no-self-protect", "--duration", "2"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert_eq!(err.matches("events will only be logged").count(), 1, "{err}");
    assert!(err.contains("Permission denied") || err.contains("unable to open"), "{err}");
    assert!(!ro.join("history.db").exists());

    // a root-owned database, readable by all, in a directory nobody cannot write
    let shared = t.0.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let db = shared.join("history.db");
    let mut s = Store::open(&db, Duration::from_secs(86_400)).unwrap();
    s.insert(&mut event(now_ms(), 4242, 50)).unwrap();
    drop(s);
    std::fs::set_permissions(&db, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let o = nobody(&["history", "--db", db.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let e: Event = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((e.victim.pid, e.timeline.len()), (4242, 50));
    // while a writer holds it open (-wal and -shm present, root's)
    let mut s = Store::open(&db, Duration::from_secs(86_400)).unwrap();
    s.insert(&mut event(now_ms(), 4243, 50)).unwrap();
    for f in ["history.db-wal", "history.db-shm"] {
        if shared.join(f).exists() {
            std::fs::set_permissions(shared.join(f), std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        }
    }
    let o = nobody(&["history", "--db", db.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("4242"), "{}", String::from_utf8_lossy(&o.stdout));
    drop(s);
    // unreadable: a clear error, exit 1
    std::fs::set_permissions(&db, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let o = nobody(&["history", "--db", db.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("history.db"), "{}", String::from_utf8_lossy(&o.stderr));
    // nothing there: said, not created
    let o = nobody(&["history", "--db", ro.join("history.db").to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("no history yet at"));
}

/// The policy's own decision, in `--dry-run`, on a synthetic /proc: the guard records a
/// `dry_run` event whose victim is the fake hog, with the command line the writer read and
/// the stall ramp on its timeline (in process, through `Guard::tick`).
#[test]
fn a_dry_run_decision_becomes_an_event() {
    let t = tree("hist-dryrun");
    let proc_root = t.0.join("proc");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/fixtures/proc/6.1.0-50-amd64");
    std::fs::create_dir_all(proc_root.join("pressure")).unwrap();
    std::fs::create_dir_all(proc_root.join("self")).unwrap();
    for f in ["meminfo", "vmstat", "pressure/memory"] {
        std::fs::copy(fixture.join(f), proc_root.join(f)).unwrap();
    }
    let hog = proc_root.join("4000");
    std::fs::create_dir_all(&hog).unwrap();
    std::fs::write(hog.join("stat"), "4000 (hog) R 1 4000 4000 0 -1 0 10 0 5 0 5 5 0 0 20 0 1 0 5000 100000 262144 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n").unwrap();
    std::fs::write(hog.join("status"), "Name:\thog\nTgid:\t4000\nUid:\t0\t0\t0\t0\nVmRSS:\t1048576 kB\nVmSwap:\t0 kB\n").unwrap();
    std::fs::write(hog.join("oom_score_adj"), "0\n").unwrap();
    std::fs::write(hog.join("oom_score"), "500\n").unwrap();
    std::fs::write(hog.join("cmdline"), "hog\0--eat\0memory\0").unwrap();
    let db = t.0.join("history.db");
    let mut cfg = thrashguard_core::config::Config::default();
    cfg.guard.dry_run = true;
    cfg.guard.status_socket = String::new();
    cfg.guard.max_processes = 64;
    cfg.lifeline.authorized_keys = t.0.join("none").to_string_lossy().into_owned();
    cfg.cgroups.watch = false;
    cfg.policy.sustain_ms = 300;
    cfg.policy.sustain_corroborated_ms = 300;
    cfg.policy.available_below_pct = 100.0;
    cfg.history = HistoryConfig { path: db.to_string_lossy().into_owned(), after_s: 1, before_s: 10, ..HistoryConfig::default() };
    let opts = thrashguard::daemon::Options {
        proc_root: proc_root.clone(),
        sys_root: t.0.join("sys"),
        dry_run: true,
        no_self_protect: true,
        duration: None,
    };
    let mut guard = thrashguard::daemon::Guard::new(cfg.clone(), opts).unwrap();
    guard.attach_history(store::Writer::spawn(&cfg.history, &proc_root).unwrap());
    // calm for a while, then a full stall of 100 % (the totals grow as fast as the clock)
    let start = Instant::now();
    let mut stalled_since: Option<Instant> = None;
    let mut decided_at = None;
    while start.elapsed() < Duration::from_secs(20) {
        if start.elapsed() > Duration::from_millis(700) && stalled_since.is_none() {
            stalled_since = Some(Instant::now());
        }
        let us = stalled_since.map_or(0, |s| s.elapsed().as_micros() as u64);
        std::fs::write(
            proc_root.join("pressure/memory"),
            format!("some avg10=90.00 avg60=10.00 avg300=2.00 total={us}\nfull avg10=90.00 avg60=8.00 avg300=1.00 total={us}\n"),
        )
        .unwrap();
        guard.tick();
        if guard.counters.decisions > 0 && decided_at.is_none() {
            decided_at = Some(Instant::now());
        }
        if decided_at.is_some_and(|d| d.elapsed() > Duration::from_millis(1500)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(decided_at.is_some(), "the policy never decided: {:?}", guard.counters);
    assert_eq!(guard.counters.actions, 0, "dry run");
    assert_eq!(guard.finish_history(), 0);
    let events = store::list(&db, None).unwrap();
    assert!(!events.is_empty());
    let e = &events[0];
    assert_eq!((e.action, e.outcome.as_str(), e.victim.pid, e.victim.name.as_str()), (EventAction::DryRun, "dry run", 4000, "hog"));
    assert_eq!(e.victim.cmdline, "hog --eat memory");
    assert_eq!(e.victim.footprint, Kib(1 << 20));
    assert_ne!(e.reason, Reason::Lifeline);
    assert!(e.evidence.full.is_some_and(|f| f > 0.2) && e.evidence.full_mean.is_some_and(|m| m >= 0.2), "{:?}", e.evidence);
    let before: Vec<&Point> = e.timeline.iter().filter(|p| Event::seconds(p) <= 0.0).collect();
    let full = |p: &&Point, f: fn(f32) -> bool| p.full.is_some_and(f);
    assert!(
        before.iter().any(|p| full(p, |f| f < 0.01)) && before.iter().any(|p| full(p, |f| f > 0.2)),
        "calm, then the ramp: {:?}",
        e.timeline
    );
    assert!(e.timeline.iter().any(|p| Event::seconds(p) >= 0.9), "a second after: {:?}", e.timeline.last());
}
