//! The lifeline's edges: the daemon's UDP socket, key files, and the client commands.
//!
//! Owns the socket (non-blocking, polled with the guard's other fds), turning each datagram
//! into a checked request through the pure [`Gate`] with buffers reserved at start, sealing
//! and sending replies, counting and rate-limited logging of rejections, reading and
//! permission-checking key files, and the `keygen` and `send` commands. What a request
//! does is the guard's business ([`crate::daemon`]); this module must never act on one,
//! and never answer a datagram the gate refused (except an authentic `denied`).

use std::fs;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use log::{info, warn};
use thrashguard_core::config::LifelineConfig;
use thrashguard_core::lifeline::Reject;
use thrashguard_core::lifeline::gate::{self, Accepted, Clock, Gate, GateConfig};
use thrashguard_core::lifeline::keys::{self, SecretKey, VerifyKey};
use thrashguard_core::lifeline::wire::{self, Action, Scheme};

/// A lifeline set-up the daemon must not start with (bad key file, loose permissions):
/// exit code 78, like any configuration error.
#[derive(Debug, thiserror::Error)]
#[error("lifeline: {0}")]
pub struct SetupError(pub String);

fn setup_err(msg: impl Into<String>) -> anyhow::Error {
    SetupError(msg.into()).into()
}

/// Wall clock in Unix milliseconds.
pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// This machine's host name (the default `lifeline.host_id`).
pub fn hostname() -> String {
    rustix::system::uname().nodename().to_string_lossy().into_owned()
}

/// Read a key file that must not be writable by group or others; returns its text and
/// mode (for [`guard_secret`] once the text says whether it holds a secret).
fn read_guarded(path: &Path) -> Result<(String, u32)> {
    let meta = fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    let mode = meta.permissions().mode();
    if mode & 0o022 != 0 {
        bail!(setup_err(format!("{} is writable by group or others (mode {:o}): refusing to trust it", path.display(), mode & 0o777)));
    }
    Ok((fs::read_to_string(path).with_context(|| format!("{}", path.display()))?, mode))
}

/// A file holding a secret must not be readable by group or others either.
fn guard_secret(path: &Path, mode: u32) -> Result<()> {
    if mode & 0o044 != 0 {
        bail!(setup_err(format!(
            "{} holds a secret but is readable by group or others (mode {:o}); chmod 600 it",
            path.display(),
            mode & 0o777
        )));
    }
    Ok(())
}

/// The lifeline's keys as the daemon would load them.
#[derive(Debug)]
pub struct LoadedKeys {
    /// Authorized client keys.
    pub authorized: Vec<keys::AuthorizedKey>,
    /// The host key that signs replies (when Ed25519 keys are authorized).
    pub host_key: Option<SecretKey>,
    /// Owner of the authorized-keys file.
    pub owner_uid: u32,
}

/// Load and check the key files exactly as the daemon does at start: `Ok(None)` when no
/// key is authorized (the lifeline stays off), a [`SetupError`] when the daemon would
/// refuse to start (loose permissions, a missing or unusable host key, a bad line).
pub fn load_keys(cfg: &LifelineConfig) -> Result<Option<LoadedKeys>> {
    let path = Path::new(&cfg.authorized_keys);
    if !path.exists() {
        return Ok(None);
    }
    let (text, mode) = read_guarded(path)?;
    let authorized = keys::parse_authorized(&text).map_err(|e| setup_err(format!("{}: {e}", path.display())))?;
    if authorized.is_empty() {
        return Ok(None);
    }
    if authorized.iter().any(|k| k.key.scheme() == Scheme::HmacSha256) {
        guard_secret(path, mode)?;
    }
    let host_key = if authorized.iter().any(|k| k.key.scheme() == Scheme::Ed25519) {
        let hk = Path::new(&cfg.host_key);
        if !hk.exists() {
            bail!(setup_err(format!(
                "Ed25519 keys are authorized but the host key {} that signs replies is missing (thrashguard keygen --out {} --name host)",
                hk.display(),
                hk.parent().unwrap_or(Path::new(".")).display()
            )));
        }
        let (text, mode) = read_guarded(hk)?;
        guard_secret(hk, mode)?;
        let (key, _) = SecretKey::parse(&text).map_err(|e| setup_err(format!("{}: {e}", hk.display())))?;
        if key.scheme() != Scheme::Ed25519 {
            bail!(setup_err(format!("{}: the host key must be an Ed25519 key", hk.display())));
        }
        Some(key)
    } else {
        None
    };
    let owner_uid = std::os::unix::fs::MetadataExt::uid(&fs::metadata(path)?);
    Ok(Some(LoadedKeys { authorized, host_key, owner_uid }))
}

