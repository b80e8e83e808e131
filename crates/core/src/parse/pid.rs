//! /proc/PID/stat, /proc/PID/statm and /proc/PID/status: one process's identity, size and
//! fault counters.
//!
//! Owns the per-process fields the victim scan needs. `comm` is held inline and the stat
//! line is split after the *last* `)` so a process named `a) b` cannot shift the fields.
//! Must never allocate or read a file; a vanished process is the caller's concern.

use super::{ParseError, numbered_lines, parse_i64, parse_u64, words};
use crate::units::{Comm, Kib, Pages, Pid};

/// PF_KTHREAD in the `flags` field: the task is a kernel thread (it has no mm).
pub const PF_KTHREAD: u32 = 0x0020_0000;

/// A /proc directory entry name that is a pid ("1234"); `None` for "self", "meminfo"...
pub fn parse_pid_name(name: &[u8]) -> Option<Pid> {
    parse_u64(name).and_then(|p| u32::try_from(p).ok()).filter(|&p| p > 0).map(Pid)
}

/// Fields of /proc/PID/stat.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PidStat {
    /// Field 1.
    pub pid: Pid,
    /// Field 2, without parentheses.
    pub comm: Comm,
    /// Field 3: R, S, D, Z, T, t, X, I...
    pub state: u8,
    /// Field 4.
    pub ppid: Pid,
    /// Field 9: PF_* flags.
    pub flags: u32,
    /// Field 10.
    pub minflt: u64,
    /// Field 12: major faults (needed I/O).
    pub majflt: u64,
    /// Field 14, clock ticks.
    pub utime: u64,
    /// Field 15, clock ticks.
    pub stime: u64,
    /// Field 20.
    pub num_threads: u64,
    /// Field 22: start time in clock ticks after boot; with `pid`, a unique identity.
    pub start_time: u64,
    /// Field 24: resident set size.
    pub rss: Pages,
}

impl PidStat {
    /// A kernel thread: it has no memory of its own to free and must never be a victim.
    pub fn is_kernel_thread(&self) -> bool {
        self.flags & PF_KTHREAD != 0
    }
    /// A zombie or dead task: already exiting, nothing to kill.
    pub fn is_exiting(&self) -> bool {
        matches!(self.state, b'Z' | b'X' | b'x')
    }
}

/// Parse /proc/PID/stat.
pub fn parse_stat(buf: &[u8]) -> Result<PidStat, ParseError> {
    const FILE: &str = "PID/stat";
    let err = |what| ParseError::new(FILE, 1, what);
    let open = buf.iter().position(|&b| b == b'(').ok_or(err("no `(` before comm"))?;
    let close = buf.iter().rposition(|&b| b == b')').ok_or(err("no `)` after comm"))?;
    if close < open {
        return Err(err("`)` before `(`"));
    }
    let pid = parse_u64(buf[..open].trim_ascii()).and_then(|p| u32::try_from(p).ok()).ok_or(err("bad pid"))?;
    let mut s = PidStat { pid: Pid(pid), comm: Comm::new(&buf[open + 1..close]), ..PidStat::default() };
    let mut n = 0usize;
    for (i, w) in words(&buf[close + 1..]).enumerate() {
        n = i + 1;
        let num = || parse_u64(w).ok_or(err("bad number"));
        match i {
            0 => s.state = *w.first().ok_or(err("empty state"))?,
            1 => s.ppid = Pid(u32::try_from(num()?).map_err(|_| err("bad ppid"))?),
            6 => s.flags = u32::try_from(num()?).map_err(|_| err("bad flags"))?,
            7 => s.minflt = num()?,
            9 => s.majflt = num()?,
            11 => s.utime = num()?,
            12 => s.stime = num()?,
            17 => s.num_threads = num()?,
            19 => s.start_time = num()?,
            // rss is signed in the kernel's format string; negative never happens in practice
            21 => s.rss = Pages(parse_i64(w).ok_or(err("bad rss"))?.max(0) as u64),
            _ => {}
        }
        if i > 21 {
            break;
        }
    }
    if n < 22 {
        return Err(err("too few fields (truncated?)"));
    }
    Ok(s)
}

/// The resident set size from /proc/PID/statm (`size resident shared text lib data dt`,
/// in pages): the one number the scan reads for every process. The kernel makes this line
/// for a quarter of what `stat` costs; a kernel thread or a zombie has no mm and reads 0.
pub fn parse_statm_resident(buf: &[u8]) -> Result<Pages, ParseError> {
    let err = |what| ParseError::new("PID/statm", 1, what);
    let mut w = words(buf);
    let (Some(_size), Some(resident)) = (w.next(), w.next()) else {
        return Err(err("too few fields (truncated?)"));
    };
    // the line ends with a newline; a resident field cut off at the end of the buffer is
    // indistinguishable from a short number, so demand the rest of the line
    if w.next().is_none() {
        return Err(err("too few fields (truncated?)"));
    }
    parse_u64(resident).map(Pages).ok_or(err("bad resident size"))
}

