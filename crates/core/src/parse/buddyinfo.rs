//! /proc/buddyinfo: free blocks per order in each zone of each node.
//!
//! Owns parsing `Node 0, zone   Normal  250 366 166 ...` lines into [`Zone`]s (node, zone
//! name, free blocks of order 0, 1, 2 ...: a block of order n is 2^n pages). Used by
//! `doctor` (once per run, so it allocates a small vector per zone). Must never read a file.

use super::{ParseError, numbered_lines, parse_u64, words};

/// One zone's free lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    /// NUMA node.
    pub node: u32,
    /// `DMA`, `DMA32`, `Normal`, `Movable`...
    pub name: String,
    /// Free blocks of each order, order 0 first.
    pub free: Vec<u64>,
}

impl Zone {
    /// Free blocks of order `min_order` or higher.
    pub fn blocks_from(&self, min_order: usize) -> u64 {
        self.free.iter().skip(min_order).sum()
    }
}

/// Parse a /proc/buddyinfo text; a garbled or cut-short line is an error naming it.
pub fn parse(file: &'static str, buf: &[u8]) -> Result<Vec<Zone>, ParseError> {
    let mut zones = Vec::new();
    for (no, line) in numbered_lines(buf) {
        let bad = || ParseError::new(file, no, "expected `Node N, zone NAME count...`");
        let mut w = words(line);
        if w.next() != Some(b"Node".as_slice()) {
            return Err(bad());
        }
        let node = w.next().and_then(|n| n.strip_suffix(b",")).and_then(parse_u64).and_then(|n| u32::try_from(n).ok()).ok_or_else(bad)?;
        if w.next() != Some(b"zone".as_slice()) {
            return Err(bad());
        }
        let name = String::from_utf8_lossy(w.next().ok_or_else(bad)?).into_owned();
        let free = w.map(parse_u64).collect::<Option<Vec<u64>>>().ok_or(ParseError::new(file, no, "bad count"))?;
        if free.is_empty() {
            return Err(ParseError::new(file, no, "no counts"));
        }
        zones.push(Zone { node, name, free });
    }
    if zones.is_empty() {
        return Err(ParseError::new(file, 0, "no zones"));
    }
    Ok(zones)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_and_orders() {
        let z = parse(
            "buddyinfo",
            b"Node 0, zone      DMA      0      0      0      0      0      0      0      0      1      1      3 \n\
              Node 1, zone   Normal    250    366    166    232    145    138    160     81     49     29    102 \n",
        )
        .unwrap();
        assert_eq!(z.len(), 2);
        assert_eq!((z[1].node, z[1].name.as_str(), z[1].free.len()), (1, "Normal", 11));
        assert_eq!(z[1].blocks_from(3), 232 + 145 + 138 + 160 + 81 + 49 + 29 + 102);
    }

    #[test]
    fn garbled_and_truncated() {
        assert!(parse("buddyinfo", b"").is_err());
        assert!(parse("buddyinfo", b"Node 0 zone Normal 1 2\n").is_err());
        assert!(parse("buddyinfo", b"Node 0, zone Normal 1 x\n").is_err());
        assert!(parse("buddyinfo", b"Node 0, zone Normal\n").is_err());
        assert!(parse("buddyinfo", b"Node 0, zone Normal 1 2").is_err(), "the cut-short last line is dropped: no zones");
    }
}
