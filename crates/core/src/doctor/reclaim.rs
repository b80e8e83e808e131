//! Rules about reclaim that makes allocating processes wait.
//!
//! Owns `direct-reclaim` (threads entering direct reclaim, `allocstall_*`, and the share of
//! page scanning done by allocating tasks instead of kswapd, judged over the window) and
//! `dirty-limits` (ratio-based dirty limits that grow into gigabytes on large machines,
//! a warning only with dirty pages, throttling or I/O stalls to show for it). Must never
//! read a file itself.

use super::memfacts::{MemFacts, basis, grew, grew_prefix, size, span, sysctl_fix, windowed};
use super::thrash::psi_share;
use super::{Finding, Outcome, Severity, ev};
use crate::units::Kib;

/// `pgscan_direct / (pgscan_direct + pgscan_kswapd)` above this: allocating tasks do a
/// real share of the scanning (doctor-checks.md #9, proposed).
pub const DIRECT_SHARE: f64 = 0.1;

const DOCS_WSF: &str = "https://docs.kernel.org/admin-guide/sysctl/vm.html#watermark-scale-factor";

/// `direct-reclaim`.
pub fn direct_reclaim(f: &MemFacts) -> Outcome {
    let w = match &f.vmstat {
        Ok(w) => w,
        Err(why) => return Outcome::NotChecked(why.clone()),
    };
    // `allocstall` before 4.8, `allocstall_<zone>` since: the prefix sums either.
    let Some(stalls) = grew_prefix(w, "allocstall") else {
        return Outcome::NotChecked("vmstat: no allocstall counters in this kernel".into());
    };
    let direct = grew(w, "pgscan_direct").unwrap_or(0);
    let kswapd = grew(w, "pgscan_kswapd").unwrap_or(0);
    let share = |d: u64, k: u64| if d + k > 0 { d as f64 / (d + k) as f64 } else { 0.0 };
    let now_share = share(direct, kswapd);
    let boot_share = share(w.total("pgscan_direct").unwrap_or(0), w.total("pgscan_kswapd").unwrap_or(0));
    let mut evidence = vec![
        basis(w),
        ev("allocstall_* (threads that entered direct reclaim)", format!("{stalls} {}", span(w))),
        w.evidence("pgscan_direct"),
        w.evidence("pgscan_kswapd"),
        ev("direct share of scanning", format!("{:.0} % {} ({:.0} % since boot)", now_share * 100.0, span(w), boot_share * 100.0)),
        w.evidence("kswapd_low_wmark_hit_quickly"),
    ];
    if let Ok(p) = &f.pressure
        && let Some(some) = p.stall_pct("memory some total_us")
    {
        evidence.push(ev("PSI memory some", format!("{some:.1} % of the window")));
    }
    let wsf = f.number("vm.watermark_scale_factor");
    let min_free = f.number("vm.min_free_kbytes");
    for (k, v) in [("vm.watermark_scale_factor", &wsf), ("vm.min_free_kbytes", &min_free)] {
        if let Ok(v) = v {
            evidence.push(ev(k, v));
        }
    }
    // Without a window every counter is a total since boot, and a few stalls since boot are
    // normal on any machine that ever filled its page cache: only the share counts then.
    let now = if windowed(w) { stalls > 0 || now_share > DIRECT_SHARE } else { boot_share > DIRECT_SHARE };
    let (severity, title) = if now {
        let when = if windowed(w) { "now".to_string() } else { "since boot (no window to tell whether it is still going on)".into() };
        (
            Severity::Warning,
            format!("allocating tasks reclaim memory themselves {when}: {stalls} stalls, {:.0} % of scanning", now_share * 100.0),
        )
    } else if windowed(w) && boot_share > DIRECT_SHARE {
        (Severity::Info, format!("{:.0} % of page scanning since boot was direct reclaim (none in the window)", boot_share * 100.0))
    } else {
        return Outcome::Clear(evidence);
    };
    let fix = match wsf {
        Ok(v) if v >= 200 => {
            let mf = min_free.unwrap_or(0);
            let cap = f.meminfo.as_ref().map_or(u64::MAX, |m| m.total().0 / 50);
            let target = mf.saturating_mul(3).div_ceil(2).min(cap).max(mf);
            sysctl_fix("90-thrashguard-direct-reclaim", &[("vm.min_free_kbytes", target.to_string())])
        }
        _ => sysctl_fix("90-thrashguard-direct-reclaim", &[("vm.watermark_scale_factor", "200".into())]),
    } + "\nif much of memory is dirty page cache, also bound the dirty limits (see dirty-limits)";
    Outcome::Found(Finding {
        id: "direct-reclaim",
        severity,
        title,
        evidence,
        explanation: "When free memory falls below the low watermark before kswapd has caught up, the allocating \
                      thread has to reclaim pages itself (direct reclaim) and waits while it does: a latency \
                      spike in whatever it was doing. The kernel documentation names a high allocstall rate as \
                      the reason to raise watermark_scale_factor, which makes kswapd start earlier and keep a \
                      larger gap free."
            .into(),
        fix,
        docs: DOCS_WSF,
    })
}

