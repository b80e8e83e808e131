//! `thrashguard top`: `--once` frames from a captured /proc tree and from this host (a known
//! child process holding 64 MiB must be listed), bad input refused with a clear error, and
//! the live view driven in a real terminal (tmux): header, sparklines and the known process
//! on screen, a sort key, then q, Ctrl-C, SIGTERM and a panic each leave with the terminal
//! restored (alternate screen left, canonical mode back).
//!
//! tmux: the live tests skip with a message when it is missing, unless
//! `THRASHGUARD_REQUIRE_TMUX=1` (set by .ci/run, which installs it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{Tree, tree, write};

/// The known process's name (its comm).
const MARKER: &str = "tgtopmarker";

fn tg() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_thrashguard"));
    c.env_remove("THRASHGUARD_CONFIG");
    c
}

/// A config whose status socket nobody listens on: "no guard running".
fn config(dir: &Path) -> PathBuf {
    let c = dir.join("tg.toml");
    std::fs::write(&c, format!("[guard]\nstatus_socket = {:?}\n", dir.join("nobody.sock"))).unwrap();
    c
}

/// Body of the known process: runs only when spawned by the tests below with TG_TOP_HOLD.
#[test]
fn helper_process() {
    let Ok(mib) = std::env::var("TG_TOP_HOLD") else { return };
    // the thread-group leader's name, whichever thread runs this
    std::fs::write("/proc/self/comm", MARKER).expect("rename");
    let mib: usize = mib.parse().unwrap();
    let mut mem = vec![0u8; mib << 20];
    for (i, page) in mem.chunks_mut(4096).enumerate() {
        page[0] = i as u8 | 1;
    }
    println!("ready");
    loop {
        std::thread::sleep(Duration::from_millis(500));
        std::hint::black_box(&mem);
    }
}

/// The known process, killed when dropped.
struct Marker(Child);

