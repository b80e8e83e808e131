//! The facts of doctor's kernel-log, network and process-limit rules, and `doctor --watch`.
//!
//! Owns reading the kernel log (/dev/kmsg without blocking, a `--kmsg FILE`, or a captured
//! tree's `kmsg` file), listening sockets (sock_diag live, a captured tree's `net/listeners`),
//! the settings and per-process files these rules need, and the watch loop (re-run, print
//! what appeared or cleared, exit 0 on SIGINT/SIGTERM). Every fact that cannot be read
//! becomes "not checked: <what>". It must never change anything on the machine.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use thrashguard_core::config::Config;
use thrashguard_core::doctor::kernlog::{self, AllocFacts, HungFacts, KernelLog, OomFacts};
use thrashguard_core::doctor::memfacts::Fields;
use thrashguard_core::doctor::net::{self, DropFacts, ListenFacts, SynFacts};
use thrashguard_core::doctor::system;
use thrashguard_core::doctor::watch;
use thrashguard_core::doctor::window::Sampled;
use thrashguard_core::doctor::{EXIT_FAILED, EXIT_OK, Fact, Report};
use thrashguard_core::parse::{self, kmsg};

use crate::doctor::{is_live, mem_total_kib, read, read_u64};
use crate::doctor_procs::Table;

/// What the kernel-log and network rules take from the command line.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `--kmsg FILE`: read the kernel log from this file instead of /dev/kmsg.
    pub kmsg: Option<PathBuf>,
}

/// Every record /dev/kmsg holds now, without waiting for new ones.
fn read_dev_kmsg(path: &Path) -> Fact<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let denied = || format!("{}: permission denied (run as root or pass --kmsg FILE)", path.display());
    let mut f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| if e.kind() == std::io::ErrorKind::PermissionDenied { denied() } else { format!("{}: {e}", path.display()) })?;
    let mut out = String::new();
    // One record per read; a record is at most 8 KiB (a smaller buffer gives EINVAL).
    let mut buf = vec![0u8; 8192];
    for _ in 0..1_000_000 {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            // EPIPE: the ring buffer overwrote records we had not read yet; go on.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) || e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Err(denied()),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
    }
    Ok(out)
}

/// The kernel log: `--kmsg FILE`, else /dev/kmsg on a live /proc, else a captured tree's
/// `kmsg` file (a copy of /dev/kmsg or `dmesg` output).
pub fn kernel_log(proc_root: &Path, opts: &Options) -> Fact<KernelLog> {
    let live = is_live(proc_root);
    let (source, text) = match &opts.kmsg {
        Some(file) => {
            let bytes = fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
            (file.display().to_string(), String::from_utf8_lossy(&bytes).into_owned())
        }
        None if live => ("/dev/kmsg".to_string(), read_dev_kmsg(Path::new("/dev/kmsg"))?),
        None => {
            let file = proc_root.join("kmsg");
            let bytes = fs::read(&file).map_err(|e| format!("{}: {e} (a captured tree's kernel log; pass --kmsg FILE)", file.display()))?;
            (file.display().to_string(), String::from_utf8_lossy(&bytes).into_owned())
        }
    };
    // A --kmsg file may come from another boot or machine: its times are not related to now.
    let now_usec = if opts.kmsg.is_some() { None } else { read(proc_root, "uptime").ok() }
        .and_then(|t| t.split_whitespace().next()?.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| (s * 1e6) as u64);
    Ok(KernelLog { source, entries: kmsg::parse(&text), now_usec })
}

fn alloc_facts(proc_root: &Path, log: &Fact<KernelLog>, meminfo: &Fact<Fields>) -> AllocFacts {
    AllocFacts {
        log: log.clone(),
        min_free_kbytes: read_u64(proc_root, "sys/vm/min_free_kbytes"),
        watermark_scale_factor: read_u64(proc_root, "sys/vm/watermark_scale_factor"),
        mem_total_kib: mem_total_kib(meminfo),
        buddyinfo: read(proc_root, "buddyinfo").and_then(|t| parse::buddyinfo::parse("buddyinfo", t.as_bytes()).map_err(|e| e.to_string())),
    }
}

/// Listening sockets: a captured tree's `net/listeners` file when there is one, else
/// sock_diag on a live /proc; without owners (the process walk finds them,
/// [`crate::doctor_procs::Table::socket_owners`]).
pub fn listeners(proc_root: &Path) -> Fact<Vec<net::Listener>> {
    let file = proc_root.join("net/listeners");
    let ls = if file.exists() {
        net::parse_listeners(&read(proc_root, "net/listeners")?)?
    } else if is_live(proc_root) {
        crate::sockdiag::listeners()?
    } else {
        return Err(format!("{}: no such file (sock_diag answers only for the live machine)", file.display()));
    };
    Ok(ls)
}

