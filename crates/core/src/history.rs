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
    /// Full stall over the trailing second (0..=1); `None` where it was not measured (no PSI,
    /// or in the half second after the guard started or a rescue cleared its window): drawn as
    /// a gap, never as a zero.
    pub full: Option<f32>,
    /// Some stall over the trailing second (0..=1); `None` as for `full`.
    pub some: Option<f32>,
    /// Available memory + free swap.
    pub headroom: Kib,
    /// Available memory.
    pub available: Kib,
    /// Anonymous refaults (swap-ins) per second; `None` where not measured (as for `full`).
    pub swap_in_per_s: Option<f32>,
    /// File refaults per second; `None` where not measured.
    pub file_refaults_per_s: Option<f32>,
    /// Major faults per second; `None` where not measured.
    pub majfaults_per_s: Option<f32>,
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
            full: e.full.map(|v| v as f32),
            some: e.some.map(|v| v as f32),
            headroom: e.headroom,
            available: e.available,
            swap_in_per_s: e.anon_refaults_per_s.map(|v| v as f32),
            file_refaults_per_s: e.file_refaults_per_s.map(|v| v as f32),
            majfaults_per_s: e.majfaults_per_s.map(|v| v as f32),
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

/// A duration on the command line (`history --since`): whole numbers each followed by a
/// unit, `s`, `m`, `h`, `d` or `w`, e.g. `90s`, `30m`, `2h`, `7d`, `1h30m`. The error names
/// the value.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let bad = |why: &str| format!("{text:?}: {why} (a duration like 90s, 30m, 2h, 7d or 1h30m)");
    let t = text.trim();
    if t.is_empty() {
        return Err(bad("empty"));
    }
    let mut secs: u64 = 0;
    let mut digits = 0usize;
    let mut n: u64 = 0;
    for c in t.chars() {
        if let Some(d) = c.to_digit(10) {
            n = n.checked_mul(10).and_then(|n| n.checked_add(u64::from(d))).ok_or_else(|| bad("too large"))?;
            digits += 1;
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(bad(&format!("unexpected {c:?}"))),
        };
        if digits == 0 {
            return Err(bad("a unit without a number"));
        }
        secs = n.checked_mul(unit).and_then(|v| secs.checked_add(v)).ok_or_else(|| bad("too large"))?;
        n = 0;
        digits = 0;
    }
    if digits > 0 {
        return Err(bad("a number without a unit"));
    }
    // beyond 100 years the arithmetic of callers (milliseconds since the epoch) overflows
    if secs > 100 * 365 * 86_400 {
        return Err(bad("too large"));
    }
    Ok(std::time::Duration::from_secs(secs))
}

/// Version byte of [`encode_timeline`]'s layout.
pub const TIMELINE_FORMAT: u8 = 1;
/// Bytes per point in [`encode_timeline`]'s layout.
pub const TIMELINE_POINT_BYTES: usize = 45;

/// A stored timeline that cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TimelineError {
    /// Empty, or a version this build does not know.
    #[error("timeline: unknown format {0:?}")]
    Format(Option<u8>),
    /// Not a whole number of points.
    #[error("timeline: {0} bytes is not a whole number of {TIMELINE_POINT_BYTES}-byte points")]
    Length(usize),
    /// A phase byte out of range.
    #[error("timeline: point {0} has an unknown phase")]
    Phase(usize),
}

/// A timeline as the store keeps it: [`TIMELINE_FORMAT`], then per point, little-endian,
/// `t` (u64 µs), `full`, `some` (f32), `headroom`, `available` (u64 KiB), `swap_in_per_s`,
/// `file_refaults_per_s`, `majfaults_per_s` (f32) and the phase (u8: 0 calm, 1 pressure,
/// 2 recovering). 45 bytes a point, a third of its JSON. A value not measured is stored as
/// NaN and read back as `None` (no measurement is NaN, so nothing else reads back changed).
pub fn encode_timeline(points: &[Point], out: &mut Vec<u8>) {
    let f = |v: Option<f32>| v.unwrap_or(f32::NAN).to_le_bytes();
    out.clear();
    out.reserve(1 + points.len() * TIMELINE_POINT_BYTES);
    out.push(TIMELINE_FORMAT);
    for p in points {
        out.extend_from_slice(&p.t.0.to_le_bytes());
        out.extend_from_slice(&f(p.full));
        out.extend_from_slice(&f(p.some));
        out.extend_from_slice(&p.headroom.0.to_le_bytes());
        out.extend_from_slice(&p.available.0.to_le_bytes());
        out.extend_from_slice(&f(p.swap_in_per_s));
        out.extend_from_slice(&f(p.file_refaults_per_s));
        out.extend_from_slice(&f(p.majfaults_per_s));
        out.push(match p.phase {
            PhaseTag::Calm => 0,
            PhaseTag::Pressure => 1,
            PhaseTag::Recovering => 2,
        });
    }
}

