//! The configuration file (TOML) and its validation.
//!
//! Owns every key, its default and its allowed range; `docs/configuration.md` mirrors this
//! file and a test fails when a key is undocumented. Unknown keys and out-of-range values
//! are errors that name the key. Must never read the file itself: the edge hands in text.

use serde::{Deserialize, Serialize};

use crate::policy::PolicyConfig;
use crate::policy::rank::RankBy;

/// The whole configuration. Every table and key is optional; a missing file means all
/// defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[guard]`: what the daemon does.
    pub guard: GuardConfig,
    /// `[policy]`: when it decides.
    pub policy: PolicyConfig,
    /// `[victim]`: whom it picks.
    pub victim: VictimConfig,
    /// `[cgroups]`: which memory cgroups it watches as scopes of their own.
    pub cgroups: CgroupConfig,
    /// `[lifeline]`: the authenticated rescue datagram (off until a key is authorized).
    pub lifeline: LifelineConfig,
    /// `[metrics]`: the Prometheus endpoint (off unless an address is given).
    pub metrics: MetricsConfig,
    /// `[history]`: the event store (`thrashguard history`).
    pub history: HistoryConfig,
    /// `[notify]`: commands and desktop notifications after an action (docs/notify.md).
    pub notify: NotifyConfig,
}

/// `[history]` (docs/history.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryConfig {
    /// Store an event for every action.
    pub enabled: bool,
    /// The SQLite database.
    pub path: String,
    /// Seconds of timeline kept before the action.
    pub before_s: u32,
    /// Seconds of timeline after the action; the event is stored once they have passed.
    pub after_s: u32,
    /// Events older than this many days are deleted.
    pub keep_days: u32,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig { enabled: true, path: "/var/lib/thrashguard/history.db".into(), before_s: 60, after_s: 30, keep_days: 90 }
    }
}

/// Seconds of timeline the guard's ring keeps (its 1 Hz tier): `history.before_s +
/// history.after_s` must fit.
pub const HISTORY_RING_S: u32 = 600;

/// `[metrics]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// TCP address for `GET /metrics` (Prometheus text format): `ADDRESS:PORT`, or a port
    /// alone for loopback (`127.0.0.1:PORT`); empty = off.
    pub listen: String,
}

impl MetricsConfig {
    /// The address to listen on: `None` when off, an error for anything else than a port
    /// or `ADDRESS:PORT`.
    pub fn address(&self) -> Result<Option<std::net::SocketAddr>, ConfigError> {
        let l = self.listen.trim();
        if l.is_empty() {
            return Ok(None);
        }
        if let Ok(port) = l.parse::<u16>() {
            return Ok(Some(std::net::SocketAddr::from(([127, 0, 0, 1], port))));
        }
        l.parse().map(Some).map_err(|_| ConfigError::Range {
            key: "metrics.listen",
            value: format!("{:?}", self.listen),
            rule: "must be PORT or ADDRESS:PORT (empty: off)",
        })
    }
}

/// What a rescue does to the victim.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// SIGKILL (after an optional SIGTERM grace).
    #[default]
    Kill,
    /// Stop it: cgroup.freeze for a whole cgroup, SIGSTOP for a process; `thrashguard thaw` resumes.
    Freeze,
}

impl Action {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Kill => "kill",
            Action::Freeze => "freeze",
        }
    }
}

/// `[guard]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardConfig {
    /// kill or freeze.
    pub action: Action,
    /// Log decisions and victims, act on nothing.
    pub dry_run: bool,
    /// Send SIGTERM and wait this long before SIGKILL; 0 = SIGKILL at once.
    pub sigterm_grace_ms: u64,
    /// Run the guard thread at SCHED_FIFO priority 1.
    pub realtime: bool,
    /// Lock all memory (mlockall) at start.
    pub lock_memory: bool,
    /// Most processes the /proc scan records (memory is reserved for this many up front).
    pub max_processes: u32,
    /// Unix socket where `thrashguard status` reads the running guard's state; empty = none.
    pub status_socket: String,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            action: Action::Kill,
            dry_run: false,
            sigterm_grace_ms: 0,
            realtime: false,
            lock_memory: true,
            max_processes: 32768,
            status_socket: "/run/thrashguard/status.sock".into(),
        }
    }
}

/// `[victim]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VictimConfig {
    /// footprint (RSS + swap weighed by faults and growth) or oom_score.
    pub rank_by: RankBy,
    /// Regexes on the process name or command line that make a process 4x more likely.
    pub prefer: Vec<String>,
    /// Regexes that make a process 4x less likely.
    pub avoid: Vec<String>,
    /// Act on the victim's whole cgroup v2 (cgroup.kill / cgroup.freeze) instead of the process.
    pub whole_cgroup: bool,
}

