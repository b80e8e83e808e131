//! The lifeline datagram, byte for byte (docs/lifeline.md has the table).
//!
//! Owns the layout: a fixed 58-byte header, a short body, and the authenticator over every
//! byte before it. [`parse`] checks sizes and fields before anything else looks at a
//! datagram (no crypto, no allocation, no panic on any input: a property test and a fuzz
//! target feed it arbitrary bytes); [`encode`] writes one into a caller's buffer. It must
//! never decide whether a datagram is authentic or fresh: that is [`super::gate`].

use super::Reject;

/// First bytes of every lifeline datagram.
pub const MAGIC: [u8; 4] = *b"TGLL";
/// The wire version this build speaks.
pub const VERSION: u8 = 1;
/// Bytes before the body.
pub const HEADER_LEN: usize = 58;
/// Longest request body (kill: pid + start time).
pub const MAX_REQUEST_BODY: usize = 16;
/// Longest reply body (status JSON); a reply datagram stays under 1280 bytes.
pub const MAX_REPLY_BODY: usize = 1100;
/// Largest datagram of either kind.
pub const MAX_DATAGRAM: usize = HEADER_LEN + MAX_REPLY_BODY + 64;
/// Largest request datagram: anything longer is refused before any other check.
pub const MAX_REQUEST: usize = HEADER_LEN + MAX_REQUEST_BODY + 64;

/// Request or reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Client to daemon.
    Request = 1,
    /// Daemon to client, bound to the request by its nonce.
    Reply = 2,
}

/// How the datagram is authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Ed25519 signature (64 bytes): the daemon holds only public keys.
    Ed25519 = 1,
    /// HMAC-SHA256 (32 bytes) with a shared secret.
    HmacSha256 = 2,
}

impl Scheme {
    /// Length of the authenticator.
    pub fn tag_len(self) -> usize {
        match self {
            Scheme::Ed25519 => 64,
            Scheme::HmacSha256 => 32,
        }
    }

    fn from_u8(b: u8) -> Option<Scheme> {
        match b {
            1 => Some(Scheme::Ed25519),
            2 => Some(Scheme::HmacSha256),
            _ => None,
        }
    }
}

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Pressure, headroom, top processes, the last action.
    Status,
    /// The guard's own victim choice and action, now.
    Rescue,
    /// SIGKILL one process; with a start time, only if it is still that process.
    Kill {
        /// Target pid.
        pid: u32,
        /// Start time (clock ticks since boot, /proc/PID/stat field 22) it must have.
        start_time: Option<u64>,
    },
    /// SIGSTOP one process.
    Freeze {
        /// Target pid.
        pid: u32,
        /// As for [`Action::Kill`].
        start_time: Option<u64>,
    },
    /// SIGCONT one process.
    Thaw {
        /// Target pid.
        pid: u32,
    },
    /// Write one letter to /proc/sysrq-trigger (only for keys allowed that letter).
    Sysrq(u8),
}

impl Action {
    /// The action's code on the wire.
    pub fn code(self) -> u8 {
        match self {
            Action::Status => 1,
            Action::Rescue => 2,
            Action::Kill { .. } => 3,
            Action::Freeze { .. } => 4,
            Action::Thaw { .. } => 5,
            Action::Sysrq(_) => 6,
        }
    }

