//! Log output: plain text or one JSON object per line on stderr.
//!
//! Owns the logger set-up. Decision lines are logged with target `decision` and a message
//! that is already a JSON object, so `--log-format json` passes them through as they are
//! and text mode prints them readably. Nothing here runs on the guard loop's steady state:
//! only events are logged.

use std::io::Write;

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

static JSON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether log lines are JSON.
pub fn json_enabled() -> bool {
    JSON.load(std::sync::atomic::Ordering::Relaxed)
}

/// Install the logger. `verbose` raises the level to debug.
pub fn init(format: LogFormat, verbose: bool) {
    JSON.store(format == LogFormat::Json, std::sync::atomic::Ordering::Relaxed);
    let level = if verbose { log::LevelFilter::Debug } else { log::LevelFilter::Info };
    let mut b = env_logger::Builder::new();
    b.filter_level(level).parse_env("THRASHGUARD_LOG");
    match format {
        LogFormat::Text => {
            b.format(|buf, rec| writeln!(buf, "thrashguard: {}: {}", rec.level().as_str().to_lowercase(), rec.args()));
        }
        LogFormat::Json => {
            b.format(|buf, rec| {
                let msg = rec.args().to_string();
                let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
                if rec.target() == "decision" && msg.starts_with('{') {
                    writeln!(buf, "{msg}")
                } else {
                    let line = serde_json::json!({"ts_unix_ms": ts, "level": rec.level().as_str().to_lowercase(), "msg": msg});
                    writeln!(buf, "{line}")
                }
            });
        }
    }
    let _ = b.try_init();
}