/// A dirty limit above this is "huge": writers may pile up this much before they block
/// (proposed; EDB's TPA sets 4 GB, tuned's latency profiles 10 % of small machines).
pub const DIRTY_BOUND: Kib = Kib(4 << 20);
/// Dirty + under writeback at least this much is evidence the limit is being used.
pub const DIRTY_LARGE: Kib = Kib(1 << 20);
/// PSI io full over the window, percent, that counts as evidence.
pub const IO_FULL_PCT: f64 = 5.0;
/// What the fix proposes: background writeback from 256 MiB, writers blocked at 1 GiB.
const PROPOSED: [(&str, u64); 2] = [("vm.dirty_background_bytes", 256 << 20), ("vm.dirty_bytes", 1 << 30)];

/// The effective threshold of a `_bytes` / `_ratio` pair (bytes win when set), described.
fn threshold(f: &MemFacts, bytes: &str, ratio: &str, total: Kib) -> Result<(Kib, String), String> {
    let b = f.number(bytes)?;
    if b > 0 {
        return Ok((Kib(b / 1024), format!("{} ({bytes})", size(Kib(b / 1024)))));
    }
    let r = f.number(ratio)?;
    let k = Kib(total.0.saturating_mul(r) / 100);
    Ok((k, format!("up to {} ({ratio} = {r} % of {} RAM)", size(k), size(total))))
}

/// `dirty-limits`.
pub fn dirty_limits(f: &MemFacts) -> Outcome {
    let m = match &f.meminfo {
        Ok(m) => m,
        Err(why) => return Outcome::NotChecked(why.clone()),
    };
    let total = m.total();
    let (limit, limit_text) = match threshold(f, "vm.dirty_bytes", "vm.dirty_ratio", total) {
        Ok(t) => t,
        Err(why) => return Outcome::NotChecked(why),
    };
    let mut evidence = vec![ev("writers block at", limit_text)];
    if let Ok((_, bg)) = threshold(f, "vm.dirty_background_bytes", "vm.dirty_background_ratio", total) {
        evidence.push(ev("background writeback starts at", bg));
    }
    let dirty = m.kib("Dirty").unwrap_or_default().saturating_add(m.kib("Writeback").unwrap_or_default());
    evidence.push(ev("Dirty + Writeback now", size(dirty)));
    let mut harm = vec![];
    if dirty >= DIRTY_LARGE {
        harm.push(format!("{} dirty or under writeback", size(dirty)));
    }
    if let Ok(w) = &f.vmstat {
        evidence.push(w.evidence("pgscan_direct_throttle"));
        if let Some(t) = grew(w, "pgscan_direct_throttle").filter(|&t| t > 0) {
            harm.push(format!("reclaim throttled on writeback {t} times {}", span(w)));
        }
    }
    if let Ok(Some(io)) = psi_share(f, "io full total_us") {
        let span = f.pressure.as_ref().map_or(String::new(), span);
        evidence.push(ev("PSI io full", format!("{io:.1} % {span}")));
        if io >= IO_FULL_PCT {
            harm.push(format!("every task waited for I/O {io:.1} % of the time {span}"));
        }
    }
    if limit <= DIRTY_BOUND {
        return Outcome::Clear(evidence);
    }
    let (severity, title) = if harm.is_empty() {
        (Severity::Info, format!("dirty limit of {} is large (no sign of harm now)", size(limit)))
    } else {
        (Severity::Warning, format!("dirty limit of {}, and it shows: {}", size(limit), harm.join("; ")))
    };
    Outcome::Found(Finding {
        id: "dirty-limits",
        severity,
        title,
        evidence,
        explanation: "Ratio-based dirty limits scale with RAM: on a large machine tens of gigabytes of written data \
                      can sit in memory before writers are made to wait. Writeback then has that much to flush \
                      at disk speed, writers block for seconds at a time, and reclaim stalls on pages it cannot \
                      drop until they are written. Absolute limits keep the backlog to what the disk clears quickly."
            .into(),
        fix:
            sysctl_fix("90-thrashguard-dirty-limits", &PROPOSED.map(|(k, v)| (k, v.to_string())))
                + "
(setting the _bytes form zeroes the _ratio form; a write-heavy server may want larger values: size them to a few seconds of disk bandwidth)",
        docs: "https://docs.kernel.org/admin-guide/sysctl/vm.html#dirty-bytes",
    })
}

