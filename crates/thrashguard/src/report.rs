//! `thrashguard report`: draw one stored event as a PNG, SVG or HTML file.
//!
//! Owns finding the event (from the history store by id, or from a JSON file or stdin) and
//! writing the rendered bytes atomically (a temporary file beside the target, then rename).
//! The drawing is `thrashguard_core::report`; this module never decides how anything looks.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use thrashguard_core::config::Config;
use thrashguard_core::history::Event;
use thrashguard_core::report;

/// Output formats, chosen by the output file's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `.png`
    Png,
    /// `.svg`
    Svg,
    /// `.html` / `.htm`
    Html,
}

impl Format {
    /// The format for `out`'s extension (any case); `None` for anything else.
    pub fn from_path(out: &Path) -> Option<Format> {
        let ext = out.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "png" => Some(Format::Png),
            "svg" => Some(Format::Svg),
            "html" | "htm" => Some(Format::Html),
            _ => None,
        }
    }
}

/// Where the event comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// An id in the history store (`--db`, else the configured store).
    Id {
        /// The event's id.
        id: i64,
        /// The store's path, when given.
        db: Option<PathBuf>,
    },
    /// A JSON file (`-`: stdin).
    File(PathBuf),
}

/// The event with id `id` from the history store at `db` (else `history.path` of `cfg`).
pub fn load(id: i64, db: Option<&Path>, cfg: &Config) -> Result<Event> {
    let db = db.map_or_else(|| PathBuf::from(&cfg.history.path), Path::to_path_buf);
    match crate::store::load_event(&db, id)? {
        Some(ev) => Ok(ev),
        None => bail!("{}: no event {id} (`thrashguard history` lists them)", db.display()),
    }
}

/// Read an event from JSON text: one event object, or JSON lines (as `thrashguard history
/// --json` prints them) of which the first event is taken. `what` names the source in errors.
pub fn parse_event(text: &str, what: &str) -> Result<Event> {
    let whole = serde_json::from_str::<Event>(text);
    if let Ok(ev) = whole {
        return Ok(ev);
    }
    let Some((no, first)) = text.lines().enumerate().find(|(_, l)| !l.trim().is_empty()) else {
        bail!("{what}: no event in it (empty)");
    };
    if first.trim() == text.trim() {
        // a single line (or one pretty-printed object): report the whole-text error
        let e = whole.err().map(|e| e.to_string()).unwrap_or_default();
        bail!("{what}: not a thrashguard event: {e}");
    }
    serde_json::from_str::<Event>(first).with_context(|| format!("{what}: line {}: not a thrashguard event", no + 1))
}

/// Read the event from a file (`-`: stdin).
pub fn read_event(path: &Path) -> Result<Event> {
    let mut text = String::new();
    if path == Path::new("-") {
        std::io::stdin().read_to_string(&mut text).context("reading the event from stdin")?;
        parse_event(&text, "stdin")
    } else {
        let mut f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        f.read_to_string(&mut text).with_context(|| format!("reading {}", path.display()))?;
        parse_event(&text, &path.display().to_string())
    }
}

/// Render `ev` in `format`.
pub fn render(ev: &Event, format: Format) -> Result<Vec<u8>> {
    Ok(match format {
        Format::Png => report::png(ev)?,
        Format::Svg => report::svg(ev)?.into_bytes(),
        Format::Html => report::html(ev)?.into_bytes(),
    })
}

/// Write `bytes` to `out` atomically: a temporary file in the same directory, synced, then
/// renamed over `out` (readers see the old file or the whole new one, never a part).
pub fn write_atomic(out: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = out.file_name().with_context(|| format!("{}: not a file name", out.display()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(bytes).with_context(|| format!("writing {}", tmp.display()))?;
        f.sync_all().with_context(|| format!("syncing {}", tmp.display()))?;
        std::fs::rename(&tmp, out).with_context(|| format!("cannot rename {} to {}", tmp.display(), out.display()))?;
        // the rename itself survives a crash once the directory is synced (best effort)
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `thrashguard report`: load, render, write. Returns the event's label for the summary line.
pub fn run(source: &Source, out: &Path, format: Format, cfg: &Config) -> Result<String> {
    let ev = match source {
        Source::Id { id, db } => load(*id, db.as_deref(), cfg)?,
        Source::File(path) => read_event(path)?,
    };
    let bytes = render(&ev, format)?;
    write_atomic(out, &bytes)?;
    Ok(report::action_label(&ev))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_by_extension() {
        assert_eq!(Format::from_path(Path::new("a.png")), Some(Format::Png));
        assert_eq!(Format::from_path(Path::new("dir.x/A.SVG")), Some(Format::Svg));
        assert_eq!(Format::from_path(Path::new("r.htm")), Some(Format::Html));
        assert_eq!(Format::from_path(Path::new("r.html")), Some(Format::Html));
        assert_eq!(Format::from_path(Path::new("r.pdf")), None);
        assert_eq!(Format::from_path(Path::new("png")), None);
        assert_eq!(Format::from_path(Path::new("")), None);
    }

    #[test]
    fn bad_event_text_is_a_clear_error() {
        assert!(parse_event("", "x").unwrap_err().to_string().contains("empty"));
        assert!(parse_event("\n \n", "x").unwrap_err().to_string().contains("empty"));
        assert!(format!("{:#}", parse_event("{\"id\":1}", "x").unwrap_err()).contains("not a thrashguard event"));
        let e = format!("{:#}", parse_event("[1]\n{}\n", "f.json").unwrap_err());
        assert!(e.contains("f.json: line 1"), "{e}");
        assert!(parse_event("\u{0}\u{1}garbage", "x").is_err());
    }
}
