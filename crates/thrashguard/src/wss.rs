//! `thrashguard wss`: working set, dirtied pages, RSS and swap of processes over time,
//! and [`Footprints`], the cheap growth reading the guard and `top` can rank by.
//!
//! Owns every side effect of measuring a process's memory: opening its /proc files once
//! (through its /proc/PID directory, so a reused pid is never read), writing `clear_refs`
//! (1: accessed bits, for the working set; 4: soft-dirty bits, for dirtied pages), reading
//! smaps_rollup / smaps, and reading /proc/PID/pagemap over the mapped ranges of
//! /proc/PID/maps only: with the `PAGEMAP_SCAN` ioctl (Linux 6.7+) where the kernel has it,
//! else `pread` in 64 KiB chunks (8192 entries) into a buffer reserved up front. It probes
//! soft-dirty support on a page of its own. All arithmetic and rendering is in
//! `thrashguard_core::wss`; a process that exits, is a zombie or a kernel thread, or may not
//! be read is a per-process outcome, never an error for the others. It must never signal
//! a process or write anything but `clear_refs`.
//!
//! The one `unsafe` block is the `PAGEMAP_SCAN` ioctl: neither rustix nor libc wrap it, so
//! [`PmScanArg`] and [`PageRegion`] copy `struct pm_scan_arg` / `struct page_region` of
//! linux/fs.h.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use thrashguard_core::parse::pagemap::{self, ENTRY_BYTES, PAGE_IS_PRESENT, PAGE_IS_SOFT_DIRTY, PAGE_IS_SWAPPED, PageCounts};
use thrashguard_core::parse::{maps, pid, smaps};
use thrashguard_core::units::{Comm, Kib, Micros, Pages, Pid, ProcId};
use thrashguard_core::wss::{self as core_wss, GrowthTracker, PagemapMethod, ProcGrowth, Reading, SoftDirty};

use crate::procdir::{self, ReadError};

/// Pagemap bytes read per `pread`: 8192 entries, 32 MiB of address space.
pub const PAGEMAP_CHUNK: usize = 64 * 1024;
/// Regions per `PAGEMAP_SCAN` call; a walk with more continues where it stopped.
pub const SCAN_REGIONS: usize = 4096;

/// `struct pm_scan_arg` (linux/fs.h, Linux 6.7+): 12 u64, 96 bytes.
#[repr(C)]
#[derive(Debug, Default)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

/// `struct page_region` (linux/fs.h): a run of pages with the same categories.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PageRegion {
    start: u64,
    end: u64,
    categories: u64,
}

/// `PAGEMAP_SCAN = _IOWR('f', 16, struct pm_scan_arg)`.
const PAGEMAP_SCAN: u64 = (3 << 30) | ((std::mem::size_of::<PmScanArg>() as u64) << 16) | ((b'f' as u64) << 8) | 16;
const _: () = assert!(std::mem::size_of::<PmScanArg>() == 96 && std::mem::size_of::<PageRegion>() == 24);
const _: () = assert!(PAGEMAP_SCAN == 0xC060_6610);

/// Which way to read pagemap (`--pagemap`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum MethodChoice {
    /// PAGEMAP_SCAN where the kernel has it, else pread.
    #[default]
    Auto,
    /// PAGEMAP_SCAN only (an error on kernels before 6.7).
    Scan,
    /// pread of the entries.
    Pread,
}

/// Why pagemap could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum PagemapError {
    /// The kernel has no PAGEMAP_SCAN (ENOTTY / EINVAL).
    NoScan,
    /// The process exited.
    Gone,
    /// Anything else.
    Other(Errno),
}

/// Reads pagemap ranges of a process into page counts, in memory reserved once.
#[derive(Debug)]
pub struct PagemapReader {
    buf: Box<[u8]>,
    regions: Vec<PageRegion>,
    page_size: u64,
}

