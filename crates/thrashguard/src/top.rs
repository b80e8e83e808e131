//! `thrashguard top`: the live terminal view of pressure, headroom, the biggest processes
//! and the guard's last actions.
//!
//! Owns sampling for the view (the guard's own [`Sampler`], a policy of its own for the
//! trailing-second stall shares and the headroom trend, the [`Scanner`] for footprints,
//! growth and major faults between two scans), asking the running guard for its phase and
//! last action on `guard.status_socket`, and the terminal: raw mode and the alternate
//! screen, keys, resizes, and restoring the terminal on every way out (quit keys,
//! SIGTERM/SIGINT/SIGHUP, errors, panics). `--once` prints one frame as plain text instead.
//! What a frame shows is rendered by `thrashguard_core::top_view`. It must never signal a
//! process, write a kernel file or change the running guard: it only reads.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::crossterm::{cursor, execute, terminal};
use ratatui::layout::Rect;
use serde_json::Value;
use thrashguard_core::config::Config;
use thrashguard_core::policy::Policy;
use thrashguard_core::top_view::{self, ActionRow, GuardView, MemoryView, SortKey, TopModel, TopSample};
use thrashguard_core::units::{Micros, Pid};

use crate::sample::Sampler;
use crate::scan::{Preferences, Scanner};

/// Samples kept for the sparklines: wider than any terminal's third.
const RING: usize = 512;
/// The guard is asked at most this often (it rescans /proc for a fresh status at most once
/// a second anyway).
const GUARD_POLL: Duration = Duration::from_millis(900);
/// Actions remembered.
const ACTIONS: usize = 5;
/// The longest wait for a key before the stop flag is looked at again.
const KEY_WAIT: Duration = Duration::from_millis(250);
/// Width of `--once` frames when stdout is not a terminal.
const TEXT_WIDTH: u16 = 120;

/// `top` arguments.
#[derive(Clone, Debug)]
pub struct TopArgs {
    /// Time between samples.
    pub interval: Duration,
    /// Process rows shown at most.
    pub count: usize,
    /// Print one frame as text and exit.
    pub once: bool,
    /// Show only processes whose name matches.
    pub filter: Option<regex_lite::Regex>,
    /// Where /proc is.
    pub proc_root: PathBuf,
    /// Panic after the first frame (tests of the panic hook).
    pub test_panic: bool,
}

/// The last action a guard reported: pid, name, scope.
type ActionId = (u64, String, String);

/// Everything `top` reads, and the model it keeps up to date.
struct Collector {
    sampler: Sampler,
    policy: Policy,
    scanner: Scanner,
    scanned_at: Option<Instant>,
    elapsed: Option<Micros>,
    socket: Option<PathBuf>,
    polled_at: Option<Instant>,
    /// The last action seen on the socket, and whether the guard was seen at all.
    seen_action: Option<ActionId>,
    guard_seen: bool,
    /// Actions seen, newest first, with when top first saw them (`None`: before it started).
    actions: VecDeque<(ActionRow, Option<Instant>)>,
    filter: Option<regex_lite::Regex>,
    count: usize,
    model: TopModel,
}

impl Collector {
    fn new(cfg: &Config, args: &TopArgs) -> Result<Collector> {
        let sampler = Sampler::open(&args.proc_root, Instant::now())?;
        let scanner = Scanner::new(&args.proc_root, cfg.guard.max_processes as usize, Pid(std::process::id()), Preferences::default())?;
        let mut model = TopModel::new(&crate::lifeline::hostname(), RING);
        model.interval = Micros(u64::try_from(args.interval.as_micros()).unwrap_or(u64::MAX));
        Ok(Collector {
            sampler,
            policy: Policy::new(cfg.policy.clone()),
            scanner,
            scanned_at: None,
            elapsed: None,
            socket: (!cfg.guard.status_socket.is_empty()).then(|| PathBuf::from(&cfg.guard.status_socket)),
            polled_at: None,
            seen_action: None,
            guard_seen: false,
            actions: VecDeque::with_capacity(ACTIONS + 1),
            filter: args.filter.clone(),
            count: args.count,
            model,
        })
    }

