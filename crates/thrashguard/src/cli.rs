//! The command line: every subcommand and flag, and the exit codes.
//!
//! Owns argument parsing (clap derive) and dispatch to the modules that do the work,
//! mapping failures to documented exit codes. It must never do the work itself.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use thrashguard_core::config::Config;
use thrashguard_core::lifeline::wire::Scheme;
use thrashguard_core::units::Pid;

use crate::logging::LogFormat;

/// `thrashguard lifeline ...`.
#[derive(Debug, Subcommand)]
pub enum LifelineCommand {
    /// Would a lifeline request be heard now? Keys, the running guard (memory locked, OOM-proof),
    /// its socket, and the kernel's reserve for incoming packets (exit codes as doctor's)
    SelfTest {
        /// One JSON document (schema in docs/doctor.md)
        #[arg(long)]
        json: bool,
    },
}

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

/// `thrashguard --version`: the package version and the git commit it was built from
/// (`-dirty` with local changes; `unknown` outside git: see build.rs).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("THRASHGUARD_GIT"), ")");

/// thrashguard: detects memory thrashing within a second and rescues the machine.
#[derive(Debug, Parser)]
#[command(name = "thrashguard", version = VERSION, about, long_about = None, max_term_width = 100)]
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
        /// Serve Prometheus metrics at http://ADDR:PORT/metrics (a port alone: loopback);
        /// overrides `metrics.listen`
        #[arg(long, value_name = "ADDR:PORT")]
        metrics_listen: Option<String>,
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
    /// Draw one event's timeline (stall, headroom, refaults; the action marked with its victim)
    /// as a PNG, an SVG or a self-contained HTML page, by the extension of --out
    Report {
        /// Event id in the history store
        #[arg(required_unless_present = "event", conflicts_with = "event", value_name = "ID")]
        id: Option<i64>,
        /// Read the event from a JSON file instead: one event object, or JSON lines (the
        /// first is drawn); `-` reads stdin
        #[arg(long, value_name = "FILE")]
        event: Option<PathBuf>,
        /// History database [default: the configured store]
        #[arg(long, value_name = "PATH", requires = "id")]
        db: Option<PathBuf>,
        /// Output file: .png, .svg or .html (written atomically)
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Run the daemon's policy over a trace and print every decision
    Replay {
        /// Trace file (.trace.jsonl or .trace.jsonl.gz)
        file: PathBuf,
        /// One JSON object per decision and a summary line
        #[arg(long)]
        json: bool,
    },
    /// Pressure, headroom, policy phase, top processes and the last action: from the running
    /// guard's status socket, else computed from /proc over one second
    Status {
        /// One JSON document
        #[arg(long)]
        json: bool,
    },
    /// Live terminal view: stall and headroom sparklines, the top processes by footprint with
    /// swap and growth rate, the guard's last actions (q, Esc or Ctrl-C quits; f, s, g sort)
    Top {
        /// Seconds between samples
        #[arg(long, value_name = "S", default_value = "1", value_parser = interval)]
        interval: Duration,
        /// Processes shown at most [default: as many as fit; 20 with --once]
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
        count: Option<u32>,
        /// Print one frame as plain text (two samples an interval apart) and exit
        #[arg(long)]
        once: bool,
        /// Show only processes whose name matches this regular expression
        #[arg(long, value_name = "REGEX", value_parser = regex)]
        filter: Option<regex_lite::Regex>,
        /// Panic after the first frame (tests: the terminal must be restored)
        #[arg(long, hide = true)]
        test_panic: bool,
    },
    /// The events the guard stored, one per action: victim, reason, stall at the decision,
    /// outcome (`[history]` in the configuration)
    History {
        /// Only events this recent: 90s, 30m, 2h, 7d, 1h30m
        #[arg(long, value_name = "DURATION", value_parser = thrashguard_core::history::parse_duration)]
        since: Option<Duration>,
        /// One JSON object per line: each whole event, timeline included (what `report --event` reads)
        #[arg(long)]
        json: bool,
        /// The database to read [default: history.path from the configuration]
        #[arg(long, value_name = "PATH")]
        db: Option<PathBuf>,
    },
    /// Check the configuration file and exit (78 when it is invalid)
    CheckConfig,
    /// Print the default configuration as TOML
    DefaultConfig,
    /// Check the machine's memory set-up and say what is wrong and the fix
    /// (exit 0 nothing above info, 1 warnings, 2 critical, 3 doctor failed)
    Doctor {
        /// One JSON document (schema in docs/doctor.md)
        #[arg(long)]
        json: bool,
        /// Seconds between the two readings of the kernel's counters that rates come from
        /// (0: one reading, judge by totals since boot)
        #[arg(long, value_name = "S", default_value_t = 5.0)]
        window: f64,
        /// Read the kernel log from this file (a copy of /dev/kmsg, or dmesg / journalctl -k
        /// output) instead of /dev/kmsg
        #[arg(long, value_name = "FILE")]
        kmsg: Option<PathBuf>,
        /// Run the rules every S seconds and print only findings that appear or clear, with a
        /// timestamp (with --json one JSON line per change), until SIGINT/SIGTERM (exit 0)
        #[arg(long, value_name = "S")]
        watch: Option<f64>,
    },
    /// Lifeline tools
    #[command(subcommand)]
    Lifeline(LifelineCommand),
    /// Resume a process frozen by the `freeze` action
    Thaw {
        /// Process id
        pid: u32,
    },
    /// Make a lifeline key: NAME.key (private, 0600) and NAME.pub (the line to authorize)
    Keygen {
        /// Directory to write the two files into (never overwrites)
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// File name stem and key comment (`host` for a daemon's host key)
        #[arg(long, default_value = "lifeline")]
        name: String,
        /// A shared HMAC-SHA256 secret instead of an Ed25519 key pair
        #[arg(long)]
        hmac: bool,
    },
    /// Working set (pages referenced), dirtied pages (soft-dirty), RSS, swap and their rates per
    /// interval for each process (exit 0 when every process was measured, 1 otherwise)
    #[command(after_help = "Resets the processes' accessed bits (clear_refs) at the start and after each reading, which \
                            perturbs the kernel's reclaim decisions for them; --no-reset reads without resetting.\n\
                            Dirtied pages need a kernel with soft-dirty tracking (CONFIG_MEM_SOFT_DIRTY); without it they \
                            read \"unsupported\".")]
    Wss {
        /// Processes to measure
        #[arg(required = true, value_name = "PID")]
        pids: Vec<u32>,
        /// Seconds between readings
        #[arg(long, value_name = "S", default_value_t = 1.0)]
        interval: f64,
        /// Readings per process
        #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        samples: u32,
        /// One JSON object per line: start, sample, process, end
        #[arg(long)]
        json: bool,
        /// Read without resetting accessed and soft-dirty bits
        #[arg(long)]
        no_reset: bool,
        /// Count only the mappings that overlap START-END (hex, as /proc/PID/maps prints it)
        #[arg(long, value_name = "START-END")]
        range: Option<String>,
        /// How to read pagemap
        #[arg(long, value_enum, default_value_t = crate::wss::MethodChoice::Auto)]
        pagemap: crate::wss::MethodChoice,
    },
    /// Send an authenticated lifeline request and print the authenticated reply
    #[command(after_help = "ACTION: status | rescue | kill PID[@START] | freeze PID[@START] | thaw PID | sysrq LETTER\n\
                            Examples:\n  thrashguard send web1 status --key ops.key --host-pub web1-host.pub\n  \
                            thrashguard send --hosts fleet.txt status --key ops.key --json")]
    Send {
        /// HOST[:PORT] (port 7411 by default), then the action and its argument; without HOST when --hosts is given
        #[arg(required = true, num_args = 1..=3, value_name = "HOST ACTION [ARG]")]
        words: Vec<String>,
        /// Private key file (from `thrashguard keygen`)
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The host's public key that signs its replies (Ed25519 keys; `keygen --name host` made it)
        #[arg(long, value_name = "FILE")]
        host_pub: Option<PathBuf>,
        /// The name the host answers to (its lifeline.host_id) [default: HOST as written]
        #[arg(long, value_name = "NAME")]
        host_id: Option<String>,
        /// Many hosts, one `NAME [ADDR[:PORT]] [pub=FILE]` line each, sent to in parallel
        #[arg(long, value_name = "FILE")]
        hosts: Option<PathBuf>,
        /// One JSON object per host
        #[arg(long)]
        json: bool,
        /// Wait this long for a reply per attempt
        #[arg(long, value_name = "MS", default_value_t = 1000)]
        timeout: u64,
        /// Attempts after the first, each with a fresh nonce
        #[arg(long, value_name = "N", default_value_t = 2)]
        retries: u32,
        /// Send the request N times, one after another, and print round-trip times
        /// (min / p50 / p99 / max) instead of the replies: a ping through the guard loop
        #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        count: u32,
    },
    /// Write the packaged files made from this binary: man pages, shell completions, the
    /// commented default configuration (packaging/build-deb)
    #[command(hide = true)]
    Generate {
        /// What to write
        #[arg(value_enum)]
        what: crate::generate::What,
        /// Directory to write into (man/, completions/, thrashguard.toml)
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

fn seconds(s: Option<f64>) -> anyhow::Result<Option<Duration>> {
    s.map(|v| Duration::try_from_secs_f64(v).map_err(|_| anyhow::anyhow!("{v}: not a duration in seconds"))).transpose()
}

/// `top --interval`: 0.1 to 3600 seconds.
fn interval(s: &str) -> Result<Duration, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(0.1..=3600.0).contains(&v) {
        return Err(format!("{v} s is outside 0.1..=3600"));
    }
    Ok(Duration::from_secs_f64(v))
}

fn regex(s: &str) -> Result<regex_lite::Regex, String> {
    regex_lite::Regex::new(s).map_err(|e| e.to_string())
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
        Command::DefaultConfig
        | Command::Thaw { .. }
        | Command::Keygen { .. }
        | Command::Send { .. }
        | Command::Wss { .. }
        | Command::Generate { .. } => Config::default(),
        _ => match load_config(&cli) {
            Ok(c) => c,
            Err(code) => return code,
        },
    };
    let result = match cli.command {
        Command::Daemon { dry_run, no_self_protect, duration, metrics_listen } => seconds(duration).and_then(|duration| {
            let mut cfg = cfg;
            if let Some(listen) = metrics_listen {
                cfg.metrics.listen = listen;
                cfg.metrics.address()?;
            }
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
        Command::Report { id, event, db, out } => {
            let Some(format) = crate::report::Format::from_path(&out) else {
                eprintln!("thrashguard: error: --out {}: the format comes from the extension: .png, .svg or .html", out.display());
                return exit::USAGE;
            };
            let source = match (id, event) {
                (Some(id), _) => crate::report::Source::Id { id, db },
                (None, Some(file)) => crate::report::Source::File(file),
                (None, None) => {
                    eprintln!("thrashguard: error: give an event ID or --event FILE");
                    return exit::USAGE;
                }
            };
            crate::report::run(&source, &out, format, &cfg).map(|label| eprintln!("thrashguard: wrote {} ({label})", out.display()))
        }
        Command::Status { json } => {
            let opts = crate::daemon::Options { proc_root: cli.proc_root.clone(), sys_root: cli.sys_root.clone(), ..Default::default() };
            crate::status::fetch(&cfg, opts).map(|v| {
                if json {
                    println!("{v}");
                } else {
                    print!("{}", crate::status::render_text(&v));
                }
            })
        }
        Command::Top { interval, count, once, filter, test_panic } => {
            if let Some(why) = crate::top::needs_terminal(once) {
                eprintln!("thrashguard: error: {why}");
                return exit::USAGE;
            }
            let args = crate::top::TopArgs {
                interval,
                count: count.map_or(if once { 20 } else { 1000 }, |n| n as usize),
                once,
                filter,
                proc_root: cli.proc_root.clone(),
                test_panic,
            };
            crate::top::run(&cfg, &args)
        }
        Command::History { since, json, db } => {
            let db = db.unwrap_or_else(|| PathBuf::from(&cfg.history.path));
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            crate::history::run(&db, since, json, &mut lock)
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
        Command::Doctor { json, window, kmsg, watch } => {
            let Ok(window) = std::time::Duration::try_from_secs_f64(window) else {
                eprintln!("thrashguard: error: --window {window}: not a number of seconds");
                return thrashguard_core::doctor::EXIT_FAILED;
            };
            let net = crate::doctor_net::Options { kmsg };
            if let Some(every) = watch {
                let Some(every) = std::time::Duration::try_from_secs_f64(every).ok().filter(|d| !d.is_zero()) else {
                    eprintln!("thrashguard: error: --watch {every}: not a positive number of seconds");
                    return thrashguard_core::doctor::EXIT_FAILED;
                };
                return crate::doctor_net::watch_loop(&cli.proc_root, &cli.sys_root, &cfg, json, window, every, &net);
            }
            return crate::doctor::run(&cli.proc_root, &cli.sys_root, &cfg, crate::doctor::Scope::All, json, window, &net);
        }
        Command::Lifeline(LifelineCommand::SelfTest { json }) => {
            return crate::doctor::run(
                &cli.proc_root,
                &cli.sys_root,
                &cfg,
                crate::doctor::Scope::Lifeline,
                json,
                std::time::Duration::ZERO,
                &crate::doctor_net::Options::default(),
            );
        }
        Command::Wss { pids, interval, samples, json, no_reset, range, pagemap } => {
            let Some(interval) = Duration::try_from_secs_f64(interval).ok().filter(|d| !d.is_zero()) else {
                eprintln!("thrashguard: error: --interval {interval}: not a positive number of seconds");
                return exit::USAGE;
            };
            let range = match range.as_deref().map(thrashguard_core::parse::maps::parse_range) {
                Some(None) => {
                    eprintln!("thrashguard: error: --range {}: expected START-END in hex, START below END", range.unwrap_or_default());
                    return exit::USAGE;
                }
                Some(r) => r,
                None => None,
            };
            let opts = crate::wss::Options {
                pids: pids.into_iter().map(Pid).collect(),
                interval,
                samples,
                json,
                reset: !no_reset,
                range,
                method: pagemap,
            };
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            match crate::wss::run(&cli.proc_root, &opts, &mut lock) {
                Ok(true) => return exit::OK,
                Ok(false) => return exit::FAILURE,
                Err(e) => Err(e),
            }
        }
        Command::Thaw { pid } => thaw(&cli.proc_root, &cli.sys_root, Pid(pid)),
        Command::Generate { what, out } => crate::generate::run(what, &out).map(|files| {
            for f in files {
                println!("{}", f.display());
            }
        }),
        Command::Keygen { out, name, hmac } => {
            let scheme = if hmac { Scheme::HmacSha256 } else { Scheme::Ed25519 };
            crate::lifeline::keygen(&out, &name, scheme).map(|(key, public)| {
                println!("wrote {} (private, 0600) and {}", key.display(), public.display());
                if hmac {
                    println!(
                        "{} holds the shared secret: append it to lifeline.authorized_keys (mode 0600) on each host",
                        public.display()
                    );
                } else {
                    println!(
                        "append {} to lifeline.authorized_keys on each host; keep {} on the sending host only",
                        public.display(),
                        key.display()
                    );
                }
            })
        }
        Command::Send { words, key, host_pub, host_id, hosts, json, timeout, retries, count } => {
            let opts = SendOpts { json, timeout_ms: timeout, retries, count };
            return match send(&words, &key, host_pub.as_deref(), host_id, hosts.as_deref(), &opts) {
                Ok(all_ok) => {
                    if all_ok {
                        exit::OK
                    } else {
                        exit::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("thrashguard: error: {e:#}");
                    exit::FAILURE
                }
            };
        }
    };
    match result {
        Ok(()) => exit::OK,
        Err(e) if e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) => exit::OK,
        Err(e) => {
            let _ = std::io::stdout().flush();
            eprintln!("thrashguard: error: {e:#}");
            if e.downcast_ref::<crate::lifeline::SetupError>().is_some() { exit::CONFIG } else { exit::FAILURE }
        }
    }
}

/// `send --count N`: N requests per host, one after another; print round-trip statistics.
fn ping(
    secret: &thrashguard_core::lifeline::keys::SecretKey,
    targets: &[crate::lifeline::Target],
    action: thrashguard_core::lifeline::wire::Action,
    opts: &SendOpts,
) -> anyhow::Result<bool> {
    let mut all_ok = true;
    for t in targets {
        let mut rtts_ms = Vec::with_capacity(opts.count as usize);
        let mut lost = 0u32;
        for _ in 0..opts.count {
            let t0 = std::time::Instant::now();
            match crate::lifeline::send(secret, std::slice::from_ref(t), action, Duration::from_millis(opts.timeout_ms), opts.retries + 1)
                .pop()
            {
                Some(crate::lifeline::Outcome::Reply(_)) => rtts_ms.push(t0.elapsed().as_secs_f64() * 1000.0),
                _ => lost += 1,
            }
        }
        rtts_ms.sort_by(f64::total_cmp);
        let q = |p: f64| rtts_ms.get(((rtts_ms.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(f64::NAN);
        all_ok &= lost == 0;
        if opts.json {
            println!(
                "{}",
                serde_json::json!({"host": t.name, "addr": t.addr.to_string(), "sent": opts.count, "answered": rtts_ms.len(), "lost": lost,
                    "rtt_ms": {"min": q(0.0), "p50": q(0.5), "p99": q(0.99), "max": q(1.0)}})
            );
        } else {
            println!(
                "{}: {} sent, {} answered, {lost} lost; round trip min {:.2} / p50 {:.2} / p99 {:.2} / max {:.2} ms",
                t.name,
                opts.count,
                rtts_ms.len(),
                q(0.0),
                q(0.5),
                q(0.99),
                q(1.0)
            );
        }
    }
    Ok(all_ok)
}

/// How `send` sends and prints.
struct SendOpts {
    json: bool,
    timeout_ms: u64,
    retries: u32,
    count: u32,
}

/// `thrashguard send`: returns whether every host answered `"ok":true` (every time).
fn send(
    words: &[String],
    key: &std::path::Path,
    host_pub: Option<&std::path::Path>,
    host_id: Option<String>,
    hosts: Option<&std::path::Path>,
    opts: &SendOpts,
) -> anyhow::Result<bool> {
    let SendOpts { json, timeout_ms, retries, count } = *opts;
    use crate::lifeline::{Outcome, Target, parse_action, reply_key, resolve};
    use anyhow::Context;
    let text = std::fs::read_to_string(key).with_context(|| format!("{}", key.display()))?;
    let (secret, _) = thrashguard_core::lifeline::keys::SecretKey::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", key.display()))?;
    let mut targets = Vec::new();
    let action_words = match hosts {
        Some(file) => {
            let list = std::fs::read_to_string(file).with_context(|| format!("{}", file.display()))?;
            for (no, line) in list.lines().enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
            {
                let mut w = line.split_whitespace();
                let name = w.next().unwrap_or_default().to_string();
                let (mut addr, mut public) = (name.clone(), host_pub.map(std::path::Path::to_path_buf));
                for extra in w {
                    match extra.strip_prefix("pub=") {
                        Some(p) => public = Some(PathBuf::from(p)),
                        None => addr = extra.to_string(),
                    }
                }
                let addr = resolve(&addr).with_context(|| format!("{}: line {no}", file.display()))?;
                let reply_key = reply_key(&secret, public.as_deref()).with_context(|| format!("{}: line {no} ({name})", file.display()))?;
                targets.push(Target { name, addr, reply_key });
            }
            words
        }
        None => {
            let (host, rest) = words.split_first().context("HOST is needed (or --hosts FILE)")?;
            let name = host_id.unwrap_or_else(|| {
                host.rsplit_once(':')
                    .filter(|(h, p)| p.parse::<u16>().is_ok() && !h.ends_with(':'))
                    .map_or(host.as_str(), |(h, _)| h)
                    .trim_matches(['[', ']'])
                    .to_string()
            });
            targets.push(Target { name, addr: resolve(host)?, reply_key: reply_key(&secret, host_pub)? });
            rest
        }
    };
    let action = parse_action(action_words)?;
    if count > 1 {
        return ping(&secret, &targets, action, opts);
    }
    let outcomes = crate::lifeline::send(&secret, &targets, action, Duration::from_millis(timeout_ms), retries + 1);
    let mut all_ok = true;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for (t, o) in targets.iter().zip(outcomes) {
        let (line, ok) = match o {
            Outcome::Reply(body) => {
                let parsed: serde_json::Value = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body.clone()));
                let ok = parsed["ok"] == true;
                if json {
                    (serde_json::json!({"host": t.name, "addr": t.addr.to_string(), "reply": parsed}).to_string(), ok)
                } else {
                    (format!("{}: {body}", t.name), ok)
                }
            }
            Outcome::Timeout => {
                let why = format!("no authentic reply after {} attempt(s) of {timeout_ms} ms", retries + 1);
                if json {
                    (serde_json::json!({"host": t.name, "addr": t.addr.to_string(), "error": why}).to_string(), false)
                } else {
                    (format!("{}: {why}", t.name), false)
                }
            }
            Outcome::Error(e) => {
                if json {
                    (serde_json::json!({"host": t.name, "addr": t.addr.to_string(), "error": e}).to_string(), false)
                } else {
                    (format!("{}: {e}", t.name), false)
                }
            }
        };
        all_ok &= ok;
        writeln!(out, "{line}")?;
    }
    Ok(all_ok)
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
