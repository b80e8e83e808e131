//! Notifications after an action, end to end: a real daemon with `notify.on_action`
//! hooks, actions taken through the lifeline (`kill` of the test's own sleeping children,
//! and `rescue` in a dry run, which acts on nothing), and the hooks' environment, output,
//! timeout, absence and a flood of actions.
//!
//! Safety: the only processes signalled are the `sleep` children each test starts; the
//! rescue test runs the daemon with `--dry-run`.
// Test helpers may panic: a panic is a failing test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use thrashguard_core::lifeline::gate::request;
use thrashguard_core::lifeline::keys::{SecretKey, host_id};
use thrashguard_core::lifeline::wire::{Action, MAX_DATAGRAM};

mod common;
use common::{Daemon, Tree, tree};

const HOST: &str = "notify-test";

fn tg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_thrashguard")).args(args).env_remove("THRASHGUARD_CONFIG").output().expect("run thrashguard")
}

struct Setup {
    dir: Tree,
    config: PathBuf,
    port: u16,
}

impl Setup {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.0.join(name)
    }
}

/// An HMAC lifeline key made by `keygen`, a config on a free loopback port with generous
/// rate limits, a status socket of its own, and `notify` as the `[notify]` table.
fn setup(tag: &str, notify: &str) -> Setup {
    let dir = tree(&format!("notify-{tag}"));
    let (authorized, port) = common::lifeline_keys(&dir.0, &[("ops", true)], &["ops"]);
    let config = dir.0.join("tg.toml");
    let text = format!(
        "[history]\npath = \"{}\"\n[guard]\nstatus_socket = \"{}\"\n[lifeline]\nlisten = \"127.0.0.1:{port}\"\nauthorized_keys = \"{}\"\nhost_id = \"{HOST}\"\nper_source_burst = 1000\nper_source_per_s = 1000\n[notify]\ndesktop = \"never\"\n{notify}",
        dir.0.join("history.db").display(),
        dir.0.join("status.sock").display(),
        authorized.display(),
    );
    std::fs::write(&config, text).unwrap();
    Setup { dir, config, port }
}

/// An executable shell script.
fn script(s: &Setup, name: &str, body: &str) -> PathBuf {
    let p = s.path(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    p
}

fn start(s: &Setup, extra: &[&str]) -> Daemon {
    let mut args = vec!["--config", s.config.to_str().unwrap(), "daemon", "--no-self-protect", "--duration", "120"];
    args.extend_from_slice(extra);
    let mut d = Daemon::spawn(&args);
    d.wait_for("lifeline on udp");
    d
}

/// `thrashguard send` to the daemon; (answered ok, the JSON line or the error).
fn send(s: &Setup, action: &[&str], extra: &[&str]) -> (bool, String) {
    let addr = format!("127.0.0.1:{}", s.port);
    let key = s.path("ops.key");
    let mut args = vec!["send", addr.as_str()];
    args.extend_from_slice(action);
    args.extend_from_slice(&["--key", key.to_str().unwrap(), "--host-id", HOST, "--json"]);
    args.extend_from_slice(extra);
    let o = tg(&args);
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr))
}

fn sleeper() -> Child {
    Command::new("sleep").arg("300").spawn().expect("sleep")
}

