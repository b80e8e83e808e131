//! Policy unit tests on synthetic samples (the shared traces are tested in tests/traces.rs).

use super::*;
use crate::snapshot::StallTotals;

const MIB: u64 = 1024;

/// The default uncorroborated sustain, in ms.
fn sustain() -> u64 {
    PolicyConfig::default().sustain_ms
}

/// A synthetic scope: 1.5 GiB RAM, 4 GiB swap; each tick adds `full` µs of full stall per
/// 100 ms and `refaults` pages.
struct Sim {
    t_ms: u64,
    full_us: u64,
    some_us: u64,
    refaults: u64,
    available_mib: u64,
    swap_free_mib: u64,
    policy: Policy,
}

impl Sim {
    fn new() -> Sim {
        Sim {
            t_ms: 0,
            full_us: 0,
            some_us: 0,
            refaults: 0,
            available_mib: 1200,
            swap_free_mib: 4096,
            policy: Policy::new(PolicyConfig::default()),
        }
    }

    fn sample(&self, psi: bool) -> ScopeSample {
        ScopeSample {
            at: Micros::from_millis(self.t_ms),
            stall: psi.then_some(StallTotals { some: Micros(self.some_us), full: Micros(self.full_us) }),
            total: Kib(1500 * MIB),
            available: Kib(self.available_mib * MIB),
            swap_total: Kib(4096 * MIB),
            swap_free: Kib(self.swap_free_mib * MIB),
            refault_anon: Some(self.refaults),
            refault_file: Some(0),
            swapin: Some(self.refaults),
            majfault: Some(self.refaults),
        }
    }

    /// Run `ms` of 100 ms ticks with `full_frac` stall and `refault_rate` pages/s;
    /// return the time (ms) of the first rescue.
    fn run(&mut self, ms: u64, full_frac: f64, refault_rate: u64) -> Option<u64> {
        let mut first = None;
        for _ in 0..ms / 100 {
            self.t_ms += 100;
            self.full_us += (full_frac * 100_000.0) as u64;
            self.some_us += ((full_frac * 1.3).min(1.0) * 100_000.0) as u64;
            self.refaults += refault_rate / 10;
            let step = self.policy.step(&self.sample(true));
            if step.rescue.is_some() && first.is_none() {
                first = Some(self.t_ms);
            }
        }
        first
    }
}

#[test]
fn calm_machine_never_rescues_and_samples_slowly() {
    let mut sim = Sim::new();
    assert_eq!(sim.run(60_000, 0.0, 0), None);
    let step = sim.policy.step(&sim.sample(true));
    assert_eq!(step.phase, Phase::Calm);
    assert_eq!(step.next_sample, Micros::from_millis(1000));
}

#[test]
fn sustained_stall_with_memory_short_rescues_after_sustain() {
    let mut sim = Sim::new();
    sim.run(5000, 0.0, 0);
    sim.available_mib = 10;
    let at = sim.run(10_000, 0.5, 0).expect("rescued");
    // episode starts on the first tick whose trailing second reaches the floor
    assert!((4800 + sustain()..=5600 + sustain()).contains(&at), "rescued at {at}");
}

#[test]
fn refaults_shorten_the_wait() {
    let mut sim = Sim::new();
    sim.run(5000, 0.0, 0);
    sim.available_mib = 10;
    let at = sim.run(10_000, 0.5, 20_000).expect("rescued");
    assert!((5900..=6600).contains(&at), "rescued at {at}");
}

#[test]
fn a_short_spike_is_left_alone() {
    let mut sim = Sim::new();
    sim.run(5000, 0.0, 0);
    sim.available_mib = 5;
    assert_eq!(sim.run(2500, 0.45, 0), None);
    sim.available_mib = 1200;
    assert_eq!(sim.run(20_000, 0.0, 0), None);
}

#[test]
fn stall_without_memory_shortage_is_not_this_scope() {
    // e.g. a memory cgroup thrashing at its limit shows in system PSI while the machine has room
    let mut sim = Sim::new();
    assert_eq!(sim.run(20_000, 0.8, 50_000), None);
}

#[test]
fn light_stall_is_left_alone() {
    let mut sim = Sim::new();
    sim.available_mib = 10;
    assert_eq!(sim.run(30_000, 0.05, 40_000), None);
}

#[test]
fn one_episode_one_rescue_until_released() {
    let mut sim = Sim::new();
    sim.available_mib = 10;
    let first = sim.run(sustain() + 1000, 0.6, 0).expect("rescued");
    // the edge never reports release: nothing for release_wait_ms, then windows restart
    let mut decisions = Vec::new();
    for _ in 0..100 {
        if let Some(t) = sim.run(100, 0.6, 0) {
            decisions.push(t);
        }
    }
    let next = decisions.first().copied().expect("pressure persisted, so a second rescue");
    assert!(next >= first + 5000 + sustain(), "second rescue at {next}, first at {first}");
}

#[test]
fn released_rescue_rearms_with_a_fresh_window() {
    let mut sim = Sim::new();
    sim.available_mib = 10;
    let first = sim.run(sustain() + 1000, 0.6, 0).expect("rescued");
    sim.policy.rescue_finished(Micros::from_millis(sim.t_ms + 200));
    sim.available_mib = 800;
    // recovery: stalls fall, memory back: no second rescue
    assert_eq!(sim.run(10_000, 0.3, 30_000), None);
    assert!(first > 0);
}

