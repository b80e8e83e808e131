//! `thrashguard top`'s screen: a plain model of what to show, and its rendering into a
//! ratatui [`Buffer`].
//!
//! Owns the model ([`TopModel`]: header facts, a ring of recent samples for the
//! sparklines, the process rows, the guard's last actions), the choice and order of the
//! process rows from a scan ([`rows`]), the layout and the text of every cell, and the
//! plain-text form of a frame (`top --once`). The binary fills the model and hands the
//! terminal's buffer in. It must never touch a terminal, a clock or /proc: every number
//! arrives in the model, and a frame of any size (even 0x0) renders without panicking.

use std::collections::VecDeque;

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, RenderDirection, Row, Sparkline, Table, Widget};

use crate::policy::rank::Candidate;
use crate::units::{Kib, Micros, Pid};

/// One sample of the machine for the sparklines.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TopSample {
    /// Full stall share over the trailing second (0..=1); `None` without PSI.
    pub full: Option<f64>,
    /// Some stall share over the trailing second (0..=1); `None` without PSI.
    pub some: Option<f64>,
    /// Available memory plus free swap.
    pub headroom: Kib,
}

/// The last samples, oldest dropped first; pushing past the capacity never grows it.
#[derive(Clone, Debug)]
pub struct SampleRing {
    samples: VecDeque<TopSample>,
    capacity: usize,
}

impl SampleRing {
    /// A ring of at most `capacity` samples (at least one).
    pub fn new(capacity: usize) -> SampleRing {
        let capacity = capacity.max(1);
        SampleRing { samples: VecDeque::with_capacity(capacity), capacity }
    }

    /// Add the newest sample, dropping the oldest when full.
    pub fn push(&mut self, s: TopSample) {
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(s);
    }

    /// Samples held.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether no sample is held.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The newest sample.
    pub fn newest(&self) -> Option<&TopSample> {
        self.samples.back()
    }

    /// Samples, newest first.
    pub fn newest_first(&self) -> impl Iterator<Item = &TopSample> {
        self.samples.iter().rev()
    }
}

/// What the running guard said on its status socket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum GuardView {
    /// Nothing answered on the status socket.
    #[default]
    Absent,
    /// A guard answered.
    Running {
        /// Its system policy's phase (`calm`, `pressure`, `recovering`).
        phase: String,
        /// Decisions it took so far.
        decisions: u64,
        /// Victims it signalled so far.
        actions: u64,
    },
}

/// Memory facts of the newest sample.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MemoryView {
    /// MemTotal.
    pub total: Kib,
    /// MemAvailable (or its estimate).
    pub available: Kib,
    /// SwapTotal.
    pub swap_total: Kib,
    /// SwapFree.
    pub swap_free: Kib,
    /// Headroom trend over 5 s, KiB/s (negative: shrinking), when known.
    pub trend_kib_s: Option<f64>,
}

/// One process row.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcRow {
    /// Process id.
    pub pid: Pid,
    /// Its name (comm).
    pub name: String,
    /// RSS + swap.
    pub footprint: Kib,
    /// Swapped-out part of the footprint.
    pub swap: Kib,
    /// Footprint growth since the previous scan, MiB/s; `None` before a second scan.
    pub growth_mib_s: Option<f64>,
    /// Major faults per second since the previous scan; `None` before a second scan.
    pub majflt_s: Option<f64>,
}

/// One action the guard reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionRow {
    /// The victim's pid.
    pub pid: u64,
    /// Its name.
    pub name: String,
    /// The scope rescued (`system`, a cgroup, `node1`).
    pub scope: String,
    /// How long ago top first saw it; `None` when it was already there at top's start.
    pub age: Option<Micros>,
}

/// Which column orders the process rows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortKey {
    /// RSS + swap, largest first.
    #[default]
    Footprint,
    /// Swap, largest first.
    Swap,
    /// Growth rate, fastest first.
    Growth,
}

impl SortKey {
    /// The key bound to a keystroke: `f`, `s`, `g`.
    pub fn from_key(c: char) -> Option<SortKey> {
        match c {
            'f' | 'F' => Some(SortKey::Footprint),
            's' | 'S' => Some(SortKey::Swap),
            'g' | 'G' => Some(SortKey::Growth),
            _ => None,
        }
    }

    /// Lower-case name, as the screen shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            SortKey::Footprint => "footprint",
            SortKey::Swap => "swap",
            SortKey::Growth => "growth",
        }
    }
}

