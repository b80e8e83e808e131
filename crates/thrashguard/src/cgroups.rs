//! Memory cgroups as pressure scopes of their own.
//!
//! A memory cgroup at its limit thrashes while the machine has gigabytes free; the system
//! view sees nothing wrong (or worse, sees stalls and would blame the largest process
//! anywhere). Owns finding every memory cgroup with a limit (cgroup v2 `memory.max`, v1
//! `memory.limit_in_bytes`, wherever mountinfo says they are mounted, mapped under
//! `--sys-root`), reading each one's usage, limit, memory.stat, swap allowance and (v2)
//! memory.pressure through pre-opened files, and listing its member processes so a rescue
//! never touches a process outside the pressured cgroup. It must never decide or signal.

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, RawDir};
use thrashguard_core::parse::{cgroup, mountinfo, psi};
use thrashguard_core::policy::{Policy, PolicyConfig};
use thrashguard_core::snapshot::ScopeSample;
use thrashguard_core::units::{Kib, Micros};

use crate::procdir;
use crate::sample::{ProcFile, Wakeup, psi_trigger};

/// One watched memory cgroup.
#[derive(Debug)]
pub struct CgroupScope {
    /// Path inside its hierarchy, e.g. `/user.slice/app` (for logs).
    pub name: String,
    /// Directory in the file system.
    pub dir: PathBuf,
    /// cgroup v2.
    pub v2: bool,
    /// This scope's own policy state.
    pub policy: Policy,
    usage: ProcFile,
    limit: ProcFile,
    stat: ProcFile,
    pressure: Option<ProcFile>,
    swap_usage: Option<ProcFile>,
    swap_limit: Option<ProcFile>,
    /// cgroup v2: a PSI trigger on memory.pressure, polled with the system one so that
    /// a cgroup's first stalls wake the guard at once.
    trigger: Option<std::fs::File>,
}

/// Map a mount point from mountinfo (an absolute path on the real root) under `sys_root`.
pub fn under_sys_root(mount_point: &str, sys_root: &Path) -> PathBuf {
    match mount_point.strip_prefix("/sys/") {
        Some(rest) => sys_root.join(rest),
        None if mount_point == "/sys" => sys_root.to_path_buf(),
        None => PathBuf::from(mount_point),
    }
}

/// The cgroup2 mount (mapped under `sys_root`), from `proc_root`/self/mountinfo.
pub fn v2_mount(proc_root: &Path, sys_root: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(proc_root.join("self/mountinfo")).ok()?;
    mountinfo::memory_cgroup_mounts(&text).into_iter().find(|m| m.v2).map(|m| under_sys_root(&m.path, sys_root))
}

fn read_limit(f: &mut ProcFile, name: &'static str) -> Option<Kib> {
    f.read().ok().and_then(|b| cgroup::parse_limit(name, b).ok()).flatten()
}

impl CgroupScope {
    /// Open a cgroup directory as a scope; `None` when it has no memory limit below RAM
    /// or its files cannot be opened.
    ///
    /// `psi_dir` is where this cgroup's memory.pressure lives: the directory itself on v2;
    /// on v1, the cgroup of the same path in the unified hierarchy of a hybrid host (systemd
    /// creates both for every unit), or `None`.
    pub fn open(dir: &Path, name: String, v2: bool, psi_dir: Option<&Path>, mem_total: Kib, cfg: &PolicyConfig) -> Option<CgroupScope> {
        // Most cgroups have no limit: find out with one small read before opening anything.
        let limit_file = if v2 { "memory.max" } else { "memory.limit_in_bytes" };
        let limit = std::fs::read(dir.join(limit_file)).ok().and_then(|b| cgroup::parse_limit("memory limit", &b).ok()).flatten()?;
        if limit >= mem_total {
            return None;
        }
        let f = |n: &str| ProcFile::open(dir.join(n)).ok();
        let (usage, limit) =
            if v2 { (f("memory.current")?, f("memory.max")?) } else { (f("memory.usage_in_bytes")?, f("memory.limit_in_bytes")?) };
        let pressure = psi_dir.and_then(|d| ProcFile::open(d.join("memory.pressure")).ok());
        let trigger = match pressure.as_ref().and(psi_dir).map(|d| psi_trigger(&d.join("memory.pressure"))) {
            Some(Wakeup::Trigger { file, .. }) => Some(file),
            _ => None,
        };
        let mut policy = Policy::new(cfg.clone());
        // Cgroup thrash takes a whole sustain window to show: no need to pace by fill rate;
        // with a trigger armed the first stall wakes the guard, so calm checks can be rare.
        let calm_ms = if trigger.is_some() { cfg.max_interval_with_trigger_ms } else { cfg.max_interval_ms };
        policy.set_calm_interval(Some(Micros::from_millis(calm_ms)));
        policy.set_stall_wakeup(trigger.is_some());
        let mut scope = CgroupScope {
            name,
            dir: dir.to_path_buf(),
            v2,
            policy,
            usage,
            limit,
            stat: f("memory.stat")?,
            pressure,
            swap_usage: if v2 { f("memory.swap.current") } else { f("memory.memsw.usage_in_bytes") },
            swap_limit: if v2 { f("memory.swap.max") } else { f("memory.memsw.limit_in_bytes") },
            trigger,
        };
        let limit = read_limit(&mut scope.limit, "memory limit")?;
        (limit < mem_total).then_some(scope)
    }