impl PagemapReader {
    /// Reserve the chunk buffer and the region vector.
    pub fn new() -> PagemapReader {
        PagemapReader {
            buf: vec![0u8; PAGEMAP_CHUNK].into_boxed_slice(),
            regions: vec![PageRegion::default(); SCAN_REGIONS],
            page_size: rustix::param::page_size() as u64,
        }
    }

    /// The page size.
    pub fn page_size(&self) -> u64 {
        self.page_size
    }

    /// Count `[start, end)` by `pread` of its entries in [`PAGEMAP_CHUNK`] pieces; stops
    /// early (never reads past) where the kernel has no more entries.
    pub fn count_pread(&mut self, fd: BorrowedFd<'_>, start: u64, end: u64) -> Result<PageCounts, PagemapError> {
        let mut counts = PageCounts::default();
        let mut offset = start / self.page_size * ENTRY_BYTES as u64;
        let mut left = (end.saturating_sub(start) / self.page_size) as usize * ENTRY_BYTES;
        while left > 0 {
            let want = left.min(self.buf.len());
            match rustix::io::pread(fd, &mut self.buf[..want], offset) {
                Ok(0) => break,
                Ok(n) => {
                    let whole = n - n % ENTRY_BYTES;
                    counts.add_entries(&self.buf[..whole]);
                    if whole == 0 {
                        break;
                    }
                    offset += whole as u64;
                    left -= whole;
                }
                Err(Errno::INTR) => {}
                Err(Errno::SRCH) => return Err(PagemapError::Gone),
                Err(e) => return Err(PagemapError::Other(e)),
            }
        }
        Ok(counts)
    }

    /// Count `[start, end)` with the `PAGEMAP_SCAN` ioctl: the kernel walks the page tables
    /// and returns runs of present or swapped pages with their categories.
    pub fn count_scan(&mut self, fd: BorrowedFd<'_>, start: u64, end: u64) -> Result<PageCounts, PagemapError> {
        let mut counts = PageCounts { scanned: Pages(end.saturating_sub(start) / self.page_size), ..PageCounts::default() };
        let mut arg = PmScanArg {
            size: std::mem::size_of::<PmScanArg>() as u64,
            start,
            end,
            vec: self.regions.as_mut_ptr() as u64,
            vec_len: self.regions.len() as u64,
            category_anyof_mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
            // not PAGE_IS_FILE: wss does not report it, and asking costs a page lookup each
            return_mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED | PAGE_IS_SOFT_DIRTY,
            ..PmScanArg::default()
        };
        let mut counted_to = start;
        while arg.start < end {
            // SAFETY: `arg` is a valid `struct pm_scan_arg` of the size it declares; `vec`
            // points at `vec_len` writable `struct page_region`s owned by `self.regions`,
            // which lives and is not otherwise borrowed for the call. The kernel writes at
            // most `vec_len` regions and `walk_end` in `arg`, and keeps no pointer after.
            let rc = unsafe { libc::ioctl(fd.as_raw_fd(), PAGEMAP_SCAN as libc::Ioctl, &mut arg as *mut PmScanArg) };
            if rc < 0 {
                return Err(match Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)) {
                    Errno::NOTTY | Errno::INVAL | Errno::OPNOTSUPP => PagemapError::NoScan,
                    Errno::INTR => continue,
                    Errno::SRCH => PagemapError::Gone,
                    e => PagemapError::Other(e),
                });
            }
            let filled = (rc as usize).min(self.regions.len());
            for r in &self.regions[..filled] {
                // A walk that stopped on a full vector may resume (walk_end) inside a run it
                // already returned: count every page once.
                let from = r.start.max(counted_to);
                if r.end > from {
                    counts.add_region(from, r.end, r.categories, self.page_size);
                    counted_to = r.end;
                }
            }
            if arg.walk_end <= arg.start {
                break; // no progress: never loop forever on a kernel that does not advance
            }
            arg.start = arg.walk_end;
        }
        Ok(counts)
    }

    /// Count `[start, end)` the chosen way.
    pub fn count(&mut self, fd: BorrowedFd<'_>, start: u64, end: u64, method: PagemapMethod) -> Result<PageCounts, PagemapError> {
        match method {
            PagemapMethod::PagemapScan => self.count_scan(fd, start, end),
            PagemapMethod::Pread => self.count_pread(fd, start, end),
            PagemapMethod::None => Ok(PageCounts::default()),
        }
    }
}

