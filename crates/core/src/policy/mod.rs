//! The decision: is this scope thrashing, and must it be rescued now?
//!
//! Owns the thrash state machine of one pressure scope (the machine, or one memory
//! cgroup): `step(sample) -> Step` turns cumulative counters into stall fractions and
//! refault rates over short windows, follows how long stalls have lasted, and decides to
//! rescue. It also paces the next sample. It is deterministic and allocation-free: the
//! daemon and `replay` call the very same code. It must never read a file, a clock or
//! anything else than the samples it is given, and it never picks a victim (see [`rank`]).
//!
//! The rule, in words (docs/policy.md has the reasoning and the numbers):
//! * **Stall** is PSI `full`: the share of time when every non-idle task waited for memory.
//!   An episode starts when the full stall over the trailing second reaches
//!   `stall_floor_pct` and ends when it falls below it.
//! * The scope is rescued when an episode has lasted `sustain_ms` with a mean full stall
//!   of at least `full_stall_pct`, **and** memory is short (available at most
//!   `available_below_pct` of the scope's total). A short allocation spike stalls as hard as
//!   a hog for its first 2-3 s, so persistence is what tells them apart.
//! * Evidence that the working set is being lost shortens the wait to
//!   `sustain_corroborated_ms`: refaults or swap-ins at `refault_pages_per_s` or more (pages
//!   evicted and faulted straight back: thrashing in the strict sense), or headroom that will
//!   be gone within `exhaustion_horizon_ms` while under `exhaustion_headroom_pct`.
//! * Without PSI the scope falls back to memory signals: available memory and free swap
//!   both nearly exhausted, or memory short with a storm of refaults / major faults.
//! * After a rescue no decision is taken until the edge reports the victim's memory released
//!   (or `release_wait_ms` passed); every window then restarts, so one episode costs one
//!   victim unless pressure builds up again from scratch.

pub mod rank;
pub mod window;

use serde::{Deserialize, Serialize};

use crate::snapshot::ScopeSample;
use crate::units::{Kib, Micros};
use window::{Point, Rates, Window};

/// Tunables of the policy, as they appear in the `[policy]` table of the config file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Mean PSI full stall (percent of wall time) over the sustain window that rescues.
    pub full_stall_pct: f64,
    /// Full stall over the trailing second that starts (and, below it, ends) an episode.
    pub stall_floor_pct: f64,
    /// How long an episode must last before a rescue, without further evidence.
    pub sustain_ms: u64,
    /// How long it must last when refaults or imminent exhaustion corroborate it.
    pub sustain_corroborated_ms: u64,
    /// Refaults + swap-ins per second (pages) that count as losing the working set.
    pub refault_pages_per_s: u64,
    /// Act only while available memory is at most this percent of the scope's total.
    pub available_below_pct: f64,
    /// Headroom lasting less than this at its current trend corroborates an episode...
    pub exhaustion_horizon_ms: u64,
    /// ...when headroom is also under this percent of memory + swap.
    pub exhaustion_headroom_pct: f64,
    /// After a rescue, wait at most this long for the victim's memory to be released.
    pub release_wait_ms: u64,
    /// After a rescue that found nothing to act on, wait this long before trying again.
    pub retry_after_failure_ms: u64,
    /// Shortest sampling interval (under pressure).
    pub min_interval_ms: u64,
    /// Longest sampling interval (idle, large headroom) without a PSI trigger.
    pub max_interval_ms: u64,
    /// Sampling interval while calm when a PSI trigger will wake the guard at the first stall.
    pub max_interval_with_trigger_ms: u64,
    /// Without PSI: available memory (percent of total) that, with swap exhausted, rescues.
    pub no_psi_available_pct: f64,
    /// Without PSI: free swap (percent of swap) counted as exhausted.
    pub no_psi_swap_free_pct: f64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            full_stall_pct: 20.0,
            stall_floor_pct: 10.0,
            sustain_ms: 4000,
            sustain_corroborated_ms: 1000,
            refault_pages_per_s: 1000,
            available_below_pct: 10.0,
            exhaustion_horizon_ms: 5000,
            exhaustion_headroom_pct: 10.0,
            release_wait_ms: 5000,
            retry_after_failure_ms: 1000,
            min_interval_ms: 100,
            max_interval_ms: 1000,
            max_interval_with_trigger_ms: 5000,
            no_psi_available_pct: 3.0,
            no_psi_swap_free_pct: 5.0,
        }
    }
}

