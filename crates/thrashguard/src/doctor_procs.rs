//! The one walk of the process table a doctor run makes: every `PID` directory under
//! `--proc-root` is listed once and each file the rules need is read once, then the facts
//! of each rule (memory table, guard daemons, fd use, socket owners, memory locks) are
//! derived from that one table.
//!
//! Owns [`walk`] and the derivations. Reads comm, status, oom_score_adj and limits of every
//! process; maps (a line count) only for the memory rules; the fd directory only for the
//! fd rule, with its `socket:[INODE]` links only when there are listeners to own; cmdline
//! only of processes named `thrashguard` or `java` (the guard daemon, Elasticsearch). A
//! process that vanishes mid-walk keeps what was read before it went; a file that cannot be
//! read is `None`, never an error for the run. It must never change anything on the machine.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use thrashguard_core::doctor::Fact;
use thrashguard_core::doctor::lifeline::DaemonFacts;
use thrashguard_core::doctor::memfacts::Proc;
use thrashguard_core::doctor::memlock::{self, LockFacts, LockProc};
use thrashguard_core::doctor::system::{self, FdFacts, FdUse};
use thrashguard_core::parse;

/// Which per-process files to read besides comm, status and oom_score_adj.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Want {
    /// /proc/PID/maps, counted in lines (`max-map-count`).
    pub maps: bool,
    /// /proc/PID/limits (`fd-limits`, `memory-lock`).
    pub limits: bool,
    /// /proc/PID/fd, counted (`fd-limits`).
    pub fds: bool,
    /// The `socket:[INODE]` targets of /proc/PID/fd/* (owners of listening sockets).
    pub fd_links: bool,
}

/// What was read of one process directory (`None`: could not be read).
#[derive(Clone, Debug, Default)]
pub struct Entry {
    /// Its pid.
    pub pid: u32,
    /// comm, as read (with its newline).
    pub comm: Option<String>,
    /// status, as read.
    pub status: Option<Vec<u8>>,
    /// oom_score_adj, as read.
    pub oom_score_adj: Option<Vec<u8>>,
    /// limits, as read.
    pub limits: Option<String>,
    /// Lines of maps.
    pub maps: Option<u64>,
    /// Entries of the fd directory.
    pub fds: Option<u64>,
    /// Socket inodes its fds point at, in directory order.
    pub sockets: Vec<u64>,
    /// cmdline (only for `thrashguard` and `java`).
    pub cmdline: Option<Vec<u8>>,
}

/// The process table as one walk read it, in the order the directory listed it.
#[derive(Clone, Debug)]
pub struct Table {
    /// Every `PID` directory, or why `proc_root` could not be listed.
    pub entries: Fact<Vec<Entry>>,
    /// Where it was read (for messages).
    root: String,
}

fn trimmed_comm(e: &Entry) -> Option<&str> {
    e.comm.as_deref().map(str::trim)
}

/// Its oom_score_adj, when it was read and is one integer.
fn oom_score_adj(e: &Entry) -> Option<i64> {
    e.oom_score_adj.as_deref().and_then(|t| parse::parse_single_i64("oom_score_adj", t).ok())
}

/// List `proc_root` once and read what `want` asks of each process.
pub fn walk(proc_root: &Path, want: Want) -> Table {
    let root = proc_root.display().to_string();
    let dir = match fs::read_dir(proc_root) {
        Ok(d) => d,
        Err(e) => return Table { entries: Err(format!("{root}: {e}")), root },
    };
    let mut entries = Vec::new();
    for de in dir.flatten() {
        let Some(pid) = de.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let p = de.path();
        let comm = fs::read_to_string(p.join("comm")).ok();
        let mut e = Entry {
            pid,
            status: fs::read(p.join("status")).ok(),
            oom_score_adj: fs::read(p.join("oom_score_adj")).ok(),
            limits: if want.limits { fs::read_to_string(p.join("limits")).ok() } else { None },
            maps: if want.maps { fs::read(p.join("maps")).ok().map(|m| m.iter().filter(|&&b| b == b'\n').count() as u64) } else { None },
            ..Entry::default()
        };
        if matches!(comm.as_deref().map(str::trim), Some("thrashguard" | "java")) {
            e.cmdline = fs::read(p.join("cmdline")).ok();
        }
        e.comm = comm;
        if (want.fds || want.fd_links)
            && let Ok(fds) = fs::read_dir(p.join("fd"))
        {
            let mut n = 0;
            for fd in fds.flatten() {
                n += 1;
                if !want.fd_links {
                    continue;
                }
                let Ok(target) = fs::read_link(fd.path()) else { continue };
                if let Some(inode) = target.to_str().and_then(|t| t.strip_prefix("socket:[")?.strip_suffix(']')?.parse::<u64>().ok()) {
                    e.sockets.push(inode);
                }
            }
            e.fds = Some(n);
        }
        entries.push(e);
    }
    Table { entries: Ok(entries), root }
}