impl Default for PagemapReader {
    fn default() -> Self {
        PagemapReader::new()
    }
}

/// The mapped ranges of a maps file (clipped to `range`, adjacent ones merged, kernel
/// areas such as `[vsyscall]` left out) into `out`, read in chunks of `buf`. `None` when
/// the file cannot be read or parsed.
pub fn mapped_ranges(maps_fd: BorrowedFd<'_>, range: Option<(u64, u64)>, buf: &mut [u8], out: &mut Vec<(u64, u64)>) -> Option<()> {
    out.clear();
    let (lo, hi) = range.unwrap_or((0, u64::MAX));
    let mut bad = false;
    procdir::for_each_line_chunk(maps_fd, buf, |lines| {
        for m in maps::lines(lines) {
            let Ok(m) = m else {
                bad = true;
                continue;
            };
            if m.is_kernel_area() {
                continue;
            }
            let Some((s, e)) = m.clip(lo, hi) else { continue };
            match out.last_mut() {
                Some(last) if last.1 == s => last.1 = e,
                _ => out.push((s, e)),
            }
        }
    })?;
    (!bad).then_some(())
}

/// Which PAGEMAP method `choice` means on this kernel, tried on our own pagemap.
pub fn pick_method(proc_root: &Path, choice: MethodChoice, reader: &mut PagemapReader) -> Result<PagemapMethod, String> {
    if choice == MethodChoice::Pread {
        return Ok(PagemapMethod::Pread);
    }
    let own = match std::fs::File::open(proc_root.join("self/pagemap")) {
        Ok(f) => f,
        Err(_) if choice == MethodChoice::Auto => return Ok(PagemapMethod::Pread),
        Err(e) => return Err(format!("{}/self/pagemap: {e}", proc_root.display())),
    };
    let probe = std::hint::black_box([0u8; 1]); // on our stack: a present page
    let addr = probe.as_ptr() as u64 & !(reader.page_size - 1);
    match reader.count_scan(own.as_fd(), addr, addr + reader.page_size) {
        Ok(_) => Ok(PagemapMethod::PagemapScan),
        Err(_) if choice == MethodChoice::Auto => Ok(PagemapMethod::Pread),
        Err(e) => Err(format!("PAGEMAP_SCAN: {e:?} (the kernel needs 6.7+)")),
    }
}

/// Does this kernel track soft-dirty pages? Dirty a page of our own after a `clear_refs`
/// write of 4 and look at its pagemap bit 55 (the kernel accepts the write and ignores it
/// without CONFIG_MEM_SOFT_DIRTY, so only the bit tells).
pub fn probe_soft_dirty(proc_root: &Path) -> SoftDirty {
    let ps = rustix::param::page_size();
    let mut mem = vec![1u8; 2 * ps];
    let off = mem.as_ptr().align_offset(ps).min(ps);
    let addr = mem[off..].as_ptr() as u64;
    let entry = || -> Option<(bool, bool)> {
        let f = std::fs::File::open(proc_root.join("self/pagemap")).ok()?;
        let mut e = [0u8; 8];
        rustix::io::pread(&f, &mut e, addr / ps as u64 * 8).ok().filter(|&n| n == 8)?;
        Some(pagemap::entry(e))
    };
    if std::fs::write(proc_root.join("self/clear_refs"), "4").is_err() {
        return SoftDirty::Unknown;
    }
    let after_clear = entry();
    mem[off] = std::hint::black_box(7);
    std::hint::black_box(&mut mem);
    match (after_clear, entry()) {
        (Some((true, false)), Some((true, true))) => SoftDirty::Supported,
        (_, Some((true, false))) => SoftDirty::Unsupported,
        _ => SoftDirty::Unknown,
    }
}

