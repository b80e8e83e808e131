//! Victim ranking on synthetic /proc trees: exclusions, vanished and garbled processes,
//! and the fault/growth weighting between two scans.
// Test helpers may panic: a panic is a failing test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_arguments)]

use std::path::{Path, PathBuf};

use thrashguard::scan::{Preferences, Scanner};
use thrashguard_core::policy::rank::RankBy;
use thrashguard_core::units::Pid;

struct Tree(PathBuf);
impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Write /proc/<pid>/{stat,status,oom_score_adj}: `rss_mib` resident, `swap_mib` swapped.
fn proc_entry(root: &Path, pid: u32, comm: &str, state: char, flags: u32, majflt: u64, rss_mib: u64, swap_mib: u64, adj: i32) {
    let d = root.join(pid.to_string());
    std::fs::create_dir_all(&d).unwrap();
    let rss_pages = rss_mib * 256;
    let stat = format!(
        "{pid} ({comm}) {state} 1 {pid} {pid} 0 -1 {flags} 10 0 {majflt} 0 5 5 0 0 20 0 1 0 {start} 100000 {rss_pages} 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n",
        start = 1000 + pid
    );
    std::fs::write(d.join("stat"), stat).unwrap();
    if flags & 0x0020_0000 == 0 {
        std::fs::write(
            d.join("status"),
            format!("Name:\t{comm}\nTgid:\t{pid}\nUid:\t0\t0\t0\t0\nVmRSS:\t{} kB\nVmSwap:\t{} kB\n", rss_mib * 1024, swap_mib * 1024),
        )
        .unwrap();
    } else {
        std::fs::write(d.join("status"), format!("Name:\t{comm}\nTgid:\t{pid}\nUid:\t0\t0\t0\t0\n")).unwrap();
    }
    std::fs::write(d.join("oom_score_adj"), format!("{adj}\n")).unwrap();
    std::fs::write(d.join("oom_score"), "100\n").unwrap();
    std::fs::write(d.join("cmdline"), format!("{comm}\0--flag\0")).unwrap();
}

