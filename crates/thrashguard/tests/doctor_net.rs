//! doctor's kernel-log, network and process-limit rules end to end: captured trees copied
//! from this machine's /proc (edited to stage each problem, with `FILE.later` as the second
//! reading of the window), real kernel logs from public reports, real listening sockets on
//! loopback, and `--watch` over a tree the test changes between runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;
use common::{Tree, write};

/// An empty captured tree for one test.
fn tree(tag: &str) -> Tree {
    common::tree(&format!("doctor-net-{tag}"))
}

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/fixtures").join(rel)
}

/// A captured /proc and /sys: this machine's own files, copied as they are now.
fn captured(t: &Tree) -> (PathBuf, PathBuf) {
    let (proc, sys) = (t.0.join("proc"), t.0.join("sys"));
    for rel in [
        "meminfo",
        "vmstat",
        "buddyinfo",
        "uptime",
        "net/netstat",
        "net/snmp",
        "net/softnet_stat",
        "sys/vm/min_free_kbytes",
        "sys/vm/watermark_scale_factor",
        "sys/net/core/somaxconn",
        "sys/net/core/netdev_max_backlog",
        "sys/net/ipv4/tcp_max_syn_backlog",
        "sys/net/ipv4/tcp_syncookies",
        "sys/fs/file-nr",
    ] {
        write(&proc, rel, &std::fs::read_to_string(Path::new("/proc").join(rel)).unwrap());
    }
    for f in ["current_clocksource", "available_clocksource"] {
        let rel = format!("devices/system/clocksource/clocksource0/{f}");
        write(&sys, &rel, &std::fs::read_to_string(Path::new("/sys").join(&rel)).unwrap());
    }
    // this kernel has no SysRq (no CONFIG_MAGIC_SYSRQ): stage the common default of 1
    write(&proc, "sys/kernel/sysrq", "1\n");
    write(&proc, "sys/net/core/somaxconn", "4096\n");
    write(&proc, "net/listeners", "0.0.0.0:22 0 128 1001\n");
    (proc, sys)
}

/// Set one counter in a vmstat text (`name value`) or a netstat/snmp text (header line of
/// names, then values).
fn set_counter(text: &str, group: Option<&str>, name: &str, value: u64) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    match group {
        None => {
            for l in &mut lines {
                if l.split_whitespace().next() == Some(name) {
                    *l = format!("{name} {value}");
                }
            }
        }
        Some(g) => {
            let prefix = format!("{g}:");
            let i = lines.iter().position(|l| l.starts_with(&prefix) && l.split_whitespace().any(|w| w == name)).unwrap();
            let col = lines[i].split_whitespace().position(|w| w == name).unwrap();
            let mut values: Vec<String> = lines[i + 1].split_whitespace().map(str::to_string).collect();
            values[col] = value.to_string();
            lines[i + 1] = values.join(" ");
        }
    }
    lines.join("\n") + "\n"
}

/// Stage a rise of `name` by `by` over the window: FILE gets the current value, FILE.later
/// the value plus `by`.
fn rise(proc: &Path, rel: &str, group: Option<&str>, name: &str, from: u64, by: u64) {
    let text = std::fs::read_to_string(proc.join(rel)).unwrap();
    write(proc, rel, &set_counter(&text, group, name, from));
    write(proc, &format!("{rel}.later"), &set_counter(&text, group, name, from + by));
}

fn doctor(proc: &Path, sys: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut args = vec!["--proc-root", proc.to_str().unwrap(), "--sys-root", sys.to_str().unwrap(), "doctor", "--json"];
    args.extend_from_slice(extra);
    let o = Command::new(env!("CARGO_BIN_EXE_thrashguard")).args(&args).env_remove("THRASHGUARD_CONFIG").output().unwrap();
    let v = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)));
    (o.status.code().unwrap(), v)
}

