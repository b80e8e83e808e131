//! /proc/PID/pagemap entries and PAGEMAP_SCAN page regions: which pages are present,
//! swapped out and soft-dirty.
//!
//! Owns the bit layout of a pagemap entry (Documentation/admin-guide/mm/pagemap.rst: one
//! native-endian u64 per virtual page; bit 63 present, 62 swapped, 61 file page or shared
//! anonymous, 56 exclusively mapped, 55 soft-dirty) and of the `PAGEMAP_SCAN` ioctl's
//! categories (linux/fs.h `PAGE_IS_*`, Linux 6.7+), and counts pages from either. The
//! edge does the reading and the ioctl. Must never allocate or read a file.

use crate::units::Pages;

/// Bit 63: the page is present in RAM.
pub const PM_PRESENT: u64 = 1 << 63;
/// Bit 62: the page is swapped out.
pub const PM_SWAPPED: u64 = 1 << 62;
/// Bit 61: a file page or shared anonymous page.
pub const PM_FILE_SHARED: u64 = 1 << 61;
/// Bit 56: mapped by this process only.
pub const PM_EXCLUSIVE: u64 = 1 << 56;
/// Bit 55: soft-dirty (written since the last `clear_refs` write of 4). Always 0 on a
/// kernel built without CONFIG_MEM_SOFT_DIRTY.
pub const PM_SOFT_DIRTY: u64 = 1 << 55;
/// Bytes per pagemap entry.
pub const ENTRY_BYTES: usize = 8;

/// `PAGE_IS_WPALLOWED`: userfaultfd write-protect async is on for the page.
pub const PAGE_IS_WPALLOWED: u64 = 1 << 0;
/// `PAGE_IS_WRITTEN`: written since it was write-protected (userfaultfd WP async only).
pub const PAGE_IS_WRITTEN: u64 = 1 << 1;
/// `PAGE_IS_FILE`: file-backed (not anonymous).
pub const PAGE_IS_FILE: u64 = 1 << 2;
/// `PAGE_IS_PRESENT`.
pub const PAGE_IS_PRESENT: u64 = 1 << 3;
/// `PAGE_IS_SWAPPED`.
pub const PAGE_IS_SWAPPED: u64 = 1 << 4;
/// `PAGE_IS_PFNZERO`: the shared zero page (read, never written).
pub const PAGE_IS_PFNZERO: u64 = 1 << 5;
/// `PAGE_IS_HUGE`.
pub const PAGE_IS_HUGE: u64 = 1 << 6;
/// `PAGE_IS_SOFT_DIRTY`.
pub const PAGE_IS_SOFT_DIRTY: u64 = 1 << 7;

/// Pages of a range by state. Only present or swapped pages count as soft-dirty: an
/// untouched page of a new mapping reads as soft-dirty too (the mapping's own flag), but
/// nothing was written to it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PageCounts {
    /// Pages whose entry was looked at (mapped pages of the ranges read).
    pub scanned: Pages,
    /// Present in RAM (the zero page of a read-only touch included).
    pub present: Pages,
    /// Swapped out.
    pub swapped: Pages,
    /// Present or swapped, and soft-dirty.
    pub soft_dirty: Pages,
    /// Present or swapped, file-backed or shared.
    pub file_shared: Pages,
}

impl PageCounts {
    /// Count a buffer of pagemap entries (native endian; a trailing partial entry is ignored).
    pub fn add_entries(&mut self, bytes: &[u8]) {
        let (mut present, mut swapped, mut dirty, mut file) = (0u64, 0u64, 0u64, 0u64);
        let chunks = bytes.chunks_exact(ENTRY_BYTES);
        let n = chunks.len() as u64;
        for c in chunks {
            let e = u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            let p = (e >> 63) & 1;
            let s = (e >> 62) & 1;
            let mapped = p | s;
            present += p;
            swapped += s;
            dirty += mapped & (e >> 55) & 1;
            file += mapped & (e >> 61) & 1;
        }
        self.scanned.0 += n;
        self.present.0 += present;
        self.swapped.0 += swapped;
        self.soft_dirty.0 += dirty;
        self.file_shared.0 += file;
    }

    /// Count one region PAGEMAP_SCAN returned: `[start, end)` with its categories (the scan
    /// asked only for present or swapped pages). `scanned` is not touched: the caller adds
    /// the size of what it asked the kernel to walk.
    pub fn add_region(&mut self, start: u64, end: u64, categories: u64, page_size: u64) {
        let pages = end.saturating_sub(start) / page_size.max(1);
        let add = |flag: u64, to: &mut Pages| {
            if categories & flag != 0 {
                to.0 += pages;
            }
        };
        add(PAGE_IS_PRESENT, &mut self.present);
        add(PAGE_IS_SWAPPED, &mut self.swapped);
        add(PAGE_IS_SOFT_DIRTY, &mut self.soft_dirty);
        add(PAGE_IS_FILE, &mut self.file_shared);
    }

    /// Both counts together.
    pub fn merged(self, o: PageCounts) -> PageCounts {
        PageCounts {
            scanned: Pages(self.scanned.0 + o.scanned.0),
            present: Pages(self.present.0 + o.present.0),
            swapped: Pages(self.swapped.0 + o.swapped.0),
            soft_dirty: Pages(self.soft_dirty.0 + o.soft_dirty.0),
            file_shared: Pages(self.file_shared.0 + o.file_shared.0),
        }
    }
}

/// One entry's soft-dirty bit, for the edge's probe of its own page.
pub fn entry(bytes: [u8; 8]) -> (bool, bool) {
    let e = u64::from_ne_bytes(bytes);
    (e & PM_PRESENT != 0, e & PM_SOFT_DIRTY != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(entries: &[u64]) -> Vec<u8> {
        entries.iter().flat_map(|e| e.to_ne_bytes()).collect()
    }

    #[test]
    fn entries() {
        let mut c = PageCounts::default();
        c.add_entries(&bytes(&[
            PM_PRESENT | PM_EXCLUSIVE | PM_SOFT_DIRTY | 0x1234,
            PM_PRESENT | PM_FILE_SHARED,
            PM_SWAPPED | PM_SOFT_DIRTY | 0x77,
            PM_SOFT_DIRTY, // an untouched page of a new mapping: not dirtied
            0,
        ]));
        assert_eq!(c, PageCounts { scanned: Pages(5), present: Pages(2), swapped: Pages(1), soft_dirty: Pages(2), file_shared: Pages(1) });
        c.add_entries(&[0xff; 7]); // a partial entry is ignored
        assert_eq!(c.scanned, Pages(5));
        assert_eq!(entry((PM_PRESENT | PM_SOFT_DIRTY).to_ne_bytes()), (true, true));
    }

    #[test]
    fn regions() {
        let mut c = PageCounts::default();
        c.add_region(0x1000, 0x5000, PAGE_IS_PRESENT | PAGE_IS_SOFT_DIRTY, 4096);
        c.add_region(0x9000, 0xa000, PAGE_IS_SWAPPED, 4096);
        c.add_region(0xa000, 0x20_a000, PAGE_IS_PRESENT | PAGE_IS_HUGE | PAGE_IS_FILE, 4096);
        assert_eq!((c.present, c.swapped, c.soft_dirty, c.file_shared), (Pages(4 + 512), Pages(1), Pages(4), Pages(512)));
        c.add_region(5, 1, PAGE_IS_PRESENT, 0); // nonsense never panics
        assert_eq!(c.merged(c).present, Pages(2 * 516));
    }
}
