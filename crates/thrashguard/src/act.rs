//! Acting on a victim: the only module that sends a signal.
//!
//! Owns the race-free kill path: `pidfd_open`, re-read the start time through the same
//! /proc directory to prove the pidfd names the process that was ranked (a reused pid is
//! never signalled), `pidfd_send_signal`; then, as a separate step the caller takes once it
//! has answered whoever asked ([`release`]), `process_mrelease` so the victim's memory comes
//! back before it finishes exiting. Also freeze (SIGSTOP) and thaw (SIGCONT). It
//! forks nothing, execs nothing and allocates nothing. It must never choose a victim.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::io::Errno;
use rustix::process::{PidfdFlags, Signal};
use thrashguard_core::parse::pid;
use thrashguard_core::units::{Pid, ProcId};

use crate::procdir::{self, ReadError};

/// What became of an action.
#[derive(Debug)]
pub enum Acted {
    /// Signalled; the pidfd becomes readable when the process has exited.
    Signalled {
        /// The victim's pidfd.
        pidfd: OwnedFd,
        /// Whether it was killed (SIGKILL or cgroup.kill), so [`release`] may reap its
        /// memory; false for SIGSTOP/SIGCONT and for a victim that exited on SIGTERM.
        killed: bool,
    },
    /// The process exited before it could be signalled: nothing done.
    Gone,
    /// The pid now belongs to another process: nothing done.
    Reused,
}

/// Why an action failed.
#[derive(Debug, thiserror::Error)]
pub enum ActError {
    /// pidfd_open or pidfd_send_signal failed (EPERM without CAP_KILL, ENOSYS before 5.3).
    #[error("{what}: {errno}")]
    Syscall {
        /// The call.
        what: &'static str,
        /// Its error.
        errno: Errno,
    },
    /// Writing cgroup.kill / cgroup.freeze failed.
    #[error("{}: {error}", file.display())]
    Cgroup {
        /// The file.
        file: PathBuf,
        /// Why.
        error: std::io::Error,
    },
}

fn pidfd_for(proc_dir: BorrowedFd<'_>, id: ProcId) -> Result<Result<OwnedFd, Acted>, ActError> {
    let Some(raw) = rustix::process::Pid::from_raw(id.pid.0 as i32) else { return Ok(Err(Acted::Gone)) };
    let pidfd = match rustix::process::pidfd_open(raw, PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(Errno::SRCH) => return Ok(Err(Acted::Gone)),
        Err(errno) => return Err(ActError::Syscall { what: "pidfd_open", errno }),
    };
    // The pidfd pins one process. Prove it is the one that was ranked.
    let mut buf = [0u8; 1024];
    match procdir::read_pid_file(proc_dir, id.pid, "stat", &mut buf) {
        Ok(text) => match pid::parse_stat(text) {
            Ok(st) if st.start_time == id.start_time => Ok(Ok(pidfd)),
            Ok(_) => Ok(Err(Acted::Reused)),
            Err(_) => Ok(Err(Acted::Gone)),
        },
        Err(ReadError::Gone) => Ok(Err(Acted::Gone)),
        Err(_) => Ok(Err(Acted::Gone)),
    }
}

fn send(pidfd: &OwnedFd, sig: Signal) -> Result<bool, ActError> {
    match rustix::process::pidfd_send_signal(pidfd, sig) {
        Ok(()) => Ok(true),
        Err(Errno::SRCH) => Ok(false),
        Err(errno) => Err(ActError::Syscall { what: "pidfd_send_signal", errno }),
    }
}

/// Kill `id`: SIGTERM and up to `grace` for it to exit first when `grace` is non-zero,
/// then SIGKILL. Call [`release`] on the pidfd next (after any reply that waits on this
/// one: reaping a large address space takes hundreds of milliseconds).
pub fn kill(proc_dir: BorrowedFd<'_>, id: ProcId, grace: Duration) -> Result<Acted, ActError> {
    let pidfd = match pidfd_for(proc_dir, id)? {
        Ok(fd) => fd,
        Err(outcome) => return Ok(outcome),
    };
    if !grace.is_zero() {
        if !send(&pidfd, Signal::TERM)? {
            return Ok(Acted::Gone);
        }
        if wait_exit(pidfd.as_fd(), grace) {
            return Ok(Acted::Signalled { pidfd, killed: false });
        }
    }
    if !send(&pidfd, Signal::KILL)? {
        return Ok(Acted::Gone);
    }
    Ok(Acted::Signalled { pidfd, killed: true })
}

/// Stop `id` with SIGSTOP (resume with [`thaw`]).
pub fn freeze(proc_dir: BorrowedFd<'_>, id: ProcId) -> Result<Acted, ActError> {
    signal_checked(proc_dir, id, Signal::STOP)
}

