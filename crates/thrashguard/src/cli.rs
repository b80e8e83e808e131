//! The command line: every subcommand and flag, and the exit codes.
//!
//! Owns argument parsing (clap derive) and dispatch to the modules that do the work,
//! mapping failures to documented exit codes. It must never do the work itself.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use thrashguard_core::config::Config;
use thrashguard_core::units::Pid;

use crate::logging::LogFormat;

/// Exit codes (documented in the man page and README).
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// Runtime failure.
    pub const FAILURE: i32 = 1;
    /// Usage error (clap's default).
    pub const USAGE: i32 = 2;
    /// Unusable configuration (EX_CONFIG); systemd does not restart-loop on it.
    pub const CONFIG: i32 = 78;
}

/// thrashguard: detects memory thrashing within a second and rescues the machine.
#[derive(Debug, Parser)]
#[command(name = "thrashguard", version, about, long_about = None, max_term_width = 100)]
pub struct Cli {
    /// Configuration file [default: /etc/thrashguard/thrashguard.toml if present, else built-in defaults]
    #[arg(long, global = true, env = "THRASHGUARD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Read the kernel's files from this directory instead of /proc (a captured tree)
    #[arg(long, global = true, default_value = "/proc", value_name = "DIR")]
    pub proc_root: PathBuf,
    /// Read /sys (cgroup hierarchies) from this directory instead
    #[arg(long, global = true, default_value = "/sys", value_name = "DIR")]
    pub sys_root: PathBuf,
    /// Log format on stderr
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// More log output
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// What to do
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Guard the machine: detect thrashing and rescue it (needs root for full power)
    Daemon {
        /// Log decisions and victims, act on nothing
        #[arg(long)]
        dry_run: bool,
        /// Do not lock memory, set oom_score_adj or real-time priority
        #[arg(long, hide = true)]
        no_self_protect: bool,
        /// Stop after this many seconds
        #[arg(long, value_name = "S", hide = true)]
        duration: Option<f64>,
    },
    /// Record a pressure trace (JSON lines; .gz compresses)
    Record {
        /// Output file
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Stop after this many seconds [default: until interrupted]
        #[arg(long, value_name = "S")]
        duration: Option<f64>,
        /// Sampling interval
        #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u64).range(10..=60000))]
        interval_ms: u64,
        /// Free text stored in the trace header
        #[arg(long)]
        note: Option<String>,
    },
    /// Run the daemon's policy over a trace and print every decision
    Replay {
        /// Trace file (.trace.jsonl or .trace.jsonl.gz)
        file: PathBuf,
        /// One JSON object per decision and a summary line
        #[arg(long)]
        json: bool,
    },
    /// Check the configuration file and exit (78 when it is invalid)
    CheckConfig,
    /// Print the default configuration as TOML
    DefaultConfig,
    /// Resume a process frozen by the `freeze` action
    Thaw {
        /// Process id
        pid: u32,
    },
}

fn seconds(s: Option<f64>) -> anyhow::Result<Option<Duration>> {
    s.map(|v| Duration::try_from_secs_f64(v).map_err(|_| anyhow::anyhow!("{v}: not a duration in seconds"))).transpose()
}

fn load_config(cli: &Cli) -> Result<Config, i32> {
    match crate::config::load(cli.config.as_deref()) {
        Ok((cfg, _)) => Ok(cfg),
        Err(e) => {
            eprintln!("thrashguard: error: {e}");
            Err(exit::CONFIG)
        }
    }
}

/// Run the command line; returns the exit code.
pub fn run(cli: Cli) -> i32 {
    crate::logging::init(cli.log_format, cli.verbose);
    let cfg = match &cli.command {
        Command::DefaultConfig | Command::Thaw { .. } => Config::default(),
        _ => match load_config(&cli) {
            Ok(c) => c,
            Err(code) => return code,
        },
    };
    let result = match cli.command {
        Command::Daemon { dry_run, no_self_protect, duration } => seconds(duration).and_then(|duration| {
            crate::daemon::main(
                cfg,
                crate::daemon::Options {
                    proc_root: cli.proc_root.clone(),
                    sys_root: cli.sys_root.clone(),
                    dry_run,
                    no_self_protect,
                    duration,
                },
            )
        }),
        Command::Record { out, duration, interval_ms, note } => seconds(duration).and_then(|duration| {
            let args = crate::record::RecordArgs {
                out,
                duration,
                interval: Duration::from_millis(interval_ms),
                proc_root: cli.proc_root.clone(),
                note,
            };
            let n = crate::record::run(&args)?;
            eprintln!("thrashguard: wrote {n} samples to {}", args.out.display());
            Ok(())
        }),
        Command::Replay { file, json } => {
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            crate::replay::run(&file, &cfg, json, &mut lock).map(|_| ())
        }
        Command::CheckConfig => {
            let where_ = cli.config.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "built-in defaults".into());
            println!("configuration ok ({where_})");
            Ok(())
        }
        Command::DefaultConfig => {
            print!("{}", Config::default_toml());
            Ok(())
        }
        Command::Thaw { pid } => thaw(&cli.proc_root, &cli.sys_root, Pid(pid)),
    };
    match result {
        Ok(()) => exit::OK,
        Err(e) if e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) => exit::OK,
        Err(e) => {
            let _ = std::io::stdout().flush();
            eprintln!("thrashguard: error: {e:#}");
            exit::FAILURE
        }
    }
}

fn thaw(proc_root: &std::path::Path, sys_root: &std::path::Path, pid: Pid) -> anyhow::Result<()> {
    use std::os::fd::AsFd;
    let dir = crate::procdir::open_dir(proc_root)?;
    let id = crate::act::identify(dir.as_fd(), pid).ok_or_else(|| anyhow::anyhow!("no process {pid}"))?;
    // frozen as a whole cgroup (victim.whole_cgroup): thaw the cgroup too
    let v2 = crate::cgroups::v2_mount(proc_root, sys_root);
    if let Some(cg) = v2.and_then(|m| crate::act::cgroup_v2_dir(proc_root, pid, &m))
        && std::fs::read_to_string(cg.join("cgroup.freeze")).is_ok_and(|v| v.trim() == "1")
    {
        crate::act::freeze_cgroup(dir.as_fd(), id, &cg, false)?;
        println!("thawed cgroup {}", cg.display());
    }
    match crate::act::thaw(dir.as_fd(), id)? {
        crate::act::Acted::Signalled { .. } => {
            println!("resumed {pid}");
            Ok(())
        }
        other => anyhow::bail!("process {pid}: {other:?}"),
    }
}
