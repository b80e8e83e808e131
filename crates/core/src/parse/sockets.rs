//! /proc/net/{tcp,tcp6,udp,udp6}: one line per socket, hexadecimal fields.
//!
//! Owns turning each socket line into a [`SocketLine`] (local address and port, state,
//! queues, owner, inode, drops) without allocating. For a listening TCP socket the kernel
//! prints its accept queue as `rx_queue` (its backlog limit is not in this file: only
//! sock_diag reports it); for UDP, `drops` counts datagrams the socket's full receive queue
//! refused. Must never read the file itself.

use super::{ParseError, numbered_lines, words};

/// TCP_LISTEN in the `st` column.
pub const TCP_LISTEN: u8 = 0x0A;
/// TCP_CLOSE in the `st` column: what an unconnected (bound, listening) UDP socket shows.
pub const UDP_UNCONNECTED: u8 = 0x07;

/// One socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketLine {
    /// Local address as printed: 4 bytes (IPv4) or 16 (IPv6), in the kernel's word order.
    pub local_addr: [u8; 16],
    /// Whether the address is IPv6.
    pub v6: bool,
    /// Local port.
    pub local_port: u16,
    /// Socket state (`st`).
    pub state: u8,
    /// `tx_queue` (0 for a listening TCP socket).
    pub tx_queue: u32,
    /// `rx_queue` (a listening TCP socket: connections waiting in accept).
    pub rx_queue: u32,
    /// Owner uid.
    pub uid: u32,
    /// Socket inode (matches `socket:[INODE]` links under /proc/PID/fd).
    pub inode: u64,
    /// UDP: datagrams dropped (last column); `None` for TCP.
    pub drops: Option<u64>,
}

impl SocketLine {
    /// Bound to every address (0.0.0.0 or ::).
    pub fn any_address(&self) -> bool {
        let n = if self.v6 { 16 } else { 4 };
        self.local_addr[..n].iter().all(|&b| b == 0)
    }
}

fn hex_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| Some(n << 4 | u64::from((b as char).to_digit(16)?)))
}

/// Every socket line of the file (the header line skipped), each parsed or an error naming
/// its line.
pub fn entries(file: &'static str, buf: &[u8]) -> impl Iterator<Item = Result<SocketLine, ParseError>> {
    numbered_lines(buf).filter(|(no, _)| *no > 1).map(move |(no, line)| parse_line(file, no, line))
}

fn parse_line(file: &'static str, no: usize, line: &[u8]) -> Result<SocketLine, ParseError> {
    let err = |what| ParseError::new(file, no, what);
    let mut w = words(line);
    let _slot = w.next().filter(|s| s.ends_with(b":")).ok_or(err("expected `N:` slot"))?;
    let local = w.next().ok_or(err("no local address"))?;
    let _remote = w.next().ok_or(err("no remote address"))?;
    let state = w.next().and_then(hex_u64).and_then(|s| u8::try_from(s).ok()).ok_or(err("bad state"))?;
    let queues = w.next().ok_or(err("no queues"))?;
    let (tx, rx) = split_colon(queues).ok_or(err("bad tx_queue:rx_queue"))?;
    let _timer = w.next().ok_or(err("no timer"))?;
    let _retr = w.next().ok_or(err("no retransmits"))?;
    let uid = w.next().and_then(super::parse_u64).and_then(|u| u32::try_from(u).ok()).ok_or(err("bad uid"))?;
    let _timeout = w.next().ok_or(err("no timeout"))?;
    let inode = w.next().and_then(super::parse_u64).ok_or(err("bad inode"))?;
    let colon = local.iter().position(|&b| b == b':').ok_or(err("bad local address"))?;
    let (addr_hex, port) = (&local[..colon], hex_u64(&local[colon + 1..]).and_then(|p| u16::try_from(p).ok()).ok_or(err("bad port"))?);
    let v6 = match addr_hex.len() {
        8 => false,
        32 => true,
        _ => return Err(err("bad local address")),
    };
    let mut local_addr = [0u8; 16];
    for (i, pair) in addr_hex.chunks(2).enumerate() {
        local_addr[i] = hex_u64(pair).and_then(|b| u8::try_from(b).ok()).ok_or(err("bad local address"))?;
    }
    // UDP lines end in `ref pointer drops`; TCP lines carry timer details instead.
    let rest: [Option<&[u8]>; 4] = [w.next(), w.next(), w.next(), w.next()];
    let drops = if file.starts_with("net/udp") { rest[2].and_then(super::parse_u64) } else { None };
    Ok(SocketLine {
        local_addr,
        v6,
        local_port: port,
        state,
        tx_queue: u32::try_from(tx).map_err(|_| err("bad tx_queue"))?,
        rx_queue: u32::try_from(rx).map_err(|_| err("bad rx_queue"))?,
        uid,
        inode,
        drops,
    })
}

/// `HEX:HEX` as two numbers.
fn split_colon(s: &[u8]) -> Option<(u64, u64)> {
    let colon = s.iter().position(|&b| b == b':')?;
    Some((hex_u64(&s[..colon])?, hex_u64(&s[colon + 1..])?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const UDP: &[u8] =
        b"   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
  123: 00000000:1CF3 00000000:0000 07 00000000:00000200 00:00000000 00000000     0        0 4242 2 0000000000000000 17\n\
  124: 0100007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 99 2 0000000000000000 0\n";

    #[test]
    fn udp_lines() {
        let v: Vec<_> = entries("net/udp", UDP).collect::<Result<_, _>>().unwrap_or_default();
        assert_eq!(v.len(), 2);
        assert_eq!((v[0].local_port, v[0].state, v[0].rx_queue, v[0].inode, v[0].drops), (7411, UDP_UNCONNECTED, 0x200, 4242, Some(17)));
        assert!(v[0].any_address() && !v[0].v6);
        assert_eq!((v[1].local_port, v[1].uid, v[1].any_address()), (53, 101, false));
    }

    #[test]
    fn tcp_listen_line_has_its_accept_queue_and_no_drops() {
        let tcp = b"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000:07E8 00000000:0000 0A 00000000:00000003 00:00000000 00000000     0        0 235 1 000000006df7ddea 100 0 0 10 0\n";
        let s = entries("net/tcp", tcp).next().and_then(Result::ok).unwrap_or_default();
        assert_eq!((s.local_port, s.state, s.tx_queue, s.rx_queue, s.drops), (2024, TCP_LISTEN, 0, 3, None));
    }

    #[test]
    fn garbled_lines_are_errors_not_panics() {
        for bad in
            [&b"h\n  1: zz:1 0:0 07 0:0 0:0 0 0 0 1 2 0 0\n"[..], b"h\n  1: 00000000:1CF3\n", b"h\n  1: 0000:1CF3 0:0 07 0:0 0:0 0 0 0 1\n"]
        {
            assert!(entries("net/udp", bad).all(|r| r.is_err()), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