/// `NAME=value` lines of a file a hook wrote, once it is there (up to 20 s).
fn wait_env(path: &Path) -> HashMap<String, String> {
    let end = Instant::now() + Duration::from_secs(20);
    while !path.exists() {
        assert!(Instant::now() < end, "{} never written", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::read_to_string(path).unwrap().lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// A process that is alive and not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

#[test]
fn on_action_runs_with_every_variable() {
    let s = setup("env", "");
    let out = s.path("env.out");
    let hook = script(
        &s,
        "hook.sh",
        &format!(
            "env > {0}.tmp\necho \"ARGS=$*\" >> {0}.tmp\necho \"THP_ENABLED=$(awk '/^THP_enabled/{{print $2}}' /proc/$$/status)\" >> {0}.tmp\nmv {0}.tmp {0}\necho hello from the hook",
            out.display()
        ),
    );
    // one command as an argv array (an argument with a space), the same as a split line
    let text =
        std::fs::read_to_string(&s.config).unwrap() + &format!("on_action = [[\"{}\", \"two words\"]]\ntimeout_s = 5\n", hook.display());
    std::fs::write(&s.config, text).unwrap();
    let mut child = sleeper();
    let pid = child.id();
    let d = start(&s, &[]);
    // the guard keeps transparent huge pages off its own memory (PR_SET_THP_DISABLE)
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.child.id())).unwrap();
    assert!(status.lines().any(|l| l.split_whitespace().eq(["THP_enabled:", "0"])), "{status}");
    // one round through the loop first, so the guard has sampled (the evidence is known)
    let (ok, reply) = send(&s, &["status"], &[]);
    assert!(ok, "{reply}");
    let t0 = now_ms();
    let (ok, reply) = send(&s, &["kill", &pid.to_string()], &[]);
    assert!(ok && reply.contains("\"result\":\"killed\""), "{reply}");
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&child.wait().unwrap()), Some(9));
    let env = wait_env(&out);
    let get = |k: &str| env.get(k).map(String::as_str).unwrap_or_else(|| panic!("no {k} in {env:#?}"));
    assert_eq!(get("THRASHGUARD_ACTION"), "kill");
    assert_eq!(get("THRASHGUARD_OUTCOME"), "killed");
    assert_eq!(get("THRASHGUARD_REASON"), "lifeline");
    assert_eq!(get("THRASHGUARD_PID"), pid.to_string());
    assert_eq!(get("THRASHGUARD_NAME"), "sleep");
    assert!(get("THRASHGUARD_FOOTPRINT_KIB").parse::<u64>().unwrap() > 0, "{env:#?}");
    assert!(get("THRASHGUARD_SWAP_KIB").parse::<u64>().is_ok(), "{env:#?}");
    assert_eq!(get("THRASHGUARD_WHOLE_CGROUP"), "0");
    assert_eq!(get("THRASHGUARD_SCOPE"), "system");
    let at: u64 = get("THRASHGUARD_UNIX_MS").parse().unwrap();
    assert!(at >= t0 && at <= now_ms(), "{at} not within the request ({t0}..)");
    // a rescue asked for in the guard's first half second has no stall measured yet: empty
    let stall = get("THRASHGUARD_FULL_STALL_PCT");
    assert!(stall.is_empty() || stall.parse::<f64>().is_ok_and(|s| (0.0..=100.0).contains(&s)), "{stall:?}");
    assert!(get("THRASHGUARD_HEADROOM_KIB").parse::<u64>().unwrap() > 0, "{env:#?}");
    // killed before the hook ran: its command line was gone, or read as it was
    assert!(["", "sleep 300"].contains(&get("THRASHGUARD_CMDLINE")), "{env:#?}");
    assert_eq!(get("PATH"), thrashguard::hooks::HOOK_PATH);
    assert_eq!(get("THP_ENABLED"), "1", "a hook runs with transparent huge pages as the machine sets them");
    assert_eq!(get("ARGS"), "two words");
    // a clean environment: nothing of the daemon's own
    for leaked in ["HOME", "USER", "CARGO_MANIFEST_DIR", "RUST_BACKTRACE", "THRASHGUARD_LOG"] {
        assert!(!env.contains_key(leaked), "{leaked} leaked into the hook: {env:#?}");
    }
    let log = d.stop();
    let said = |what: &str| log.iter().any(|l| l.contains(what));
    assert!(said("stdout: hello from the hook"), "{log:#?}");
    assert!(said(&format!("for the kill of {pid} (sleep) exited 0")), "{log:#?}");
    assert!(said("notify: 1 action(s) notified, 0 dropped"), "{log:#?}");
}

/// A rescue decided in a dry run goes through the policy's own path (`Guard::rescue`): the
/// hooks hear of it as `dry_run` / `not_acted`, naming the victim the reply names, which
/// is still alive (so its command line is there).
#[test]
fn a_dry_run_rescue_is_notified_as_such() {
    let s = setup("dry", "");
    let out = s.path("env.out");
    let hook = script(&s, "hook.sh", &format!("env > {0}.tmp; mv {0}.tmp {0}", out.display()));
    let text = std::fs::read_to_string(&s.config).unwrap() + &format!("on_action = [\"{}\"]\n", hook.display());
    std::fs::write(&s.config, text).unwrap();
    let d = start(&s, &["--dry-run"]);
    let (ok, reply) = send(&s, &["rescue"], &[]);
    assert!(ok, "{reply}");
    let v: serde_json::Value = serde_json::from_str(reply.lines().next().unwrap()).unwrap();
    assert_eq!(v["reply"]["result"], "dry run: nothing done", "{v}");
    let env = wait_env(&out);
    assert_eq!(env["THRASHGUARD_ACTION"], "dry_run");
    assert_eq!(env["THRASHGUARD_OUTCOME"], "not_acted");
    assert_eq!(env["THRASHGUARD_REASON"], "lifeline");
    assert_eq!(env["THRASHGUARD_PID"], v["reply"]["pid"].to_string());
    assert_eq!(env["THRASHGUARD_FOOTPRINT_KIB"], v["reply"]["footprint_kib"].to_string());
    assert_eq!(env["THRASHGUARD_NAME"], v["reply"]["name"].as_str().unwrap());
    let pid = v["reply"]["pid"].as_u64().unwrap();
    if alive(pid as u32) {
        assert!(!env["THRASHGUARD_CMDLINE"].is_empty() || std::fs::read(format!("/proc/{pid}/cmdline")).unwrap().is_empty(), "{env:#?}");
    }
    d.stop();
}

