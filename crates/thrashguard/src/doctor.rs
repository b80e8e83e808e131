//! `thrashguard doctor` and `thrashguard lifeline self-test`: read the facts the rules of
//! [`thrashguard_core::doctor`] need, run them, print the report.
//!
//! Owns reading (under `--proc-root` and `--sys-root`; key files where the configuration
//! names them), the order of a run (sample the counters, parse meminfo once, walk the
//! process table once through [`crate::doctor_procs`], then every rule over those), and
//! printing text (colour only on a terminal, never with NO_COLOR) or JSON. Every fact that cannot be read becomes "not checked: <what>", never
//! an error for the whole run. It must never change anything on the machine.

use std::fs;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::Path;

use thrashguard_core::config::Config;
use thrashguard_core::doctor::lifeline::{self as rules_lifeline, KeysState, LifelineFacts};
use thrashguard_core::doctor::memfacts::Fields;
use thrashguard_core::doctor::numa::{self, ZoneReclaimFacts};
use thrashguard_core::doctor::reserve::{self, ReserveFacts};
use thrashguard_core::doctor::window::{Counters, Sampled, Window};
use thrashguard_core::doctor::{EXIT_FAILED, Fact, Report};
use thrashguard_core::parse::{netstat, sockets};

use crate::doctor_procs::{Table, Want, walk};

/// Which rules to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every rule.
    All,
    /// What decides whether a lifeline request would be heard.
    Lifeline,
}

/// The text of `root/rel`, or what kept it from being read (the doctor rules' readers share it).
pub(crate) fn read(root: &Path, rel: &str) -> Fact<String> {
    let path = root.join(rel);
    fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
}

/// A file holding one number (`sys/vm/min_free_kbytes`).
pub(crate) fn read_u64(root: &Path, rel: &str) -> Fact<u64> {
    read(root, rel).and_then(|t| t.trim().parse::<u64>().map_err(|_| format!("{rel}: not a number: {:?}", t.trim())))
}

/// /proc/meminfo, read and parsed once per run (every rule that needs it shares it).
pub(crate) fn meminfo(proc_root: &Path) -> Fact<Fields> {
    read(proc_root, "meminfo").and_then(|t| Fields::parse("meminfo", t.as_bytes()).map_err(|e| e.to_string()))
}

/// MemTotal, KiB.
pub(crate) fn mem_total_kib(meminfo: &Fact<Fields>) -> Fact<u64> {
    meminfo.as_ref().map(|m| m.total().0).map_err(Clone::clone)
}

/// Whether `proc_root` is the live procfs (not a captured tree).
pub(crate) fn is_live(proc_root: &Path) -> bool {
    fs::File::open(proc_root).is_ok_and(|d| crate::procdir::is_procfs(std::os::fd::AsFd::as_fd(&d)))
}

fn reserve_facts(proc_root: &Path, meminfo: &Fact<Fields>, sampled: &Sampled) -> ReserveFacts {
    let min_free_kbytes = read_u64(proc_root, "sys/vm/min_free_kbytes");
    let mem_total_kib = mem_total_kib(meminfo);
    let pfmemalloc_drop = read(proc_root, "net/netstat")
        .and_then(|t| netstat::counter("net/netstat", t.as_bytes(), "TcpExt", "PFMemallocDrop").map_err(|e| e.to_string()));
    let pfmemalloc_window = sampled.net.as_ref().ok().and_then(|w| Some((w.delta("TcpExt PFMemallocDrop")?, w.seconds)));
    ReserveFacts { min_free_kbytes, mem_total_kib, pfmemalloc_drop, pfmemalloc_window }
}

