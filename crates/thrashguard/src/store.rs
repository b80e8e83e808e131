//! The event history on disk: one SQLite database (bundled, WAL) and the thread that writes it.
//!
//! Owns the schema (`PRAGMA user_version`), the integrity check at open, moving a corrupt or
//! foreign database aside (`PATH.corrupt-<unix>` with its `-wal`/`-shm`) and starting afresh,
//! retention (`history.keep_days`), the writer thread the guard hands finished events to
//! without ever blocking, and the read-only queries behind `thrashguard history` and
//! `report --event`. It must never run on the guard thread, never stop or panic the guard
//! (a database it cannot use is reported once and events are then only logged) and never
//! create a database when it is only asked to read one. What an event holds and how a
//! timeline is encoded live in `thrashguard_core::history`.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use log::{info, warn};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};
use thrashguard_core::config::HistoryConfig;
use thrashguard_core::history::{Event, Point, decode_timeline, encode_timeline};
use thrashguard_core::units::ProcId;

/// The schema this build writes and reads (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 1;

/// Events waiting for the writer at most; beyond that the guard drops (and counts) them.
pub const QUEUE: usize = 8;

const SCHEMA: &str = "
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    unix_ms INTEGER NOT NULL,
    host TEXT NOT NULL,
    scope TEXT NOT NULL,
    action TEXT NOT NULL,
    reason TEXT NOT NULL,
    outcome TEXT NOT NULL,
    victim_pid INTEGER NOT NULL,
    victim_name TEXT NOT NULL,
    victim_footprint_kib INTEGER NOT NULL,
    full_stall_pct REAL NOT NULL,
    exit_after_ms REAL,
    event TEXT NOT NULL,
    timeline BLOB NOT NULL
);
CREATE INDEX events_by_time ON events(unix_ms);
";

/// The columns every query needs: a database without them is not ours.
const COLUMNS: &str = "id, unix_ms, host, scope, action, reason, outcome, victim_pid, victim_name, victim_footprint_kib, \
                       full_stall_pct, exit_after_ms, event, timeline";

/// Why a database could not be opened for writing.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file is there but unusable: corrupt, not SQLite, another schema. Moved aside.
    #[error("{0}")]
    Unusable(String),
    /// It cannot be opened or created at all (permissions, read-only file system, a path
    /// through a regular file, a full disk).
    #[error("{0}")]
    Unwritable(String),
}

fn corrupt(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase))
}

fn classify(e: rusqlite::Error) -> OpenError {
    if corrupt(&e) { OpenError::Unusable(e.to_string()) } else { OpenError::Unwritable(e.to_string()) }
}

/// Milliseconds since the Unix epoch now.
pub fn unix_ms_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A database open for writing.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
    keep: Duration,
    /// The encoded timeline of the last insert (reused).
    blob: Vec<u8>,
}

impl Store {
    /// Open `path` for writing, creating it (and its directory) when missing; WAL, the
    /// schema checked or created, `PRAGMA quick_check` passed, events older than `keep`
    /// deleted.
    pub fn open(path: &Path, keep: Duration) -> Result<Store, OpenError> {
        Store::open_holding(path, keep, &mut None)
    }

