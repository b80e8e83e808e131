//! Lifeline keys: what a sender holds, what a daemon trusts, and the text files for both.
//!
//! Owns the two schemes (Ed25519 signatures, where the daemon keeps only public keys, and
//! HMAC-SHA256 with a shared secret), key ids, host ids, signing and constant-time
//! verification, and parsing the key files (`tg-lifeline <scheme> <hex> <name>` for a
//! secret key; `<scheme> <hex> [allow=...] [comment]` lines for authorized keys). It must
//! never read a file or make randomness: callers hand it text and 32 random bytes.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::wire::{Action, Scheme};

/// What is wrong with a key file, by line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {what}")]
pub struct KeyError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub what: String,
}

fn key_error(line: usize, what: impl Into<String>) -> KeyError {
    KeyError { line, what: what.into() }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 32 bytes from 64 hex digits.
pub fn unhex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

fn id_of(domain: &[u8], key: &[u8]) -> [u8; 8] {
    let h = Sha256::new().chain_update(domain).chain_update(key).finalize();
    let mut id = [0u8; 8];
    id.copy_from_slice(&h[..8]);
    id
}

/// The host id a request carries: the first 16 bytes of SHA-256 of the host's name (its
/// `lifeline.host_id`, by default its hostname), so one key can serve a fleet and a request
/// for one host is refused by every other.
pub fn host_id(name: &str) -> [u8; 16] {
    let h = Sha256::new().chain_update(b"tg-lifeline-host\0").chain_update(name.as_bytes()).finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&h[..16]);
    id
}

fn scheme_name(s: Scheme) -> &'static str {
    match s {
        Scheme::Ed25519 => "ed25519",
        Scheme::HmacSha256 => "hmac-sha256",
    }
}

fn scheme_of(name: &str) -> Option<Scheme> {
    match name {
        "ed25519" => Some(Scheme::Ed25519),
        "hmac-sha256" => Some(Scheme::HmacSha256),
        _ => None,
    }
}

/// A key that signs: a client's private key, or a daemon's host key (replies).
#[derive(Clone)]
pub enum SecretKey {
    /// Ed25519 private key.
    Ed25519(SigningKey),
    /// HMAC-SHA256 shared secret.
    Hmac([u8; 32]),
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({}, id {})", scheme_name(self.scheme()), hex(&self.key_id()))
    }
}

impl SecretKey {
    /// A new key from 32 random bytes.
    pub fn from_seed(scheme: Scheme, seed: [u8; 32]) -> SecretKey {
        match scheme {
            Scheme::Ed25519 => SecretKey::Ed25519(SigningKey::from_bytes(&seed)),
            Scheme::HmacSha256 => SecretKey::Hmac(seed),
        }
    }

    /// Its scheme.
    pub fn scheme(&self) -> Scheme {
        match self {
            SecretKey::Ed25519(_) => Scheme::Ed25519,
            SecretKey::Hmac(_) => Scheme::HmacSha256,
        }
    }

    /// The key that verifies what this one signs.
    pub fn verify_key(&self) -> VerifyKey {
        match self {
            SecretKey::Ed25519(k) => VerifyKey::Ed25519(k.verifying_key()),
            SecretKey::Hmac(s) => VerifyKey::Hmac(*s),
        }
    }

    /// Its key id (that of its verify key).
    pub fn key_id(&self) -> [u8; 8] {
        self.verify_key().key_id()
    }

    /// Authenticate `msg` into `out` (at least [`Scheme::tag_len`] bytes); returns the length.
    pub fn sign(&self, msg: &[u8], out: &mut [u8]) -> usize {
        match self {
            SecretKey::Ed25519(k) => {
                out[..64].copy_from_slice(&k.sign(msg).to_bytes());
                64
            }
            SecretKey::Hmac(s) => {
                let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(s).expect("HMAC takes any key length");
                mac.update(msg);
                out[..32].copy_from_slice(&mac.finalize().into_bytes());
                32
            }
        }
    }

    /// The private key file's text: `tg-lifeline <scheme> <hex> <name>`.
    pub fn to_file(&self, name: &str) -> String {
        let secret = match self {
            SecretKey::Ed25519(k) => k.to_bytes(),
            SecretKey::Hmac(s) => *s,
        };
        format!("tg-lifeline {} {} {name}\n", scheme_name(self.scheme()), hex(&secret))
    }

    /// The line that authorizes this key on a daemon (for HMAC it holds the secret).
    pub fn authorized_line(&self, name: &str) -> String {
        match self {
            SecretKey::Ed25519(k) => format!("ed25519 {} {name}\n", hex(k.verifying_key().as_bytes())),
            SecretKey::Hmac(s) => format!("hmac-sha256 {} {name}\n", hex(s)),
        }
    }

