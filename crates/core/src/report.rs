//! `thrashguard report`: one stored [`Event`] drawn as a PNG, an SVG or a self-contained HTML page.
//!
//! Owns the layout of the timeline chart (three panels on a shared time axis in seconds from
//! the action: full and some stall, headroom and available memory, swap-in, file refault and
//! major fault rates; the policy's phases shaded; the action marked and labelled with its
//! victim), the PNG encoding and the HTML page (the chart inline, a table of the victim and
//! the evidence, and the event itself as JSON so the page can be read back). Any event draws:
//! an empty timeline, one point, NaN or infinite values, huge values, points only before or
//! only after the action; the worst an odd event gets is an odd-looking chart, never a panic.
//!
//! It must never touch the OS: the caller writes the bytes. Text on bitmaps needs a font, so
//! the crate carries one ([`FONT`], a Latin subset of DejaVu Sans, registered with plotters
//! on first use) instead of reading the system's at run time: `cargo test` then renders the
//! same pixels on any machine, fonts installed or not. The page fetches nothing: no URL, no
//! `src=`/`href=` attribute, and a Content-Security-Policy that forbids every fetch.

use std::fmt::Write as _;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontStyle, register_font};
use sha2::{Digest, Sha256};

use crate::history::{Event, EventAction, PhaseTag, Point};
use crate::policy::Rescue;

/// The font drawn on bitmaps (and used to measure text in every format): DejaVu Sans cut down
/// to Latin-1 and common punctuation (licence beside it in `assets/fonts/`).
pub const FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans-Latin.ttf");

/// The family name the font is registered under.
const FAMILY: &str = "sans-serif";

/// Chart size in pixels (PNG) or user units (SVG).
pub const SIZE: (u32, u32) = (1200, 900);

/// Series colours (also what the tests look for in the pixels).
pub mod colors {
    /// An RGB triple.
    pub type Rgb = (u8, u8, u8);
    /// Full stall.
    pub const FULL: Rgb = (200, 20, 20);
    /// Some stall.
    pub const SOME: Rgb = (250, 140, 0);
    /// Headroom (available + free swap).
    pub const HEADROOM: Rgb = (30, 100, 200);
    /// Available memory.
    pub const AVAILABLE: Rgb = (20, 160, 60);
    /// Swap-ins (anonymous refaults) per second.
    pub const SWAP_IN: Rgb = (130, 60, 190);
    /// File refaults per second.
    pub const FILE_REFAULTS: Rgb = (0, 150, 160);
    /// Major faults per second.
    pub const MAJFAULTS: Rgb = (150, 110, 60);
    /// The action's marker.
    pub const ACTION: Rgb = (230, 0, 130);
    /// Shade of the `pressure` phase.
    pub const PRESSURE: Rgb = (255, 200, 120);
    /// Shade of the `recovering` phase.
    pub const RECOVERING: Rgb = (170, 220, 170);
}

/// Why a report could not be drawn.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReportError {
    /// The bundled font did not load.
    #[error("the bundled font does not load: {0}")]
    Font(String),
    /// plotters failed to draw.
    #[error("drawing the chart: {0}")]
    Draw(String),
    /// The PNG encoder failed.
    #[error("encoding the PNG: {0}")]
    Encode(String),
}

fn draw_err<E: std::fmt::Debug>(e: E) -> ReportError {
    ReportError::Draw(format!("{e:?}"))
}

/// Register [`FONT`] with plotters (once per process).
fn ensure_font() -> Result<(), ReportError> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| register_font(FAMILY, FontStyle::Normal, FONT).map_err(|_| "not a TrueType font".to_string()))
        .clone()
        .map_err(ReportError::Font)
}

fn rgb(c: colors::Rgb) -> RGBColor {
    RGBColor(c.0, c.1, c.2)
}

/// The event's chart as an SVG document.
pub fn svg(ev: &Event) -> Result<String, ReportError> {
    ensure_font()?;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        draw(&root, ev, false)?;
        root.present().map_err(draw_err)?;
    }
    Ok(out)
}

/// The event's chart as a PNG file (RGB, [`SIZE`]).
pub fn png(ev: &Event) -> Result<Vec<u8>, ReportError> {
    ensure_font()?;
    let (w, h) = SIZE;
    let mut pixels = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, SIZE).into_drawing_area();
        draw(&root, ev, true)?;
        root.present().map_err(draw_err)?;
    }
    let mut out = Vec::with_capacity(64 * 1024);
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Balanced);
    let mut writer = enc.write_header().map_err(|e| ReportError::Encode(e.to_string()))?;
    writer.write_image_data(&pixels).map_err(|e| ReportError::Encode(e.to_string()))?;
    writer.finish().map_err(|e| ReportError::Encode(e.to_string()))?;
    Ok(out)
}

/// The id of the `<script type="application/json">` element that carries the event in the page.
pub const JSON_ELEMENT_ID: &str = "thrashguard-event";

/// Shows the action's time in the reader's own time zone (the only script; its hash is in the
/// page's Content-Security-Policy, so nothing else may run).
const LOCAL_TIME_SCRIPT: &str = "(function(){var e=document.getElementById('thrashguard-event');\
var t=document.getElementById('local-time');if(!e||!t)return;\
try{var v=JSON.parse(e.textContent);t.textContent=new Date(v.unix_ms).toString();}catch(x){}})();";