/// Counts of what the lifeline saw (for logs now, metrics later).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LifelineCounters {
    /// Requests accepted and acted on.
    pub accepted: u64,
    /// Refused, by [`Reject::index`].
    pub rejected: [u64; Reject::ALL.len()],
    /// Replies that could not be sent.
    pub send_errors: u64,
}

/// What one receive produced.
#[derive(Debug)]
pub enum Received {
    /// Nothing waiting.
    Nothing,
    /// A datagram that was refused (counted, maybe logged; answered only if `denied`).
    Refused,
    /// An authentic, fresh request for this host, to act on and answer.
    Request(Accepted, SocketAddr),
}

/// Log lines about refusals: at most one per reason per this long.
const REFUSAL_LOG_EVERY_MS: u64 = 10_000;

/// The daemon's lifeline socket and everything it needs, reserved at start.
#[derive(Debug)]
pub struct Server {
    socket: UdpSocket,
    gate: Gate,
    host_key: Option<SecretKey>,
    /// The name requests must carry.
    pub host_name: String,
    started: Instant,
    buf: Box<[u8]>,
    out: Box<[u8]>,
    /// What it saw.
    pub counters: LifelineCounters,
    /// Per reason: when it was last logged, and how many since.
    logged: [(u64, u64); Reject::ALL.len()],
}

impl Server {
    /// Open the lifeline as configured; `Ok(None)` when no key is authorized (it stays
    /// off), an error (exit 78) when a key file is unusable or loose.
    pub fn open(cfg: &LifelineConfig) -> Result<Option<Server>> {
        let Some(LoadedKeys { authorized, host_key, .. }) = load_keys(cfg)? else { return Ok(None) };
        let host_name = if cfg.host_id.is_empty() { hostname() } else { cfg.host_id.clone() };
        let socket = UdpSocket::bind(&cfg.listen).with_context(|| format!("lifeline: cannot listen on {}", cfg.listen))?;
        socket.set_nonblocking(true)?;
        let gate_cfg = GateConfig {
            host_id: keys::host_id(&host_name),
            window_ms: u64::from(cfg.window_s) * 1000,
            per_source_burst: cfg.per_source_burst,
            per_source_per_s: cfg.per_source_per_s,
            verifications_per_s: cfg.verifications_per_s,
        };
        let started = Instant::now();
        let gate = Gate::new(authorized, gate_cfg, Clock { unix_ms: unix_ms(), mono_ms: 0 });
        Ok(Some(Server {
            socket,
            gate,
            host_key,
            host_name,
            started,
            buf: vec![0u8; 2048].into_boxed_slice(),
            out: vec![0u8; wire::MAX_DATAGRAM].into_boxed_slice(),
            counters: LifelineCounters::default(),
            logged: [(0, 0); Reject::ALL.len()],
        }))
    }

    /// One line for the start-up log.
    pub fn describe(&self) -> String {
        let addr = self.local_addr().map_or_else(|| "?".into(), |a| a.to_string());
        format!("lifeline on udp {addr} as {:?} ({} key(s))", self.host_name, self.gate.keys().len())
    }

    /// The socket, for the guard's poll set.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }

