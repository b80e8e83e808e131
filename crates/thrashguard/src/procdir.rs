//! Reading small files of one process under /proc without allocating.
//!
//! Owns the path formatting (`<pid>/<file>` in a stack buffer) and the open + pread +
//! close of one per-process file relative to an open /proc directory descriptor. A process
//! that vanished is [`Gone`](ReadError::Gone), an outcome and not an error. Also, for the
//! threads beside the guard (history writer, hooks), [`victim_cmdline`], which allocates
//! and must never run on the guard thread. Must never decide anything about what it read.

use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use thrashguard_core::units::Pid;

/// Why a per-process file could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// The process exited (ENOENT / ESRCH) while we looked.
    Gone,
    /// Permission denied (hidepid, another user's file without CAP_SYS_PTRACE).
    Denied,
    /// The file is larger than the buffer.
    TooBig,
    /// Anything else.
    Other(Errno),
}

/// Open a directory (e.g. /proc) for later `read_pid_file` calls.
pub fn open_dir(path: &Path) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?)
}

/// Format `<pid>/<file>\0` into `out`; returns the C string.
pub fn pid_path<'a>(out: &'a mut [u8; 64], pid: Pid, file: &str) -> &'a CStr {
    let mut digits = [0u8; 10];
    let mut n = pid.0;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let d = &digits[i..];
    let file = &file.as_bytes()[..file.len().min(64 - d.len() - 2)];
    out[..d.len()].copy_from_slice(d);
    out[d.len()] = b'/';
    out[d.len() + 1..d.len() + 1 + file.len()].copy_from_slice(file);
    let end = d.len() + 1 + file.len();
    out[end] = 0;
    CStr::from_bytes_with_nul(&out[..=end]).unwrap_or_default()
}

/// Read `/proc/<pid>/<file>` into `buf`; returns the bytes read.
pub fn read_pid_file<'b>(proc_dir: BorrowedFd<'_>, pid: Pid, file: &str, buf: &'b mut [u8]) -> Result<&'b [u8], ReadError> {
    let fd = open_pid_file(proc_dir, pid, file)?;
    read_open(fd.as_fd(), buf)
}

/// Open `/proc/<pid>/<file>` for reading (now and, held, in later scans).
pub fn open_pid_file(proc_dir: BorrowedFd<'_>, pid: Pid, file: &str) -> Result<OwnedFd, ReadError> {
    let mut path = [0u8; 64];
    let path = pid_path(&mut path, pid, file);
    rustix::fs::openat(proc_dir, path, OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW, Mode::empty()).map_err(classify)
}

/// Read an open per-process file from its start into `buf`. On procfs the descriptor names
/// the process it was opened for: once that process has exited the read fails (ESRCH:
/// [`ReadError::Gone`]) or comes back empty, even when its pid was reused since.
pub fn read_open<'b>(fd: BorrowedFd<'_>, buf: &'b mut [u8]) -> Result<&'b [u8], ReadError> {
    match crate::sample::pread_all(fd, buf) {
        Ok(n) => Ok(&buf[..n]),
        Err(e) if e.kind() == std::io::ErrorKind::OutOfMemory => Err(ReadError::TooBig),
        Err(e) => Err(classify(Errno::from_io_error(&e).unwrap_or(Errno::IO))),
    }
}

/// `f_type` of procfs.
pub const PROC_SUPER_MAGIC: u64 = 0x9fa0;

/// Whether `fd` is on procfs (and not a captured tree of plain files, whose held
/// descriptors would keep reading a replaced file's old bytes).
pub fn is_procfs(fd: BorrowedFd<'_>) -> bool {
    rustix::fs::fstatfs(fd).is_ok_and(|fs| fs.f_type as u64 == PROC_SUPER_MAGIC)
}

/// Read a file that may be far larger than `buf` (numa_maps, cgroup.procs) in chunks of
/// whole lines, calling `f` on each; a line cut by the chunk's end is read again with the
/// next chunk. `None` when a read fails or one line is longer than `buf`.
pub fn for_each_line_chunk(fd: BorrowedFd<'_>, buf: &mut [u8], mut f: impl FnMut(&[u8])) -> Option<()> {
    let mut offset = 0u64;
    loop {
        let n = rustix::io::pread(fd, &mut *buf, offset).ok()?;
        if n == 0 {
            return Some(());
        }
        let whole = match buf[..n].iter().rposition(|&b| b == b'\n') {
            Some(last) => last + 1,
            None if n < buf.len() => n, // a last line without newline
            None => return None,        // one line longer than the buffer
        };
        f(&buf[..whole]);
        offset += whole as u64;
    }
}

fn classify(e: Errno) -> ReadError {
    match e {
        Errno::NOENT | Errno::SRCH => ReadError::Gone,
        Errno::ACCESS | Errno::PERM => ReadError::Denied,
        other => ReadError::Other(other),
    }
}

/// Longest command line [`victim_cmdline`] returns, in bytes.
pub const CMDLINE_MAX: usize = 4096;

/// A victim's command line (NULs and other control characters as spaces, at most
/// [`CMDLINE_MAX`] bytes) while `id` is still that process; empty once it is gone or its pid
/// was reused. Never on the guard thread: reading another process's cmdline takes its memory
/// map lock, which a thrashing process may hold for seconds.
pub fn victim_cmdline(proc_root: &Path, id: thrashguard_core::units::ProcId) -> String {
    let dir = proc_root.join(id.pid.0.to_string());
    let Ok(raw) = std::fs::read(dir.join("cmdline")) else { return String::new() };
    // checked after the read: a pid reused in between shows another start time
    let same = std::fs::read(dir.join("stat"))
        .ok()
        .and_then(|s| thrashguard_core::parse::pid::parse_stat(&s).ok())
        .is_some_and(|st| st.start_time == id.start_time);
    if same { thrashguard_core::notify::cmdline_text(&raw, CMDLINE_MAX) } else { String::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let mut b = [0u8; 64];
        assert_eq!(pid_path(&mut b, Pid(0), "stat").to_bytes(), b"0/stat");
        assert_eq!(pid_path(&mut b, Pid(4_194_304), "oom_score_adj").to_bytes(), b"4194304/oom_score_adj");
    }

    #[test]
    fn own_stat_and_a_vanished_pid() {
        let dir = open_dir(Path::new("/proc")).expect("/proc");
        let mut buf = [0u8; 4096];
        let me = Pid(std::process::id());
        assert!(read_pid_file(dir.as_fd(), me, "stat", &mut buf).is_ok());
        // pid_max is at most 2^22: this pid cannot exist
        assert_eq!(read_pid_file(dir.as_fd(), Pid(4_194_305), "stat", &mut buf), Err(ReadError::Gone));
        let mut tiny = [0u8; 4];
        assert_eq!(read_pid_file(dir.as_fd(), me, "status", &mut tiny), Err(ReadError::TooBig));
    }
}