/// The event as one self-contained HTML page: the chart as inline SVG, a table of the victim and
/// the evidence, and the event as JSON in `<script type="application/json" id="thrashguard-event">`.
pub fn html(ev: &Event) -> Result<String, ReportError> {
    let chart = svg(ev)?;
    // inline SVG in HTML needs no namespace; dropping it leaves the page without a single URL
    let chart = chart.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1);
    let script_hash = base64(&Sha256::digest(LOCAL_TIME_SCRIPT.as_bytes()));
    let mut p = String::with_capacity(chart.len() + 64 * 1024);
    let title = escape(&headline(ev));
    let _ = write!(
        p,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{script_hash}'\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{title}</title>\n<style>\n\
body{{font-family:sans-serif;margin:1em 2em;color:#222;background:#fff}}\n\
h1{{font-size:1.3em}} h2{{font-size:1.1em;margin-top:1.5em}}\n\
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:2px 8px;text-align:left;vertical-align:top}}\n\
th{{background:#f4f4f4;font-weight:normal}} td.n{{text-align:right;font-variant-numeric:tabular-nums}}\n\
.chart svg{{max-width:100%;height:auto}}\n</style>\n</head>\n<body>\n<h1>{title}</h1>\n"
    );
    let _ = writeln!(
        p,
        "<p>host <b>{}</b>, scope <b>{}</b>, {} (your time: <span id=\"local-time\">{}</span>)</p>",
        escape(&ev.host),
        escape(&ev.scope),
        escape(&utc(ev.unix_ms)),
        escape(&utc(ev.unix_ms)),
    );
    let _ = writeln!(p, "<div class=\"chart\">\n{chart}</div>");
    p.push_str("<h2>Action</h2>\n<table>\n");
    let v = &ev.victim;
    let rows: Vec<(&str, String)> = vec![
        ("event id", ev.id.map_or_else(|| "not stored".into(), |i| i.to_string())),
        ("action", action_word(ev.action).into()),
        ("outcome", ev.outcome.clone()),
        ("victim pid", v.pid.to_string()),
        ("victim name", v.name.clone()),
        ("command line", v.cmdline.clone()),
        ("footprint (RSS + swap)", mib(v.footprint.0)),
        ("of which swapped out", mib(v.swap.0)),
        ("oom_score", v.oom_score.map_or_else(|| "not read".into(), |s| s.to_string())),
        ("exited after", ev.exit_after_ms.map_or_else(|| "not seen".into(), |ms| format!("{} ms", num(ms, 1)))),
    ];
    table_rows(&mut p, &rows);
    p.push_str("</table>\n<h2>Evidence</h2>\n<table>\n");
    let e = &ev.evidence;
    let opt_pct = |x: Option<f64>| x.map_or_else(|| "none".into(), |x| format!("{} %", num(x * 100.0, 1)));
    let last_second = |x: Option<f64>, scale: f64, decimals: usize, unit: &str| {
        x.map_or_else(|| "not measured".into(), |x| format!("{} {unit}", num(x * scale, decimals)))
    };
    let rows: Vec<(&str, String)> = vec![
        ("reason", ev.reason.as_str().into()),
        ("decision", Rescue { reason: ev.reason, evidence: *e }.to_string()),
        ("PSI", if e.psi { "yes".into() } else { "no (memory and fault signals only)".into() }),
        ("full stall, last 1 s", last_second(e.full, 100.0, 1, "%")),
        ("some stall, last 1 s", last_second(e.some, 100.0, 1, "%")),
        ("mean full stall over the window", opt_pct(e.full_mean)),
        ("episode", format!("{} s", num(e.episode.as_secs_f64(), 1))),
        ("available", format!("{} ({} % of {})", mib(e.available.0), num(e.available_pct(), 1), mib(e.total.0))),
        ("swap", mib(e.swap_total.0)),
        ("headroom", mib(e.headroom.0)),
        ("headroom trend", e.headroom_trend_kib_s.map_or_else(|| "none".into(), |x| format!("{} KiB/s", num(x, 0)))),
        ("headroom gone in", e.exhaustion_in.map_or_else(|| "not in sight".into(), |t| format!("{} s", num(t.as_secs_f64(), 1)))),
        ("swap-ins", last_second(e.anon_refaults_per_s, 1.0, 0, "pages/s")),
        ("file refaults", last_second(e.file_refaults_per_s, 1.0, 0, "pages/s")),
        ("major faults", last_second(e.majfaults_per_s, 1.0, 0, "/s")),
        ("timeline", timeline_summary(&ev.timeline)),
    ];
    table_rows(&mut p, &rows);
    p.push_str("</table>\n");
    let _ = write!(
        p,
        "<script type=\"application/json\" id=\"{JSON_ELEMENT_ID}\">{}</script>\n<script>{LOCAL_TIME_SCRIPT}</script>\n</body>\n</html>\n",
        embedded_json(ev)
    );
    Ok(p)
}

/// The event as JSON safe inside a `<script>` element: every `<`, `>` and `&` (which JSON only
/// has inside strings) escaped as `\u003c`, `\u003e`, `\u0026`, so no `</script>` or `<!--` can
/// appear. NaN and infinities become `null` (serde_json's rule).
pub fn embedded_json(ev: &Event) -> String {
    let json = serde_json::to_string(ev).unwrap_or_else(|e| format!("{{\"error\":{:?}}}", e.to_string()));
    let mut out = String::with_capacity(json.len() + 64);
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            c => out.push(c),
        }
    }
    out
}

