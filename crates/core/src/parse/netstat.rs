//! /proc/net/netstat and /proc/net/snmp: pairs of lines, a header naming the counters of a
//! group (`TcpExt: SyncookiesSent ... PFMemallocDrop ...`) and the values in the same order
//! (`TcpExt: 0 ... 3 ...`).
//!
//! Owns finding one counter by group and name without allocating. Counters a kernel does
//! not have are `None` (PFMemallocDrop appeared in 3.6), never an error. Must never read
//! the file itself.

use super::{ParseError, numbered_lines, parse_u64, words};

/// The value of counter `name` in group `group` (`"TcpExt"`, `"IpExt"`, `"MPTcpExt"`).
/// `Ok(None)` when the kernel has no such counter; an error when the group's value line
/// is missing or does not match its header.
pub fn counter(file: &'static str, buf: &[u8], group: &str, name: &str) -> Result<Option<u64>, ParseError> {
    let mut lines = numbered_lines(buf);
    while let Some((no, header)) = lines.next() {
        let mut hw = words(header);
        if hw.next().and_then(|g| g.strip_suffix(b":")) != Some(group.as_bytes()) {
            continue;
        }
        let Some(index) = hw.position(|w| w == name.as_bytes()) else {
            // Skip this group's value line too.
            lines.next();
            continue;
        };
        let Some((vno, values)) = lines.next() else { return Err(ParseError::new(file, no, "header without a value line")) };
        let mut vw = words(values);
        if vw.next().and_then(|g| g.strip_suffix(b":")) != Some(group.as_bytes()) {
            return Err(ParseError::new(file, vno, "value line of another group"));
        }
        let value = vw.nth(index).ok_or(ParseError::new(file, vno, "fewer values than names"))?;
        return parse_u64(value).map(Some).ok_or(ParseError::new(file, vno, "bad number"));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NETSTAT: &[u8] = b"TcpExt: SyncookiesSent PFMemallocDrop ListenDrops\nTcpExt: 1 7 3\nIpExt: InNoRoutes\nIpExt: 9\n";

    #[test]
    fn finds_a_counter_by_group_and_name() {
        assert_eq!(counter("net/netstat", NETSTAT, "TcpExt", "PFMemallocDrop"), Ok(Some(7)));
        assert_eq!(counter("net/netstat", NETSTAT, "IpExt", "InNoRoutes"), Ok(Some(9)));
        assert_eq!(counter("net/netstat", NETSTAT, "TcpExt", "NoSuch"), Ok(None));
        assert_eq!(counter("net/netstat", b"", "TcpExt", "PFMemallocDrop"), Ok(None));
    }

    #[test]
    fn mismatched_or_cut_lines_are_errors() {
        assert!(counter("net/netstat", b"TcpExt: A B\nTcpExt: 1\n", "TcpExt", "B").is_err());
        assert!(counter("net/netstat", b"TcpExt: A B\nIpExt: 1 2\n", "TcpExt", "B").is_err());
        assert!(counter("net/netstat", b"TcpExt: A B\nTcpExt: 1 x\n", "TcpExt", "B").is_err());
        // the value line cut short by a truncated read: its header is all there is
        assert!(counter("net/netstat", b"TcpExt: A B\nTcpExt: 1 2", "TcpExt", "B").is_err());
    }
}