/// Everything one frame shows.
#[derive(Clone, Debug)]
pub struct TopModel {
    /// Host name.
    pub host: String,
    /// The running guard, if any.
    pub guard: GuardView,
    /// Whether the kernel reports PSI.
    pub psi: bool,
    /// Memory of the newest sample.
    pub memory: MemoryView,
    /// Recent samples for the sparklines.
    pub samples: SampleRing,
    /// The process rows, in display order.
    pub procs: Vec<ProcRow>,
    /// Processes in the last scan (all of them, before the cut to `procs`).
    pub processes_seen: usize,
    /// Order of `procs`.
    pub sort: SortKey,
    /// Time between samples.
    pub interval: Micros,
    /// The guard's last actions, newest first.
    pub actions: Vec<ActionRow>,
    /// A problem to show in the footer (a failed sample, an unparsable status reply).
    pub note: Option<String>,
}

impl TopModel {
    /// An empty model (nothing sampled yet) for `host`.
    pub fn new(host: &str, ring: usize) -> TopModel {
        TopModel {
            host: host.into(),
            guard: GuardView::Absent,
            psi: false,
            memory: MemoryView::default(),
            samples: SampleRing::new(ring),
            procs: Vec::new(),
            processes_seen: 0,
            sort: SortKey::Footprint,
            interval: Micros::from_secs(1),
            actions: Vec::new(),
            note: None,
        }
    }
}

/// The rows to show from a scan: user processes (no kernel threads, zombies or empty
/// ones) whose name `keep` accepts, ordered by `sort` (ties by pid), at most `count`.
/// `elapsed` is the time since the previous scan (rates need it; `None` on the first).
pub fn rows(cands: &[Candidate], elapsed: Option<Micros>, sort: SortKey, count: usize, keep: impl Fn(&str) -> bool) -> Vec<ProcRow> {
    let secs = elapsed.filter(|e| e.0 > 0).map(Micros::as_secs_f64);
    let mut all: Vec<ProcRow> = cands
        .iter()
        .filter(|c| !c.kernel_thread && !c.exiting && c.footprint.0 > 0)
        .map(|c| ProcRow {
            pid: c.id.pid,
            name: printable(&c.comm.to_string_lossy()),
            footprint: c.footprint,
            swap: c.swap,
            growth_mib_s: secs.map(|s| c.growth_kib as f64 / 1024.0 / s),
            majflt_s: secs.map(|s| c.majflt_delta as f64 / s),
        })
        .filter(|r| keep(&r.name))
        .collect();
    let key = |r: &ProcRow| -> f64 {
        match sort {
            SortKey::Footprint => r.footprint.0 as f64,
            SortKey::Swap => r.swap.0 as f64,
            SortKey::Growth => r.growth_mib_s.unwrap_or(0.0),
        }
    };
    all.sort_by(|a, b| key(b).total_cmp(&key(a)).then(b.footprint.cmp(&a.footprint)).then(a.pid.cmp(&b.pid)));
    all.truncate(count);
    all
}

/// A name with control characters replaced (a process may call itself anything).
fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// A size in the largest binary unit that keeps it below 1024: `512K`, `64.0M`, `1.5G`.
pub fn size(k: Kib) -> String {
    if k.0 < 1024 {
        return format!("{}K", k.0);
    }
    let mut v = k.0 as f64 / 1024.0;
    for unit in ["M", "G", "T", "P", "E"] {
        if v < 1024.0 {
            return format!("{v:.1}{unit}");
        }
        v /= 1024.0;
    }
    format!("{v:.1}Z")
}

/// A signed rate in MiB/s, compact: `+12.3`, `-0.5`, `0`; `-` when unknown.
fn rate(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if !v.is_finite() => "?".into(),
        Some(v) if v.abs() < 0.05 => "0".into(),
        Some(v) if v.abs() >= 100_000.0 => format!("{:+.0e}", v),
        Some(v) => format!("{v:+.1}"),
    }
}

/// A per-second count, compact; `-` when unknown.
fn per_sec(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if !v.is_finite() => "?".into(),
        Some(v) if v >= 1_000_000.0 => format!("{:.0e}", v),
        Some(v) => format!("{v:.0}"),
    }
}

fn pct(v: Option<f64>) -> String {
    v.filter(|v| v.is_finite()).map_or_else(|| "n/a".into(), |v| format!("{:.1} %", v * 100.0))
}