/// Read the event back out of a page made by [`html`].
pub fn event_from_html(page: &str) -> Option<Event> {
    let open = format!("<script type=\"application/json\" id=\"{JSON_ELEMENT_ID}\">");
    let start = page.find(&open)? + open.len();
    let len = page[start..].find("</script>")?;
    serde_json::from_str(&page[start..start + len]).ok()
}

fn table_rows(p: &mut String, rows: &[(&str, String)]) {
    for (k, v) in rows {
        let _ = writeln!(p, "<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(v));
    }
}

fn timeline_summary(t: &[Point]) -> String {
    match (t.first(), t.last()) {
        (Some(a), Some(b)) => {
            format!("{} points from {} s to {} s around the action", t.len(), num(Event::seconds(a), 1), num(Event::seconds(b), 1))
        }
        _ => "no points stored".into(),
    }
}

/// HTML text escaping (element content and attribute values).
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' | '\t' => out.push(' '),
            c if unshowable(c) => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Standard base64 with padding (for the script's CSP hash).
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A timeline value to draw: NaN (a gap) where it was not measured.
fn measured(v: Option<f32>) -> f64 {
    v.map_or(f64::NAN, f64::from)
}

/// A number for people: `decimals` places, and `n/a` for NaN or infinity.
fn num(x: f64, decimals: usize) -> String {
    if x.is_finite() { format!("{x:.decimals$}") } else { "n/a".into() }
}

fn mib(kib: u64) -> String {
    format!("{} MiB", kib / 1024)
}

fn action_word(a: EventAction) -> &'static str {
    match a {
        EventAction::Kill => "kill",
        EventAction::Freeze => "freeze",
        EventAction::DryRun => "dry run",
    }
}

/// Whether `c` is one XML forbids (or a chart cannot show): controls and U+FFFE/U+FFFF.
fn unshowable(c: char) -> bool {
    c.is_control() || c == '\u{FFFE}' || c == '\u{FFFF}'
}

/// At most `max` characters of `s` (an ellipsis when cut); [`unshowable`] ones become `?`.
fn clip(s: &str, max: usize) -> String {
    let shown = s.chars().map(|c| if unshowable(c) { '?' } else { c });
    if s.chars().count() <= max { shown.collect() } else { shown.take(max.saturating_sub(1)).chain(['…']).collect() }
}

/// The action's label: `kill 1234 hog (812 MiB) thrashing`.
pub fn action_label(ev: &Event) -> String {
    format!(
        "{} {} {} ({} MiB) {}",
        action_word(ev.action),
        ev.victim.pid,
        clip(&ev.victim.name, 40),
        ev.victim.footprint.mib(),
        ev.reason.as_str()
    )
}

fn headline(ev: &Event) -> String {
    let id = ev.id.map(|i| format!(" #{i}")).unwrap_or_default();
    format!("thrashguard event{id}: {}", action_label(ev))
}

/// `unix_ms` as `YYYY-MM-DD HH:MM:SS.mmm UTC` (proleptic Gregorian; any i64 formats).
pub fn utc(unix_ms: i64) -> String {
    let (y, m, d, h, mi, s, ms) = crate::units::utc_fields(unix_ms);
    format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}.{ms:03} UTC")
}

/// Compact axis numbers: `950`, `12.5k`, `3.2M`, `1.1e12`.
fn compact(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        "n/a".into()
    } else if a >= 1e12 {
        format!("{v:.1e}")
    } else if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 10.0 || a == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// One series of a panel.
struct Series {
    name: &'static str,
    color: colors::Rgb,
    value: fn(&Point) -> f64,
}

/// One panel: its y axis and series.
struct Panel {
    y_desc: &'static str,
    /// A fixed y range (stall percentages), else from the data.
    fixed: Option<(f64, f64)>,
    series: &'static [Series],
}

const KIB_PER_MIB: f64 = 1024.0;

const PANELS: [Panel; 3] = [
    Panel {
        y_desc: "stall % (last 1 s)",
        fixed: Some((0.0, 100.0)),
        series: &[
            Series { name: "full stall", color: colors::FULL, value: |p| measured(p.full) * 100.0 },
            Series { name: "some stall", color: colors::SOME, value: |p| measured(p.some) * 100.0 },
        ],
    },
    Panel {
        y_desc: "MiB",
        fixed: None,
        series: &[
            Series { name: "headroom (available + free swap)", color: colors::HEADROOM, value: |p| p.headroom.0 as f64 / KIB_PER_MIB },
            Series { name: "available", color: colors::AVAILABLE, value: |p| p.available.0 as f64 / KIB_PER_MIB },
        ],
    },
    Panel {
        y_desc: "per second",
        fixed: None,
        series: &[
            Series { name: "swap-ins (pages/s)", color: colors::SWAP_IN, value: |p| measured(p.swap_in_per_s) },
            Series { name: "file refaults (pages/s)", color: colors::FILE_REFAULTS, value: |p| measured(p.file_refaults_per_s) },
            Series { name: "major faults /s", color: colors::MAJFAULTS, value: |p| measured(p.majfaults_per_s) },
        ],
    },
];

