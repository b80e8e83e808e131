//! The /proc scan for victims, in memory reserved up front.
//!
//! Owns walking /proc (getdents into a fixed buffer), reading every process into a
//! [`Candidate`] record, remembering the previous scan for fault and growth deltas, and
//! turning the pure ranking into a victim (reading oom_score_adj only for the few best).
//!
//! Two phases keep a scan of 10,000 processes cheap. Phase 1 reads one number per process,
//! the resident size, from `statm`: on procfs through a descriptor held open since the scan
//! that first saw the process, with the identity (pid + start time), name and kernel-thread
//! flag read from `stat` that one time. Phase 2 reads `stat` again (state, name, major
//! faults; a start time that no longer matches drops the process) and, with swap in use,
//! `status` (VmSwap), only for the [`DETAIL_TOP`] best candidates. A held descriptor names
//! the process it was opened for (it is opened *before* that process's `stat` is read), so
//! an exited process or a reused pid can never be read through it. Off procfs (a captured
//! tree) nothing is held and every process is read from `stat`. A vanished process is
//! skipped, one bad pid never aborts a scan, and the record vectors never grow past the
//! capacity given at start. It must never signal.

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use anyhow::{Context, Result};
use thrashguard_core::parse::{self, numa_maps, pid};
use thrashguard_core::policy::rank::{self, Candidate, Preference, RankBy};
use thrashguard_core::units::{Kib, Pid, ProcId};

use crate::procdir::{self, ReadError};

/// Patterns on name and command line that make a process more or less likely.
#[derive(Debug, Default)]
pub struct Preferences {
    prefer: Vec<regex_lite::Regex>,
    avoid: Vec<regex_lite::Regex>,
}

impl Preferences {
    /// Compile the configured patterns (already validated by the config).
    pub fn new(prefer: &[String], avoid: &[String]) -> Result<Preferences> {
        let compile = |list: &[String]| {
            list.iter().map(|p| regex_lite::Regex::new(p).with_context(|| format!("bad pattern {p:?}"))).collect::<Result<Vec<_>>>()
        };
        Ok(Preferences { prefer: compile(prefer)?, avoid: compile(avoid)? })
    }

    fn is_empty(&self) -> bool {
        self.prefer.is_empty() && self.avoid.is_empty()
    }

