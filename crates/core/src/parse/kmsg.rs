//! The kernel log: /dev/kmsg records and `dmesg` text, turned into the events doctor's rules
//! judge by (allocation failures, OOM kills, SYN floods, TCP memory exhaustion, hung tasks).
//!
//! Owns recognising one log line, in any of the shapes the kernel's messages reach a person:
//! a /dev/kmsg record (`prio,seq,usec,flags;message`), `dmesg` text (`[  123.456789] message`,
//! `[Mon Apr 20 15:08:07 2020] message` from `dmesg -T`, or no timestamp at all) and syslog
//! lines (`Jun 13 04:36:30 host kernel: message`). Lines it does not know are skipped, never an
//! error: the log is mostly other messages. Unlike the sampling parsers this one allocates
//! (doctor runs it once, never the guard loop). Must never read the log itself.

/// One event found in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// `COMM: page allocation failure: order:N, mode:0x..(GFP_..)`.
    AllocFailure {
        /// The task that asked (often an interrupt thread or `swapper/N` for network receive).
        comm: String,
        /// log2 of the pages asked for.
        order: u32,
        /// The gfp mask as printed (`0x820`).
        mode: String,
        /// The flag names the kernel printed with it (`GFP_ATOMIC|__GFP_COMP`); empty on
        /// kernels before 4.10, which print the number only.
        flags: String,
    },
    /// `SLUB: Unable to allocate memory on node N, gfp=0x..(..)`.
    SlubFailure {
        /// The gfp mask and names as printed (`0x20` or `0x900(GFP_NOWAIT|__GFP_ZERO)`).
        gfp: String,
    },
    /// `COMM invoked oom-killer: gfp_mask=0x..(..), order=N`.
    OomInvoked {
        /// The task whose allocation failed.
        comm: String,
        /// gfp mask and names as printed.
        gfp: String,
        /// The order asked for.
        order: Option<u32>,
    },
    /// `Out of memory: Killed process N (comm) ... anon-rss:NkB ...` (also the memory cgroup
    /// form).
    OomKill {
        /// The victim's pid.
        pid: u32,
        /// The victim's name.
        comm: String,
        /// Its anonymous RSS when it was killed.
        anon_rss_kib: Option<u64>,
        /// `CONSTRAINT_NONE` (global), `CONSTRAINT_MEMCG`, `CONSTRAINT_CPUSET`,
        /// `CONSTRAINT_MEMORY_POLICY`, from the `oom-kill:constraint=` line before it, or
        /// `CONSTRAINT_MEMCG` from a `Memory cgroup out of memory` line; `None` when the
        /// kernel (before 4.19) did not say.
        constraint: Option<String>,
    },
    /// `Possible SYN flooding on port N`.
    SynFlood {
        /// The listening port.
        port: u16,
    },
    /// `TCP: out of memory -- consider tuning tcp_mem`.
    TcpOom,
    /// `INFO: task COMM:PID blocked for more than N seconds.`
    HungTask {
        /// The task.
        comm: String,
        /// Seconds it had been blocked.
        seconds: u64,
    },
}

/// An event and when it was logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Microseconds since boot (monotonic, like /proc/uptime); `None` when the line had no
    /// such timestamp (`dmesg -T`, syslog, plain text).
    pub usec: Option<u64>,
    /// What happened.
    pub event: Event,
}

impl Entry {
    /// Whether this entry is at or after `since_usec` (microseconds since boot). An entry
    /// without a timestamp is never "recent".
    pub fn since(&self, since_usec: u64) -> bool {
        self.usec.is_some_and(|u| u >= since_usec)
    }
}