impl Table {
    fn listed(&self) -> Fact<&[Entry]> {
        let entries = self.entries.as_ref().map_err(Clone::clone)?;
        if entries.is_empty() {
            // Every real /proc lists at least its pid 1: this is no process table.
            return Err(format!("{}: no process directories", self.root));
        }
        Ok(entries)
    }

    /// Every user process for the memory rules (kernel threads and zombies have no VmRSS
    /// and are left out; so is a process whose status could not be read), by pid.
    pub fn processes(&self) -> Fact<Vec<Proc>> {
        let mut out = Vec::new();
        for e in self.listed()? {
            let Some(status) = &e.status else { continue };
            let Ok(status) = parse::pid::parse_status(status) else { continue };
            let Some(rss) = status.vm_rss else { continue };
            let comm = e.comm.as_deref().map(|c| c.trim_end_matches('\n').to_string()).unwrap_or_default();
            out.push(Proc {
                pid: e.pid,
                comm,
                rss,
                swap: status.vm_swap.unwrap_or_default(),
                vmas: e.maps,
                oom_score_adj: oom_score_adj(e),
            });
        }
        out.sort_by_key(|p| p.pid);
        Ok(out)
    }

    /// Running `thrashguard daemon` processes other than this one, by pid, with their
    /// locked memory and oom_score_adj.
    pub fn daemons(&self) -> Fact<Vec<DaemonFacts>> {
        let me = std::process::id();
        let mut found = Vec::new();
        for e in self.listed()? {
            if e.pid == me || trimmed_comm(e) != Some("thrashguard") || !is_daemon(e) {
                continue;
            }
            let status = e.status.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
            let vm_lck_kib = parse::pid::status_kib(&status, "VmLck").map(|k| k.0);
            let oom_score_adj = oom_score_adj(e).and_then(|a| i32::try_from(a).ok());
            found.push(DaemonFacts { pid: e.pid, vm_lck_kib, oom_score_adj });
        }
        found.sort_by_key(|d| d.pid);
        Ok(found)
    }

    /// Open fds against the soft `Max open files` of every process whose fd directory and
    /// limits could be read (others are counted as skipped), and fs.file-nr.
    pub fn fd_facts(&self, file_nr: Fact<(u64, u64)>) -> FdFacts {
        let entries = match &self.entries {
            Ok(e) => e,
            Err(why) => return FdFacts { procs: Err(why.clone()), skipped: 0, file_nr },
        };
        let mut procs = vec![];
        let mut skipped = 0;
        for e in entries {
            match (e.limits.as_deref().and_then(system::nofile_soft_limit), e.fds) {
                (Some(soft_limit), Some(open)) => {
                    let comm = trimmed_comm(e).unwrap_or("?").to_string();
                    procs.push(FdUse { pid: e.pid, comm, open, soft_limit });
                }
                _ => skipped += 1,
            }
        }
        let procs = if procs.is_empty() && skipped == 0 { Err(format!("{}: no process directories", self.root)) } else { Ok(procs) };
        FdFacts { procs, skipped, file_nr }
    }

    /// Socket inode -> (pid, comm): the first process listed that holds it.
    pub fn socket_owners(&self) -> HashMap<u64, (u32, String)> {
        let mut map = HashMap::new();
        for e in self.entries.iter().flatten() {
            for &inode in &e.sockets {
                map.entry(inode).or_insert_with(|| (e.pid, trimmed_comm(e).unwrap_or("?").to_string()));
            }
        }
        map
    }

    /// Locked memory of every user process (`memory-lock`), by pid; this doctor itself is
    /// left out.
    pub fn lock_facts(&self) -> LockFacts {
        let me = std::process::id();
        let procs = self.listed().map(|entries| {
            let mut out: Vec<LockProc> = entries
                .iter()
                .filter(|e| e.pid != me)
                .filter_map(|e| {
                    let status = String::from_utf8_lossy(e.status.as_deref()?);
                    let rss = parse::pid::status_kib(&status, "VmRSS")?;
                    let comm = trimmed_comm(e).unwrap_or("?").to_string();
                    let cmdline = e.cmdline.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
                    let args: Vec<&str> = cmdline.split('\0').filter(|a| !a.is_empty()).collect();
                    Some(LockProc {
                        pid: e.pid,
                        wants: memlock::wants_lock(&comm, &args),
                        comm,
                        rss,
                        locked: parse::pid::status_kib(&status, "VmLck").unwrap_or_default(),
                        pinned: parse::pid::status_kib(&status, "VmPin"),
                        limit: e.limits.as_deref().map_or(memlock::Limit::Unknown, memlock::memlock_soft_limit),
                    })
                })
                .collect();
            out.sort_by_key(|p| p.pid);
            out
        });
        LockFacts { procs }
    }
}

fn is_daemon(e: &Entry) -> bool {
    e.cmdline.as_deref().unwrap_or_default().split(|&b| b == 0).any(|arg| arg == b"daemon")
}
