//! /proc/PID/smaps_rollup and /proc/PID/smaps: resident, referenced and swapped memory.
//!
//! Owns the `Name:  N kB` fields `wss` needs (`Rss`, `Referenced`, `Swap`, `Anonymous`,
//! `Private_Dirty`, `Shared_Dirty`): summed over the whole process from smaps_rollup, or
//! over the mappings that overlap an address range from smaps, fed in chunks of whole
//! lines so that a process with thousands of mappings needs no buffer of its size.
//! `Referenced` is the kernel's count of pages whose accessed bit (or the page's
//! referenced flag) is set: after a `clear_refs` write of 1 it is the working set since
//! then. Must never allocate or read a file.

use super::maps;
use super::{ParseError, numbered_lines, parse_u64, words};
use crate::units::Kib;

/// Memory of a process, or of the mappings in a range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SmapsTotals {
    /// Resident.
    pub rss: Kib,
    /// Resident and referenced (accessed) since the last reset.
    pub referenced: Kib,
    /// Swapped out.
    pub swap: Kib,
    /// Anonymous resident.
    pub anonymous: Kib,
    /// Private_Dirty + Shared_Dirty: resident pages modified since they were read in (not
    /// since the last reset: that is soft-dirty's job).
    pub dirty: Kib,
    /// Mappings summed (0 for smaps_rollup, which is one block).
    pub mappings: u32,
    /// Mappings that overlap the range only in part: their whole size was summed.
    pub partial: u32,
}

impl SmapsTotals {
    /// RSS + swap, as the victim ranking counts a footprint.
    pub fn footprint(&self) -> Kib {
        self.rss.saturating_add(self.swap)
    }

    fn field(&mut self, name: &[u8], v: Kib) {
        match name {
            b"Rss" => self.rss = self.rss.saturating_add(v),
            b"Referenced" => self.referenced = self.referenced.saturating_add(v),
            b"Swap" => self.swap = self.swap.saturating_add(v),
            b"Anonymous" => self.anonymous = self.anonymous.saturating_add(v),
            b"Private_Dirty" | b"Shared_Dirty" => self.dirty = self.dirty.saturating_add(v),
            _ => {}
        }
    }
}

/// A `Name:   N kB` line: (name, value); `None` for other lines (`VmFlags:`, headers...).
fn kb_field(line: &[u8]) -> Option<(&[u8], Kib)> {
    let colon = line.iter().position(|&b| b == b':')?;
    let mut w = words(&line[colon + 1..]);
    let (n, unit) = (w.next()?, w.next()?);
    (unit == b"kB").then_some(())?;
    Some((&line[..colon], Kib(parse_u64(n)?)))
}

/// Parse /proc/PID/smaps_rollup (Linux 4.14+). `Rss` and `Referenced` must be there.
pub fn parse_rollup(buf: &[u8]) -> Result<SmapsTotals, ParseError> {
    const FILE: &str = "PID/smaps_rollup";
    let mut t = SmapsTotals::default();
    let (mut rss, mut referenced) = (false, false);
    for (no, line) in numbered_lines(buf) {
        if maps::parse_line(line).is_some() {
            continue; // the `[rollup]` header
        }
        let colon = line.iter().position(|&b| b == b':').ok_or(ParseError::new(FILE, no, "expected `Name: N kB`"))?;
        let Some((name, v)) = kb_field(line) else {
            if matches!(&line[..colon], b"Rss" | b"Referenced" | b"Swap") {
                return Err(ParseError::new(FILE, no, "expected a size in kB"));
            }
            continue; // THPeligible, VmFlags...: not sizes
        };
        rss |= name == b"Rss";
        referenced |= name == b"Referenced";
        t.field(name, v);
    }
    match (rss, referenced) {
        (true, true) => Ok(t),
        (false, _) => Err(ParseError::new(FILE, 0, "no Rss line (empty or truncated)")),
        (true, false) => Err(ParseError::new(FILE, 0, "no Referenced line (truncated?)")),
    }
}

