//! What a notification says about an action: the fixed-size record the guard hands over,
//! the environment a `notify.on_action` command gets, and a desktop notification's text.
//!
//! Owns the names and formats of the `THRASHGUARD_*` variables (docs/notify.md lists
//! them) and of the desktop text. Pure: it never spawns, reads or clocks anything; the
//! binary's `hooks` module does, on a thread of its own, never on the guard's.

use crate::config::Action;
use crate::policy::Reason;
use crate::units::{Comm, Kib, ProcId};

/// What became of the action a record tells about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// SIGKILL sent (or cgroup.kill written).
    Killed,
    /// SIGSTOP sent (or cgroup.freeze written).
    Frozen,
    /// Dry run: the action was decided and not taken.
    NotActed,
    /// The victim exited by itself before the signal.
    Gone,
    /// The pid belonged to another process by then: nothing sent.
    PidReused,
    /// The signal or the cgroup write failed.
    Failed,
}

impl Outcome {
    /// Stable name (`THRASHGUARD_OUTCOME`).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Killed => "killed",
            Outcome::Frozen => "frozen",
            Outcome::NotActed => "not_acted",
            Outcome::Gone => "gone",
            Outcome::PidReused => "pid_reused",
            Outcome::Failed => "failed",
        }
    }
}

/// Longest scope name a record carries (bytes); longer cgroup paths keep their end.
pub const SCOPE_MAX: usize = 160;

/// A scope's name in a fixed buffer: `system`, a cgroup path, `node1`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ScopeName {
    bytes: [u8; SCOPE_MAX],
    len: u8,
}

impl ScopeName {
    /// Copy `name`; one longer than [`SCOPE_MAX`] keeps its last bytes (the cgroup's own
    /// name), cut at a character boundary and marked with a leading `…`.
    pub fn new(name: &str) -> ScopeName {
        let mut s = ScopeName { bytes: [0; SCOPE_MAX], len: 0 };
        let text = if name.len() <= SCOPE_MAX {
            name
        } else {
            let room = SCOPE_MAX - '…'.len_utf8();
            let mut from = name.len() - room;
            while !name.is_char_boundary(from) {
                from += 1;
            }
            s.bytes[..3].copy_from_slice("…".as_bytes());
            s.len = 3;
            &name[from..]
        };
        let at = s.len as usize;
        s.bytes[at..at + text.len()].copy_from_slice(text.as_bytes());
        s.len = (at + text.len()) as u8;
        s
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("?")
    }
}

impl std::fmt::Debug for ScopeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// One action, as the guard hands it to the notification thread: a plain value of fixed
/// size, copied into a bounded queue.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ActionRecord {
    /// The action taken or, in a dry run, decided.
    pub action: Action,
    /// Whether this was a dry run (nothing done).
    pub dry_run: bool,
    /// What became of it.
    pub outcome: Outcome,
    /// Why.
    pub reason: Reason,
    /// The victim (pid and start time, to read its command line only while it is the same
    /// process).
    pub victim: ProcId,
    /// Its name.
    pub name: Comm,
    /// RSS + swap when it was picked.
    pub footprint: Kib,
    /// The swapped-out part of it.
    pub swap: Kib,
    /// Its cgroup was acted on as a whole (`victim.whole_cgroup`).
    pub whole_cgroup: bool,
    /// The scope rescued.
    pub scope: ScopeName,
    /// Wall-clock time of the action, milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// PSI full stall over the trailing second when it was decided, percent; `None` when it
    /// was not measured (no PSI, or an operator's rescue in the guard's first half second).
    pub full_stall_pct: Option<f64>,
    /// Available memory + free swap of the scope when it was decided.
    pub headroom: Kib,
}

/// The names of the variables [`ActionRecord::env`] sets, in its order.
pub const ENV_NAMES: [&str; 13] = [
    "THRASHGUARD_ACTION",
    "THRASHGUARD_OUTCOME",
    "THRASHGUARD_REASON",
    "THRASHGUARD_PID",
    "THRASHGUARD_NAME",
    "THRASHGUARD_CMDLINE",
    "THRASHGUARD_FOOTPRINT_KIB",
    "THRASHGUARD_SWAP_KIB",
    "THRASHGUARD_WHOLE_CGROUP",
    "THRASHGUARD_SCOPE",
    "THRASHGUARD_UNIX_MS",
    "THRASHGUARD_FULL_STALL_PCT",
    "THRASHGUARD_HEADROOM_KIB",
];