/// What `wss` measures and how.
#[derive(Clone, Debug)]
pub struct Options {
    /// The processes.
    pub pids: Vec<Pid>,
    /// Time between readings.
    pub interval: Duration,
    /// Readings per process.
    pub samples: u32,
    /// NDJSON on stdout.
    pub json: bool,
    /// Reset accessed and soft-dirty bits at the start and after each reading.
    pub reset: bool,
    /// Only the mappings that overlap this range.
    pub range: Option<(u64, u64)>,
    /// How to read pagemap.
    pub method: MethodChoice,
}

/// Why a process could not be measured (at all, or any more).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Measured until the end.
    Measured,
    /// Exited during the measurement (after `samples` readings).
    Exited,
    /// No such process.
    NotFound,
    /// A zombie: exited, not yet reaped, no memory.
    Zombie,
    /// A kernel thread: no user memory.
    KernelThread,
    /// A file it needs may not be read or written.
    Denied(&'static str),
    /// Anything else.
    Failed(String),
}

impl Outcome {
    fn name(&self) -> &'static str {
        match self {
            Outcome::Measured => "measured",
            Outcome::Exited => "exited",
            Outcome::NotFound => "not_found",
            Outcome::Zombie => "zombie",
            Outcome::KernelThread => "kernel_thread",
            Outcome::Denied(_) => "permission_denied",
            Outcome::Failed(_) => "failed",
        }
    }

    fn message(&self) -> String {
        match self {
            Outcome::Measured => "measured".into(),
            Outcome::Exited => "exited during the measurement".into(),
            Outcome::NotFound => "no such process".into(),
            Outcome::Zombie => "zombie: it has exited and holds no memory (its parent has not reaped it)".into(),
            Outcome::KernelThread => "kernel thread: no user memory".into(),
            Outcome::Denied(file) => {
                format!(
                    "permission denied on {file} (reading another user's process needs root, or CAP_SYS_PTRACE and for the reset CAP_DAC_OVERRIDE)"
                )
            }
            Outcome::Failed(why) => why.clone(),
        }
    }

    /// A process that could be measured (to the end, or until it exited).
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Measured | Outcome::Exited)
    }
}

/// One process being measured: its files, opened once.
#[derive(Debug)]
struct Target {
    pid: Pid,
    comm: Comm,
    /// smaps_rollup, or smaps with a range.
    smaps: OwnedFd,
    maps: Option<OwnedFd>,
    pagemap: Option<OwnedFd>,
    clear_refs: Option<OwnedFd>,
    prev: Option<Reading>,
    last_reset: Micros,
    samples: u32,
    outcome: Outcome,
}

fn denied_or(file: &'static str, e: Errno) -> Outcome {
    match e {
        Errno::ACCESS | Errno::PERM => Outcome::Denied(file),
        Errno::NOENT | Errno::SRCH => Outcome::Exited,
        e => Outcome::Failed(format!("{file}: {e}")),
    }
}

fn open_at(dir: BorrowedFd<'_>, file: &'static str, flags: OFlags) -> Result<OwnedFd, Outcome> {
    rustix::fs::openat(dir, file, flags | OFlags::CLOEXEC | OFlags::NOFOLLOW, Mode::empty()).map_err(|e| denied_or(file, e))
}