/// Resume a stopped process.
pub fn thaw(proc_dir: BorrowedFd<'_>, id: ProcId) -> Result<Acted, ActError> {
    signal_checked(proc_dir, id, Signal::CONT)
}

fn signal_checked(proc_dir: BorrowedFd<'_>, id: ProcId, sig: Signal) -> Result<Acted, ActError> {
    let pidfd = match pidfd_for(proc_dir, id)? {
        Ok(fd) => fd,
        Err(outcome) => return Ok(outcome),
    };
    if send(&pidfd, sig)? { Ok(Acted::Signalled { pidfd, killed: false }) } else { Ok(Acted::Gone) }
}

/// Kill the whole cgroup v2 `dir` that holds `id` (cgroup.kill, Linux 5.14+), after proving
/// `id` is still the ranked process. The returned pidfd tracks `id`'s exit.
pub fn kill_cgroup(proc_dir: BorrowedFd<'_>, id: ProcId, dir: &Path) -> Result<Acted, ActError> {
    write_cgroup(proc_dir, id, dir, "cgroup.kill", true)
}

/// Freeze (`freeze = true`) or thaw the whole cgroup v2 `dir` that holds `id`.
pub fn freeze_cgroup(proc_dir: BorrowedFd<'_>, id: ProcId, dir: &Path, freeze: bool) -> Result<Acted, ActError> {
    write_cgroup(proc_dir, id, dir, "cgroup.freeze", freeze)
}

fn write_cgroup(proc_dir: BorrowedFd<'_>, id: ProcId, dir: &Path, file: &str, on: bool) -> Result<Acted, ActError> {
    let pidfd = match pidfd_for(proc_dir, id)? {
        Ok(fd) => fd,
        Err(outcome) => return Ok(outcome),
    };
    std::fs::write(dir.join(file), if on { "1" } else { "0" }).map_err(|e| ActError::Cgroup { file: dir.join(file), error: e })?;
    Ok(Acted::Signalled { pidfd, killed: file == "cgroup.kill" })
}

/// The cgroup v2 directory of a process: `0::/path` of /proc/PID/cgroup under `v2_mount`.
/// `None` for the root cgroup (never killed whole), a v1-only process or a vanished one.
pub fn cgroup_v2_dir(proc_root: &Path, pid: Pid, v2_mount: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(proc_root.join(pid.0.to_string()).join("cgroup")).ok()?;
    let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
    let rel = rel.trim_start_matches('/');
    if rel.is_empty() || rel.contains("..") {
        return None;
    }
    let dir = v2_mount.join(rel);
    dir.join("cgroup.procs").exists().then_some(dir)
}

/// Reap a killed process's memory now (process_mrelease, Linux 5.15+) instead of waiting
/// for its exit to do it: returns when the memory is back. False where unsupported or when
/// the process has already exited.
pub fn release(pidfd: BorrowedFd<'_>) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: process_mrelease(2) takes a pidfd and flags (must be 0); it reads no user
    // memory. An invalid or unsupported call returns -1 with errno, which we ignore.
    let rc = unsafe { libc::syscall(libc::SYS_process_mrelease, pidfd.as_raw_fd(), 0) };
    rc == 0
}

/// Wait up to `timeout` for the process behind `pidfd` to exit.
pub fn wait_exit(pidfd: BorrowedFd<'_>, timeout: Duration) -> bool {
    let mut fds = [rustix::event::PollFd::new(&pidfd, rustix::event::PollFlags::IN)];
    let ts = rustix::time::Timespec { tv_sec: timeout.as_secs() as i64, tv_nsec: i64::from(timeout.subsec_nanos()) };
    matches!(rustix::event::poll(&mut fds, Some(&ts)), Ok(n) if n > 0)
}

/// Run the kill path up to the signal on this very process (identify, pidfd_open, the
/// start-time check), sending nothing: at start, so that under MCL_ONFAULT its code is
/// resident before a rescue needs it. True when every step worked.
pub fn rehearse(proc_dir: BorrowedFd<'_>) -> bool {
    let me = Pid(std::process::id());
    identify(proc_dir, me).is_some_and(|id| matches!(pidfd_for(proc_dir, id), Ok(Ok(_))))
}

