//! What the package ships: `--version` with the git commit, the man pages, completions and
//! commented default configuration that `thrashguard generate` makes from the binary (every
//! visible subcommand covered, the configuration exactly the defaults), and the systemd
//! unit (`systemd-analyze verify`, the exposure score of `systemd-analyze security`, and the
//! settings a killer must keep). The .deb itself is built and checked by
//! `packaging/check-deb` in .ci/run; the lab guest installs it (`bench/lab/deb-check`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory;

mod common;
use common::tree;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tg(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_thrashguard")).args(args).env_remove("THRASHGUARD_CONFIG").output().unwrap()
}

/// Whether `tool` runs; when it does not, a skip line, or a failure when
/// THRASHGUARD_REQUIRE_<TOOL>=1 (CI).
fn have(tool: &str, env: &str) -> bool {
    if Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success()) {
        return true;
    }
    assert!(std::env::var(env).as_deref() != Ok("1"), "{tool} is missing and {env}=1");
    eprintln!("skipped: {tool} is not installed (set {env}=1 to make this a failure)");
    false
}

#[test]
fn version_names_the_git_commit() {
    let o = tg(&["--version"]);
    assert!(o.status.success());
    let line = String::from_utf8(o.stdout).unwrap();
    let want = format!("thrashguard {} (", env!("CARGO_PKG_VERSION"));
    assert!(line.starts_with(&want) && line.trim_end().ends_with(')'), "{line:?}");
    let commit = line.trim_end().trim_end_matches(')').rsplit_once('(').unwrap().1;
    let head = Command::new("git").args(["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "--short=10", "HEAD"]).output();
    match head {
        Ok(h) if h.status.success() && std::env::var("THRASHGUARD_GIT_COMMIT").is_err() => {
            let head = String::from_utf8(h.stdout).unwrap();
            assert_eq!(commit.trim_end_matches("-dirty"), head.trim(), "{line:?}");
        }
        _ => assert!(!commit.is_empty(), "{line:?}"),
    }
}

/// The visible (sub)commands as man page names: thrashguard, thrashguard-daemon, ...
fn visible_commands() -> Vec<String> {
    fn walk(cmd: &clap::Command, prefix: &str, out: &mut Vec<String>) {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
            let name = format!("{prefix}-{}", sub.get_name());
            out.push(name.clone());
            walk(sub, &name, out);
        }
    }
    let mut out = vec!["thrashguard".to_string()];
    walk(&thrashguard::cli::Cli::command(), "thrashguard", &mut out);
    out
}

#[test]
fn man_pages_and_completions_cover_every_command() {
    let dir = tree("generate");
    let o = tg(&["generate", "all", "--out", dir.0.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let commands = visible_commands();
    assert!(commands.len() >= 10, "{commands:?}");
    let mut pages: Vec<String> =
        std::fs::read_dir(dir.0.join("man")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    pages.sort();
    let mut want: Vec<String> = commands.iter().map(|c| format!("{c}.8")).collect();
    want.sort();
    assert_eq!(pages, want, "one section-8 page per visible command, none for hidden ones");
    let main = std::fs::read_to_string(dir.0.join("man/thrashguard.8")).unwrap();
    for section in ["EXIT STATUS", "FILES", "ENVIRONMENT", "SIGNALS", "SEE ALSO"] {
        assert!(main.contains(&format!(".SH \"{section}\"")), "thrashguard.8 lacks {section}");
    }
    assert!(main.contains("78"), "exit status 78 documented");
    assert!(main.contains(env!("CARGO_PKG_VERSION")));
    // every page renders without a warning from groff, where man is installed
    if Command::new("man").arg("--version").output().is_ok_and(|o| o.status.success()) {
        for p in &pages {
            let o = Command::new("man")
                .args(["--warnings", "-l", "-Tutf8"])
                .arg(dir.0.join("man").join(p))
                .env("MANWIDTH", "80")
                .output()
                .unwrap();
            assert!(o.status.success() && o.stderr.is_empty(), "{p}: {}", String::from_utf8_lossy(&o.stderr));
        }
    }

    let bash = std::fs::read_to_string(dir.0.join("completions/thrashguard.bash")).unwrap();
    let zsh = std::fs::read_to_string(dir.0.join("completions/_thrashguard")).unwrap();
    let fish = std::fs::read_to_string(dir.0.join("completions/thrashguard.fish")).unwrap();
    for c in commands.iter().skip(1) {
        let leaf = c.rsplit('-').next().unwrap();
        for (shell, text) in [("bash", &bash), ("zsh", &zsh), ("fish", &fish)] {
            assert!(text.contains(leaf), "{shell} completion lacks {c}");
        }
    }
    // (clap_complete lists the hidden `generate` too, under `help` at least: harmless)
    let syntax = Command::new("bash").arg("-n").arg(dir.0.join("completions/thrashguard.bash")).output().unwrap();
    assert!(syntax.status.success(), "{}", String::from_utf8_lossy(&syntax.stderr));
}

#[test]
fn shipped_configuration_is_the_defaults_and_checks() {
    let dir = tree("generate-cfg");
    let o = tg(&["generate", "config", "--out", dir.0.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let path = dir.0.join("thrashguard.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let defaults = thrashguard_core::config::Config::default();
    assert_eq!(thrashguard_core::config::Config::parse(&text).unwrap(), defaults);
    assert_eq!(thrashguard_core::config::Config::parse(&thrashguard_core::config_file::uncomment_keys(&text)).unwrap(), defaults);
    let check = tg(&["--config", path.to_str().unwrap(), "check-config"]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    // the lifeline stays off: the package ships no key
    assert!(text.contains("#authorized_keys = \"/etc/thrashguard/lifeline.authorized\""));
}

fn unit() -> String {
    std::fs::read_to_string(repo().join("packaging/debian/thrashguard.service")).unwrap()
}

#[test]
fn unit_keeps_what_a_killer_needs() {
    let u = unit();
    let has = |line: &str| u.lines().any(|l| l.trim() == line);
    for line in [
        "Type=notify",
        "NotifyAccess=main",
        "ExecStart=/usr/bin/thrashguard daemon",
        "Restart=always",
        "RestartPreventExitStatus=78",
        "OOMScoreAdjust=-1000",
        "ProtectProc=default",
        "ProcSubset=all",
        "ProtectControlGroups=no",
        "NoNewPrivileges=yes",
        "MemoryDenyWriteExecute=yes",
        "ProtectSystem=strict",
        "RuntimeDirectory=thrashguard",
    ] {
        assert!(has(line), "the unit lacks {line}");
    }
    for bad in
        ["PrivateNetwork=yes", "PrivateUsers=yes", "ProtectProc=invisible", "ProcSubset=pid", "ProtectControlGroups=yes", "DynamicUser=yes"]
    {
        assert!(!has(bad), "{bad} would break the guard");
    }
    assert!(
        !u.lines().any(|l| l.starts_with("MemoryMax=") || l.starts_with("MemoryHigh=")),
        "a memory limit can make the guard kill itself"
    );
    let caps = u.lines().find_map(|l| l.strip_prefix("CapabilityBoundingSet=")).expect("a capability bounding set");
    for cap in ["CAP_KILL", "CAP_IPC_LOCK", "CAP_SYS_PTRACE", "CAP_SYS_NICE"] {
        assert!(caps.split_whitespace().any(|c| c == cap), "{cap} missing from {caps}");
    }
    assert!(!caps.contains("CAP_SYS_ADMIN"));
    // the guard pings at half the interval and wakes at least that often: WatchdogSec must
    // leave room for a poll timeout of half of it
    let wd = u.lines().find_map(|l| l.strip_prefix("WatchdogSec=")).expect("WatchdogSec");
    let secs: u64 = wd.trim_end_matches('s').parse().unwrap();
    assert!((4..=60).contains(&secs), "WatchdogSec={wd}");
}

/// The unit with ExecStart pointing at the binary under test (verify checks it exists).
fn unit_for_host(dir: &Path) -> PathBuf {
    let u = unit().replace("/usr/bin/thrashguard", env!("CARGO_BIN_EXE_thrashguard"));
    let u: String = u.lines().filter(|l| !l.starts_with("Documentation=")).map(|l| format!("{l}\n")).collect();
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("thrashguard.service");
    std::fs::write(&path, u).unwrap();
    path
}

#[test]
fn unit_verifies_and_its_exposure_stays_low() {
    if !have("systemd-analyze", "THRASHGUARD_REQUIRE_SYSTEMD_ANALYZE") {
        return;
    }
    let dir = tree("unit");
    let path = unit_for_host(&dir.0);
    let o = Command::new("systemd-analyze").arg("verify").arg(&path).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    // (verify also loads the host's own units, which may warn about themselves)
    let ours: Vec<&str> = err.lines().filter(|l| l.contains("thrashguard")).collect();
    assert!(o.status.success() && ours.is_empty(), "systemd-analyze verify: {err}");
    // `--offline` scores the file as written (systemd >= 250); the lab runs the real one
    let o = Command::new("systemd-analyze").args(["security", "--offline=true", "--no-pager"]).arg(&path).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let score: f64 = out
        .lines()
        .find_map(|l| l.split("exposure level for thrashguard.service: ").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in {out}\n{}", String::from_utf8_lossy(&o.stderr)));
    eprintln!("systemd-analyze security --offline: exposure {score}");
    assert!(score <= 3.5, "exposure {score} (was 2.8 when the unit was written):\n{out}");
}

#[test]
fn changelog_matches_the_version() {
    let log = std::fs::read_to_string(repo().join("packaging/debian/changelog")).unwrap();
    let first = log.lines().next().unwrap();
    assert!(
        first.starts_with(&format!("thrashguard ({}-", env!("CARGO_PKG_VERSION"))),
        "packaging/debian/changelog's first entry {first:?} is not version {}: add an entry",
        env!("CARGO_PKG_VERSION")
    );
}

/// A guard started beside earlyoom (here: a sleep named earlyoom) says so at start.
#[test]
fn another_guard_running_is_named_at_start() {
    let dir = tree("other-guard");
    let fake = dir.0.join("earlyoom");
    // a symlink, not a copy: the kernel names the process after the path it was given, and a copy
    // would be a file just written, which another test thread's fork can still hold open for writing
    // (ETXTBSY when we exec it)
    std::os::unix::fs::symlink("/bin/sleep", &fake).unwrap();
    let mut other = Command::new(&fake).arg("60").spawn().unwrap();
    let cfg = dir.0.join("tg.toml");
    std::fs::write(&cfg, "[guard]\nstatus_socket = \"\"\n").unwrap();
    let mut d = common::Daemon::spawn(&["--config", cfg.to_str().unwrap(), "daemon", "--dry-run", "--no-self-protect", "--duration", "30"]);
    let line = d.wait_for("another memory-pressure daemon");
    assert!(line.contains("earlyoom"), "{line}");
    drop(d);
    let _ = other.kill();
    let _ = other.wait();
}
