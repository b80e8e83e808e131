//! The pressure timeline the guard keeps in memory, and the event it stores after an action.
//!
//! Owns [`Ring`], a two-tier ring of [`Point`]s reserved once (the last minute at the
//! sampling rate, the last ten minutes at 1 Hz) whose [`Ring::push`] never allocates, and
//! [`Event`], what `history` lists and `report` draws: the victim, the reason, the evidence
//! and the timeline around the action. It never touches the OS, never reads a clock (times
//! are the guard's monotonic [`Micros`] and a wall-clock stamp the caller passes in) and never
//! stores anything: the binary's store does.

use serde::{Deserialize, Serialize};

use crate::policy::{Evidence, Phase, Reason};
use crate::units::{Kib, Micros};

/// One sample on the timeline (the scope's numbers as the policy saw them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Monotonic sample time (the guard's clock; in a stored event, relative to the action:
    /// see [`Event::timeline`]).
    pub t: Micros,
    /// Full stall over the trailing second (0..=1).
    pub full: f32,
    /// Some stall over the trailing second (0..=1).
    pub some: f32,
    /// Available memory + free swap.
    pub headroom: Kib,
    /// Available memory.
    pub available: Kib,
    /// Anonymous refaults (swap-ins) per second.
    pub swap_in_per_s: f32,
    /// File refaults per second.
    pub file_refaults_per_s: f32,
    /// Major faults per second.
    pub majfaults_per_s: f32,
    /// The policy's phase after this sample.
    pub phase: PhaseTag,
}

/// [`Phase`] as stored (serde and `Default` for the reserved slots).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseTag {
    /// Nothing going on.
    #[default]
    Calm,
    /// An episode under way.
    Pressure,
    /// Waiting for a rescue's memory to come back.
    Recovering,
}

impl From<Phase> for PhaseTag {
    fn from(p: Phase) -> PhaseTag {
        match p {
            Phase::Calm => PhaseTag::Calm,
            Phase::Pressure => PhaseTag::Pressure,
            Phase::Recovering => PhaseTag::Recovering,
        }
    }
}

impl Point {
    /// The point for one policy step.
    pub fn from_evidence(e: &Evidence, phase: Phase) -> Point {
        Point {
            t: e.at,
            full: e.full as f32,
            some: e.some as f32,
            headroom: e.headroom,
            available: e.available,
            swap_in_per_s: e.anon_refaults_per_s as f32,
            file_refaults_per_s: e.file_refaults_per_s as f32,
            majfaults_per_s: e.majfaults_per_s as f32,
            phase: phase.into(),
        }
    }
}

/// A fixed-capacity circular buffer (oldest overwritten).
#[derive(Clone, Debug)]
struct Circle {
    slots: Box<[Point]>,
    /// Index of the next write.
    head: usize,
    len: usize,
}

impl Circle {
    fn new(capacity: usize) -> Circle {
        Circle { slots: vec![Point::default(); capacity.max(1)].into_boxed_slice(), head: 0, len: 0 }
    }

    fn push(&mut self, p: Point) {
        self.slots[self.head] = p;
        self.head = (self.head + 1) % self.slots.len();
        self.len = (self.len + 1).min(self.slots.len());
    }

    /// Oldest first.
    fn iter(&self) -> impl Iterator<Item = &Point> {
        let cap = self.slots.len();
        let start = (self.head + cap - self.len) % cap;
        (0..self.len).map(move |i| &self.slots[(start + i) % cap])
    }

    fn last(&self) -> Option<&Point> {
        (self.len > 0).then(|| &self.slots[(self.head + self.slots.len() - 1) % self.slots.len()])
    }
}

/// How much timeline the guard keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingSpan {
    /// Seconds kept at the full sampling rate.
    pub fine_secs: u32,
    /// The fastest sampling interval (sizes the fine tier).
    pub min_interval: Micros,
    /// Seconds kept at 1 Hz.
    pub coarse_secs: u32,
}

impl Default for RingSpan {
    /// The last 60 s at up to 10 Hz and the last 10 min at 1 Hz: 1,200 points, ~58 KiB.
    fn default() -> RingSpan {
        RingSpan { fine_secs: 60, min_interval: Micros::from_millis(100), coarse_secs: 600 }
    }
}

/// The two-tier timeline: every sample for the last minute, one per second for ten.
/// Reserved by [`Ring::new`]; [`Ring::push`] and [`Ring::copy_window`] into a reserved
/// vector never allocate.
#[derive(Clone, Debug)]
pub struct Ring {
    fine: Circle,
    coarse: Circle,
}

impl Ring {
    /// Reserve a ring for `span`.
    pub fn new(span: RingSpan) -> Ring {
        let per_sec = (1_000_000 / span.min_interval.0.max(1)).max(1) as usize;
        Ring { fine: Circle::new(span.fine_secs as usize * per_sec), coarse: Circle::new(span.coarse_secs as usize) }
    }

    /// Points the ring can hold in all.
    pub fn capacity(&self) -> usize {
        self.fine.slots.len() + self.coarse.slots.len()
    }

    /// Add a sample (times must not go backwards; a point older than the last is dropped).
    pub fn push(&mut self, p: Point) {
        if self.fine.last().is_some_and(|last| p.t < last.t) {
            return;
        }
        self.fine.push(p);
        if self.coarse.last().is_none_or(|last| p.t.0 >= last.t.0 + 1_000_000) {
            self.coarse.push(p);
        }
    }

