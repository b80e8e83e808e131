//! Build script: stamps the git commit into `thrashguard --version`.
//!
//! Sets `THRASHGUARD_GIT` to the short commit of the tree being built, with `-dirty` when
//! tracked files differ from it, or to `$THRASHGUARD_GIT_COMMIT` when that is set (a
//! distribution building from a tarball), else `unknown` (no git, not a work tree: a .crate
//! or a tarball). Sets `THRASHGUARD_BUILD_DATE` (the commit's date, YYYY-MM-DD; else
//! `$SOURCE_DATE_EPOCH`'s, else empty) for the man pages. It must never write outside
//! OUT_DIR nor fail the build: every git failure falls back.

use std::path::Path;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").arg("-C").arg(dir).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn main() {
    println!("cargo:rerun-if-env-changed=THRASHGUARD_GIT_COMMIT");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-env-changed=GIT_DIR");
    let dir = std::env::var("CARGO_MANIFEST_DIR").map(std::path::PathBuf::from).unwrap_or_default();
    // Re-run when the commit, the branch it points to or the index moves, and when this
    // crate's sources change (the dirty flag follows the edits that rebuild the binary).
    // (only paths that exist: cargo re-runs a script whose watched path is missing every time)
    let head_ref = git(&dir, &["symbolic-ref", "-q", "HEAD"]);
    for what in ["HEAD", "index", "packed-refs"].into_iter().chain(head_ref.as_deref()) {
        if let Some(p) = git(&dir, &["rev-parse", "--path-format=absolute", "--git-path", what]).filter(|p| Path::new(p).exists()) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=build.rs");

    let commit = match std::env::var("THRASHGUARD_GIT_COMMIT").ok().filter(|c| !c.trim().is_empty()) {
        Some(c) => c.trim().to_string(),
        None => match git(&dir, &["rev-parse", "--short=10", "HEAD"]) {
            Some(c) => {
                // tracked files only: an untracked scratch file does not make a build dirty
                let dirty = git(&dir, &["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
                if dirty { format!("{c}-dirty") } else { c }
            }
            None => "unknown".to_string(),
        },
    };
    println!("cargo:rustc-env=THRASHGUARD_GIT={commit}");

    let date = git(&dir, &["log", "-1", "--format=%cs"]).filter(|d| d.len() == 10).or_else(|| {
        let secs: i64 = std::env::var("SOURCE_DATE_EPOCH").ok()?.trim().parse().ok()?;
        let (y, m, d) = civil(secs.div_euclid(86_400));
        Some(format!("{y:04}-{m:02}-{d:02}"))
    });
    println!("cargo:rustc-env=THRASHGUARD_BUILD_DATE={}", date.unwrap_or_default());
}
