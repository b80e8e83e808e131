//! The daemon's door: is this datagram an authentic, fresh request for this host?
//!
//! Owns the order of checks (cheapest first, nothing cryptographic before the sizes, the
//! fields, the sender's rate, the key id and the timestamp pass; a global budget caps
//! verifications per second), the replay defence (a time window, a fixed-size table of
//! nonces seen inside it, and a floor at the daemon's start so a restart reopens nothing),
//! and sealing replies. Everything lives in memory reserved in [`Gate::new`]: checking a
//! datagram allocates nothing. It must never act, answer a datagram that failed
//! authentication, or read a clock (time arrives as a [`Clock`]).

use super::Reject;
use super::keys::{AuthorizedKey, SecretKey, VerifyKey};
use super::wire::{self, Action, Header, Kind, MAX_REQUEST};

/// The two clocks a check needs: wall time for timestamps, monotonic for rates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    /// Unix time, milliseconds.
    pub unix_ms: u64,
    /// Monotonic time, milliseconds.
    pub mono_ms: u64,
}

/// The gate's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GateConfig {
    /// This host's id ([`super::keys::host_id`] of its name).
    pub host_id: [u8; 16],
    /// Timestamps further than this from now (either way) are refused.
    pub window_ms: u64,
    /// Datagrams one source may send in a burst, and per second after it.
    pub per_source_burst: u32,
    /// As above: the refill rate.
    pub per_source_per_s: u32,
    /// Signature/MAC verifications per second over all sources.
    pub verifications_per_s: u32,
}

impl GateConfig {
    /// Defaults: ±30 s, 20 datagrams then 10/s per source, 200 verifications/s.
    pub fn new(host_id: [u8; 16]) -> GateConfig {
        GateConfig { host_id, window_ms: 30_000, per_source_burst: 20, per_source_per_s: 10, verifications_per_s: 200 }
    }
}

/// A request that passed every check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// Index of the key in the gate's list.
    pub key: usize,
    /// What it asks for.
    pub action: Action,
    /// Its header (nonce and scheme for the reply).
    pub header: Header,
}

/// A token bucket in thousandths of a token.
#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    milli: u64,
    at_ms: u64,
}

impl Bucket {
    fn take(&mut self, now_ms: u64, burst: u32, per_s: u32) -> bool {
        let cap = u64::from(burst) * 1000;
        let elapsed = now_ms.saturating_sub(self.at_ms);
        self.milli = (self.milli + elapsed.saturating_mul(u64::from(per_s))).min(cap);
        self.at_ms = now_ms;
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }
}

const SOURCES: usize = 256;
const NONCES: usize = 8192;
const PROBES: usize = 32;

#[derive(Clone, Copy, Debug, Default)]
struct Source {
    addr: [u8; 16],
    bucket: Bucket,
}

#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    nonce: [u8; 16],
    /// Unix ms after which the nonce's timestamp is out of the window anyway.
    until_ms: u64,
}

/// The daemon's checker of requests.
#[derive(Debug)]
pub struct Gate {
    keys: Vec<AuthorizedKey>,
    cfg: GateConfig,
    floor_ms: u64,
    sources: Box<[Source]>,
    nonces: Box<[Seen]>,
    budget: Bucket,
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

impl Gate {
    /// A gate trusting `keys`, started at `started` (requests stamped earlier are refused:
    /// a restart never reopens the window for datagrams captured before it).
    pub fn new(keys: Vec<AuthorizedKey>, cfg: GateConfig, started: Clock) -> Gate {
        let budget = Bucket { milli: u64::from(cfg.verifications_per_s) * 1000, at_ms: started.mono_ms };
        Gate {
            keys,
            cfg,
            floor_ms: started.unix_ms,
            sources: vec![Source::default(); SOURCES].into_boxed_slice(),
            nonces: vec![Seen::default(); NONCES].into_boxed_slice(),
            budget,
        }
    }