    /// Read one sample. `global_swap` is (SwapTotal, SwapFree) of the machine. `None`
    /// when the cgroup vanished or lost its limit.
    pub fn sample(&mut self, at: Micros, global_swap: (Kib, Kib)) -> Option<ScopeSample> {
        let limit = read_limit(&mut self.limit, "memory limit")?;
        let usage = cgroup::parse_bytes("memory usage", self.usage.read().ok()?).ok()?;
        let stat = cgroup::parse_memory_stat("memory.stat", self.stat.read().ok()?).ok()?;
        let psi = self.pressure.as_mut().and_then(|p| p.read().ok()).and_then(|b| psi::parse("memory.pressure", b).ok());
        let swap_used = self.swap_usage.as_mut().and_then(|f| f.read().ok()).and_then(|b| cgroup::parse_bytes("swap usage", b).ok());
        let swap_limit = self.swap_limit.as_mut().and_then(|f| read_limit(f, "swap limit"));
        let (g_total, g_free) = global_swap;
        let swap = match (swap_limit, swap_used) {
            // v2: memory.swap.max / memory.swap.current are swap alone
            (Some(max), Some(used)) if self.v2 => {
                let allowance = max.min(g_total);
                (allowance, allowance.saturating_sub(used).min(g_free))
            }
            // v1: memsw counts memory + swap
            (Some(memsw_max), Some(memsw_used)) => {
                let allowance = memsw_max.saturating_sub(limit).min(g_total);
                let used = memsw_used.saturating_sub(usage);
                (allowance, allowance.saturating_sub(used).min(g_free))
            }
            _ => (g_total, g_free),
        };
        Some(ScopeSample::cgroup(at, psi, limit, usage, &stat, swap))
    }

    /// Whether this scope has PSI (memory.pressure), and whether a trigger is armed on it.
    pub fn psi(&self) -> (bool, bool) {
        (self.pressure.is_some(), self.trigger.is_some())
    }

    /// The armed PSI trigger on memory.pressure, if any (cgroup v2 with PSI).
    pub fn trigger(&self) -> Option<BorrowedFd<'_>> {
        self.trigger.as_ref().map(AsFd::as_fd)
    }

    /// Every process in this cgroup and its descendants (down to [`MAX_DEPTH`] levels),
    /// sorted, into `out` (cleared first; never grown past its capacity). Allocates nothing:
    /// directories are walked with getdents into `bufs`, and cgroup.procs is read in chunks.
    pub fn members(&self, bufs: &mut MemberBuffers, out: &mut Vec<u32>) {
        out.clear();
        if let Ok(dir) = rustix::fs::open(&self.dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()) {
            walk_members(dir.as_fd(), &mut bufs.dents, &mut bufs.procs, out);
        }
        out.sort_unstable();
        out.dedup();
    }
}

/// How deep below a scope's directory [`CgroupScope::members`] looks for processes.
pub const MAX_DEPTH: usize = 16;

/// Memory reserved for [`CgroupScope::members`]: a getdents buffer per level and one
/// chunk buffer for cgroup.procs.
#[derive(Debug)]
pub struct MemberBuffers {
    dents: Vec<Box<[MaybeUninit<u8>]>>,
    procs: Box<[u8]>,
}

impl Default for MemberBuffers {
    fn default() -> MemberBuffers {
        MemberBuffers {
            dents: (0..=MAX_DEPTH).map(|_| vec![MaybeUninit::uninit(); 4096].into_boxed_slice()).collect(),
            procs: vec![0u8; 8192].into_boxed_slice(),
        }
    }
}

/// Collect `dir`/cgroup.procs, then recurse into each child directory with the next level's
/// getdents buffer (each level keeps its own, so iteration survives the recursion).
fn walk_members(dir: BorrowedFd<'_>, dents: &mut [Box<[MaybeUninit<u8>]>], procs: &mut [u8], out: &mut Vec<u32>) {
    if let Ok(fd) = rustix::fs::openat(dir, c"cgroup.procs", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()) {
        procdir::for_each_line_chunk(fd.as_fd(), procs, |chunk| {
            for pid in cgroup::procs(chunk) {
                if out.len() < out.capacity() {
                    out.push(pid);
                }
            }
        });
    }
    let Some((mine, deeper)) = dents.split_first_mut() else { return };
    if deeper.is_empty() {
        return; // MAX_DEPTH reached
    }
    let mut entries = RawDir::new(dir, mine);
    while let Some(Ok(entry)) = entries.next() {
        let name = entry.file_name();
        if entry.file_type() != FileType::Directory || name == c"." || name == c".." {
            continue;
        }
        if let Ok(child) = rustix::fs::openat(dir, name, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()) {
            walk_members(child.as_fd(), deeper, procs, out);
        }
    }
}