fn tree(tag: &str) -> Tree {
    let root = std::env::temp_dir().join(format!("tg-victims-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("self")).unwrap();
    std::fs::write(root.join("meminfo"), "MemTotal: 1 kB\n").unwrap(); // a non-pid entry
    Tree(root)
}

fn scanner(root: &Path, prefs: Preferences) -> Scanner {
    Scanner::new(root, 1024, Pid(4242), prefs).unwrap()
}

#[test]
fn never_init_kthreads_self_immune_or_zombies() {
    let t = tree("excl");
    proc_entry(&t.0, 1, "init", 'S', 0, 0, 9000, 0, 0);
    proc_entry(&t.0, 2, "kthreadd", 'S', 0x0020_0040, 0, 0, 0, 0);
    proc_entry(&t.0, 4242, "thrashguard", 'S', 0, 0, 8000, 0, -1000);
    proc_entry(&t.0, 100, "sshd-immune", 'S', 0, 0, 7000, 0, -1000);
    proc_entry(&t.0, 150, "dying", 'Z', 0, 0, 6000, 0, 0);
    proc_entry(&t.0, 200, "medium", 'S', 0, 0, 300, 200, 0);
    proc_entry(&t.0, 300, "small", 'S', 0, 0, 100, 0, 0);
    let mut s = scanner(&t.0, Preferences::default());
    let stats = s.scan(None);
    assert_eq!(stats.listed, 7);
    let v = s.pick(RankBy::Footprint).expect("a victim");
    assert_eq!((v.id.pid, v.comm.to_string()), (Pid(200), "medium".to_string()));
    assert_eq!(v.footprint.0, 500 * 1024, "RSS + swap");
}

#[test]
fn vanished_and_garbled_processes_are_skipped() {
    let t = tree("gone");
    proc_entry(&t.0, 10, "ok", 'S', 0, 0, 100, 0, 0);
    // listed, but its files are gone (it exited mid-scan)
    std::fs::create_dir_all(t.0.join("11")).unwrap();
    // garbled stat
    proc_entry(&t.0, 12, "garbled", 'S', 0, 0, 5000, 0, 0);
    std::fs::write(t.0.join("12/stat"), "12 (garbled) S 1 2 3").unwrap();
    // stat fine, status vanished between the two reads: counted gone, not a victim
    proc_entry(&t.0, 13, "half", 'S', 0, 0, 6000, 0, 0);
    std::fs::remove_file(t.0.join("13/status")).unwrap();
    // big, but vanishes between ranking and the oom_score_adj read
    proc_entry(&t.0, 14, "late", 'S', 0, 0, 7000, 0, 0);
    let mut s = scanner(&t.0, Preferences::default());
    let stats = s.scan(None);
    // 13 is recorded from its stat, then found gone when its status is read
    assert_eq!((stats.recorded, stats.gone, stats.unreadable), (3, 2, 1), "{stats:?}");
    std::fs::remove_dir_all(t.0.join("14")).unwrap();
    assert_eq!(s.pick(RankBy::Footprint).map(|v| v.id.pid), Some(Pid(10)));
}

#[test]
fn the_faulting_grower_beats_the_bigger_idle_process() {
    let t = tree("grow");
    proc_entry(&t.0, 20, "idle-big", 'S', 0, 0, 900, 0, 0);
    proc_entry(&t.0, 21, "hog", 'R', 0, 100, 500, 0, 0);
    let mut s = scanner(&t.0, Preferences::default());
    s.scan(None);
    assert_eq!(s.pick(RankBy::Footprint).map(|v| v.id.pid), Some(Pid(20)), "first scan: size alone");
    // between scans the hog grew by 200 MiB (partly into swap) and faulted 50,000 times
    proc_entry(&t.0, 21, "hog", 'R', 0, 50_100, 500, 200, 0);
    s.scan(None);
    let v = s.pick(RankBy::Footprint).expect("victim");
    assert_eq!(v.id.pid, Pid(21));
    assert_eq!((v.majflt_delta, v.growth_kib), (50_000, 200 * 1024));
}

#[test]
fn a_reused_pid_gets_no_deltas() {
    let t = tree("reuse");
    proc_entry(&t.0, 30, "old", 'S', 0, 100, 500, 0, 0);
    let mut s = scanner(&t.0, Preferences::default());
    s.scan(None);
    // same pid, a new process (another start time): no growth or fault history carried over
    let stat = std::fs::read_to_string(t.0.join("30/stat")).unwrap().replace(" 1030 ", " 99999 ");
    std::fs::write(t.0.join("30/stat"), stat).unwrap();
    proc_entry(&t.0, 31, "other", 'S', 0, 0, 10, 0, 0);
    s.scan(None);
    let c = s.candidates().iter().find(|c| c.id.pid == Pid(30)).expect("listed");
    assert_eq!((c.id.start_time, c.majflt_delta, c.growth_kib), (99999, 0, 0));
}

#[test]
fn prefer_and_avoid_patterns_on_name_and_command_line() {
    let t = tree("prefs");
    proc_entry(&t.0, 40, "firefox", 'S', 0, 0, 2000, 0, 0);
    proc_entry(&t.0, 41, "Web Content", 'S', 0, 0, 600, 0, 0);
    proc_entry(&t.0, 42, "postgres", 'S', 0, 0, 1500, 0, 0);
    let prefs = Preferences::new(&["^Web Content$".into()], &["firefox".into()]).unwrap();
    let mut s = scanner(&t.0, prefs);
    s.scan(None);
    assert_eq!(s.pick(RankBy::Footprint).map(|v| v.id.pid), Some(Pid(41)));
}

#[test]
fn scope_members_limit_the_choice() {
    let t = tree("scope");
    proc_entry(&t.0, 50, "outside-big", 'S', 0, 0, 9000, 0, 0);
    proc_entry(&t.0, 51, "inside", 'S', 0, 0, 100, 0, 0);
    let mut s = scanner(&t.0, Preferences::default());
    s.scan(Some(&[51, 77]));
    assert_eq!(s.pick(RankBy::Footprint).map(|v| v.id.pid), Some(Pid(51)));
    s.scan(Some(&[]));
    assert_eq!(s.pick(RankBy::Footprint), None);
}

#[test]
fn capacity_is_never_exceeded() {
    let t = tree("cap");
    for pid in 100..200 {
        proc_entry(&t.0, pid, "p", 'S', 0, 0, 1, 0, 0);
    }
    let mut s = Scanner::new(&t.0, 64, Pid(4242), Preferences::default()).unwrap();
    let stats = s.scan(None);
    assert_eq!((stats.recorded, stats.over_capacity), (64, 36));
}

#[test]
fn without_swap_in_use_no_status_is_read_and_rss_is_the_footprint() {
    let t = tree("noswap");
    proc_entry(&t.0, 60, "big", 'S', 0, 0, 800, 0, 0);
    proc_entry(&t.0, 61, "small", 'S', 0, 0, 100, 0, 0);
    // a status that would fail to parse if it were read
    std::fs::write(t.0.join("60/status"), "garbage").unwrap();
    let mut s = scanner(&t.0, Preferences::default());
    s.scan_with(None, false);
    let v = s.pick(RankBy::Footprint).expect("victim");
    assert_eq!((v.id.pid, v.footprint.0), (Pid(60), 800 * 1024));
}

#[test]
fn swap_is_read_only_for_the_best_candidates() {
    let t = tree("top");
    // 300 small processes and one whose resident size ranks it first
    for pid in 1000..1300 {
        proc_entry(&t.0, pid, "small", 'S', 0, 0, 1, 50, 0);
    }
    proc_entry(&t.0, 2000, "hog", 'S', 0, 0, 400, 600, 0);
    let mut s = scanner(&t.0, Preferences::default());
    s.scan(None);
    let with_swap = s.candidates().iter().filter(|c| c.swap.0 > 0).count();
    assert_eq!(with_swap, thrashguard::scan::DETAIL_TOP, "status read for the top {} only", thrashguard::scan::DETAIL_TOP);
    let v = s.pick(RankBy::Footprint).expect("victim");
    assert_eq!((v.id.pid, v.footprint.0), (Pid(2000), 1000 * 1024));
}

#[test]
fn a_captured_tree_holds_no_descriptor() {
    let t = tree("noheld");
    proc_entry(&t.0, 60, "p", 'S', 0, 0, 1, 0, 0);
    let mut s = scanner(&t.0, Preferences::default());
    s.scan(None);
    assert_eq!(s.held_open(), 0, "plain files could be replaced under a held descriptor");
}

/// On the real /proc a scan keeps every statm file open for the next one; a child that
/// exits between two scans is gone from the second (its held descriptor reads nothing
/// more, whatever process gets its pid) and its descriptor is closed.
#[test]
fn held_stat_files_follow_their_process() {
    let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    let pid = Pid(child.id());
    let mut s = Scanner::new(Path::new("/proc"), 65_536, Pid(std::process::id()), Preferences::default()).unwrap();
    s.scan(None);
    let listed = |s: &Scanner| s.candidates().iter().any(|c| c.id.pid == pid);
    assert!(listed(&s));
    let held = s.held_open();
    assert!(held >= s.candidates().len().saturating_sub(4), "held {held} of {}", s.candidates().len());
    s.scan(None);
    assert!(listed(&s), "read again through its held descriptor");
    child.kill().unwrap();
    child.wait().unwrap();
    s.scan(None);
    assert!(!listed(&s), "an exited child is not a candidate");
    let fd_dir = std::fs::read_dir("/proc/self/fd").unwrap();
    let stat_of_child =
        fd_dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok()).any(|l| l == Path::new(&format!("/proc/{}/statm", pid.0)));
    assert!(!stat_of_child, "the exited child's statm file is closed");
}

/// The size read through a held statm descriptor follows the process: a child that grows
/// by 80 MiB between two scans is seen with it, under the identity its first scan read.
#[test]
fn a_held_descriptor_sees_the_process_grow() {
    use std::io::{BufRead, Write};
    let script = "import sys\nsys.stdin.readline()\nb = bytearray(80 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\nprint('grown', flush=True)\nsys.stdin.readline()\n";
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = Pid(child.id());
    // only the child: a scan of every process would hold statm files of other tests'
    // children, which `held_stat_files_follow_their_process` looks for in this process
    let only = [pid.0];
    let mut s = Scanner::new(Path::new("/proc"), 65_536, Pid(std::process::id()), Preferences::default()).unwrap();
    s.scan(Some(&only));
    let find = |s: &Scanner| *s.candidates().iter().find(|c| c.id.pid == pid).expect("listed");
    let before = find(&s);
    assert!(before.footprint.0 < 60 * 1024, "{:?}", before.footprint);
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin).unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "grown");
    s.scan(Some(&only));
    let after = find(&s);
    assert_eq!(after.id, before.id, "same identity");
    assert_eq!(after.comm.as_bytes(), b"python3");
    assert!(after.footprint.0 >= before.footprint.0 + 80 * 1024, "{:?} -> {:?}", before.footprint, after.footprint);
    assert!(after.growth_kib >= 80 * 1024, "growth {}", after.growth_kib);
    drop(stdin);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A process that does not change shows no growth between its first scan and its second:
/// both sizes come from statm (stat's rss is an approximate counter that lags RssAnon, and a
/// first size from it made every idle process "grow" by its anonymous memory).
#[test]
fn an_idle_process_does_not_grow_between_its_first_two_scans() {
    let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    let pid = Pid(child.id());
    std::thread::sleep(std::time::Duration::from_millis(200));
    let only = [pid.0];
    let mut s = Scanner::new(Path::new("/proc"), 65_536, Pid(std::process::id()), Preferences::default()).unwrap();
    let find = |s: &Scanner| *s.candidates().iter().find(|c| c.id.pid == pid).expect("listed");
    s.scan(Some(&only));
    let first = find(&s);
    s.scan(Some(&only));
    let second = find(&s);
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.0)).unwrap();
    let vmrss: u64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap().trim().trim_end_matches("kB").trim().parse().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(second.growth_kib, 0, "{:?} -> {:?}", first.footprint, second.footprint);
    assert_eq!(first.footprint.0, vmrss, "the first size is statm's, which VmRSS matches");
}

/// What makes holding safe: a stat file opened for a process reads nothing once that
/// process is gone, so a pid reused later is never read through it.
#[test]
fn a_held_stat_file_of_an_exited_process_reads_nothing() {
    use std::os::fd::AsFd;
    use thrashguard::procdir::{self, ReadError};
    let proc_dir = procdir::open_dir(Path::new("/proc")).unwrap();
    let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    let fd = procdir::open_pid_file(proc_dir.as_fd(), Pid(child.id()), "stat").unwrap();
    let mut buf = [0u8; 1024];
    assert!(!procdir::read_open(fd.as_fd(), &mut buf).unwrap().is_empty());
    child.kill().unwrap();
    child.wait().unwrap();
    match procdir::read_open(fd.as_fd(), &mut buf) {
        Ok(text) => assert!(text.is_empty(), "read {:?}", String::from_utf8_lossy(text)),
        Err(e) => assert_eq!(e, ReadError::Gone),
    }
}