    /// [`Store::open`], leaving the connection in `hold` when the database is unusable: it
    /// must stay open until the files are moved aside, because SQLite removes a `-wal` it
    /// cannot use when its last connection closes, and the `-wal` may be what tells why.
    fn open_holding(path: &Path, keep: Duration, hold: &mut Option<Connection>) -> Result<Store, OpenError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| OpenError::Unwritable(format!("cannot create {}: {e}", dir.display())))?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = hold.insert(Connection::open_with_flags(path, flags).map_err(classify)?);
        conn.busy_timeout(Duration::from_secs(5)).map_err(classify)?;
        // a small page cache: the guard's memory is locked
        conn.pragma_update(None, "cache_size", -512).map_err(classify)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(classify)?;
        if !mode.eq_ignore_ascii_case("wal") {
            // a file system without shared memory: still usable, just without WAL
            warn!("history {}: journal mode {mode}, not wal", path.display());
        }
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(classify)?;
        let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(classify)?;
        if check != "ok" {
            return Err(OpenError::Unusable(format!("integrity check failed: {check}")));
        }
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(classify)?;
        match version {
            0 => {
                let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0)).map_err(classify)?;
                if tables > 0 {
                    return Err(OpenError::Unusable("a SQLite database, but not a thrashguard history".into()));
                }
                let tx = conn.unchecked_transaction().map_err(classify)?;
                tx.execute_batch(SCHEMA).map_err(classify)?;
                tx.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(classify)?;
                tx.commit().map_err(classify)?;
            }
            SCHEMA_VERSION => {
                conn.prepare(&format!("SELECT {COLUMNS} FROM events LIMIT 0"))
                    .map_err(|e| OpenError::Unusable(format!("schema {SCHEMA_VERSION} without its events table: {e}")))?;
            }
            v => return Err(OpenError::Unusable(format!("schema version {v}, this thrashguard knows {SCHEMA_VERSION}"))),
        }
        let Some(conn) = hold.take() else { return Err(OpenError::Unwritable("connection lost".into())) };
        let store = Store { conn, path: path.to_path_buf(), keep, blob: Vec::new() };
        store.prune(unix_ms_now()).map_err(classify)?;
        Ok(store)
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Store `event`, set its id, and apply retention. The timeline goes into its own
    /// column (core's compact encoding); the event's JSON holds everything else.
    pub fn insert(&mut self, event: &mut Event) -> rusqlite::Result<i64> {
        let timeline = std::mem::take(&mut event.timeline);
        event.id = None;
        let json = serde_json::to_string(&*event);
        encode_timeline(&timeline, &mut self.blob);
        event.timeline = timeline;
        let json = json.map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO events (unix_ms, host, scope, action, reason, outcome, victim_pid, victim_name, victim_footprint_kib, \
             full_stall_pct, exit_after_ms, event, timeline) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?;
        stmt.execute(params![
            event.unix_ms,
            event.host,
            event.scope,
            event.action.as_str(),
            event.reason.as_str(),
            event.outcome,
            event.victim.pid,
            event.victim.name,
            i64::try_from(event.victim.footprint.0).unwrap_or(i64::MAX),
            // the column is NOT NULL: the deciding window's mean, else the last second, else 0
            // (the event's JSON keeps the exact values, null where not measured)
            event.evidence.full_mean.or(event.evidence.full).unwrap_or(0.0) * 100.0,
            event.exit_after_ms,
            json,
            self.blob,
        ])?;
        let id = self.conn.last_insert_rowid();
        event.id = Some(id);
        self.prune(unix_ms_now())?;
        Ok(id)
    }

    /// Delete events older than the retention as of `now_unix_ms`; how many went.
    pub fn prune(&self, now_unix_ms: i64) -> rusqlite::Result<usize> {
        let cutoff = now_unix_ms.saturating_sub(i64::try_from(self.keep.as_millis()).unwrap_or(i64::MAX));
        self.conn.prepare_cached("DELETE FROM events WHERE unix_ms < ?1")?.execute([cutoff])
    }
}

/// `PATH.corrupt-<unix>` (and the same for `-wal`/`-shm`); returns where the database went.
fn move_aside(path: &Path) -> std::io::Result<PathBuf> {
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut aside = PathBuf::from(format!("{}.corrupt-{stamp}", path.display()));
    let mut n = 1;
    while aside.exists() {
        aside = PathBuf::from(format!("{}.corrupt-{stamp}.{n}", path.display()));
        n += 1;
    }
    std::fs::rename(path, &aside)?;
    for suffix in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{suffix}", path.display()));
        if side.exists() {
            let _ = std::fs::rename(&side, format!("{}{suffix}", aside.display()));
        }
    }
    Ok(aside)
}

