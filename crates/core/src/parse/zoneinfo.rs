//! /proc/zoneinfo: free pages and watermarks of each zone of each node.
//!
//! Owns parsing the `Node 0, zone   Normal` blocks into [`Zone`]s: `pages free`, the
//! `min`/`low`/`high` watermarks and `managed` (all in pages). Per-CPU `pagesets` lines
//! (`high:  2133`) and every other counter are skipped. Used by `doctor` (once per run, so
//! it allocates a small vector). Must never read a file.

use super::{ParseError, numbered_lines, parse_u64, words};

/// One zone's free pages and watermarks, in pages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Zone {
    /// NUMA node.
    pub node: u32,
    /// `DMA`, `DMA32`, `Normal`, `Movable`...
    pub name: String,
    /// `pages free`.
    pub free: u64,
    /// `min` watermark.
    pub min: u64,
    /// `low` watermark: below it kswapd is woken.
    pub low: u64,
    /// `high` watermark: kswapd reclaims up to it.
    pub high: u64,
    /// Pages the buddy allocator manages (0: an empty zone).
    pub managed: u64,
}

/// Parse a /proc/zoneinfo text. Every zone must give `pages free`, `min`, `low`, `high`
/// and `managed`; a zone without them (a cut-short read) or a garbled value is an error.
pub fn parse(file: &'static str, buf: &[u8]) -> Result<Vec<Zone>, ParseError> {
    let mut zones: Vec<Zone> = Vec::new();
    let mut seen = 0u8; // bits: free, min, low, high, managed of the current zone
    let complete = |seen: u8, no: usize| {
        if seen == 0b1_1111 { Ok(()) } else { Err(ParseError::new(file, no, "zone without free/min/low/high/managed")) }
    };
    for (no, line) in numbered_lines(buf) {
        let w: Vec<&[u8]> = words(line).collect();
        if w.first() == Some(&&b"Node"[..]) {
            // `Node 0, zone   Normal`
            let node = w.get(1).and_then(|n| n.strip_suffix(b",")).and_then(parse_u64).and_then(|n| u32::try_from(n).ok());
            let (Some(node), Some(b"zone"), Some(name)) = (node, w.get(2).copied(), w.get(3)) else {
                return Err(ParseError::new(file, no, "expected `Node N, zone NAME`"));
            };
            if !zones.is_empty() {
                complete(seen, no)?;
            }
            zones.push(Zone { node, name: String::from_utf8_lossy(name).into_owned(), ..Zone::default() });
            seen = 0;
            continue;
        }
        let Some(zone) = zones.last_mut() else { return Err(ParseError::new(file, no, "no `Node N, zone NAME` before it")) };
        let (field, value, bit) = match w[..] {
            [b"pages", b"free", v] => (&mut zone.free, v, 1),
            [b"min", v] => (&mut zone.min, v, 2),
            [b"low", v] => (&mut zone.low, v, 4),
            [b"high", v] => (&mut zone.high, v, 8),
            [b"managed", v] => (&mut zone.managed, v, 16),
            _ => continue,
        };
        *field = parse_u64(value).ok_or(ParseError::new(file, no, "bad number"))?;
        seen |= bit;
    }
    if zones.is_empty() {
        return Err(ParseError::new(file, 0, "no zones"));
    }
    complete(seen, 0)?;
    Ok(zones)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_file() {
        let z = parse("zoneinfo", include_bytes!("../../tests/fixtures/proc/6.18.44-host/zoneinfo")).unwrap();
        let names: Vec<&str> = z.iter().map(|z| z.name.as_str()).collect();
        assert_eq!(names, ["DMA", "DMA32", "Normal", "Movable", "Device"]);
        assert_eq!(z[2], Zone { node: 0, name: "Normal".into(), free: 162_686, min: 3413, low: 4266, high: 5119, managed: 196_608 });
        assert_eq!(z[0].high, 98, "the watermark, not a pageset's `high:`");
    }

    #[test]
    fn old_kernels_and_garbage() {
        // 3.x: no boost/promo lines, `scanned` between the watermarks and `spanned`
        let old = b"Node 0, zone   Normal\n  pages free     1000\n        min      10\n        low      12\n        high     15\n        scanned  0\n        spanned  2000\n        present  2000\n        managed  1900\n";
        assert_eq!(parse("zoneinfo", old).unwrap()[0].managed, 1900);
        assert!(parse("zoneinfo", b"").is_err());
        assert!(parse("zoneinfo", b"Node x, zone Normal\n").is_err());
        assert!(parse("zoneinfo", b"  pages free 10\n").is_err(), "no zone header");
        assert!(parse("zoneinfo", b"Node 0, zone Normal\n  pages free lots\n").is_err());
        assert!(parse("zoneinfo", b"Node 0, zone Normal\n  pages free 10\n        min 1\n").is_err(), "cut short");
        let two = [&old[..], &b"Node 1, zone   Normal\n  pages free 5\n"[..]].concat();
        assert!(parse("zoneinfo", &two).is_err(), "the last zone cut short");
    }
}
