//! Rules about the network stack losing connections and packets: listen backlogs that are
//! truncated or full, SYN queues that overflow, sockets the application does not drain, and
//! per-CPU backlog drops.
//!
//! Owns `listen-backlog` (listening sockets with their accept queue and effective backlog, as
//! sock_diag reports them, against net.core.somaxconn and TcpExt ListenOverflows/ListenDrops),
//! `syn-queue`, `socket-drops` (blaming a memory stall when PSI says so) and `softnet-drops`,
//! plus the parsers of /proc/net/softnet_stat and of the `net/listeners` file a captured tree
//! may hold. Must never read a file or open a socket itself.

use super::window::Window;
use super::{Evidence, Fact, Finding, Outcome, Severity, ev};

/// A listening TCP socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    /// Local address and port as text (`127.0.0.1:6379`, `[::]:80`).
    pub local: String,
    /// Local port.
    pub port: u16,
    /// Connections waiting for accept() now (sock_diag `recv_queue`, ss Recv-Q).
    pub accept_queue: u32,
    /// The effective backlog: min(requested, somaxconn) (sock_diag `send_queue`, ss Send-Q).
    pub backlog: u32,
    /// Socket inode.
    pub inode: u64,
    /// The process holding it (pid, comm), when it could be found.
    pub owner: Option<(u32, String)>,
}

impl Listener {
    /// `127.0.0.1:6379 (redis-server, pid 812)`.
    pub fn name(&self) -> String {
        match &self.owner {
            Some((pid, comm)) => format!("{} ({comm}, pid {pid})", self.local),
            None => format!("{} (owner unknown)", self.local),
        }
    }

    /// The accept queue is full now.
    pub fn full(&self) -> bool {
        self.accept_queue > 0 && self.accept_queue >= self.backlog
    }
}

/// Parse a `net/listeners` file of a captured tree: one listener a line,
/// `LOCAL_ADDRESS:PORT ACCEPT_QUEUE BACKLOG INODE` (what `ss -ltn` shows as Local Address,
/// Recv-Q and Send-Q, plus `ss -e`'s inode); `#` starts a comment. Owners are found the same
/// way as on a live machine, from `PID/fd` links under the tree.
pub fn parse_listeners(text: &str) -> Result<Vec<Listener>, String> {
    let mut out = vec![];
    for (no, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let bad = |what: &str| format!("net/listeners: line {}: {what}", no + 1);
        let w: Vec<&str> = line.split_whitespace().collect();
        let [local, q, b, inode] = w[..] else { return Err(bad("expected `ADDRESS:PORT ACCEPT_QUEUE BACKLOG INODE`")) };
        let port = local.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).ok_or_else(|| bad("no port"))?;
        out.push(Listener {
            local: local.to_string(),
            port,
            accept_queue: q.parse().map_err(|_| bad("bad accept queue"))?,
            backlog: b.parse().map_err(|_| bad("bad backlog"))?,
            inode: inode.parse().map_err(|_| bad("bad inode"))?,
            owner: None,
        });
    }
    Ok(out)
}

/// What `listen-backlog` needs.
#[derive(Clone, Debug, PartialEq)]
pub struct ListenFacts {
    /// Listening TCP sockets (IPv4 and IPv6).
    pub listeners: Fact<Vec<Listener>>,
    /// net.core.somaxconn (of doctor's network namespace).
    pub somaxconn: Fact<u32>,
    /// /proc/net/netstat + snmp over the window.
    pub net: Fact<Window>,
}

/// Servers known to ask for a large backlog by default (Redis `tcp-backlog 511` and its
/// start-up warning when somaxconn is lower; nginx and HAProxy 511 or more): a cut backlog of
/// theirs is a warning, not info.
pub const BACKLOG_HUNGRY: [&str; 5] = ["redis-server", "nginx", "haproxy", "mongod", "envoy"];

const SOMAXCONN_DOCS: &str = "https://docs.kernel.org/admin-guide/sysctl/net.html#somaxconn";