    /// Where it listens.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.socket.local_addr().ok()
    }

    /// Name of the key that made a request.
    pub fn key_name(&self, req: &Accepted) -> &str {
        self.gate.keys().get(req.key).map_or("?", |k| k.name.as_str())
    }

    fn clock(&self) -> Clock {
        Clock { unix_ms: unix_ms(), mono_ms: self.started.elapsed().as_millis() as u64 }
    }

    /// Receive and check one datagram. Allocates nothing (a rare refusal log line aside).
    pub fn receive(&mut self) -> Received {
        let (n, from) = match self.socket.recv_from(&mut self.buf) {
            Ok(r) => r,
            Err(_) => return Received::Nothing, // WouldBlock, or an ICMP error from a reply
        };
        let source = match from {
            SocketAddr::V4(a) => a.ip().to_ipv6_mapped().octets(),
            SocketAddr::V6(a) => a.ip().octets(),
        };
        let now = self.clock();
        let refused = match self.gate.check_authentic(&self.buf[..n], source, now) {
            Ok(req) if self.gate.permits(&req) => {
                self.counters.accepted += 1;
                return Received::Request(req, from);
            }
            // authentic and fresh, but not allowed: say so (the client proved its key)
            Ok(req) => {
                self.send_reply(&req, from, br#"{"ok":false,"error":"action not allowed for this key"}"#);
                Reject::Denied
            }
            Err(why) => why,
        };
        self.counters.rejected[refused.index()] += 1;
        self.log_refusal(refused, from, now.mono_ms);
        Received::Refused
    }

    fn log_refusal(&mut self, why: Reject, from: SocketAddr, now_ms: u64) {
        let (last, since) = &mut self.logged[why.index()];
        *since += 1;
        if *last == 0 || now_ms.saturating_sub(*last) >= REFUSAL_LOG_EVERY_MS {
            let answer = if why.answered() { "answered with an error" } else { "silent" };
            warn!("lifeline: refused {} datagram(s) as {} (last from {from}); {answer}", *since, why.as_str());
            *last = now_ms.max(1);
            *since = 0;
        }
    }

    /// Seal `body` as the reply to `req` and send it to `to`.
    pub fn send_reply(&mut self, req: &Accepted, to: SocketAddr, body: &[u8]) {
        let now = unix_ms();
        match self.gate.seal_reply(req, self.host_key.as_ref(), now, body, &mut self.out) {
            Some(n) => {
                if self.socket.send_to(&self.out[..n], to).is_err() {
                    self.counters.send_errors += 1;
                }
            }
            None => self.counters.send_errors += 1,
        }
    }
}

// ------------------------------------------------------------------------------ client