    /// Parse a private key file; returns the key and its name.
    pub fn parse(text: &str) -> Result<(SecretKey, String), KeyError> {
        let (no, line) = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .find(|(_, l)| !l.is_empty() && !l.starts_with('#'))
            .ok_or_else(|| key_error(1, "empty key file"))?;
        let mut w = line.split_whitespace();
        if w.next() != Some("tg-lifeline") {
            return Err(key_error(no, "not a thrashguard lifeline key (expected `tg-lifeline <scheme> <hex> <name>`)"));
        }
        let scheme = w.next().and_then(scheme_of).ok_or_else(|| key_error(no, "unknown scheme (ed25519 or hmac-sha256)"))?;
        let seed = w.next().and_then(unhex32).ok_or_else(|| key_error(no, "the key must be 64 hex digits"))?;
        let name = w.collect::<Vec<_>>().join(" ");
        Ok((SecretKey::from_seed(scheme, seed), name))
    }
}

/// A key that verifies: a daemon's authorized key, or a client's copy of a host key.
#[derive(Clone)]
pub enum VerifyKey {
    /// Ed25519 public key.
    Ed25519(VerifyingKey),
    /// HMAC-SHA256 shared secret.
    Hmac([u8; 32]),
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerifyKey({}, id {})", scheme_name(self.scheme()), hex(&self.key_id()))
    }
}

impl VerifyKey {
    /// Its scheme.
    pub fn scheme(&self) -> Scheme {
        match self {
            VerifyKey::Ed25519(_) => Scheme::Ed25519,
            VerifyKey::Hmac(_) => Scheme::HmacSha256,
        }
    }

    /// The 8-byte id a datagram names it by (a hash: it reveals nothing of the key).
    pub fn key_id(&self) -> [u8; 8] {
        match self {
            VerifyKey::Ed25519(k) => id_of(b"tg-lifeline-id\0ed25519\0", k.as_bytes()),
            VerifyKey::Hmac(s) => id_of(b"tg-lifeline-id\0hmac-sha256\0", s),
        }
    }

    /// Whether `tag` authenticates `msg`, in constant time for HMAC (`verify_slice`) and
    /// with strict Ed25519 verification (no malleable signatures).
    pub fn verify(&self, msg: &[u8], tag: &[u8]) -> bool {
        match self {
            VerifyKey::Ed25519(k) => {
                let Ok(sig) = <[u8; 64]>::try_from(tag) else { return false };
                let sig = Signature::from_bytes(&sig);
                k.verify_strict(msg, &sig).is_ok()
            }
            VerifyKey::Hmac(s) => {
                let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(s).expect("HMAC takes any key length");
                mac.update(msg);
                mac.verify_slice(tag).is_ok()
            }
        }
    }

    /// Parse one `<scheme> <hex> ...` public line (a `.pub` file: the host key a client
    /// checks replies with); returns the key and the rest of the line.
    pub fn parse_line(line: &str) -> Result<(VerifyKey, String), String> {
        let mut w = line.split_whitespace();
        let scheme = w.next().and_then(scheme_of).ok_or("unknown scheme (ed25519 or hmac-sha256)")?;
        let bytes = w.next().and_then(unhex32).ok_or("the key must be 64 hex digits")?;
        let key = match scheme {
            Scheme::Ed25519 => VerifyKey::Ed25519(VerifyingKey::from_bytes(&bytes).map_err(|_| "not a valid Ed25519 public key")?),
            Scheme::HmacSha256 => VerifyKey::Hmac(bytes),
        };
        Ok((key, w.collect::<Vec<_>>().join(" ")))
    }
}

/// Which actions a key may ask for. Destructive kernel requests (sysrq letters) only when
/// listed one by one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allow {
    /// Bit per [`Action::code`] (status 1 .. thaw 5).
    actions: u8,
    /// Bit per sysrq letter (a-z, then 0-9).
    sysrq: u64,
}

impl Default for Allow {
    /// status, rescue, kill, freeze, thaw; no sysrq.
    fn default() -> Allow {
        Allow { actions: 0b11_1110, sysrq: 0 }
    }
}

fn sysrq_bit(letter: u8) -> Option<u64> {
    match letter {
        b'a'..=b'z' => Some(1 << (letter - b'a')),
        b'0'..=b'9' => Some(1 << (26 + letter - b'0')),
        _ => None,
    }
}

impl Allow {
    /// Whether `action` is allowed.
    pub fn permits(&self, action: Action) -> bool {
        match action {
            Action::Sysrq(letter) => sysrq_bit(letter).is_some_and(|b| self.sysrq & b != 0),
            other => self.actions & (1 << other.code()) != 0,
        }
    }

