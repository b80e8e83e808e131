//! The policy's only input: one sample of a pressure scope, parsed from kernel text.
//!
//! Owns [`Snapshot`] (the system files as read at one instant) and [`ScopeSample`] (the
//! scope-neutral numbers the policy decides on: the whole machine, or one memory cgroup).
//! Must never read anything itself: bytes and the time of reading are handed in.

use crate::parse::{self, Meminfo, ParseError, Psi, Vmstat, cgroup::CgroupMemStat};
use crate::units::{Kib, Micros};

/// The system-wide pressure files as read at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// When it was read: microseconds since the guard (or trace) started.
    pub at: Micros,
    /// /proc/pressure/memory; `None` when the kernel has no PSI or the read failed.
    pub psi: Option<Psi>,
    /// /proc/meminfo.
    pub mem: Meminfo,
    /// /proc/vmstat.
    pub vm: Vmstat,
}

impl Snapshot {
    /// Parse the three system files. meminfo and vmstat are required; a missing or
    /// unparsable pressure file only means "no PSI in this sample".
    pub fn parse(at: Micros, pressure: Option<&[u8]>, meminfo: &[u8], vmstat: &[u8]) -> Result<Snapshot, ParseError> {
        Ok(Snapshot {
            at,
            psi: pressure.and_then(|p| parse::psi::parse("pressure/memory", p).ok()),
            mem: parse::meminfo::parse("meminfo", meminfo)?,
            vm: parse::vmstat::parse("vmstat", vmstat)?,
        })
    }

    /// The scope-neutral view the policy decides on.
    pub fn scope_sample(&self) -> ScopeSample {
        ScopeSample {
            at: self.at,
            stall: self.psi.map(StallTotals::from),
            total: self.mem.mem_total,
            available: self.mem.available(),
            swap_total: self.mem.swap_total,
            swap_free: self.mem.swap_free,
            refault_anon: self.vm.workingset_refault_anon,
            refault_file: self.vm.workingset_refault_file,
            swapin: self.vm.pswpin,
            majfault: self.vm.pgmajfault,
        }
    }
}

/// Cumulative stall time of a scope (PSI `total=`), in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StallTotals {
    /// `some` total.
    pub some: Micros,
    /// `full` total (zero where the kernel reports no full line).
    pub full: Micros,
}

impl From<Psi> for StallTotals {
    fn from(p: Psi) -> StallTotals {
        StallTotals { some: p.some.total, full: p.full.map(|f| f.total).unwrap_or_default() }
    }
}

/// One sample of one pressure scope: the machine, or a memory cgroup. Counters are
/// cumulative; the policy turns them into rates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScopeSample {
    /// When it was read.
    pub at: Micros,
    /// PSI totals; `None` without PSI (no CONFIG_PSI, psi=0, cgroup v1).
    pub stall: Option<StallTotals>,
    /// Memory the scope may use: MemTotal, or the cgroup's limit.
    pub total: Kib,
    /// What can still be allocated without reclaiming hard: MemAvailable, or limit - usage.
    pub available: Kib,
    /// Swap the scope may use.
    pub swap_total: Kib,
    /// Of which free.
    pub swap_free: Kib,
    /// Anonymous workingset refaults (pages), cumulative.
    pub refault_anon: Option<u64>,
    /// File workingset refaults (pages), cumulative.
    pub refault_file: Option<u64>,
    /// Pages swapped in, cumulative.
    pub swapin: Option<u64>,
    /// Major faults, cumulative.
    pub majfault: Option<u64>,
}

impl ScopeSample {
    /// Headroom: available memory plus free swap.
    pub fn headroom(&self) -> Kib {
        self.available.saturating_add(self.swap_free)
    }

    /// A memory cgroup scope. `limit` is memory.max (v2) or memory.limit_in_bytes (v1);
    /// a cgroup without a limit has nothing local to thrash against and is not a scope.
    /// `usage` includes page cache, so half of the file LRU counts as available, as in
    /// MemAvailable. `swap` is (allowance, free): what the cgroup may still swap.
    pub fn cgroup(at: Micros, psi: Option<Psi>, limit: Kib, usage: Kib, stat: &CgroupMemStat, swap: (Kib, Kib)) -> ScopeSample {
        ScopeSample {
            at,
            stall: psi.map(StallTotals::from),
            total: limit,
            available: limit.saturating_sub(usage).saturating_add(stat.reclaimable_file()).min(limit),
            swap_total: swap.0,
            swap_free: swap.1,
            refault_anon: stat.workingset_refault_anon,
            refault_file: stat.workingset_refault_file,
            swapin: None,
            majfault: stat.pgmajfault,
        }
    }

    /// A NUMA node scope: the node's own memory (its meminfo has no MemAvailable; the
    /// kernel's estimate is used), the machine's PSI (there is none per node) and swap, and
    /// the node's own workingset refaults from its vmstat.
    pub fn node(at: Micros, system: &Snapshot, node_mem: &Meminfo, node_vm: &Vmstat) -> ScopeSample {
        ScopeSample {
            at,
            stall: system.psi.map(StallTotals::from),
            total: node_mem.mem_total,
            available: node_mem.available(),
            swap_total: system.mem.swap_total,
            swap_free: system.mem.swap_free,
            refault_anon: node_vm.workingset_refault_anon,
            refault_file: node_vm.workingset_refault_file,
            swapin: None,
            majfault: None,
        }
    }
}
