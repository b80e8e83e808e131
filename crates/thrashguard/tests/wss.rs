//! `thrashguard wss` against real processes: a child maps a known number of pages in a
//! mapping of its own (guard pages around it, so no neighbour merges into it), populates
//! them, then keeps reading a known subset and writing another; wss must count exactly
//! those as the working set of that range, and the dirtied ones where the kernel tracks
//! soft-dirty (this host's kernel does not: there it must say "unsupported"). Then every
//! way a process can fail to be measured: exiting mid-measurement, zombie, kernel thread,
//! permission denied, no such pid, captured trees, bad arguments.
// Test helpers may panic: a panic is a failing test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const PAGES: usize = 256; // 1 MiB: below a huge page, so THP never folds it
const TOUCHED: usize = 60; // read each round
const DIRTIED: usize = 40; // written each round

/// Body of the child processes: runs only when spawned by the tests below with TG_WSS set.
/// Maps PAGES pages between two PROT_NONE guard pages, writes every page, prints
/// `ready START-END`, then per stdin line: `loop K D` reads pages 0..K and writes K..K+D
/// every 20 ms from then on; `exit` exits.
#[test]
fn wss_helper_process() {
    if std::env::var("TG_WSS").is_err() {
        return;
    }
    use rustix::mm::{MapFlags, MprotectFlags, ProtFlags, mmap_anonymous, mprotect};
    let ps = rustix::param::page_size();
    let len = (PAGES + 2) * ps;
    // SAFETY: a fresh private anonymous mapping, used only through `base` below.
    let base = unsafe { mmap_anonymous(std::ptr::null_mut(), len, ProtFlags::empty(), MapFlags::PRIVATE) }.expect("mmap");
    // SAFETY: the middle PAGES pages of the mapping made above.
    let mem = unsafe { base.cast::<u8>().add(ps) };
    unsafe { mprotect(mem.cast(), PAGES * ps, MprotectFlags::READ | MprotectFlags::WRITE) }.expect("mprotect");
    let page = |i: usize| {
        // SAFETY: i < PAGES, inside the read-write part of the mapping.
        unsafe { mem.add(i * ps) }
    };
    for i in 0..PAGES {
        // SAFETY: see `page`.
        unsafe { page(i).write_volatile(i as u8 | 1) };
    }
    let start = mem as usize;
    println!("ready {:x}-{:x}", start, start + PAGES * ps);
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for l in std::io::stdin().lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
        let _ = tx.send("exit".into());
    });
    let (mut touch, mut dirty) = (0usize, 0usize);
    loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(cmd) if cmd == "exit" => std::process::exit(0),
            Ok(cmd) => {
                let w: Vec<usize> = cmd.split_whitespace().skip(1).map(|v| v.parse().unwrap()).collect();
                (touch, dirty) = (w[0], w[1]);
                println!("looping {touch} {dirty}");
            }
            Err(_) => {}
        }
        let mut sum = 0u8;
        for i in 0..touch {
            // SAFETY: see `page`.
            sum = sum.wrapping_add(unsafe { page(i).read_volatile() });
        }
        for i in touch..touch + dirty {
            // SAFETY: see `page`.
            unsafe { page(i).write_volatile(sum | 1) };
        }
    }
}

/// A helper child; killed and reaped when dropped.
struct Helper {
    child: Child,
    stdin: ChildStdin,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
    range: String,
}

impl Helper {
    fn spawn() -> Helper {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "wss_helper_process", "--nocapture", "--test-threads=1"])
            .env("TG_WSS", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn helper");
        let stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let range = loop {
            let l = lines.next().expect("helper died before ready").unwrap();
            // the harness may have printed `test wss_helper_process ... ` on the same line
            if let Some((_, r)) = l.split_once("ready ") {
                break r.trim().to_string();
            }
        };
        Helper { child, stdin, lines, range }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn send(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").unwrap();
        if cmd.starts_with("loop") {
            loop {
                let l = self.lines.next().expect("helper died").unwrap();
                if l.contains("looping") {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(60)); // a few rounds in
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tg() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_thrashguard"));
    c.env_remove("THRASHGUARD_CONFIG");
    c
}

/// Run `thrashguard wss ARGS --json`: (exit code, NDJSON lines).
fn wss_json(args: &[&str]) -> (i32, Vec<Value>) {
    let out = tg().arg("wss").args(args).arg("--json").output().expect("run");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines = text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}"))).collect();
    (out.status.code().unwrap_or(-1), lines)
}

fn of_type<'a>(lines: &'a [Value], t: &str) -> Vec<&'a Value> {
    lines.iter().filter(|v| v["type"] == t).collect()
}