/// Open everything one process's measurement needs, or say why not.
fn open_target(
    proc_dir: BorrowedFd<'_>,
    pid: Pid,
    opts: &Options,
    pagemap_wanted: bool,
    buf: &mut [u8],
) -> Result<Target, (Comm, Outcome)> {
    let mut path = [0u8; 64];
    let dir = rustix::fs::openat(
        proc_dir,
        procdir::pid_path(&mut path, pid, "."),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| (Comm::default(), if matches!(e, Errno::NOENT | Errno::SRCH) { Outcome::NotFound } else { denied_or("PID", e) }))?;
    let stat_fd = open_at(dir.as_fd(), "stat", OFlags::RDONLY).map_err(|o| (Comm::default(), o))?;
    let stat = match procdir::read_open(stat_fd.as_fd(), buf) {
        Ok([]) => return Err((Comm::default(), Outcome::NotFound)),
        Ok(b) => pid::parse_stat(b).map_err(|e| (Comm::default(), Outcome::Failed(e.to_string())))?,
        Err(ReadError::Gone) => return Err((Comm::default(), Outcome::NotFound)),
        Err(ReadError::Denied) => return Err((Comm::default(), Outcome::Denied("stat"))),
        Err(e) => return Err((Comm::default(), Outcome::Failed(format!("stat: {e:?}")))),
    };
    let comm = stat.comm;
    if stat.is_kernel_thread() {
        return Err((comm, Outcome::KernelThread));
    }
    if stat.is_exiting() {
        return Err((comm, Outcome::Zombie));
    }
    let fail = |o: Outcome| (comm, if o == Outcome::Exited { Outcome::NotFound } else { o });
    let smaps_file = if opts.range.is_some() { "smaps" } else { "smaps_rollup" };
    let smaps = open_at(dir.as_fd(), smaps_file, OFlags::RDONLY).map_err(fail)?;
    let (maps, pagemap) = if pagemap_wanted {
        (
            Some(open_at(dir.as_fd(), "maps", OFlags::RDONLY).map_err(fail)?),
            Some(open_at(dir.as_fd(), "pagemap", OFlags::RDONLY).map_err(fail)?),
        )
    } else {
        (None, None)
    };
    let clear_refs = if opts.reset { Some(open_at(dir.as_fd(), "clear_refs", OFlags::WRONLY).map_err(fail)?) } else { None };
    Ok(Target { pid, comm, smaps, maps, pagemap, clear_refs, prev: None, last_reset: Micros::ZERO, samples: 0, outcome: Outcome::Measured })
}

/// Write `clear_refs`: 1 (accessed bits) and, when the kernel tracks it, 4 (soft-dirty).
fn reset(fd: BorrowedFd<'_>, soft_dirty: SoftDirty) -> Result<(), Outcome> {
    let write = |what: &[u8]| match rustix::io::pwrite(fd, what, 0) {
        Ok(_) => Ok(()),
        Err(e) => Err(denied_or("clear_refs", e)),
    };
    write(b"1")?;
    if soft_dirty == SoftDirty::Supported {
        write(b"4")?;
    }
    Ok(())
}

/// Scratch memory one measurement reuses.
struct Scratch {
    text: Box<[u8]>,
    ranges: Vec<(u64, u64)>,
    reader: PagemapReader,
}

/// Read one process now.
fn read_target(t: &Target, opts: &Options, method: PagemapMethod, at: Micros, s: &mut Scratch) -> Result<Reading, Outcome> {
    let totals = match opts.range {
        None => match procdir::read_open(t.smaps.as_fd(), &mut s.text) {
            Ok([]) | Err(ReadError::Gone) => return Err(Outcome::Exited),
            Ok(b) => smaps::parse_rollup(b).map_err(|e| Outcome::Failed(e.to_string()))?,
            Err(ReadError::Denied) => return Err(Outcome::Denied("smaps_rollup")),
            Err(e) => return Err(Outcome::Failed(format!("smaps_rollup: {e:?}"))),
        },
        Some(range) => {
            let mut sum = smaps::SmapsSum::new(Some(range));
            let mut bad = None;
            let mut any = false;
            procdir::for_each_line_chunk(t.smaps.as_fd(), &mut s.text, |lines| {
                any = true;
                if let Err(e) = sum.feed(lines) {
                    bad = Some(e);
                }
            })
            .ok_or(Outcome::Exited)?;
            if let Some(e) = bad {
                return Err(Outcome::Failed(e.to_string()));
            }
            if !any {
                return Err(Outcome::Exited);
            }
            sum.totals()
        }
    };
    let pages = match (&t.maps, &t.pagemap) {
        (Some(m), Some(p)) if method != PagemapMethod::None => {
            mapped_ranges(m.as_fd(), opts.range, &mut s.text, &mut s.ranges).ok_or(Outcome::Exited)?;
            let mut total = PageCounts::default();
            for &(start, end) in &s.ranges {
                let c = s.reader.count(p.as_fd(), start, end, method).map_err(|e| match e {
                    PagemapError::Gone => Outcome::Exited,
                    PagemapError::Other(Errno::ACCESS | Errno::PERM) => Outcome::Denied("pagemap"),
                    e => Outcome::Failed(format!("pagemap: {e:?}")),
                })?;
                total = total.merged(c);
            }
            Some(total)
        }
        _ => None,
    };
    Ok(Reading { at, smaps: totals, pages })
}