/// One reading of each counter family. `later`: read `FILE.later` where a captured tree
/// has one (its second reading), else `FILE`.
fn read_counters(proc_root: &Path, later: bool) -> [Fact<Counters>; 3] {
    let text = |rel: &str| -> Fact<String> {
        let staged = proc_root.join(format!("{rel}.later"));
        if later && staged.exists() {
            return fs::read_to_string(&staged).map_err(|e| format!("{}: {e}", staged.display()));
        }
        read(proc_root, rel)
    };
    let vmstat = text("vmstat").and_then(|t| {
        let mut c = Counters::default();
        c.add_vmstat("vmstat", t.as_bytes()).map_err(|e| e.to_string())?;
        Ok(c)
    });
    let net = (|| {
        let mut c = Counters::default();
        c.add_netstat("net/netstat", text("net/netstat")?.as_bytes()).map_err(|e| e.to_string())?;
        // snmp adds Udp/Tcp/Ip counters; a kernel without it still has netstat's.
        if let Ok(t) = text("net/snmp") {
            c.add_netstat("net/snmp", t.as_bytes()).map_err(|e| e.to_string())?;
        }
        // softnet-drops says "not checked" when this is missing or garbled.
        if let Ok(t) = text("net/softnet_stat") {
            let _ = c.add_softnet(&t);
        }
        Ok(c)
    })();
    let pressure = (|| {
        let mut c = Counters::default();
        let mut why = String::new();
        for (resource, rel) in [("memory", "pressure/memory"), ("io", "pressure/io"), ("cpu", "pressure/cpu")] {
            match text(rel) {
                Ok(t) => c.add_pressure(resource, "pressure", t.as_bytes()).map_err(|e| format!("{rel}: {e}"))?,
                Err(e) => why = e,
            }
        }
        if c.is_empty() { Err(why) } else { Ok(c) }
    })();
    [vmstat, net, pressure]
}

/// Read the counter families twice, `window` apart: on a live /proc by waiting; on a
/// captured tree at once (its `FILE.later` files are the second reading, `window` the time
/// they stand for). A zero window reads once.
pub fn sample(proc_root: &Path, window: std::time::Duration) -> Sampled {
    let first = read_counters(proc_root, false);
    if window.is_zero() {
        let [vmstat, net, pressure] = first.map(|f| f.map(Window::single));
        return Sampled { vmstat, net, pressure };
    }
    let seconds = if is_live(proc_root) {
        let t0 = std::time::Instant::now();
        std::thread::sleep(window);
        t0.elapsed().as_secs_f64()
    } else {
        window.as_secs_f64()
    };
    let last = read_counters(proc_root, true);
    let pair = |a: Fact<Counters>, b: Fact<Counters>| Ok(Window { first: a?, last: b?, seconds });
    let ([v1, n1, p1], [v2, n2, p2]) = (first, last);
    Sampled { vmstat: pair(v1, v2), net: pair(n1, n2), pressure: pair(p1, p2) }
}