    /// The trusted keys.
    pub fn keys(&self) -> &[AuthorizedKey] {
        &self.keys
    }

    /// Check one datagram from `source` (an IPv6 or IPv4-mapped address): authentic, fresh,
    /// for this host, and allowed for its key.
    pub fn check(&mut self, datagram: &[u8], source: [u8; 16], now: Clock) -> Result<Accepted, Reject> {
        let req = self.check_authentic(datagram, source, now)?;
        if self.permits(&req) { Ok(req) } else { Err(Reject::Denied) }
    }

    /// Whether the request's key may ask for its action (the last step of [`Gate::check`]).
    /// A request refused here is the only one worth an (authenticated) answer.
    pub fn permits(&self, req: &Accepted) -> bool {
        self.keys.get(req.key).is_some_and(|k| k.allow.permits(req.action))
    }

    /// Every step of [`Gate::check`] but the permission: the request is authentic, fresh
    /// (its nonce now remembered) and for this host.
    pub fn check_authentic(&mut self, datagram: &[u8], source: [u8; 16], now: Clock) -> Result<Accepted, Reject> {
        let frame = wire::parse(datagram, MAX_REQUEST)?;
        let h = frame.header;
        if h.kind != Kind::Request {
            return Err(Reject::Format);
        }
        let action = Action::decode(h.action, frame.body)?;
        let (burst, per_s) = (self.cfg.per_source_burst, self.cfg.per_source_per_s);
        if !self.source_bucket(source).take(now.mono_ms, burst, per_s) {
            return Err(Reject::RateLimited);
        }
        let key = self.keys.iter().position(|k| k.id == h.key_id && k.key.scheme() == h.scheme).ok_or(Reject::UnknownKey)?;
        if h.timestamp_ms.saturating_add(self.cfg.window_ms) < now.unix_ms {
            return Err(Reject::Stale);
        }
        if h.timestamp_ms > now.unix_ms.saturating_add(self.cfg.window_ms) {
            return Err(Reject::Future);
        }
        if !self.budget.take(now.mono_ms, self.cfg.verifications_per_s, self.cfg.verifications_per_s) {
            return Err(Reject::Busy);
        }
        if !self.keys[key].key.verify(frame.signed, frame.tag) {
            return Err(Reject::BadAuth);
        }
        // Authentic from here on; still refused without a reply when it could be a copy.
        if h.host_id != self.cfg.host_id {
            return Err(Reject::WrongHost);
        }
        if h.timestamp_ms < self.floor_ms {
            return Err(Reject::BeforeStart);
        }
        self.remember(h.nonce, h.timestamp_ms.saturating_add(self.cfg.window_ms), now.unix_ms)?;
        Ok(Accepted { key, action, header: h })
    }

    fn source_bucket(&mut self, addr: [u8; 16]) -> &mut Bucket {
        let i = (fnv(&addr) as usize) % SOURCES;
        let s = &mut self.sources[i];
        if s.addr != addr {
            // a new source takes the slot; a collision shares a bucket (never a free pass)
            if s.bucket.milli >= u64::from(self.cfg.per_source_burst) * 1000 || s.addr == [0; 16] {
                *s = Source { addr, bucket: Bucket { milli: u64::from(self.cfg.per_source_burst) * 1000, at_ms: s.bucket.at_ms } };
            }
        }
        &mut s.bucket
    }

    /// Record a nonce; refuse one already seen. A table full of live nonces refuses too
    /// (fails closed: only authentic datagrams get this far, so that takes a key).
    fn remember(&mut self, nonce: [u8; 16], until_ms: u64, now_ms: u64) -> Result<(), Reject> {
        let start = (fnv(&nonce) as usize) % NONCES;
        let mut free = None;
        for p in 0..PROBES {
            let slot = &self.nonces[(start + p) % NONCES];
            let live = slot.until_ms >= now_ms;
            if live && slot.nonce == nonce {
                return Err(Reject::Replay);
            }
            if !live && free.is_none() {
                free = Some((start + p) % NONCES);
            }
        }
        let i = free.ok_or(Reject::Busy)?;
        self.nonces[i] = Seen { nonce, until_ms };
        Ok(())
    }

