//! /proc/buddyinfo: free blocks per order, per zone, the evidence of fragmentation.
//!
//! Owns parsing `Node 0, zone   Normal    250    366 ...` lines (column k = free blocks of
//! 2^k pages). Kept minimal; doctor calls it once (it allocates). Must never read the file.

use super::{ParseError, numbered_lines, parse_u64, words};

/// One zone's line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuddyZone {
    /// NUMA node.
    pub node: u32,
    /// Zone name (`DMA`, `DMA32`, `Normal`, `Movable`).
    pub zone: String,
    /// Free blocks of order 0, 1, 2, ...
    pub free: Vec<u64>,
}

impl BuddyZone {
    /// Free blocks of order `order` or higher (each big enough for an order-`order` request).
    pub fn free_at_or_above(&self, order: u32) -> u64 {
        self.free.iter().skip(order as usize).fold(0u64, |a, &b| a.saturating_add(b))
    }
}

/// Every zone of a /proc/buddyinfo text.
pub fn parse(file: &'static str, buf: &[u8]) -> Result<Vec<BuddyZone>, ParseError> {
    let mut out = Vec::new();
    for (no, line) in numbered_lines(buf) {
        let mut w = words(line);
        let (Some(b"Node"), Some(node), Some(b"zone"), Some(zone)) = (w.next(), w.next(), w.next(), w.next()) else {
            return Err(ParseError::new(file, no, "expected `Node N, zone NAME counts...`"));
        };
        let node = node.strip_suffix(b",").and_then(parse_u64).and_then(|n| u32::try_from(n).ok()).ok_or(ParseError::new(
            file,
            no,
            "bad node number",
        ))?;
        let free = w.map(parse_u64).collect::<Option<Vec<u64>>>().ok_or(ParseError::new(file, no, "bad count"))?;
        if free.is_empty() {
            return Err(ParseError::new(file, no, "no counts"));
        }
        out.push(BuddyZone { node, zone: String::from_utf8_lossy(zone).into_owned(), free });
    }
    if out.is_empty() {
        return Err(ParseError::new(file, 0, "no zones"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_capture() {
        let z = parse("buddyinfo", include_bytes!("../../tests/fixtures/proc/6.18.44-host/buddyinfo")).unwrap();
        assert_eq!(z.len(), 3);
        assert_eq!(z[2].zone, "Normal");
        assert_eq!(z[2].free.len(), 11);
        assert_eq!(z[2].free[0], 250);
        assert_eq!(z[2].free_at_or_above(10), 102);
        assert_eq!(z[2].free_at_or_above(11), 0);
    }

    #[test]
    fn garbled() {
        assert!(parse("buddyinfo", b"").is_err());
        assert!(parse("buddyinfo", b"Node 0, zone Normal\n").is_err());
        assert!(parse("buddyinfo", b"Node x, zone Normal 1 2\n").is_err());
        assert!(parse("buddyinfo", b"Node 0, zone Normal 1 -2\n").is_err());
        assert!(parse("buddyinfo", b"hello\n").is_err());
    }
}
