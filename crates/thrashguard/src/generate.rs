//! `thrashguard generate {man,completions,config,all} --out DIR` (hidden): the files the
//! package ships, made from this binary's own definitions so they cannot go stale.
//!
//! Owns the man pages (clap_mangen, one page per visible subcommand, section 8, with the
//! EXIT STATUS, FILES, ENVIRONMENT and SIGNALS sections clap cannot know), the bash, zsh
//! and fish completions (clap_complete) and the commented default configuration file
//! (`thrashguard_core::config_file` over docs/configuration.md, compiled in).
//! `packaging/build-deb` runs it before `cargo deb`. It never runs in the daemon.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::CommandFactory;

/// What `generate` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum What {
    /// Man pages: OUT/man/thrashguard*.8
    Man,
    /// Completions: OUT/completions/{thrashguard.bash,_thrashguard,thrashguard.fish}
    Completions,
    /// The commented default configuration: OUT/thrashguard.toml
    Config,
    /// All of the above
    All,
}

/// The configuration reference the default file takes its comments from.
const REFERENCE: &str = include_str!("../../../docs/configuration.md");

/// Write `what` under `out`; returns the files written.
pub fn run(what: What, out: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    if matches!(what, What::Man | What::All) {
        written.extend(man_pages(&out.join("man"))?);
    }
    if matches!(what, What::Completions | What::All) {
        written.extend(completions(&out.join("completions"))?);
    }
    if matches!(what, What::Config | What::All) {
        std::fs::create_dir_all(out).with_context(|| format!("{}", out.display()))?;
        let path = out.join("thrashguard.toml");
        std::fs::write(&path, default_config_file()).with_context(|| format!("{}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// The commented default configuration file (every key commented out at its default).
pub fn default_config_file() -> String {
    thrashguard_core::config_file::render(REFERENCE)
}

/// Roff-escape plain text (backslashes, leading dots and quotes, hyphens).
fn roff(text: &str) -> String {
    let mut s = text.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        s.insert_str(0, "\\&");
    }
    s
}

/// A section of `(term, description)` paragraphs.
fn section(out: &mut Vec<u8>, title: &str, items: &[(&str, &str)]) {
    out.extend_from_slice(format!(".SH \"{title}\"\n").as_bytes());
    for (term, desc) in items {
        out.extend_from_slice(format!(".TP\n\\fB{}\\fR\n{}\n", roff(term), roff(desc)).as_bytes());
    }
}

const EXIT_STATUS: &[(&str, &str)] = &[
    ("0", "success"),
    ("1", "runtime failure (for send: a host did not answer ok; for doctor: warnings)"),
    ("2", "usage error (for doctor: critical findings)"),
    ("3", "doctor itself failed"),
    ("78", "invalid configuration, or a loose or broken lifeline key file (EX_CONFIG: systemd does not restart the daemon on it)"),
];

const FILES: &[(&str, &str)] = &[
    ("/etc/thrashguard/thrashguard.toml", "configuration (every key commented out at its default)"),
    ("/etc/thrashguard/lifeline.authorized", "keys allowed to send lifeline requests; the lifeline is off while it is missing or empty"),
    ("/etc/thrashguard/host.key", "the host's Ed25519 key that signs lifeline replies"),
    ("/run/thrashguard/status.sock", "the running guard's state, read by thrashguard status"),
    ("/usr/lib/systemd/system/thrashguard.service", "the systemd unit (Type=notify, watchdog)"),
    ("/usr/share/doc/thrashguard/", "configuration reference, policy, lifeline protocol, doctor rules, metrics"),
];

const ENVIRONMENT: &[(&str, &str)] = &[
    ("THRASHGUARD_CONFIG", "configuration file when --config is not given"),
    (
        "NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID",
        "set by systemd: the daemon reports READY=1 once its set-up is done and pings WATCHDOG=1 from its guard loop at half the interval",
    ),
    ("NO_COLOR", "no colour in log output"),
];

const SIGNALS: &[(&str, &str)] = &[("SIGTERM, SIGINT", "the daemon stops cleanly (STOPPING=1, sockets removed); exit status 0")];

/// One page per visible (sub)command, section 8.
fn man_pages(dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    let mut cmd = crate::cli::Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    page(&cmd, dir, true, &mut written)?;
    Ok(written)
}

fn page(cmd: &clap::Command, dir: &Path, top: bool, written: &mut Vec<PathBuf>) -> Result<()> {
    let date = env!("THRASHGUARD_BUILD_DATE");
    let man = clap_mangen::Man::new(cmd.clone())
        .section("8")
        .date(date)
        .source(format!("thrashguard {}", env!("CARGO_PKG_VERSION")))
        .manual("System Administration");
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut out)?;
    }
    let subs: Vec<&clap::Command> = cmd.get_subcommands().filter(|s| !s.is_hide_set()).collect();
    if !subs.is_empty() {
        man.render_subcommands_section(&mut out)?;
    }
    if cmd.get_after_long_help().is_some() || cmd.get_after_help().is_some() {
        man.render_extra_section(&mut out)?;
    }
    let name = cmd.get_display_name().unwrap_or_else(|| cmd.get_name()).to_string();
    if top || name == "thrashguard-daemon" {
        section(&mut out, "EXIT STATUS", EXIT_STATUS);
        section(&mut out, "FILES", FILES);
        section(&mut out, "ENVIRONMENT", ENVIRONMENT);
        section(&mut out, "SIGNALS", SIGNALS);
    }
    let mut see_also: Vec<String> = Vec::new();
    if !top {
        see_also.push("thrashguard(8)".into());
    }
    see_also.extend(subs.iter().map(|s| format!("{}(8)", s.get_display_name().unwrap_or_else(|| s.get_name()))));
    if top || name == "thrashguard-daemon" {
        see_also.extend(["systemd.service(5)", "systemd-oomd(8)", "earlyoom(1)"].map(String::from));
    }
    out.extend_from_slice(b".SH \"SEE ALSO\"\n");
    out.extend_from_slice(
        see_also
            .iter()
            .map(|s| {
                let (n, sec) = s.split_once('(').unwrap_or((s, ""));
                format!("\\fB{}\\fR({}", roff(n), sec)
            })
            .collect::<Vec<_>>()
            .join(",\n")
            .as_bytes(),
    );
    out.push(b'\n');
    if cmd.get_version().is_some() {
        man.render_version_section(&mut out)?;
    }
    let path = dir.join(format!("{name}.8"));
    std::fs::write(&path, out).with_context(|| format!("{}", path.display()))?;
    written.push(path);
    for sub in subs {
        page(sub, dir, false, written)?;
    }
    Ok(())
}

/// bash, zsh and fish completions.
fn completions(dir: &Path) -> Result<Vec<PathBuf>> {
    use clap_complete::Shell;
    std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    let mut cmd = crate::cli::Cli::command();
    [Shell::Bash, Shell::Zsh, Shell::Fish]
        .into_iter()
        .map(|shell| clap_complete::generate_to(shell, &mut cmd, "thrashguard", dir).with_context(|| format!("{shell} completion")))
        .collect()
}