/// (severity of the finding, or "clear" / "not checked: why") of rule `id`.
fn outcome(v: &serde_json::Value, id: &str) -> String {
    if let Some(f) = v["findings"].as_array().unwrap().iter().find(|f| f["id"] == id) {
        return f["severity"].as_str().unwrap().to_string();
    }
    if v["clear"].as_array().unwrap().iter().any(|c| c["id"] == id) {
        return "clear".into();
    }
    let n = v["not_checked"].as_array().unwrap().iter().find(|n| n["id"] == id).unwrap_or_else(|| panic!("{id} missing: {v:#}"));
    format!("not checked: {}", n["missing"].as_str().unwrap())
}

fn finding<'a>(v: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    v["findings"].as_array().unwrap().iter().find(|f| f["id"] == id).unwrap_or_else(|| panic!("no {id}: {v:#}"))
}

fn evidence(f: &serde_json::Value, name: &str) -> String {
    f["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .map(|e| e["value"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no {name}: {f:#}"))
}

#[test]
fn kernel_log_rules_over_real_logs() {
    let t = tree("kmsg");
    let (proc, sys) = captured(&t);
    let host = fixture("kmsg/6.18.44-host.kmsg");
    let public = fixture("kmsg/public-reports.log");
    rise(&proc, "vmstat", None, "oom_kill", 0, 0);
    let (_, v) = doctor(&proc, &sys, &["--kmsg", host.to_str().unwrap()]);
    assert_eq!(outcome(&v, "allocation-failures"), "clear");
    assert_eq!(outcome(&v, "oom-kills"), "clear");
    assert_eq!(outcome(&v, "hung-tasks"), "clear");
    let (_, v) = doctor(&proc, &sys, &["--kmsg", public.to_str().unwrap()]);
    let f = finding(&v, "hung-tasks");
    assert_eq!(f["severity"], "info", "another machine's log: not recent here {f:#}");
    assert!(f["title"].as_str().unwrap().starts_with("1 hung-task report"), "{f:#}");
    let f = finding(&v, "allocation-failures");
    assert_eq!(f["severity"], "warning");
    assert!(f["title"].as_str().unwrap().starts_with("8 allocation failures"), "{f:#}");
    assert!(f["fix"].as_str().unwrap().contains("vm.min_free_kbytes="), "{f:#}");
    assert!(evidence(f, "free blocks of order >= 5, node 0 zone Normal").contains("order 0:"), "{f:#}");
    // the kills in the public log are not this machine's: no uptime relation, but the
    // counter of this machine decides the severity (no kill here since boot, none in the window)
    let f = finding(&v, "oom-kills");
    assert_eq!(f["severity"], "info", "{f:#}");
    assert!(evidence(f, "killed uwsgi (pid 63214)").contains("memory cgroup limit"), "{f:#}");
    // a kill in the window
    rise(&proc, "vmstat", None, "oom_kill", 3, 1);
    let (code, v) = doctor(&proc, &sys, &["--kmsg", host.to_str().unwrap()]);
    assert_eq!(outcome(&v, "oom-kills"), "warning");
    assert!(code >= 1);
    // garbage for a log: no event, never a failure
    let junk = t.0.join("junk");
    std::fs::write(&junk, [0xffu8, 0, 1, 2, b'\n', b'[', b'1', b';'].repeat(100)).unwrap();
    let (_, v) = doctor(&proc, &sys, &["--kmsg", junk.to_str().unwrap()]);
    assert_eq!(outcome(&v, "allocation-failures"), "clear");
    let (_, v) = doctor(&proc, &sys, &["--kmsg", "/nonexistent/kmsg"]);
    assert!(outcome(&v, "allocation-failures").starts_with("not checked: /nonexistent/kmsg"), "{v:#}");
}