    /// Sample, scan, ask the guard; then refresh the model.
    fn tick(&mut self) {
        self.model.note = None;
        let mut swap_in_use = true;
        match self.sampler.sample() {
            Ok(snap) => {
                // the stall is None (shown as n/a) until the policy has a reading half a second old
                let ev = self.policy.step(&snap.scope_sample()).evidence;
                self.model.psi = snap.psi.is_some();
                self.model.memory = MemoryView {
                    total: snap.mem.mem_total,
                    available: snap.mem.available(),
                    swap_total: snap.mem.swap_total,
                    swap_free: snap.mem.swap_free,
                    trend_kib_s: ev.headroom_trend_kib_s,
                };
                swap_in_use = snap.mem.swap_total > snap.mem.swap_free;
                self.model.samples.push(TopSample { full: ev.full, some: ev.some, headroom: ev.headroom });
            }
            Err(e) => self.model.note = Some(format!("cannot sample: {e}")),
        }
        let now = Instant::now();
        self.scanner.scan_with(None, swap_in_use);
        self.elapsed = self.scanned_at.map(|t| Micros(u64::try_from(now.duration_since(t).as_micros()).unwrap_or(u64::MAX)));
        self.scanned_at = Some(now);
        if self.polled_at.is_none_or(|t| now.duration_since(t) >= GUARD_POLL) {
            self.polled_at = Some(now);
            self.poll_guard(now);
        }
        self.refresh();
    }

    /// Ask the running guard for its phase and last action.
    fn poll_guard(&mut self, now: Instant) {
        let reply = self.socket.as_deref().and_then(crate::status::from_daemon);
        let Some((view, last)) = reply.as_ref().and_then(guard_view) else {
            self.model.guard = GuardView::Absent;
            return;
        };
        if let Some(last) = last
            && self.seen_action.as_ref() != Some(&last)
        {
            // an action already there when top first reached the guard happened earlier
            let when = self.guard_seen.then_some(now);
            let (pid, name, scope) = last.clone();
            self.actions.push_front((ActionRow { pid, name, scope, age: None }, when));
            self.actions.truncate(ACTIONS);
            self.seen_action = Some(last);
        }
        self.guard_seen = true;
        self.model.guard = view;
    }

    /// Rebuild the rows and the actions' ages (after a tick or a change of sort key).
    fn refresh(&mut self) {
        let filter = self.filter.as_ref();
        self.model.procs =
            top_view::rows(self.scanner.candidates(), self.elapsed, self.model.sort, self.count, |n| filter.is_none_or(|f| f.is_match(n)));
        self.model.processes_seen = self.scanner.candidates().iter().filter(|c| !c.kernel_thread).count();
        self.model.actions = self
            .actions
            .iter()
            .map(|(a, when)| ActionRow {
                age: when.map(|t| Micros(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX))),
                ..a.clone()
            })
            .collect();
    }
}

/// The guard's phase and counters, and its last action, from its status reply; `None` when
/// the reply is not a status body.
pub fn guard_view(v: &Value) -> Option<(GuardView, Option<ActionId>)> {
    let phase = v.get("phase")?.as_str()?.to_string();
    let view = GuardView::Running { phase, decisions: v["decisions"].as_u64().unwrap_or(0), actions: v["actions"].as_u64().unwrap_or(0) };
    let last = v["last_action"].as_object().map(|a| {
        (
            a.get("pid").and_then(Value::as_u64).unwrap_or(0),
            a.get("name").and_then(Value::as_str).unwrap_or("?").to_string(),
            a.get("scope").and_then(Value::as_str).unwrap_or("?").to_string(),
        )
    });
    Some((view, last))
}

/// Run `top`.
pub fn run(cfg: &Config, args: &TopArgs) -> Result<()> {
    let mut c = Collector::new(cfg, args)?;
    if args.once {
        return once(&mut c, args.interval);
    }
    interactive(&mut c, args.interval, args.test_panic)
}