    /// Seal a reply to `req` with `body` into `out`: MAC'd with the request's shared
    /// secret, or signed with `host_key` for Ed25519 requests. `None` when no key can seal
    /// it (an Ed25519 request without a host key) or the body is too long.
    pub fn seal_reply(&self, req: &Accepted, host_key: Option<&SecretKey>, now_unix_ms: u64, body: &[u8], out: &mut [u8]) -> Option<usize> {
        let sealer = match &self.keys.get(req.key)?.key {
            VerifyKey::Hmac(secret) => SecretKey::Hmac(*secret),
            VerifyKey::Ed25519(_) => host_key?.clone(),
        };
        seal(&sealer, Kind::Reply, req.header.action, self.cfg.host_id, now_unix_ms, req.header.nonce, body, out)
    }
}

/// Write and authenticate one datagram. Returns its length.
#[allow(clippy::too_many_arguments)]
fn seal(
    key: &SecretKey,
    kind: Kind,
    action: u8,
    host_id: [u8; 16],
    unix_ms: u64,
    nonce: [u8; 16],
    body: &[u8],
    out: &mut [u8],
) -> Option<usize> {
    let h = Header { kind, scheme: key.scheme(), action, key_id: key.key_id(), host_id, timestamp_ms: unix_ms, nonce };
    let n = wire::encode(&h, body, out)?;
    let (signed, rest) = out.split_at_mut(n);
    Some(n + key.sign(signed, rest))
}

/// A client's request: `action` for the host `host_id`, stamped `unix_ms`, with a fresh
/// random `nonce`. Returns its length in `out`.
pub fn request(key: &SecretKey, host_id: [u8; 16], action: Action, unix_ms: u64, nonce: [u8; 16], out: &mut [u8]) -> Option<usize> {
    let mut body = [0u8; wire::MAX_REQUEST_BODY];
    let n = action.encode_body(&mut body);
    seal(key, Kind::Request, action.code(), host_id, unix_ms, nonce, &body[..n], out)
}

/// A reply the client checked: authentic (by `key`), for its request (`nonce`), from the
/// host it asked (`host_id`). Returns the body.
pub fn open_reply<'a>(datagram: &'a [u8], nonce: [u8; 16], host_id: [u8; 16], key: &VerifyKey) -> Result<&'a [u8], Reject> {
    let f = wire::parse(datagram, wire::MAX_DATAGRAM)?;
    if f.header.kind != Kind::Reply || f.header.scheme != key.scheme() {
        return Err(Reject::Format);
    }
    if f.header.key_id != key.key_id() {
        return Err(Reject::UnknownKey);
    }
    if !key.verify(f.signed, f.tag) {
        return Err(Reject::BadAuth);
    }
    if f.header.nonce != nonce {
        return Err(Reject::Replay);
    }
    if f.header.host_id != host_id {
        return Err(Reject::WrongHost);
    }
    Ok(f.body)
}

#[cfg(test)]
mod tests {
    use super::super::keys::{Allow, parse_authorized};
    use super::super::wire::Scheme;
    use super::*;