/// Split a line into (microseconds since boot, message).
fn split_line(line: &str) -> (Option<u64>, &str) {
    // /dev/kmsg: `prio,seq,usec,flags[,more];message`
    if let Some((head, msg)) = line.split_once(';') {
        let mut f = head.split(',');
        if let (Some(p), Some(s), Some(u)) = (f.next(), f.next(), f.next())
            && [p, s, u].iter().all(|x| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit()))
        {
            return (u.parse().ok(), msg);
        }
    }
    let mut rest = line;
    // syslog: `Jun 13 04:36:30 host kernel: message` (the prefix is short and has no '[')
    if let Some(i) = rest.find("kernel: ")
        && i < 80
        && !rest[..i].contains('[')
    {
        rest = &rest[i + "kernel: ".len()..];
    }
    let trimmed = rest.trim_start();
    if let Some(inner) = trimmed.strip_prefix('[')
        && let Some(end) = inner.find(']')
    {
        let stamp = inner[..end].trim();
        let msg = inner[end + 1..].trim_start();
        // journalctl -k / earlyoom's reports: `[stamp] kernel: message`
        let msg = msg.strip_prefix("kernel: ").unwrap_or(msg);
        let usec = stamp.split_once('.').and_then(|(s, frac)| {
            let s: u64 = s.parse().ok()?;
            if frac.is_empty() || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let frac_us: u64 = format!("{frac:0<6}")[..6].parse().ok()?;
            s.checked_mul(1_000_000)?.checked_add(frac_us)
        });
        return (usec, msg);
    }
    (None, trimmed)
}

