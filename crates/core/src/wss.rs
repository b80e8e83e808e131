//! Working set, dirty rate and growth of a process: the arithmetic and the rendering of
//! `thrashguard wss`, and the footprint growth rate the guard and `top` can rank by.
//!
//! Owns turning two readings of a process (smaps totals and pagemap counts, with the time
//! of each and of the last reset of its accessed and soft-dirty bits) into one
//! [`WssSample`]: pages referenced and dirtied since the reset, RSS, swap and the rates,
//! and the text and JSON forms of it. [`GrowthTracker`] keeps the previous footprint of a
//! bounded set of processes so a caller that reads RSS + swap of a few processes now and
//! then gets their growth in KiB/s. It must never read /proc, write `clear_refs` or look
//! at a clock: readings and times arrive as values.

use serde::Serialize;

use crate::parse::pagemap::PageCounts;
use crate::parse::smaps::SmapsTotals;
use crate::units::{Comm, Kib, Micros, Pages, Pid, ProcId};

/// Whether the kernel tracks soft-dirty pages (CONFIG_MEM_SOFT_DIRTY), found by a probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SoftDirty {
    /// Bit 55 follows writes after a `clear_refs` write of 4.
    Supported,
    /// The kernel ignores it: dirtied pages cannot be counted.
    Unsupported,
    /// Not probed or the probe failed (pagemap unreadable).
    Unknown,
}

/// How the pagemap was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PagemapMethod {
    /// The `PAGEMAP_SCAN` ioctl (Linux 6.7+): the kernel returns runs of pages by category.
    PagemapScan,
    /// `pread` of 8 bytes per page, in large chunks, over the mapped ranges only.
    Pread,
    /// Not read (no soft-dirty and no range asked for).
    None,
}

impl PagemapMethod {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            PagemapMethod::PagemapScan => "pagemap_scan",
            PagemapMethod::Pread => "pread",
            PagemapMethod::None => "none",
        }
    }
}

/// One reading of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reading {
    /// When it was taken.
    pub at: Micros,
    /// smaps_rollup (whole process) or smaps summed over the range.
    pub smaps: SmapsTotals,
    /// Pagemap counts of the mapped ranges read, when read.
    pub pages: Option<PageCounts>,
}

/// What `wss` prints for one process and one interval.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WssSample {
    /// Always "sample" (NDJSON line type).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The process.
    pub pid: Pid,
    /// Its name.
    pub comm: Comm,
    /// Seconds since the measurement started.
    pub t_s: f64,
    /// Seconds since the last reset (or since the previous reading with `--no-reset`).
    pub interval_s: f64,
    /// Resident.
    pub rss_kib: Kib,
    /// Swapped out.
    pub swap_kib: Kib,
    /// Referenced since the last reset: the working set over the interval.
    pub referenced_kib: Kib,
    /// The same in pages.
    pub referenced_pages: Pages,
    /// Referenced pages per second of the interval.
    pub referenced_pages_per_s: f64,
    /// Pages written since the last reset (soft-dirty); `None` when the kernel cannot say.
    pub dirtied_pages: Option<Pages>,
    /// Dirtied pages per second of the interval.
    pub dirty_pages_per_s: Option<f64>,
    /// Change of RSS + swap since the previous reading, KiB/s (`None` for the first).
    pub footprint_growth_kib_per_s: Option<f64>,
    /// Present pages of the ranges read through pagemap (with `--range`: of that range).
    pub present_pages: Option<Pages>,
    /// Swapped pages of the ranges read through pagemap.
    pub swapped_pages: Option<Pages>,
    /// Pagemap entries looked at.
    pub scanned_pages: Option<Pages>,
    /// Mappings summed from smaps (with `--range`); 0 for smaps_rollup.
    pub mappings: u32,
    /// Mappings that overlap the range in part and were summed whole.
    pub partial_mappings: u32,
}

