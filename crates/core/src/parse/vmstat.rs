//! /proc/vmstat (and cgroup memory.stat counters of the same names): event counters.
//!
//! Owns the counters the policy turns into rates: swap-in, major faults, workingset
//! refaults, direct reclaim. Names changed over the years (`allocstall` split per zone in
//! 4.10, `workingset_refault` split into anon/file in 5.9, per-zone `pgscan_direct_*`
//! before 4.8); this module folds them into one shape. Must never allocate or read a file.

use super::{ParseError, counter_lines};
use crate::units::Pages;

/// The vmstat counters thrashguard uses. `None`: the kernel does not have the counter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Vmstat {
    /// nr_free_pages.
    pub nr_free_pages: Option<Pages>,
    /// pswpin: pages swapped in.
    pub pswpin: Option<u64>,
    /// pswpout: pages swapped out.
    pub pswpout: Option<u64>,
    /// pgmajfault: faults that needed I/O (swap-in or reading a file page).
    pub pgmajfault: Option<u64>,
    /// workingset_refault_anon (5.9+).
    pub workingset_refault_anon: Option<u64>,
    /// workingset_refault_file (5.9+), or workingset_refault before 5.9.
    pub workingset_refault_file: Option<u64>,
    /// pgscan_direct (summed over zones on kernels before 4.8).
    pub pgscan_direct: Option<u64>,
    /// pgscan_kswapd (summed over zones on kernels before 4.8).
    pub pgscan_kswapd: Option<u64>,
    /// allocstall, summed over allocstall_* on 4.10+.
    pub allocstall: Option<u64>,
    /// oom_kill (4.13+): kernel OOM kills.
    pub oom_kill: Option<u64>,
    /// compact_stall.
    pub compact_stall: Option<u64>,
    /// compact_fail.
    pub compact_fail: Option<u64>,
}

impl Vmstat {
    /// All workingset refaults (anon + file), or `None` when the kernel has no refault
    /// counter (before 3.15).
    pub fn refaults(&self) -> Option<u64> {
        match (self.workingset_refault_anon, self.workingset_refault_file) {
            (None, None) => None,
            (a, f) => Some(a.unwrap_or(0).saturating_add(f.unwrap_or(0))),
        }
    }
}

fn add(slot: &mut Option<u64>, v: u64) {
    *slot = Some(slot.unwrap_or(0).saturating_add(v));
}

/// Parse /proc/vmstat. `file` names it in errors. An empty or fully garbled file is an
/// error; a file with only some counters is not (old kernels lack many).
pub fn parse(file: &'static str, buf: &[u8]) -> Result<Vmstat, ParseError> {
    let mut v = Vmstat::default();
    let mut any = false;
    // Per-zone sums, used only when the unsuffixed counter is absent (old kernels).
    let (mut scan_direct_zones, mut scan_kswapd_zones) = (None, None);
    for counter in counter_lines(file, buf) {
        let (name, value) = counter?;
        any = true;
        match name {
            b"nr_free_pages" => v.nr_free_pages = Some(Pages(value)),
            b"pswpin" => v.pswpin = Some(value),
            b"pswpout" => v.pswpout = Some(value),
            b"pgmajfault" => v.pgmajfault = Some(value),
            b"workingset_refault_anon" => v.workingset_refault_anon = Some(value),
            b"workingset_refault_file" | b"workingset_refault" => v.workingset_refault_file = Some(value),
            b"pgscan_direct" => v.pgscan_direct = Some(value),
            b"pgscan_kswapd" => v.pgscan_kswapd = Some(value),
            b"oom_kill" => v.oom_kill = Some(value),
            b"compact_stall" => v.compact_stall = Some(value),
            b"compact_fail" => v.compact_fail = Some(value),
            // pgscan_direct_throttle counts throttling events, not scanned pages.
            b"pgscan_direct_throttle" => {}
            n if n.starts_with(b"allocstall") => add(&mut v.allocstall, value),
            n if n.starts_with(b"pgscan_direct_") => add(&mut scan_direct_zones, value),
            n if n.starts_with(b"pgscan_kswapd_") => add(&mut scan_kswapd_zones, value),
            _ => {}
        }
    }
    if !any {
        return Err(ParseError::new(file, 0, "no counters (empty or truncated)"));
    }
    v.pgscan_direct = v.pgscan_direct.or(scan_direct_zones);
    v.pgscan_kswapd = v.pgscan_kswapd.or(scan_kswapd_zones);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_and_old_names() {
        let new = parse("vmstat", b"pswpin 5\nworkingset_refault_anon 3\nworkingset_refault_file 4\nallocstall_normal 2\nallocstall_movable 3\npgscan_direct 10\npgscan_direct_throttle 99\n").expect("valid");
        assert_eq!(new.refaults(), Some(7));
        assert_eq!(new.allocstall, Some(5));
        assert_eq!(new.pgscan_direct, Some(10));
        let old = parse("vmstat", b"allocstall 7\nworkingset_refault 9\npgscan_direct_dma 1\npgscan_direct_normal 2\n").expect("valid");
        assert_eq!(old.allocstall, Some(7));
        assert_eq!(old.refaults(), Some(9));
        assert_eq!(old.pgscan_direct, Some(3));
        assert_eq!(old.pswpin, None);
    }

    #[test]
    fn garbled() {
        assert!(parse("vmstat", b"").is_err());
        assert!(parse("vmstat", b"pswpin\n").is_err());
        assert!(parse("vmstat", b"pswpin -3\n").is_err());
        // truncated in the middle of a number: that line is dropped, the rest stands
        let v = parse("vmstat", b"pswpin 5\npswpout 12").expect("valid");
        assert_eq!((v.pswpin, v.pswpout), (Some(5), None));
    }
}
