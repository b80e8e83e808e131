//! Reading the kernel's pressure files: descriptors opened once, re-read with pread into
//! fixed buffers, and the PSI trigger that wakes the guard when stalls start.
//!
//! Owns every read of /proc the guard loop does per sample and the `--proc-root`
//! indirection. After [`Sampler::open`] returns, [`Sampler::sample`] allocates nothing.
//! It must never decide anything: it hands raw bytes to `thrashguard_core` parsers.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use thrashguard_core::snapshot::Snapshot;
use thrashguard_core::units::Micros;

/// One /proc file kept open and re-read from offset 0 into a buffer sized at open.
#[derive(Debug)]
pub struct ProcFile {
    file: File,
    buf: Box<[u8]>,
    len: usize,
    path: PathBuf,
}

impl ProcFile {
    /// Open `path` and size the buffer to four times its current content (at least 16 KiB),
    /// so a growing file (new vmstat counters) still fits.
    pub fn open(path: PathBuf) -> io::Result<ProcFile> {
        let file = File::open(&path)?;
        let mut f = ProcFile { file, buf: vec![0u8; 16 * 1024].into_boxed_slice(), len: 0, path };
        loop {
            match f.read() {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::OutOfMemory => f.buf = vec![0u8; f.buf.len() * 2].into_boxed_slice(),
                Err(e) => return Err(e),
            }
        }
        let want = (f.len * 4).max(16 * 1024);
        if want > f.buf.len() {
            f.buf = vec![0u8; want].into_boxed_slice();
        }
        Ok(f)
    }

    /// Re-read the whole file. Fails with `OutOfMemory` when it no longer fits the buffer
    /// (never silently truncated).
    pub fn read(&mut self) -> io::Result<&[u8]> {
        self.len = pread_all(self.file.as_fd(), &mut self.buf)?;
        Ok(&self.buf[..self.len])
    }