/// `--once`: two samples an interval apart (rates need two, at least
/// [`MIN_RATE_SPAN`](thrashguard_core::policy::MIN_RATE_SPAN) apart), one frame as text on stdout.
fn once(c: &mut Collector, interval: Duration) -> Result<()> {
    c.tick();
    std::thread::sleep(interval.max(Duration::from_micros(thrashguard_core::policy::MIN_RATE_SPAN.0)));
    c.tick();
    let width = if std::io::stdout().is_terminal() { terminal::size().map_or(TEXT_WIDTH, |(w, _)| w) } else { TEXT_WIDTH };
    let mut buf = Buffer::empty(Rect::new(0, 0, width, top_view::full_height(&c.model)));
    top_view::render(&c.model, buf.area, &mut buf);
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(top_view::to_text(&buf).as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Whether top has the terminal in raw mode on the alternate screen.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// Leave the alternate screen, show the cursor, leave raw mode; only once (leaving the
/// alternate screen a second time would move the cursor back to where it was saved, over
/// whatever was printed since, such as a panic's message).
fn restore_terminal() {
    if TAKEN.swap(false, Ordering::SeqCst) {
        let _ = execute!(std::io::stdout(), cursor::Show, terminal::LeaveAlternateScreen);
        let _ = terminal::disable_raw_mode();
    }
}

/// Restores the terminal when dropped: on return, on error and on unwinding.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// The live view until q, Esc, Ctrl-C or a signal.
fn interactive(c: &mut Collector, interval: Duration, test_panic: bool) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT, signal_hook::consts::SIGHUP] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    // a panic restores the terminal before its message is printed, so the message is seen
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        previous(info);
    }));
    let _restore = Restore;
    TAKEN.store(true, Ordering::SeqCst);
    terminal::enable_raw_mode().context("cannot put the terminal in raw mode")?;
    execute!(std::io::stdout(), terminal::EnterAlternateScreen, cursor::Hide)?;
    let mut term = ratatui::Terminal::new(ratatui::backend::CrosstermBackend::new(std::io::stdout()))?;
    term.clear()?;
    let mut next = Instant::now();
    let mut dirty = true;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= next {
            c.tick();
            next += interval;
            if next < now {
                next = now + interval; // fell behind (suspended): no burst of catch-up samples
            }
            dirty = true;
        }
        if dirty {
            term.draw(|f| top_view::render(&c.model, f.area(), f.buffer_mut()))?;
            dirty = false;
            if test_panic {
                panic!("--test-panic: panicking after the first frame");
            }
        }
        if !event::poll(next.saturating_duration_since(Instant::now()).min(KEY_WAIT))? {
            continue;
        }
        match event::read()? {
            Event::Key(k) if k.kind != KeyEventKind::Release => match k.code {
                KeyCode::Char('q') | KeyCode::Esc => break,
                KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => break,
                KeyCode::Char(ch) => {
                    if let Some(sort) = SortKey::from_key(ch) {
                        c.model.sort = sort;
                        c.refresh();
                        dirty = true;
                    }
                }
                _ => {}
            },
            Event::Resize(..) => {
                term.autoresize()?;
                dirty = true;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether `top` can draw here: stdout must be a terminal (else `--once`).
pub fn needs_terminal(once: bool) -> Option<&'static str> {
    (!once && !std::io::stdout().is_terminal()).then_some("top needs a terminal on stdout; use `top --once` for one frame as text")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_reply_becomes_phase_counters_and_last_action() {
        let v = serde_json::json!({"ok":true,"phase":"recovering","decisions":3,"actions":2,
            "last_action":{"pid":77,"name":"leaky","scope":"v2:/user.slice"}});
        let (view, last) = guard_view(&v).expect("a status body");
        assert_eq!(view, GuardView::Running { phase: "recovering".into(), decisions: 3, actions: 2 });
        assert_eq!(last, Some((77, "leaky".into(), "v2:/user.slice".into())));
        let (_, last) = guard_view(&serde_json::json!({"phase":"calm","last_action":null})).expect("body");
        assert_eq!(last, None);
        assert!(guard_view(&serde_json::json!({"ok":false})).is_none());
        assert!(guard_view(&serde_json::json!([1, 2])).is_none());
        assert!(guard_view(&serde_json::json!({"phase": 5})).is_none());
    }

    #[test]
    fn collects_this_host_twice_with_rates() {
        let args = TopArgs {
            interval: Duration::from_millis(100),
            count: 5,
            once: true,
            filter: None,
            proc_root: "/proc".into(),
            test_panic: false,
        };
        let mut cfg = Config::default();
        cfg.guard.status_socket.clear();
        let mut c = Collector::new(&cfg, &args).expect("collector");
        c.tick();
        assert!(c.model.procs.iter().all(|p| p.growth_mib_s.is_none()));
        std::thread::sleep(Duration::from_millis(100));
        c.tick();
        assert_eq!(c.model.samples.len(), 2);
        assert!(c.model.memory.total.0 > 0 && c.model.processes_seen > 0);
        assert!(!c.model.procs.is_empty() && c.model.procs.len() <= 5);
        assert!(c.model.procs.iter().all(|p| p.growth_mib_s.is_some()));
        assert_eq!(c.model.guard, GuardView::Absent);
    }
}