/// The x range: every point and the action (t = 0), at least 2 s wide, padded 2 %.
fn x_range(t: &[Point]) -> (f64, f64) {
    if t.is_empty() {
        return (-10.0, 10.0);
    }
    let (mut lo, mut hi) = t.iter().map(Event::seconds).fold((0.0f64, 0.0f64), |(lo, hi), s| (lo.min(s), hi.max(s)));
    if hi - lo < 2.0 {
        let mid = (lo + hi) / 2.0;
        (lo, hi) = (mid - 1.0, mid + 1.0);
    }
    let pad = (hi - lo) * 0.02;
    (lo - pad, hi + pad)
}

/// The y range for a panel: 0 and every finite value, at least 1 wide, headroom above.
fn y_range(t: &[Point], panel: &Panel) -> (f64, f64) {
    if let Some(r) = panel.fixed {
        return r;
    }
    let (mut lo, mut hi) = (0.0f64, 0.0f64);
    for p in t {
        for s in panel.series {
            let v = (s.value)(p);
            if v.is_finite() {
                (lo, hi) = (lo.min(v), hi.max(v));
            }
        }
    }
    // keep the span finite whatever the values (f32::MAX both ways still is)
    (lo, hi) = (lo.max(-1e300), hi.min(1e300));
    if hi - lo < 1.0 {
        hi = lo + 1.0;
    }
    (lo, hi + (hi - lo) * 0.08)
}

/// The line segments of one series: finite values only (a gap where a value is NaN/infinite),
/// clamped into the panel's range.
fn segments(t: &[Point], s: &Series, (lo, hi): (f64, f64)) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    for p in t {
        let v = (s.value)(p);
        if v.is_finite() {
            if let Some(seg) = out.last_mut() {
                seg.push((Event::seconds(p), v.clamp(lo, hi)));
            }
        } else if out.last().is_some_and(|seg| !seg.is_empty()) {
            out.push(Vec::new());
        }
    }
    out.retain(|seg| !seg.is_empty());
    out
}

/// Runs of the `pressure` and `recovering` phases: (from s, to s, phase).
fn phase_runs(t: &[Point]) -> Vec<(f64, f64, PhaseTag)> {
    let mut runs: Vec<(f64, f64, PhaseTag)> = Vec::new();
    for (i, p) in t.iter().enumerate() {
        if p.phase == PhaseTag::Calm {
            continue;
        }
        let from = Event::seconds(p);
        // a point's phase holds until the next sample
        let to = t.get(i + 1).map_or(from, Event::seconds);
        match runs.last_mut() {
            Some(last) if last.2 == p.phase && (last.1 - from).abs() < 1e-9 => last.1 = to,
            _ => runs.push((from, to, p.phase)),
        }
    }
    runs
}