fn process<'a>(lines: &'a [Value], pid: &str) -> &'a Value {
    lines
        .iter()
        .find(|v| v["type"] == "process" && v["pid"] == pid.parse::<u64>().unwrap())
        .unwrap_or_else(|| panic!("no process line for {pid}: {lines:#?}"))
}

#[test]
fn working_set_and_dirtied_pages_of_a_known_mapping() {
    let mut h = Helper::spawn();
    let range = h.range.clone();
    // Every page was written: without a reset all of them are referenced.
    let (code, lines) = wss_json(&[&h.pid(), "--range", &range, "--no-reset", "--samples", "1", "--interval", "0.1"]);
    assert_eq!(code, 0, "{lines:#?}");
    let s = of_type(&lines, "sample")[0];
    assert_eq!(s["referenced_pages"], PAGES, "{s}");
    assert_eq!((s["present_pages"].as_u64(), s["scanned_pages"].as_u64()), (Some(PAGES as u64), Some(PAGES as u64)), "{s}");
    assert_eq!((s["mappings"].as_u64(), s["partial_mappings"].as_u64()), (Some(1), Some(0)));
    assert_eq!(s["rss_kib"].as_u64(), Some(PAGES as u64 * 4));

    // Now it reads TOUCHED pages and writes DIRTIED others, over and over: with the reset,
    // each interval's working set is exactly those, twice in a row.
    h.send(&format!("loop {TOUCHED} {DIRTIED}"));
    for method in ["auto", "pread"] {
        let (code, lines) = wss_json(&[&h.pid(), "--range", &range, "--samples", "2", "--interval", "0.3", "--pagemap", method]);
        assert_eq!(code, 0, "{lines:#?}");
        let start = of_type(&lines, "start")[0];
        assert_eq!(start["reset"], true);
        assert!(
            start["warnings"].as_array().unwrap().iter().any(|w| w.as_str().unwrap().contains("perturbs the kernel's reclaim")),
            "{start}"
        );
        let samples = of_type(&lines, "sample");
        assert_eq!(samples.len(), 2, "{lines:#?}");
        for s in samples {
            let referenced = s["referenced_pages"].as_u64().unwrap();
            let want = (TOUCHED + DIRTIED) as u64;
            assert!(referenced.abs_diff(want) <= 2, "referenced {referenced}, want {want}: {s}");
            assert_eq!(s["present_pages"].as_u64(), Some(PAGES as u64));
            match start["soft_dirty"].as_str().unwrap() {
                "supported" => {
                    let dirtied = s["dirtied_pages"].as_u64().expect("dirtied pages");
                    assert!(dirtied.abs_diff(DIRTIED as u64) <= 2, "dirtied {dirtied}, want {DIRTIED}: {s}");
                    assert!(s["dirty_pages_per_s"].as_f64().unwrap() > 0.0);
                }
                "unsupported" => {
                    assert!(s["dirtied_pages"].is_null() && s["dirty_pages_per_s"].is_null(), "{s}");
                    assert!(start["warnings"].to_string().contains("unsupported"), "{start}");
                }
                other => panic!("soft_dirty {other}"),
            }
        }
        let m = start["pagemap_method"].as_str().unwrap();
        assert!(if method == "pread" { m == "pread" } else { m == "pagemap_scan" || m == "pread" }, "{start}");
    }

    // The text form says the same, and "unsupported" where the kernel cannot count.
    let out = tg().args(["wss", &h.pid(), "--range", &range, "--samples", "1", "--interval", "0.2"]).output().unwrap();
    let (text, err) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}{err}");
    assert!(text.contains("referenced") && text.lines().count() == 2, "{text}");
    assert!(err.contains("perturbs the kernel's reclaim decisions"), "{err}");
    if err.contains("no soft-dirty") {
        assert!(text.contains("unsupported"), "{text}");
    }

    // Without --range: the whole process from smaps_rollup, at least the mapping's pages.
    let (code, lines) = wss_json(&[&h.pid(), "--samples", "1", "--interval", "0.2"]);
    assert_eq!(code, 0);
    let s = of_type(&lines, "sample")[0];
    assert!(s["referenced_pages"].as_u64().unwrap() >= (TOUCHED + DIRTIED) as u64, "{s}");
    assert!(s["rss_kib"].as_u64().unwrap() >= PAGES as u64 * 4, "{s}");
}