/// `[cgroups]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CgroupConfig {
    /// Watch every memory cgroup with a limit as a scope of its own.
    pub watch: bool,
    /// Most cgroup scopes watched at once.
    pub max_scopes: u32,
}

impl Default for CgroupConfig {
    fn default() -> Self {
        CgroupConfig { watch: true, max_scopes: 64 }
    }
}

/// `[lifeline]` (docs/lifeline.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifelineConfig {
    /// UDP address to listen on when at least one key is authorized.
    pub listen: String,
    /// Trusted keys, one per line; the lifeline is off while this file is missing or empty.
    pub authorized_keys: String,
    /// The host's own Ed25519 key, which signs replies to Ed25519 requests.
    pub host_key: String,
    /// This host's name in requests; empty = the hostname.
    pub host_id: String,
    /// Requests stamped further than this from the daemon's clock are refused.
    pub window_s: u32,
    /// Datagrams one source may send in a burst.
    pub per_source_burst: u32,
    /// Datagrams per second one source may send after its burst.
    pub per_source_per_s: u32,
    /// Signature/MAC verifications per second over all sources.
    pub verifications_per_s: u32,
}

impl Default for LifelineConfig {
    fn default() -> Self {
        LifelineConfig {
            listen: "0.0.0.0:7411".into(),
            authorized_keys: "/etc/thrashguard/lifeline.authorized".into(),
            host_key: "/etc/thrashguard/host.key".into(),
            host_id: String::new(),
            window_s: 30,
            per_source_burst: 20,
            per_source_per_s: 10,
            verifications_per_s: 200,
        }
    }
}

/// `[notify]` (docs/notify.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Commands run after each action, one after the other, each with the action in its
    /// environment. Never through a shell.
    pub on_action: Vec<HookCommand>,
    /// Each command (and each desktop notification) is killed, with its whole process
    /// group, after this long.
    pub timeout_s: u32,
    /// Desktop notifications (notify-send on each user's session bus).
    pub desktop: Desktop,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig { on_action: Vec::new(), timeout_s: 10, desktop: Desktop::Auto }
    }
}

/// Most commands in `notify.on_action`.
pub const MAX_HOOKS: usize = 16;

/// One `notify.on_action` command: a string split at whitespace (no quoting, no shell), or
/// an array that is the argv as it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum HookCommand {
    /// `"/usr/local/bin/alert --loud"`: split at ASCII whitespace.
    Line(String),
    /// `["/usr/local/bin/alert", "two words"]`: exactly these arguments.
    Argv(Vec<String>),
}

impl HookCommand {
    /// The program and its arguments.
    pub fn argv(&self) -> Vec<&str> {
        match self {
            HookCommand::Line(l) => l.split_ascii_whitespace().collect(),
            HookCommand::Argv(a) => a.iter().map(String::as_str).collect(),
        }
    }
}

/// When desktop notifications are sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Desktop {
    /// When notify-send is installed (checked at start); users without a session bus are
    /// skipped silently.
    #[default]
    Auto,
    /// Always try, and warn when notify-send is missing or fails.
    Always,
    /// Never.
    Never,
}

impl Desktop {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Desktop::Auto => "auto",
            Desktop::Always => "always",
            Desktop::Never => "never",
        }
    }
}

impl NotifyConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        range("notify.timeout_s", self.timeout_s, 1, 600, "must be within 1..=600")?;
        let bad = |cmd: &HookCommand, rule| ConfigError::Range { key: "notify.on_action", value: format!("{:?}", cmd.argv()), rule };
        if self.on_action.len() > MAX_HOOKS {
            return Err(ConfigError::Range {
                key: "notify.on_action",
                value: format!("{} commands", self.on_action.len()),
                rule: "must hold at most 16 commands",
            });
        }
        for cmd in &self.on_action {
            let argv = cmd.argv();
            match argv.first() {
                None => return Err(bad(cmd, "each command must name a program")),
                Some(p) if !p.starts_with('/') => return Err(bad(cmd, "the program must be an absolute path (hooks run without a shell)")),
                Some(_) => {}
            }
            if argv.iter().any(|a| a.contains('\0')) {
                return Err(bad(cmd, "must not contain a NUL byte"));
            }
        }
        Ok(())
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// Not TOML, an unknown key or a value of the wrong type (toml says where).
    #[error("{0}")]
    Syntax(String),
    /// A value out of its range.
    #[error("{key} = {value}: {rule}")]
    Range {
        /// Dotted key, e.g. `policy.full_stall_pct`.
        key: &'static str,
        /// The value given.
        value: String,
        /// What it must be.
        rule: &'static str,
    },
}

