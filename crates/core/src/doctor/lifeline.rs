//! Rules that say whether the lifeline would be heard: the keys the daemon loads, the
//! daemon itself (running, memory locked, out of the OOM killer's reach), and its socket.
//!
//! Owns `lifeline-keys`, `lifeline-daemon` and `lifeline-socket` (`thrashguard lifeline
//! self-test` runs them with `atomic-reserve`). The key files are judged by the daemon's
//! own loader at the edge; these rules turn its verdict into findings. Must never read a
//! file itself.

use super::{Fact, Finding, Outcome, Severity, ev};
use crate::parse::sockets::SocketLine;

/// The key files as the daemon's loader judged them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeysState {
    /// No authorized key: the lifeline is off.
    Off,
    /// The daemon would load them.
    Usable {
        /// Authorized keys.
        keys: usize,
        /// Owner of the authorized-keys file.
        owner_uid: u32,
    },
    /// The daemon would refuse to start, and why.
    Refused(String),
}

/// A running guard daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DaemonFacts {
    /// Its pid.
    pub pid: u32,
    /// VmLck from its status (locked memory).
    pub vm_lck_kib: Option<u64>,
    /// Its oom_score_adj.
    pub oom_score_adj: Option<i32>,
}

/// What the lifeline rules need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LifelineFacts {
    /// `lifeline.authorized_keys`.
    pub authorized_path: String,
    /// The keys, as the daemon would load them.
    pub keys: Fact<KeysState>,
    /// `lifeline.listen`.
    pub listen: String,
    /// The port of `lifeline.listen`.
    pub port: u16,
    /// Running `thrashguard daemon` processes.
    pub daemons: Fact<Vec<DaemonFacts>>,
    /// UDP sockets (IPv4 and IPv6) bound to `port`.
    pub sockets: Fact<Vec<SocketLine>>,
}

const DOCS: &str = "docs/lifeline.md";

fn found(id: &'static str, severity: Severity, title: String, evidence: Vec<super::Evidence>, explanation: &str, fix: String) -> Outcome {
    Outcome::Found(Finding { id, severity, title, evidence, explanation: explanation.into(), fix, docs: DOCS })
}

/// `lifeline-keys`: would the daemon load the keys, and are they safe.
pub fn keys(f: &LifelineFacts) -> Outcome {
    let state = match &f.keys {
        Ok(s) => s,
        Err(why) => return Outcome::NotChecked(why.clone()),
    };
    let path = &f.authorized_path;
    match state {
        KeysState::Off => found(
            "lifeline-keys",
            Severity::Info,
            "the lifeline is off: no key is authorized".into(),
            vec![ev("lifeline.authorized_keys", format!("{path} (absent or empty)"))],
            "Without an authorized key the guard opens no socket, so no other host can ask it for status or a \
             rescue when this machine stops answering.",
            format!(
                "on your workstation: thrashguard keygen --out ~/.config/thrashguard\n\
                 here: append its lifeline.pub line to {path} (chmod 600, owned by root), and for Ed25519 keys \
                 make the host key: thrashguard keygen --out /etc/thrashguard --name host; then restart the guard"
            ),
        ),
        KeysState::Refused(why) => found(
            "lifeline-keys",
            Severity::Critical,
            "the guard would refuse to start with these key files".into(),
            vec![ev("loader", why)],
            "The daemon checks its key files at start and exits with status 78 rather than trust a file others \
             can change or read a secret others can read. Until this is fixed the guard does not run at all.",
            format!("fix what the loader says, e.g. chown root:root {path} && chmod 600 {path}"),
        ),
        KeysState::Usable { keys, owner_uid } if *owner_uid != 0 => found(
            "lifeline-keys",
            Severity::Warning,
            format!("{path} is owned by uid {owner_uid}, not root"),
            vec![ev("authorized keys", keys), ev("owner uid", owner_uid)],
            "Whoever owns the authorized-keys file can add a key of their own and then kill any process on \
             this machine through the lifeline.",
            format!("chown root:root {path}"),
        ),
        KeysState::Usable { keys, .. } => Outcome::Clear(vec![ev("authorized keys", keys), ev("file", path)]),
    }
}