/// Why a scope is rescued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Sustained full stall while the working set is refaulted back in.
    Thrashing,
    /// Sustained full stall while headroom runs out.
    StallNearExhaustion,
    /// Sustained full stall with memory short, without further evidence.
    SustainedStall,
    /// No PSI: available memory and free swap both exhausted.
    LowMemory,
    /// No PSI: memory short and a sustained storm of refaults or major faults.
    FaultStorm,
    /// An operator asked for it through an authenticated lifeline request (never the
    /// policy's own decision).
    Lifeline,
}

impl Reason {
    /// Every reason, in a fixed order (metrics are indexed by it).
    pub const ALL: [Reason; 6] =
        [Reason::Thrashing, Reason::StallNearExhaustion, Reason::SustainedStall, Reason::LowMemory, Reason::FaultStorm, Reason::Lifeline];

    /// Position in [`Reason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Stable snake_case name (logs, JSON, metrics labels).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Thrashing => "thrashing",
            Reason::StallNearExhaustion => "stall_near_exhaustion",
            Reason::SustainedStall => "sustained_stall",
            Reason::LowMemory => "low_memory",
            Reason::FaultStorm => "fault_storm",
            Reason::Lifeline => "lifeline",
        }
    }
}

/// What the policy measured at one step: the numbers behind every decision and log line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Sample time.
    pub at: Micros,
    /// Whether the scope has PSI.
    pub psi: bool,
    /// Full stall over the trailing second (0..=1); `None` when not measured: no PSI, or no
    /// reading half a second old yet (the first samples after start, and after a rescue clears
    /// the window).
    pub full: Option<f64>,
    /// Some stall over the trailing second (0..=1); `None` as for `full`.
    pub some: Option<f64>,
    /// Mean full stall over the window that decided (0..=1); `None` when no window was
    /// evaluated (calm, too short an episode, no PSI, or an operator's lifeline request).
    pub full_mean: Option<f64>,
    /// How long the current episode has lasted.
    pub episode: Micros,
    /// Available memory.
    pub available: Kib,
    /// The scope's total memory.
    pub total: Kib,
    /// Swap the scope may use.
    pub swap_total: Kib,
    /// Available + free swap.
    pub headroom: Kib,
    /// Headroom trend over 5 s, KiB/s (negative: shrinking).
    pub headroom_trend_kib_s: Option<f64>,
    /// Time until headroom is gone at that trend.
    pub exhaustion_in: Option<Micros>,
    /// Anonymous refaults / swap-ins per second over the trailing second; `None` when no reading
    /// half a second old exists yet (as for `full`).
    pub anon_refaults_per_s: Option<f64>,
    /// File refaults per second; `None` when not measured.
    pub file_refaults_per_s: Option<f64>,
    /// Major faults per second; `None` when not measured.
    pub majfaults_per_s: Option<f64>,
}

impl Evidence {
    /// Available memory as a percentage of the scope's total.
    pub fn available_pct(&self) -> f64 {
        self.available.pct_of(self.total)
    }
}

/// A decision to rescue the scope.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Rescue {
    /// Why.
    pub reason: Reason,
    /// The numbers that made it.
    pub evidence: Evidence,
}