/// Fields of /proc/PID/status. Memory fields are `None` for kernel threads (no mm).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PidStatus {
    /// Tgid: the thread group (process) id.
    pub tgid: Option<Pid>,
    /// Real uid.
    pub uid: Option<u32>,
    /// VmRSS.
    pub vm_rss: Option<Kib>,
    /// RssAnon (4.5+).
    pub rss_anon: Option<Kib>,
    /// RssShmem (4.5+).
    pub rss_shmem: Option<Kib>,
    /// VmSwap (2.6.34+).
    pub vm_swap: Option<Kib>,
}

impl PidStatus {
    /// The memory this process would give back if killed, as thrashguard ranks it:
    /// resident plus swapped out (RSS + swap).
    pub fn footprint(&self) -> Kib {
        self.vm_rss.unwrap_or_default().saturating_add(self.vm_swap.unwrap_or_default())
    }
}

/// Parse /proc/PID/status, up to VmSwap.
pub fn parse_status(buf: &[u8]) -> Result<PidStatus, ParseError> {
    const FILE: &str = "PID/status";
    let mut s = PidStatus::default();
    let mut any = false;
    for (no, line) in numbered_lines(buf) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(ParseError::new(FILE, no, "expected `Name: value`"));
        };
        any = true;
        let first = words(&line[colon + 1..]).next();
        let num = || first.and_then(parse_u64).ok_or(ParseError::new(FILE, no, "bad number"));
        match &line[..colon] {
            b"Tgid" => s.tgid = Some(Pid(u32::try_from(num()?).map_err(|_| ParseError::new(FILE, no, "bad tgid"))?)),
            b"Uid" => s.uid = Some(u32::try_from(num()?).map_err(|_| ParseError::new(FILE, no, "bad uid"))?),
            b"VmRSS" => s.vm_rss = Some(Kib(num()?)),
            b"RssAnon" => s.rss_anon = Some(Kib(num()?)),
            b"RssShmem" => s.rss_shmem = Some(Kib(num()?)),
            b"VmSwap" => {
                s.vm_swap = Some(Kib(num()?));
                break; // nothing thrashguard uses comes after it (signal masks, cpusets...)
            }
            _ => {}
        }
    }
    if !any {
        return Err(ParseError::new(FILE, 0, "empty"));
    }
    Ok(s)
}

/// One `Name:   N kB` field of a /proc/PID/status text, read leniently: a garbled line
/// elsewhere does not hide it (unlike [`parse_status`], which refuses the whole file).
/// `None` when the field is absent or not a number. For fields `parse_status` does not
/// keep (VmLck, VmPin, VmSize) or where one bad line must not cost the others.
pub fn status_kib(status: &str, name: &str) -> Option<Kib> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .map(Kib)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_kib_reads_one_field_leniently() {
        let status = "Name:\tx\ngarbled line\nVmSize:\t  12345 kB\nVmLck:\t       0 kB\nVmLckX:\t9 kB\nVmPin: bad kB\n";
        assert_eq!(status_kib(status, "VmSize"), Some(Kib(12345)));
        assert_eq!(status_kib(status, "VmLck"), Some(Kib(0)), "the field, not one it prefixes");
        assert_eq!(status_kib(status, "VmPin"), None, "not a number");
        assert_eq!(status_kib(status, "VmRSS"), None, "absent");
    }

    #[test]
    fn comm_with_parens_and_spaces() {
        let line = b"42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 7 0 11 12 0 0 20 0 1 0 5555 1000000 250 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n";
        let s = parse_stat(line).expect("valid");
        assert_eq!(s.pid, Pid(42));
        assert_eq!(s.comm.as_bytes(), b"a) b (c)");
        assert_eq!((s.state, s.majflt, s.start_time, s.rss), (b'S', 7, 5555, Pages(250)));
        assert!(!s.is_kernel_thread());
    }

    #[test]
    fn truncated_stat() {
        assert!(parse_stat(b"42 (x) S 1 42").is_err());
        assert!(parse_stat(b"").is_err());
        assert!(parse_stat(b"x (y) S").is_err());
        assert!(parse_stat(b"1 )oops( S").is_err());
    }

    #[test]
    fn statm_resident() {
        assert_eq!(parse_statm_resident(b"2724 448 384 5 0 107 0\n"), Ok(Pages(448)));
        assert_eq!(parse_statm_resident(b"0 0 0 0 0 0 0\n"), Ok(Pages(0)), "kernel thread or zombie");
        assert!(parse_statm_resident(b"2724 44").is_err(), "truncated");
        assert!(parse_statm_resident(b"").is_err());
        assert!(parse_statm_resident(b"2724 lots 384 5 0 107 0\n").is_err());
    }

    #[test]
    fn status_footprint() {
        let s = parse_status(b"Name:\thog\nTgid:\t7\nUid:\t1000\t1000\t1000\t1000\nVmRSS:\t  100 kB\nVmSwap:\t  50 kB\n").expect("valid");
        assert_eq!(s.footprint(), Kib(150));
        assert_eq!(s.uid, Some(1000));
        assert!(parse_status(b"").is_err());
        assert!(parse_status(b"VmRSS:\tlots kB\n").is_err());
    }
}