    /// Stable name (logs, JSON, the client's command line).
    pub fn name(self) -> &'static str {
        match self {
            Action::Status => "status",
            Action::Rescue => "rescue",
            Action::Kill { .. } => "kill",
            Action::Freeze { .. } => "freeze",
            Action::Thaw { .. } => "thaw",
            Action::Sysrq(_) => "sysrq",
        }
    }

    /// Write the body; returns its length.
    pub fn encode_body(self, out: &mut [u8; MAX_REQUEST_BODY]) -> usize {
        let pid_and = |out: &mut [u8; MAX_REQUEST_BODY], pid: u32, start: Option<u64>| {
            out[..4].copy_from_slice(&pid.to_be_bytes());
            match start {
                Some(s) => {
                    out[4..12].copy_from_slice(&s.to_be_bytes());
                    12
                }
                None => 4,
            }
        };
        match self {
            Action::Status | Action::Rescue => 0,
            Action::Kill { pid, start_time } | Action::Freeze { pid, start_time } => pid_and(out, pid, start_time),
            Action::Thaw { pid } => pid_and(out, pid, None),
            Action::Sysrq(letter) => {
                out[0] = letter;
                1
            }
        }
    }

    /// Decode a request's action from its code and body.
    pub fn decode(code: u8, body: &[u8]) -> Result<Action, Reject> {
        let pid = |b: &[u8]| -> Result<(u32, Option<u64>), Reject> {
            match b.len() {
                4 | 12 => {
                    let pid = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                    let start = (b.len() == 12).then(|| u64::from_be_bytes([b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11]]));
                    if pid == 0 { Err(Reject::Format) } else { Ok((pid, start)) }
                }
                _ => Err(Reject::Format),
            }
        };
        match (code, body.len()) {
            (1, 0) => Ok(Action::Status),
            (2, 0) => Ok(Action::Rescue),
            (3, _) => pid(body).map(|(pid, start_time)| Action::Kill { pid, start_time }),
            (4, _) => pid(body).map(|(pid, start_time)| Action::Freeze { pid, start_time }),
            (5, 4) => pid(body).map(|(pid, _)| Action::Thaw { pid }),
            (6, 1) if body[0].is_ascii_alphanumeric() => Ok(Action::Sysrq(body[0])),
            _ => Err(Reject::Format),
        }
    }
}

/// The fixed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Request or reply.
    pub kind: Kind,
    /// How it is authenticated.
    pub scheme: Scheme,
    /// [`Action::code`] (a reply echoes the request's).
    pub action: u8,
    /// Which key signed it.
    pub key_id: [u8; 8],
    /// The host it is meant for ([`super::keys::host_id`] of its name).
    pub host_id: [u8; 16],
    /// Sender's wall clock, Unix milliseconds.
    pub timestamp_ms: u64,
    /// Random per request; a reply carries its request's.
    pub nonce: [u8; 16],
}

/// A datagram whose sizes and fields check out (not yet authenticated).
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// The header.
    pub header: Header,
    /// The body.
    pub body: &'a [u8],
    /// Every byte the authenticator covers (header and body).
    pub signed: &'a [u8],
    /// The authenticator.
    pub tag: &'a [u8],
}

/// Check a datagram's size and fields. `max` is the largest datagram accepted
/// ([`MAX_REQUEST`] on the daemon, [`MAX_DATAGRAM`] on the client).
pub fn parse(buf: &[u8], max: usize) -> Result<Frame<'_>, Reject> {
    if buf.len() < HEADER_LEN + 32 || buf.len() > max {
        return Err(Reject::Size);
    }
    if buf[..4] != MAGIC || buf[4] != VERSION {
        return Err(Reject::Format);
    }
    let kind = match buf[5] {
        1 => Kind::Request,
        2 => Kind::Reply,
        _ => return Err(Reject::Format),
    };
    let scheme = Scheme::from_u8(buf[6]).ok_or(Reject::Format)?;
    let body_len = usize::from(u16::from_be_bytes([buf[56], buf[57]]));
    let body_max = if kind == Kind::Request { MAX_REQUEST_BODY } else { MAX_REPLY_BODY };
    if body_len > body_max || HEADER_LEN + body_len + scheme.tag_len() != buf.len() {
        return Err(Reject::Size);
    }
    let arr = |from: usize, to: usize| &buf[from..to];
    let mut key_id = [0u8; 8];
    key_id.copy_from_slice(arr(8, 16));
    let mut host_id = [0u8; 16];
    host_id.copy_from_slice(arr(16, 32));
    let mut ts = [0u8; 8];
    ts.copy_from_slice(arr(32, 40));
    let mut nonce = [0u8; 16];
    nonce.copy_from_slice(arr(40, 56));
    let signed_len = HEADER_LEN + body_len;
    Ok(Frame {
        header: Header { kind, scheme, action: buf[7], key_id, host_id, timestamp_ms: u64::from_be_bytes(ts), nonce },
        body: &buf[HEADER_LEN..signed_len],
        signed: &buf[..signed_len],
        tag: &buf[signed_len..],
    })
}