impl std::fmt::Display for Rescue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = &self.evidence;
        write!(f, "{}:", self.reason.as_str())?;
        let last = |v: Option<f64>, scale: f64| v.map_or_else(|| "?".to_owned(), |v| format!("{:.0}", v * scale));
        match (e.psi, e.full_mean) {
            (true, Some(mean)) => {
                write!(f, " full stall {:.0}% over {:.1} s ({}% last 1 s),", mean * 100.0, e.episode.as_secs_f64(), last(e.full, 100.0))?
            }
            (true, None) => write!(f, " full stall {}% last 1 s,", last(e.full, 100.0))?,
            (false, _) => {}
        }
        match (e.anon_refaults_per_s, e.file_refaults_per_s, e.majfaults_per_s) {
            (Some(anon), Some(file), Some(maj)) => write!(f, " refaults {anon:.0}+{file:.0} pages/s (anon+file), majfaults {maj:.0}/s,")?,
            _ => write!(f, " rates not measured yet,")?,
        }
        write!(
            f,
            " available {} MiB ({:.1}% of {} MiB), headroom {} MiB",
            e.available.mib(),
            e.available_pct(),
            e.total.mib(),
            e.headroom.mib()
        )?;
        if let Some(t) = e.exhaustion_in {
            write!(f, ", exhausted in {:.1} s", t.as_secs_f64())?;
        }
        Ok(())
    }
}

/// Where the policy stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Nothing going on.
    Calm,
    /// An episode of stall (or of low memory without PSI) is under way.
    Pressure,
    /// A rescue was decided; waiting for its memory to come back.
    Recovering,
}

impl Phase {
    /// Every phase, in a fixed order.
    pub const ALL: [Phase; 3] = [Phase::Calm, Phase::Pressure, Phase::Recovering];

    /// Stable lower-case name (status, metrics labels).
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Calm => "calm",
            Phase::Pressure => "pressure",
            Phase::Recovering => "recovering",
        }
    }
}

/// The result of one step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    /// Rescue now, when set.
    pub rescue: Option<Rescue>,
    /// Sleep at most this long before the next sample.
    pub next_sample: Micros,
    /// What was measured.
    pub evidence: Evidence,
    /// State after this step.
    pub phase: Phase,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    /// Decisions allowed from `not_before` on.
    Armed { not_before: Micros },
    /// A rescue was decided at `since`.
    Recovering { since: Micros },
}

/// The thrash state machine of one scope.
#[derive(Clone, Debug)]
pub struct Policy {
    cfg: PolicyConfig,
    window: Window,
    state: State,
    /// Start of the current episode (stall above the floor, or memory signals without PSI).
    episode_since: Option<Micros>,
    /// Fixed calm interval, when set (see [`Policy::set_calm_interval`]).
    calm_interval: Option<Micros>,
    /// A PSI trigger wakes the guard at the first stall (see [`Policy::set_stall_wakeup`]).
    stall_wakeup: bool,
}

const SECOND: Micros = Micros::from_secs(1);
/// The shortest interval the trailing-second stall and rates are measured over: until the
/// window holds a reading this old they are `None` (not measured).
pub const MIN_RATE_SPAN: Micros = Micros::from_millis(500);
const TREND_SPAN: Micros = Micros::from_secs(5);
/// Fill rates used to pace sampling when calm (earlyoom's: RAM 6000 MiB/s, swap 800 MiB/s).
const RAM_FILL_KIB_S: f64 = 6000.0 * 1024.0;
const SWAP_FILL_KIB_S: f64 = 800.0 * 1024.0;