/// Rows of the action box (its border excluded) for `n` actions.
fn action_lines(n: usize) -> u16 {
    n.clamp(1, 3) as u16
}

/// The height that shows every process row of `model` and everything else: the size of
/// the plain-text frame of `top --once`.
pub fn full_height(model: &TopModel) -> u16 {
    let procs = u16::try_from(model.procs.len()).unwrap_or(u16::MAX).max(1);
    // header 2 + sparklines 5 + table (border 2 + header 1 + rows) + actions (2 + lines) + footer 1
    (2u16 + 5 + 3 + 2 + 1).saturating_add(procs).saturating_add(action_lines(model.actions.len()))
}

const HEAD: Style = Style::new().add_modifier(Modifier::BOLD);

/// Render one frame of `model` into `area` of `buf`. Any area, however small, is fine:
/// what does not fit is cut.
pub fn render(model: &TopModel, area: Rect, buf: &mut Buffer) {
    let area = area.intersection(buf.area);
    if area.is_empty() {
        return;
    }
    let [header, sparks, table, actions, footer] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(5),
        Constraint::Min(3),
        Constraint::Length(2 + action_lines(model.actions.len())),
        Constraint::Length(1),
    ])
    .areas(area);
    render_header(model, header, buf);
    render_sparklines(model, sparks, buf);
    render_table(model, table, buf);
    render_actions(model, actions, buf);
    let mut keys = vec![
        Span::styled("q", HEAD),
        Span::raw(" quit  "),
        Span::styled("f", HEAD),
        Span::raw(" footprint  "),
        Span::styled("s", HEAD),
        Span::raw(" swap  "),
        Span::styled("g", HEAD),
        Span::raw(" growth"),
    ];
    if let Some(note) = &model.note {
        keys.push(Span::styled(format!("  {note}"), Style::new().fg(Color::Yellow)));
    }
    Paragraph::new(Line::from(keys)).render(footer, buf);
}

fn render_header(model: &TopModel, area: Rect, buf: &mut Buffer) {
    let guard = match &model.guard {
        GuardView::Absent => Span::styled("no guard running", Style::new().fg(Color::Yellow)),
        GuardView::Running { phase, decisions, actions } => {
            let color = match phase.as_str() {
                "calm" => Color::Green,
                "pressure" => Color::Yellow,
                _ => Color::Red,
            };
            Span::styled(format!("guard: {phase} ({decisions} decisions, {actions} actions)"), Style::new().fg(color))
        }
    };
    let m = &model.memory;
    let headroom = m.available.saturating_add(m.swap_free);
    let trend = m.trend_kib_s.filter(|t| t.is_finite()).map_or_else(String::new, |t| format!(", trend {}/s", signed_size(t)));
    let lines = vec![
        Line::from(vec![
            Span::styled("thrashguard top", HEAD),
            Span::raw(format!(" — {}  ", model.host)),
            guard,
            Span::raw(format!("  every {:.1} s, sorted by {}", model.interval.as_secs_f64(), model.sort.as_str())),
        ]),
        Line::from(format!(
            "memory: {} available of {} ({:.0} %), swap {} free of {}, headroom {}{trend}",
            size(m.available),
            size(m.total),
            m.available.pct_of(m.total),
            size(m.swap_free),
            size(m.swap_total),
            size(headroom),
        )),
    ];
    Paragraph::new(lines).render(area, buf);
}

/// `+1.5M`, `-512K`: a signed size per second.
fn signed_size(kib: f64) -> String {
    let sign = if kib < 0.0 { "-" } else { "+" };
    let abs = kib.abs();
    let k = if abs >= u64::MAX as f64 { u64::MAX } else { abs as u64 };
    format!("{sign}{}", size(Kib(k)))
}