/// `thrashguard keygen`: write NAME.key (0600) and NAME.pub into `dir`, refusing to
/// overwrite either. Returns the two paths.
pub fn keygen(dir: &Path, name: &str, scheme: Scheme) -> Result<(PathBuf, PathBuf)> {
    if name.is_empty() || name.contains(['/', ' ']) {
        bail!("--name must be a plain file name");
    }
    fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    let mut seed = [0u8; 32];
    rustix::rand::getrandom(&mut seed, rustix::rand::GetRandomFlags::empty()).context("getrandom")?;
    let key = SecretKey::from_seed(scheme, seed);
    let (key_path, pub_path) = (dir.join(format!("{name}.key")), dir.join(format!("{name}.pub")));
    // the .pub of an HMAC key is the shared secret itself
    let pub_mode = if scheme == Scheme::HmacSha256 { 0o600 } else { 0o644 };
    for (path, text, mode) in [(&key_path, key.to_file(name), 0o600), (&pub_path, key.authorized_line(name), pub_mode)] {
        use std::io::Write;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .with_context(|| format!("{} (keygen never overwrites a key)", path.display()))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    Ok((key_path, pub_path))
}

/// A parsed `send` action from the command line: `status`, `rescue`, `kill PID[@START]`,
/// `freeze PID[@START]`, `thaw PID`, `sysrq LETTER`.
pub fn parse_action(words: &[String]) -> Result<Action> {
    let pid = |w: Option<&String>| -> Result<(u32, Option<u64>)> {
        let w = w.context("a PID is needed")?;
        let (p, s) = w.split_once('@').map_or((w.as_str(), None), |(p, s)| (p, Some(s)));
        let pid: u32 = p.parse().ok().filter(|&p| p > 0).with_context(|| format!("{p}: not a pid"))?;
        let start = s.map(|s| s.parse::<u64>().with_context(|| format!("{s}: not a start time"))).transpose()?;
        Ok((pid, start))
    };
    let (head, rest) = words.split_first().context("an action is needed: status, rescue, kill, freeze, thaw, sysrq")?;
    let action = match head.as_str() {
        "status" => Action::Status,
        "rescue" => Action::Rescue,
        "kill" => pid(rest.first()).map(|(pid, start_time)| Action::Kill { pid, start_time })?,
        "freeze" => pid(rest.first()).map(|(pid, start_time)| Action::Freeze { pid, start_time })?,
        "thaw" => pid(rest.first()).map(|(pid, _)| Action::Thaw { pid })?,
        "sysrq" => match rest.first().map(|s| s.as_bytes()) {
            Some([l]) if l.is_ascii_alphanumeric() => Action::Sysrq(*l),
            _ => bail!("sysrq needs one letter"),
        },
        other => bail!("unknown action {other:?}: status, rescue, kill PID, freeze PID, thaw PID, sysrq LETTER"),
    };
    let wanted = match action {
        Action::Status | Action::Rescue => 1,
        _ => 2,
    };
    if words.len() != wanted {
        bail!("{}: {} argument(s) expected", action.name(), wanted - 1);
    }
    Ok(action)
}

/// One host to send to.
#[derive(Clone, Debug)]
pub struct Target {
    /// The name its requests carry (and it is shown by).
    pub name: String,
    /// Where to send.
    pub addr: SocketAddr,
    /// The key its replies are checked with.
    pub reply_key: VerifyKey,
}

/// The default lifeline port.
pub const DEFAULT_PORT: u16 = 7411;

/// Resolve `HOST[:PORT]` (the port defaults to [`DEFAULT_PORT`]).
pub fn resolve(host: &str) -> Result<SocketAddr> {
    let with_port = if host.parse::<SocketAddr>().is_ok() || (host.contains(':') && !host.contains("::") && !host.starts_with('[')) {
        host.to_string()
    } else if host.starts_with('[') {
        format!("{host}:{DEFAULT_PORT}")
    } else if host.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{host}]:{DEFAULT_PORT}")
    } else {
        format!("{host}:{DEFAULT_PORT}")
    };
    with_port.to_socket_addrs().with_context(|| format!("cannot resolve {host}"))?.next().with_context(|| format!("{host}: no address"))
}

/// The key a host's replies are checked with: the shared secret for HMAC, or the host's
/// public key (`--host-pub`) for Ed25519.
pub fn reply_key(key: &SecretKey, host_pub: Option<&Path>) -> Result<VerifyKey> {
    match (key.scheme(), host_pub) {
        (Scheme::HmacSha256, _) => Ok(key.verify_key()),
        (Scheme::Ed25519, Some(p)) => {
            let text = fs::read_to_string(p).with_context(|| format!("{}", p.display()))?;
            let line = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')).unwrap_or("");
            let (k, _) = VerifyKey::parse_line(line).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
            Ok(k)
        }
        (Scheme::Ed25519, None) => bail!("Ed25519 replies are signed by the host's key: give its public key with --host-pub FILE"),
    }
}

/// What came back from one host.
#[derive(Debug)]
pub enum Outcome {
    /// An authentic reply; its body (JSON).
    Reply(String),
    /// No authentic reply within every attempt.
    Timeout,
    /// Could not send at all.
    Error(String),
}