#[test]
fn an_unprivileged_run_says_how_to_read_the_log() {
    let restricted = std::fs::read_to_string("/proc/sys/kernel/dmesg_restrict").is_ok_and(|v| v.trim() == "1");
    if !rustix::process::geteuid().is_root() || !restricted {
        eprintln!("needs root to drop to nobody, and kernel.dmesg_restrict=1: skipped");
        return;
    }
    let o = Command::new(env!("CARGO_BIN_EXE_thrashguard"))
        .args(["doctor", "--json", "--window", "0"])
        .env_remove("THRASHGUARD_CONFIG")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(outcome(&v, "allocation-failures"), "not checked: /dev/kmsg: permission denied (run as root or pass --kmsg FILE)");
    // the counters still speak
    assert!(!outcome(&v, "oom-kills").starts_with("not checked"), "{v:#}");
}

#[test]
fn a_captured_trees_own_log_and_recent_kills() {
    let t = tree("treelog");
    let (proc, sys) = captured(&t);
    let (_, v) = doctor(&proc, &sys, &[]);
    assert!(outcome(&v, "allocation-failures").contains("pass --kmsg FILE"), "{v:#}");
    // a kill logged 10 minutes before the captured uptime, in /dev/kmsg record form
    write(&proc, "uptime", "8000.00 15000.00\n");
    write(
        &proc,
        "kmsg",
        "3,1200,7400000000,-;Out of memory: Killed process 4242 (java) total-vm:8123400kB, anon-rss:7981200kB, file-rss:0kB\n \
         SUBSYSTEM=memory\n",
    );
    let (_, v) = doctor(&proc, &sys, &["--window", "0"]);
    let f = finding(&v, "oom-kills");
    assert_eq!(f["severity"], "warning", "{f:#}");
    assert!(evidence(f, "killed java (pid 4242)").contains("anon-rss 7794 MiB"), "{f:#}");
    assert!(evidence(f, "killed java (pid 4242)").contains("(10 min ago)"), "{f:#}");
    assert!(f["fix"].as_str().unwrap().contains("invoked oom-killer"));
}

#[test]
fn pfmemalloc_drops_in_the_window() {
    let t = tree("pfmem");
    let (proc, sys) = captured(&t);
    rise(&proc, "net/netstat", Some("TcpExt"), "PFMemallocDrop", 7, 0);
    let (_, v) = doctor(&proc, &sys, &["--window", "5"]);
    // old drops, none now: since boot as before
    assert_eq!(outcome(&v, "atomic-reserve"), "warning");
    assert!(
        finding(&v, "atomic-reserve")["title"].as_str().unwrap().starts_with("7 packets were dropped for lack of memory (PFMemallocDrop)"),
        "{v:#}"
    );
    rise(&proc, "net/netstat", Some("TcpExt"), "PFMemallocDrop", 7, 5);
    let (_, v) = doctor(&proc, &sys, &["--window", "5"]);
    let f = finding(&v, "atomic-reserve");
    assert!(f["title"].as_str().unwrap().contains("5 packets were dropped for lack of memory in the last 5 s"), "{f:#}");
    rise(&proc, "net/netstat", Some("TcpExt"), "PFMemallocDrop", 0, 0);
    let (_, v) = doctor(&proc, &sys, &["--window", "5"]);
    assert_eq!(outcome(&v, "atomic-reserve"), "clear");
}

