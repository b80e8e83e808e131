//! /proc/pressure/{memory,io,cpu} and cgroup v2 `*.pressure`: pressure stall information.
//!
//! Owns the parse of `some avg10=.. avg60=.. avg300=.. total=..` lines. The policy uses
//! only the `total=` microsecond counters (the averages lag by seconds); the averages are
//! kept for display. Must never allocate or read a file.

use super::{ParseError, numbered_lines, parse_u64, words};
use crate::units::Micros;

/// One line of a pressure file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PsiLine {
    /// avg10 in hundredths of a percent (12.34 % is 1234).
    pub avg10: u32,
    /// avg60 in hundredths of a percent.
    pub avg60: u32,
    /// avg300 in hundredths of a percent.
    pub avg300: u32,
    /// Total stall time since boot.
    pub total: Micros,
}

/// A whole pressure file: `some`, and `full` where the kernel reports it (memory and io
/// always; cpu since 5.13, with zeros at system level).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Psi {
    /// Share of time at least one task stalled.
    pub some: PsiLine,
    /// Share of time all non-idle tasks stalled at once.
    pub full: Option<PsiLine>,
}

/// "12.34" as hundredths (1234). Accepts up to two decimals.
fn parse_centi(s: &[u8]) -> Option<u32> {
    let (int, frac) = match s.iter().position(|&b| b == b'.') {
        Some(dot) => (&s[..dot], &s[dot + 1..]),
        None => (s, &b""[..]),
    };
    let int = parse_u64(int)?;
    let frac = match frac.len() {
        0 => 0,
        1 => parse_u64(frac)? * 10,
        2 => parse_u64(frac)?,
        _ => return None,
    };
    u32::try_from(int.checked_mul(100)?.checked_add(frac)?).ok()
}

fn parse_line(file: &'static str, no: usize, rest: &[u8]) -> Result<PsiLine, ParseError> {
    let mut line = PsiLine::default();
    let mut seen_total = false;
    for word in words(rest) {
        let eq = word.iter().position(|&b| b == b'=').ok_or(ParseError::new(file, no, "expected key=value"))?;
        let (key, value) = (&word[..eq], &word[eq + 1..]);
        let bad = ParseError::new(file, no, "bad number");
        match key {
            b"avg10" => line.avg10 = parse_centi(value).ok_or(bad)?,
            b"avg60" => line.avg60 = parse_centi(value).ok_or(bad)?,
            b"avg300" => line.avg300 = parse_centi(value).ok_or(bad)?,
            b"total" => {
                line.total = Micros(parse_u64(value).ok_or(bad)?);
                seen_total = true;
            }
            _ => {} // a future key: ignore
        }
    }
    if seen_total { Ok(line) } else { Err(ParseError::new(file, no, "missing total=")) }
}

/// Parse a pressure file. `file` names it in errors.
pub fn parse(file: &'static str, buf: &[u8]) -> Result<Psi, ParseError> {
    let mut some = None;
    let mut full = None;
    for (no, line) in numbered_lines(buf) {
        let mut it = line.splitn(2, |&b| b == b' ');
        let kind = it.next().unwrap_or_default();
        let rest = it.next().unwrap_or_default();
        match kind {
            b"some" => some = Some(parse_line(file, no, rest)?),
            b"full" => full = Some(parse_line(file, no, rest)?),
            _ => return Err(ParseError::new(file, no, "expected a `some` or `full` line")),
        }
    }
    let some = some.ok_or(ParseError::new(file, 0, "no `some` line (truncated?)"))?;
    Ok(Psi { some, full })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &[u8] = b"some avg10=12.34 avg60=1.00 avg300=0.00 total=12345678\nfull avg10=0.50 avg60=0.10 avg300=0.00 total=999\n";

    #[test]
    fn parses_both_lines() {
        let p = parse("pressure/memory", SAMPLE).expect("valid");
        assert_eq!(p.some.avg10, 1234);
        assert_eq!(p.some.total, Micros(12_345_678));
        assert_eq!(p.full.expect("full").total, Micros(999));
    }

    #[test]
    fn some_only_is_fine() {
        let p = parse("pressure/cpu", b"some avg10=0.00 avg60=0.00 avg300=0.00 total=5\n").expect("valid");
        assert!(p.full.is_none());
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("pressure/memory", b"some avg10=0.00 total=1\nfull avg10=x total=2\n").unwrap_err();
        assert_eq!((e.file, e.line, e.what), ("pressure/memory", 2, "bad number"));
        assert!(parse("pressure/memory", b"").is_err());
        assert!(parse("pressure/memory", b"some avg10=0.00 avg60=0.00 avg3").is_err());
        assert!(parse("pressure/memory", b"bogus\n").is_err());
    }
}