    /// The newest point.
    pub fn last(&self) -> Option<&Point> {
        self.fine.last()
    }

    /// Copy the points with `from <= t <= to` into `out` (cleared first), oldest first: the
    /// 1 Hz tier where the fine tier no longer reaches, the fine tier after. Allocates only
    /// when `out` has less capacity than [`Ring::capacity`].
    pub fn copy_window(&self, from: Micros, to: Micros, out: &mut Vec<Point>) {
        out.clear();
        let fine_start = self.fine.iter().next().map(|p| p.t);
        let older = self.coarse.iter().filter(|p| fine_start.is_none_or(|s| p.t < s));
        for p in older.chain(self.fine.iter()) {
            if p.t >= from && p.t <= to {
                out.push(*p);
            }
        }
    }
}

/// Which action an event records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventAction {
    /// SIGKILL (or a whole cgroup killed).
    Kill,
    /// Frozen (cgroup.freeze or SIGSTOP).
    Freeze,
    /// Decided but not acted on (`--dry-run`).
    DryRun,
}

/// The process an action hit.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Victim {
    /// Pid.
    pub pid: u32,
    /// Name (comm).
    pub name: String,
    /// Command line, where read (may be empty).
    pub cmdline: String,
    /// RSS + swap.
    pub footprint: Kib,
    /// Swapped-out part of the footprint.
    pub swap: Kib,
    /// /proc/PID/oom_score, where read.
    pub oom_score: Option<u32>,
}

/// One action with the timeline around it: what `history` lists and `report` draws.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The store's id (`None` before it is stored).
    pub id: Option<i64>,
    /// Wall-clock time of the action, milliseconds since the Unix epoch.
    pub unix_ms: i64,
    /// Host name.
    pub host: String,
    /// The pressured scope: `system`, a cgroup path or `nodeN`.
    pub scope: String,
    /// What was done.
    pub action: EventAction,
    /// Why.
    pub reason: Reason,
    /// How it went: `killed`, `frozen`, `gone`, `pid reused: nothing sent`, `failed`, `dry run`.
    pub outcome: String,
    /// The victim.
    pub victim: Victim,
    /// The numbers that made the decision.
    pub evidence: Evidence,
    /// Milliseconds from the sample that decided to the victim's exit, when seen.
    pub exit_after_ms: Option<f64>,
    /// The timeline around the action, oldest first; each point's `t` is relative to the
    /// action, offset by [`TIMELINE_ZERO`] so that the points before it stay unsigned
    /// (use [`Event::seconds`]).
    pub timeline: Vec<Point>,
}

/// The action's instant on an event's timeline (1 h in): a point at `t` happened
/// `t - TIMELINE_ZERO` after the action.
pub const TIMELINE_ZERO: Micros = Micros(3_600_000_000);

impl Event {
    /// Seconds from the action to a timeline point (negative: before).
    pub fn seconds(p: &Point) -> f64 {
        (p.t.0 as f64 - TIMELINE_ZERO.0 as f64) / 1e6
    }

    /// Move monotonic timeline points (as the ring holds them) onto the event's axis, the
    /// action taken at monotonic `action_at`.
    pub fn rebase(points: &mut [Point], action_at: Micros) {
        for p in points {
            p.t = Micros((p.t.0 + TIMELINE_ZERO.0).saturating_sub(action_at.0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(t_ms: u64, full: f32) -> Point {
        Point { t: Micros::from_millis(t_ms), full, ..Point::default() }
    }

    #[test]
    fn ring_keeps_fine_then_coarse() {
        let mut ring = Ring::new(RingSpan { fine_secs: 2, min_interval: Micros::from_millis(100), coarse_secs: 10 });
        assert_eq!(ring.capacity(), 30);
        for i in 0..100 {
            ring.push(pt(i * 100, i as f32));
        }
        let mut out = Vec::with_capacity(ring.capacity());
        ring.copy_window(Micros::ZERO, Micros::from_millis(1_000_000), &mut out);
        // the fine tier holds the last 2 s (20 points); the coarse tier adds one per second before
        assert_eq!(out.last().map(|p| p.t), Some(Micros::from_millis(9_900)));
        assert!(out.windows(2).all(|w| w[0].t < w[1].t), "oldest first, no duplicates");
        let fine: Vec<_> = out.iter().filter(|p| p.t >= Micros::from_millis(8_000)).collect();
        assert_eq!(fine.len(), 20);
        assert_eq!(out.first().map(|p| p.t), Some(Micros::ZERO));
        ring.copy_window(Micros::from_millis(9_000), Micros::from_millis(9_500), &mut out);
        assert_eq!(out.len(), 6);
    }

    #[test]
    fn ring_drops_points_from_the_past() {
        let mut ring = Ring::new(RingSpan::default());
        ring.push(pt(5_000, 0.1));
        ring.push(pt(4_000, 0.2));
        assert_eq!(ring.last().map(|p| p.full), Some(0.1));
    }

    #[test]
    fn rebase_puts_the_action_at_zero() {
        let mut pts = [pt(1_000, 0.0), pt(3_000, 0.0)];
        Event::rebase(&mut pts, Micros::from_millis(2_000));
        assert_eq!(Event::seconds(&pts[0]), -1.0);
        assert_eq!(Event::seconds(&pts[1]), 1.0);
    }
}