/// Draw the chart; `pixels`: a bitmap (lines drawn pixel by pixel, see below).
fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, ev: &Event, pixels: bool) -> Result<(), ReportError> {
    root.fill(&WHITE).map_err(draw_err)?;
    let (top, body) = root.split_vertically(70);
    let title_font = (FAMILY, 22).into_font().color(&BLACK);
    let sub_font = (FAMILY, 15).into_font().color(&RGBColor(60, 60, 60));
    top.draw_text(&clip(&headline(ev), 110), &title_font, (16, 10)).map_err(draw_err)?;
    let exit = ev.exit_after_ms.filter(|ms| ms.is_finite()).map(|ms| format!(", exited {} ms after", num(ms, 0))).unwrap_or_default();
    let sub = format!(
        "host {}, scope {}, {}; outcome: {}{exit}; shaded: pressure (orange), recovering (green)",
        clip(&ev.host, 40),
        clip(&ev.scope, 60),
        utc(ev.unix_ms),
        clip(&ev.outcome, 40)
    );
    top.draw_text(&clip(&sub, 150), &sub_font, (16, 42)).map_err(draw_err)?;

    let t = &ev.timeline;
    let (x0, x1) = x_range(t);
    let runs = phase_runs(t);
    let panels = body.split_evenly((PANELS.len(), 1));
    let label_font = (FAMILY, 14).into_font();
    for (i, (area, panel)) in panels.iter().zip(PANELS.iter()).enumerate() {
        let last = i + 1 == PANELS.len();
        let (y0, y1) = y_range(t, panel);
        let mut chart = ChartBuilder::on(area)
            .margin_left(10)
            .margin_right(24)
            .margin_top(8)
            .margin_bottom(if last { 4 } else { 8 })
            .x_label_area_size(if last { 42 } else { 22 })
            .y_label_area_size(78)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(draw_err)?;
        let xfmt = |v: &f64| format!("{v:.0}");
        let yfmt = |v: &f64| compact(*v);
        let mut mesh = chart.configure_mesh();
        mesh.x_labels(12)
            .y_labels(6)
            .x_label_formatter(&xfmt)
            .y_label_formatter(&yfmt)
            .y_desc(panel.y_desc)
            .label_style(label_font.clone())
            .axis_desc_style(label_font.clone())
            .light_line_style(RGBColor(238, 238, 238));
        if last {
            mesh.x_desc("seconds from the action");
        }
        mesh.draw().map_err(draw_err)?;

        // phases behind everything
        chart
            .draw_series(runs.iter().map(|&(a, b, phase)| {
                let c = if phase == PhaseTag::Pressure { colors::PRESSURE } else { colors::RECOVERING };
                Rectangle::new([(a.max(x0), y0), (b.min(x1), y1)], rgb(c).mix(0.45).filled())
            }))
            .map_err(draw_err)?;

        for s in panel.series {
            let style = ShapeStyle { color: rgb(s.color).to_rgba(), filled: false, stroke_width: 2 };
            let segs = segments(t, s, (y0, y1));
            let label = if segs.is_empty() { format!("{} (no data)", s.name) } else { s.name.to_string() };
            chart
                .draw_series(std::iter::empty::<PathElement<(f64, f64)>>())
                .map_err(draw_err)?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            for seg in &segs {
                if pixels {
                    // plotters fills lines wider than 1 px as one polygon, which spikes out of
                    // the panel at sharp turns: three 1 px passes, a pixel apart, instead
                    let mut px: Vec<(i32, i32)> = seg.iter().map(|p| chart.backend_coord(p)).collect();
                    px.dedup();
                    let thin = ShapeStyle { stroke_width: 1, ..style };
                    for (dx, dy) in [(0, 0), (1, 0), (0, 1)] {
                        let path = PathElement::new(px.iter().map(|&(x, y)| (x + dx, y + dy)).collect::<Vec<_>>(), thin);
                        root.draw(&path).map_err(draw_err)?;
                    }
                } else {
                    chart.draw_series(LineSeries::new(seg.iter().copied(), style)).map_err(draw_err)?;
                }
            }
        }

        // the action
        let marker = ShapeStyle { color: rgb(colors::ACTION).to_rgba(), filled: false, stroke_width: 2 };
        chart.draw_series(std::iter::once(PathElement::new(vec![(0.0, y0), (0.0, y1)], marker))).map_err(draw_err)?;
        if i == 0 {
            let label = action_label(ev);
            let right_half = (0.0 - x0) > (x1 - x0) * 0.6;
            let (hpos, dx) = if right_half { (HPos::Right, -(x1 - x0) * 0.006) } else { (HPos::Left, (x1 - x0) * 0.006) };
            let style = (FAMILY, 15).into_font().color(&rgb(colors::ACTION)).pos(Pos::new(hpos, VPos::Top));
            chart.draw_series(std::iter::once(Text::new(label, (dx, y1 - (y1 - y0) * 0.03), style))).map_err(draw_err)?;
        }
        if t.is_empty() && i == 0 {
            let style = (FAMILY, 18).into_font().color(&RGBColor(120, 120, 120)).pos(Pos::new(HPos::Center, VPos::Center));
            chart
                .draw_series(std::iter::once(Text::new(
                    "no timeline stored with this event",
                    (x0 + (x1 - x0) * 0.5, (y0 + y1) / 2.0),
                    style,
                )))
                .map_err(draw_err)?;
        }
        let legend_pos = if (0.0 - x0) < (x1 - x0) * 0.5 { SeriesLabelPosition::UpperRight } else { SeriesLabelPosition::UpperLeft };
        chart
            .configure_series_labels()
            .position(legend_pos)
            .label_font(label_font.clone())
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(190, 190, 190))
            .draw()
            .map_err(draw_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{TIMELINE_ZERO, Victim};
    use crate::policy::{Evidence, Reason};
    use crate::units::{Kib, Micros};

    /// A thrash episode: pressure builds for 20 s, the kill at 0, recovery after.
    pub(crate) fn episode(n: usize) -> Event {
        let start = -(n as f64) * 0.1 * 0.75;
        let timeline = (0..n)
            .map(|i| {
                let s = start + i as f64 * 0.1;
                let before = s < 0.0;
                let load = if before { (1.0 + s / 20.0).clamp(0.0, 1.0) } else { (1.0 - s).clamp(0.0, 1.0) * 0.5 };
                Point {
                    t: Micros((TIMELINE_ZERO.0 as f64 + s * 1e6) as u64),
                    full: Some((load * 0.9) as f32),
                    some: Some(load as f32),
                    headroom: Kib(((1.0 - load) * 3_000_000.0 + 100_000.0) as u64),
                    available: Kib(((1.0 - load) * 1_200_000.0 + 50_000.0) as u64),
                    swap_in_per_s: Some((load * 9000.0) as f32),
                    file_refaults_per_s: Some((load * 4000.0) as f32),
                    majfaults_per_s: Some((load * 6000.0) as f32),
                    phase: if load < 0.2 {
                        PhaseTag::Calm
                    } else if before {
                        PhaseTag::Pressure
                    } else {
                        PhaseTag::Recovering
                    },
                }
            })
            .collect();
        Event {
            id: Some(42),
            unix_ms: 1_795_450_023_456,
            host: "web1".into(),
            scope: "system".into(),
            action: EventAction::Kill,
            reason: Reason::Thrashing,
            outcome: "killed".into(),
            victim: Victim {
                pid: 1234,
                name: "hog".into(),
                cmdline: "/usr/bin/hog --grow 3x".into(),
                footprint: Kib(812 * 1024),
                swap: Kib(300 * 1024),
                oom_score: Some(900),
            },
            evidence: Evidence {
                at: Micros(12_000_000),
                psi: true,
                full: Some(0.83),
                some: Some(0.95),
                full_mean: Some(0.61),
                episode: Micros(4_100_000),
                available: Kib(60_000),
                total: Kib(1_496_020),
                swap_total: Kib(4_194_300),
                headroom: Kib(800_000),
                headroom_trend_kib_s: Some(-90_000.0),
                exhaustion_in: Some(Micros(8_800_000)),
                anon_refaults_per_s: Some(8100.0),
                file_refaults_per_s: Some(3600.0),
                majfaults_per_s: Some(5400.0),
            },
            exit_after_ms: Some(212.5),
            timeline,
        }
    }

    /// Decode a PNG: (width, height, RGB pixels).
    fn decode(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let dec = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = dec.read_info().expect("a PNG header");
        let mut buf = vec![0; reader.output_buffer_size().expect("size")];
        let info = reader.next_frame(&mut buf).expect("a frame");
        assert_eq!(info.color_type, png::ColorType::Rgb);
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    fn count(pixels: &[u8], c: colors::Rgb) -> usize {
        pixels.chunks_exact(3).filter(|p| (p[0], p[1], p[2]) == c).count()
    }

    #[test]
    fn png_decodes_with_every_series_colour() {
        let (w, h, px) = decode(&png(&episode(900)).expect("renders"));
        assert_eq!((w, h), SIZE);
        for (name, c) in [
            ("full", colors::FULL),
            ("some", colors::SOME),
            ("headroom", colors::HEADROOM),
            ("available", colors::AVAILABLE),
            ("swap-in", colors::SWAP_IN),
            ("file refaults", colors::FILE_REFAULTS),
            ("majfaults", colors::MAJFAULTS),
            ("action", colors::ACTION),
        ] {
            assert!(count(&px, c) > 100, "{name}: {} pixels of {c:?}", count(&px, c));
        }
        // the pressure phase is shaded (mixed over white)
        let shade = |c: u8| (f64::from(c) * 0.45 + 255.0 * 0.55).round() as u8;
        let pressure = (shade(colors::PRESSURE.0), shade(colors::PRESSURE.1), shade(colors::PRESSURE.2));
        let near =
            px.chunks_exact(3).filter(|p| p.iter().zip([pressure.0, pressure.1, pressure.2]).all(|(a, b)| a.abs_diff(b) <= 2)).count();
        assert!(near > 10_000, "pressure shade: {near} pixels");
        // text was drawn: dark pixels in the title band
        let dark = px[..(70 * w as usize * 3)].chunks_exact(3).filter(|p| p.iter().all(|&c| c < 80)).count();
        assert!(dark > 500, "title text: {dark} dark pixels");
    }

    /// plotters fills wide lines as polygons whose sharp turns spike out of the panel: a
    /// timeline that jumps between 0 and its top at every sample must stay inside.
    #[test]
    fn sharp_spikes_stay_in_their_panels() {
        let mut ev = episode(1200);
        for (i, p) in ev.timeline.iter_mut().enumerate() {
            let on = (i % 2 == 0) ^ (i % 7 == 0);
            p.full = Some(if on { 1.0 } else { 0.0 });
            p.some = Some(if on { 0.3 } else { 0.9 });
            p.swap_in_per_s = Some(if on { 5000.0 } else { 0.0 });
            p.majfaults_per_s = Some(if i % 3 == 0 { 4000.0 } else { 10.0 });
            p.available = Kib(if on { 0 } else { 1_000_000 });
        }
        let (w, _, px) = decode(&png(&ev).expect("renders"));
        let series =
            [colors::FULL, colors::SOME, colors::HEADROOM, colors::AVAILABLE, colors::SWAP_IN, colors::FILE_REFAULTS, colors::MAJFAULTS];
        let row = |y: usize| &px[y * w as usize * 3..(y + 1) * w as usize * 3];
        let strays: Vec<(usize, usize)> = (0..70)
            .chain(862..SIZE.1 as usize)
            .flat_map(|y| {
                row(y).chunks_exact(3).enumerate().filter(|(_, c)| series.contains(&(c[0], c[1], c[2]))).map(move |(x, _)| (x, y))
            })
            .collect();
        assert!(strays.is_empty(), "series pixels outside the panels: {:?}", &strays[..strays.len().min(10)]);
        assert!(count(&px, colors::SWAP_IN) > 1000);
    }

    #[test]
    fn svg_parses_with_series_and_the_victims_label() {
        let text = svg(&episode(600)).expect("renders");
        let doc = roxmltree::Document::parse(&text).expect("well-formed XML");
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "svg");
        assert_eq!(root.attribute("width"), Some("1200"));
        let lines: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("polyline") || n.has_tag_name("path")).collect();
        for c in [colors::FULL, colors::SOME, colors::HEADROOM, colors::AVAILABLE, colors::SWAP_IN, colors::FILE_REFAULTS, colors::ACTION] {
            let want = format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2);
            let long = lines.iter().any(|n| {
                n.attribute("stroke").is_some_and(|s| s.eq_ignore_ascii_case(&want))
                    && n.attribute("points").is_none_or(|p| p.split_whitespace().count() >= 2)
            });
            assert!(long, "a line in {want}");
        }
        let texts: Vec<String> =
            doc.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| n.text().map(|t| t.trim().to_string())).collect();
        assert!(texts.iter().any(|t| t == "kill 1234 hog (812 MiB) thrashing"), "{texts:?}");
        assert!(texts.iter().any(|t| t.contains("host web1, scope system, 2026-11-23")), "{texts:?}");
        assert!(texts.iter().any(|t| t == "seconds from the action"));
    }

    #[test]
    fn html_carries_the_event_and_fetches_nothing() {
        let ev = episode(300);
        let page = html(&ev).expect("renders");
        assert_eq!(event_from_html(&page).as_ref(), Some(&ev));
        for bad in ["://", "src=", "href=", "url(", "@import"] {
            assert!(!page.contains(bad), "{bad} in the page");
        }
        assert!(page.contains("<svg width=\"1200\""));
        assert!(page.contains("<td>/usr/bin/hog --grow 3x</td>"));
        assert!(page.contains("thrashing: full stall 61% over 4.1 s"));
        // the CSP hash is the script's
        let hash = base64(&Sha256::digest(LOCAL_TIME_SCRIPT.as_bytes()));
        assert!(page.contains(&format!("script-src 'sha256-{hash}'")));
        assert!(page.contains(&format!("<script>{LOCAL_TIME_SCRIPT}</script>")));
    }

    #[test]
    fn hostile_names_stay_text() {
        let mut ev = episode(50);
        ev.victim.name = "</script><script>alert(1)</script>".into();
        ev.victim.cmdline = "x <!-- & \"q\" 'a' https://evil.example/x.js".into();
        ev.host = "<img src=x>\u{0}\u{1b}[31m\r\n".into();
        ev.outcome = "\u{7f}\u{9c}\u{feff}\u{fffe}".into();
        ev.scope = "/sys/fs/cgroup/a&b".into();
        let page = html(&ev).expect("renders");
        assert_eq!(page.matches("<script").count(), 2, "only our two script elements");
        assert!(!page.contains("<img"));
        assert!(!page.contains("<!--"));
        assert_eq!(event_from_html(&page).as_ref(), Some(&ev));
        let text = svg(&ev).expect("renders");
        roxmltree::Document::parse(&text).expect("well-formed with hostile text");
        decode(&png(&ev).expect("renders"));
    }

    #[test]
    fn any_script_and_control_characters() {
        let mut ev = episode(80);
        ev.victim.name = "日本語\u{0}\u{1}\t\n😀\u{202e}x".into();
        ev.scope = "/sys/fs/cgroup/Ω/\u{1b}".into();
        all_formats(&ev);
        let page = html(&ev).expect("renders");
        assert!(!page.contains('\u{0}') && !page.contains('\u{1b}'));
        assert_eq!(event_from_html(&page), Some(ev));
    }

    fn point() -> impl proptest::strategy::Strategy<Value = Point> {
        use proptest::prelude::*;
        let f = || prop::option::of(prop::num::f32::ANY);
        (any::<u64>(), f(), f(), any::<u64>(), any::<u64>(), f(), f(), f(), 0..3u8).prop_map(|(t, full, some, h, a, si, fr, mf, ph)| {
            Point {
                t: Micros(t),
                full,
                some,
                headroom: Kib(h),
                available: Kib(a),
                swap_in_per_s: si,
                file_refaults_per_s: fr,
                majfaults_per_s: mf,
                phase: [PhaseTag::Calm, PhaseTag::Pressure, PhaseTag::Recovering][ph as usize],
            }
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        /// Any timeline and any names draw in every format (no panic, no error).
        #[test]
        fn any_event_draws(points in proptest::collection::vec(point(), 0..40), name in ".{0,60}", host in "\\PC{0,30}", ms in proptest::prelude::any::<i64>()) {
            let mut ev = episode(0);
            ev.timeline = points;
            ev.victim.name = name;
            ev.host = host;
            ev.unix_ms = ms;
            all_formats(&ev);
        }
    }

    fn all_formats(ev: &Event) {
        let (w, h, _) = decode(&png(ev).expect("png renders"));
        assert_eq!((w, h), SIZE);
        let text = svg(ev).expect("svg renders");
        roxmltree::Document::parse(&text).expect("well-formed");
        let page = html(ev).expect("html renders");
        assert!(page.contains(JSON_ELEMENT_ID));
    }

    #[test]
    fn empty_timeline() {
        let mut ev = episode(0);
        ev.timeline.clear();
        all_formats(&ev);
        let text = svg(&ev).expect("renders");
        assert!(text.contains("no timeline stored with this event"));
        assert!(text.contains("full stall (no data)"));
        assert_eq!(event_from_html(&html(&ev).expect("renders")), Some(ev));
    }

    #[test]
    fn one_point() {
        let mut ev = episode(1);
        ev.timeline[0].t = TIMELINE_ZERO;
        all_formats(&ev);
        assert_eq!(x_range(&ev.timeline), (-1.04, 1.04));
    }

    #[test]
    fn only_before_or_only_after_the_action() {
        let ev = episode(400);
        let mut before = ev.clone();
        before.timeline.retain(|p| Event::seconds(p) < -5.0);
        let (_, hi) = x_range(&before.timeline);
        assert!(hi > 0.0, "the action stays on the axis");
        all_formats(&before);
        let mut after = ev;
        after.timeline.retain(|p| Event::seconds(p) > 3.0);
        let (lo, _) = x_range(&after.timeline);
        assert!(lo < 0.0);
        all_formats(&after);
    }

    #[test]
    fn nan_and_infinite_values_leave_gaps() {
        let mut ev = episode(200);
        for (i, p) in ev.timeline.iter_mut().enumerate() {
            match i % 7 {
                0 => p.full = Some(f32::NAN),
                1 => p.swap_in_per_s = Some(f32::INFINITY),
                2 => p.file_refaults_per_s = Some(f32::NEG_INFINITY),
                3 => p.some = None,
                _ => {}
            }
        }
        ev.timeline.iter_mut().for_each(|p| p.majfaults_per_s = Some(f32::NAN));
        ev.exit_after_ms = Some(f64::NAN);
        ev.evidence.full = Some(f64::INFINITY);
        all_formats(&ev);
        let s = &PANELS[0].series[0];
        let segs = segments(&ev.timeline, s, (0.0, 100.0));
        assert!(segs.len() > 20, "one gap per NaN");
        assert!(segs.iter().flatten().all(|(x, y)| x.is_finite() && y.is_finite()));
        assert!(svg(&ev).expect("renders").contains("major faults /s (no data)"));
    }

    /// After a rescue the guard has no reading half a second old: those points are not
    /// measured, drawn as a gap (never as a drop to zero), said so in the evidence, and kept
    /// as not measured through the HTML's embedded JSON.
    #[test]
    fn unmeasured_points_are_gaps_not_zeros() {
        let mut ev = episode(300);
        let after: Vec<usize> = (0..ev.timeline.len()).filter(|&i| (0.0..0.5).contains(&Event::seconds(&ev.timeline[i]))).collect();
        assert!(after.len() >= 4, "{after:?}");
        for &i in &after {
            let p = &mut ev.timeline[i];
            (p.full, p.some, p.swap_in_per_s, p.file_refaults_per_s, p.majfaults_per_s) = (None, None, None, None, None);
        }
        ev.evidence.anon_refaults_per_s = None;
        ev.evidence.full = None;
        for panel in PANELS.iter() {
            for s in panel.series.iter().filter(|s| s.name != "headroom (available + free swap)" && s.name != "available") {
                let segs = segments(&ev.timeline, s, (0.0, 100.0));
                assert_eq!(segs.len(), 2, "{}: one gap where nothing was measured", s.name);
                assert!(segs.iter().flatten().all(|&(x, _)| !(0.0..0.5).contains(&x)), "{}: drawn where nothing was measured", s.name);
            }
        }
        let page = html(&ev).expect("renders");
        assert!(page.contains("not measured"), "the evidence table says so");
        assert!(page.contains("rates not measured yet"), "and the decision line");
        assert_eq!(event_from_html(&page), Some(ev.clone()));
        let json = serde_json::to_string(&ev).expect("serializes");
        assert!(json.contains(r#""full":null"#), "null in JSON, not 0 and not NaN");
        all_formats(&ev);
    }

    #[test]
    fn huge_and_negative_values() {
        let mut ev = episode(100);
        ev.timeline[10].headroom = Kib(u64::MAX);
        ev.timeline[11].swap_in_per_s = Some(f32::MAX);
        ev.timeline[12].file_refaults_per_s = Some(-f32::MAX);
        ev.timeline[13].full = Some(1e30);
        ev.timeline[14].some = Some(-5.0);
        ev.victim.footprint = Kib(u64::MAX);
        ev.victim.name = "n".repeat(10_000);
        ev.unix_ms = i64::MIN;
        ev.evidence.episode = Micros(u64::MAX);
        all_formats(&ev);
        ev.unix_ms = i64::MAX;
        ev.timeline.last_mut().expect("points").t = Micros(u64::MAX);
        ev.timeline[0].t = Micros::ZERO;
        all_formats(&ev);
    }

    #[test]
    fn many_points_at_one_instant() {
        let mut ev = episode(50);
        ev.timeline.iter_mut().for_each(|p| p.t = Micros(TIMELINE_ZERO.0 - 500_000));
        all_formats(&ev);
    }

    #[test]
    fn phases_become_runs() {
        let ev = episode(400);
        let runs = phase_runs(&ev.timeline);
        assert_eq!(runs.iter().map(|r| r.2).collect::<Vec<_>>(), [PhaseTag::Pressure, PhaseTag::Recovering]);
        assert!(runs[0].1 <= 0.0 + 1e-9 && runs[1].0 >= 0.0 - 1e-9);
    }

    #[test]
    fn utc_formats_any_instant() {
        assert_eq!(utc(0), "1970-01-01 00:00:00.000 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00.000 UTC");
        assert_eq!(utc(1_795_450_023_456), "2026-11-23 16:07:03.456 UTC");
        assert_eq!(utc(-1), "1969-12-31 23:59:59.999 UTC");
        assert!(utc(i64::MIN).ends_with("UTC"));
        assert!(utc(i64::MAX).ends_with("UTC"));
    }

    #[test]
    fn helpers() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(compact(950.0), "950");
        assert_eq!(compact(12_600.0), "13k");
        assert_eq!(compact(3_200_000.0), "3.2M");
        assert_eq!(compact(2.5), "2.5");
        assert_eq!(compact(f64::NAN), "n/a");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(escape("<a href='x'>&\"</a>"), "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;");
        assert_eq!(action_label(&episode(1)), "kill 1234 hog (812 MiB) thrashing");
    }
}
