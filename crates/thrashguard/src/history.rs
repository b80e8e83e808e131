//! `thrashguard history`: list the events the guard stored.
//!
//! Owns reading the store for the command (read-only, never creating a database), the
//! local time zone of the table and printing; the table itself is rendered by
//! `thrashguard_core::history::render_table` and the queries live in [`crate::store`]. It
//! must never write to the database.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::store;

/// A wall-clock time in this machine's time zone, `YYYY-MM-DD HH:MM:SS`.
fn local_time(tz: &jiff::tz::TimeZone, unix_ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(unix_ms) {
        Ok(ts) => ts.to_zoned(tz.clone()).strftime("%Y-%m-%d %H:%M:%S").to_string(),
        Err(_) => format!("@{unix_ms}ms"),
    }
}

/// Print the events of the last `since` (all without it) stored at `db` to `out`: a table,
/// or with `json` one event per line (the full event, timeline included, as
/// `report --event` reads it). No database yet is not an error: it says so.
pub fn run(db: &Path, since: Option<Duration>, json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let since_ms = since.map(|d| store::unix_ms_now().saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)));
    let events = match store::list(db, since_ms) {
        Ok(events) => events,
        Err(e) if e.downcast_ref::<store::NoHistory>().is_some() => {
            if json {
                eprintln!("thrashguard: {e}");
            } else {
                writeln!(out, "{e}")?;
            }
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    if json {
        for e in &events {
            let mut line = serde_json::to_string(e)?;
            line.push('\n');
            out.write_all(line.as_bytes())?;
        }
        return Ok(());
    }
    if events.is_empty() {
        writeln!(out, "no events in {}{}", db.display(), if since.is_some() { " in that time" } else { "" })?;
        return Ok(());
    }
    let tz = jiff::tz::TimeZone::system();
    out.write_all(thrashguard_core::history::render_table(&events, &|ms| local_time(&tz, ms)).as_bytes())?;
    Ok(())
}
