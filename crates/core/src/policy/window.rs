//! A fixed ring of recent counter readings and the rates computed from it.
//!
//! Owns the arithmetic of "how much stall, how many refaults per second over the last
//! N seconds" from cumulative counters, and the least-squares trend of headroom. Holds a
//! fixed array so that pushing and querying never allocates. Must never see anything but
//! [`ScopeSample`] values; counters that go backwards (a recreated cgroup) count as zero.

use crate::snapshot::ScopeSample;
use crate::units::Micros;

/// Readings kept; with the minimum spacing below this spans at least 12.8 s.
pub const CAPACITY: usize = 256;
/// Readings closer than this to the previous one are not stored (but still evaluated).
pub const MIN_SPACING: Micros = Micros::from_millis(50);

/// One stored reading: the cumulative counters of a sample.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Point {
    /// Sample time.
    pub at: Micros,
    /// PSI some total, µs (0 without PSI).
    pub some: u64,
    /// PSI full total, µs (0 without PSI).
    pub full: u64,
    /// Anonymous refaults plus swap-ins, whichever is larger (they overlap).
    pub anon_in: u64,
    /// File refaults.
    pub file_in: u64,
    /// Major faults.
    pub majfault: u64,
    /// Headroom in KiB.
    pub headroom: u64,
}

impl Point {
    /// The reading of a sample.
    pub fn of(s: &ScopeSample) -> Point {
        let stall = s.stall.unwrap_or_default();
        Point {
            at: s.at,
            some: stall.some.0,
            full: stall.full.0,
            anon_in: s.refault_anon.unwrap_or(0).max(s.swapin.unwrap_or(0)),
            file_in: s.refault_file.unwrap_or(0),
            majfault: s.majfault.unwrap_or(0),
            headroom: s.headroom().0,
        }
    }
}

/// Rates over one interval between two readings.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rates {
    /// Length of the interval.
    pub span: Micros,
    /// Fraction of the interval with some task stalled (0..=1).
    pub some: f64,
    /// Fraction of the interval with all non-idle tasks stalled (0..=1).
    pub full: f64,
    /// Anonymous refaults / swap-ins per second.
    pub anon_in: f64,
    /// File refaults per second.
    pub file_in: f64,
    /// Major faults per second.
    pub majfault: f64,
}

impl Rates {
    /// From `old` to `new`.
    pub fn between(old: &Point, new: &Point) -> Rates {
        let span = new.at.saturating_sub(old.at);
        if span.0 == 0 {
            return Rates::default();
        }
        let secs = span.as_secs_f64();
        let per_sec = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs;
        let frac = |a: u64, b: u64| (b.saturating_sub(a) as f64 / span.0 as f64).min(1.0);
        Rates {
            span,
            some: frac(old.some, new.some),
            full: frac(old.full, new.full),
            anon_in: per_sec(old.anon_in, new.anon_in),
            file_in: per_sec(old.file_in, new.file_in),
            majfault: per_sec(old.majfault, new.majfault),
        }
    }

    /// Pages per second of the working set coming back in (anon + file refaults).
    pub fn refaults(&self) -> f64 {
        self.anon_in + self.file_in
    }
}

/// The ring of readings.
#[derive(Clone, Debug)]
pub struct Window {
    points: [Point; CAPACITY],
    /// Index of the newest point.
    head: usize,
    len: usize,
}

impl Default for Window {
    fn default() -> Self {
        Window { points: [Point::default(); CAPACITY], head: 0, len: 0 }
    }
}

impl Window {
    /// Store a reading unless it is closer than [`MIN_SPACING`] to the newest one.
    /// Readings that go back in time (a broken clock) are ignored.
    pub fn push(&mut self, p: Point) {
        if self.newest().is_some_and(|newest| p.at < newest.at || p.at.0 - newest.at.0 < MIN_SPACING.0) {
            return;
        }
        self.head = (self.head + 1) % CAPACITY;
        self.points[self.head] = p;
        self.len = (self.len + 1).min(CAPACITY);
    }

    /// Forget everything (after a rescue, so no window reaches back across it).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Newest stored reading.
    pub fn newest(&self) -> Option<&Point> {
        (self.len > 0).then(|| &self.points[self.head])
    }

    /// Oldest stored reading.
    pub fn oldest(&self) -> Option<&Point> {
        (self.len > 0).then(|| &self.points[(self.head + CAPACITY + 1 - self.len) % CAPACITY])
    }