fn range<T: PartialOrd + std::fmt::Display>(key: &'static str, v: T, lo: T, hi: T, rule: &'static str) -> Result<(), ConfigError> {
    if v >= lo && v <= hi { Ok(()) } else { Err(ConfigError::Range { key, value: v.to_string(), rule }) }
}

impl Config {
    /// Parse and validate TOML text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string().trim_end().to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Check every range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let p = &self.policy;
        range("policy.full_stall_pct", p.full_stall_pct, 1.0, 100.0, "must be within 1..=100")?;
        range("policy.stall_floor_pct", p.stall_floor_pct, 0.1, p.full_stall_pct, "must be within 0.1..=policy.full_stall_pct")?;
        range("policy.sustain_ms", p.sustain_ms, 100, 600_000, "must be within 100..=600000")?;
        range("policy.sustain_corroborated_ms", p.sustain_corroborated_ms, 100, p.sustain_ms, "must be within 100..=policy.sustain_ms")?;
        range("policy.refault_pages_per_s", p.refault_pages_per_s, 1, 100_000_000, "must be within 1..=100000000")?;
        range("policy.available_below_pct", p.available_below_pct, 0.0, 100.0, "must be within 0..=100")?;
        range("policy.exhaustion_horizon_ms", p.exhaustion_horizon_ms, 0, 600_000, "must be within 0..=600000")?;
        range("policy.exhaustion_headroom_pct", p.exhaustion_headroom_pct, 0.0, 100.0, "must be within 0..=100")?;
        range("policy.release_wait_ms", p.release_wait_ms, 100, 600_000, "must be within 100..=600000")?;
        range("policy.retry_after_failure_ms", p.retry_after_failure_ms, 100, 600_000, "must be within 100..=600000")?;
        range("policy.min_interval_ms", p.min_interval_ms, 10, 10_000, "must be within 10..=10000")?;
        range("policy.max_interval_ms", p.max_interval_ms, p.min_interval_ms, 60_000, "must be within policy.min_interval_ms..=60000")?;
        range(
            "policy.max_interval_with_trigger_ms",
            p.max_interval_with_trigger_ms,
            p.min_interval_ms,
            60_000,
            "must be within policy.min_interval_ms..=60000",
        )?;
        range("policy.no_psi_available_pct", p.no_psi_available_pct, 0.0, 100.0, "must be within 0..=100")?;
        range("policy.no_psi_swap_free_pct", p.no_psi_swap_free_pct, 0.0, 100.0, "must be within 0..=100")?;
        let g = &self.guard;
        range("guard.sigterm_grace_ms", g.sigterm_grace_ms, 0, 60_000, "must be within 0..=60000")?;
        range("guard.max_processes", g.max_processes, 64, 4_194_304, "must be within 64..=4194304")?;
        range("cgroups.max_scopes", self.cgroups.max_scopes, 0, 4096, "must be within 0..=4096")?;
        self.metrics.address()?;
        let h = &self.history;
        range("history.before_s", h.before_s, 0, HISTORY_RING_S - 1, "must be within 0..=599")?;
        range("history.after_s", h.after_s, 1, HISTORY_RING_S - h.before_s, "must be within 1..=600 - history.before_s")?;
        range("history.keep_days", h.keep_days, 1, 36_500, "must be within 1..=36500")?;
        if h.enabled && h.path.trim().is_empty() {
            return Err(ConfigError::Range {
                key: "history.path",
                value: "\"\"".into(),
                rule: "must be a file path (or history.enabled = false)",
            });
        }
        let l = &self.lifeline;
        if l.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::Range { key: "lifeline.listen", value: format!("{:?}", l.listen), rule: "must be ADDRESS:PORT" });
        }
        range("lifeline.window_s", l.window_s, 1, 3600, "must be within 1..=3600")?;
        range("lifeline.per_source_burst", l.per_source_burst, 1, 10_000, "must be within 1..=10000")?;
        range("lifeline.per_source_per_s", l.per_source_per_s, 1, 10_000, "must be within 1..=10000")?;
        range("lifeline.verifications_per_s", l.verifications_per_s, 1, 100_000, "must be within 1..=100000")?;
        self.notify.validate()?;
        for (key, list) in [("victim.prefer", &self.victim.prefer), ("victim.avoid", &self.victim.avoid)] {
            for pattern in list {
                if regex_lite::Regex::new(pattern).is_err() {
                    return Err(ConfigError::Range { key, value: format!("{pattern:?}"), rule: "must be a valid regular expression" });
                }
            }
        }
        Ok(())
    }

    /// The default configuration as commented TOML (`thrashguard config default`).
    pub fn default_toml() -> String {
        toml::to_string_pretty(&Config::default()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_default() {
        assert_eq!(Config::parse("").expect("valid"), Config::default());
    }

    #[test]
    fn default_toml_roundtrips() {
        assert_eq!(Config::parse(&Config::default_toml()).expect("valid"), Config::default());
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Config::parse("[policy]\nfull_stal_pct = 30\n").unwrap_err().to_string();
        assert!(e.contains("full_stal_pct"), "{e}");
        let e = Config::parse("[polcy]\n").unwrap_err().to_string();
        assert!(e.contains("polcy"), "{e}");
    }

    #[test]
    fn out_of_range_is_named() {
        let e = Config::parse("[policy]\nfull_stall_pct = 150.0\n").unwrap_err();
        assert!(matches!(e, ConfigError::Range { key: "policy.full_stall_pct", .. }), "{e}");
        let e = Config::parse("[policy]\nsustain_ms = 1000\nsustain_corroborated_ms = 2000\n").unwrap_err();
        assert!(matches!(e, ConfigError::Range { key: "policy.sustain_corroborated_ms", .. }), "{e}");
        let e = Config::parse("[victim]\nprefer = [\"(unclosed\"]\n").unwrap_err();
        assert!(matches!(e, ConfigError::Range { key: "victim.prefer", .. }), "{e}");
        let e = Config::parse("[history]\nafter_s = 0\n").unwrap_err();
        assert!(matches!(e, ConfigError::Range { key: "history.after_s", .. }), "{e}");
        let e = Config::parse("[history]\nbefore_s = 500\nafter_s = 200\n").unwrap_err();
        assert!(matches!(e, ConfigError::Range { key: "history.after_s", .. }), "{e}");
        let e = Config::parse("[history]\nkeep_days = 0\n").unwrap_err();
        assert!(matches!(e, ConfigError::Range { key: "history.keep_days", .. }), "{e}");
        let e = Config::parse("[history]\npath = \"\"\n").unwrap_err();
        assert!(matches!(e, ConfigError::Range { key: "history.path", .. }), "{e}");
        assert!(Config::parse("[history]\nenabled = false\npath = \"\"\n").is_ok());
        let e = Config::parse("[history]\nkeep = 3\n").unwrap_err().to_string();
        assert!(e.contains("keep"), "{e}");
        let e = Config::parse("[guard]\naction = \"explode\"\n").unwrap_err().to_string();
        assert!(e.contains("explode") || e.contains("action"), "{e}");
    }

    #[test]
    fn notify_commands_split_or_as_given() {
        let cfg = Config::parse(
            "[notify]\non_action = [\"/usr/bin/logger  -t  tg\", [\"/usr/local/bin/alert\", \"two words\"]]\ntimeout_s = 3\ndesktop = \"never\"\n",
        )
        .expect("valid");
        assert_eq!(cfg.notify.on_action[0].argv(), ["/usr/bin/logger", "-t", "tg"]);
        assert_eq!(cfg.notify.on_action[1].argv(), ["/usr/local/bin/alert", "two words"]);
        assert_eq!((cfg.notify.timeout_s, cfg.notify.desktop), (3, Desktop::Never));
        // and back: the default file round-trips with commands in it
        let text = toml::to_string_pretty(&cfg).expect("serializes");
        assert_eq!(Config::parse(&text).expect("valid"), cfg);
    }

    #[test]
    fn bad_notify_settings_are_named() {
        let key = |text: &str| match Config::parse(text) {
            Err(ConfigError::Range { key, .. }) => key.to_string(),
            Err(e) => e.to_string(),
            Ok(_) => "accepted".into(),
        };
        assert_eq!(key("[notify]\ntimeout_s = 0\n"), "notify.timeout_s");
        assert_eq!(key("[notify]\ntimeout_s = 601\n"), "notify.timeout_s");
        assert_eq!(key("[notify]\non_action = [\"\"]\n"), "notify.on_action");
        assert_eq!(key("[notify]\non_action = [\"   \"]\n"), "notify.on_action");
        assert_eq!(key("[notify]\non_action = [[]]\n"), "notify.on_action");
        assert_eq!(key("[notify]\non_action = [\"logger -t tg\"]\n"), "notify.on_action");
        assert_eq!(key("[notify]\non_action = [[\"/bin/echo\", \"a\\u0000b\"]]\n"), "notify.on_action");
        let many = format!("[notify]\non_action = [{}]\n", vec!["\"/bin/true\""; 17].join(", "));
        assert_eq!(key(&many), "notify.on_action");
        for bad in [
            "[notify]\ndesktop = \"sometimes\"\n",
            "[notify]\non_action = \"/bin/true\"\n",
            "[notify]\non_action = [1]\n",
            "[notify]\nhook = []\n",
        ] {
            let e = key(bad);
            assert!(e.contains("desktop") || e.contains("on_action") || e.contains("hook"), "{bad}: {e}");
        }
    }
}