    const T0: u64 = 1_795_000_000_000;
    const SRC: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1];

    fn clock(dt_ms: u64) -> Clock {
        Clock { unix_ms: T0 + dt_ms, mono_ms: 1_000 + dt_ms }
    }

    fn setup(scheme: Scheme) -> (Gate, SecretKey, [u8; 16]) {
        let key = SecretKey::from_seed(scheme, [5; 32]);
        let host = super::super::keys::host_id("web1");
        let gate = Gate::new(parse_authorized(&key.authorized_line("ops")).unwrap(), GateConfig::new(host), clock(0));
        (gate, key, host)
    }

    fn req(key: &SecretKey, host: [u8; 16], action: Action, ts: u64, nonce: u8) -> Vec<u8> {
        let mut out = [0u8; 256];
        let n = request(key, host, action, ts, [nonce; 16], &mut out).unwrap();
        out[..n].to_vec()
    }

    #[test]
    fn an_authentic_request_passes_once_and_its_reply_opens() {
        for scheme in [Scheme::Ed25519, Scheme::HmacSha256] {
            let (mut gate, key, host) = setup(scheme);
            let d = req(&key, host, Action::Status, T0 + 10, 1);
            let ok = gate.check(&d, SRC, clock(20)).expect("accepted");
            assert_eq!(ok.action, Action::Status);
            assert_eq!(gate.check(&d, SRC, clock(30)), Err(Reject::Replay), "the same datagram twice");
            let host_key = SecretKey::from_seed(Scheme::Ed25519, [8; 32]);
            let mut out = [0u8; wire::MAX_DATAGRAM];
            let n = gate.seal_reply(&ok, Some(&host_key), T0 + 40, b"{\"ok\":true}", &mut out).unwrap();
            let verify = if scheme == Scheme::Ed25519 { host_key.verify_key() } else { key.verify_key() };
            assert_eq!(open_reply(&out[..n], [1; 16], host, &verify), Ok(&b"{\"ok\":true}"[..]));
            assert_eq!(open_reply(&out[..n], [2; 16], host, &verify), Err(Reject::Replay), "another request's reply");
            let mut flipped = out;
            flipped[n - 1] ^= 1;
            assert_eq!(open_reply(&flipped[..n], [1; 16], host, &verify), Err(Reject::BadAuth));
            // a reply is never taken for a request
            assert_eq!(gate.check(&out[..n], SRC, clock(50)).err().map(|r| r == Reject::Size || r == Reject::Format), Some(true));
        }
    }

    #[test]
    fn every_bit_flip_is_refused() {
        let (mut gate, key, host) = setup(Scheme::HmacSha256);
        let d = req(&key, host, Action::Kill { pid: 42, start_time: Some(7) }, T0, 9);
        for byte in 0..d.len() {
            for bit in 0..8 {
                let mut bad = d.clone();
                bad[byte] ^= 1 << bit;
                let mut g = Gate::new(gate.keys.clone(), gate.cfg, clock(0));
                assert!(g.check(&bad, SRC, clock(1)).is_err(), "flip of bit {bit} in byte {byte} passed");
            }
        }
        assert!(gate.check(&d, SRC, clock(1)).is_ok());
    }

    #[test]
    fn rejections_by_reason() {
        let (mut gate, key, host) = setup(Scheme::Ed25519);
        let other = SecretKey::from_seed(Scheme::Ed25519, [6; 32]);
        let c = clock(0);
        assert_eq!(gate.check(&req(&other, host, Action::Status, T0, 1), SRC, c), Err(Reject::UnknownKey));
        // a known key id with a signature from another key: a wrong key
        let mut forged = req(&other, host, Action::Status, T0, 2);
        forged[8..16].copy_from_slice(&key.key_id());
        assert_eq!(gate.check(&forged, SRC, c), Err(Reject::BadAuth));
        assert_eq!(gate.check(&req(&key, host, Action::Status, T0 - 30_001, 3), SRC, clock(0)), Err(Reject::Stale));
        assert_eq!(gate.check(&req(&key, host, Action::Status, T0 + 60_000, 4), SRC, clock(0)), Err(Reject::Future));
        let web2 = super::super::keys::host_id("web2");
        assert_eq!(gate.check(&req(&key, web2, Action::Status, T0, 5), SRC, c), Err(Reject::WrongHost));
        assert_eq!(gate.check(&req(&key, host, Action::Sysrq(b'b'), T0, 6), SRC, c), Err(Reject::Denied));
        let d = req(&key, host, Action::Status, T0, 7);
        assert_eq!(gate.check(&d[..d.len() - 1], SRC, c), Err(Reject::Size), "truncated");
        let mut long = d.clone();
        long.extend_from_slice(&[0; 2048]);
        assert_eq!(gate.check(&long, SRC, c), Err(Reject::Size), "oversize");
    }

    #[test]
    fn a_restart_reopens_nothing() {
        let (mut gate, key, host) = setup(Scheme::HmacSha256);
        let captured = req(&key, host, Action::Rescue, T0 + 1_000, 1);
        assert!(gate.check(&captured, SRC, clock(1_000)).is_ok());
        // the daemon restarts 5 s later, with an empty nonce table
        let mut restarted = Gate::new(gate.keys.clone(), gate.cfg, clock(5_000));
        assert_eq!(restarted.check(&captured, SRC, clock(6_000)), Err(Reject::BeforeStart));
        assert!(restarted.check(&req(&key, host, Action::Rescue, T0 + 6_000, 2), SRC, clock(6_000)).is_ok());
    }

    #[test]
    fn rates_are_limited_before_any_crypto() {
        let (mut gate, key, host) = setup(Scheme::Ed25519);
        let mut limited = 0;
        for i in 0..100u8 {
            if gate.check(&req(&key, host, Action::Status, T0, i), SRC, clock(0)) == Err(Reject::RateLimited) {
                limited += 1;
            }
        }
        assert_eq!(limited, 80, "a burst of 20 per source");
        // another source still gets through; the first one again after a second
        let other = [9u8; 16];
        assert!(gate.check(&req(&key, host, Action::Status, T0, 200), other, clock(0)).is_ok());
        assert!(gate.check(&req(&key, host, Action::Status, T0, 201), SRC, clock(1_000)).is_ok());
        // forged signatures from many sources hit the global verification budget
        let mut forged = req(&key, host, Action::Status, T0, 202);
        let n = forged.len();
        forged[n - 1] ^= 1;
        let mut busy = 0;
        for i in 0..1000u32 {
            let mut src = [0u8; 16];
            src[..4].copy_from_slice(&i.to_be_bytes());
            if gate.check(&forged, src, clock(1_000)) == Err(Reject::Busy) {
                busy += 1;
            }
        }
        assert!(busy >= 700, "verifications capped per second: {busy} refused as busy");
    }

    #[test]
    fn the_nonce_table_fails_closed_when_full() {
        let key = SecretKey::from_seed(Scheme::HmacSha256, [5; 32]);
        let host = super::super::keys::host_id("h");
        let mut keys = parse_authorized(&key.authorized_line("ops")).unwrap();
        keys[0].allow = Allow::default();
        let mut cfg = GateConfig::new(host);
        cfg.per_source_burst = u32::MAX / 1000;
        cfg.verifications_per_s = u32::MAX / 1000;
        let mut gate = Gate::new(keys, cfg, clock(0));
        let mut accepted = 0;
        let mut busy = 0;
        for i in 0..(NONCES as u32 + 100) {
            let mut nonce = [0u8; 16];
            nonce[..4].copy_from_slice(&i.to_le_bytes());
            let mut out = [0u8; 256];
            let n = request(&key, host, Action::Status, T0, nonce, &mut out).unwrap();
            match gate.check(&out[..n], SRC, clock(0)) {
                Ok(_) => accepted += 1,
                Err(Reject::Busy) => busy += 1,
                Err(e) => panic!("{e:?}"),
            }
        }
        assert!(accepted > NONCES * 9 / 10 && busy > 0, "accepted {accepted}, busy {busy}");
        // once the window has passed, the slots are free again
        let mut out = [0u8; 256];
        let n = request(&key, host, Action::Status, T0 + 61_000, [0xee; 16], &mut out).unwrap();
        assert!(gate.check(&out[..n], SRC, clock(61_000)).is_ok());
    }
}