impl Marker {
    fn start() -> Marker {
        use std::io::BufRead;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "helper_process", "--nocapture", "--test-threads", "1"])
            .env("TG_TOP_HOLD", "64")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while out.read_line(&mut line).unwrap() > 0 && !line.contains("ready") {
            line.clear();
        }
        assert!(line.contains("ready"), "the marker process did not start");
        Marker(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Marker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The row of `pid` in a frame, if listed.
fn row_of(frame: &str, pid: u32) -> Option<String> {
    frame.lines().find(|l| l.trim_start_matches('│').split_whitespace().next() == Some(&pid.to_string())).map(str::to_string)
}

/// A size column (`64.3M`, `1.5G`, `512K`) in MiB.
fn mib(s: &str) -> f64 {
    let (num, unit) = s.split_at(s.len() - 1);
    let v: f64 = num.parse().unwrap_or_else(|_| panic!("not a size: {s}"));
    v * match unit {
        "K" => 1.0 / 1024.0,
        "M" => 1.0,
        "G" => 1024.0,
        other => panic!("unit {other} in {s}"),
    }
}

#[test]
fn once_lists_a_known_child_on_this_host() {
    let dir = tree("top-once");
    let cfg = config(&dir.0);
    let marker = Marker::start();
    // everything (no filter), then only the marker
    for extra in [&["--count", "100000"][..], &["--filter", "^tgtop"][..]] {
        let o = tg().args(["--config", cfg.to_str().unwrap(), "top", "--once", "--interval", "0.3"]).args(extra).output().unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{text}\n{}", String::from_utf8_lossy(&o.stderr));
        assert!(text.starts_with("thrashguard top — ") && text.contains("no guard running"), "{text}");
        for label in ["full stall", "some stall", "headroom", "FOOTPRINT▼", "last actions", "q quit"] {
            assert!(text.contains(label), "{label} missing:\n{text}");
        }
        let row = row_of(&text, marker.pid()).unwrap_or_else(|| panic!("marker {} not listed:\n{text}", marker.pid()));
        assert!(row.contains(MARKER), "{row}");
        let footprint = mib(row.trim_start_matches('│').split_whitespace().nth(1).unwrap());
        assert!((64.0..200.0).contains(&footprint), "footprint {footprint} MiB: {row}");
        // a rate once two scans were taken: the marker holds still (a few pages of its
        // harness may still come in)
        let growth = row.trim_start_matches('│').split_whitespace().nth(4).unwrap();
        assert!(growth.parse::<f64>().is_ok_and(|g| g.abs() < 5.0), "growth {growth}: {row}");
        if extra[0] == "--filter" {
            let rows = text.lines().filter(|l| l.contains(MARKER)).count();
            assert_eq!(rows, 1, "only the marker matches: {text}");
            assert!(text.contains("processes: 1 of"), "{text}");
        }
    }
}

/// A captured /proc: the fixture kernel files with swap in use, one process of 1 GiB
/// resident and 512 MiB swapped, a kernel thread and a process whose stat is garbage.
fn captured(dir: &Tree) -> PathBuf {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/fixtures/proc/6.18.44-host");
    let proc = dir.0.join("proc");
    let read = |f: &str| std::fs::read_to_string(fixtures.join(f)).unwrap();
    let meminfo: String = read("meminfo")
        .lines()
        .map(|l| match l.split(':').next() {
            Some("SwapTotal") => "SwapTotal:       2097152 kB".to_string(),
            Some("SwapFree") => "SwapFree:        1048576 kB".to_string(),
            _ => l.to_string(),
        })
        .map(|l| l + "\n")
        .collect();
    write(&proc, "meminfo", &meminfo);
    write(&proc, "vmstat", &read("vmstat"));
    write(&proc, "pressure/memory", &read("pressure/memory"));
    // pid 4242 "captured hog": rss 262144 pages (1 GiB at 4 KiB pages)
    let stat = read("pid/stat").replacen("2510 (tgfixture)", "4242 (captured hog)", 1);
    let mut fields: Vec<&str> = stat.split(' ').collect();
    fields[24] = "262144"; // field 24, rss, one token later: the name has a space
    write(&proc, "4242/stat", &fields.join(" "));
    let status: String = read("pid/status")
        .lines()
        .map(|l| match l.split(':').next() {
            Some("Name") => "Name:\tcaptured hog".to_string(),
            Some("Pid") => "Pid:\t4242".to_string(),
            Some("VmRSS") => "VmRSS:\t 1048576 kB".to_string(),
            Some("VmSwap") => "VmSwap:\t  524288 kB".to_string(),
            _ => l.to_string(),
        })
        .map(|l| l + "\n")
        .collect();
    write(&proc, "4242/status", &status);
    write(&proc, "2/stat", &read("kthread/stat"));
    write(&proc, "77/stat", "77 (broken");
    proc
}

#[test]
fn once_from_a_captured_tree() {
    let dir = tree("top-tree");
    let proc = captured(&dir);
    let cfg = config(&dir.0);
    let o = tg()
        .args(["--config", cfg.to_str().unwrap(), "--proc-root", proc.to_str().unwrap(), "top", "--once", "--interval", "0.1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains("no guard running"), "{text}");
    // MemTotal 24683656 kB, MemAvailable 24465372 kB; swap 1 GiB free of 2 GiB
    assert!(text.contains("memory: 23.3G available of 23.5G (99 %), swap 1.0G free of 2.0G, headroom 24.3G"), "{text}");
    assert!(text.contains("full stall 0.0 %") && text.contains("headroom 24.3G"), "{text}");
    let row = row_of(&text, 4242).unwrap_or_else(|| panic!("4242 not listed:\n{text}"));
    let cols: Vec<&str> = row.trim_matches('│').split_whitespace().collect();
    assert_eq!(&cols[..7], ["4242", "1.5G", "1.0G", "512.0M", "0", "0", "captured"], "{row}");
    assert!(text.contains("processes: 1 of"), "the kernel thread and the broken stat are not rows: {text}");
}

#[test]
fn bad_input_is_refused_clearly() {
    let dir = tree("top-bad");
    let cfg = config(&dir.0);
    let run = |args: &[&str]| {
        let o = tg().args(["--config", cfg.to_str().unwrap()]).args(args).stdin(Stdio::null()).output().unwrap();
        (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    // not a terminal: usage error, pointing at --once
    let (code, err) = run(&["top"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("needs a terminal") && err.contains("--once"), "{err}");
    for (args, what) in [
        (&["top", "--once", "--interval", "0"][..], "outside 0.1..=3600"),
        (&["top", "--once", "--interval", "abc"][..], "not a number of seconds"),
        (&["top", "--once", "--interval", "NaN"][..], "outside"),
        (&["top", "--once", "--count", "0"][..], "--count"),
        (&["top", "--once", "--filter", "("][..], "--filter"),
    ] {
        let (code, err) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(what), "{args:?}: {err}");
    }
    // a /proc that is not one: runtime failure naming the file
    let (code, err) = run(&["--proc-root", dir.0.join("nothing").to_str().unwrap(), "top", "--once"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("meminfo"), "{err}");
    write(&dir.0, "garbage/meminfo", "MemTotal: lots\n");
    write(&dir.0, "garbage/vmstat", "\0\0\0");
    let (code, err) = run(&["--proc-root", dir.0.join("garbage").to_str().unwrap(), "top", "--once", "--interval", "0.1"]);
    assert!(code == Some(0) || code == Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

// ---- the live view in tmux ----

/// A private tmux server, killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// `None` (with a skip line) when tmux is missing and not required.
    fn new(tag: &str) -> Option<Tmux> {
        if Command::new("tmux").arg("-V").output().is_err() {
            assert!(
                std::env::var("THRASHGUARD_REQUIRE_TMUX").as_deref() != Ok("1"),
                "tmux is missing and THRASHGUARD_REQUIRE_TMUX=1 (apt-get install tmux)"
            );
            eprintln!("SKIP: tmux not installed; the live `top` tests need it (apt-get install tmux)");
            return None;
        }
        Some(Tmux { socket: format!("tg-top-{tag}-{}", std::process::id()) })
    }

    fn cmd(&self, args: &[&str]) -> String {
        let o = Command::new("tmux").args(["-L", &self.socket, "-f", "/dev/null"]).args(args).output().unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Start `shell_command` in a detached 160x48 session.
    fn start(&self, shell_command: &str) {
        let o = Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null", "new-session", "-d", "-s", "top", "-x", "160", "-y", "48", shell_command])
            .env_remove("THRASHGUARD_CONFIG")
            .env("TERM", "xterm-256color")
            .status()
            .unwrap();
        assert!(o.success(), "tmux new-session failed");
    }

    fn screen(&self) -> String {
        self.cmd(&["capture-pane", "-p", "-t", "top"])
    }

    fn var(&self, name: &str) -> String {
        self.cmd(&["display-message", "-p", "-t", "top", &format!("#{{{name}}}")]).trim().to_string()
    }

    /// The screen once `pred` holds (20 s at most).
    fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "never saw {what}:\n{s}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).output();
    }
}

/// `top` in a shell that, after it exits, prints its exit status and whether the terminal
/// is back in canonical mode with echo, then stays for the capture.
fn top_in_shell(cfg: &Path, extra: &str) -> String {
    format!(
        "RUST_BACKTRACE=0 '{}' --config '{}' top --interval 0.5 {extra}; echo \"top-exit=$?\"; \
         stty -a | tr ' ;' '\\n\\n' | grep -x -e '-\\?icanon' -e '-\\?echo' | tr '\\n' ' '; echo; sleep 120",
        env!("CARGO_BIN_EXE_thrashguard"),
        cfg.display()
    )
}

/// Wait for top to exit in the pane; return the screen after.
fn after_exit(t: &Tmux) -> String {
    let s = t.wait_for("the exit line", |s| s.contains("top-exit=") && s.contains("icanon"));
    assert_eq!(t.var("alternate_on"), "0", "the alternate screen was left:\n{s}");
    assert!(s.contains("icanon echo") && !s.contains("-icanon") && !s.contains("-echo"), "the terminal is back to cooked mode:\n{s}");
    assert!(!s.contains("q quit") && !s.contains("full stall"), "the frame went with the alternate screen:\n{s}");
    s
}

/// The pid of the (single) child of `parent`: top, under the pane's shell.
fn child_of(parent: u32) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        let ppid: u32 = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
        (ppid == parent).then_some(pid)
    })
}

#[test]
fn live_view_in_a_real_terminal_quits_on_q() {
    let Some(t) = Tmux::new("q") else { return };
    let dir = tree("top-tmux-q");
    let cfg = config(&dir.0);
    let marker = Marker::start();
    t.start(&top_in_shell(&cfg, "--filter ^tgtop"));
    let s = t.wait_for("the marker in the list", |s| s.contains(MARKER));
    assert_eq!(t.var("alternate_on"), "1", "top draws on the alternate screen");
    assert!(s.starts_with("thrashguard top — ") && s.contains("no guard running") && s.contains("sorted by footprint"), "{s}");
    for label in ["full stall", "some stall", "headroom", "processes: 1 of", "last actions", "q quit"] {
        assert!(s.contains(label), "{label} missing:\n{s}");
    }
    let row = row_of(&s, marker.pid()).unwrap_or_else(|| panic!("marker {} not listed:\n{s}", marker.pid()));
    assert!(mib(row.trim_start_matches('│').split_whitespace().nth(1).unwrap()) >= 64.0, "{row}");
    // the ring fills: more samples, the frame is redrawn every interval
    t.wait_for("growth sorting", |s| {
        t.cmd(&["send-keys", "-t", "top", "g"]);
        s.contains("sorted by growth") && s.contains("GROW MiB/s▼")
    });
    t.cmd(&["send-keys", "-t", "top", "q"]);
    let s = after_exit(&t);
    assert!(s.contains("top-exit=0"), "{s}");
}

#[test]
fn live_view_quits_on_ctrl_c_and_sigterm_and_restores_after_a_panic() {
    let dir = tree("top-tmux-sig");
    let cfg = config(&dir.0);
    // Ctrl-C (a key in raw mode, not a signal)
    let Some(t) = Tmux::new("ctrl-c") else { return };
    t.start(&top_in_shell(&cfg, ""));
    t.wait_for("the first frame", |s| s.contains("thrashguard top") && s.contains("q quit"));
    t.cmd(&["send-keys", "-t", "top", "C-c"]);
    let s = after_exit(&t);
    assert!(s.contains("top-exit=0"), "{s}");

    // SIGTERM from outside
    let Some(t) = Tmux::new("sigterm") else { return };
    t.start(&top_in_shell(&cfg, ""));
    t.wait_for("the first frame", |s| s.contains("thrashguard top") && s.contains("q quit"));
    let shell: u32 = t.var("pane_pid").parse().unwrap();
    let top = child_of(shell).expect("top under the pane's shell");
    assert!(Command::new("kill").arg(top.to_string()).status().unwrap().success());
    let s = after_exit(&t);
    assert!(s.contains("top-exit=0"), "{s}");

    // a panic: the terminal is restored first, then the message is readable
    let Some(t) = Tmux::new("panic") else { return };
    t.start(&top_in_shell(&cfg, "--test-panic"));
    let s = after_exit(&t);
    assert!(s.contains("top-exit=101") && s.contains("--test-panic: panicking after the first frame"), "{s}");
    // nothing printed after the message moved the cursor back over it
    let panicked = s.find("thread 'main'").unwrap_or_else(|| panic!("the panic's first line is intact:\n{s}"));
    assert!(panicked < s.find("top-exit=101").unwrap(), "{s}");
}

#[test]
fn once_shows_a_running_guards_phase() {
    let dir = tree("top-guard");
    let socket = dir.0.join("status.sock");
    let cfg = dir.0.join("tg.toml");
    std::fs::write(&cfg, format!("[guard]\nstatus_socket = {socket:?}\n")).unwrap();
    let mut d = common::Daemon::spawn(&["--config", cfg.to_str().unwrap(), "daemon", "--dry-run", "--no-self-protect", "--duration", "60"]);
    d.wait_for("guarding");
    let o = tg().args(["--config", cfg.to_str().unwrap(), "top", "--once", "--interval", "0.2", "--count", "3"]).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains("guard: calm (0 decisions, 0 actions)") && text.contains("no action since the guard started"), "{text}");
    d.stop();
}

/// A stand-in guard on `socket`: the first reply names one last action, every later one
/// another, as a guard that acted again would.
fn fake_guard(socket: &Path) -> std::thread::JoinHandle<()> {
    let listener = std::os::unix::net::UnixListener::bind(socket).unwrap();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { return };
            let (pid, name) = if n == 0 { (111, "firsthog") } else { (222, "secondhog") };
            let body = format!(
                "{{\"ok\":true,\"action\":\"status\",\"host\":\"x\",\"phase\":\"recovering\",\"decisions\":{},\"actions\":{},\
                 \"top\":[],\"last_action\":{{\"pid\":{pid},\"name\":\"{name}\",\"scope\":\"v2:/user.slice\"}}}}",
                n.min(1) + 1,
                n.min(1) + 1
            );
            let _ = std::io::Write::write_all(&mut stream, body.as_bytes());
            if n > 100 {
                return;
            }
        }
    })
}

#[test]
fn live_view_shows_the_guards_phase_and_last_actions() {
    let Some(t) = Tmux::new("guard") else { return };
    let dir = tree("top-tmux-guard");
    let socket = dir.0.join("status.sock");
    let cfg = dir.0.join("tg.toml");
    std::fs::write(&cfg, format!("[guard]\nstatus_socket = {socket:?}\n")).unwrap();
    let _guard = fake_guard(&socket);
    t.start(&top_in_shell(&cfg, ""));
    let s = t.wait_for("both actions", |s| s.contains("secondhog"));
    assert!(s.contains("guard: recovering (2 decisions, 2 actions)"), "{s}");
    let first = s.lines().find(|l| l.contains("firsthog")).unwrap_or_else(|| panic!("{s}"));
    assert!(first.contains("before top started  111 firsthog (v2:/user.slice)"), "{first}");
    let second = s.lines().find(|l| l.contains("secondhog")).unwrap();
    assert!(second.contains(" s ago  222 secondhog (v2:/user.slice)"), "{second}");
    assert!(s.find("secondhog") < s.find("firsthog"), "newest first: {s}");
    t.cmd(&["send-keys", "-t", "top", "Escape"]);
    assert!(after_exit(&t).contains("top-exit=0"));
}
