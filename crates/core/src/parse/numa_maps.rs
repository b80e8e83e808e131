//! /proc/PID/numa_maps: how much of a process's memory sits on each NUMA node.
//!
//! Owns summing the `N<node>=<pages>` counts of every mapping, weighted by the mapping's
//! `kernelpagesize_kB`, into KiB on one node and in all. Used only at rescue time for the
//! few best candidates of a node scope (reading numa_maps walks page tables: costly).
//! Must never allocate or read a file.

use super::{numbered_lines, parse_u64, words};
use crate::units::Kib;

/// Memory of a process on one node, and on all nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeShare {
    /// KiB on the node asked about.
    pub on_node: Kib,
    /// KiB on every node.
    pub total: Kib,
}

impl NodeShare {
    /// The share on the node in permille (1000 when nothing is mapped: no evidence
    /// either way, so no weight).
    pub fn permille(&self) -> u16 {
        self.on_node.0.saturating_mul(1000).checked_div(self.total.0).map_or(1000, |p| p.min(1000) as u16)
    }
}

/// Sum a numa_maps text for `node`. Unparsable tokens are skipped: a garbled line costs
/// only its own pages.
pub fn node_share(buf: &[u8], node: u32) -> NodeShare {
    let mut share = NodeShare::default();
    for (_, line) in numbered_lines(buf) {
        let mut page_kib = 4u64;
        let (mut on, mut all) = (0u64, 0u64);
        for w in words(line) {
            if let Some(v) = w.strip_prefix(b"kernelpagesize_kB=") {
                page_kib = parse_u64(v).unwrap_or(4);
            } else if let Some(rest) = w.strip_prefix(b"N")
                && let Some(eq) = rest.iter().position(|&b| b == b'=')
                && let (Some(n), Some(pages)) = (parse_u64(&rest[..eq]), parse_u64(&rest[eq + 1..]))
            {
                all = all.saturating_add(pages);
                if n == u64::from(node) {
                    on = on.saturating_add(pages);
                }
            }
        }
        share.on_node = Kib(share.on_node.0.saturating_add(on.saturating_mul(page_kib)));
        share.total = Kib(share.total.0.saturating_add(all.saturating_mul(page_kib)));
    }
    share
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_pages_per_node_with_page_size() {
        let text = b"7f00 default anon=10 dirty=10 N0=4 N1=6 kernelpagesize_kB=4\n\
                     7f10 bind:1 anon=2 N1=2 kernelpagesize_kB=2048\n\
                     7f20 default file=/usr/lib/x.so mapped=3 N0=3 kernelpagesize_kB=4\n";
        let s = node_share(text, 1);
        assert_eq!(s.on_node, Kib(6 * 4 + 2 * 2048));
        assert_eq!(s.total, Kib(13 * 4 + 2 * 2048));
        assert_eq!(node_share(text, 0).on_node, Kib(7 * 4));
        assert_eq!(node_share(b"", 0).permille(), 1000);
        assert_eq!(node_share(b"7f00 default N0=x N1=2 kernelpagesize_kB=4\n", 1).permille(), 1000);
        assert_eq!(node_share(b"7f00 default N0=3 N1=1 kernelpagesize_kB=4\n", 1).permille(), 250);
    }
}