#[test]
fn a_process_exiting_mid_measurement_is_an_outcome_not_an_error() {
    let mut leaving = Helper::spawn();
    let staying = Helper::spawn();
    let mut wss = tg()
        .args(["wss", &leaving.pid(), &staying.pid(), "--samples", "6", "--interval", "0.25", "--no-reset", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(wss.stdout.take().unwrap()).lines();
    // after the first sample of the leaving one, it exits and is reaped
    let mut all = Vec::new();
    for l in lines.by_ref() {
        let v: Value = serde_json::from_str(&l.unwrap()).unwrap();
        let first = v["type"] == "sample" && v["pid"] == leaving.pid().parse::<u64>().unwrap();
        all.push(v);
        if first {
            leaving.send("exit");
            let _ = leaving.child.wait();
            break;
        }
    }
    all.extend(lines.map(|l| serde_json::from_str::<Value>(&l.unwrap()).unwrap()));
    let code = wss.wait().unwrap().code();
    assert_eq!(code, Some(0), "{all:#?}");
    let left = process(&all, &leaving.pid());
    assert_eq!(left["outcome"], "exited", "{left}");
    assert!(left["samples"].as_u64().unwrap() >= 1 && left["samples"].as_u64().unwrap() < 6, "{left}");
    assert_eq!(process(&all, &staying.pid())["samples"], 6);
    assert_eq!(of_type(&all, "end")[0]["measured"], 2);
}

#[test]
fn zombie_kernel_thread_missing_pid() {
    let mut z = Helper::spawn();
    z.send("exit");
    // not reaped: a zombie until Helper's drop waits for it
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(format!("/proc/{}/stat", z.pid())).unwrap().contains(") Z ") {
        assert!(Instant::now() < deadline, "helper never became a zombie");
        std::thread::sleep(Duration::from_millis(20));
    }
    let kthreadd = std::fs::read_to_string("/proc/2/stat").unwrap_or_default().contains("(kthreadd)");
    let (code, lines) = wss_json(&[&z.pid(), "2", "4194305", "--samples", "1", "--interval", "0.1"]);
    assert_eq!(code, 1, "{lines:#?}");
    let zl = process(&lines, &z.pid());
    assert_eq!(zl["outcome"], "zombie", "{zl}");
    assert!(zl["message"].as_str().unwrap().contains("zombie"));
    if kthreadd {
        let k = process(&lines, "2");
        assert_eq!((k["outcome"].as_str(), k["message"].as_str()), (Some("kernel_thread"), Some("kernel thread: no user memory")));
    }
    assert_eq!(process(&lines, "4194305")["outcome"], "not_found");
    assert!(of_type(&lines, "sample").is_empty());
    // text: one clear line each
    let out = tg().args(["wss", &z.pid(), "--samples", "1", "--interval", "0.1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("{} (", z.pid())));
}

#[test]
fn permission_denied_when_unprivileged() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED: not root, cannot drop to another user to be denied");
        return;
    }
    let h = Helper::spawn(); // root's
    use std::os::unix::process::CommandExt;
    for extra in [&[][..], &["--no-reset"][..]] {
        let out = tg()
            .arg("wss")
            .arg(h.pid())
            .args(["--samples", "1", "--interval", "0.1", "--json"])
            .args(extra)
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{text}{}", String::from_utf8_lossy(&out.stderr));
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let p = process(&lines, &h.pid());
        assert_eq!(p["outcome"], "permission_denied", "{p}");
        assert!(p["message"].as_str().unwrap().contains("permission denied on"), "{p}");
    }
}

/// A captured tree: the parsing side, with no live process behind it.
#[test]
fn captured_trees_and_bad_input() {
    let fx = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/fixtures/proc/6.18.44-host");
    let dir = std::env::temp_dir().join(format!("tg-wss-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mk = |pid: &str, stat: &std::path::Path, rollup: &[u8]| {
        std::fs::create_dir_all(dir.join(pid)).unwrap();
        std::fs::copy(stat, dir.join(pid).join("stat")).unwrap();
        std::fs::write(dir.join(pid).join("smaps_rollup"), rollup).unwrap();
    };
    let rollup = std::fs::read(fx.join("wss/smaps_rollup")).unwrap();
    mk("16051", &fx.join("wss/stat"), &rollup);
    mk("2", &fx.join("kthread/stat"), b"");
    mk("2564", &fx.join("zombie/stat"), b"");
    mk("77", &fx.join("wss/stat"), b"Rss: lots kB\n");
    mk("78", &fx.join("wss/stat"), b"");
    let root = dir.to_str().unwrap();
    let (code, lines) =
        wss_json(&["--proc-root", root, "16051", "2", "2564", "77", "78", "--no-reset", "--samples", "1", "--interval", "0.05"]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, 1, "{lines:#?}");
    let start = of_type(&lines, "start")[0];
    assert_eq!(start["soft_dirty"], "unknown", "no self/ in a captured tree");
    let s = of_type(&lines, "sample");
    assert_eq!(s.len(), 1, "{lines:#?}");
    assert_eq!(
        (s[0]["rss_kib"].as_u64(), s[0]["referenced_kib"].as_u64(), s[0]["comm"].as_str()),
        (Some(14144), Some(14144), Some("python3"))
    );
    assert_eq!(process(&lines, "2")["outcome"], "kernel_thread");
    assert_eq!(process(&lines, "2564")["outcome"], "zombie");
    let bad = process(&lines, "77");
    assert_eq!(bad["outcome"], "failed");
    assert!(bad["message"].as_str().unwrap().contains("smaps_rollup"), "{bad}");
    assert_eq!(process(&lines, "78")["outcome"], "exited", "an empty smaps_rollup is what an exited process reads");

    for args in [
        &["1", "--range", "zz-1"][..],
        &["1", "--range", "2000-1000"],
        &["1", "--interval", "0"],
        &["1", "--interval", "-1"],
        &["1", "--samples", "0"],
        &["x"],
        &[],
    ] {
        let out = tg().arg("wss").args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn footprints_give_growth_and_the_working_set() {
    let h = Helper::spawn();
    let pid: u32 = h.pid().parse().unwrap();
    let stat = thrashguard_core::parse::pid::parse_stat(&std::fs::read(format!("/proc/{pid}/stat")).unwrap()).unwrap();
    let id = thrashguard_core::units::ProcId { pid: stat.pid, start_time: stat.start_time };
    let mut f = thrashguard::wss::Footprints::new(std::path::Path::new("/proc"), 4).unwrap();
    let first = f.observe(id, true).expect("alive");
    assert_eq!(first.kib_per_s, None);
    assert!(first.footprint.0 >= PAGES as u64 * 4 && first.working_set.is_some(), "{first:?}");
    std::thread::sleep(Duration::from_millis(50));
    let second = f.observe(id, false).expect("alive");
    assert!(second.kib_per_s.is_some() && second.working_set.is_none(), "{second:?}");
    let reused = thrashguard_core::units::ProcId { start_time: id.start_time + 1, ..id };
    assert_eq!(f.observe(reused, false), None, "another start time: not this process");
    drop(h);
    assert_eq!(f.observe(id, false), None, "exited");
}