/// Open `path` for writing; a corrupt or foreign database is moved aside and a fresh one
/// started. Returns the store and, when something was moved aside, what to report.
pub fn open_or_recover(path: &Path, keep: Duration) -> Result<(Store, Option<String>), String> {
    let mut hold = None;
    match Store::open_holding(path, keep, &mut hold) {
        Ok(s) => Ok((s, None)),
        Err(OpenError::Unwritable(why)) => Err(why),
        Err(OpenError::Unusable(why)) => {
            let moved = move_aside(path);
            drop(hold);
            let aside = moved.map_err(|e| format!("{why}; and it cannot be moved aside: {e}"))?;
            let note = format!("{why}; moved it aside to {} and started a fresh one", aside.display());
            match Store::open(path, keep) {
                Ok(s) => Ok((s, Some(note))),
                Err(e) => Err(format!("{note}, which failed too: {e}")),
            }
        }
    }
}

/// The history as `thrashguard history` finds it: `NoHistory` when there is no database.
#[derive(Debug, thiserror::Error)]
#[error("no history yet at {}", .0.display())]
pub struct NoHistory(pub PathBuf);

/// `file:PATH?immutable=1`, for a database in a directory this user cannot write.
fn immutable_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for c in path.display().to_string().chars() {
        match c {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            c => uri.push(c),
        }
    }
    uri + "?immutable=1"
}

/// Open for reading only: never creates anything. A WAL database in a directory this user
/// cannot write (its `-shm` cannot be made) is read as an immutable snapshot.
fn open_read(path: &Path) -> anyhow::Result<Option<Connection>> {
    if !path.exists() {
        return Err(NoHistory(path.to_path_buf()).into());
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let probe = |conn: &Connection| conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0));
    let (conn, version) = match Connection::open_with_flags(path, flags).and_then(|c| probe(&c).map(|v| (c, v))) {
        Ok(ok) => ok,
        Err(e) if matches!(e.sqlite_error_code(), Some(ErrorCode::CannotOpen | ErrorCode::ReadOnly)) => {
            // the file itself must be readable: otherwise say so plainly
            std::fs::File::open(path).with_context(|| path.display().to_string())?;
            let c = Connection::open_with_flags(immutable_uri(path), flags).with_context(|| path.display().to_string())?;
            let v = probe(&c).with_context(|| path.display().to_string())?;
            (c, v)
        }
        Err(e) => return Err(anyhow::Error::new(e).context(path.display().to_string())),
    };
    conn.busy_timeout(Duration::from_secs(5))?;
    match version {
        SCHEMA_VERSION => Ok(Some(conn)),
        // created, schema not yet written (it is written in one transaction with the version)
        0 if conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0))? == 0 => Ok(None),
        0 => anyhow::bail!("{}: a SQLite database, but not a thrashguard history", path.display()),
        v => anyhow::bail!("{}: history schema {v}, this thrashguard reads {SCHEMA_VERSION}", path.display()),
    }
}

fn event_of(id: i64, json: &str, timeline: &[u8]) -> anyhow::Result<Event> {
    let mut e: Event = serde_json::from_str(json).with_context(|| format!("event {id}"))?;
    e.timeline = decode_timeline(timeline).with_context(|| format!("event {id}"))?;
    e.id = Some(id);
    Ok(e)
}

/// Every event at or after `since_unix_ms` (all of them with `None`), oldest first, with
/// their timelines. Opens read-only; a row that cannot be read is skipped with a warning.
pub fn list(path: &Path, since_unix_ms: Option<i64>) -> anyhow::Result<Vec<Event>> {
    let Some(conn) = open_read(path)? else { return Ok(Vec::new()) };
    let mut stmt = conn
        .prepare("SELECT id, event, timeline FROM events WHERE unix_ms >= ?1 ORDER BY unix_ms, id")
        .with_context(|| path.display().to_string())?;
    let rows = stmt
        .query_map([since_unix_ms.unwrap_or(i64::MIN)], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, Vec<u8>>(2)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (id, json, timeline) = row.with_context(|| path.display().to_string())?;
        match event_of(id, &json, &timeline) {
            Ok(e) => out.push(e),
            Err(e) => warn!("{}: {e:#}; skipped", path.display()),
        }
    }
    Ok(out)
}

/// Event `id` with its timeline; `None` when there is no such event.
pub fn load_event(path: &Path, id: i64) -> anyhow::Result<Option<Event>> {
    let Some(conn) = open_read(path)? else { return Ok(None) };
    let row = conn
        .query_row("SELECT event, timeline FROM events WHERE id = ?1", [id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?)))
        .optional()
        .with_context(|| path.display().to_string())?;
    row.map(|(json, timeline)| event_of(id, &json, &timeline)).transpose()
}