/// The number right after `key` (`order:` -> 5), digits only.
fn number_after(msg: &str, key: &str) -> Option<u64> {
    let start = msg.find(key)? + key.len();
    let digits: String = msg[start..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// `0x820(GFP_ATOMIC)` right after `key`: (number, names inside the parentheses).
fn gfp_after(msg: &str, key: &str) -> Option<(String, String)> {
    let start = msg.find(key)? + key.len();
    let rest = &msg[start..];
    let hex_end = rest.find(|c: char| !(c.is_ascii_hexdigit() || c == 'x')).unwrap_or(rest.len());
    let mode = rest[..hex_end].to_string();
    if !mode.starts_with("0x") || mode.len() < 3 {
        return None;
    }
    let flags = rest[hex_end..].strip_prefix('(').and_then(|r| r.split_once(')')).map(|(names, _)| names.to_string()).unwrap_or_default();
    Some((mode, flags))
}

fn parse_message(msg: &str, constraint: &mut Option<String>) -> Option<Event> {
    if let Some(i) = msg.find("page allocation failure") {
        let comm = msg[..i].trim_end().trim_end_matches(':').trim().to_string();
        let order = u32::try_from(number_after(msg, "order:")?).ok()?;
        let (mode, flags) = gfp_after(msg, "mode:")?;
        return Some(Event::AllocFailure { comm, order, mode, flags });
    }
    if msg.starts_with("SLUB: Unable to allocate memory") {
        let (mode, flags) = gfp_after(msg, "gfp=")?;
        let gfp = if flags.is_empty() { mode } else { format!("{mode}({flags})") };
        return Some(Event::SlubFailure { gfp });
    }
    if let Some(i) = msg.find(" invoked oom-killer:") {
        let comm = msg[..i].trim().to_string();
        let gfp = gfp_after(msg, "gfp_mask=").map(|(m, f)| if f.is_empty() { m } else { format!("{m}({f})") }).unwrap_or_default();
        let order = number_after(msg, "order=").and_then(|o| u32::try_from(o).ok());
        return Some(Event::OomInvoked { comm, gfp, order });
    }
    if let Some(rest) = msg.strip_prefix("oom-kill:constraint=") {
        *constraint = Some(rest.split(',').next().unwrap_or_default().to_string());
        return None;
    }
    if msg.starts_with("Memory cgroup out of memory") {
        *constraint = Some("CONSTRAINT_MEMCG".into());
    }
    if let Some(i) = msg.find("Killed process ") {
        let rest = &msg[i + "Killed process ".len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let pid: u32 = digits.parse().ok()?;
        let rest = rest[digits.len()..].trim_start();
        let comm = rest.strip_prefix('(').and_then(|r| r.rsplit_once(')')).map(|(c, _)| c.to_string()).unwrap_or_default();
        let anon_rss_kib = number_after(msg, "anon-rss:");
        return Some(Event::OomKill { pid, comm, anon_rss_kib, constraint: constraint.take() });
    }
    if let Some(i) = msg.find("Possible SYN flooding on port ") {
        let port = number_after(&msg[i..], "port ").and_then(|p| u16::try_from(p).ok())?;
        return Some(Event::SynFlood { port });
    }
    if msg.contains("TCP: out of memory -- consider tuning tcp_mem") {
        return Some(Event::TcpOom);
    }
    if let Some(i) = msg.find(" blocked for more than ") {
        let task = msg[..i].trim().trim_start_matches("INFO:").trim().strip_prefix("task ")?.trim();
        // `comm:pid`; comm itself may contain ':' (kworker/u8:2), the pid is after the last
        let comm = task.rsplit_once(':').map_or(task, |(c, _)| c).to_string();
        let seconds = number_after(&msg[i..], "more than ")?;
        return Some(Event::HungTask { comm, seconds });
    }
    None
}

/// Every event in a kernel log text (any of the shapes in the module header, mixed freely),
/// in log order. Unknown, cut-short and garbled lines are skipped.
pub fn parse(text: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut constraint = None;
    for line in text.lines() {
        let (usec, msg) = split_line(line);
        if let Some(event) = parse_message(msg.trim_end(), &mut constraint) {
            out.push(Entry { usec, event });
        }
    }
    out
}

/// The gfp flag names that mean "cannot sleep to reclaim" (the reserve below the min
/// watermark is all they have): GFP_ATOMIC and GFP_NOWAIT. On kernels before 4.10 the names
/// are not printed; there 0x20 (__GFP_HIGH) was GFP_ATOMIC itself.
pub fn cannot_wait(mode: &str, flags: &str) -> bool {
    if flags.is_empty() {
        return mode == "0x20";
    }
    flags.split('|').any(|f| f == "GFP_ATOMIC" || f == "GFP_NOWAIT")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_of_a_line() {
        assert_eq!(split_line("6,1023,5123456,-;hello"), (Some(5_123_456), "hello"));
        assert_eq!(split_line("6,1023,5123456,-,caller=T12;hello"), (Some(5_123_456), "hello"));
        assert_eq!(split_line("[ 1171.795551] Out of"), (Some(1_171_795_551), "Out of"));
        assert_eq!(split_line("[  240.] INFO: x"), (None, "INFO: x"));
        assert_eq!(split_line("[Mon Apr 20 15:08:07 2020] kworker"), (None, "kworker"));
        assert_eq!(split_line("Jun 13 04:36:30 ip-172 kernel: java: page"), (None, "java: page"));
        assert_eq!(split_line("kern.info kernel: [31617.809376] TCP: x"), (Some(31_617_809_376), "TCP: x"));
        assert_eq!(split_line("plain text; with semicolon"), (None, "plain text; with semicolon"));
        assert_eq!(split_line(""), (None, ""));
    }

    #[test]
    fn allocation_failures_in_every_kernel_dialect() {
        let e = parse("[86554.227453] irq/5-600c0004.: page allocation failure: order:0, mode:0x820(GFP_ATOMIC), nodemask=(null)\n");
        assert_eq!(
            e[0].event,
            Event::AllocFailure { comm: "irq/5-600c0004.".into(), order: 0, mode: "0x820".into(), flags: "GFP_ATOMIC".into() }
        );
        let e = parse("kernel: node_exporter: page allocation failure. order:5, mode:0xd0\n");
        assert_eq!(e[0].event, Event::AllocFailure { comm: "node_exporter".into(), order: 5, mode: "0xd0".into(), flags: String::new() });
        assert!(cannot_wait("0x820", "GFP_ATOMIC"));
        assert!(cannot_wait("0x2084120", "GFP_ATOMIC|__GFP_COLD|__GFP_COMP"));
        assert!(cannot_wait("0x800", "GFP_NOWAIT"));
        assert!(cannot_wait("0x20", ""));
        assert!(!cannot_wait("0xd0", ""));
        assert!(!cannot_wait("0x40dc0", "GFP_KERNEL|__GFP_COMP|__GFP_ZERO"));
        let e = parse("[21161.093507] kernel: SLUB: Unable to allocate memory on node -1, gfp=0x900(GFP_NOWAIT|__GFP_ZERO)\n");
        assert_eq!(e[0].event, Event::SlubFailure { gfp: "0x900(GFP_NOWAIT|__GFP_ZERO)".into() });
        assert_eq!(parse("SLUB: Unable to allocate memory on node -1 (gfp=0x20)\n")[0].event, Event::SlubFailure { gfp: "0x20".into() });
    }

    #[test]
    fn oom_kills_with_their_constraint() {
        let log = "[ 7093.543707] uwsgi invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=986\n\
                   [ 7093.6] oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,task=uwsgi,pid=63214,uid=0\n\
                   [ 7093.7] Memory cgroup out of memory: Killed process 63214 (uwsgi) total-vm:3149468kB, anon-rss:164992kB, file-rss:52176kB\n\
                   [ 7093.8] oom_reaper: reaped process 63214 (uwsgi), now anon-rss:0kB, file-rss:0kB, shmem-rss:92kB\n\
                   [ 1171.795551] Out of memory: Killed process 1669 (xdg-desktop-por) total-vm:105068kB, anon-rss:9792kB\n\
                   Killed process 12 (a (b) c)\n";
        let e = parse(log);
        assert_eq!(e.len(), 4, "{e:#?}");
        assert_eq!(e[0].event, Event::OomInvoked { comm: "uwsgi".into(), gfp: "0xcc0(GFP_KERNEL)".into(), order: Some(0) });
        assert_eq!(
            e[1].event,
            Event::OomKill { pid: 63214, comm: "uwsgi".into(), anon_rss_kib: Some(164_992), constraint: Some("CONSTRAINT_MEMCG".into()) }
        );
        assert_eq!(e[1].usec, Some(7_093_700_000));
        assert_eq!(e[2].event, Event::OomKill { pid: 1669, comm: "xdg-desktop-por".into(), anon_rss_kib: Some(9792), constraint: None });
        assert_eq!(e[3].event, Event::OomKill { pid: 12, comm: "a (b) c".into(), anon_rss_kib: None, constraint: None });
    }

    #[test]
    fn network_and_hung_tasks() {
        let e = parse(
            "[375852.589465] TCP: request_sock_TCP: Possible SYN flooding on port 8080. Sending cookies.  Check SNMP counters.\n\
             [  179.636034] TCP: out of memory -- consider tuning tcp_mem\n\
             [26825.855448] INFO: task kworker/2:1:5747 blocked for more than 120 seconds.\n\
             [  984.641295] INFO: task khugepaged:170 blocked for more than 122 seconds.\n",
        );
        assert_eq!(e[0].event, Event::SynFlood { port: 8080 });
        assert_eq!(e[1].event, Event::TcpOom);
        assert_eq!(e[2].event, Event::HungTask { comm: "kworker/2:1".into(), seconds: 120 });
        assert_eq!(e[3].event, Event::HungTask { comm: "khugepaged".into(), seconds: 122 });
    }

    #[test]
    fn garbage_is_skipped_never_a_panic() {
        for bad in [
            "page allocation failure",
            "x: page allocation failure: order:99999999999, mode:0x",
            "Killed process",
            "Killed process x (y)",
            "Possible SYN flooding on port 99999",
            "INFO: task blocked for more than x seconds",
            "[ 12.\u{e9}] \u{e9}",
            "1,2,3;",
            ";;;",
            "SLUB: Unable to allocate memory gfp=zz",
        ] {
            assert!(parse(bad).is_empty(), "{bad}");
        }
    }

    #[test]
    fn real_logs() {
        let host = parse(include_str!("../../tests/fixtures/kmsg/6.18.44-host.kmsg"));
        assert!(host.is_empty(), "an idle boot log has no events: {host:#?}");
        let e = parse(include_str!("../../tests/fixtures/kmsg/public-reports.log"));
        let count = |f: fn(&Event) -> bool| e.iter().filter(|x| f(&x.event)).count();
        assert_eq!(count(|e| matches!(e, Event::AllocFailure { .. })), 6, "{e:#?}");
        assert_eq!(count(|e| matches!(e, Event::AllocFailure { mode, flags, .. } if cannot_wait(mode, flags))), 4);
        assert_eq!(count(|e| matches!(e, Event::SlubFailure { .. })), 2);
        assert_eq!(count(|e| matches!(e, Event::OomInvoked { .. })), 2);
        assert_eq!(count(|e| matches!(e, Event::OomKill { .. })), 2);
        assert_eq!(count(|e| matches!(e, Event::SynFlood { .. })), 2);
        assert_eq!(count(|e| matches!(e, Event::TcpOom)), 1);
        assert_eq!(count(|e| matches!(e, Event::HungTask { .. })), 1);
        assert_eq!(e.len(), 16);
        let kill = e.iter().find(|x| matches!(&x.event, Event::OomKill { pid: 63214, .. })).unwrap();
        assert_eq!(kill.usec, Some(7_063_247_407));
        assert!(matches!(&kill.event, Event::OomKill { constraint: Some(c), anon_rss_kib: Some(164_992), .. } if c == "CONSTRAINT_MEMCG"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in ".{0,200}") {
            let _ = parse(&s);
        }
    }
}
