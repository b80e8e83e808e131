//! Rules about process limits and the machine's readiness for a rescue: open-file limits,
//! the SysRq key that kills from the console, and a slow clock source.
//!
//! Owns `fd-limits` (processes near their RLIMIT_NOFILE, the system near fs.file-max),
//! `sysrq` (kernel.sysrq without the signal bit 0x40) and `clocksource`, plus the parser of a
//! /proc/PID/limits "Max open files" line. Must never read a file itself.

use super::{Fact, Finding, Outcome, Severity, ev};

/// One process's open files against its soft limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FdUse {
    /// Its pid.
    pub pid: u32,
    /// Its name.
    pub comm: String,
    /// Entries in /proc/PID/fd.
    pub open: u64,
    /// Soft RLIMIT_NOFILE (`None`: unlimited).
    pub soft_limit: Option<u64>,
}

/// The soft limit of the `Max open files` line of a /proc/PID/limits text: `Some(None)` for
/// unlimited, `None` when the line is missing or garbled.
pub fn nofile_soft_limit(limits: &str) -> Option<Option<u64>> {
    let rest = limits.lines().find_map(|l| l.strip_prefix("Max open files"))?;
    match rest.split_whitespace().next()? {
        "unlimited" => Some(None),
        n => n.parse().ok().map(Some),
    }
}

/// What `fd-limits` needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FdFacts {
    /// Every process whose fd directory and limits could be read.
    pub procs: Fact<Vec<FdUse>>,
    /// Processes that could not be read (gone, or another user's without root).
    pub skipped: usize,
    /// /proc/sys/fs/file-nr: (allocated file handles, fs.file-max).
    pub file_nr: Fact<(u64, u64)>,
}

/// Share of a limit in use above which `fd-limits` warns, in percent.
pub const FD_PCT: u64 = 80;

fn pct(used: u64, limit: u64) -> u64 {
    used.saturating_mul(100).checked_div(limit).unwrap_or(100)
}

/// `fd-limits`.
pub fn fd_limits(f: &FdFacts) -> Outcome {
    let procs = match &f.procs {
        Ok(p) => p,
        Err(why) => return Outcome::NotChecked(why.clone()),
    };
    let mut evidence = vec![ev("processes checked", format!("{} ({} could not be read)", procs.len(), f.skipped))];
    let mut near: Vec<&FdUse> = procs.iter().filter(|p| p.soft_limit.is_some_and(|l| pct(p.open, l) > FD_PCT)).collect();
    near.sort_by_key(|p| std::cmp::Reverse(pct(p.open, p.soft_limit.unwrap_or(u64::MAX))));
    for p in near.iter().take(10) {
        let limit = p.soft_limit.unwrap_or(0);
        evidence.push(ev(format!("{} (pid {})", p.comm, p.pid), format!("{} open of {limit} ({} %)", p.open, pct(p.open, limit))));
    }
    let system = match &f.file_nr {
        Ok((used, max)) => {
            evidence.push(ev("fs.file-nr", format!("{used} allocated of fs.file-max {max} ({} %)", pct(*used, *max))));
            pct(*used, *max) > FD_PCT
        }
        Err(why) => {
            evidence.push(ev("fs.file-nr", format!("unknown ({why})")));
            false
        }
    };
    if near.is_empty() && !system {
        return Outcome::Clear(evidence);
    }
    let title = match (near.first(), system) {
        (Some(p), _) => {
            format!("{} process(es) use more than {FD_PCT} % of their open-file limit, {} (pid {}) the most", near.len(), p.comm, p.pid)
        }
        (None, _) => format!("the machine uses more than {FD_PCT} % of fs.file-max"),
    };
    let mut fix = String::new();
    if let Some(p) = near.first() {
        let to = p.soft_limit.unwrap_or(1024).saturating_mul(4).max(65_536);
        fix.push_str(&format!(
            "raise the limit where {} is started: for a systemd service `systemctl edit UNIT` and add\n\
             [Service]\nLimitNOFILE={to}\nthen restart it (a running process keeps its limit; `prlimit --pid {} --nofile={to}:{to}` changes it live); \
             elsewhere /etc/security/limits.d/ (`* soft nofile {to}`)",
            p.comm, p.pid
        ));
    }
    if system {
        if !fix.is_empty() {
            fix.push('\n');
        }
        let to = f.file_nr.as_ref().map_or(1_048_576, |(_, m)| m.saturating_mul(2));
        fix.push_str(&format!("sysctl -w fs.file-max={to}\nto keep it: echo 'fs.file-max = {to}' > /etc/sysctl.d/90-thrashguard.conf"));
    }
    Outcome::Found(Finding {
        id: "fd-limits",
        severity: Severity::Warning,
        title,
        evidence,
        explanation: "A process at its open-file limit gets EMFILE on every new file, socket or pipe: servers stop \
                      accepting connections and databases fail to open files, often with misleading errors. \
                      fs.file-max is the same limit for the whole machine."
            .into(),
        fix,
        docs: "https://docs.kernel.org/admin-guide/sysctl/fs.html#file-max-file-nr",
    })
}