/// (rise in the window, or the total since boot without a window; whether it was a window).
fn judged(w: &Window, name: &str) -> (u64, bool) {
    match w.delta(name) {
        Some(d) => (d, true),
        None => (w.total(name).unwrap_or(0), false),
    }
}

fn no_window_note(w: &Window, evidence: &mut Vec<Evidence>) {
    if w.seconds <= 0.0 {
        evidence.push(ev("judged on", "totals since boot (--window 0: no rates)"));
    }
}

/// `listen-backlog`.
pub fn listen_backlog(f: &ListenFacts) -> Outcome {
    let listeners = match &f.listeners {
        Ok(l) => l,
        Err(why) => return Outcome::NotChecked(why.clone()),
    };
    let mut evidence = vec![];
    let somaxconn = f.somaxconn.as_ref().ok().copied();
    evidence.push(ev(
        "net.core.somaxconn",
        somaxconn.map_or_else(|| format!("unknown ({})", f.somaxconn.clone().err().unwrap_or_default()), |s| s.to_string()),
    ));
    evidence.push(ev("listening TCP sockets", listeners.len()));
    let (overflows, drops, windowed) = match &f.net {
        Ok(w) => {
            evidence.push(w.evidence("TcpExt ListenOverflows"));
            evidence.push(w.evidence("TcpExt ListenDrops"));
            no_window_note(w, &mut evidence);
            let (o, win) = judged(w, "TcpExt ListenOverflows");
            (o, judged(w, "TcpExt ListenDrops").0, win)
        }
        Err(why) => {
            evidence.push(ev("TcpExt ListenOverflows", format!("unknown ({why})")));
            (0, 0, false)
        }
    };
    let full: Vec<&Listener> = listeners.iter().filter(|l| l.full()).collect();
    let capped: Vec<&Listener> = listeners.iter().filter(|l| somaxconn.is_some_and(|s| l.backlog == s && s > 0)).collect();
    let rest = listeners.iter().filter(|l| !l.full() && !capped.contains(l));
    for l in full.iter().copied().chain(capped.iter().copied().filter(|l| !l.full())).chain(rest).take(20) {
        let mut v = format!("accept queue {} of backlog {}", l.accept_queue, l.backlog);
        if l.full() {
            v.push_str(" (full)");
        }
        if somaxconn == Some(l.backlog) {
            v.push_str(" (= somaxconn: the backlog asked for was probably cut)");
        }
        evidence.push(ev(l.name(), v));
    }
    if full.is_empty() && capped.is_empty() && overflows == 0 {
        return Outcome::Clear(evidence);
    }
    let to = somaxconn.map_or(4096, |s| (s.saturating_mul(2)).max(4096));
    let mut fix = format!(
        "sysctl -w net.core.somaxconn={to}\nto keep it: echo 'net.core.somaxconn = {to}' > /etc/sysctl.d/90-thrashguard.conf \
         (in a container, set it in the container's network namespace: somaxconn is per namespace)\n\
         then raise the application's own backlog (Redis tcp-backlog, nginx `listen ... backlog=`, ...) and restart it: \
         the backlog is fixed when it calls listen()"
    );
    if !full.is_empty() {
        fix.push_str(
            "\na full accept queue means the program is not calling accept() fast enough: \
             look for a stall (PSI memory/cpu, `thrashguard doctor` thrashing rules) before raising limits",
        );
    }
    let worst = full.first().or(capped.first()).map(|l| l.name());
    let when = if windowed { "in the window" } else { "since boot" };
    let (severity, title) = if overflows > 0 && windowed {
        (
            Severity::Critical,
            format!(
                "{overflows} connections overflowed a full accept queue in the window{}",
                worst.map_or(String::new(), |w| format!(": {w}"))
            ),
        )
    } else if !full.is_empty() {
        (Severity::Warning, format!("the accept queue of {} is full now", full[0].name()))
    } else if overflows > 0 || drops > 0 {
        (
            Severity::Warning,
            format!("{overflows} accept-queue overflows {when}; {} listener(s) have a backlog equal to somaxconn", capped.len()),
        )
    } else if let Some(l) = capped.iter().find(|l| l.owner.as_ref().is_some_and(|(_, c)| BACKLOG_HUNGRY.contains(&c.as_str()))) {
        (
            Severity::Warning,
            format!(
                "{} asks for a larger listen backlog than net.core.somaxconn ({}) allows: it was cut",
                l.name(),
                somaxconn.unwrap_or(0)
            ),
        )
    } else {
        (
            Severity::Info,
            format!(
                "{} listener(s) have a backlog equal to net.core.somaxconn ({}): the backlog they asked for was probably cut",
                capped.len(),
                somaxconn.unwrap_or(0)
            ),
        )
    };
    Outcome::Found(Finding {
        id: "listen-backlog",
        severity,
        title,
        evidence,
        explanation: "A listening socket queues connections that completed the handshake until the program calls \
                      accept(); the queue holds at most the backlog given to listen(), silently cut to \
                      net.core.somaxconn. When it is full, new connections are dropped (ListenOverflows) and clients \
                      wait for retransmits, seconds each. A program stalled on memory stops accepting, so overflows \
                      often come with memory pressure."
            .into(),
        fix,
        docs: SOMAXCONN_DOCS,
    })
}

