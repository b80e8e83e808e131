//! /proc/PID/maps lines (and the VMA header lines of /proc/PID/smaps): address ranges.
//!
//! Owns the parsing of `start-end perms offset dev inode [path]` into a [`MapLine`] that
//! borrows its path from the input, and the clipping of a mapping to a range of interest.
//! `wss` reads pagemap only over these ranges, so that unmapped holes are never read.
//! Must never allocate or read a file.

use super::{ParseError, numbered_lines};

/// One mapping (VMA) of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapLine<'a> {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// `rwxp` / `rwxs`.
    pub perms: [u8; 4],
    /// The path, `[heap]`-like name or empty for anonymous memory.
    pub path: &'a [u8],
}

impl MapLine<'_> {
    /// Bytes mapped.
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }
    /// Maps no byte.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// `s` in the perms: a shared mapping.
    pub fn is_shared(&self) -> bool {
        self.perms[3] == b's'
    }
    /// `[vsyscall]` and the like live above the user address space: pagemap has nothing
    /// there, so they are never read.
    pub fn is_kernel_area(&self) -> bool {
        self.path == b"[vsyscall]"
    }
    /// The part of this mapping inside `[lo, hi)`, or `None` when they do not overlap.
    pub fn clip(&self, lo: u64, hi: u64) -> Option<(u64, u64)> {
        let (s, e) = (self.start.max(lo), self.end.min(hi));
        (s < e).then_some((s, e))
    }
}

fn hex(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| Some((n << 4) | u64::from((b as char).to_digit(16)?)))
}

/// Parse one maps line; `None` when it is not one (a smaps field line, say).
pub fn parse_line(line: &[u8]) -> Option<MapLine<'_>> {
    let mut rest = line;
    let mut field = || {
        let r = rest.trim_ascii_start();
        let end = r.iter().position(u8::is_ascii_whitespace).unwrap_or(r.len());
        let (w, tail) = r.split_at(end);
        rest = tail;
        w
    };
    let range = field();
    let perms = field();
    let (_offset, _dev, _inode) = (field(), field(), field());
    let dash = range.iter().position(|&b| b == b'-')?;
    let (start, end) = (hex(&range[..dash])?, hex(&range[dash + 1..])?);
    if end < start || perms.len() != 4 {
        return None;
    }
    let perms = [perms[0], perms[1], perms[2], perms[3]];
    Some(MapLine { start, end, perms, path: rest.trim_ascii() })
}

/// Every mapping of a maps file, in order; a line that is not a mapping is an error naming
/// it. A last line cut short (truncated read) is dropped.
pub fn lines(buf: &[u8]) -> impl Iterator<Item = Result<MapLine<'_>, ParseError>> {
    numbered_lines(buf).map(|(no, l)| parse_line(l).ok_or(ParseError::new("PID/maps", no, "expected `start-end perms offset dev inode`")))
}

/// An address range given as `START-END` in hex (as maps prints it; `0x` allowed).
pub fn parse_range(text: &str) -> Option<(u64, u64)> {
    let (a, b) = text.trim().split_once('-')?;
    fn strip(s: &str) -> &[u8] {
        let s = s.trim();
        s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s).as_bytes()
    }
    let (a, b) = (hex(strip(a))?, hex(strip(b))?);
    (a < b).then_some((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_with_and_without_path() {
        let l = parse_line(b"56347c0c6000-56347c0c7000 r--p 00000000 fe:00 18504      /usr/bin/python3.11").expect("line");
        assert_eq!((l.start, l.end, &l.perms, l.path), (0x56347c0c6000, 0x56347c0c7000, b"r--p", &b"/usr/bin/python3.11"[..]));
        let anon = parse_line(b"7f1e027db000-7f1e0281b000 rw-p 00000000 00:00 0 ").expect("anon");
        assert_eq!((anon.len(), anon.path), (64 * 4096, &b""[..]));
        let vs = parse_line(b"ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]").expect("vsyscall");
        assert!(vs.is_kernel_area());
        let spaced = parse_line(b"1000-2000 rw-s 00000000 00:01 7 /memfd:a b (deleted)").expect("spaces in path");
        assert_eq!(spaced.path, b"/memfd:a b (deleted)");
        assert!(spaced.is_shared());
    }

    #[test]
    fn not_a_mapping() {
        assert_eq!(parse_line(b"Rss:      4 kB"), None);
        assert_eq!(parse_line(b"VmFlags: rd wr mr"), None);
        assert_eq!(parse_line(b"2000-1000 rw-p 0 0 0"), None);
        assert_eq!(parse_line(b"zz-1000 rw-p 0 0 0"), None);
        assert_eq!(parse_line(b"1000-2000 rw 0 0 0"), None);
        assert_eq!(parse_line(b""), None);
        assert!(lines(b"1000-2000 rw-p 0 0 0\nnonsense\n").nth(1).is_some_and(|r| r.is_err()));
    }

    #[test]
    fn clip_and_range() {
        let l = parse_line(b"1000-5000 rw-p 0 0 0").expect("line");
        assert_eq!(l.clip(0x2000, 0x3000), Some((0x2000, 0x3000)));
        assert_eq!(l.clip(0, 0x1000), None);
        assert_eq!(l.clip(0x4000, 0x9000), Some((0x4000, 0x5000)));
        assert_eq!(parse_range("7f1e027db000-7f1e0281b000"), Some((0x7f1e027db000, 0x7f1e0281b000)));
        assert_eq!(parse_range("0x1000-0x2000"), Some((0x1000, 0x2000)));
        assert_eq!(parse_range("2000-1000"), None);
        assert_eq!(parse_range("1000"), None);
        assert_eq!(parse_range("1000-"), None);
        assert_eq!(parse_range("10000000000000000-1"), None);
    }
}