/// Run `thrashguard wss`; returns whether every process could be measured.
pub fn run(proc_root: &Path, opts: &Options, out: &mut dyn std::io::Write) -> anyhow::Result<bool> {
    let proc_dir = procdir::open_dir(proc_root).map_err(|e| anyhow::anyhow!("{}: {e}", proc_root.display()))?;
    let soft_dirty = probe_soft_dirty(proc_root);
    let mut scratch =
        Scratch { text: vec![0u8; PAGEMAP_CHUNK].into_boxed_slice(), ranges: Vec::with_capacity(1024), reader: PagemapReader::new() };
    let page_size = scratch.reader.page_size();
    let pagemap_wanted = soft_dirty == SoftDirty::Supported || opts.range.is_some() || opts.method != MethodChoice::Auto;
    let method = if pagemap_wanted {
        pick_method(proc_root, opts.method, &mut scratch.reader).map_err(|e| anyhow::anyhow!(e))?
    } else {
        PagemapMethod::None
    };
    let mut warnings = Vec::new();
    if opts.reset {
        warnings.push(
            "resetting accessed bits (clear_refs) perturbs the kernel's reclaim decisions for the measured processes: their pages look \
             idle to reclaim until touched again; --no-reset reads without resetting"
                .to_string(),
        );
        if soft_dirty == SoftDirty::Supported {
            warnings.push("clearing soft-dirty bits write-protects every page: the first write to each costs a minor fault".into());
        }
    } else {
        warnings.push(
            "--no-reset: referenced and dirtied pages count since the last reset by anyone (or since mapped), not per interval".into(),
        );
    }
    match soft_dirty {
        SoftDirty::Supported => {}
        SoftDirty::Unsupported => {
            warnings.push("dirtied pages: unsupported (this kernel has no soft-dirty tracking, CONFIG_MEM_SOFT_DIRTY)".into())
        }
        SoftDirty::Unknown => warnings.push("dirtied pages: unknown (could not probe soft-dirty on our own pagemap)".into()),
    }
    let started = Instant::now();
    let now = || Micros(started.elapsed().as_micros() as u64);
    let mut targets = Vec::with_capacity(opts.pids.len());
    let mut failed = Vec::new();
    for &pid in &opts.pids {
        match open_target(proc_dir.as_fd(), pid, opts, pagemap_wanted, &mut scratch.text) {
            Ok(t) => targets.push(t),
            Err((comm, o)) => failed.push((pid, comm, o)),
        }
    }
    if opts.json {
        let start = serde_json::json!({"type": "start", "schema": 1, "interval_s": opts.interval.as_secs_f64(), "samples": opts.samples,
            "reset": opts.reset, "soft_dirty": soft_dirty, "pagemap_method": method.as_str(), "page_size": page_size,
            "range": opts.range.map(|(a, b)| format!("{a:x}-{b:x}")), "warnings": warnings});
        writeln!(out, "{start}")?;
    } else {
        for w in &warnings {
            eprintln!("thrashguard: warning: {w}");
        }
        match method {
            PagemapMethod::None => eprintln!("thrashguard: pagemap not read (no soft-dirty to count and no --range)"),
            m => eprintln!("thrashguard: pagemap read with {}", m.as_str()),
        }
    }
    let report = |out: &mut dyn std::io::Write, pid: Pid, comm: Comm, o: &Outcome, samples: u32| -> std::io::Result<()> {
        if opts.json {
            let v = serde_json::json!({"type": "process", "pid": pid, "comm": comm, "outcome": o.name(), "message": o.message(), "samples": samples});
            writeln!(out, "{v}")
        } else {
            writeln!(out, "{pid} ({comm}): {}", o.message())
        }
    };
    for (pid, comm, o) in &failed {
        report(out, *pid, *comm, o, 0)?;
    }
    if !targets.is_empty() && !opts.json {
        writeln!(out, "{}", core_wss::text_header())?;
    }
    for t in &mut targets {
        if let Some(fd) = &t.clear_refs
            && let Err(o) = reset(fd.as_fd(), soft_dirty)
        {
            t.outcome = if o == Outcome::Exited { Outcome::NotFound } else { o };
        }
        t.last_reset = now();
    }
    for n in 1..=opts.samples {
        if targets.iter().all(|t| t.outcome != Outcome::Measured) {
            break;
        }
        let due = opts.interval.saturating_mul(n);
        std::thread::sleep(due.saturating_sub(started.elapsed()));
        for t in &mut targets {
            if t.outcome != Outcome::Measured {
                continue;
            }
            let at = now();
            match read_target(t, opts, method, at, &mut scratch) {
                Ok(r) => {
                    let s = core_wss::sample((t.pid, t.comm), Micros::ZERO, t.last_reset, t.prev.as_ref(), &r, soft_dirty, page_size);
                    if opts.json {
                        writeln!(out, "{}", serde_json::to_string(&s)?)?;
                    } else {
                        writeln!(out, "{}", core_wss::text_row(&s))?;
                    }
                    t.samples += 1;
                    t.prev = Some(r);
                    if opts.reset
                        && let Some(fd) = &t.clear_refs
                    {
                        if let Err(o) = reset(fd.as_fd(), soft_dirty) {
                            t.outcome = o;
                        }
                        t.last_reset = now();
                    }
                }
                Err(o) => t.outcome = o,
            }
        }
    }
    let mut all_ok = failed.is_empty();
    for t in &targets {
        if t.outcome != Outcome::Measured || opts.json {
            report(out, t.pid, t.comm, &t.outcome, t.samples)?;
        }
        all_ok &= t.outcome.is_ok();
    }
    if opts.json {
        writeln!(
            out,
            "{}",
            serde_json::json!({"type": "end", "processes": opts.pids.len(), "measured": targets.iter().filter(|t| t.outcome.is_ok()).count()})
        )?;
    }
    Ok(all_ok)
}

