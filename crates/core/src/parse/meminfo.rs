//! /proc/meminfo and per-node /sys/devices/system/node/nodeN/meminfo field values.
//!
//! Owns the fields the policy and the victim scan need, in KiB. MemAvailable is absent
//! before Linux 3.14; [`Meminfo::available`] then estimates it the way the kernel does.
//! Must never allocate or read a file.

use super::{ParseError, numbered_lines, parse_u64, words};
use crate::units::Kib;

/// The /proc/meminfo fields thrashguard uses. Fields absent on a kernel are `None`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meminfo {
    /// MemTotal: usable RAM.
    pub mem_total: Kib,
    /// MemFree.
    pub mem_free: Kib,
    /// MemAvailable (3.14+): what can be allocated without swapping.
    pub mem_available: Option<Kib>,
    /// Buffers.
    pub buffers: Kib,
    /// Cached (page cache, including shmem).
    pub cached: Kib,
    /// SwapCached.
    pub swap_cached: Kib,
    /// Active(file).
    pub active_file: Option<Kib>,
    /// Inactive(file).
    pub inactive_file: Option<Kib>,
    /// AnonPages.
    pub anon_pages: Option<Kib>,
    /// Shmem (tmpfs, shared anonymous memory): not freed by reclaim without swap.
    pub shmem: Option<Kib>,
    /// SwapTotal (zero: no swap configured).
    pub swap_total: Kib,
    /// SwapFree.
    pub swap_free: Kib,
    /// Zswap (6.3+): RAM used by the compressed swap cache.
    pub zswap: Option<Kib>,
    /// SReclaimable.
    pub sreclaimable: Option<Kib>,
}

impl Meminfo {
    /// MemAvailable, or on kernels before 3.14 the kernel's own estimate from free memory
    /// and half of the file LRU and reclaimable slab.
    pub fn available(&self) -> Kib {
        self.mem_available.unwrap_or_else(|| {
            let file = self.active_file.unwrap_or_default().saturating_add(self.inactive_file.unwrap_or_default());
            let slab = self.sreclaimable.unwrap_or_default();
            Kib(self.mem_free.0 + file.0 / 2 + slab.0 / 2)
        })
    }

    /// Headroom: MemAvailable + SwapFree, what can still be used before the kernel OOMs.
    pub fn headroom(&self) -> Kib {
        self.available().saturating_add(self.swap_free)
    }
}

/// A per-node meminfo line reads `Node 1 MemFree:  123 kB`: drop the `Node 1 `.
fn strip_node_prefix(line: &[u8]) -> &[u8] {
    let Some(rest) = line.strip_prefix(b"Node ") else { return line };
    match rest.iter().position(|&b| b == b' ') {
        Some(sp) if rest[..sp].iter().all(u8::is_ascii_digit) => &rest[sp + 1..],
        _ => line,
    }
}

/// Parse /proc/meminfo or a node's /sys/devices/system/node/nodeN/meminfo (whose lines
/// start with `Node N `; it has no MemAvailable, so [`Meminfo::available`] estimates it).
/// `file` names it in errors.
pub fn parse(file: &'static str, buf: &[u8]) -> Result<Meminfo, ParseError> {
    let mut m = Meminfo::default();
    let mut seen_total = false;
    let mut seen_free = false;
    for (no, line) in numbered_lines(buf) {
        let line = strip_node_prefix(line);
        let colon = line.iter().position(|&b| b == b':').ok_or(ParseError::new(file, no, "expected `Name: value`"))?;
        let name = &line[..colon];
        let mut rest = words(&line[colon + 1..]);
        let value = rest.next().and_then(parse_u64).ok_or(ParseError::new(file, no, "bad number"))?;
        // Every size field is in kB; counts such as HugePages_Total have no unit.
        let v = Kib(value);
        match name {
            b"MemTotal" => {
                m.mem_total = v;
                seen_total = true;
            }
            b"MemFree" => {
                m.mem_free = v;
                seen_free = true;
            }
            b"MemAvailable" => m.mem_available = Some(v),
            b"Buffers" => m.buffers = v,
            b"Cached" => m.cached = v,
            b"SwapCached" => m.swap_cached = v,
            b"Active(file)" => m.active_file = Some(v),
            b"Inactive(file)" => m.inactive_file = Some(v),
            b"AnonPages" => m.anon_pages = Some(v),
            b"Shmem" => m.shmem = Some(v),
            b"SwapTotal" => m.swap_total = v,
            b"SwapFree" => m.swap_free = v,
            b"Zswap" => m.zswap = Some(v),
            b"SReclaimable" => m.sreclaimable = Some(v),
            _ => {}
        }
    }
    if !seen_total || !seen_free {
        return Err(ParseError::new(file, 0, "MemTotal or MemFree missing (truncated?)"));
    }
    if m.mem_total.0 == 0 {
        return Err(ParseError::new(file, 1, "MemTotal is zero"));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_kernel_estimate() {
        let m = parse(
            "meminfo",
            b"MemTotal: 1000 kB\nMemFree: 100 kB\nActive(file): 200 kB\nInactive(file): 200 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n",
        )
        .expect("valid");
        assert_eq!(m.mem_available, None);
        assert_eq!(m.available(), Kib(300));
    }

    #[test]
    fn node_meminfo() {
        let m = parse("node1/meminfo", b"Node 1 MemTotal:       1000 kB\nNode 1 MemFree:         100 kB\nNode 1 Active(file):    100 kB\nNode 1 Inactive(file):  100 kB\n").expect("valid");
        assert_eq!((m.mem_total, m.mem_free, m.mem_available), (Kib(1000), Kib(100), None));
        assert_eq!(m.available(), Kib(200));
        assert!(parse("node1/meminfo", b"Node x MemTotal: 1 kB\n").is_err());
    }

    #[test]
    fn garbled_and_truncated() {
        assert!(parse("meminfo", b"MemTotal: 1000 kB\nMemFree 100 kB\n").is_err());
        assert!(parse("meminfo", b"MemTotal: x kB\n").is_err());
        // cut inside the MemFree line: the partial line is dropped, MemFree is missing
        assert!(parse("meminfo", b"MemTotal: 1000 kB\nMemFree: 10").is_err());
        assert!(parse("meminfo", b"").is_err());
    }
}