/// Sums /proc/PID/smaps fed in chunks of whole lines, over every mapping or only those that
/// overlap `[lo, hi)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct SmapsSum {
    range: Option<(u64, u64)>,
    in_range: bool,
    line: usize,
    totals: SmapsTotals,
}

impl SmapsSum {
    /// Sum every mapping (`None`) or those overlapping the range.
    pub fn new(range: Option<(u64, u64)>) -> SmapsSum {
        SmapsSum { range, ..SmapsSum::default() }
    }

    /// Feed the next chunk; it must end at a line end (a chunk cut inside a line is read
    /// again with the next one by the caller).
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), ParseError> {
        for line in chunk.split(|&b| b == b'\n') {
            if line.is_empty() {
                continue;
            }
            self.line += 1;
            if let Some(m) = maps::parse_line(line) {
                self.in_range = match self.range {
                    None => true,
                    Some((lo, hi)) => match m.clip(lo, hi) {
                        Some((s, e)) => {
                            if (s, e) != (m.start, m.end) {
                                self.totals.partial += 1;
                            }
                            true
                        }
                        None => false,
                    },
                };
                if self.in_range {
                    self.totals.mappings += 1;
                }
                continue;
            }
            if line.iter().all(|&b| b != b':') {
                return Err(ParseError::new("PID/smaps", self.line, "neither a mapping nor `Name: value`"));
            }
            if self.in_range
                && let Some((name, v)) = kb_field(line)
            {
                self.totals.field(name, v);
            }
        }
        Ok(())
    }

    /// What was summed so far.
    pub fn totals(&self) -> SmapsTotals {
        self.totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLLUP: &[u8] = b"56347c0c6000-7ffd59bc0000 ---p 00000000 00:00 0                          [rollup]
Rss:               13872 kB
Pss:               11658 kB
Shared_Dirty:          0 kB
Private_Dirty:      7128 kB
Referenced:         1000 kB
Anonymous:          6872 kB
Swap:                 12 kB
";

    #[test]
    fn rollup() {
        let t = parse_rollup(ROLLUP).expect("rollup");
        assert_eq!((t.rss, t.referenced, t.swap, t.anonymous, t.dirty), (Kib(13872), Kib(1000), Kib(12), Kib(6872), Kib(7128)));
        assert_eq!(t.footprint(), Kib(13884));
        assert!(parse_rollup(b"").is_err());
        assert!(parse_rollup(&ROLLUP[..80]).is_err(), "cut before Referenced");
        assert!(parse_rollup(b"Rss: lots kB\nReferenced: 1 kB\n").is_err());
        assert!(parse_rollup(b"garbage\n").is_err());
    }

    #[test]
    fn smaps_in_a_range() {
        let smaps = b"1000-3000 rw-p 00000000 00:00 0
Rss:                   8 kB
Referenced:            4 kB
Swap:                  0 kB
VmFlags: rd wr mr mw me ac
3000-5000 rw-p 00000000 00:00 0
Rss:                   8 kB
Referenced:            8 kB
Swap:                  4 kB
THPeligible:           0
";
        let mut all = SmapsSum::new(None);
        all.feed(smaps).expect("smaps");
        assert_eq!((all.totals().rss, all.totals().referenced, all.totals().swap, all.totals().mappings), (Kib(16), Kib(12), Kib(4), 2));
        let mut one = SmapsSum::new(Some((0x3000, 0x5000)));
        // in two chunks cut at a line end
        let cut = smaps.iter().position(|&b| b == b'V').expect("VmFlags");
        one.feed(&smaps[..cut]).expect("first");
        one.feed(&smaps[cut..]).expect("second");
        assert_eq!((one.totals().referenced, one.totals().mappings, one.totals().partial), (Kib(8), 1, 0));
        let mut part = SmapsSum::new(Some((0x2000, 0x4000)));
        part.feed(smaps).expect("smaps");
        assert_eq!((part.totals().mappings, part.totals().partial), (2, 2));
        assert!(SmapsSum::new(None).feed(b"1000-2000 rw-p 0 0 0\nnonsense\n").is_err());
    }
}