/// The SysRq bit that allows signalling processes (SysRq-E/I terminate/kill all, SysRq-F the
/// OOM killer).
pub const SYSRQ_SIGNAL: u64 = 0x40;

/// `sysrq` over kernel.sysrq.
pub fn sysrq(value: &Fact<u64>) -> Outcome {
    let v = match value {
        Ok(v) => *v,
        Err(why) => return Outcome::NotChecked(why.clone()),
    };
    let evidence = vec![ev("kernel.sysrq", format!("{v} (0x{v:x})"))];
    if v == 1 || v & SYSRQ_SIGNAL != 0 {
        return Outcome::Clear(evidence);
    }
    let to = if v == 0 { SYSRQ_SIGNAL | 0x80 | 0x10 } else { v | SYSRQ_SIGNAL };
    Outcome::Found(Finding {
        id: "sysrq",
        severity: Severity::Info,
        title: format!("kernel.sysrq = {v} does not allow SysRq-F (the OOM killer from the console)"),
        evidence,
        explanation: "When a machine thrashes so hard that no login works, SysRq-F on a serial console (or \
                      `echo f > /proc/sysrq-trigger` from a shell that still runs) makes the kernel kill the largest \
                      process at once. It needs bit 0x40 (signal processes) of kernel.sysrq; many distributions \
                      ship a mask without it. It is the rescue of last resort when the guard itself cannot run."
            .into(),
        fix: format!(
            "sysctl -w kernel.sysrq={to}\nto keep it: echo 'kernel.sysrq = {to}' > /etc/sysctl.d/90-thrashguard.conf \
             (0x40 signal processes{}; 1 enables every function)",
            if v == 0 { ", 0x80 reboot, 0x10 sync" } else { "" }
        ),
        docs: "https://docs.kernel.org/admin-guide/sysrq.html",
    })
}