#[cfg(test)]
mod tests {
    use super::super::memfacts::Fields;
    use super::super::window::{Counters, Window};
    use super::*;

    pub(crate) fn window(first: &[(&str, u64)], last: &[(&str, u64)], seconds: f64) -> Window {
        let mk = |v: &[(&str, u64)]| {
            let mut c = Counters::default();
            for (k, n) in v {
                c.set(k, *n);
            }
            c
        };
        Window { first: mk(first), last: mk(last), seconds }
    }

    fn facts(first: &[(&str, u64)], last: &[(&str, u64)], seconds: f64) -> MemFacts {
        let mut f = MemFacts::unread();
        f.vmstat = Ok(window(first, last, seconds));
        f.set("vm.watermark_scale_factor", "10");
        f.set("vm.min_free_kbytes", "67584");
        let mut m = Fields::default();
        m.set("MemTotal", 24 * 1024 * 1024);
        f.meminfo = Ok(m);
        f
    }

    fn found(o: Outcome) -> Finding {
        match o {
            Outcome::Found(f) => f,
            other => panic!("{other:?}"),
        }
    }

    const QUIET: &[(&str, u64)] =
        &[("allocstall_normal", 5), ("allocstall_movable", 1), ("pgscan_direct", 100), ("pgscan_kswapd", 100_000)];

    #[test]
    fn fires_on_stalls_in_the_window() {
        let later = [("allocstall_normal", 9), ("allocstall_movable", 1), ("pgscan_direct", 900), ("pgscan_kswapd", 100_500)];
        let f = found(direct_reclaim(&facts(QUIET, &later, 5.0)));
        assert_eq!(f.severity, Severity::Warning);
        assert!(f.title.contains("4 stalls"), "{}", f.title);
        assert!(f.fix.starts_with("sysctl -w vm.watermark_scale_factor=200"), "{}", f.fix);
        assert!(f.fix.contains("/etc/sysctl.d/90-thrashguard-direct-reclaim.conf"));
        // already at 200: raise the reserve instead, by half
        let mut fa = facts(QUIET, &later, 5.0);
        fa.set("vm.watermark_scale_factor", "200");
        assert!(found(direct_reclaim(&fa)).fix.starts_with("sysctl -w vm.min_free_kbytes=101376"));
    }

    #[test]
    fn fires_on_a_direct_share_without_stall_counts() {
        let later = [("allocstall_normal", 5), ("allocstall_movable", 1), ("pgscan_direct", 400), ("pgscan_kswapd", 101_000)];
        // 300 of 1300 scanned pages were direct: 23 %
        assert_eq!(found(direct_reclaim(&facts(QUIET, &later, 5.0))).severity, Severity::Warning);
    }