fn render_sparklines(model: &TopModel, area: Rect, buf: &mut Buffer) {
    let [full, some, headroom] = Layout::horizontal([Constraint::Ratio(1, 3); 3]).areas(area);
    let newest = model.samples.newest().copied().unwrap_or_default();
    let width = usize::from(full.width.saturating_sub(2));
    // stall shares in tenths of a percent; scaled to the peak in view, at least 5 %
    let stall = |pick: fn(&TopSample) -> Option<f64>| -> Vec<u64> {
        model.samples.newest_first().take(width).map(|s| pick(s).map_or(0, |v| (v.clamp(0.0, 1.0) * 1000.0).round() as u64)).collect()
    };
    for (name, pick, rect, color) in [
        ("full stall", (|s: &TopSample| s.full) as fn(&TopSample) -> Option<f64>, full, Color::Red),
        ("some stall", |s: &TopSample| s.some, some, Color::Yellow),
    ] {
        let data = stall(pick);
        let peak = data.iter().copied().max().unwrap_or(0);
        let mut block = Block::default().borders(Borders::ALL);
        block = if model.psi {
            block.title(format!(" {name} {} ", pct(pick(&newest)))).title_bottom(format!(" peak {:.1} % ", peak as f64 / 10.0))
        } else {
            block.title(format!(" {name}: no PSI "))
        };
        Sparkline::default()
            .block(block)
            .data(data)
            .max(peak.max(50))
            .direction(RenderDirection::RightToLeft)
            .style(Style::new().fg(color))
            .render(rect, buf);
    }
    let width = usize::from(headroom.width.saturating_sub(2));
    let cap = model.memory.total.saturating_add(model.memory.swap_total).0.max(1);
    let data: Vec<u64> = model.samples.newest_first().take(width).map(|s| s.headroom.0.min(cap)).collect();
    let title = format!(" headroom {} ({:.0} %) ", size(newest.headroom), newest.headroom.pct_of(Kib(cap)));
    Sparkline::default()
        .block(Block::default().borders(Borders::ALL).title(title))
        .data(data)
        .max(cap)
        .direction(RenderDirection::RightToLeft)
        .style(Style::new().fg(Color::Green))
        .render(headroom, buf);
}

fn render_table(model: &TopModel, area: Rect, buf: &mut Buffer) {
    let mark = |k: SortKey, label: &'static str| -> String { if model.sort == k { format!("{label}▼") } else { label.into() } };
    let header = Row::new(vec![
        format!("{:>7}", "PID"),
        format!("{:>10}", mark(SortKey::Footprint, "FOOTPRINT")),
        format!("{:>8}", "RSS"),
        format!("{:>8}", mark(SortKey::Swap, "SWAP")),
        format!("{:>11}", mark(SortKey::Growth, "GROW MiB/s")),
        format!("{:>9}", "MAJFLT/s"),
        "NAME".to_string(),
    ])
    .style(HEAD);
    let rows: Vec<Row<'_>> = model
        .procs
        .iter()
        .map(|p| {
            Row::new(vec![
                format!("{:>7}", p.pid.0),
                format!("{:>10}", size(p.footprint)),
                format!("{:>8}", size(p.footprint.saturating_sub(p.swap))),
                format!("{:>8}", size(p.swap)),
                format!("{:>11}", rate(p.growth_mib_s)),
                format!("{:>9}", per_sec(p.majflt_s)),
                p.name.clone(),
            ])
        })
        .collect();
    let shown = model.procs.len().min(usize::from(area.height.saturating_sub(3)));
    let title = format!(" processes: {shown} of {} by {} ", model.processes_seen, model.sort.as_str());
    Table::new(
        rows,
        [
            Constraint::Length(7),
            Constraint::Length(10),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(11),
            Constraint::Length(9),
            Constraint::Min(8),
        ],
    )
    .header(header)
    .block(Block::default().borders(Borders::ALL).title(title))
    .render(area, buf);
}

fn render_actions(model: &TopModel, area: Rect, buf: &mut Buffer) {
    let lines: Vec<Line<'_>> = if model.actions.is_empty() {
        vec![Line::from(match model.guard {
            GuardView::Absent => "no guard running: no actions to show",
            GuardView::Running { .. } => "no action since the guard started",
        })]
    } else {
        model
            .actions
            .iter()
            .take(3)
            .map(|a| {
                let when = a.age.map_or_else(|| "before top started".to_string(), |t| format!("{:.0} s ago", t.as_secs_f64()));
                Line::from(format!("{when:>18}  {} {} ({})", a.pid, printable(&a.name), printable(&a.scope)))
            })
            .collect()
    };
    Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" last actions ")).render(area, buf);
}