/// `lifeline-daemon`: is a guard running, locked in memory and immune to the OOM killer.
pub fn daemon(f: &LifelineFacts) -> Outcome {
    let daemons = match &f.daemons {
        Ok(d) => d,
        Err(why) => return Outcome::NotChecked(why.clone()),
    };
    // With several guards running (a second one started by hand, tests), judge the worst:
    // an unlocked one, else one the OOM killer may pick, else the first.
    let worst = daemons
        .iter()
        .find(|d| d.vm_lck_kib == Some(0))
        .or_else(|| daemons.iter().find(|d| d.oom_score_adj.is_some_and(|a| a != -1000)))
        .or(daemons.first());
    let Some(d) = worst else {
        return found(
            "lifeline-daemon",
            Severity::Warning,
            "no thrashguard daemon is running".into(),
            vec![ev("processes named thrashguard running `daemon`", 0)],
            "Nothing guards this machine and nothing will answer a lifeline request.",
            "systemctl enable --now thrashguard (or run: thrashguard daemon)".into(),
        );
    };
    let mut evidence = vec![
        ev("pid", d.pid),
        ev("VmLck", d.vm_lck_kib.map_or("unknown".into(), |k| format!("{k} KiB"))),
        ev("oom_score_adj", d.oom_score_adj.map_or("unknown".into(), |a| a.to_string())),
    ];
    if daemons.len() > 1 {
        evidence.push(ev("daemons running", daemons.len()));
    }
    if d.vm_lck_kib == Some(0) {
        return found(
            "lifeline-daemon",
            Severity::Critical,
            format!("the guard (pid {}) is not locked in memory", d.pid),
            evidence,
            "A guard that can be swapped out stalls with everything else when the machine thrashes: it reacts \
             late and its lifeline does not answer. It locks itself with mlockall when it may (root, or \
             CAP_IPC_LOCK, or a large enough RLIMIT_MEMLOCK) and warns at start when it cannot.",
            "run it as root, or give its unit AmbientCapabilities=CAP_IPC_LOCK and LimitMEMLOCK=infinity, and \
             keep guard.lock_memory = true"
                .into(),
        );
    }
    if d.oom_score_adj.is_some_and(|a| a != -1000) {
        return found(
            "lifeline-daemon",
            Severity::Warning,
            format!("the guard (pid {}) can be chosen by the kernel's OOM killer", d.pid),
            evidence,
            "The guard sets its oom_score_adj to -1000 at start when it is allowed to; otherwise the kernel may \
             kill the guard itself at the worst moment.",
            "run it as root (or with CAP_SYS_RESOURCE), or set OOMScoreAdjust=-1000 in its unit".into(),
        );
    }
    Outcome::Clear(evidence)
}