    #[test]
    fn quiet_window_is_clear_or_history() {
        assert!(matches!(direct_reclaim(&facts(QUIET, QUIET, 5.0)), Outcome::Clear(_)));
        let heavy_past = [("allocstall_normal", 500), ("pgscan_direct", 50_000), ("pgscan_kswapd", 100_000)];
        let f = found(direct_reclaim(&facts(&heavy_past, &heavy_past, 5.0)));
        assert_eq!(f.severity, Severity::Info);
    }

    #[test]
    fn without_a_window_totals_since_boot_and_says_so() {
        let heavy_past = [("allocstall_normal", 500), ("pgscan_direct", 50_000), ("pgscan_kswapd", 100_000)];
        let f = found(direct_reclaim(&facts(&[], &heavy_past, 0.0)));
        assert_eq!(f.severity, Severity::Warning, "a third of all scanning since boot was direct");
        assert!(f.title.contains("since boot"), "{}", f.title);
        assert!(f.evidence[0].value.contains("--window 0"), "{:?}", f.evidence);
        // 6 stalls since boot, 0.1 % of scanning: normal
        assert!(matches!(direct_reclaim(&facts(&[], QUIET, 0.0)), Outcome::Clear(_)));
    }

    #[test]
    fn not_checked_without_vmstat() {
        let mut f = facts(QUIET, QUIET, 5.0);
        f.vmstat = Err("vmstat: no such file".into());
        assert_eq!(direct_reclaim(&f), Outcome::NotChecked("vmstat: no such file".into()));
        let f = facts(&[("pgscan_direct", 1)], &[("pgscan_direct", 1)], 5.0);
        assert!(matches!(direct_reclaim(&f), Outcome::NotChecked(_)));
    }
    fn dirty(ratio: &str, bytes: &str, ram_gib: u64, dirty_mib: u64) -> MemFacts {
        let mut f = MemFacts::unread();
        f.set("vm.dirty_ratio", ratio);
        f.set("vm.dirty_bytes", bytes);
        f.set("vm.dirty_background_ratio", "10");
        f.set("vm.dirty_background_bytes", "0");
        let mut m = Fields::default();
        m.set("MemTotal", ram_gib << 20);
        m.set("Dirty", dirty_mib << 10);
        m.set("Writeback", 0);
        f.meminfo = Ok(m);
        f.vmstat = Ok(window(&[("pgscan_direct_throttle", 0)], &[("pgscan_direct_throttle", 0)], 5.0));
        f
    }

    #[test]
    fn dirty_limits_by_size_and_evidence() {
        assert!(matches!(dirty_limits(&dirty("20", "0", 16, 2000)), Outcome::Clear(_)), "3.2 GiB");
        let g = found(dirty_limits(&dirty("20", "0", 256, 10)));
        assert_eq!(g.severity, Severity::Info);
        assert!(g.title.contains("51.2 GiB"), "{}", g.title);
        let g = found(dirty_limits(&dirty("20", "0", 256, 3000)));
        assert_eq!(g.severity, Severity::Warning);
        assert!(g.fix.starts_with("sysctl -w vm.dirty_background_bytes=268435456\nsysctl -w vm.dirty_bytes=1073741824"), "{}", g.fix);
        let mut f = dirty("20", "0", 256, 10);
        f.vmstat = Ok(window(&[("pgscan_direct_throttle", 0)], &[("pgscan_direct_throttle", 3)], 5.0));
        assert_eq!(found(dirty_limits(&f)).severity, Severity::Warning);
        // absolute bytes win over the ratio
        assert!(matches!(dirty_limits(&dirty("20", "1073741824", 256, 3000)), Outcome::Clear(_)));
    }

    #[test]
    fn dirty_limits_not_checked() {
        let mut f = dirty("20", "0", 16, 0);
        f.settings.insert("vm.dirty_ratio", Err("sys/vm/dirty_ratio: no such file".into()));
        assert!(matches!(dirty_limits(&f), Outcome::NotChecked(_)));
        let mut f = dirty("20", "0", 16, 0);
        f.meminfo = Err("meminfo: gone".into());
        assert!(matches!(dirty_limits(&f), Outcome::NotChecked(_)));
    }
}