fn file_nr(proc_root: &Path) -> Fact<(u64, u64)> {
    read(proc_root, "sys/fs/file-nr").and_then(|t| {
        let w: Vec<u64> = t.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        match w[..] {
            [used, _, max] => Ok((used, max)),
            _ => Err(format!("sys/fs/file-nr: expected three numbers: {:?}", t.trim())),
        }
    })
}

/// What these rules share with the rest of the run: meminfo parsed once, the one walk of
/// the process table, and the listening sockets with their owners.
pub struct Shared<'a> {
    /// /proc/meminfo.
    pub meminfo: &'a Fact<Fields>,
    /// The process table.
    pub table: &'a Table,
    /// Listening sockets, owners filled in.
    pub listeners: Fact<Vec<net::Listener>>,
}

/// Run the kernel-log, network and process-limit rules.
pub fn push_rules(r: &mut Report, proc_root: &Path, sys_root: &Path, sampled: &Sampled, opts: &Options, shared: &Shared) {
    let log = kernel_log(proc_root, opts);
    r.push("allocation-failures", kernlog::allocation_failures(&alloc_facts(proc_root, &log, shared.meminfo)));
    r.push("oom-kills", kernlog::oom_kills(&OomFacts { vmstat: sampled.vmstat.clone(), log: log.clone() }));
    let timeout_secs = read_u64(proc_root, "sys/kernel/hung_task_timeout_secs");
    r.push("hung-tasks", kernlog::hung_tasks(&HungFacts { log: log.clone(), pressure: sampled.pressure.clone(), timeout_secs }));
    let somaxconn = read_u64(proc_root, "sys/net/core/somaxconn").and_then(|v| u32::try_from(v).map_err(|e| e.to_string()));
    r.push(
        "listen-backlog",
        net::listen_backlog(&ListenFacts { listeners: shared.listeners.clone(), somaxconn, net: sampled.net.clone() }),
    );
    let events = log.as_ref().map(|l| l.entries.as_slice()).unwrap_or_default();
    let flood_ports = events.iter().filter_map(|e| if let kmsg::Event::SynFlood { port } = e.event { Some(port) } else { None }).collect();
    r.push(
        "syn-queue",
        net::syn_queue(&SynFacts {
            net: sampled.net.clone(),
            max_syn_backlog: read_u64(proc_root, "sys/net/ipv4/tcp_max_syn_backlog"),
            syncookies: read_u64(proc_root, "sys/net/ipv4/tcp_syncookies"),
            flood_ports,
        }),
    );
    let tcp_oom_logged = events.iter().filter(|e| e.event == kmsg::Event::TcpOom).count();
    r.push("socket-drops", net::socket_drops(&DropFacts { net: sampled.net.clone(), pressure: sampled.pressure.clone(), tcp_oom_logged }));
    r.push("softnet-drops", net::softnet_drops(&sampled.net, &read_u64(proc_root, "sys/net/core/netdev_max_backlog")));
    r.push("fd-limits", system::fd_limits(&shared.table.fd_facts(file_nr(proc_root))));
    let sysrq = read_u64(proc_root, "sys/kernel/sysrq").map_err(|e| {
        if e.contains("No such file") { format!("{e} (a kernel built without CONFIG_MAGIC_SYSRQ has no SysRq rescue)") } else { e }
    });
    r.push("sysrq", system::sysrq(&sysrq));
    let cs = |f: &str| read(sys_root, &format!("devices/system/clocksource/clocksource0/{f}"));
    r.push("clocksource", system::clocksource(&cs("current_clocksource"), &cs("available_clocksource")));
}

/// `doctor --watch S`: run the rules every `every`, print what appeared or cleared (one JSON
/// line each with `json`), until SIGINT or SIGTERM (exit 0).
pub fn watch_loop(proc_root: &Path, sys_root: &Path, cfg: &Config, json: bool, window: Duration, every: Duration, opts: &Options) -> i32 {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(&stop)) {
            eprintln!("thrashguard: error: signal handler: {e}");
            return EXIT_FAILED;
        }
    }
    let mut before: Vec<watch::Key> = vec![];
    while !stop.load(Ordering::Relaxed) {
        let r = crate::doctor::report(proc_root, sys_root, cfg, crate::doctor::Scope::All, window, opts);
        let now = watch::keys(&r);
        let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let mut text = String::new();
        for c in watch::diff(&before, &now) {
            if json {
                text.push_str(&format!("{}\n", watch::to_json(&c, ms)));
            } else {
                text.push_str(&watch::render_text(&c, ms / 1000));
                text.push('\n');
            }
        }
        before = now;
        let stdout = std::io::stdout();
        let mut lock = stdout.lock();
        match lock.write_all(text.as_bytes()).and_then(|()| lock.flush()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return EXIT_OK,
            Err(e) => {
                eprintln!("thrashguard: error: {e}");
                return EXIT_FAILED;
            }
        }
        drop(lock);
        let deadline = std::time::Instant::now() + every;
        while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50).min(every));
        }
    }
    EXIT_OK
}