#[test]
fn listen_backlog_over_a_captured_tree() {
    let t = tree("listen");
    let (proc, sys) = captured(&t);
    write(&proc, "812/comm", "redis-server\n");
    std::fs::create_dir_all(proc.join("812/fd")).unwrap();
    std::os::unix::fs::symlink("socket:[4242]", proc.join("812/fd/6")).unwrap();
    std::os::unix::fs::symlink("/dev/null", proc.join("812/fd/0")).unwrap();
    rise(&proc, "net/netstat", Some("TcpExt"), "ListenOverflows", 0, 0);
    let (_, v) = doctor(&proc, &sys, &[]);
    assert_eq!(outcome(&v, "listen-backlog"), "clear");
    // an unknown program's backlog equal to somaxconn: probably cut, info
    write(&proc, "sys/net/core/somaxconn", "128\n");
    write(&proc, "net/listeners", "# ss -ltne\n0.0.0.0:22 0 128 1001\n");
    let (_, v) = doctor(&proc, &sys, &[]);
    assert_eq!(outcome(&v, "listen-backlog"), "info");
    // Redis asks for 511 by default: its cut backlog is a warning naming it
    write(&proc, "net/listeners", "# ss -ltne\n127.0.0.1:6379 0 128 4242\n0.0.0.0:22 0 128 1001\n");
    let (_, v) = doctor(&proc, &sys, &[]);
    let f = finding(&v, "listen-backlog");
    assert_eq!(f["severity"], "warning", "{f:#}");
    assert!(f["title"].as_str().unwrap().starts_with("127.0.0.1:6379 (redis-server, pid 812) asks for a larger listen backlog"), "{f:#}");
    assert!(evidence(f, "127.0.0.1:6379 (redis-server, pid 812)").contains("= somaxconn"), "{f:#}");
    // its queue full now and overflows rising in the window: critical, naming it
    write(&proc, "net/listeners", "127.0.0.1:6379 128 128 4242\n");
    rise(&proc, "net/netstat", Some("TcpExt"), "ListenOverflows", 10, 25);
    let (code, v) = doctor(&proc, &sys, &[]);
    let f = finding(&v, "listen-backlog");
    assert_eq!(f["severity"], "critical", "{f:#}");
    assert!(
        f["title"].as_str().unwrap().contains("25 connections") && f["title"].as_str().unwrap().contains("redis-server, pid 812"),
        "{f:#}"
    );
    assert!(f["fix"].as_str().unwrap().contains("sysctl -w net.core.somaxconn=4096"), "{f:#}");
    assert_eq!(code, 2);
    write(&proc, "net/listeners", "127.0.0.1:6379 lots 128 4242\n");
    let (_, v) = doctor(&proc, &sys, &[]);
    assert!(outcome(&v, "listen-backlog").contains("line 1: bad accept queue"), "{v:#}");
    std::fs::remove_file(proc.join("net/listeners")).unwrap();
    let (_, v) = doctor(&proc, &sys, &[]);
    assert!(outcome(&v, "listen-backlog").starts_with("not checked"), "{v:#}");
}

/// A listening socket on loopback with `backlog` (rustix, so the backlog is explicit).
fn listen(backlog: i32) -> (rustix::fd::OwnedFd, u16) {
    use rustix::net::{AddressFamily, SocketType, ipproto, sockopt};
    let fd = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, Some(ipproto::TCP)).unwrap();
    sockopt::set_socket_reuseaddr(&fd, true).unwrap();
    rustix::net::bind(&fd, &std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 0)).unwrap();
    rustix::net::listen(&fd, backlog).unwrap();
    let port = std::net::SocketAddrV4::try_from(rustix::net::getsockname(&fd).unwrap()).unwrap().port();
    (fd, port)
}

#[test]
fn live_listeners_with_their_backlog_and_owner() {
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap().trim().parse().unwrap();
    let (_std_fd, std_port) = listen(128);
    let (_capped_fd, capped_port) = listen(i32::MAX);
    let (_full_fd, full_port) = listen(1);
    // two connections nobody accepts: a backlog of 1 holds two, then it is full
    let clients: Vec<_> = (0..2).map(|_| std::net::TcpStream::connect(("127.0.0.1", full_port)).unwrap()).collect();
    let (_, v) = doctor(Path::new("/proc"), Path::new("/sys"), &["--window", "0"]);
    let f = finding(&v, "listen-backlog");
    let me = std::process::id();
    let comm = std::fs::read_to_string("/proc/self/comm").unwrap().trim().to_string();
    let named = |port: u16| evidence(f, &format!("127.0.0.1:{port} ({comm}, pid {me})"));
    assert_eq!(named(std_port), "accept queue 0 of backlog 128", "{f:#}");
    assert!(named(capped_port).starts_with(&format!("accept queue 0 of backlog {somaxconn} (= somaxconn")), "{f:#}");
    assert_eq!(named(full_port), "accept queue 2 of backlog 1 (full)", "{f:#}");
    assert!(["warning", "critical"].contains(&f["severity"].as_str().unwrap()), "{f:#}");
    drop(clients);
}