/// A hook that hangs (`sleep 1000` in the background, waited for) with `timeout_s = 3`:
/// the guard keeps answering at once while it hangs, and at the timeout the hook's whole
/// process group is killed (the background sleep too) and the log says so.
#[test]
fn a_hanging_hook_does_not_stall_the_guard() {
    let s = setup("hang", "timeout_s = 3\n");
    let pidfile = s.path("sleep.pid");
    let hook = script(&s, "hang.sh", &format!("sleep 1000 &\necho $! > {}\nwait", pidfile.display()));
    let text = std::fs::read_to_string(&s.config).unwrap() + &format!("on_action = [\"{}\"]\n", hook.display());
    std::fs::write(&s.config, text).unwrap();
    let mut child = sleeper();
    let mut d = start(&s, &[]);
    let t0 = Instant::now();
    let (ok, reply) = send(&s, &["kill", &child.id().to_string()], &[]);
    assert!(ok && reply.contains("killed"), "{reply}");
    let _ = child.wait();
    let end = Instant::now() + Duration::from_secs(5);
    while !pidfile.exists() {
        assert!(Instant::now() < end, "the hook never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let sleep_pid: u32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    assert!(alive(sleep_pid));
    // while it hangs: 10 status pings through the guard loop, and `thrashguard status`
    let (ok, out) = send(&s, &["status"], &["--count", "10"]);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(v["answered"], 10, "{v}");
    let p99 = v["rtt_ms"]["p99"].as_f64().unwrap();
    eprintln!("status pings while the hook hangs: {}", v["rtt_ms"]);
    assert!(p99 < 500.0, "the guard answered slowly while a hook hung: {v}");
    let o = tg(&["--config", s.config.to_str().unwrap(), "status", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(t0.elapsed() < Duration::from_secs(3), "the checks above must fall inside the hang: {:?}", t0.elapsed());
    assert!(alive(sleep_pid), "killed before its timeout");
    // at the timeout: the group is killed, the log says so
    let line = d.wait_for("timed out after 3 s; killed its process group");
    assert!(line.contains("hang.sh"), "{line}");
    let end = Instant::now() + Duration::from_secs(5);
    while alive(sleep_pid) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(sleep_pid), "the hook's background sleep {sleep_pid} survived the timeout");
    d.stop();
}

/// A hook that does not exist is said at start and at each action; the next hook still
/// runs and the guard goes on.
#[test]
fn a_missing_hook_is_logged_and_the_next_runs() {
    let s = setup("missing", "");
    let out = s.path("ran");
    let next = script(&s, "next.sh", &format!("touch {}", out.display()));
    let text =
        std::fs::read_to_string(&s.config).unwrap() + &format!("on_action = [\"/nonexistent/hook --flag\", \"{}\"]\n", next.display());
    std::fs::write(&s.config, text).unwrap();
    let mut child = sleeper();
    let mut d = start(&s, &[]);
    d.wait_for("notify.on_action: /nonexistent/hook is not an executable file");
    let (ok, reply) = send(&s, &["kill", &child.id().to_string()], &[]);
    assert!(ok, "{reply}");
    let _ = child.wait();
    let line = d.wait_for("cannot run /nonexistent/hook");
    assert!(line.contains(&format!("for the kill of {} (sleep)", child.id())), "{line}");
    assert!(line.contains("No such file"), "{line}");
    d.wait_for("next.sh");
    assert!(out.exists());
    let (ok, reply) = send(&s, &["status"], &[]);
    assert!(ok, "{reply}");
    d.stop();
}

/// 40 kills in a burst while the first hook hangs: every request is answered at once,
/// the queue takes 16, the rest are dropped and counted, and the daemon still stops at
/// once, killing the hanging hook and discarding the queue.
#[test]
fn a_flood_of_actions_drops_notifications_and_never_blocks() {
    let s = setup("flood", "timeout_s = 1\non_action = [\"/bin/sleep 1000\"]\n");
    const N: usize = 40;
    let mut kids: Vec<Child> = (0..N).map(|_| sleeper()).collect();
    let mut d = start(&s, &[]);
    let key = SecretKey::parse(&std::fs::read_to_string(s.path("ops.key")).unwrap()).unwrap().0;
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let t0 = Instant::now();
    for (i, k) in kids.iter().enumerate() {
        let mut out = [0u8; MAX_DATAGRAM];
        let action = Action::Kill { pid: k.id(), start_time: None };
        let n = request(&key, host_id(HOST), action, now_ms(), [i as u8 + 1; 16], &mut out).unwrap();
        sock.send_to(&out[..n], ("127.0.0.1", s.port)).unwrap();
    }
    let mut buf = [0u8; 2048];
    let mut replies = 0;
    while replies < N && sock.recv_from(&mut buf).is_ok() {
        replies += 1;
    }
    let answered = t0.elapsed();
    eprintln!("{replies} kills answered in {answered:?}");
    assert_eq!(replies, N);
    assert!(answered < Duration::from_secs(3), "{answered:?}");
    for k in &mut kids {
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&k.wait().unwrap()), Some(9));
    }
    // once the first hook times out, the thread says how many it could not take
    let line = d.wait_for("not notified: the queue of 16 was full");
    let dropped: usize = line.split("notify: ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!((N - 16 - 1..N).contains(&dropped), "{line}");
    let t1 = Instant::now();
    let log = d.stop();
    assert!(t1.elapsed() < Duration::from_secs(3), "stopping waited for the queued hooks: {:?}", t1.elapsed());
    let totals = log.iter().find(|l| l.contains("action(s) notified")).unwrap_or_else(|| panic!("{log:#?}"));
    assert!(totals.contains(&format!("{} action(s) notified, {dropped} dropped", N - dropped)), "{totals}");
    assert!(log.iter().any(|l| l.contains("killed with its process group: the daemon is stopping")), "{log:#?}");
    assert!(log.iter().any(|l| l.contains("queued action(s) not notified")), "{log:#?}");
}

/// Bad `[notify]` settings: `check-config` exits 78 naming the key.
#[test]
fn bad_notify_config_is_named() {
    let dir = tree("notify-badcfg");
    for (text, key) in [
        ("[notify]\ntimeout_s = 0\n", "notify.timeout_s"),
        ("[notify]\ntimeout_s = 601\n", "notify.timeout_s"),
        ("[notify]\non_action = [\"logger -t tg\"]\n", "notify.on_action"),
        ("[notify]\non_action = [\"\"]\n", "notify.on_action"),
        ("[notify]\ndesktop = \"loud\"\n", "desktop"),
        ("[notify]\non_action = \"/bin/true\"\n", "on_action"),
        ("[notify]\nhooks = []\n", "hooks"),
    ] {
        let path = dir.0.join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let o = tg(&["--config", path.to_str().unwrap(), "check-config"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(78), "{text}: {err}");
        assert!(err.contains(key), "{text}: {err}");
    }
}

/// Every variable a hook gets is documented in docs/notify.md, and `default-config` shows
/// the `[notify]` table.
#[test]
fn every_variable_is_documented() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/notify.md")).unwrap();
    for name in thrashguard_core::notify::ENV_NAMES {
        assert!(doc.contains(&format!("| `{name}` |")), "{name} is not in docs/notify.md");
    }
    let o = tg(&["default-config"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("[notify]"));
}

/// contrib/hooks/log-to-journal.sh runs cleanly with what a hook gets (here without a
/// journal or syslog socket it falls back to stderr, which thrashguard logs).
#[test]
fn the_contrib_hook_runs() {
    use thrashguard_core::config::Action as Act;
    use thrashguard_core::notify::{ActionRecord, Outcome, ScopeName};
    use thrashguard_core::policy::Reason;
    use thrashguard_core::units::{Comm, Kib, Pid, ProcId};
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/hooks/log-to-journal.sh");
    let rec = ActionRecord {
        action: Act::Kill,
        dry_run: false,
        outcome: Outcome::Killed,
        reason: Reason::Thrashing,
        victim: ProcId { pid: Pid(4242), start_time: 1 },
        name: Comm::new(b"it's $(evil)"),
        footprint: Kib(1024),
        swap: Kib(0),
        whole_cgroup: false,
        scope: ScopeName::new("system"),
        unix_ms: now_ms(),
        full_stall_pct: Some(42.0),
        headroom: Kib(2048),
    };
    let env = rec.env("a \"quoted\" `cmd`");
    let argv = vec![script.to_str().unwrap().to_string()];
    let stop = std::sync::atomic::AtomicBool::new(false);
    let ran = thrashguard::hooks::run(
        thrashguard::hooks::hook_command(&argv, &env),
        Duration::from_secs(10),
        &stop,
        &thrashguard::hooks::Forward::none(),
    )
    .unwrap();
    let err = String::from_utf8_lossy(&ran.stderr.bytes);
    assert!(matches!(ran.ended, thrashguard::hooks::Ended::Exited(s) if s.success()), "{ran:?}");
    if !err.is_empty() {
        assert_eq!(
            err.trim(),
            "thrashguard: killed it's $(evil) (4242): kill, thrashing, footprint 1024 KiB, full stall 42.0 %, scope system"
        );
    }
}