/// A counter of /proc/vmstat by name.
fn vmstat_counter(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn zone_reclaim_facts(proc_root: &Path, sys_root: &Path, sampled: &Sampled) -> ZoneReclaimFacts {
    let mode = read(proc_root, "sys/vm/zone_reclaim_mode")
        .and_then(|t| t.trim().parse::<u32>().map_err(|_| format!("sys/vm/zone_reclaim_mode: not a number: {:?}", t.trim())));
    let nodes_file = sys_root.join("devices/system/node/has_memory");
    let memory_nodes = fs::read_to_string(&nodes_file)
        .map_err(|e| format!("{}: {e}", nodes_file.display()))
        .and_then(|t| numa::count_node_list(&t).ok_or_else(|| format!("{}: not a node list: {:?}", nodes_file.display(), t.trim())));
    let vmstat = read(proc_root, "vmstat").unwrap_or_default();
    ZoneReclaimFacts {
        mode,
        memory_nodes,
        zone_reclaim_failed: vmstat_counter(&vmstat, "zone_reclaim_failed"),
        zone_reclaim_success: vmstat_counter(&vmstat, "zone_reclaim_success"),
        failed_in_window: sampled.vmstat.as_ref().ok().and_then(|w| w.delta("zone_reclaim_failed")),
        direct_scan_in_window: sampled.vmstat.as_ref().ok().and_then(|w| w.delta("pgscan_direct")),
        window_s: sampled.vmstat.as_ref().map_or(0.0, |w| w.seconds),
    }
}

fn udp_sockets(proc_root: &Path, port: u16) -> Fact<Vec<sockets::SocketLine>> {
    let mut out = Vec::new();
    let mut readable = 0;
    let mut why = String::new();
    for file in ["net/udp", "net/udp6"] {
        match read(proc_root, file) {
            Ok(text) => {
                readable += 1;
                for entry in sockets::entries(file, text.as_bytes()) {
                    let s = entry.map_err(|e| e.to_string())?;
                    if s.local_port == port {
                        out.push(s);
                    }
                }
            }
            Err(e) => why = e,
        }
    }
    if readable == 0 { Err(why) } else { Ok(out) }
}

fn lifeline_facts(proc_root: &Path, cfg: &Config, table: &Table) -> LifelineFacts {
    let keys = match crate::lifeline::load_keys(&cfg.lifeline) {
        Ok(None) => Ok(KeysState::Off),
        Ok(Some(k)) => Ok(KeysState::Usable { keys: k.authorized.len(), owner_uid: k.owner_uid }),
        Err(e) if e.downcast_ref::<crate::lifeline::SetupError>().is_some() => Ok(KeysState::Refused(format!("{e:#}"))),
        Err(e) => Err(format!("{e:#}")),
    };
    let port = cfg.lifeline.listen.parse::<SocketAddr>().map_or(0, |a| a.port());
    LifelineFacts {
        authorized_path: cfg.lifeline.authorized_keys.clone(),
        keys,
        listen: cfg.lifeline.listen.clone(),
        port,
        daemons: table.daemons(),
        sockets: udp_sockets(proc_root, port),
    }
}

/// Run the rules of `scope` over what `proc_root` and `sys_root` say, with counters
/// sampled over `window`.
pub fn report(
    proc_root: &Path,
    sys_root: &Path,
    cfg: &Config,
    scope: Scope,
    window: std::time::Duration,
    net: &crate::doctor_net::Options,
) -> Report {
    let mut r = Report::default();
    let sampled = if scope == Scope::All { sample(proc_root, window) } else { Sampled::default() };
    // One parse of meminfo and one walk of the process table for every rule.
    let meminfo = meminfo(proc_root);
    let listeners = if scope == Scope::All { Some(crate::doctor_net::listeners(proc_root)) } else { None };
    let want = match scope {
        Scope::All => Want {
            maps: true,
            limits: true,
            fds: true,
            fd_links: listeners.as_ref().is_some_and(|l| l.as_ref().is_ok_and(|l| !l.is_empty())),
        },
        Scope::Lifeline => Want::default(),
    };
    let table = walk(proc_root, want);
    let lf = lifeline_facts(proc_root, cfg, &table);
    if let Some(listeners) = listeners {
        r.push("zone-reclaim", numa::zone_reclaim(&zone_reclaim_facts(proc_root, sys_root, &sampled)));
        r.push("atomic-reserve", reserve::atomic_reserve(&reserve_facts(proc_root, &meminfo, &sampled)));
        crate::doctor_mem::push_rules(&mut r, proc_root, sys_root, &sampled, &meminfo, &table);
        let listeners = listeners.map(|ls| crate::sockdiag::with_owner_map(ls, &table.socket_owners()));
        crate::doctor_net::push_rules(
            &mut r,
            proc_root,
            sys_root,
            &sampled,
            net,
            &crate::doctor_net::Shared { meminfo: &meminfo, table: &table, listeners },
        );
    }
    r.push("lifeline-keys", rules_lifeline::keys(&lf));
    r.push("lifeline-daemon", rules_lifeline::daemon(&lf));
    r.push("lifeline-socket", rules_lifeline::socket(&lf));
    if scope == Scope::Lifeline {
        r.push("atomic-reserve", reserve::atomic_reserve(&reserve_facts(proc_root, &meminfo, &sampled)));
    }
    r
}

/// Print the report; returns the exit status (0 / 1 / 2, or 3 when printing failed).
pub fn run(
    proc_root: &Path,
    sys_root: &Path,
    cfg: &Config,
    scope: Scope,
    json: bool,
    window: std::time::Duration,
    net: &crate::doctor_net::Options,
) -> i32 {
    let title = match scope {
        Scope::All => "thrashguard doctor",
        Scope::Lifeline => "thrashguard lifeline self-test",
    };
    let r = report(proc_root, sys_root, cfg, scope, window, net);
    let stdout = std::io::stdout();
    let color = !json && stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let text = if json { format!("{}\n", r.to_json(title)) } else { r.render_text(title, color) };
    let mut lock = stdout.lock();
    match lock.write_all(text.as_bytes()).and_then(|()| lock.flush()) {
        Ok(()) => r.exit_code(),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => r.exit_code(),
        Err(e) => {
            eprintln!("thrashguard: error: {e}");
            EXIT_FAILED
        }
    }
}
