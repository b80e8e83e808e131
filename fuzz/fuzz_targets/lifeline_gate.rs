//! Arbitrary datagrams at the lifeline gate: it must never panic and never accept one
//! (no input carries a valid authenticator for the key below, short of breaking HMAC).
#![no_main]

use libfuzzer_sys::fuzz_target;
use thrashguard_core::lifeline::gate::{Clock, Gate, GateConfig};
use thrashguard_core::lifeline::keys::{SecretKey, host_id, parse_authorized};
use thrashguard_core::lifeline::wire::{self, Scheme};

fuzz_target!(|data: &[u8]| {
    let key = SecretKey::from_seed(Scheme::HmacSha256, [7; 32]);
    let Ok(keys) = parse_authorized(&key.authorized_line("fuzz")) else { return };
    let mut gate = Gate::new(keys, GateConfig::new(host_id("fuzz")), Clock { unix_ms: 1_795_000_000_000, mono_ms: 0 });
    let now = Clock { unix_ms: 1_795_000_000_000, mono_ms: 1 };
    assert!(gate.check(data, [1; 16], now).is_err());
    // the parser alone, at the client's larger limit
    let _ = wire::parse(data, wire::MAX_DATAGRAM);
});