    fn judge(&self, texts: &[&str]) -> Preference {
        let hit = |set: &[regex_lite::Regex]| set.iter().any(|r| texts.iter().any(|t| r.is_match(t)));
        if hit(&self.prefer) {
            Preference::Prefer
        } else if hit(&self.avoid) {
            Preference::Avoid
        } else {
            Preference::Neutral
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Prev {
    id: ProcId,
    /// Absolute major faults, where this scan read `stat`.
    majflt: Option<u64>,
    rss: Kib,
    /// Swapped-out memory, where the previous scan read it.
    swap: Option<Kib>,
}

/// The previous scan's reading of the same process (pid *and* start time: a reused pid
/// has no history). `prev` is sorted by pid.
fn prev_of(prev: &[Prev], id: ProcId) -> Option<Prev> {
    prev.binary_search_by_key(&id.pid, |p| p.id.pid).ok().map(|i| prev[i]).filter(|p| p.id == id)
}

/// Processes whose /proc/PID/stat (state, faults) and, with swap in use, status (VmSwap)
/// are read in a scan: the best this many by resident size and growth. `stat` costs four
/// times what `statm` does and `status` three times more again (see benches/scan.rs); a
/// process outside the top few hundred by resident size is not what makes the machine
/// thrash.
pub const DETAIL_TOP: usize = 256;

/// What one scan saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// Process directories listed.
    pub listed: u32,
    /// Recorded as candidates (including ineligible ones).
    pub recorded: u32,
    /// Vanished during the scan.
    pub gone: u32,
    /// Unreadable (permission) or unparsable.
    pub unreadable: u32,
    /// Not recorded because the capacity was reached.
    pub over_capacity: u32,
}

/// The scanner and its reserved memory.
#[derive(Debug)]
pub struct Scanner {
    proc_dir: OwnedFd,
    dents: Vec<MaybeUninit<u8>>,
    buf: Box<[u8]>,
    cmdline: Box<[u8]>,
    cands: Vec<Candidate>,
    /// Per candidate, index for index with `cands`: absolute major-fault count (where
    /// `stat` was read this scan), resident size, and whether status (swap) was read.
    abs_majflt: Vec<Option<u64>>,
    rss: Vec<Kib>,
    swap_known: Vec<bool>,
    prev: Vec<Prev>,
    order: Vec<u32>,
    /// Statm files kept open since the last scan, sorted by pid (empty off procfs).
    held: Vec<Held>,
    /// The next scan's `held`, filled while scanning (the two swap; same capacity).
    next_held: Vec<Held>,
    own: Pid,
    page_size: u64,
    prefs: Preferences,
}

/// A process's statm file held open from one scan to the next, with what its `stat` said
/// when the descriptor was opened.
#[derive(Debug)]
struct Held {
    pid: Pid,
    fd: Option<OwnedFd>,
    id: ProcId,
    comm: thrashguard_core::units::Comm,
    kernel_thread: bool,
}

/// Descriptors left to the rest of the guard when the scanner sizes its held stat files.
const FD_RESERVE: u64 = 256;

/// How many stat files the scanner may keep open: `capacity`, within RLIMIT_NOFILE (its
/// soft limit raised to the hard one first, as a service that needs descriptors should),
/// and none off procfs.
fn held_budget(proc_dir: std::os::fd::BorrowedFd<'_>, capacity: usize) -> usize {
    if !procdir::is_procfs(proc_dir) {
        return 0;
    }
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    let want = capacity as u64 + FD_RESERVE;
    if lim.current.is_some_and(|cur| cur < want) {
        let raised = lim.maximum.map_or(want, |max| max.min(want));
        if setrlimit(Resource::Nofile, Rlimit { current: Some(raised), maximum: lim.maximum }).is_ok() {
            lim.current = Some(raised);
        }
    }
    let room = lim.current.map_or(u64::MAX, |cur| cur.saturating_sub(FD_RESERVE));
    (capacity as u64).min(room) as usize
}

impl Scanner {
    /// Reserve memory for `capacity` processes.
    pub fn new(proc_root: &Path, capacity: usize, own: Pid, prefs: Preferences) -> Result<Scanner> {
        let proc_dir = procdir::open_dir(proc_root).with_context(|| format!("cannot open {}", proc_root.display()))?;
        let held = held_budget(proc_dir.as_fd(), capacity);
        Ok(Scanner {
            proc_dir,
            dents: vec![MaybeUninit::uninit(); 64 * 1024],
            buf: vec![0u8; 16 * 1024].into_boxed_slice(),
            cmdline: vec![0u8; 4096].into_boxed_slice(),
            cands: Vec::with_capacity(capacity),
            abs_majflt: Vec::with_capacity(capacity),
            rss: Vec::with_capacity(capacity),
            swap_known: Vec::with_capacity(capacity),
            prev: Vec::with_capacity(capacity),
            order: Vec::with_capacity(capacity),
            held: Vec::with_capacity(held),
            next_held: Vec::with_capacity(held),
            own,
            page_size: rustix::param::page_size() as u64,
            prefs,
        })
    }

    /// Candidates of the last scan.
    pub fn candidates(&self) -> &[Candidate] {
        &self.cands
    }

    /// Scan every process (or, with `members`, only those pids: a sorted slice), reading
    /// swap for the [`DETAIL_TOP`] best candidates.
    pub fn scan(&mut self, members: Option<&[u32]>) -> ScanStats {
        self.scan_with(members, true)
    }

    /// As [`Scanner::scan`]; with `swap_in_use` false (no swap, or none used) no status
    /// file is read at all: RSS from stat is the whole footprint.
    pub fn scan_with(&mut self, members: Option<&[u32]>, swap_in_use: bool) -> ScanStats {
        let mut stats = ScanStats::default();
        // Keep the previous scan for deltas.
        self.prev.clear();
        for (i, c) in self.cands.iter().enumerate() {
            let swap = self.swap_known[i].then_some(c.swap);
            self.prev.push(Prev { id: c.id, majflt: self.abs_majflt[i], rss: self.rss[i], swap });
        }
        self.prev.sort_unstable_by_key(|p| p.id.pid);
        self.cands.clear();
        self.abs_majflt.clear();
        self.rss.clear();
        self.swap_known.clear();
        if rustix::fs::seek(&self.proc_dir, rustix::fs::SeekFrom::Start(0)).is_err() {
            return stats;
        }
        // Phase 1: the resident size of every process (statm through a held descriptor, or
        // stat for a process not seen before).
        self.next_held.clear();
        let mut dir = rustix::fs::RawDir::new(self.proc_dir.as_fd(), &mut self.dents);
        while let Some(entry) = dir.next() {
            let Ok(entry) = entry else { break };
            let Some(pid) = pid::parse_pid_name(entry.file_name().to_bytes()) else { continue };
            stats.listed += 1;
            let held = match self.held.binary_search_by_key(&pid, |h| h.pid) {
                Ok(i) => Some(Held { fd: self.held[i].fd.take(), ..self.held[i] }),
                Err(_) => None,
            };
            let skip = if members.is_some_and(|m| m.binary_search(&pid.0).is_err()) {
                true
            } else if self.cands.len() == self.cands.capacity() {
                stats.over_capacity += 1;
                true
            } else {
                false
            };
            if skip {
                // Not read this time: its open statm file stays for the next scan.
                if let Some(h) = held
                    && self.next_held.len() < self.next_held.capacity()
                {
                    self.next_held.push(h);
                }
                continue;
            }
            let read = read_process(self.proc_dir.as_fd(), pid, held, &mut self.buf, self.page_size, &mut self.next_held);
            match read {
                Ok((mut c, majflt)) => {
                    let prev = prev_of(&self.prev, c.id);
                    // Deltas only against the same process: a reused pid starts afresh.
                    if let Some(p) = prev {
                        c.majflt_delta = majflt.zip(p.majflt).map_or(0, |(now, then)| now.saturating_sub(then));
                        c.growth_kib = c.footprint.0 as i64 - p.rss.0 as i64;
                    }
                    self.rss.push(c.footprint);
                    self.cands.push(c);
                    self.abs_majflt.push(majflt);
                    self.swap_known.push(false);
                    stats.recorded += 1;
                }
                Err(ReadError::Gone) => stats.gone += 1,
                Err(_) => stats.unreadable += 1,
            }
        }
        // Statm files of processes that were not listed again (exited) close here.
        self.held.clear();
        if !self.next_held.is_sorted_by_key(|h| h.pid) {
            self.next_held.sort_unstable_by_key(|h| h.pid);
        }
        std::mem::swap(&mut self.held, &mut self.next_held);
        self.detail_the_best(&mut stats, swap_in_use);
        stats
    }

    /// Statm files held open for the next scan.
    pub fn held_open(&self) -> usize {
        self.held.len()
    }

    /// Phase 2: stat (state, name, major faults) of the best [`DETAIL_TOP`] candidates by
    /// their phase-1 figures where phase 1 did not read it, and status (VmSwap) with swap in
    /// use. A process whose start time no longer matches is not the one first seen: it is
    /// dropped from this scan (its held descriptor already reads nothing).
    fn detail_the_best(&mut self, stats: &mut ScanStats, swap_in_use: bool) {
        let totals = rank::Totals::of(&self.cands, self.own);
        self.order.clear();
        self.order.extend((0..self.cands.len() as u32).filter(|&i| rank::eligibility(&self.cands[i as usize], self.own).is_ok()));
        if self.order.len() > DETAIL_TOP {
            let cands = &self.cands;
            self.order.select_nth_unstable_by(DETAIL_TOP, |a, b| {
                rank::badness(&cands[*b as usize], &totals).total_cmp(&rank::badness(&cands[*a as usize], &totals))
            });
            self.order.truncate(DETAIL_TOP);
        }
        for &i in &self.order {
            let i = i as usize;
            let pid = self.cands[i].id.pid;
            if self.abs_majflt[i].is_none() {
                match procdir::read_pid_file(self.proc_dir.as_fd(), pid, "stat", &mut self.buf).map(|b| parse_stat(b, self.page_size)) {
                    Ok(Ok((fresh, majflt))) if fresh.id == self.cands[i].id => {
                        let c = &mut self.cands[i];
                        c.comm = fresh.comm;
                        c.exiting = fresh.exiting;
                        c.kernel_thread = fresh.kernel_thread;
                        if fresh.exiting {
                            c.footprint = Kib::ZERO;
                        }
                        self.abs_majflt[i] = Some(majflt);
                        if let Some(Prev { majflt: Some(then), .. }) = prev_of(&self.prev, c.id) {
                            c.majflt_delta = majflt.saturating_sub(then);
                        }
                    }
                    // exited (or its pid reused) since phase 1: no longer a candidate
                    Ok(Ok(_)) | Err(ReadError::Gone) => {
                        self.cands[i].exiting = true;
                        stats.gone += 1;
                        continue;
                    }
                    Ok(Err(_)) | Err(_) => {}
                }
            }
            if !swap_in_use {
                continue;
            }
            match procdir::read_pid_file(self.proc_dir.as_fd(), pid, "status", &mut self.buf) {
                Ok(text) => {
                    if let Ok(st) = pid::parse_status(text) {
                        let c = &mut self.cands[i];
                        c.swap = st.vm_swap.unwrap_or_default();
                        c.footprint = st.footprint();
                        self.swap_known[i] = true;
                        let prev = prev_of(&self.prev, c.id);
                        if let Some(Prev { rss, swap: Some(swap), .. }) = prev {
                            c.growth_kib = c.footprint.0 as i64 - rss.saturating_add(swap).0 as i64;
                        }
                    }
                }
                Err(ReadError::Gone) => {
                    // exited between the two reads: no longer a candidate
                    self.cands[i].exiting = true;
                    stats.gone += 1;
                }
                Err(_) => {}
            }
        }
    }

    /// For a NUMA node scope: weigh the best `top` candidates (by footprint) by the share of
    /// their memory on `node`, read from /proc/PID/numa_maps in chunks of the scan buffer.
    /// Candidates beyond `top` count as having none of their memory there.
    pub fn weigh_by_node(&mut self, node: u32, top: usize) {
        self.order.clear();
        self.order.extend((0..self.cands.len() as u32).filter(|&i| rank::eligibility(&self.cands[i as usize], self.own).is_ok()));
        let cands = &self.cands;
        self.order.sort_unstable_by(|a, b| cands[*b as usize].footprint.cmp(&cands[*a as usize].footprint));
        for c in &mut self.cands {
            c.scope_share_permille = 0;
        }
        for &i in self.order.iter().take(top) {
            let c = &mut self.cands[i as usize];
            c.scope_share_permille = node_share(self.proc_dir.as_fd(), c.id.pid, node, &mut self.buf).map_or(0, |s| s.permille());
        }
    }

    /// Rank the last scan and return the best eligible victim, reading oom_score_adj (and
    /// the command line, for prefer/avoid) only as far down the order as needed.
    pub fn pick(&mut self, by: RankBy) -> Option<Candidate> {
        if by == RankBy::OomScore {
            for c in &mut self.cands {
                if !c.kernel_thread {
                    c.oom_score = procdir::read_pid_file(self.proc_dir.as_fd(), c.id.pid, "oom_score", &mut self.buf)
                        .ok()
                        .and_then(|b| parse::parse_single_i64("oom_score", b).ok())
                        .and_then(|v| u32::try_from(v).ok());
                }
            }
        }
        if !self.prefs.is_empty() {
            for i in 0..self.cands.len() {
                if self.cands[i].kernel_thread {
                    continue;
                }
                let comm = self.cands[i].comm.to_string_lossy();
                let cmd = procdir::read_pid_file(self.proc_dir.as_fd(), self.cands[i].id.pid, "cmdline", &mut self.cmdline)
                    .map(|b| String::from_utf8_lossy(b).replace('\0', " "))
                    .unwrap_or_default();
                self.cands[i].preference = self.prefs.judge(&[&comm, cmd.trim_end()]);
            }
        }
        rank::rank(&self.cands, by, self.own, &mut self.order);
        for &i in &self.order {
            let c = &mut self.cands[i as usize];
            match procdir::read_pid_file(self.proc_dir.as_fd(), c.id.pid, "oom_score_adj", &mut self.buf) {
                Ok(b) => c.oom_score_adj = parse::parse_single_i64("oom_score_adj", b).ok().and_then(|v| i16::try_from(v).ok()),
                Err(_) => continue, // vanished or unreadable: not a victim
            }
            if rank::eligibility(c, self.own).is_ok() {
                return Some(*c);
            }
        }
        None
    }

    /// The open /proc directory.
    pub fn proc_dir(&self) -> &OwnedFd {
        &self.proc_dir
    }
}

/// Read one process: its resident size through the statm descriptor the last scan held for
/// it, or, when there is none or it names an exited process (the pid may have been reused),
/// its `stat` afresh, holding a new statm descriptor for the next scan while `keep` has
/// room. The statm file is opened *before* `stat` is read, so the identity kept with it is
/// never newer than the process it reads. Returns the absolute major-fault count when `stat`
/// was read.
fn read_process(
    proc_dir: std::os::fd::BorrowedFd<'_>,
    pid: Pid,
    held: Option<Held>,
    buf: &mut [u8],
    page_size: u64,
    keep: &mut Vec<Held>,
) -> Result<(Candidate, Option<u64>), ReadError> {
    if let Some(Held { fd: Some(fd), id, comm, kernel_thread, .. }) = held {
        match read_resident(fd.as_fd(), buf) {
            Ok(Some(resident)) => {
                if keep.len() < keep.capacity() {
                    keep.push(Held { pid, fd: Some(fd), id, comm, kernel_thread });
                }
                let c = Candidate {
                    footprint: if kernel_thread { Kib::ZERO } else { Kib::from_pages(resident, page_size) },
                    ..candidate(id, comm, kernel_thread, false)
                };
                return Ok((c, None));
            }
            // Exited since the last scan; the pid listed now may be a new process.
            Ok(None) | Err(ReadError::Gone) => {}
            Err(e) => return Err(e),
        }
    }
    let statm = if keep.len() < keep.capacity() { procdir::open_pid_file(proc_dir, pid, "statm").ok() } else { None };
    let (mut c, majflt) = parse_stat(procdir::read_pid_file(proc_dir, pid, "stat", buf)?, page_size)?;
    if let Some(fd) = statm {
        // The size from statm, as every later scan reads it. stat's rss is the mm's
        // approximate counter (per-CPU batches not folded in: on 6.18 a sleeping `sleep`
        // shows 421 pages there against 448 in statm and VmRSS), so a first size from
        // stat and the next from statm would show growth that is not there.
        if !c.kernel_thread
            && !c.exiting
            && let Ok(Some(resident)) = read_resident(fd.as_fd(), buf)
        {
            c.footprint = Kib::from_pages(resident, page_size);
        }
        keep.push(Held { pid, fd: Some(fd), id: c.id, comm: c.comm, kernel_thread: c.kernel_thread });
    }
    Ok((c, Some(majflt)))
}

/// The resident size (pages) from a statm descriptor; `None` once the process it was
/// opened for is gone (the read is empty).
fn read_resident(fd: std::os::fd::BorrowedFd<'_>, buf: &mut [u8]) -> Result<Option<thrashguard_core::units::Pages>, ReadError> {
    let text = procdir::read_open(fd, buf)?;
    if text.is_empty() {
        return Ok(None);
    }
    pid::parse_statm_resident(text).map(Some).map_err(|_| ReadError::Other(rustix::io::Errno::INVAL))
}

/// A candidate with nothing measured yet.
fn candidate(id: ProcId, comm: thrashguard_core::units::Comm, kernel_thread: bool, exiting: bool) -> Candidate {
    Candidate {
        id,
        comm,
        footprint: Kib::ZERO,
        swap: Kib::ZERO,
        majflt_delta: 0,
        growth_kib: 0,
        oom_score_adj: None,
        oom_score: None,
        kernel_thread,
        exiting,
        preference: Preference::Neutral,
        scope_share_permille: 1000,
    }
}

/// One process's stat as a candidate (footprint = RSS), with its absolute major-fault count.
fn parse_stat(stat: &[u8], page_size: u64) -> Result<(Candidate, u64), ReadError> {
    let stat = pid::parse_stat(stat).map_err(|_| ReadError::Other(rustix::io::Errno::INVAL))?;
    let id = ProcId { pid: stat.pid, start_time: stat.start_time };
    let c = Candidate {
        footprint: if stat.is_kernel_thread() || stat.is_exiting() { Kib::ZERO } else { Kib::from_pages(stat.rss, page_size) },
        ..candidate(id, stat.comm, stat.is_kernel_thread(), stat.is_exiting())
    };
    Ok((c, stat.majflt))
}

/// Sum /proc/PID/numa_maps for `node`, reading it in chunks of `buf` (it can be far larger
/// than any fixed buffer: one line per mapping). `None` if unreadable.
fn node_share(proc_dir: std::os::fd::BorrowedFd<'_>, pid: Pid, node: u32, buf: &mut [u8]) -> Option<numa_maps::NodeShare> {
    let mut path = [0u8; 64];
    let path = procdir::pid_path(&mut path, pid, "numa_maps");
    let fd =
        rustix::fs::openat(proc_dir, path, rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty()).ok()?;
    let mut total = numa_maps::NodeShare::default();
    procdir::for_each_line_chunk(fd.as_fd(), buf, |lines| {
        let part = numa_maps::node_share(lines, node);
        total.on_node = total.on_node.saturating_add(part.on_node);
        total.total = total.total.saturating_add(part.total);
    })?;
    Some(total)
}