/// Write header and body into `out`; returns the length written (the authenticator goes
/// right after it). `None` when `out` is too small or the body too long for the kind.
pub fn encode(h: &Header, body: &[u8], out: &mut [u8]) -> Option<usize> {
    let body_max = if h.kind == Kind::Request { MAX_REQUEST_BODY } else { MAX_REPLY_BODY };
    let n = HEADER_LEN + body.len();
    if body.len() > body_max || out.len() < n + h.scheme.tag_len() {
        return None;
    }
    out[..4].copy_from_slice(&MAGIC);
    out[4] = VERSION;
    out[5] = h.kind as u8;
    out[6] = h.scheme as u8;
    out[7] = h.action;
    out[8..16].copy_from_slice(&h.key_id);
    out[16..32].copy_from_slice(&h.host_id);
    out[32..40].copy_from_slice(&h.timestamp_ms.to_be_bytes());
    out[40..56].copy_from_slice(&h.nonce);
    out[56..58].copy_from_slice(&(body.len() as u16).to_be_bytes());
    out[HEADER_LEN..n].copy_from_slice(body);
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: Kind, scheme: Scheme) -> Header {
        Header { kind, scheme, action: 3, key_id: [1; 8], host_id: [2; 16], timestamp_ms: 1_795_000_000_000, nonce: [3; 16] }
    }

    #[test]
    fn round_trip() {
        let mut body = [0u8; MAX_REQUEST_BODY];
        let a = Action::Kill { pid: 4242, start_time: Some(99) };
        let n = a.encode_body(&mut body);
        let mut out = [0u8; MAX_DATAGRAM];
        let len = encode(&header(Kind::Request, Scheme::HmacSha256), &body[..n], &mut out).expect("fits") + 32;
        let f = parse(&out[..len], MAX_REQUEST).expect("parses");
        assert_eq!(f.header, header(Kind::Request, Scheme::HmacSha256));
        assert_eq!(Action::decode(f.header.action, f.body), Ok(a));
        assert_eq!(f.signed.len(), HEADER_LEN + 12);
        assert_eq!(f.tag.len(), 32);
    }

    #[test]
    fn every_action_round_trips() {
        for a in [
            Action::Status,
            Action::Rescue,
            Action::Kill { pid: 7, start_time: None },
            Action::Freeze { pid: 8, start_time: Some(1) },
            Action::Thaw { pid: 9 },
            Action::Sysrq(b'f'),
        ] {
            let mut body = [0u8; MAX_REQUEST_BODY];
            let n = a.encode_body(&mut body);
            assert_eq!(Action::decode(a.code(), &body[..n]), Ok(a), "{a:?}");
        }
        assert_eq!(Action::decode(3, &0u32.to_be_bytes()), Err(Reject::Format), "pid 0");
        assert_eq!(Action::decode(6, b"\n"), Err(Reject::Format));
        assert_eq!(Action::decode(9, b""), Err(Reject::Format));
        assert_eq!(Action::decode(1, b"x"), Err(Reject::Format));
    }

    #[test]
    fn sizes_and_fields_are_checked_first() {
        let mut out = [0u8; MAX_DATAGRAM];
        let len = encode(&header(Kind::Request, Scheme::Ed25519), &[], &mut out).expect("fits") + 64;
        assert!(parse(&out[..len], MAX_REQUEST).is_ok());
        assert_eq!(parse(&out[..len - 1], MAX_REQUEST).err(), Some(Reject::Size), "truncated");
        assert_eq!(parse(&out[..len + 1], MAX_REQUEST).err(), Some(Reject::Size), "trailing byte");
        assert_eq!(parse(&[0u8; 2000], MAX_REQUEST).err(), Some(Reject::Size), "oversize");
        assert_eq!(parse(&[], MAX_REQUEST).err(), Some(Reject::Size));
        for (at, v) in [(0, b'X'), (4, 2), (5, 3), (6, 9)] {
            let mut bad = out;
            bad[at] = v;
            assert_eq!(parse(&bad[..len], MAX_REQUEST).err(), Some(Reject::Format), "byte {at}");
        }
        // a reply-sized body in a request
        let mut big = out;
        big[56..58].copy_from_slice(&600u16.to_be_bytes());
        assert_eq!(parse(&big[..len], MAX_REQUEST).err(), Some(Reject::Size));
    }
}