#[test]
fn syn_socket_and_softnet_drops() {
    let t = tree("drops");
    let (proc, sys) = captured(&t);
    rise(&proc, "net/netstat", Some("TcpExt"), "TCPReqQFullDrop", 0, 0);
    rise(&proc, "net/snmp", Some("Udp"), "RcvbufErrors", 900, 0);
    write(&proc, "net/softnet_stat", "00000010 00000000 00000001\n00000010 00000000 00000000\n");
    let (_, v) = doctor(&proc, &sys, &[]);
    for id in ["syn-queue", "socket-drops", "softnet-drops"] {
        assert_eq!(outcome(&v, id), "clear", "{id}: {v:#}");
    }
    // without a window the old UDP errors are reported as info, judged since boot
    let (_, v) = doctor(&proc, &sys, &["--window", "0"]);
    let f = finding(&v, "socket-drops");
    assert_eq!(f["severity"], "info");
    assert_eq!(evidence(f, "judged on"), "totals since boot (--window 0: no rates)");
    rise(&proc, "net/netstat", Some("TcpExt"), "TCPReqQFullDrop", 3, 40);
    rise(&proc, "net/snmp", Some("Udp"), "RcvbufErrors", 900, 100);
    write(&proc, "net/softnet_stat.later", "00000010 00000005 00000001\n00000010 00000002 00000000\n");
    // memory stalled 30 % of the 5 s window
    write(&proc, "pressure/memory", "some avg10=0.00 avg60=0.00 avg300=0.00 total=1000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
    write(
        &proc,
        "pressure/memory.later",
        "some avg10=30.00 avg60=0.00 avg300=0.00 total=1501000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
    );
    let (_, v) = doctor(&proc, &sys, &[]);
    assert_eq!(outcome(&v, "syn-queue"), "warning");
    assert!(finding(&v, "syn-queue")["title"].as_str().unwrap().starts_with("40 connection requests"));
    let f = finding(&v, "socket-drops");
    assert_eq!(f["severity"], "warning");
    assert!(f["title"].as_str().unwrap().contains("memory stalled 30 %"), "{f:#}");
    let f = finding(&v, "softnet-drops");
    assert!(f["title"].as_str().unwrap().starts_with("7 packets dropped"), "{f:#}");
    write(&proc, "net/softnet_stat", "garbage\n");
    let (_, v) = doctor(&proc, &sys, &[]);
    assert!(outcome(&v, "softnet-drops").starts_with("not checked"), "{v:#}");
}

#[test]
fn fd_limits_sysrq_and_clocksource() {
    let t = tree("limits");
    let (proc, sys) = captured(&t);
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let staged = limits
        .lines()
        .map(|l| {
            if l.starts_with("Max open files") {
                "Max open files            10                   10                   files".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    write(&proc, "300/comm", "mongod\n");
    write(&proc, "300/limits", &staged);
    std::fs::create_dir_all(proc.join("300/fd")).unwrap();
    for fd in 0..5 {
        std::os::unix::fs::symlink("/dev/null", proc.join(format!("300/fd/{fd}"))).unwrap();
    }
    write(&sys, "devices/system/clocksource/clocksource0/current_clocksource", "kvm-clock\n");
    let (_, v) = doctor(&proc, &sys, &[]);
    assert_eq!(outcome(&v, "fd-limits"), "clear");
    assert_eq!(outcome(&v, "sysrq"), "clear");
    assert_eq!(outcome(&v, "clocksource"), "clear");
    for fd in 5..9 {
        std::os::unix::fs::symlink("/dev/null", proc.join(format!("300/fd/{fd}"))).unwrap();
    }
    write(&proc, "sys/kernel/sysrq", "176\n");
    write(&sys, "devices/system/clocksource/clocksource0/current_clocksource", "hpet\n");
    let (code, v) = doctor(&proc, &sys, &[]);
    let f = finding(&v, "fd-limits");
    assert_eq!(evidence(f, "mongod (pid 300)"), "9 open of 10 (90 %)");
    assert!(f["fix"].as_str().unwrap().contains("LimitNOFILE=65536"));
    assert_eq!(finding(&v, "sysrq")["severity"], "info");
    assert!(finding(&v, "sysrq")["fix"].as_str().unwrap().starts_with("sysctl -w kernel.sysrq=240"));
    assert_eq!(finding(&v, "clocksource")["severity"], "warning");
    assert_eq!(code, 1);
    write(&proc, "sys/kernel/sysrq", "many\n");
    std::fs::remove_file(sys.join("devices/system/clocksource/clocksource0/current_clocksource")).unwrap();
    let (_, v) = doctor(&proc, &sys, &[]);
    assert!(outcome(&v, "sysrq").contains("not a number"), "{v:#}");
    assert!(outcome(&v, "clocksource").starts_with("not checked"), "{v:#}");
}

/// Kill a `--watch` child that is still running after 60 s, so a hang fails the test instead
/// of stalling the suite (the pid is checked to still be our watcher).
fn watchdog(pid: u32) {
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(60));
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmdline.windows(7).any(|w| w == b"--watch") {
            let _ = rustix::process::kill_process(rustix::process::Pid::from_raw(pid as i32).unwrap(), rustix::process::Signal::KILL);
        }
    });
}

/// `doctor --window 0 --watch 0.2 EXTRA` over a captured tree, under the watchdog; the
/// child and its stdout lines.
fn watch(proc: &Path, sys: &Path, extra: &[&str]) -> (std::process::Child, std::io::Lines<BufReader<std::process::ChildStdout>>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_thrashguard"))
        .args(["--proc-root", proc.to_str().unwrap(), "--sys-root", sys.to_str().unwrap(), "doctor", "--window", "0", "--watch", "0.2"])
        .args(extra)
        .env_remove("THRASHGUARD_CONFIG")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    watchdog(child.id());
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

#[test]
fn watch_prints_what_appears_and_clears_then_exits_on_sigterm() {
    let t = tree("watch");
    let (proc, sys) = captured(&t);
    let kmsg = fixture("kmsg/6.18.44-host.kmsg");
    let (mut child, mut lines) = watch(&proc, &sys, &["--json", "--kmsg", kmsg.to_str().unwrap()]);
    let mut next = |what: &str| -> serde_json::Value {
        loop {
            let line = lines.next().unwrap_or_else(|| panic!("stdout closed waiting for {what}")).unwrap();
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            if v["id"] == "sysrq" {
                return v;
            }
        }
    };
    write(&proc, "sys/kernel/sysrq", "176\n");
    let v = next("sysrq to appear");
    assert_eq!((v["type"].as_str(), v["severity"].as_str()), (Some("appeared"), Some("info")), "{v}");
    assert!(v["time"].as_str().unwrap().ends_with('Z') && v["time_unix_ms"].as_u64().unwrap() > 0);
    write(&proc, "sys/kernel/sysrq", "1\n");
    let v = next("sysrq to clear");
    assert_eq!(v["type"], "cleared", "{v}");
    rustix::process::kill_process(rustix::process::Pid::from_raw(child.id() as i32).unwrap(), rustix::process::Signal::TERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn watch_text_lines() {
    let t = tree("watchtext");
    let (proc, sys) = captured(&t);
    write(&proc, "sys/kernel/sysrq", "176\n");
    let (mut child, mut lines) = watch(&proc, &sys, &[]);
    let line = loop {
        let l = lines.next().unwrap().unwrap();
        if l.contains("[sysrq]") {
            break l;
        }
    };
    assert!(line.contains("Z + INFO [sysrq] kernel.sysrq = 176"), "{line}");
    rustix::process::kill_process(rustix::process::Pid::from_raw(child.id() as i32).unwrap(), rustix::process::Signal::INT).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
