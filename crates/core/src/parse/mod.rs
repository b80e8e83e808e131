//! Parsers for the kernel files thrashguard reads: bytes in, typed values out.
//!
//! One file per kernel file. Every parser takes the whole file as `&[u8]` (exactly as
//! `pread` returned it, possibly truncated or garbled) and returns a plain value or a
//! [`ParseError`] naming the file, line and what was wrong. Parsers never allocate, so
//! the guard loop can call them on every sample; they never panic on any input (a
//! property test feeds them random bytes). They must never read a file themselves.

pub mod buddyinfo;
pub mod cgroup;
pub mod kmsg;
pub mod maps;
pub mod meminfo;
pub mod mountinfo;
pub mod netstat;
pub mod numa_maps;
pub mod pagemap;
pub mod pid;
pub mod psi;
pub mod smaps;
pub mod sockets;
pub mod vmstat;
pub mod zoneinfo;

pub use meminfo::Meminfo;
pub use pid::{PidStat, PidStatus};
pub use psi::{Psi, PsiLine};
pub use vmstat::Vmstat;

/// What went wrong parsing one kernel file. Holds only static text so that producing
/// it allocates nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}: line {line}: {what}")]
pub struct ParseError {
    /// The file, as named under /proc (e.g. `meminfo`, `pressure/memory`).
    pub file: &'static str,
    /// 1-based line number (0 when the problem is the file as a whole).
    pub line: u32,
    /// What was wrong.
    pub what: &'static str,
}

impl ParseError {
    pub(crate) fn new(file: &'static str, line: usize, what: &'static str) -> ParseError {
        ParseError { file, line: u32::try_from(line).unwrap_or(u32::MAX), what }
    }
}

/// Lines of a file with 1-based numbers, skipping empty lines. /proc text files end in a
/// newline; a last line without one was cut short (a truncated read) and is dropped, so
/// a half-written number is never taken for a real one.
pub(crate) fn numbered_lines(buf: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let complete = match buf.iter().rposition(|&b| b == b'\n') {
        Some(last) => &buf[..=last],
        None => &buf[..0],
    };
    complete.split(|&b| b == b'\n').enumerate().map(|(i, l)| (i + 1, l)).filter(|(_, l)| !l.is_empty())
}

/// `name value` lines (vmstat, memory.stat): each as (name, value), or an error naming
/// the line. Empty and cut-short last lines are skipped as in [`numbered_lines`].
pub(crate) fn counter_lines<'a>(file: &'static str, buf: &'a [u8]) -> impl Iterator<Item = Result<(&'a [u8], u64), ParseError>> {
    numbered_lines(buf).map(move |(no, line)| {
        let mut w = words(line);
        let (Some(name), Some(value)) = (w.next(), w.next()) else {
            return Err(ParseError::new(file, no, "expected `name value`"));
        };
        let value = parse_u64(value).ok_or(ParseError::new(file, no, "bad number"))?;
        Ok((name, value))
    })
}

/// A decimal unsigned integer, the whole slice; `None` on anything else or on overflow.
pub(crate) fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

/// A decimal signed integer, the whole slice.
pub(crate) fn parse_i64(s: &[u8]) -> Option<i64> {
    match s.split_first() {
        Some((b'-', rest)) => parse_u64(rest).and_then(|v| i64::try_from(v).ok()).map(|v| -v),
        _ => parse_u64(s).and_then(|v| i64::try_from(v).ok()),
    }
}

/// Split on ASCII whitespace, skipping empty pieces.
pub(crate) fn words(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty())
}

/// Trim ASCII whitespace at both ends.
pub(crate) fn trim(s: &[u8]) -> &[u8] {
    s.trim_ascii()
}

/// A file holding one signed integer (oom_score_adj, oom_score, memory.max as a number...).
pub fn parse_single_i64(file: &'static str, buf: &[u8]) -> Result<i64, ParseError> {
    parse_i64(trim(buf)).ok_or(ParseError::new(file, 1, "expected one integer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"12a"), None);
        assert_eq!(parse_i64(b"-1000"), Some(-1000));
        assert_eq!(parse_single_i64("oom_score_adj", b"-1000\n"), Ok(-1000));
        assert!(parse_single_i64("oom_score_adj", b"").is_err());
    }
}