/// Send `action` to every target, retrying with fresh nonces, and wait for their
/// authentic replies: `attempts` tries of `timeout` each. Results in target order.
pub fn send(key: &SecretKey, targets: &[Target], action: Action, timeout: Duration, attempts: u32) -> Vec<Outcome> {
    let mut outcomes: Vec<Option<Outcome>> = targets.iter().map(|_| None).collect();
    let sockets: Vec<Result<UdpSocket, String>> = targets
        .iter()
        .map(|t| {
            let bind = if t.addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
            let s = UdpSocket::bind(bind).map_err(|e| e.to_string())?;
            s.set_nonblocking(true).map_err(|e| e.to_string())?;
            Ok(s)
        })
        .collect();
    for (i, s) in sockets.iter().enumerate() {
        if let Err(e) = s {
            outcomes[i] = Some(Outcome::Error(e.clone()));
        }
    }
    let mut nonces: Vec<Vec<[u8; 16]>> = targets.iter().map(|_| Vec::new()).collect();
    let mut buf = [0u8; wire::MAX_DATAGRAM + 1];
    for _ in 0..attempts.max(1) {
        // (re)send to every host still silent, each time with a fresh nonce and timestamp
        for (i, t) in targets.iter().enumerate() {
            let (None, Ok(sock)) = (&outcomes[i], &sockets[i]) else { continue };
            let mut nonce = [0u8; 16];
            if rustix::rand::getrandom(&mut nonce, rustix::rand::GetRandomFlags::empty()).is_err() {
                outcomes[i] = Some(Outcome::Error("getrandom failed".into()));
                continue;
            }
            let mut out = [0u8; wire::MAX_REQUEST];
            let Some(n) = gate::request(key, keys::host_id(&t.name), action, unix_ms(), nonce, &mut out) else { continue };
            if let Err(e) = sock.send_to(&out[..n], t.addr) {
                // ECONNREFUSED from an earlier ICMP: try again next attempt
                warn!("{}: {e}", t.name);
            }
            nonces[i].push(nonce);
        }
        let deadline = Instant::now() + timeout;
        while outcomes.iter().any(Option::is_none) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let pending: Vec<usize> = (0..targets.len()).filter(|&i| outcomes[i].is_none() && sockets[i].is_ok()).collect();
            if pending.is_empty() {
                break;
            }
            let mut fds: Vec<rustix::event::PollFd<'_>> = pending
                .iter()
                .filter_map(|&i| sockets[i].as_ref().ok())
                .map(|s| rustix::event::PollFd::new(s, rustix::event::PollFlags::IN))
                .collect();
            let ts = rustix::time::Timespec { tv_sec: left.as_secs() as i64, tv_nsec: i64::from(left.subsec_nanos()) };
            let _ = rustix::event::poll(&mut fds, Some(&ts));
            drop(fds);
            for &i in &pending {
                let Ok(sock) = &sockets[i] else { continue };
                while let Ok((n, from)) = sock.recv_from(&mut buf) {
                    if from != targets[i].addr {
                        continue;
                    }
                    // any of this host's requests may be the one answered
                    let body = nonces[i]
                        .iter()
                        .find_map(|nonce| gate::open_reply(&buf[..n], *nonce, keys::host_id(&targets[i].name), &targets[i].reply_key).ok());
                    if let Some(body) = body {
                        outcomes[i] = Some(Outcome::Reply(String::from_utf8_lossy(body).into_owned()));
                        break;
                    }
                }
            }
        }
        if outcomes.iter().all(Option::is_some) {
            break;
        }
    }
    outcomes.into_iter().map(|o| o.unwrap_or(Outcome::Timeout)).collect()
}

/// Log one acted-on request.
/// `served`: from the datagram's receipt to its reply sent (verify, act, sign, send).
pub fn log_request(server: &Server, req: &Accepted, from: SocketAddr, result: &str, served: Duration) {
    info!(
        "lifeline: {} from {from} (key {:?}): {result}; answered in {:.1} ms",
        req.action.name(),
        server.key_name(req),
        served.as_secs_f64() * 1000.0
    );
}