/// RSS + swap (and optionally the working set) of a few processes read now and then, with
/// their growth rate: the input the guard and `top` can rank the largest processes by. One
/// reading is a pread of stat (identity) and status (RSS, swap), and of smaps_rollup
/// (Referenced: accessed since the last reset by anyone, no reset here) when asked.
#[derive(Debug)]
pub struct Footprints {
    proc_dir: OwnedFd,
    buf: Box<[u8]>,
    tracker: GrowthTracker,
    started: Instant,
}

impl Footprints {
    /// Room for `capacity` processes.
    pub fn new(proc_root: &Path, capacity: usize) -> anyhow::Result<Footprints> {
        Ok(Footprints {
            proc_dir: procdir::open_dir(proc_root).map_err(|e| anyhow::anyhow!("{}: {e}", proc_root.display()))?,
            buf: vec![0u8; 16 * 1024].into_boxed_slice(),
            tracker: GrowthTracker::new(capacity),
            started: Instant::now(),
        })
    }

    /// Read `id` now: its footprint, growth since the last observation (KiB/s) and, with
    /// `working_set`, its Referenced memory. `None` when it exited or its pid was reused.
    pub fn observe(&mut self, id: ProcId, working_set: bool) -> Option<ProcGrowth> {
        let dir = self.proc_dir.as_fd();
        let stat = procdir::read_pid_file(dir, id.pid, "stat", &mut self.buf).ok().and_then(|b| pid::parse_stat(b).ok())?;
        if stat.start_time != id.start_time || stat.is_exiting() || stat.is_kernel_thread() {
            return None;
        }
        let footprint =
            procdir::read_pid_file(dir, id.pid, "status", &mut self.buf).ok().and_then(|b| pid::parse_status(b).ok())?.footprint();
        let ws: Option<Kib> = if working_set {
            procdir::read_pid_file(dir, id.pid, "smaps_rollup", &mut self.buf)
                .ok()
                .and_then(|b| smaps::parse_rollup(b).ok())
                .map(|t| t.referenced)
        } else {
            None
        };
        let at = Micros(self.started.elapsed().as_micros() as u64);
        Some(self.tracker.observe(id, at, footprint, ws))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_pagemap_both_ways_agree() {
        let mut r = PagemapReader::new();
        let own = std::fs::File::open("/proc/self/pagemap").expect("pagemap");
        let maps = std::fs::File::open("/proc/self/maps").expect("maps");
        let mut buf = vec![0u8; 4096];
        let mut ranges = Vec::new();
        mapped_ranges(maps.as_fd(), None, &mut buf, &mut ranges).expect("ranges");
        assert!(!ranges.is_empty());
        let mem = vec![3u8; 64 * 4096]; // present, so both ways count it
        let (s, e) = (mem.as_ptr() as u64 & !4095, (mem.as_ptr() as u64 + mem.len() as u64) & !4095);
        let by_pread = r.count_pread(own.as_fd(), s, e).expect("pread");
        assert_eq!(by_pread.scanned, Pages((e - s) / 4096));
        assert!(by_pread.present.0 >= 60, "{by_pread:?}");
        match r.count_scan(own.as_fd(), s, e) {
            Ok(by_scan) => assert_eq!((by_scan.present, by_scan.scanned), (by_pread.present, by_pread.scanned)),
            Err(PagemapError::NoScan) => {} // kernel before 6.7
            Err(e) => panic!("{e:?}"),
        }
        std::hint::black_box(&mem);
    }

    #[test]
    fn scan_resumes_without_counting_twice() {
        // A 256 MiB mapping read whole (zero pages), dropped, then every other page of its
        // first 64 MiB written: 8192 one-page regions, two full vectors. The kernel resumes
        // such a walk (walk_end) inside runs it already returned; counted once here, this
        // gave 512 pages too many before.
        use rustix::mm::{Advice, MapFlags, ProtFlags, madvise, mmap_anonymous, munmap};
        let (len, ps) = (256usize << 20, 4096usize);
        // SAFETY: a fresh private anonymous mapping, used only through `mem` here.
        let base = unsafe {
            mmap_anonymous(std::ptr::null_mut(), len, ProtFlags::READ | ProtFlags::WRITE, MapFlags::PRIVATE | MapFlags::NORESERVE)
        }
        .expect("mmap");
        let mem = base.cast::<u8>();
        for i in (0..len).step_by(ps) {
            // SAFETY: inside the mapping.
            std::hint::black_box(unsafe { mem.add(i).read_volatile() });
        }
        // SAFETY: the mapping above; nothing refers into it.
        unsafe { madvise(base, len, Advice::LinuxDontNeed) }.expect("madvise");
        for i in (0..64usize << 20).step_by(2 * ps) {
            // SAFETY: inside the mapping.
            unsafe { mem.add(i).write_volatile(1) };
        }
        let own = std::fs::File::open("/proc/self/pagemap").expect("pagemap");
        let mut r = PagemapReader::new();
        let (s, e) = (mem as u64, mem as u64 + len as u64);
        let by_pread = r.count_pread(own.as_fd(), s, e).expect("pread");
        assert_eq!(by_pread.present, Pages(8192));
        let by_scan = r.count_scan(own.as_fd(), s, e);
        // SAFETY: the mapping above; nothing refers into it any more.
        unsafe { munmap(base, len) }.expect("munmap");
        match by_scan {
            Ok(c) => assert_eq!((c.present, c.scanned), (by_pread.present, by_pread.scanned)),
            Err(PagemapError::NoScan) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
}