/// The frame as plain text: one line per row, trailing blanks trimmed.
pub fn to_text(buf: &Buffer) -> String {
    let mut out = String::new();
    let area = buf.area;
    for y in area.top()..area.bottom() {
        let mut line = String::new();
        for x in area.left()..area.right() {
            if let Some(cell) = buf.cell((x, y)) {
                line.push_str(cell.symbol());
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::rank::Preference;
    use crate::units::{Comm, ProcId};

    fn cand(pid: u32, name: &str, footprint: u64, swap: u64, growth: i64) -> Candidate {
        Candidate {
            id: ProcId { pid: Pid(pid), start_time: 1 },
            comm: Comm::new(name.as_bytes()),
            footprint: Kib(footprint),
            swap: Kib(swap),
            majflt_delta: 10,
            growth_kib: growth,
            oom_score_adj: None,
            oom_score: None,
            kernel_thread: false,
            exiting: false,
            preference: Preference::Neutral,
            scope_share_permille: 1000,
        }
    }

    fn model() -> TopModel {
        let mut m = TopModel::new("db1", 64);
        m.psi = true;
        m.memory = MemoryView {
            total: Kib(8 << 20),
            available: Kib(2 << 20),
            swap_total: Kib(1 << 20),
            swap_free: Kib(512 << 10),
            trend_kib_s: Some(-2048.0),
        };
        for i in 0..40u64 {
            m.samples.push(TopSample { full: Some(i as f64 / 100.0), some: Some(i as f64 / 50.0), headroom: Kib((3 << 20) - i * 1024) });
        }
        let cands = [cand(4242, "java", 4 << 20, 1 << 20, 0), cand(7, "hog", 1 << 20, 0, 200 * 1024), cand(9, "tiny", 512, 0, 0)];
        m.procs = rows(&cands, Some(Micros::from_secs(2)), SortKey::Footprint, 10, |_| true);
        m.processes_seen = 3;
        m.actions = vec![ActionRow { pid: 77, name: "leaky".into(), scope: "system".into(), age: Some(Micros::from_secs(12)) }];
        m.guard = GuardView::Running { phase: "pressure".into(), decisions: 1, actions: 1 };
        m
    }

    fn frame(m: &TopModel, w: u16, h: u16) -> String {
        let mut buf = Buffer::empty(Rect::new(0, 0, w, h));
        render(m, buf.area, &mut buf);
        to_text(&buf)
    }

    #[test]
    fn a_frame_shows_header_sparklines_processes_and_actions() {
        let t = frame(&model(), 100, 30);
        assert!(t.starts_with("thrashguard top — db1  guard: pressure (1 decisions, 1 actions)"), "{t}");
        assert!(t.contains("memory: 2.0G available of 8.0G (25 %), swap 512.0M free of 1.0G, headroom 2.5G, trend -2.0M/s"), "{t}");
        assert!(t.contains("full stall 39.0 %") && t.contains("peak 39.0 %") && t.contains("some stall 78.0 %"), "{t}");
        assert!(t.contains("headroom 3.0G (33 %)"), "{t}");
        assert!(t.contains("processes: 3 of 3 by footprint") && t.contains("FOOTPRINT▼"), "{t}");
        let java = t.lines().find(|l| l.contains("java")).expect("java row");
        assert!(java.contains("4242") && java.contains("4.0G") && java.contains("3.0G") && java.contains("1.0G"), "{java}");
        let hog = t.lines().find(|l| l.contains("hog")).expect("hog row");
        assert!(hog.contains("+100.0") && hog.contains(" 5"), "{hog}");
        assert!(t.find("java") < t.find("hog") && t.find("hog") < t.find("tiny"), "{t}");
        assert!(t.contains("12 s ago  77 leaky (system)"), "{t}");
        assert!(t.contains("q quit  f footprint  s swap  g growth"), "{t}");
        // the sparklines drew bars
        assert!(t.contains('█'), "{t}");
    }

    #[test]
    fn without_a_guard_or_psi_it_says_so() {
        let mut m = model();
        m.guard = GuardView::Absent;
        m.actions.clear();
        m.psi = false;
        m.note = Some("cannot sample: gone".into());
        let t = frame(&m, 120, 30);
        assert!(t.contains("no guard running") && t.contains("full stall: no PSI") && t.contains("some stall: no PSI"), "{t}");
        assert!(t.contains("no guard running: no actions to show") && t.contains("cannot sample: gone"), "{t}");
    }

    #[test]
    fn sort_keys_order_the_rows() {
        let cands = [cand(1, "a", 100, 0, 0), cand(2, "b", 50, 40, 0), cand(3, "c", 10, 0, 5000), cand(4, "k", 0, 0, 0)];
        let order = |k| rows(&cands, Some(Micros::from_secs(1)), k, 10, |_| true).iter().map(|r| r.name.clone()).collect::<Vec<_>>();
        assert_eq!(order(SortKey::Footprint), ["a", "b", "c"], "empty processes are left out");
        assert_eq!(order(SortKey::Swap), ["b", "a", "c"]);
        assert_eq!(order(SortKey::Growth), ["c", "a", "b"]);
        assert_eq!(rows(&cands, None, SortKey::Footprint, 1, |_| true).len(), 1);
        assert_eq!(rows(&cands, None, SortKey::Footprint, 10, |n| n == "b")[0].pid, Pid(2));
        assert_eq!(rows(&cands, None, SortKey::Growth, 10, |_| true)[0].growth_mib_s, None, "no rate before a second scan");
        assert_eq!(SortKey::from_key('g'), Some(SortKey::Growth));
        assert_eq!(SortKey::from_key('x'), None);
        let mut kt = cand(5, "kthreadd", 1000, 0, 0);
        kt.kernel_thread = true;
        assert!(rows(&[kt], None, SortKey::Footprint, 10, |_| true).is_empty());
    }

    #[test]
    fn sizes_are_compact() {
        assert_eq!(size(Kib(0)), "0K");
        assert_eq!(size(Kib(1023)), "1023K");
        assert_eq!(size(Kib(1536)), "1.5M");
        assert_eq!(size(Kib(64 << 10)), "64.0M");
        assert_eq!(size(Kib(3 << 20)), "3.0G");
        assert!(size(Kib(u64::MAX)).len() <= 7, "{}", size(Kib(u64::MAX)));
        assert_eq!(rate(Some(f64::NAN)), "?");
        assert_eq!(rate(Some(1e300)).len(), 6);
        assert_eq!(signed_size(-1e300), format!("-{}", size(Kib(u64::MAX))));
    }

    #[test]
    fn the_ring_keeps_the_newest() {
        let mut r = SampleRing::new(3);
        for i in 0..10u64 {
            r.push(TopSample { headroom: Kib(i), ..TopSample::default() });
        }
        assert_eq!(r.len(), 3);
        assert_eq!(r.newest_first().map(|s| s.headroom.0).collect::<Vec<_>>(), [9, 8, 7]);
        assert_eq!(SampleRing::new(0).capacity, 1);
    }

    #[test]
    fn any_size_and_any_number_renders() {
        let mut m = model();
        m.memory = MemoryView {
            total: Kib(u64::MAX),
            available: Kib(u64::MAX),
            swap_total: Kib(u64::MAX),
            swap_free: Kib(u64::MAX),
            trend_kib_s: Some(f64::INFINITY),
        };
        m.samples.push(TopSample { full: Some(f64::NAN), some: Some(-3.0), headroom: Kib(u64::MAX) });
        m.samples.push(TopSample { full: Some(7.0), some: None, headroom: Kib(0) });
        m.procs.push(ProcRow {
            pid: Pid(u32::MAX),
            name: "名前\u{1b}[31m".repeat(10),
            footprint: Kib(u64::MAX),
            swap: Kib(u64::MAX),
            growth_mib_s: Some(f64::NEG_INFINITY),
            majflt_s: Some(1e300),
        });
        m.processes_seen = usize::MAX;
        m.interval = Micros(u64::MAX);
        m.host = "h".repeat(500);
        for _ in 0..50 {
            m.actions.push(ActionRow { pid: u64::MAX, name: "x".repeat(300), scope: "\n\t".into(), age: Some(Micros(u64::MAX)) });
        }
        for (w, h) in [(0, 0), (1, 1), (20, 5), (5, 20), (40, 12), (100, 30), (300, 100), (u16::MAX, 3), (3, 600)] {
            let t = frame(&m, w, h);
            assert_eq!(t.lines().count(), usize::from(h));
        }
        for w in 0..30 {
            for h in 0..14 {
                frame(&m, w, h);
                frame(&TopModel::new("", 0), w, h);
            }
        }
        // an area outside the buffer is cut, not a panic
        let mut buf = Buffer::empty(Rect::new(0, 0, 10, 10));
        render(&m, Rect::new(5, 5, 100, 100), &mut buf);
        render(&m, Rect::new(50, 50, 10, 10), &mut buf);
    }

    #[test]
    fn full_height_fits_every_row() {
        let m = model();
        let h = full_height(&m);
        let t = frame(&m, 100, h);
        assert!(t.contains("tiny") && t.contains("q quit"), "{t}");
        assert!(t.lines().nth(usize::from(h) - 2).is_some_and(|l| l.starts_with('└')), "{t}");
    }
}
