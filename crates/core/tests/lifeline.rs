//! The lifeline gate on arbitrary bytes: it never panics, never accepts what was not
//! signed, and checking allocates nothing (a counting global allocator).
// Test helpers may panic: a panic is a failing test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use thrashguard_core::lifeline::gate::{Clock, Gate, GateConfig, request};
use thrashguard_core::lifeline::keys::{SecretKey, host_id, parse_authorized};
use thrashguard_core::lifeline::wire::{self, Action, Scheme};

#[path = "support/counting.rs"]
mod counting;

#[global_allocator]
static ALLOC: counting::Counting = counting::Counting;

const T0: u64 = 1_795_000_000_000;

fn gate(scheme: Scheme) -> (Gate, SecretKey) {
    let key = SecretKey::from_seed(scheme, [3; 32]);
    let gate =
        Gate::new(parse_authorized(&key.authorized_line("ops")).unwrap(), GateConfig::new(host_id("h")), Clock { unix_ms: T0, mono_ms: 0 });
    (gate, key)
}

fn valid(key: &SecretKey, nonce: [u8; 16]) -> Vec<u8> {
    let mut out = [0u8; wire::MAX_DATAGRAM];
    let n = request(key, host_id("h"), Action::Kill { pid: 77, start_time: None }, T0, nonce, &mut out).unwrap();
    out[..n].to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn arbitrary_bytes_are_refused_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1400)) {
        let (mut g, _) = gate(Scheme::HmacSha256);
        let now = Clock { unix_ms: T0, mono_ms: 1 };
        prop_assert!(g.check(&bytes, [1; 16], now).is_err());
    }

    #[test]
    fn a_valid_datagram_changed_anywhere_is_refused(
        scheme in prop_oneof![Just(Scheme::Ed25519), Just(Scheme::HmacSha256)],
        at in any::<prop::sample::Index>(),
        xor in 1u8..=255,
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let (mut g, key) = gate(scheme);
        let mut d = valid(&key, [9; 16]);
        if truncate {
            d.truncate(cut.index(d.len()));
        } else {
            let i = at.index(d.len());
            d[i] ^= xor;
        }
        let now = Clock { unix_ms: T0, mono_ms: 1 };
        prop_assert!(g.check(&d, [1; 16], now).is_err());
    }
}

#[test]
fn checking_allocates_nothing() {
    for scheme in [Scheme::Ed25519, Scheme::HmacSha256] {
        let (mut g, key) = gate(scheme);
        let good: Vec<Vec<u8>> = (0..200u8).map(|i| valid(&key, [i; 16])).collect();
        let garbage: Vec<Vec<u8>> = (0..200u8).map(|i| vec![i; usize::from(i) * 5]).collect();
        let before = counting::allocations();
        let mut accepted = 0;
        for (i, (d, junk)) in good.iter().zip(&garbage).enumerate() {
            let now = Clock { unix_ms: T0, mono_ms: i as u64 * 100 };
            accepted += usize::from(g.check(d, [2; 16], now).is_ok());
            assert!(g.check(junk, [2; 16], now).is_err());
            assert!(g.check(d, [3; 16], now).is_err(), "replayed from elsewhere");
        }
        let allocations = counting::allocations() - before;
        assert!(accepted > 150, "{accepted}");
        assert_eq!(allocations, 0, "{scheme:?}: checking 600 datagrams allocated {allocations} times");
    }
}