/// One line about an event for the log (no timeline).
fn summary(e: &Event) -> String {
    // a killed victim is gone before its command line is read: no empty "(, N MiB)"
    let cmdline: String = e.victim.cmdline.chars().take(80).collect();
    format!(
        "{} {} {} ({}{}{} MiB) in {} for {}: {}",
        e.action.as_str(),
        e.victim.pid,
        e.victim.name,
        cmdline,
        if cmdline.is_empty() { "" } else { ", " },
        e.victim.footprint.mib(),
        e.scope,
        e.reason.as_str(),
        e.outcome
    )
}

/// Whether `path` could be created: the nearest existing ancestor directory is writable.
/// Creates nothing.
fn creatable(path: &Path) -> Result<(), String> {
    let mut dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    loop {
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {
                use rustix::fs::Access;
                return rustix::fs::access(dir, Access::WRITE_OK | Access::EXEC_OK)
                    .map_err(|e| format!("cannot write in {}: {}", dir.display(), std::io::Error::from(e)));
            }
            Ok(_) => return Err(format!("{} is not a directory", dir.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match dir.parent() {
                Some(up) if !up.as_os_str().is_empty() => dir = up,
                _ => return Ok(()),
            },
            Err(e) => return Err(format!("{}: {e}", dir.display())),
        }
    }
}

/// The writer thread's side: the store, or why there is none.
struct Sink {
    path: PathBuf,
    keep: Duration,
    store: Option<Store>,
    /// "events will only be logged" was said (it is said once).
    reported: bool,
}

impl Sink {
    /// At start: an existing database is opened and checked now (moved aside when
    /// corrupt), then closed again; a missing one is created with the first event, so that
    /// a guard that never acts leaves nothing behind, but whether it could be is checked now.
    /// Between events the database stays closed: an idle guard keeps no SQLite page cache
    /// and, under mlockall, no SQLite code locked in memory.
    fn open(path: PathBuf, keep: Duration) -> Sink {
        let mut sink = Sink { path, keep, store: None, reported: false };
        if sink.path.exists() {
            sink.connect();
            sink.store = None;
        } else if let Err(why) = creatable(&sink.path) {
            sink.unusable(&why);
        }
        sink
    }

    fn unusable(&mut self, why: &str) {
        if !self.reported {
            warn!("history {}: {why}; events will only be logged", self.path.display());
            self.reported = true;
        }
    }

    fn connect(&mut self) {
        match open_or_recover(&self.path, self.keep) {
            Ok((s, note)) => {
                if let Some(note) = note {
                    warn!("history {}: {note}", self.path.display());
                }
                if self.reported {
                    info!("history {}: writable now", self.path.display());
                    self.reported = false;
                }
                self.store = Some(s);
            }
            Err(why) => self.unusable(&why),
        }
    }

    fn write(&mut self, e: &mut Event) {
        if self.store.is_none() {
            // first event, or quietly again: the directory may have appeared, a disk been freed
            self.connect();
        }
        let Some(store) = &mut self.store else {
            info!("history event (not stored): {}", summary(e));
            return;
        };
        match store.insert(e) {
            Ok(id) => info!("history: stored event {id}: {}", summary(e)),
            Err(first) => {
                // corrupted under us, or the file removed: reopen (moving it aside) and retry once
                self.store = None;
                let retried = open_or_recover(&self.path, self.keep).and_then(|(mut s, note)| {
                    let id = s.insert(e).map_err(|e| e.to_string())?;
                    Ok((s, id, note))
                });
                match retried {
                    Ok((s, id, note)) => {
                        warn!("history {}: {first}; {}", self.path.display(), note.unwrap_or_else(|| "reopened".into()));
                        info!("history: stored event {id}: {}", summary(e));
                        self.store = Some(s);
                    }
                    Err(why) => {
                        self.unusable(&format!("{first} ({why})"));
                        info!("history event (not stored): {}", summary(e));
                    }
                }
            }
        }
    }
}

/// An event on its way to the writer, with the victim's identity.
type Job = (Event, Option<ProcId>);

/// The guard's handle on the writer thread.
#[derive(Debug)]
pub struct Writer {
    tx: Option<SyncSender<Job>>,
    recycled: Receiver<Vec<Point>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Why [`Writer::submit`] did not take an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The queue is full: the writer is behind.
    Full,
    /// The writer thread is gone.
    Gone,
}

impl Writer {
    /// Start the writer thread (`tg-history`), which checks (and opens, when it exists) the
    /// database itself. It reads
    /// victims' command lines under `proc_root`.
    pub fn spawn(cfg: &HistoryConfig, proc_root: &Path) -> std::io::Result<Writer> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(QUEUE);
        let proc_root = proc_root.to_path_buf();
        let (back, recycled) = std::sync::mpsc::sync_channel::<Vec<Point>>(QUEUE);
        let path = PathBuf::from(&cfg.path);
        let keep = Duration::from_secs(u64::from(cfg.keep_days) * 86_400);
        // Checked here, on the caller's thread, before the guard drops its start-up pages and
        // locks itself in memory (see `Sink::open`).
        let mut sink = Sink::open(path, keep);
        let thread = std::thread::Builder::new().name("tg-history".into()).stack_size(1 << 20).spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut job = Some(first);
                while let Some((mut e, victim)) = job.take() {
                    if let Some(id) = victim.filter(|_| e.victim.cmdline.is_empty()) {
                        e.victim.cmdline = crate::procdir::victim_cmdline(&proc_root, id);
                    }
                    sink.write(&mut e);
                    let mut timeline = std::mem::take(&mut e.timeline);
                    timeline.clear();
                    let _ = back.try_send(timeline);
                    job = rx.try_recv().ok();
                }
                // nothing more waiting: closed until the next event
                sink.store = None;
            }
        })?;
        Ok(Writer { tx: Some(tx), recycled, thread: Some(thread) })
    }

    /// Hand `event` to the writer without blocking; `victim` is the process whose command
    /// line it reads when the event has none.
    #[allow(clippy::result_large_err)] // the refused event comes back so its timeline buffer is reused; a box would allocate
    pub fn submit(&self, event: Event, victim: Option<ProcId>) -> Result<(), (Refused, Event)> {
        let Some(tx) = &self.tx else { return Err((Refused::Gone, event)) };
        tx.try_send((event, victim)).map_err(|e| match e {
            TrySendError::Full((e, _)) => (Refused::Full, e),
            TrySendError::Disconnected((e, _)) => (Refused::Gone, e),
        })
    }

    /// A timeline buffer the writer is done with, if one came back.
    pub fn spare(&self) -> Option<Vec<Point>> {
        self.recycled.try_recv().ok()
    }

    /// Close the queue and wait up to `wait` for the writer to store what it holds.
    /// Returns false when it did not finish in time (it is then left to exit with the process).
    pub fn finish(mut self, wait: Duration) -> bool {
        drop(self.tx.take());
        let Some(thread) = self.thread.take() else { return true };
        let deadline = std::time::Instant::now() + wait;
        while !thread.is_finished() {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        thread.join().is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(cmdline: &str) -> Event {
        let evidence = serde_json::to_string(&thrashguard_core::policy::Evidence::default()).unwrap();
        let line = format!(
            r#"{{"id":1,"unix_ms":0,"host":"lab","scope":"system","action":"kill","reason":"thrashing","outcome":"killed","victim":{{"pid":348,"name":"python3","cmdline":{cmdline:?},"footprint":1245804,"swap":0,"oom_score":null}},"evidence":{evidence},"exit_after_ms":955.0,"timeline":[]}}"#
        );
        serde_json::from_str(&line).unwrap()
    }

    #[test]
    fn summary_leaves_out_a_missing_command_line() {
        assert_eq!(summary(&event("")), "kill 348 python3 (1216 MiB) in system for thrashing: killed");
        assert_eq!(
            summary(&event("python3 workloads.py hog-zram")),
            "kill 348 python3 (python3 workloads.py hog-zram, 1216 MiB) in system for thrashing: killed"
        );
    }
}