    /// The bytes of the last successful read.
    pub fn last(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// pread from offset 0 until end of file; `OutOfMemory` if `buf` fills up first.
/// A /proc text file is generated whole on the first read, so a read that returns less
/// than was asked for is its end: no second pread just to see 0.
pub fn pread_all(fd: impl AsFd, buf: &mut [u8]) -> io::Result<usize> {
    let mut len = 0;
    loop {
        if len == buf.len() {
            return Err(io::Error::new(io::ErrorKind::OutOfMemory, "file larger than its buffer"));
        }
        let want = buf.len() - len;
        match rustix::io::pread(fd.as_fd(), &mut buf[len..], len as u64) {
            Ok(0) => return Ok(len),
            Ok(n) if n < want => return Ok(len + n),
            Ok(n) => len += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// How the guard learns that stalls started.
#[derive(Debug)]
pub enum Wakeup {
    /// A PSI trigger: the fd becomes readable with POLLPRI when the threshold is crossed.
    Trigger {
        /// The pressure file with the trigger registered.
        file: File,
        /// The trigger written.
        spec: &'static str,
    },
    /// No trigger could be registered (no PSI, or no permission): sample on the timer.
    Timer {
        /// Why no trigger.
        why: String,
    },
}

/// Trigger specs, tried in order: 150 ms of `some` stall in 1 s needs CAP_SYS_RESOURCE
/// on most kernels; unprivileged users may only use 2 s multiples (Linux 6.5+, 6.1.42+).
const TRIGGERS: [&str; 2] = ["some 150000 1000000", "some 300000 2000000"];

/// procfs and cgroup2 `f_type`s: the only file systems whose pressure files take triggers.
use crate::procdir::PROC_SUPER_MAGIC;
const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;

/// Register a PSI trigger on `pressure` (a /proc/pressure/memory or memory.pressure path).
/// A file that is not on procfs or cgroup2 (a captured tree given with --proc-root or
/// --sys-root) is never written to: the guard samples it on the timer instead.
pub fn psi_trigger(pressure: &Path) -> Wakeup {
    match rustix::fs::statfs(pressure) {
        Ok(fs) if [PROC_SUPER_MAGIC, CGROUP2_SUPER_MAGIC].contains(&(fs.f_type as u64)) => {}
        Ok(_) => return Wakeup::Timer { why: format!("{} is not a kernel pressure file (a captured tree?)", pressure.display()) },
        Err(e) => return Wakeup::Timer { why: format!("{}: {e}", pressure.display()) },
    }
    let mut last = String::new();
    for spec in TRIGGERS {
        let attempt = OpenOptions::new().read(true).write(true).open(pressure).and_then(|mut f| {
            // The kernel overwrites the last byte written with NUL: send the terminator
            // ourselves or it eats the window's last digit (and says EINVAL).
            let mut bytes = [0u8; 32];
            bytes[..spec.len()].copy_from_slice(spec.as_bytes());
            f.write_all(&bytes[..=spec.len()])?;
            Ok(f)
        });
        match attempt {
            Ok(file) => return Wakeup::Trigger { file, spec },
            Err(e) => last = format!("{}: `{spec}`: {e}", pressure.display()),
        }
    }
    Wakeup::Timer { why: last }
}

/// The system-wide sampler.
#[derive(Debug)]
pub struct Sampler {
    start: Instant,
    pressure: Option<ProcFile>,
    meminfo: ProcFile,
    vmstat: ProcFile,
    /// Why PSI is unavailable, when it is.
    pub no_psi: Option<String>,
}

impl Sampler {
    /// Open the three files under `proc_root`. meminfo and vmstat are required; PSI is not.
    pub fn open(proc_root: &Path, start: Instant) -> Result<Sampler> {
        let open =
            |rel: &str| ProcFile::open(proc_root.join(rel)).with_context(|| format!("cannot read {}", proc_root.join(rel).display()));
        let meminfo = open("meminfo")?;
        let vmstat = open("vmstat")?;
        let (pressure, no_psi) = match ProcFile::open(proc_root.join("pressure/memory")) {
            // psi=0 on the command line: the file exists but reads fail with EOPNOTSUPP
            Ok(mut f) => match f.read().map(|b| thrashguard_core::parse::psi::parse("pressure/memory", b)) {
                Ok(Ok(_)) => (Some(f), None),
                Ok(Err(e)) => (None, Some(format!("{}: {e}", f.path().display()))),
                Err(e) => (None, Some(format!("{}: {e}", f.path().display()))),
            },
            Err(e) => (None, Some(format!("{}: {e}", proc_root.join("pressure/memory").display()))),
        };
        Ok(Sampler { start, pressure, meminfo, vmstat, no_psi })
    }

    /// Microseconds since the guard started (the policy's clock).
    pub fn now(&self) -> Micros {
        Micros(u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    /// Read and parse one sample. Allocates nothing.
    pub fn sample(&mut self) -> Result<Snapshot, SampleError> {
        let at = self.now();
        // A failed PSI read only costs this sample its stall numbers.
        let pressure_ok = self.pressure.as_mut().is_some_and(|p| p.read().is_ok());
        let pressure = self.pressure.as_ref().filter(|_| pressure_ok).map(ProcFile::last);
        self.meminfo.read().map_err(SampleError::Io)?;
        self.vmstat.read().map_err(SampleError::Io)?;
        Snapshot::parse(at, pressure, self.meminfo.last(), self.vmstat.last()).map_err(SampleError::Parse)
    }

    /// The raw texts of the last sample (for `record`): pressure, meminfo, vmstat.
    pub fn raw(&self) -> [(&'static str, Option<&[u8]>); 3] {
        [
            ("pressure/memory", self.pressure.as_ref().map(ProcFile::last)),
            ("meminfo", Some(self.meminfo.last())),
            ("vmstat", Some(self.vmstat.last())),
        ]
    }
}

/// A sample that could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    /// A read failed.
    #[error("read failed: {0}")]
    Io(io::Error),
    /// The kernel's text did not parse.
    #[error("{0}")]
    Parse(thrashguard_core::parse::ParseError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_grow_and_shrink() {
        let dir = std::env::temp_dir().join(format!("tg-sample-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp");
        let path = dir.join("f");
        std::fs::write(&path, b"abc\n").expect("write");
        let mut f = ProcFile::open(path.clone()).expect("open");
        assert_eq!(f.read().expect("read"), b"abc\n");
        std::fs::write(&path, b"a\n").expect("write");
        assert_eq!(f.read().expect("read"), b"a\n");
        std::fs::write(&path, vec![b'x'; 64 * 1024]).expect("write");
        assert_eq!(f.read().expect_err("too big").kind(), io::ErrorKind::OutOfMemory);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn samples_this_host() {
        let mut s = Sampler::open(Path::new("/proc"), Instant::now()).expect("open /proc");
        let snap = s.sample().expect("sample");
        assert!(snap.mem.mem_total.0 > 0);
    }
}