    /// Stored readings, newest first.
    pub fn iter_newest_first(&self) -> impl Iterator<Item = &Point> {
        (0..self.len).map(move |i| &self.points[(self.head + CAPACITY - i) % CAPACITY])
    }

    /// The newest reading at least `span` older than `now`, or the oldest reading when
    /// it is at least `min_span` old (a young window gives a shorter but honest rate).
    pub fn base(&self, now: Micros, span: Micros, min_span: Micros) -> Option<&Point> {
        let cutoff = now.saturating_sub(span);
        if let Some(p) = self.iter_newest_first().find(|p| p.at <= cutoff) {
            return Some(p);
        }
        self.oldest().filter(|p| now.saturating_sub(p.at) >= min_span)
    }

    /// Rates from the reading `span` before `current` up to `current`.
    pub fn rates(&self, current: &Point, span: Micros, min_span: Micros) -> Option<Rates> {
        self.base(current.at, span, min_span).map(|b| Rates::between(b, current))
    }

    /// Least-squares slope of headroom in KiB per second over the last `span`
    /// (negative: shrinking). `None` with fewer than three readings spanning a second.
    pub fn headroom_slope(&self, now: Micros, span: Micros) -> Option<f64> {
        let cutoff = now.saturating_sub(span);
        let (mut n, mut sx, mut sy, mut sxx, mut sxy) = (0.0f64, 0.0, 0.0, 0.0, 0.0);
        let mut first = None;
        for p in self.iter_newest_first().take_while(|p| p.at >= cutoff) {
            let x = (p.at.0 as f64 - now.0 as f64) / 1e6;
            let y = p.headroom as f64;
            n += 1.0;
            sx += x;
            sy += y;
            sxx += x * x;
            sxy += x * y;
            first = Some(p.at);
        }
        let spread = now.saturating_sub(first?);
        if n < 3.0 || spread < Micros::from_secs(1) {
            return None;
        }
        let denom = n * sxx - sx * sx;
        (denom.abs() > f64::EPSILON).then(|| (n * sxy - sx * sy) / denom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(ms: u64, full_us: u64, headroom: u64) -> Point {
        Point { at: Micros::from_millis(ms), full: full_us, headroom, ..Point::default() }
    }

    #[test]
    fn stall_fraction_over_a_second() {
        let mut w = Window::default();
        for i in 0..=20u64 {
            // half of every 100 ms stalled
            w.push(pt(i * 100, i * 50_000, 1000));
        }
        let now = pt(2000, 1_000_000, 1000);
        let r = w.rates(&now, Micros::from_secs(1), Micros::from_millis(500)).expect("rates");
        assert!((r.full - 0.5).abs() < 1e-9, "{r:?}");
        assert_eq!(r.span, Micros::from_secs(1));
    }

    #[test]
    fn ring_wraps_and_spacing_is_kept() {
        let mut w = Window::default();
        for i in 0..1000u64 {
            w.push(pt(i * 10, 0, 0));
        }
        // stored every 50 ms
        let n = w.iter_newest_first().count();
        assert_eq!(n, 200);
        assert_eq!(w.oldest().map(|p| p.at), Some(Micros::from_millis(0)));
        for i in 1000..10_000u64 {
            w.push(pt(i * 10, 0, 0));
        }
        assert_eq!(w.iter_newest_first().count(), CAPACITY);
        let newest = w.newest().expect("newest").at;
        let oldest = w.oldest().expect("oldest").at;
        assert_eq!(newest.0 - oldest.0, (CAPACITY as u64 - 1) * 50_000);
    }

    #[test]
    fn slope_of_shrinking_headroom() {
        let mut w = Window::default();
        for i in 0..=50u64 {
            w.push(pt(i * 100, 0, 10_000 - i * 100)); // -1000 KiB/s
        }
        let s = w.headroom_slope(Micros::from_millis(5000), Micros::from_secs(5)).expect("slope");
        assert!((s + 1000.0).abs() < 1e-6, "{s}");
    }

    #[test]
    fn counters_going_backwards_are_zero() {
        let r = Rates::between(
            &Point { at: Micros(0), full: 100, ..Point::default() },
            &Point { at: Micros(1_000_000), full: 5, ..Point::default() },
        );
        assert_eq!(r.full, 0.0);
    }
}
