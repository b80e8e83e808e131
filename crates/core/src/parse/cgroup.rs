//! Memory-cgroup files: cgroup v2 `memory.max`/`memory.current`/`memory.stat` and
//! cgroup v1 `memory.limit_in_bytes`/`memory.usage_in_bytes`/`memory.failcnt`/`memory.stat`.
//!
//! Owns the scope signals for cgroup-local pressure (a cgroup at its limit thrashes while
//! the machine has gigabytes free). Must never allocate or read a file.

use super::{ParseError, counter_lines, parse_u64, trim};
use crate::units::Kib;

/// A cgroup memory limit: a number of bytes, or none (`max` in v2, a huge number in v1).
pub fn parse_limit(file: &'static str, buf: &[u8]) -> Result<Option<Kib>, ParseError> {
    let t = trim(buf);
    if t == b"max" {
        return Ok(None);
    }
    let bytes = parse_u64(t).ok_or(ParseError::new(file, 1, "expected a byte count or `max`"))?;
    // cgroup v1 reports "no limit" as PAGE_COUNTER_MAX pages, about 2^63 bytes.
    if bytes >= 1 << 62 { Ok(None) } else { Ok(Some(Kib(bytes / 1024))) }
}

/// A counter file holding one number of bytes (memory.current, memory.usage_in_bytes).
pub fn parse_bytes(file: &'static str, buf: &[u8]) -> Result<Kib, ParseError> {
    parse_u64(trim(buf)).map(|b| Kib(b / 1024)).ok_or(ParseError::new(file, 1, "expected a byte count"))
}

/// The memory.stat counters a scope's policy uses, from either cgroup version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupMemStat {
    /// Major faults of the members (v2 `pgmajfault`, v1 `total_pgmajfault`).
    pub pgmajfault: Option<u64>,
    /// v2 `workingset_refault_anon` (v1: `total_workingset_refault_anon` where present).
    pub workingset_refault_anon: Option<u64>,
    /// v2 `workingset_refault_file`.
    pub workingset_refault_file: Option<u64>,
    /// Swapped-out memory of the members (v1 `total_swap`; v2 reads memory.swap.current).
    pub swap: Option<Kib>,
    /// File pages on the active LRU (v1 `total_active_file`, v2 `active_file`).
    pub active_file: Option<Kib>,
    /// File pages on the inactive LRU (v1 `total_inactive_file`, v2 `inactive_file`).
    pub inactive_file: Option<Kib>,
}

impl CgroupMemStat {
    /// Page cache the kernel can reclaim without swapping, estimated as the kernel's
    /// MemAvailable does: half of the file LRU.
    pub fn reclaimable_file(&self) -> Kib {
        Kib((self.active_file.unwrap_or_default().0 + self.inactive_file.unwrap_or_default().0) / 2)
    }
}

/// Parse a memory.stat of either version. v1 lists local and `total_` (hierarchical)
/// values; the hierarchical ones win.
pub fn parse_memory_stat(file: &'static str, buf: &[u8]) -> Result<CgroupMemStat, ParseError> {
    let mut s = CgroupMemStat::default();
    let mut any = false;
    for counter in counter_lines(file, buf) {
        let (name, value) = counter?;
        any = true;
        let (name, total) = match name.strip_prefix(b"total_") {
            Some(n) => (n, true),
            None => (name, false),
        };
        let kib_slot = match name {
            b"swap" => Some(&mut s.swap),
            b"active_file" => Some(&mut s.active_file),
            b"inactive_file" => Some(&mut s.inactive_file),
            _ => None,
        };
        if let Some(slot) = kib_slot {
            if total || slot.is_none() {
                *slot = Some(Kib(value / 1024));
            }
            continue;
        }
        let slot = match name {
            b"pgmajfault" => &mut s.pgmajfault,
            b"workingset_refault_anon" => &mut s.workingset_refault_anon,
            b"workingset_refault_file" | b"workingset_refault" => &mut s.workingset_refault_file,
            _ => continue,
        };
        if total || slot.is_none() {
            *slot = Some(value);
        }
    }
    if !any {
        return Err(ParseError::new(file, 0, "no counters (empty or truncated)"));
    }
    Ok(s)
}

/// The pids in (whole lines of) a `cgroup.procs` file, one per line; lines that are not a
/// pid, and a cut-short last line, are skipped.
pub fn procs(buf: &[u8]) -> impl Iterator<Item = u32> + '_ {
    super::numbered_lines(buf).filter_map(|(_, l)| super::parse_u64(l)).filter_map(|p| u32::try_from(p).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn procs_lists_whole_lines_only() {
        assert_eq!(procs(b"1\n22\n333\n").collect::<Vec<_>>(), vec![1, 22, 333]);
        assert_eq!(procs(b"1\nx\n4294967296\n5\n6").collect::<Vec<_>>(), vec![1, 5]);
        assert_eq!(procs(b"").count(), 0);
    }

    #[test]
    fn limits() {
        assert_eq!(parse_limit("memory.max", b"max\n"), Ok(None));
        assert_eq!(parse_limit("memory.max", b"536870912\n"), Ok(Some(Kib(524288))));
        assert_eq!(parse_limit("memory.limit_in_bytes", b"9223372036854771712\n"), Ok(None));
        assert!(parse_limit("memory.max", b"lots\n").is_err());
    }

    #[test]
    fn v1_total_wins() {
        let s = parse_memory_stat("memory.stat", b"pgmajfault 3\nswap 4096\ntotal_pgmajfault 10\ntotal_swap 8192\n").expect("valid");
        assert_eq!(s.pgmajfault, Some(10));
        assert_eq!(s.swap, Some(Kib(8)));
        let s = parse_memory_stat("memory.stat", b"active_file 2097152\ninactive_file 2097152\npgmajfault 1\n").expect("v2");
        assert_eq!(s.reclaimable_file(), Kib(2048));
        assert!(parse_memory_stat("memory.stat", b"").is_err());
    }
}