impl Policy {
    /// A fresh policy.
    pub fn new(cfg: PolicyConfig) -> Policy {
        Policy {
            cfg,
            window: Window::default(),
            state: State::Armed { not_before: Micros::ZERO },
            episode_since: None,
            calm_interval: None,
            stall_wakeup: false,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &PolicyConfig {
        &self.cfg
    }

    /// Feed one sample; get the decision, the evidence and when to sample next.
    pub fn step(&mut self, s: &ScopeSample) -> Step {
        let now = s.at;
        let point = Point::of(s);
        let measured = self.window.rates(&point, SECOND, MIN_RATE_SPAN);
        // Decisions read an unmeasured second as a quiet one; the evidence says it was not measured.
        let r1 = measured.unwrap_or_default();
        let stall = measured.filter(|_| s.stall.is_some());
        self.window.push(point);
        let cfg = &self.cfg;

        let trend = self.window.headroom_slope(now, TREND_SPAN);
        let headroom = s.headroom();
        let exhaustion_in = trend.filter(|&k| k < 0.0).map(|k| Micros::from_secs_f64(headroom.0 as f64 / -k));
        let mut ev = Evidence {
            at: now,
            psi: s.stall.is_some(),
            full: stall.map(|r| r.full),
            some: stall.map(|r| r.some),
            full_mean: None,
            episode: Micros::ZERO,
            available: s.available,
            total: s.total,
            swap_total: s.swap_total,
            headroom,
            headroom_trend_kib_s: trend,
            exhaustion_in,
            anon_refaults_per_s: measured.map(|r| r.anon_in),
            file_refaults_per_s: measured.map(|r| r.file_in),
            majfaults_per_s: measured.map(|r| r.majfault),
        };
        let short = ev.available_pct() <= cfg.available_below_pct;

        // Follow the episode.
        let trouble = if ev.psi { None } else { self.no_psi_trouble(s, &r1, short) };
        let in_episode = if ev.psi { r1.full * 100.0 >= cfg.stall_floor_pct } else { trouble.is_some() };
        if in_episode {
            self.episode_since.get_or_insert(now);
        } else {
            self.episode_since = None;
        }
        ev.episode = self.episode_since.map(|t| now.saturating_sub(t)).unwrap_or_default();

        let mut rescue = None;
        match self.state {
            State::Recovering { since } => {
                if now.saturating_sub(since).as_millis() >= cfg.release_wait_ms {
                    self.rearm(now);
                }
            }
            State::Armed { not_before } if now >= not_before && self.episode_since.is_some() => {
                rescue = if ev.psi { self.decide_psi(&point, &r1, short, &mut ev) } else { self.decide_no_psi(trouble, &ev) };
                if rescue.is_some() {
                    // Windows are kept until the rescue is over: a failed rescue retries on them.
                    self.state = State::Recovering { since: now };
                }
            }
            State::Armed { .. } => {}
        }
        let phase = match self.state {
            State::Recovering { .. } => Phase::Recovering,
            State::Armed { .. } if self.episode_since.is_some() => Phase::Pressure,
            State::Armed { .. } => Phase::Calm,
        };
        let next_sample = self.pace(s, phase, short);
        Step { rescue: rescue.map(|reason| Rescue { reason, evidence: ev }), next_sample, evidence: ev, phase }
    }

    /// The edge reports that the rescue finished: the victim exited and its memory was
    /// released (or it gave up waiting). Windows restart from here.
    pub fn rescue_finished(&mut self, at: Micros) {
        self.rearm(at);
    }

    /// The edge found nothing to rescue (no eligible victim, or the action failed):
    /// try again after `retry_after_failure_ms` if the episode goes on; the episode and
    /// its windows are kept.
    pub fn rescue_failed(&mut self, at: Micros) {
        self.state = State::Armed { not_before: Micros(at.0 + self.cfg.retry_after_failure_ms * 1000) };
    }

    fn rearm(&mut self, at: Micros) {
        self.state = State::Armed { not_before: at };
        self.window.clear();
        self.episode_since = None;
    }

    fn corroborated(&self, r1: &Rates, ev: &Evidence) -> Option<Reason> {
        let cfg = &self.cfg;
        if r1.refaults() >= cfg.refault_pages_per_s as f64 {
            return Some(Reason::Thrashing);
        }
        let all = ev.total.saturating_add(ev.swap_total);
        let low_headroom = all.0 > 0 && ev.headroom.pct_of(all) <= cfg.exhaustion_headroom_pct;
        let soon = ev.exhaustion_in.is_some_and(|t| t.as_millis() <= cfg.exhaustion_horizon_ms);
        (low_headroom && soon).then_some(Reason::StallNearExhaustion)
    }

    fn decide_psi(&self, current: &Point, r1: &Rates, short: bool, ev: &mut Evidence) -> Option<Reason> {
        let cfg = &self.cfg;
        let corroboration = self.corroborated(r1, ev);
        let sustain = Micros::from_millis(if corroboration.is_some() { cfg.sustain_corroborated_ms } else { cfg.sustain_ms });
        if ev.episode < sustain {
            return None;
        }
        let mean = self.window.rates(current, sustain, sustain)?;
        ev.full_mean = Some(mean.full);
        (short && mean.full * 100.0 >= cfg.full_stall_pct).then_some(corroboration.unwrap_or(Reason::SustainedStall))
    }

    /// Without PSI: the memory signals that mean trouble, if any.
    fn no_psi_trouble(&self, s: &ScopeSample, r1: &Rates, short: bool) -> Option<Reason> {
        let cfg = &self.cfg;
        let swap_gone = s.swap_total.0 == 0 || s.swap_free.pct_of(s.swap_total) <= cfg.no_psi_swap_free_pct;
        if swap_gone && s.available.pct_of(s.total) <= cfg.no_psi_available_pct {
            return Some(Reason::LowMemory);
        }
        let faults = r1.refaults().max(r1.majfault);
        (short && faults >= cfg.refault_pages_per_s as f64).then_some(Reason::FaultStorm)
    }

    fn decide_no_psi(&self, trouble: Option<Reason>, ev: &Evidence) -> Option<Reason> {
        let reason = trouble?;
        let sustain = match reason {
            Reason::LowMemory => self.cfg.sustain_corroborated_ms,
            _ => self.cfg.sustain_ms,
        };
        (ev.episode.as_millis() >= sustain).then_some(reason)
    }

    /// Fix the calm sampling interval instead of pacing by fill rate: the daemon sets it
    /// when a PSI trigger will wake it as soon as stalls start (`max_interval_with_trigger_ms`),
    /// and for cgroup scopes, whose thrash takes a whole sustain window to show anyway.
    pub fn set_calm_interval(&mut self, interval: Option<Micros>) {
        self.calm_interval = interval;
    }

    /// Say that a PSI trigger on this scope's pressure file wakes the guard as soon as
    /// stalls start. Every PSI rescue needs a sustained full stall first, so while calm a
    /// scope short of memory is then sampled every `max_interval_ms` (its trailing second
    /// stays measured for the trigger's first wake-up) instead of every `min_interval_ms`:
    /// a machine that holds 90 % of its RAM steadily costs a tenth of the reads.
    pub fn set_stall_wakeup(&mut self, armed: bool) {
        self.stall_wakeup = armed;
    }

    fn pace(&self, s: &ScopeSample, phase: Phase, short: bool) -> Micros {
        let (min, max) = (self.cfg.min_interval_ms, self.cfg.max_interval_ms.max(self.cfg.min_interval_ms));
        if phase != Phase::Calm {
            return Micros::from_millis(min);
        }
        if short {
            return Micros::from_millis(if self.stall_wakeup && s.stall.is_some() { max } else { min });
        }
        if let Some(calm) = self.calm_interval {
            return calm.max(Micros::from_millis(min));
        }
        // Time for the fastest plausible allocation to eat the room above the gate.
        let gate = s.total.0 as f64 * self.cfg.available_below_pct / 100.0;
        let ram = (s.available.0 as f64 - gate).max(0.0) / RAM_FILL_KIB_S;
        let swap = s.swap_free.0 as f64 / SWAP_FILL_KIB_S;
        let ms = ((ram + swap) * 1000.0) as u64;
        Micros::from_millis(ms.clamp(min, max))
    }
}

#[cfg(test)]
mod tests;