impl ActionRecord {
    /// `kill`, `freeze` or `dry_run`.
    pub fn action_str(&self) -> &'static str {
        if self.dry_run { "dry_run" } else { self.action.as_str() }
    }

    /// The environment of a hook: every variable of [`ENV_NAMES`], in that order.
    /// `cmdline` is the victim's command line as the hook thread could read it (empty when
    /// the process was already gone).
    pub fn env(&self, cmdline: &str) -> [(&'static str, String); 13] {
        let values = [
            self.action_str().to_string(),
            self.outcome.as_str().to_string(),
            self.reason.as_str().to_string(),
            self.victim.pid.0.to_string(),
            self.name.to_string_lossy(),
            cmdline.to_string(),
            self.footprint.0.to_string(),
            self.swap.0.to_string(),
            u8::from(self.whole_cgroup).to_string(),
            self.scope.as_str().to_string(),
            self.unix_ms.to_string(),
            self.full_stall_pct.map_or_else(String::new, |v| format!("{v:.1}")),
            self.headroom.0.to_string(),
        ];
        let mut i = 0;
        values.map(|v| {
            let pair = (ENV_NAMES[i], v);
            i += 1;
            pair
        })
    }

    /// A desktop notification's summary and body, e.g. `thrashguard killed firefox (4242)`
    /// and `thrashing: full stall 43.0 %, footprint 2048 MiB (system)`.
    pub fn desktop_text(&self) -> (String, String) {
        let verb = match (self.outcome, self.action) {
            (Outcome::Killed, _) => "killed",
            (Outcome::Frozen, _) => "froze",
            (Outcome::NotActed, Action::Kill) => "would kill",
            (Outcome::NotActed, Action::Freeze) => "would freeze",
            (Outcome::Gone, _) => "found already gone",
            (_, Action::Kill) => "could not kill",
            (_, Action::Freeze) => "could not freeze",
        };
        let what = if self.whole_cgroup { "the cgroup of " } else { "" };
        let summary = format!("thrashguard {verb} {what}{} ({})", self.name, self.victim.pid);
        let thaw =
            if self.outcome == Outcome::Frozen { format!("; resume with `thrashguard thaw {}`", self.victim.pid) } else { String::new() };
        let body = format!(
            "{}: full stall {}, footprint {} MiB ({}){thaw}",
            self.reason.as_str().replace('_', " "),
            self.full_stall_pct.map_or_else(|| "not measured".into(), |v| format!("{v:.1} %")),
            self.footprint.mib(),
            self.scope.as_str()
        );
        (summary, body)
    }

    /// `critical` for what was done to a process (or failed to be), `normal` otherwise.
    pub fn urgency(&self) -> &'static str {
        match self.outcome {
            Outcome::Killed | Outcome::Frozen | Outcome::Failed => "critical",
            Outcome::NotActed | Outcome::Gone | Outcome::PidReused => "normal",
        }
    }
}