/// Build the sample of `cur`, given the previous reading (growth) and the time of the last
/// reset (rates). With `soft_dirty` other than supported, dirtied pages are `None`.
pub fn sample(
    id: (Pid, Comm),
    started: Micros,
    last_reset: Micros,
    prev: Option<&Reading>,
    cur: &Reading,
    soft_dirty: SoftDirty,
    page_size: u64,
) -> WssSample {
    let span = cur.at.saturating_sub(last_reset).as_secs_f64();
    let per_s = |n: u64| if span > 0.0 { n as f64 / span } else { 0.0 };
    let referenced_pages = Pages(cur.smaps.referenced.0.saturating_mul(1024) / page_size.max(1));
    let dirtied = (soft_dirty == SoftDirty::Supported).then_some(()).and(cur.pages).map(|p| p.soft_dirty);
    WssSample {
        kind: "sample",
        pid: id.0,
        comm: id.1,
        t_s: cur.at.saturating_sub(started).as_secs_f64(),
        interval_s: span,
        rss_kib: cur.smaps.rss,
        swap_kib: cur.smaps.swap,
        referenced_kib: cur.smaps.referenced,
        referenced_pages,
        referenced_pages_per_s: per_s(referenced_pages.0),
        dirtied_pages: dirtied,
        dirty_pages_per_s: dirtied.map(|d| per_s(d.0)),
        footprint_growth_kib_per_s: prev.and_then(|p| growth_kib_per_s((p.at, p.smaps.footprint()), (cur.at, cur.smaps.footprint()))),
        present_pages: cur.pages.map(|p| p.present),
        swapped_pages: cur.pages.map(|p| p.swapped),
        scanned_pages: cur.pages.map(|p| p.scanned),
        mappings: cur.smaps.mappings,
        partial_mappings: cur.smaps.partial,
    }
}

/// Growth of a footprint between two readings in KiB per second (negative when it
/// shrank); `None` when no time passed.
pub fn growth_kib_per_s(prev: (Micros, Kib), cur: (Micros, Kib)) -> Option<f64> {
    let dt = cur.0.saturating_sub(prev.0);
    (dt > Micros::ZERO).then(|| (cur.1.0 as f64 - prev.1.0 as f64) / dt.as_secs_f64())
}

/// The column header of the text output.
pub fn text_header() -> String {
    format!(
        "{:>7} {:>7} {:<15} {:>10} {:>9} {:>12} {:>10} {:>11} {:>11} {:>12}",
        "t", "pid", "comm", "rss MiB", "swap MiB", "referenced", "ref/s", "dirtied", "dirty/s", "growth KiB/s"
    )
}

/// One text row.
pub fn text_row(s: &WssSample) -> String {
    let mib = |k: Kib| format!("{:.1}", k.0 as f64 / 1024.0);
    let dirtied = s.dirtied_pages.map_or_else(|| "unsupported".to_string(), |d| d.0.to_string());
    let rate = s.dirty_pages_per_s.map_or_else(|| "-".to_string(), |r| format!("{r:.0}"));
    let growth = s.footprint_growth_kib_per_s.map_or_else(|| "-".to_string(), |g| format!("{g:+.0}"));
    format!(
        "{:>6.1}s {:>7} {:<15} {:>10} {:>9} {:>12} {:>10.0} {:>11} {:>11} {:>12}",
        s.t_s,
        s.pid.0,
        s.comm.to_string(),
        mib(s.rss_kib),
        mib(s.swap_kib),
        s.referenced_pages.0,
        s.referenced_pages_per_s,
        dirtied,
        rate,
        growth
    )
}

/// Growth of one process as [`GrowthTracker::observe`] saw it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ProcGrowth {
    /// The process.
    pub id: ProcId,
    /// RSS + swap now.
    pub footprint: Kib,
    /// KiB/s since the previous observation of the same process (`None` for the first).
    pub kib_per_s: Option<f64>,
    /// Its working set (Referenced) when the caller read it.
    pub working_set: Option<Kib>,
}

#[derive(Clone, Copy, Debug)]
struct Seen {
    id: ProcId,
    at: Micros,
    footprint: Kib,
}

/// The previous footprint of at most `capacity` processes (the guard or `top` watches the
/// few largest); observing more forgets the oldest. Allocates only in `new`.
#[derive(Clone, Debug)]
pub struct GrowthTracker {
    seen: Vec<Seen>,
    next: usize,
}

impl GrowthTracker {
    /// Room for `capacity` processes.
    pub fn new(capacity: usize) -> GrowthTracker {
        GrowthTracker { seen: Vec::with_capacity(capacity.max(1)), next: 0 }
    }