/// Read back what [`encode_timeline`] wrote.
pub fn decode_timeline(bytes: &[u8]) -> Result<Vec<Point>, TimelineError> {
    let (&version, body) = bytes.split_first().ok_or(TimelineError::Format(None))?;
    if version != TIMELINE_FORMAT {
        return Err(TimelineError::Format(Some(version)));
    }
    if body.len() % TIMELINE_POINT_BYTES != 0 {
        return Err(TimelineError::Length(body.len()));
    }
    let mut points = Vec::with_capacity(body.len() / TIMELINE_POINT_BYTES);
    for (i, rec) in body.chunks_exact(TIMELINE_POINT_BYTES).enumerate() {
        let mut at = 0usize;
        let mut take = |n: usize| {
            let s = &rec[at..at + n];
            at += n;
            s
        };
        let u64_ = |s: &[u8]| u64::from_le_bytes(s.try_into().unwrap_or([0; 8]));
        let f32_ = |s: &[u8]| Some(f32::from_le_bytes(s.try_into().unwrap_or([0; 4]))).filter(|v| !v.is_nan());
        let t = Micros(u64_(take(8)));
        let full = f32_(take(4));
        let some = f32_(take(4));
        let headroom = Kib(u64_(take(8)));
        let available = Kib(u64_(take(8)));
        let swap_in_per_s = f32_(take(4));
        let file_refaults_per_s = f32_(take(4));
        let majfaults_per_s = f32_(take(4));
        let phase = match take(1)[0] {
            0 => PhaseTag::Calm,
            1 => PhaseTag::Pressure,
            2 => PhaseTag::Recovering,
            _ => return Err(TimelineError::Phase(i)),
        };
        points.push(Point { t, full, some, headroom, available, swap_in_per_s, file_refaults_per_s, majfaults_per_s, phase });
    }
    Ok(points)
}

impl EventAction {
    /// Stable name (the store's `action` column, the table).
    pub fn as_str(self) -> &'static str {
        match self {
            EventAction::Kill => "kill",
            EventAction::Freeze => "freeze",
            EventAction::DryRun => "dry_run",
        }
    }
}