/// A command line as /proc/PID/cmdline holds it (NUL-separated), as one line: NULs and
/// control characters become spaces, invalid UTF-8 is replaced, trailing space trimmed,
/// at most `max` bytes (cut at a character boundary).
pub fn cmdline_text(raw: &[u8], max: usize) -> String {
    let mut s: String = String::from_utf8_lossy(raw).chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::Pid;

    fn record() -> ActionRecord {
        ActionRecord {
            action: Action::Kill,
            dry_run: false,
            outcome: Outcome::Killed,
            reason: Reason::StallNearExhaustion,
            victim: ProcId { pid: Pid(4242), start_time: 77 },
            name: Comm::new(b"firefox"),
            footprint: Kib(2048 * 1024),
            swap: Kib(512),
            whole_cgroup: false,
            scope: ScopeName::new("system"),
            unix_ms: 1_700_000_000_123,
            full_stall_pct: Some(43.04),
            headroom: Kib(65536),
        }
    }

    /// The record is a plain value the guard copies into the queue: small, fixed, `Copy`.
    #[test]
    fn the_record_is_small() {
        fn copy<T: Copy + Send + 'static>() {}
        copy::<ActionRecord>();
        assert!(std::mem::size_of::<ActionRecord>() <= 320, "{}", std::mem::size_of::<ActionRecord>());
    }

    #[test]
    fn every_variable_in_order() {
        let env = record().env("firefox -P work");
        let names: Vec<&str> = env.iter().map(|(k, _)| *k).collect();
        assert_eq!(names, ENV_NAMES);
        let get = |k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str()).unwrap();
        assert_eq!(get("THRASHGUARD_ACTION"), "kill");
        assert_eq!(get("THRASHGUARD_OUTCOME"), "killed");
        assert_eq!(get("THRASHGUARD_REASON"), "stall_near_exhaustion");
        assert_eq!(get("THRASHGUARD_PID"), "4242");
        assert_eq!(get("THRASHGUARD_NAME"), "firefox");
        assert_eq!(get("THRASHGUARD_CMDLINE"), "firefox -P work");
        assert_eq!(get("THRASHGUARD_FOOTPRINT_KIB"), "2097152");
        assert_eq!(get("THRASHGUARD_SWAP_KIB"), "512");
        assert_eq!(get("THRASHGUARD_WHOLE_CGROUP"), "0");
        assert_eq!(get("THRASHGUARD_SCOPE"), "system");
        assert_eq!(get("THRASHGUARD_UNIX_MS"), "1700000000123");
        assert_eq!(get("THRASHGUARD_FULL_STALL_PCT"), "43.0");
        assert_eq!(get("THRASHGUARD_HEADROOM_KIB"), "65536");
        let dry = ActionRecord { dry_run: true, outcome: Outcome::NotActed, ..record() }.env("");
        assert_eq!((dry[0].1.as_str(), dry[1].1.as_str()), ("dry_run", "not_acted"));
    }

    #[test]
    fn desktop_text_says_what_happened() {
        let (s, b) = record().desktop_text();
        assert_eq!(s, "thrashguard killed firefox (4242)");
        assert_eq!(b, "stall near exhaustion: full stall 43.0 %, footprint 2048 MiB (system)");
        assert_eq!(record().urgency(), "critical");
        let frozen = ActionRecord { action: Action::Freeze, outcome: Outcome::Frozen, whole_cgroup: true, ..record() };
        let (s, b) = frozen.desktop_text();
        assert_eq!(s, "thrashguard froze the cgroup of firefox (4242)");
        assert!(b.ends_with("resume with `thrashguard thaw 4242`"), "{b}");
        let dry = ActionRecord { dry_run: true, outcome: Outcome::NotActed, ..record() };
        assert_eq!(dry.desktop_text().0, "thrashguard would kill firefox (4242)");
        assert_eq!(dry.urgency(), "normal");
        let failed = ActionRecord { outcome: Outcome::Failed, ..record() };
        assert_eq!(failed.desktop_text().0, "thrashguard could not kill firefox (4242)");
    }

    #[test]
    fn long_scope_names_keep_their_end() {
        let long = format!("/user.slice/{}/app-é.scope", "x".repeat(300));
        let s = ScopeName::new(&long);
        assert!(s.as_str().starts_with('…') && s.as_str().ends_with("/app-é.scope"), "{s:?}");
        assert!(s.as_str().len() <= SCOPE_MAX);
        // a multi-byte character across the cut is dropped whole
        for n in 150..170 {
            let name = "é".repeat(n);
            assert!(ScopeName::new(&name).as_str().len() <= SCOPE_MAX);
            assert!(ScopeName::new(&name).as_str().ends_with('é'));
        }
        assert_eq!(ScopeName::new("").as_str(), "");
        assert_eq!(ScopeName::new("/a").as_str(), "/a");
    }

    #[test]
    fn cmdline_as_one_line() {
        assert_eq!(cmdline_text(b"python3\0-c\0print(1)\0", 100), "python3 -c print(1)");
        assert_eq!(cmdline_text(b"a\nb\x1b[31m\0", 100), "a b [31m");
        assert_eq!(cmdline_text(b"\xff\xfe\0", 100), "\u{fffd}\u{fffd}");
        assert_eq!(cmdline_text("ééé".as_bytes(), 5), "éé");
        assert_eq!(cmdline_text(b"", 10), "");
    }
}
