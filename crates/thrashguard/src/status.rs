//! `thrashguard status`: the running guard's state through its unix socket, or the same
//! summary computed from /proc when no guard answers.
//!
//! Owns connecting to `guard.status_socket` (2 s timeout), the fallback (a short dry-run
//! guard of its own, [`crate::daemon::status_from_proc`]) and printing (text or JSON).
//! It must never signal anything or change the running guard.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;
use thrashguard_core::config::Config;

/// How long a client waits for the guard's reply.
const TIMEOUT: Duration = Duration::from_secs(2);
/// How long the /proc fallback samples (the stall shares' window).
const FALLBACK_WINDOW: Duration = Duration::from_secs(1);

/// The guard's status body from its socket; `None` when nothing answers there.
pub fn from_daemon(socket: &Path) -> Option<Value> {
    let mut s = UnixStream::connect(socket).ok()?;
    s.set_read_timeout(Some(TIMEOUT)).ok()?;
    let mut body = Vec::new();
    s.read_to_end(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

/// The status: from the running guard, else from /proc. Adds `"source"`.
pub fn fetch(cfg: &Config, opts: crate::daemon::Options) -> Result<Value> {
    let (mut v, source) = match (!cfg.guard.status_socket.is_empty()).then(|| from_daemon(Path::new(&cfg.guard.status_socket))).flatten() {
        Some(v) => (v, "daemon"),
        None => (crate::daemon::status_from_proc(cfg.clone(), opts, FALLBACK_WINDOW).context("status from /proc")?, "proc"),
    };
    if let Some(o) = v.as_object_mut() {
        o.remove("action");
        o.insert("source".into(), source.into());
    }
    Ok(v)
}

fn mib(v: &Value) -> String {
    v.as_u64().map_or_else(|| "?".into(), |k| format!("{} MiB", k / 1024))
}

/// Human text of a status document.
pub fn render_text(v: &Value) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let source = match v["source"].as_str() {
        Some("daemon") => "the running guard",
        _ => "/proc (no guard answered on its status socket)",
    };
    let _ = writeln!(out, "{} — from {source}", v["host"].as_str().unwrap_or("?"));
    let _ = writeln!(out, "policy:    {}", v["phase"].as_str().unwrap_or("?"));
    if v["psi"].as_bool() == Some(true) {
        let pct = |k: &str| v[k].as_f64().map_or_else(|| "not measured".into(), |p| format!("{p:.1} %"));
        let _ = writeln!(out, "stall:     full {}, some {} (last second)", pct("full_stall_pct"), pct("some_stall_pct"));
    } else {
        let _ = writeln!(out, "stall:     no PSI on this kernel");
    }
    let _ = writeln!(
        out,
        "memory:    {} available of {}, headroom {} (swap {})",
        mib(&v["available_kib"]),
        mib(&v["total_kib"]),
        mib(&v["headroom_kib"]),
        mib(&v["swap_total_kib"])
    );
    if v["source"] == "daemon" {
        let _ = writeln!(out, "so far:    {} decisions, {} actions", v["decisions"], v["actions"]);
    }
    match &v["last_action"] {
        Value::Object(a) => {
            let _ = writeln!(
                out,
                "last:      {} {} ({})",
                a.get("pid").unwrap_or(&Value::Null),
                a.get("name").and_then(Value::as_str).unwrap_or("?"),
                a.get("scope").and_then(Value::as_str).unwrap_or("?")
            );
        }
        _ => {
            let _ = writeln!(out, "last:      no action");
        }
    }
    let _ = writeln!(out, "\n{:>8}  {:<16} {:>10} {:>10}", "PID", "NAME", "RSS", "SWAP");
    for p in v["top"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{:>8}  {:<16} {:>10} {:>10}",
            p["pid"].as_u64().unwrap_or(0),
            p["name"].as_str().unwrap_or("?"),
            mib(&p["rss_kib"]),
            mib(&p["swap_kib"])
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_names_the_source_and_the_top_processes() {
        let v = serde_json::json!({"host":"db1","phase":"pressure","psi":true,"full_stall_pct":12.5,"some_stall_pct":40.0,
            "available_kib":1048576,"total_kib":8388608,"headroom_kib":2097152,"swap_total_kib":0,"decisions":1,"actions":1,
            "top":[{"pid":42,"name":"java","rss_kib":4194304,"swap_kib":0}],
            "last_action":{"pid":7,"name":"hog","scope":"system"},"source":"daemon"});
        let t = render_text(&v);
        assert!(t.starts_with("db1 — from the running guard"), "{t}");
        assert!(t.contains("full 12.5 %") && t.contains("1024 MiB available of 8192 MiB"), "{t}");
        assert!(t.contains("1 decisions, 1 actions") && t.contains("last:      7 hog (system)"), "{t}");
        assert!(t.contains("      42  java") && t.contains("4096 MiB"), "{t}");
    }
}