/// The identity of a live pid now (for `thaw PID` and `kill PID` from the command line).
pub fn identify(proc_dir: BorrowedFd<'_>, pid: Pid) -> Option<ProcId> {
    let mut buf = [0u8; 1024];
    let st = pid::parse_stat(procdir::read_pid_file(proc_dir, pid, "stat", &mut buf).ok()?).ok()?;
    Some(ProcId { pid, start_time: st.start_time })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn proc_dir() -> OwnedFd {
        procdir::open_dir(Path::new("/proc")).expect("/proc")
    }

    #[test]
    fn rehearsal_sends_nothing_and_works() {
        assert!(rehearse(proc_dir().as_fd()));
    }

    #[test]
    fn kills_the_right_process() {
        let dir = proc_dir();
        let mut child = Command::new("sleep").arg("30").spawn().expect("spawn sleep");
        let id = identify(dir.as_fd(), Pid(child.id())).expect("live");
        let acted = kill(dir.as_fd(), id, Duration::ZERO).expect("kill");
        let Acted::Signalled { pidfd, .. } = acted else { panic!("{acted:?}") };
        assert!(wait_exit(pidfd.as_fd(), Duration::from_secs(5)));
        let status = child.wait().expect("wait");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9));
    }

    #[test]
    fn never_signals_a_reused_pid() {
        let dir = proc_dir();
        let mut child = Command::new("sleep").arg("30").spawn().expect("spawn sleep");
        let real = identify(dir.as_fd(), Pid(child.id())).expect("live");
        // Same pid, another start time: what a reused pid looks like to the ranker.
        let stale = ProcId { pid: real.pid, start_time: real.start_time.wrapping_sub(1) };
        assert!(matches!(kill(dir.as_fd(), stale, Duration::ZERO).expect("no error"), Acted::Reused));
        assert!(matches!(freeze(dir.as_fd(), stale).expect("no error"), Acted::Reused));
        // still alive
        assert!(child.try_wait().expect("try_wait").is_none());
        child.kill().expect("cleanup");
        child.wait().expect("reap");
    }

    #[test]
    fn a_vanished_process_is_gone() {
        let dir = proc_dir();
        let mut child = Command::new("true").spawn().expect("spawn");
        let pid = Pid(child.id());
        child.wait().expect("reap");
        let id = ProcId { pid, start_time: 1 };
        assert!(matches!(kill(dir.as_fd(), id, Duration::ZERO).expect("no error"), Acted::Gone | Acted::Reused));
    }

    #[test]
    fn freeze_and_thaw() {
        let dir = proc_dir();
        let mut child = Command::new("sleep").arg("30").spawn().expect("spawn sleep");
        let id = identify(dir.as_fd(), Pid(child.id())).expect("live");
        assert!(matches!(freeze(dir.as_fd(), id).expect("freeze"), Acted::Signalled { .. }));
        let mut buf = [0u8; 1024];
        std::thread::sleep(Duration::from_millis(50));
        let st = pid::parse_stat(procdir::read_pid_file(dir.as_fd(), id.pid, "stat", &mut buf).expect("stat")).expect("parse");
        assert_eq!(st.state, b'T');
        assert!(matches!(thaw(dir.as_fd(), id).expect("thaw"), Acted::Signalled { .. }));
        child.kill().expect("cleanup");
        child.wait().expect("reap");
    }

    #[test]
    fn kills_a_whole_cgroup_v2_but_never_the_root() {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let Some(v2) = thrashguard_core::parse::mountinfo::memory_cgroup_mounts(&mounts).into_iter().find(|m| m.v2) else {
            eprintln!("no cgroup2 mount: skipped");
            return;
        };
        let dir = Path::new(&v2.path).join(format!("tg-act-{}", std::process::id()));
        if std::fs::create_dir(&dir).is_err() {
            eprintln!("cannot create a cgroup2 child (not root?): skipped");
            return;
        }
        let pdir = proc_dir();
        let mut a = Command::new("sleep").arg("30").spawn().expect("spawn");
        let mut b = Command::new("sleep").arg("30").spawn().expect("spawn");
        for c in [&a, &b] {
            std::fs::write(dir.join("cgroup.procs"), c.id().to_string()).expect("move into cgroup");
        }
        let found = cgroup_v2_dir(Path::new("/proc"), Pid(a.id()), Path::new(&v2.path)).expect("found");
        assert_eq!(found, dir);
        // our own test process sits in the root or another cgroup: never that one
        assert_ne!(cgroup_v2_dir(Path::new("/proc"), Pid(1), Path::new(&v2.path)).as_deref(), Some(Path::new(&v2.path)));
        let id = identify(pdir.as_fd(), Pid(a.id())).expect("live");
        let acted = kill_cgroup(pdir.as_fd(), id, &found).expect("cgroup.kill");
        assert!(matches!(acted, Acted::Signalled { .. }));
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(a.wait().expect("wait").signal(), Some(9));
        assert_eq!(b.wait().expect("wait").signal(), Some(9), "the whole cgroup died");
        for _ in 0..50 {
            if std::fs::remove_dir(&dir).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