/// What `syn-queue` needs.
#[derive(Clone, Debug, PartialEq)]
pub struct SynFacts {
    /// /proc/net/netstat over the window.
    pub net: Fact<Window>,
    /// net.ipv4.tcp_max_syn_backlog.
    pub max_syn_backlog: Fact<u64>,
    /// net.ipv4.tcp_syncookies.
    pub syncookies: Fact<u64>,
    /// Ports of `Possible SYN flooding` lines in the kernel log (empty when not read).
    pub flood_ports: Vec<u16>,
}

/// `syn-queue`.
pub fn syn_queue(f: &SynFacts) -> Outcome {
    let w = match &f.net {
        Ok(w) => w,
        Err(why) => return Outcome::NotChecked(why.clone()),
    };
    if w.total("TcpExt TCPReqQFullDrop").is_none() {
        return Outcome::NotChecked("TcpExt TCPReqQFullDrop: not counted by this kernel".into());
    }
    let mut evidence =
        vec![w.evidence("TcpExt TCPReqQFullDrop"), w.evidence("TcpExt TCPReqQFullDoCookies"), w.evidence("TcpExt SyncookiesSent")];
    no_window_note(w, &mut evidence);
    let setting = |v: &Fact<u64>| v.as_ref().map_or_else(|e| format!("unknown ({e})"), u64::to_string);
    evidence.push(ev("net.ipv4.tcp_max_syn_backlog", setting(&f.max_syn_backlog)));
    evidence.push(ev("net.ipv4.tcp_syncookies", setting(&f.syncookies)));
    if !f.flood_ports.is_empty() {
        let mut ports = f.flood_ports.clone();
        ports.sort_unstable();
        ports.dedup();
        evidence.push(ev("kernel log: Possible SYN flooding on port", ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")));
    }
    let (drops, windowed) = judged(w, "TcpExt TCPReqQFullDrop");
    if drops == 0 {
        return Outcome::Clear(evidence);
    }
    let to = f.max_syn_backlog.as_ref().ok().map_or(4096, |v| (v.saturating_mul(2)).max(4096));
    let mut fix = format!(
        "sysctl -w net.ipv4.tcp_max_syn_backlog={to}\nto keep it: echo 'net.ipv4.tcp_max_syn_backlog = {to}' > /etc/sysctl.d/90-thrashguard.conf"
    );
    if f.syncookies.as_ref().ok() == Some(&0) {
        fix.push_str("\nand turn SYN cookies back on: sysctl -w net.ipv4.tcp_syncookies=1 (same file: net.ipv4.tcp_syncookies = 1)");
    }
    Outcome::Found(Finding {
        id: "syn-queue",
        severity: if windowed { Severity::Warning } else { Severity::Info },
        title: if windowed {
            format!("{drops} connection requests were dropped on a full SYN queue in the window")
        } else {
            format!("{drops} connection requests were dropped on a full SYN queue since boot")
        },
        evidence,
        explanation: "Half-open connections wait in the SYN queue until the client's final ACK arrives; when it is \
                      full and SYN cookies cannot be used, the kernel drops the request (TCPReqQFullDrop) and the \
                      client retries after a second or more. Either a burst of connections, a flood, or a listener \
                      whose accept queue is also full."
            .into(),
        fix,
        docs: "https://docs.kernel.org/networking/ip-sysctl.html#tcp-variables",
    })
}

/// What `socket-drops` needs.
#[derive(Clone, Debug, PartialEq)]
pub struct DropFacts {
    /// /proc/net/netstat + snmp over the window.
    pub net: Fact<Window>,
    /// PSI totals over the window (`memory some total_us`).
    pub pressure: Fact<Window>,
    /// `TCP: out of memory -- consider tuning tcp_mem` lines in the kernel log.
    pub tcp_oom_logged: usize,
}

/// The counters `socket-drops` adds up.
pub const DROP_COUNTERS: [&str; 5] =
    ["TcpExt TCPBacklogDrop", "TcpExt TCPRcvQDrop", "TcpExt TCPMemoryPressures", "TcpExt TCPAbortOnMemory", "Udp RcvbufErrors"];

/// PSI memory `some` share of the window above which drops are blamed on the memory stall.
pub const STALL_BLAME_PCT: f64 = 10.0;

/// `socket-drops`.
pub fn socket_drops(f: &DropFacts) -> Outcome {
    let w = match &f.net {
        Ok(w) => w,
        Err(why) => return Outcome::NotChecked(why.clone()),
    };
    let mut evidence: Vec<Evidence> = DROP_COUNTERS.iter().map(|c| w.evidence(c)).collect();
    no_window_note(w, &mut evidence);
    let mut rising = vec![];
    let mut windowed = false;
    for c in DROP_COUNTERS {
        let (n, win) = judged(w, c);
        windowed = win;
        if n > 0 {
            rising.push(format!("{c} {n}"));
        }
    }
    if f.tcp_oom_logged > 0 {
        evidence.push(ev("kernel log: TCP: out of memory -- consider tuning tcp_mem", format!("{} time(s)", f.tcp_oom_logged)));
    }
    let stall = f.pressure.as_ref().ok().and_then(|p| p.stall_pct("memory some total_us"));
    if let Some(s) = stall {
        evidence.push(ev("PSI memory some in the window", format!("{s:.1} %")));
    }
    if rising.is_empty() {
        return Outcome::Clear(evidence);
    }
    let blame_memory = stall.is_some_and(|s| s > STALL_BLAME_PCT);
    let (title, fix) = if blame_memory {
        (
            format!("sockets dropped data while memory stalled {:.0} % of the window ({})", stall.unwrap_or(0.0), rising.join(", ")),
            "fix the memory stall, not the network: the program could not run to drain its sockets \
             (see the thrashing and reclaim findings; let thrashguard act earlier or cap the memory hog)"
                .to_string(),
        )
    } else {
        (
            format!("sockets dropped data {} ({})", if windowed { "in the window" } else { "since boot" }, rising.join(", ")),
            "find the socket whose receive queue is full (`ss -tumn` Recv-Q) and why its program is slow to read; \
             for bursty traffic raise the buffers, e.g. sysctl -w net.core.rmem_max=16777216 and \
             sysctl -w net.ipv4.tcp_rmem='4096 131072 16777216' (keep them in /etc/sysctl.d/90-thrashguard.conf); \
             TCPMemoryPressures/TCPAbortOnMemory point at net.ipv4.tcp_mem instead"
                .to_string(),
        )
    };
    Outcome::Found(Finding {
        id: "socket-drops",
        severity: if windowed { Severity::Warning } else { Severity::Info },
        title,
        evidence,
        explanation: "The kernel dropped incoming data because a socket's receive buffer was full or TCP's memory \
                      limit was reached. That happens when the program does not read fast enough, and a program \
                      stalled on memory reads nothing at all: when memory pressure is high in the same window, \
                      the network is the victim, not the cause."
            .into(),
        fix,
        docs: "https://docs.kernel.org/networking/ip-sysctl.html#tcp-variables",
    })
}

/// /proc/net/softnet_stat summed over CPUs: (dropped, time_squeeze). Columns are hex; the
/// second is packets dropped because the per-CPU backlog was full, the third how often the
/// receive softirq ran out of budget with work left.
pub fn parse_softnet(text: &str) -> Result<(u64, u64), String> {
    let mut sum = (0u64, 0u64);
    let mut rows = 0;
    for (no, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut w = line.split_whitespace();
        let mut col = || w.next().and_then(|h| u64::from_str_radix(h, 16).ok());
        let (Some(_), Some(dropped), Some(squeezed)) = (col(), col(), col()) else {
            return Err(format!("net/softnet_stat: line {}: expected hex columns", no + 1));
        };
        sum = (sum.0.saturating_add(dropped), sum.1.saturating_add(squeezed));
        rows += 1;
    }
    if rows == 0 {
        return Err("net/softnet_stat: empty".into());
    }
    Ok(sum)
}

/// `softnet-drops` over the net window (counters `softnet dropped`, `softnet time_squeeze`).
pub fn softnet_drops(net: &Fact<Window>, netdev_max_backlog: &Fact<u64>) -> Outcome {
    let w = match net {
        Ok(w) => w,
        Err(why) => return Outcome::NotChecked(why.clone()),
    };
    if w.total("softnet dropped").is_none() || w.first.get("softnet dropped").is_none() {
        return Outcome::NotChecked("net/softnet_stat: missing or garbled".into());
    }
    let mut evidence = vec![w.evidence("softnet dropped"), w.evidence("softnet time_squeeze")];
    no_window_note(w, &mut evidence);
    evidence.push(ev("net.core.netdev_max_backlog", netdev_max_backlog.as_ref().map_or_else(|e| format!("unknown ({e})"), u64::to_string)));
    let (dropped, windowed) = judged(w, "softnet dropped");
    if dropped == 0 {
        return Outcome::Clear(evidence);
    }
    let to = netdev_max_backlog.as_ref().ok().map_or(2000, |v| v.saturating_mul(2).max(2000));
    Outcome::Found(Finding {
        id: "softnet-drops",
        severity: if windowed { Severity::Warning } else { Severity::Info },
        title: format!("{dropped} packets dropped on a full per-CPU backlog {}", if windowed { "in the window" } else { "since boot" }),
        evidence,
        explanation: "Received packets wait in a per-CPU backlog for the network softirq; when it holds \
                      net.core.netdev_max_backlog packets, more are dropped before any socket sees them. \
                      time_squeeze counts the times the softirq ran out of budget with packets left, a sign the \
                      CPU cannot keep up."
            .into(),
        fix: format!(
            "sysctl -w net.core.netdev_max_backlog={to}\nto keep it: echo 'net.core.netdev_max_backlog = {to}' > /etc/sysctl.d/90-thrashguard.conf\n\
             and spread receive work over CPUs (RPS: echo f > /sys/class/net/IFACE/queues/rx-0/rps_cpus, or IRQ affinity)"
        ),
        docs: "https://docs.kernel.org/admin-guide/sysctl/net.html#netdev-max-backlog",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::window::Counters;

    fn win(pairs: &[(&str, u64, u64)], seconds: f64) -> Fact<Window> {
        let (mut a, mut b) = (Counters::default(), Counters::default());
        for (n, x, y) in pairs {
            a.set(n, *x);
            b.set(n, *y);
        }
        Ok(Window { first: a, last: b, seconds })
    }

    fn l(local: &str, q: u32, backlog: u32, owner: Option<(u32, &str)>) -> Listener {
        Listener {
            local: local.into(),
            port: local.rsplit_once(':').unwrap().1.parse().unwrap(),
            accept_queue: q,
            backlog,
            inode: 1,
            owner: owner.map(|(p, c)| (p, c.to_string())),
        }
    }

    fn sev(o: &Outcome) -> Option<Severity> {
        if let Outcome::Found(f) = o { Some(f.severity) } else { None }
    }

    #[test]
    fn listen_backlog_severities() {
        let quiet = win(&[("TcpExt ListenOverflows", 5, 5), ("TcpExt ListenDrops", 5, 5)], 5.0);
        let rising = win(&[("TcpExt ListenOverflows", 5, 9), ("TcpExt ListenDrops", 5, 9)], 5.0);
        let facts = |ls: Vec<Listener>, net: Fact<Window>| ListenFacts { listeners: Ok(ls), somaxconn: Ok(4096), net };
        let ok = vec![l("0.0.0.0:22", 0, 128, Some((77, "sshd")))];
        assert!(matches!(listen_backlog(&facts(ok.clone(), quiet.clone())), Outcome::Clear(_)));
        let capped = vec![l("127.0.0.1:6379", 0, 4096, Some((812, "redis-server")))];
        let o = listen_backlog(&facts(capped.clone(), quiet.clone()));
        assert_eq!(sev(&o), Some(Severity::Warning), "a known server's cut backlog");
        let o = listen_backlog(&facts(vec![l("127.0.0.1:9000", 0, 4096, Some((5, "myapp")))], quiet.clone()));
        assert_eq!(sev(&o), Some(Severity::Info));
        let full = vec![l("127.0.0.1:8080", 129, 128, Some((900, "java"))), ok[0].clone()];
        let o = listen_backlog(&facts(full.clone(), quiet.clone()));
        assert_eq!(sev(&o), Some(Severity::Warning));
        let Outcome::Found(f) = listen_backlog(&facts(full, rising.clone())) else { panic!() };
        assert_eq!(f.severity, Severity::Critical);
        assert!(f.title.contains("4 connections") && f.title.contains("127.0.0.1:8080 (java, pid 900)"), "{}", f.title);
        assert!(f.fix.contains("net.core.somaxconn=8192"), "{}", f.fix);
        // overflows rising, nothing full now: the capped one is named
        let Outcome::Found(f) = listen_backlog(&facts(capped, rising)) else { panic!() };
        assert_eq!(f.severity, Severity::Critical);
        assert!(f.title.contains("redis-server"), "{}", f.title);
        // no window: totals since boot, never critical
        let o = listen_backlog(&facts(ok, win(&[("TcpExt ListenOverflows", 5, 5)], 0.0)));
        let Outcome::Found(f) = o else { panic!() };
        assert_eq!(f.severity, Severity::Warning);
        assert!(f.evidence.iter().any(|e| e.name == "judged on"));
        assert!(matches!(
            listen_backlog(&ListenFacts { listeners: Err("sock_diag: denied".into()), somaxconn: Ok(1), net: quiet }),
            Outcome::NotChecked(_)
        ));
    }

    #[test]
    fn listeners_file() {
        let ls = parse_listeners("# captured\n127.0.0.1:6379 0 511 4242\n[::]:80 3 4096 77 # web\n\n").unwrap();
        assert_eq!(ls.len(), 2);
        assert_eq!((ls[1].port, ls[1].accept_queue, ls[1].backlog, ls[1].inode), (80, 3, 4096, 77));
        for bad in ["x 1 2 3", "a:1 1 2", "a:1 x 2 3", "a:99999 1 2 3"] {
            assert!(parse_listeners(bad).is_err(), "{bad}");
        }
        assert!(!l("a:1", 0, 0, None).full());
    }

    #[test]
    fn syn_queue_rule() {
        let f = |w: Fact<Window>| SynFacts { net: w, max_syn_backlog: Ok(1024), syncookies: Ok(0), flood_ports: vec![8080, 80, 8080] };
        assert!(matches!(syn_queue(&f(win(&[("TcpExt TCPReqQFullDrop", 3, 3)], 5.0))), Outcome::Clear(_)));
        let Outcome::Found(x) = syn_queue(&f(win(&[("TcpExt TCPReqQFullDrop", 3, 7)], 5.0))) else { panic!() };
        assert_eq!(x.severity, Severity::Warning);
        assert!(x.fix.contains("tcp_max_syn_backlog=4096") && x.fix.contains("tcp_syncookies=1"), "{}", x.fix);
        assert!(x.evidence.iter().any(|e| e.value == "80, 8080"));
        assert_eq!(sev(&syn_queue(&f(win(&[("TcpExt TCPReqQFullDrop", 3, 3)], 0.0)))), Some(Severity::Info));
        assert!(matches!(syn_queue(&f(win(&[], 5.0))), Outcome::NotChecked(_)));
    }

    #[test]
    fn socket_drops_blame_the_stall() {
        let net = win(&[("Udp RcvbufErrors", 10, 50), ("TcpExt TCPBacklogDrop", 0, 0)], 5.0);
        let calm = win(&[("memory some total_us", 0, 100_000)], 5.0);
        let stalled = win(&[("memory some total_us", 0, 2_000_000)], 5.0);
        let Outcome::Found(x) = socket_drops(&DropFacts { net: net.clone(), pressure: calm, tcp_oom_logged: 0 }) else { panic!() };
        assert_eq!(x.severity, Severity::Warning);
        assert!(x.title.contains("Udp RcvbufErrors 40") && !x.title.contains("memory"), "{}", x.title);
        let Outcome::Found(x) = socket_drops(&DropFacts { net, pressure: stalled, tcp_oom_logged: 2 }) else { panic!() };
        assert!(x.title.contains("memory stalled 40 %"), "{}", x.title);
        assert!(x.fix.starts_with("fix the memory stall"));
        let quiet = win(&[("Udp RcvbufErrors", 50, 50)], 5.0);
        assert!(matches!(socket_drops(&DropFacts { net: quiet, pressure: Err("x".into()), tcp_oom_logged: 0 }), Outcome::Clear(_)));
        let boot = win(&[("Udp RcvbufErrors", 50, 50)], 0.0);
        assert_eq!(sev(&socket_drops(&DropFacts { net: boot, pressure: Err("x".into()), tcp_oom_logged: 0 })), Some(Severity::Info));
        assert!(matches!(
            socket_drops(&DropFacts { net: Err("no".into()), pressure: Err("x".into()), tcp_oom_logged: 0 }),
            Outcome::NotChecked(_)
        ));
    }

    #[test]
    fn softnet() {
        let host = "001a35be 00000000 00000001 00000000 00000000\n00127e60 0000000a 00000000 00000000 00000000\n";
        assert_eq!(parse_softnet(host), Ok((10, 1)));
        assert_eq!(parse_softnet(include_str!("../../tests/fixtures/proc/6.18.44-host/net/softnet_stat")), Ok((0, 1)));
        assert!(parse_softnet("").is_err());
        assert!(parse_softnet("zz yy\n").is_err());
        let w = win(&[("softnet dropped", 10, 30), ("softnet time_squeeze", 1, 1)], 5.0);
        let Outcome::Found(x) = softnet_drops(&w, &Ok(1000)) else { panic!() };
        assert_eq!(x.severity, Severity::Warning);
        assert!(x.fix.contains("netdev_max_backlog=2000"));
        assert!(matches!(softnet_drops(&win(&[("softnet dropped", 10, 10)], 5.0), &Ok(1000)), Outcome::Clear(_)));
        assert!(matches!(softnet_drops(&win(&[], 5.0), &Ok(1000)), Outcome::NotChecked(_)));
    }
}
