//! The lifeline: an authenticated, replay-proof datagram that asks the guard for status or
//! a rescue when nothing else on the machine answers.
//!
//! Owns the protocol and nothing that touches the OS: the wire format ([`wire`]), keys and
//! their files ([`keys`]), the daemon's checks and reply sealing ([`gate`]), and a writer
//! that renders reply bodies into a fixed buffer ([`BodyWriter`]). The binary owns the
//! socket, the clock, randomness, key files and every action. Checking a datagram never
//! allocates and never panics, whatever the bytes.

pub mod gate;
pub mod keys;
pub mod wire;

/// Why a datagram was refused (stable names for logs and metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reject {
    /// Shorter or longer than any valid datagram of its kind.
    Size,
    /// Wrong magic, version, kind, scheme, action or arguments.
    Format,
    /// Its source sent too many.
    RateLimited,
    /// No trusted key has its key id.
    UnknownKey,
    /// Timestamp older than the window.
    Stale,
    /// Timestamp further ahead than the window.
    Future,
    /// Too many verifications this second, or the nonce table is full of live nonces.
    Busy,
    /// The signature or MAC does not verify.
    BadAuth,
    /// Authentic, but meant for another host.
    WrongHost,
    /// Authentic, but its nonce was seen inside the window (or a reply to another request).
    Replay,
    /// Authentic, but stamped before this daemon started (captured before a restart).
    BeforeStart,
    /// Authentic and fresh, but the key may not ask for this action.
    Denied,
}

impl Reject {
    /// Every reason, in a fixed order (counters are indexed by it).
    pub const ALL: [Reject; 12] = [
        Reject::Size,
        Reject::Format,
        Reject::RateLimited,
        Reject::UnknownKey,
        Reject::Stale,
        Reject::Future,
        Reject::Busy,
        Reject::BadAuth,
        Reject::WrongHost,
        Reject::Replay,
        Reject::BeforeStart,
        Reject::Denied,
    ];

    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::Size => "size",
            Reject::Format => "format",
            Reject::RateLimited => "rate_limited",
            Reject::UnknownKey => "unknown_key",
            Reject::Stale => "stale",
            Reject::Future => "future",
            Reject::Busy => "busy",
            Reject::BadAuth => "bad_auth",
            Reject::WrongHost => "wrong_host",
            Reject::Replay => "replay",
            Reject::BeforeStart => "before_start",
            Reject::Denied => "denied",
        }
    }

    /// Position in [`Reject::ALL`].
    pub fn index(self) -> usize {
        Reject::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }

    /// Whether the daemon answers (with an authenticated error): only a fresh, authentic
    /// request for this host that its key may not make. Everything else gets silence: no
    /// amplification, no oracle, no reflection of captured datagrams.
    pub fn answered(self) -> bool {
        self == Reject::Denied
    }
}

/// `fmt::Write` into a fixed buffer: a reply body rendered without allocating. Output
/// beyond the buffer is dropped and remembered ([`BodyWriter::overflowed`]).
#[derive(Debug)]
pub struct BodyWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
    overflow: bool,
}

impl<'a> BodyWriter<'a> {
    /// Write into `buf`.
    pub fn new(buf: &'a mut [u8]) -> BodyWriter<'a> {
        BodyWriter { buf, len: 0, overflow: false }
    }

    /// What was written.
    pub fn written(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Whether anything was dropped.
    pub fn overflowed(&self) -> bool {
        self.overflow
    }

    /// Write `s` as a JSON string literal (quotes, escapes; control bytes as \u00XX).
    pub fn json_str(&mut self, s: &str) -> std::fmt::Result {
        use std::fmt::Write;
        self.write_char('"')?;
        for c in s.chars() {
            match c {
                '"' => self.write_str("\\\"")?,
                '\\' => self.write_str("\\\\")?,
                c if (c as u32) < 0x20 => write!(self, "\\u{:04x}", c as u32)?,
                c => self.write_char(c)?,
            }
        }
        self.write_char('"')
    }
}

impl std::fmt::Write for BodyWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let room = self.buf.len() - self.len;
        if s.len() > room {
            self.overflow = true;
            return Err(std::fmt::Error);
        }
        self.buf[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
        self.len += s.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write;

    #[test]
    fn bodies_render_into_a_fixed_buffer() {
        let mut buf = [0u8; 32];
        let mut w = BodyWriter::new(&mut buf);
        w.write_str("{\"name\":").unwrap();
        w.json_str("a\"b\\c\n").unwrap();
        w.write_str("}").unwrap();
        assert_eq!(w.written(), br#"{"name":"a\"b\\c\u000a"}"#);
        assert!(!w.overflowed());
        assert!(w.write_str("0123456789").is_err());
        assert!(w.overflowed());
        assert_eq!(Reject::ALL.iter().map(|r| r.index()).collect::<Vec<_>>(), (0..12).collect::<Vec<_>>());
        assert!(Reject::Denied.answered() && !Reject::Replay.answered() && !Reject::BadAuth.answered());
    }
}
