//! Units carried in types: kibibytes, pages, microseconds, pids and process identities.
//!
//! Owns the newtypes every other module speaks in, so that a byte count is never
//! mistaken for a page count and a microsecond never for a millisecond. It must never
//! do I/O or guess the page size: callers convert pages with an explicit page size.

use serde::{Deserialize, Serialize};

/// A size in kibibytes (the unit of /proc/meminfo and /proc/PID/status).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Kib(pub u64);

impl Kib {
    /// Zero kibibytes.
    pub const ZERO: Kib = Kib(0);
    /// This size in whole mebibytes (rounded down), for human output.
    pub fn mib(self) -> u64 {
        self.0 / 1024
    }
    /// Addition that saturates instead of overflowing.
    pub fn saturating_add(self, other: Kib) -> Kib {
        Kib(self.0.saturating_add(other.0))
    }
    /// Subtraction that stops at zero.
    pub fn saturating_sub(self, other: Kib) -> Kib {
        Kib(self.0.saturating_sub(other.0))
    }
    /// This size as a percentage of `whole` (0 when `whole` is zero).
    pub fn pct_of(self, whole: Kib) -> f64 {
        if whole.0 == 0 { 0.0 } else { self.0 as f64 * 100.0 / whole.0 as f64 }
    }
    /// Build from a count of pages of `page_size` bytes.
    pub fn from_pages(pages: Pages, page_size: u64) -> Kib {
        Kib(pages.0.saturating_mul(page_size) / 1024)
    }
}

impl std::fmt::Display for Kib {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} MiB", self.0 / 1024)
    }
}

/// A number of memory pages (the unit of /proc/vmstat counters and /proc/PID/stat rss).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Pages(pub u64);

/// A duration or timestamp in microseconds (the unit of PSI `total=` counters and of
/// the policy's clock: microseconds since the guard or trace started).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Micros(pub u64);

impl Micros {
    /// Zero microseconds.
    pub const ZERO: Micros = Micros(0);
    /// From whole milliseconds.
    pub const fn from_millis(ms: u64) -> Micros {
        Micros(ms * 1000)
    }
    /// From whole seconds.
    pub const fn from_secs(s: u64) -> Micros {
        Micros(s * 1_000_000)
    }
    /// From fractional seconds (trace timestamps); negative and NaN become zero.
    pub fn from_secs_f64(s: f64) -> Micros {
        if s.is_finite() && s > 0.0 { Micros((s * 1e6).round() as u64) } else { Micros(0) }
    }
    /// As fractional seconds.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }
    /// As whole milliseconds.
    pub fn as_millis(self) -> u64 {
        self.0 / 1000
    }
    /// Subtraction that stops at zero.
    pub fn saturating_sub(self, other: Micros) -> Micros {
        Micros(self.0.saturating_sub(other.0))
    }
}

/// A process id as the kernel numbers it (in the pid namespace of the /proc we read).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Pid(pub u32);

impl std::fmt::Display for Pid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The identity of one process over time: a pid is reused, a (pid, start time) pair is not.
/// `start_time` is field 22 of /proc/PID/stat, in clock ticks since boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProcId {
    /// The pid.
    pub pid: Pid,
    /// Start time in clock ticks after boot.
    pub start_time: u64,
}

/// A process name as the kernel keeps it (`comm`, at most 15 bytes plus NUL), held inline
/// so that scanning thousands of processes allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Comm {
    bytes: [u8; 16],
    len: u8,
}

impl Comm {
    /// Build from raw bytes, truncating to 16.
    pub fn new(raw: &[u8]) -> Comm {
        let mut bytes = [0u8; 16];
        let len = raw.len().min(16);
        bytes[..len].copy_from_slice(&raw[..len]);
        Comm { bytes, len: len as u8 }
    }
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
    /// Lossy text for logs.
    pub fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(self.as_bytes()).into_owned()
    }
}

impl std::fmt::Debug for Comm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

impl std::fmt::Display for Comm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}

impl Serialize for Comm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}

/// A wall-clock instant broken into UTC calendar fields (proleptic Gregorian), for
/// printing: year, month, day, hour, minute, second, millisecond. Any `i64` of milliseconds
/// since the Unix epoch converts (the year is wide enough not to overflow).
pub fn utc_fields(unix_ms: i64) -> (i128, u8, u8, u8, u8, u8, u16) {
    let days = unix_ms.div_euclid(86_400_000);
    let ms_of_day = unix_ms.rem_euclid(86_400_000);
    // civil_from_days (Howard Hinnant), for days since 1970-01-01
    let z = i128::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i128::from(m <= 2);
    let f = |v: i64| v as u8;
    (y, m as u8, d as u8, f(ms_of_day / 3_600_000), f(ms_of_day / 60_000 % 60), f(ms_of_day / 1000 % 60), (ms_of_day % 1000) as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micros_from_trace_seconds() {
        assert_eq!(Micros::from_secs_f64(12.304), Micros(12_304_000));
        assert_eq!(Micros::from_secs_f64(-1.0), Micros(0));
        assert_eq!(Micros::from_secs_f64(f64::NAN), Micros(0));
    }

    #[test]
    fn comm_truncates_and_roundtrips() {
        let c = Comm::new(b"a-very-long-process-name");
        assert_eq!(c.as_bytes().len(), 16);
        assert_eq!(Comm::new(b"hog").to_string(), "hog");
    }

    #[test]
    fn percentages() {
        assert_eq!(Kib(25).pct_of(Kib(100)), 25.0);
        assert_eq!(Kib(25).pct_of(Kib(0)), 0.0);
    }

    #[test]
    fn kib_from_pages() {
        assert_eq!(Kib::from_pages(Pages(3), 4096), Kib(12));
    }
}