/// Find every memory cgroup with a limit below `mem_total`, at most `max` of them.
/// Scopes in `known` whose directory still exists are kept as they are (open files and
/// policy state); only new cgroups are opened.
pub fn discover(
    proc_root: &Path,
    sys_root: &Path,
    mem_total: Kib,
    max: usize,
    cfg: &PolicyConfig,
    mut known: Vec<CgroupScope>,
) -> Vec<CgroupScope> {
    let mut scopes = Vec::new();
    let Ok(text) = std::fs::read_to_string(proc_root.join("self/mountinfo")) else { return scopes };
    let mounts = mountinfo::memory_cgroup_mounts(&text);
    let unified = mounts.iter().find(|m| m.v2).map(|m| under_sys_root(&m.path, sys_root));
    for mount in mounts {
        let root = under_sys_root(&mount.path, sys_root);
        // A v2 hierarchy without the memory controller enabled has no memory.* files.
        let mut stack = vec![(root.clone(), 0u32)];
        while let Some((dir, depth)) = stack.pop() {
            if scopes.len() >= max {
                return scopes;
            }
            if dir != root {
                if let Some(i) = known.iter().position(|k| k.dir == dir) {
                    scopes.push(known.swap_remove(i));
                } else {
                    let rel = dir.strip_prefix(&root).unwrap_or(&dir);
                    let name = format!("/{}", rel.display());
                    let psi_dir = if mount.v2 { Some(dir.clone()) } else { unified.as_ref().map(|u| u.join(rel)).filter(|d| d.is_dir()) };
                    if let Some(scope) = CgroupScope::open(&dir, name, mount.v2, psi_dir.as_deref(), mem_total, cfg) {
                        scopes.push(scope);
                    }
                }
            }
            if depth < 16
                && let Ok(rd) = std::fs::read_dir(&dir)
            {
                stack.extend(rd.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| (e.path(), depth + 1)));
            }
        }
    }
    scopes.sort_by(|a, b| a.dir.cmp(&b.dir));
    scopes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_v1(root: &Path, name: &str, limit: u64, usage: u64, procs: &str) -> PathBuf {
        let d = root.join(name);
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join("memory.limit_in_bytes"), format!("{limit}\n")).expect("w");
        std::fs::write(d.join("memory.usage_in_bytes"), format!("{usage}\n")).expect("w");
        std::fs::write(d.join("memory.stat"), "total_pgmajfault 5\ntotal_inactive_file 0\ntotal_active_file 0\n").expect("w");
        std::fs::write(d.join("cgroup.procs"), procs).expect("w");
        d
    }

    #[test]
    fn discovers_limited_v1_cgroups_under_sys_root() {
        let tmp = std::env::temp_dir().join(format!("tg-cg-{}", std::process::id()));
        let proc_root = tmp.join("proc");
        let sys_root = tmp.join("sys");
        std::fs::create_dir_all(proc_root.join("self")).expect("mkdir");
        std::fs::write(proc_root.join("self/mountinfo"), "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n")
            .expect("w");
        let mem = sys_root.join("fs/cgroup/memory");
        std::fs::create_dir_all(&mem).expect("mkdir");
        fake_v1(&mem, "limited", 512 << 20, 500 << 20, "10\n11\n");
        fake_v1(&mem, "limited/child", 9_223_372_036_854_771_712, 1 << 20, "12\n");
        fake_v1(&mem, "unlimited", 9_223_372_036_854_771_712, 1 << 20, "13\n");
        let scopes = discover(&proc_root, &sys_root, Kib(16 << 20), 64, &PolicyConfig::default(), Vec::new());
        assert_eq!(scopes.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), vec!["/limited"]);
        let mut members = Vec::with_capacity(16);
        scopes[0].members(&mut MemberBuffers::default(), &mut members);
        assert_eq!(members, vec![10, 11, 12]);
        let mut scope = scopes.into_iter().next().expect("scope");
        let s = scope.sample(Micros(0), (Kib(0), Kib(0))).expect("sample");
        assert_eq!(s.total, Kib(512 * 1024));
        assert_eq!(s.available, Kib(12 * 1024));
        assert_eq!(s.majfault, Some(5));
        // garbage in a file: no sample, no panic
        std::fs::write(mem.join("limited/memory.usage_in_bytes"), "lots\n").expect("w");
        assert!(scope.sample(Micros(1), (Kib(0), Kib(0))).is_none());
        std::fs::remove_dir_all(&tmp).expect("cleanup");
    }
}