/// The first half second after start, and after a rescue clears the window, has no trailing
/// second to measure: the evidence says "not measured" (None), never a quiet 0.
#[test]
fn unmeasured_seconds_are_none_not_zero() {
    let mut sim = Sim::new();
    sim.available_mib = 10;
    let tick = |sim: &mut Sim| {
        sim.t_ms += 100;
        sim.full_us += 60_000;
        sim.some_us += 70_000;
        sim.refaults += 1000;
        sim.policy.step(&sim.sample(true)).evidence
    };
    let measured = |e: &Evidence| [e.full, e.some, e.anon_refaults_per_s, e.file_refaults_per_s, e.majfaults_per_s].map(|v| v.is_some());
    let first: Vec<_> = (0..10).map(|_| tick(&mut sim)).collect();
    assert_eq!(measured(&first[0]), [false; 5], "{:?}", first[0]);
    assert_eq!(measured(&first[9]), [true; 5], "{:?}", first[9]);
    assert!(first[9].full.is_some_and(|f| (f - 0.6).abs() < 0.01), "{:?}", first[9]);
    assert!(first[9].anon_refaults_per_s.is_some_and(|r| (r - 10_000.0).abs() < 100.0), "{:?}", first[9]);
    assert!(
        Rescue { reason: Reason::Thrashing, evidence: first[0] }.to_string().contains("full stall ?% last 1 s, rates not measured yet")
    );
    sim.run(sustain() + 1000, 0.6, 10_000).expect("rescued");
    sim.policy.rescue_finished(Micros::from_millis(sim.t_ms));
    let after = tick(&mut sim);
    assert_eq!(measured(&after), [false; 5], "the window restarted: {after:?}");
    // without PSI the stall is never measured, the rates are
    sim.t_ms += 1000;
    let no_psi = sim.policy.step(&sim.sample(false)).evidence;
    assert_eq!(measured(&no_psi), [false, false, true, true, true], "{no_psi:?}");
}

#[test]
fn failed_rescue_retries_after_backoff() {
    let mut sim = Sim::new();
    sim.available_mib = 10;
    let first = sim.run(sustain() + 1000, 0.6, 0).expect("rescued");
    sim.policy.rescue_failed(Micros::from_millis(first));
    let second = sim.run(10_000, 0.6, 0).expect("retried");
    assert!(second <= first + 1500, "retried on the kept episode: {second} vs {first}");
    assert!(second >= first + 1000, "{second} vs {first}");
}

#[test]
fn without_psi_low_memory_and_no_swap_rescues() {
    let mut sim = Sim::new();
    sim.swap_free_mib = 10;
    sim.available_mib = 20;
    let mut at = None;
    for _ in 0..30 {
        sim.t_ms += 100;
        if sim.policy.step(&sim.sample(false)).rescue.is_some() {
            at = Some(sim.t_ms);
            break;
        }
    }
    let at = at.expect("rescued");
    assert!((1000..=1300).contains(&at), "{at}");
}

#[test]
fn without_psi_big_steady_process_is_left_alone() {
    let mut sim = Sim::new();
    sim.available_mib = 300; // 80 % of RAM used, steady, swap free
    for _ in 0..600 {
        sim.t_ms += 100;
        assert!(sim.policy.step(&sim.sample(false)).rescue.is_none());
    }
}

#[test]
fn time_going_backwards_or_standing_still_is_harmless() {
    let mut sim = Sim::new();
    sim.available_mib = 10;
    sim.run(1000, 0.9, 0);
    let mut s = sim.sample(true);
    for back in [0u64, 500, 100_000] {
        s.at = Micros::from_millis(sim.t_ms.saturating_sub(back));
        let _ = sim.policy.step(&s);
    }
}

#[test]
fn calm_interval_is_fixed_when_set_but_pressure_always_samples_fast() {
    let mut sim = Sim::new();
    sim.policy.set_calm_interval(Some(Micros::from_secs(5)));
    sim.run(3000, 0.0, 0);
    assert_eq!(sim.policy.step(&sim.sample(true)).next_sample, Micros::from_secs(5));
    sim.available_mib = 10;
    sim.t_ms += 100;
    assert_eq!(sim.policy.step(&sim.sample(true)).next_sample, Micros::from_millis(100), "short of memory: fast");
}

#[test]
fn short_but_calm_under_a_stall_trigger_samples_every_second() {
    let mut sim = Sim::new();
    sim.policy.set_calm_interval(Some(Micros::from_secs(5)));
    sim.policy.set_stall_wakeup(true);
    sim.available_mib = 10;
    sim.run(3000, 0.0, 0);
    let calm = sim.policy.step(&sim.sample(true));
    assert_eq!((calm.phase, calm.next_sample), (Phase::Calm, Micros::from_secs(1)), "short, no stall: the trigger will wake it");
    // the first stall: fast again, trigger or not
    sim.run(1500, 0.9, 0);
    let stalled = sim.policy.step(&sim.sample(true));
    assert_ne!(stalled.phase, Phase::Calm);
    assert_eq!(stalled.next_sample, Micros::from_millis(100));
    // without PSI the trigger means nothing: memory short is all there is to go on
    let mut blind = Sim::new();
    blind.policy.set_stall_wakeup(true);
    blind.available_mib = 10;
    blind.run(3000, 0.0, 0);
    assert_eq!(blind.policy.step(&blind.sample(false)).next_sample, Micros::from_millis(100));
}