/// `lifeline-socket`: is the configured UDP port open, and has its queue overflowed.
pub fn socket(f: &LifelineFacts) -> Outcome {
    if matches!(f.keys, Ok(KeysState::Off)) {
        return Outcome::Clear(vec![ev("lifeline", "off (no key): no socket expected")]);
    }
    let sockets = match &f.sockets {
        Ok(s) => s,
        Err(why) => return Outcome::NotChecked(why.clone()),
    };
    let running = f.daemons.as_ref().is_ok_and(|d| !d.is_empty());
    if sockets.is_empty() {
        if !running {
            return Outcome::Clear(vec![ev("lifeline", "no daemon running: no socket expected (see lifeline-daemon)")]);
        }
        return found(
            "lifeline-socket",
            Severity::Warning,
            format!("the guard runs but nothing listens on UDP port {}", f.port),
            vec![ev("lifeline.listen", &f.listen), ev("UDP sockets on that port", 0)],
            "Keys are authorized, yet the running guard has no lifeline socket: it was started before the keys \
             were added, or with another configuration.",
            "restart the guard (systemctl restart thrashguard) and read its start-up log line `lifeline on udp …`".into(),
        );
    }
    let drops: u64 = sockets.iter().filter_map(|s| s.drops).sum();
    let mut evidence =
        vec![ev("lifeline.listen", &f.listen), ev("UDP sockets on that port", sockets.len()), ev("datagrams dropped (full queue)", drops)];
    if drops > 0 {
        evidence.push(ev("queued now", format!("{} bytes", sockets.iter().map(|s| s.rx_queue).sum::<u32>())));
        return found(
            "lifeline-socket",
            Severity::Warning,
            format!("the lifeline socket dropped {drops} datagrams because its queue was full"),
            evidence,
            "Datagrams arrived faster than the guard read them: a flood, or a guard that stalled. A request \
             lost this way is retried by `thrashguard send` with a fresh nonce, but a flood can crowd it out.",
            "find the source in the guard's log (refusals are counted by reason); a larger receive queue helps \
             against bursts: sysctl -w net.core.rmem_default=1048576 (keep it in /etc/sysctl.d/90-thrashguard.conf) \
             and restart the guard"
                .into(),
        );
    }
    Outcome::Clear(evidence)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> LifelineFacts {
        LifelineFacts {
            authorized_path: "/etc/thrashguard/lifeline.authorized".into(),
            keys: Ok(KeysState::Usable { keys: 2, owner_uid: 0 }),
            listen: "0.0.0.0:7411".into(),
            port: 7411,
            daemons: Ok(vec![DaemonFacts { pid: 321, vm_lck_kib: Some(8720), oom_score_adj: Some(-1000) }]),
            sockets: Ok(vec![SocketLine { local_port: 7411, state: 7, drops: Some(0), ..SocketLine::default() }]),
        }
    }

    fn severity(o: &Outcome) -> Option<Severity> {
        if let Outcome::Found(f) = o { Some(f.severity) } else { None }
    }

    #[test]
    fn a_healthy_set_up_is_clear() {
        let f = facts();
        for o in [keys(&f), daemon(&f), socket(&f)] {
            assert!(matches!(o, Outcome::Clear(_)), "{o:?}");
        }
    }

    #[test]
    fn keys_off_refused_or_foreign() {
        let f = LifelineFacts { keys: Ok(KeysState::Off), ..facts() };
        assert_eq!(severity(&keys(&f)), Some(Severity::Info));
        assert!(matches!(socket(&f), Outcome::Clear(_)), "no socket expected when off");
        let f = LifelineFacts { keys: Ok(KeysState::Refused("mode 666".into())), ..facts() };
        assert_eq!(severity(&keys(&f)), Some(Severity::Critical));
        let f = LifelineFacts { keys: Ok(KeysState::Usable { keys: 1, owner_uid: 1000 }), ..facts() };
        assert_eq!(severity(&keys(&f)), Some(Severity::Warning));
        let f = LifelineFacts { keys: Err("permission denied".into()), ..facts() };
        assert_eq!(keys(&f), Outcome::NotChecked("permission denied".into()));
    }

    #[test]
    fn daemon_missing_unlocked_or_killable() {
        let f = LifelineFacts { daemons: Ok(vec![]), ..facts() };
        assert_eq!(severity(&daemon(&f)), Some(Severity::Warning));
        assert!(matches!(socket(&f), Outcome::Clear(_)), "the missing daemon is reported once");
        let f = LifelineFacts { daemons: Ok(vec![DaemonFacts { pid: 9, vm_lck_kib: Some(0), oom_score_adj: Some(-1000) }]), ..facts() };
        assert_eq!(severity(&daemon(&f)), Some(Severity::Critical));
        let f = LifelineFacts { daemons: Ok(vec![DaemonFacts { pid: 9, vm_lck_kib: Some(10), oom_score_adj: Some(0) }]), ..facts() };
        assert_eq!(severity(&daemon(&f)), Some(Severity::Warning));
        // several guards: the worst one is judged and named, whatever their order
        let good = DaemonFacts { pid: 7, vm_lck_kib: Some(84_856), oom_score_adj: Some(-1000) };
        let killable = DaemonFacts { pid: 8, vm_lck_kib: Some(84_856), oom_score_adj: Some(0) };
        let unlocked = DaemonFacts { pid: 9, vm_lck_kib: Some(0), oom_score_adj: Some(-1000) };
        for order in [vec![good, killable, unlocked], vec![unlocked, good, killable], vec![killable, good, unlocked]] {
            let f = LifelineFacts { daemons: Ok(order), ..facts() };
            let Outcome::Found(found) = daemon(&f) else { panic!("an unlocked guard is a finding") };
            assert_eq!(found.severity, Severity::Critical);
            assert!(found.title.contains("pid 9"), "{}", found.title);
        }
        let f = LifelineFacts { daemons: Ok(vec![good, killable]), ..facts() };
        let Outcome::Found(found) = daemon(&f) else { panic!() };
        assert!(found.severity == Severity::Warning && found.title.contains("pid 8"), "{}", found.title);
        let f = LifelineFacts { daemons: Ok(vec![good, good]), ..facts() };
        assert!(matches!(daemon(&f), Outcome::Clear(_)));
    }

    #[test]
    fn socket_closed_or_overflowing() {
        let f = LifelineFacts { sockets: Ok(vec![]), ..facts() };
        assert_eq!(severity(&socket(&f)), Some(Severity::Warning));
        let f = LifelineFacts { sockets: Ok(vec![SocketLine { drops: Some(40), ..SocketLine::default() }]), ..facts() };
        let Outcome::Found(found) = socket(&f) else { panic!() };
        assert!(found.title.contains("dropped 40"));
        let f = LifelineFacts { sockets: Err("net/udp: no such file".into()), ..facts() };
        assert!(matches!(socket(&f), Outcome::NotChecked(_)));
    }
}