/// `clocksource` over the current (and available) clock sources.
pub fn clocksource(current: &Fact<String>, available: &Fact<String>) -> Outcome {
    let cur = match current {
        Ok(c) => c.trim().to_string(),
        Err(why) => return Outcome::NotChecked(why.clone()),
    };
    let avail = available.as_ref().map(|a| a.trim().to_string()).unwrap_or_default();
    let mut evidence = vec![ev("current_clocksource", &cur)];
    if !avail.is_empty() {
        evidence.push(ev("available_clocksource", &avail));
    }
    if ["tsc", "kvm-clock", "arch_sys_counter"].contains(&cur.as_str()) {
        return Outcome::Clear(evidence);
    }
    let severity = if ["xen", "hpet", "acpi_pm"].contains(&cur.as_str()) { Severity::Warning } else { Severity::Info };
    let better = avail.split_whitespace().find(|c| ["tsc", "kvm-clock", "arch_sys_counter"].contains(c));
    let fix = match better {
        Some(b) => format!(
            "echo {b} > /sys/devices/system/clocksource/clocksource0/current_clocksource\n\
             to keep it: add clocksource={b} to GRUB_CMDLINE_LINUX in /etc/default/grub and run update-grub \
             (only where {b} is stable: the kernel falls back from tsc when it finds it unreliable)"
        ),
        None => "no fast clock source is available here; on Xen guests ask for tsc (tsc_mode), elsewhere check the \
                 kernel log for `clocksource: ... unstable` and the firmware settings"
            .into(),
    };
    Outcome::Found(Finding {
        id: "clocksource",
        severity,
        title: format!("the clock source is {cur}: reading the time is slow"),
        evidence,
        explanation: "Only tsc, kvm-clock and arch_sys_counter let clock_gettime() run in user space; with xen, hpet or \
                      acpi_pm every time read is a system call or a slow device read. Programs that read the clock \
                      constantly (Redis, databases, the guard's own sampling) lose a large share of their CPU to it. \
                      Redis and OceanBase check for this at start-up."
            .into(),
        fix,
        docs: "https://docs.kernel.org/timers/timekeeping.html",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sev(o: &Outcome) -> Option<Severity> {
        if let Outcome::Found(f) = o { Some(f.severity) } else { None }
    }

    #[test]
    fn limits_line() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max open files            1024                 524288               files     \n";
        assert_eq!(nofile_soft_limit(text), Some(Some(1024)));
        assert_eq!(nofile_soft_limit("Max open files            unlimited            unlimited            files\n"), Some(None));
        assert_eq!(nofile_soft_limit("Max open files   x\n"), None);
        assert_eq!(nofile_soft_limit(""), None);
    }

    fn p(pid: u32, open: u64, limit: Option<u64>) -> FdUse {
        FdUse { pid, comm: format!("p{pid}"), open, soft_limit: limit }
    }

    #[test]
    fn fd_limits_fire_above_80_percent() {
        let f = |procs, file_nr| FdFacts { procs: Ok(procs), skipped: 2, file_nr: Ok(file_nr) };
        assert!(matches!(fd_limits(&f(vec![p(1, 800, Some(1024)), p(2, 10, None)], (757, 2_466_174))), Outcome::Clear(_)));
        let Outcome::Found(x) = fd_limits(&f(vec![p(1, 900, Some(1024)), p(2, 1000, Some(1024))], (757, 2_466_174))) else { panic!() };
        assert_eq!(x.severity, Severity::Warning);
        assert!(x.title.starts_with("2 process(es)") && x.title.contains("p2 (pid 2)"), "{}", x.title);
        assert!(x.fix.contains("LimitNOFILE=65536") && !x.fix.contains("file-max"), "{}", x.fix);
        let Outcome::Found(x) = fd_limits(&f(vec![], (900, 1000))) else { panic!() };
        assert!(x.fix.contains("fs.file-max=2000"), "{}", x.fix);
        assert!(matches!(fd_limits(&FdFacts { procs: Err("no /proc".into()), skipped: 0, file_nr: Ok((1, 2)) }), Outcome::NotChecked(_)));
    }

    #[test]
    fn sysrq_needs_the_signal_bit() {
        assert!(matches!(sysrq(&Ok(1)), Outcome::Clear(_)));
        assert!(matches!(sysrq(&Ok(502)), Outcome::Clear(_)), "502 = 0x1f6 has 0x40");
        let Outcome::Found(x) = sysrq(&Ok(176)) else { panic!() };
        assert_eq!(x.severity, Severity::Info);
        assert!(x.fix.starts_with("sysctl -w kernel.sysrq=240"), "{}", x.fix);
        let Outcome::Found(x) = sysrq(&Ok(438)) else { panic!() };
        assert!(x.fix.starts_with("sysctl -w kernel.sysrq=502"), "{}", x.fix);
        let Outcome::Found(x) = sysrq(&Ok(0)) else { panic!() };
        assert!(x.fix.starts_with("sysctl -w kernel.sysrq=208"), "{}", x.fix);
        assert!(matches!(sysrq(&Err("no sysrq".into())), Outcome::NotChecked(_)));
    }

    #[test]
    fn clock_sources() {
        let avail: Fact<String> = Ok("tsc hpet acpi_pm \n".into());
        assert!(matches!(clocksource(&Ok("kvm-clock\n".into()), &avail), Outcome::Clear(_)));
        let o = clocksource(&Ok("hpet\n".into()), &avail);
        assert_eq!(sev(&o), Some(Severity::Warning));
        let Outcome::Found(x) = o else { panic!() };
        assert!(x.fix.starts_with("echo tsc >"), "{}", x.fix);
        assert_eq!(sev(&clocksource(&Ok("jiffies".into()), &Err("x".into()))), Some(Severity::Info));
        assert!(matches!(clocksource(&Err("gone".into()), &avail), Outcome::NotChecked(_)));
    }
}
