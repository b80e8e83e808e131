//! What the end-to-end tests share: a real `thrashguard daemon` whose log is read line by
//! line, stopped with SIGTERM (so it cleans up) or killed when a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// A running daemon and what it has logged so far.
pub struct Daemon {
    pub child: Child,
    lines: Receiver<String>,
    pub log: Vec<String>,
}

impl Daemon {
    /// `thrashguard ARGS` (no THRASHGUARD_CONFIG from the environment), stderr captured.
    pub fn spawn(args: &[&str]) -> Daemon {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_thrashguard"));
        cmd.args(args).env_remove("NOTIFY_SOCKET");
        Daemon::spawn_command(cmd)
    }

    /// `cmd` (a `thrashguard` command with its arguments and environment), without
    /// THRASHGUARD_CONFIG, stderr captured.
    pub fn spawn_command(mut cmd: Command) -> Daemon {
        let mut child = cmd.env_remove("THRASHGUARD_CONFIG").stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("daemon");
        let err = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Daemon { child, lines, log: Vec::new() }
    }

    /// The first log line containing `what` (waiting up to 20 s for it).
    pub fn wait_for(&mut self, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(l) = self.log.iter().find(|l| l.contains(what)) {
                return l.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.log.push(l),
                Err(_) => panic!("daemon never said {what:?}: {:#?}", self.log),
            }
        }
    }

    /// Stop it with SIGTERM, wait for it, and return its whole log.
    pub fn stop(mut self) -> Vec<String> {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.log.push(l);
        }
        std::mem::take(&mut self.log)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temporary directory, removed when dropped.
pub struct Tree(pub std::path::PathBuf);

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh, empty temporary directory for `tag` (unique per test process).
pub fn tree(tag: &str) -> Tree {
    let dir = std::env::temp_dir().join(format!("tg-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Tree(dir)
}

/// Write `root/rel`, creating its directories.
pub fn write(root: &std::path::Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// Lifeline keys made by the real `thrashguard keygen` in `dir` (`(name, hmac)` each), an
/// `authorized` file (0600) holding the public lines of those in `authorize`, and a free
/// loopback UDP port for the guard to listen on. Returns the authorized file and the port.
#[allow(dead_code)] // not every test binary uses every helper
pub fn lifeline_keys(dir: &std::path::Path, keys: &[(&str, bool)], authorize: &[&str]) -> (std::path::PathBuf, u16) {
    for &(stem, hmac) in keys {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_thrashguard"));
        cmd.env_remove("THRASHGUARD_CONFIG").args(["keygen", "--out", dir.to_str().expect("utf-8"), "--name", stem]);
        if hmac {
            cmd.arg("--hmac");
        }
        let o = cmd.output().expect("run keygen");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let authorized = dir.join("authorized");
    let text: String = authorize.iter().map(|stem| std::fs::read_to_string(dir.join(format!("{stem}.pub"))).expect("public key")).collect();
    std::fs::write(&authorized, text).expect("write authorized");
    std::fs::set_permissions(&authorized, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
    let port = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    (authorized, port)
}