    /// Parse `status,rescue,kill,freeze,thaw,sysrq:fs`.
    pub fn parse(list: &str) -> Result<Allow, String> {
        let mut allow = Allow { actions: 0, sysrq: 0 };
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let bit = match item {
                "status" => 1,
                "rescue" => 2,
                "kill" => 3,
                "freeze" => 4,
                "thaw" => 5,
                _ => match item.strip_prefix("sysrq:") {
                    Some(letters) if !letters.is_empty() => {
                        for l in letters.bytes() {
                            allow.sysrq |= sysrq_bit(l).ok_or_else(|| format!("`{}` is not a sysrq letter", l as char))?;
                        }
                        continue;
                    }
                    _ => return Err(format!("unknown action `{item}` (status, rescue, kill, freeze, thaw, sysrq:LETTERS)")),
                },
            };
            allow.actions |= 1 << bit;
        }
        Ok(allow)
    }
}

/// One key a daemon trusts.
#[derive(Clone, Debug)]
pub struct AuthorizedKey {
    /// The key.
    pub key: VerifyKey,
    /// Its id, computed once.
    pub id: [u8; 8],
    /// What it may ask for.
    pub allow: Allow,
    /// The comment (usually the key's name), for logs.
    pub name: String,
}

/// Parse an authorized-keys file: one `<scheme> <hex> [allow=LIST] [comment]` per line,
/// `#` comments and blank lines skipped. Two lines with the same key id are an error.
pub fn parse_authorized(text: &str) -> Result<Vec<AuthorizedKey>, KeyError> {
    let mut keys: Vec<AuthorizedKey> = Vec::new();
    for (i, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, rest) = VerifyKey::parse_line(line).map_err(|e| key_error(i, e))?;
        let (allow, name) = match rest.strip_prefix("allow=") {
            Some(r) => {
                let (list, name) = r.split_once(' ').unwrap_or((r, ""));
                (Allow::parse(list).map_err(|e| key_error(i, e))?, name.trim().to_string())
            }
            None => (Allow::default(), rest),
        };
        let id = key.key_id();
        if keys.iter().any(|k| k.id == id) {
            return Err(key_error(i, "the same key twice"));
        }
        keys.push(AuthorizedKey { key, id, allow, name });
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_their_files() {
        for scheme in [Scheme::Ed25519, Scheme::HmacSha256] {
            let k = SecretKey::from_seed(scheme, [9; 32]);
            let (back, name) = SecretKey::parse(&k.to_file("ops laptop")).expect("parses");
            assert_eq!(name, "ops laptop");
            assert_eq!(back.key_id(), k.key_id());
            let auth = parse_authorized(&k.authorized_line("ops")).expect("parses");
            assert_eq!(auth[0].id, k.key_id());
            assert_eq!(auth[0].allow, Allow::default());
            let mut tag = [0u8; 64];
            let n = k.sign(b"msg", &mut tag);
            assert_eq!(n, scheme.tag_len());
            assert!(auth[0].key.verify(b"msg", &tag[..n]));
            assert!(!auth[0].key.verify(b"msh", &tag[..n]));
            assert!(!auth[0].key.verify(b"msg", &tag[..n - 1]));
        }
    }

    #[test]
    fn allow_lists() {
        let a = Allow::parse("status,sysrq:fs").expect("parses");
        assert!(a.permits(Action::Status));
        assert!(!a.permits(Action::Rescue));
        assert!(a.permits(Action::Sysrq(b'f')));
        assert!(!a.permits(Action::Sysrq(b'b')));
        assert!(!Allow::default().permits(Action::Sysrq(b'f')));
        assert!(Allow::default().permits(Action::Kill { pid: 1, start_time: None }));
        assert!(Allow::parse("reboot").is_err());
        assert!(Allow::parse("sysrq:!").is_err());
    }

    #[test]
    fn bad_key_files_name_the_line() {
        assert_eq!(parse_authorized("# c\n\ned25519 zz\n").unwrap_err().line, 3);
        assert!(parse_authorized("rsa 00\n").is_err());
        let k = SecretKey::from_seed(Scheme::HmacSha256, [1; 32]).authorized_line("a");
        assert!(parse_authorized(&format!("{k}{k}")).unwrap_err().what.contains("twice"));
        assert!(parse_authorized(&k.replace("hmac-sha256 ", "hmac-sha256 allow=x ")).is_err());
        let with_allow = k.replacen(" a\n", " allow=status,sysrq:f a\n", 1);
        let parsed = parse_authorized(&with_allow).expect("parses");
        assert!(parsed[0].allow.permits(Action::Sysrq(b'f')));
        assert_eq!(parsed[0].name, "a");
        assert!(SecretKey::parse("").is_err());
        assert!(SecretKey::parse("tg-lifeline rsa 00").is_err());
        assert!(SecretKey::parse("ssh-ed25519 AAAA").is_err());
        assert_ne!(host_id("web1"), host_id("web2"));
    }
}