/// `thrashguard history`'s table: one row per event, oldest first. `local_time` turns an
/// event's `unix_ms` into the time shown (the caller knows the time zone).
pub fn render_table(events: &[Event], local_time: &dyn Fn(i64) -> String) -> String {
    use std::fmt::Write;
    let rows: Vec<[String; 10]> = events
        .iter()
        .map(|e| {
            [
                e.id.map_or_else(|| "-".into(), |id| id.to_string()),
                local_time(e.unix_ms),
                e.scope.clone(),
                e.action.as_str().into(),
                e.reason.as_str().into(),
                e.victim.pid.to_string(),
                e.victim.name.clone(),
                e.victim.footprint.mib().to_string(),
                e.evidence.full.map_or_else(|| "-".into(), |f| format!("{:.1}", f * 100.0)),
                e.outcome.clone(),
            ]
        })
        .collect();
    const HEAD: [&str; 10] = ["ID", "TIME", "SCOPE", "ACTION", "REASON", "PID", "NAME", "MIB", "FULL%", "OUTCOME"];
    // numbers right-aligned
    const RIGHT: [bool; 10] = [true, false, false, false, false, true, false, true, true, false];
    let mut width = HEAD.map(str::len);
    for r in &rows {
        for (w, cell) in width.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; 10]| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = width[i].saturating_sub(cell.chars().count());
            if i > 0 {
                l.push_str("  ");
            }
            if RIGHT[i] {
                l.extend(std::iter::repeat_n(' ', pad));
                l.push_str(cell);
            } else {
                l.push_str(cell);
                if i + 1 < cells.len() {
                    l.extend(std::iter::repeat_n(' ', pad));
                }
            }
        }
        let _ = writeln!(out, "{}", l.trim_end());
    };
    line(HEAD);
    for r in &rows {
        line(r.each_ref().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(t_ms: u64, full: f32) -> Point {
        Point { t: Micros::from_millis(t_ms), full: Some(full), ..Point::default() }
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
        assert_eq!(ring.last().and_then(|p| p.full), Some(0.1));
    }

    #[test]
    fn rebase_puts_the_action_at_zero() {
        let mut pts = [pt(1_000, 0.0), pt(3_000, 0.0)];
        Event::rebase(&mut pts, Micros::from_millis(2_000));
        assert_eq!(Event::seconds(&pts[0]), -1.0);
        assert_eq!(Event::seconds(&pts[1]), 1.0);
    }

    #[test]
    fn durations_parse_and_bad_ones_name_the_value() {
        let d = |s| parse_duration(s).map(|d| d.as_secs());
        assert_eq!(d("90s"), Ok(90));
        assert_eq!(d("30m"), Ok(1800));
        assert_eq!(d("2h"), Ok(7200));
        assert_eq!(d("7d"), Ok(604_800));
        assert_eq!(d("1w"), Ok(604_800));
        assert_eq!(d("1h30m"), Ok(5400));
        assert_eq!(d(" 0s "), Ok(0));
        for bad in ["", "30", "m", "3x", "-5m", "1.5h", "h2", "99999999999999999999s", "5000000w", "2h 3m"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
    }

    #[test]
    fn timelines_round_trip_and_garbage_is_an_error() {
        let pts: Vec<Point> = (0..50)
            .map(|i| Point {
                t: Micros(i * 100_000),
                full: Some(i as f32 / 50.0),
                // every fifth point is one the guard did not measure
                some: (i % 5 != 0).then_some(0.5),
                headroom: Kib(i * 1000),
                available: Kib(7),
                swap_in_per_s: (i % 5 != 0).then_some(1.5),
                file_refaults_per_s: Some(2.5),
                majfaults_per_s: (i % 5 != 0).then_some(f32::MAX),
                phase: [PhaseTag::Calm, PhaseTag::Pressure, PhaseTag::Recovering][i as usize % 3],
            })
            .collect();
        let mut bytes = Vec::new();
        encode_timeline(&pts, &mut bytes);
        assert_eq!(bytes.len(), 1 + 50 * TIMELINE_POINT_BYTES);
        assert_eq!(decode_timeline(&bytes), Ok(pts));
        encode_timeline(&[], &mut bytes);
        assert_eq!(decode_timeline(&bytes), Ok(Vec::new()));
        assert_eq!(decode_timeline(&[]), Err(TimelineError::Format(None)));
        assert_eq!(decode_timeline(&[9, 1, 2]), Err(TimelineError::Format(Some(9))));
        assert_eq!(decode_timeline(&[1, 1, 2]), Err(TimelineError::Length(2)));
        let mut bad_phase = vec![1u8];
        bad_phase.extend_from_slice(&[7u8; TIMELINE_POINT_BYTES]);
        assert_eq!(decode_timeline(&bad_phase), Err(TimelineError::Phase(0)));
    }

    #[test]
    fn the_table_has_a_row_per_event() {
        let e = Event {
            id: Some(12),
            unix_ms: 1_700_000_000_000,
            host: "h".into(),
            scope: "system".into(),
            action: EventAction::Kill,
            reason: Reason::Thrashing,
            outcome: "killed".into(),
            victim: Victim { pid: 4242, name: "python3".into(), footprint: Kib(812 * 1024), ..Victim::default() },
            evidence: Evidence { full: Some(0.873), ..Evidence::default() },
            exit_after_ms: Some(12.0),
            timeline: Vec::new(),
        };
        let t = render_table(&[e.clone(), Event { id: Some(13), outcome: "dry run".into(), action: EventAction::DryRun, ..e }], &|ms| {
            format!("T{ms}")
        });
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].starts_with("ID  TIME"), "{t}");
        let words: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(words, ["12", "T1700000000000", "system", "kill", "thrashing", "4242", "python3", "812", "87.3", "killed"], "{t}");
        assert!(lines[2].contains("dry_run") && lines[2].ends_with("dry run"), "{t}");
    }
}