    /// Record the footprint of `id` at `at` and return its growth since the last time. A
    /// reused pid (another start time) has no history.
    pub fn observe(&mut self, id: ProcId, at: Micros, footprint: Kib, working_set: Option<Kib>) -> ProcGrowth {
        let now = Seen { id, at, footprint };
        let kib_per_s = match self.seen.iter_mut().find(|s| s.id.pid == id.pid) {
            Some(s) => {
                let g = (s.id == id).then(|| growth_kib_per_s((s.at, s.footprint), (at, footprint))).flatten();
                *s = now;
                g
            }
            None => {
                if self.seen.len() < self.seen.capacity() {
                    self.seen.push(now);
                } else {
                    let slot = self.next % self.seen.len();
                    self.seen[slot] = now;
                    self.next = slot + 1;
                }
                None
            }
        };
        ProcGrowth { id, footprint, kib_per_s, working_set }
    }

    /// Forget every process.
    pub fn clear(&mut self) {
        self.seen.clear();
        self.next = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(at_s: u64, rss: u64, swap: u64, referenced: u64, dirty: u64) -> Reading {
        Reading {
            at: Micros::from_secs(at_s),
            smaps: SmapsTotals { rss: Kib(rss), swap: Kib(swap), referenced: Kib(referenced), ..SmapsTotals::default() },
            pages: Some(PageCounts { soft_dirty: Pages(dirty), present: Pages(rss / 4), ..PageCounts::default() }),
        }
    }

    #[test]
    fn sample_arithmetic() {
        let id = (Pid(7), Comm::new(b"hog"));
        let r1 = reading(1, 4096, 0, 400, 10);
        let r2 = reading(3, 6144, 1024, 800, 100);
        let s = sample(id, Micros::ZERO, Micros::from_secs(1), Some(&r1), &r2, SoftDirty::Supported, 4096);
        assert_eq!((s.interval_s, s.t_s), (2.0, 3.0));
        assert_eq!(s.referenced_pages, Pages(200));
        assert_eq!(s.referenced_pages_per_s, 100.0);
        assert_eq!((s.dirtied_pages, s.dirty_pages_per_s), (Some(Pages(100)), Some(50.0)));
        assert_eq!(s.footprint_growth_kib_per_s, Some(1536.0));
        let first = sample(id, Micros::ZERO, Micros::ZERO, None, &r1, SoftDirty::Unsupported, 4096);
        assert_eq!((first.dirtied_pages, first.dirty_pages_per_s, first.footprint_growth_kib_per_s), (None, None, None));
        assert!(text_row(&first).contains("unsupported"));
        assert!(text_row(&s).contains("+1536"));
        let v = serde_json::to_value(&s).expect("json");
        assert_eq!((v["type"].as_str(), v["dirtied_pages"].as_u64(), v["comm"].as_str()), (Some("sample"), Some(100), Some("hog")));
        // no time passed: rates are zero, never NaN
        let same = sample(id, Micros::ZERO, r1.at, Some(&r1), &r1, SoftDirty::Supported, 4096);
        assert_eq!((same.referenced_pages_per_s, same.footprint_growth_kib_per_s), (0.0, None));
    }

    #[test]
    fn growth_tracker() {
        let id = |pid, st| ProcId { pid: Pid(pid), start_time: st };
        let mut g = GrowthTracker::new(2);
        assert_eq!(g.observe(id(1, 10), Micros::from_secs(0), Kib(1000), None).kib_per_s, None);
        assert_eq!(g.observe(id(1, 10), Micros::from_secs(2), Kib(3000), Some(Kib(5))).kib_per_s, Some(1000.0));
        assert_eq!(g.observe(id(1, 10), Micros::from_secs(4), Kib(1000), None).kib_per_s, Some(-1000.0));
        // a reused pid starts afresh
        assert_eq!(g.observe(id(1, 99), Micros::from_secs(5), Kib(9000), None).kib_per_s, None);
        assert_eq!(g.observe(id(1, 99), Micros::from_secs(6), Kib(9100), None).kib_per_s, Some(100.0));
        // over capacity: the oldest slot is reused, nothing grows
        g.observe(id(2, 1), Micros::from_secs(6), Kib(1), None);
        g.observe(id(3, 1), Micros::from_secs(6), Kib(1), None);
        assert_eq!(g.seen.len(), 2);
        assert_eq!(g.observe(id(3, 1), Micros::from_secs(7), Kib(2), None).kib_per_s, Some(1.0));
        g.clear();
        assert_eq!(g.observe(id(3, 1), Micros::from_secs(8), Kib(2), None).kib_per_s, None);
    }
}
