//! Victim ranking: which process to rescue the scope from.
//!
//! Owns the eligibility rules (never PID 1, kernel threads, thrashguard itself, processes
//! with oom_score_adj -1000, zombies) and the order of the rest. Works on plain
//! [`Candidate`] records filled by the edge's /proc scan and writes the order into a
//! buffer the caller preallocated. It must never read /proc or signal anything: the edge
//! re-checks the identity of whatever this module names before acting.
//!
//! Default order ("footprint"): RSS + swap, weighed by who is actually faulting and
//! growing between two scans: `footprint x (1 + share of major faults + share of
//! growth) x preference`, where the shares are over all eligible candidates, `prefer`
//! multiplies by 4 and `avoid` by 1/4, and a NUMA node scope multiplies by the share of
//! the process's memory on that node. A big idle process thus loses to a slightly
//! smaller one that faults and grows. "oom_score" ranks by the kernel's oom_score alone.
//! "growth" (off by default until the lab shows it helps) ranks by how fast RSS + swap grew
//! between the last two scans, weighed by preference and scope share like the default;
//! the default order breaks ties, so without a previous scan it is the default order.

use serde::{Deserialize, Serialize};

use crate::units::{Comm, Kib, Pid, ProcId};

/// How `prefer` / `avoid` patterns matched a candidate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Preference {
    /// No pattern matched.
    #[default]
    Neutral,
    /// A `prefer` pattern matched: ranked 4x higher.
    Prefer,
    /// An `avoid` pattern matched: ranked 4x lower.
    Avoid,
}

/// One process as the scan saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Identity (pid + start time).
    pub id: ProcId,
    /// Name.
    pub comm: Comm,
    /// RSS + swap.
    pub footprint: Kib,
    /// Swapped-out part of the footprint.
    pub swap: Kib,
    /// Major faults since the previous scan of the same process (0 when unknown).
    pub majflt_delta: u64,
    /// Footprint change since the previous scan, KiB (0 when unknown).
    pub growth_kib: i64,
    /// /proc/PID/oom_score_adj (-1000..=1000), where read.
    pub oom_score_adj: Option<i16>,
    /// /proc/PID/oom_score, where read.
    pub oom_score: Option<u32>,
    /// A kernel thread (PF_KTHREAD).
    pub kernel_thread: bool,
    /// Zombie or dead.
    pub exiting: bool,
    /// prefer / avoid match.
    pub preference: Preference,
    /// Share of its memory inside the pressured scope, permille (a NUMA node scope weighs
    /// each process by how much of it sits on that node; 1000 elsewhere).
    pub scope_share_permille: u16,
}

/// Why a candidate may not be a victim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ineligible {
    /// PID 1.
    Init,
    /// A kernel thread: no mm to free.
    KernelThread,
    /// thrashguard itself.
    Itself,
    /// oom_score_adj -1000.
    OomImmune,
    /// Already exiting.
    Exiting,
    /// Uses no memory.
    NoMemory,
}

/// The ranking method.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RankBy {
    /// Footprint weighed by faults and growth (default).
    #[default]
    Footprint,
    /// The kernel's oom_score, footprint as tie-break.
    OomScore,
    /// Growth of RSS + swap between the last two scans (preference and scope share
    /// weigh it), the default order as tie-break.
    Growth,
}

/// Whether `c` may be a victim; `own` is thrashguard's pid.
pub fn eligibility(c: &Candidate, own: Pid) -> Result<(), Ineligible> {
    if c.id.pid == Pid(1) {
        Err(Ineligible::Init)
    } else if c.kernel_thread {
        Err(Ineligible::KernelThread)
    } else if c.id.pid == own {
        Err(Ineligible::Itself)
    } else if c.oom_score_adj == Some(-1000) {
        Err(Ineligible::OomImmune)
    } else if c.exiting {
        Err(Ineligible::Exiting)
    } else if c.footprint.0 == 0 {
        Err(Ineligible::NoMemory)
    } else {
        Ok(())
    }
}

/// Sums over eligible candidates, for the shares in [`badness`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Totals {
    /// Sum of major-fault deltas.
    pub majflt: u64,
    /// Sum of positive growth, KiB.
    pub growth: u64,
}

impl Totals {
    /// Over the eligible candidates.
    pub fn of(cands: &[Candidate], own: Pid) -> Totals {
        cands.iter().filter(|c| eligibility(c, own).is_ok()).fold(Totals::default(), |t, c| Totals {
            majflt: t.majflt.saturating_add(c.majflt_delta),
            growth: t.growth.saturating_add(c.growth_kib.max(0) as u64),
        })
    }
}

/// The default ranking score of one candidate (higher: chosen first).
pub fn badness(c: &Candidate, totals: &Totals) -> f64 {
    let share = |part: u64, all: u64| if all == 0 { 0.0 } else { part as f64 / all as f64 };
    let weight = match c.preference {
        Preference::Neutral => 1.0,
        Preference::Prefer => 4.0,
        Preference::Avoid => 0.25,
    };
    let in_scope = f64::from(c.scope_share_permille.min(1000)) / 1000.0;
    c.footprint.0 as f64
        * in_scope
        * (1.0 + share(c.majflt_delta, totals.majflt) + share(c.growth_kib.max(0) as u64, totals.growth))
        * weight
}

/// The "growth" ranking score: positive growth in KiB between the last two scans, weighed
/// by preference and scope share as [`badness`] weighs the footprint; 0 for a shrinking or
/// unknown process.
pub fn growth_score(c: &Candidate) -> f64 {
    let weight = match c.preference {
        Preference::Neutral => 1.0,
        Preference::Prefer => 4.0,
        Preference::Avoid => 0.25,
    };
    c.growth_kib.max(0) as f64 * f64::from(c.scope_share_permille.min(1000)) / 1000.0 * weight
}

/// Write the indices of eligible candidates into `order`, best victim first. `order` is
/// cleared first; give it enough capacity and this allocates nothing.
pub fn rank(cands: &[Candidate], by: RankBy, own: Pid, order: &mut Vec<u32>) {
    order.clear();
    order.extend((0..cands.len() as u32).filter(|&i| eligibility(&cands[i as usize], own).is_ok()));
    let totals = Totals::of(cands, own);
    let key = |i: &u32| {
        let c = &cands[*i as usize];
        match by {
            RankBy::Footprint => (badness(c, &totals), c.oom_score.unwrap_or(0) as f64, c.footprint.0),
            RankBy::OomScore => (c.oom_score.unwrap_or(0) as f64, badness(c, &totals), c.footprint.0),
            RankBy::Growth => (growth_score(c), badness(c, &totals), c.footprint.0),
        }
    };
    // Sort descending by key, then by pid ascending so equal keys give a stable, replayable order.
    order.sort_unstable_by(|a, b| {
        let (ka, kb) = (key(a), key(b));
        kb.0.total_cmp(&ka.0)
            .then(kb.1.total_cmp(&ka.1))
            .then(kb.2.cmp(&ka.2))
            .then(cands[*a as usize].id.pid.cmp(&cands[*b as usize].id.pid))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(pid: u32, footprint_mib: u64) -> Candidate {
        Candidate {
            id: ProcId { pid: Pid(pid), start_time: 100 + u64::from(pid) },
            comm: Comm::new(b"p"),
            footprint: Kib(footprint_mib * 1024),
            swap: Kib(0),
            majflt_delta: 0,
            growth_kib: 0,
            oom_score_adj: Some(0),
            oom_score: None,
            kernel_thread: false,
            exiting: false,
            preference: Preference::Neutral,
            scope_share_permille: 1000,
        }
    }

    fn ranked(cands: &[Candidate], by: RankBy) -> Vec<u32> {
        let mut order = Vec::with_capacity(cands.len());
        rank(cands, by, Pid(999), &mut order);
        order.iter().map(|&i| cands[i as usize].id.pid.0).collect()
    }

    #[test]
    fn never_init_kthread_self_or_immune() {
        let mut cands = vec![cand(1, 5000), cand(2, 4000), cand(999, 3000), cand(10, 2000), cand(11, 1000), cand(12, 10), cand(13, 0)];
        cands[1].kernel_thread = true;
        cands[3].oom_score_adj = Some(-1000);
        cands[5].exiting = true;
        assert_eq!(ranked(&cands, RankBy::Footprint), vec![11]);
    }

    #[test]
    fn largest_footprint_first() {
        let cands = vec![cand(10, 100), cand(11, 300), cand(12, 200)];
        assert_eq!(ranked(&cands, RankBy::Footprint), vec![11, 12, 10]);
    }

    #[test]
    fn faulting_grower_beats_bigger_idle() {
        let mut cands = vec![cand(10, 900), cand(11, 600)];
        cands[1].majflt_delta = 5000;
        cands[1].growth_kib = 200 * 1024;
        assert_eq!(ranked(&cands, RankBy::Footprint), vec![11, 10]);
    }

    #[test]
    fn prefer_and_avoid() {
        let mut cands = vec![cand(10, 900), cand(11, 300), cand(12, 1000)];
        cands[1].preference = Preference::Prefer;
        cands[2].preference = Preference::Avoid;
        assert_eq!(ranked(&cands, RankBy::Footprint), vec![11, 10, 12]);
    }

    #[test]
    fn node_share_weighs_the_footprint() {
        let mut cands = vec![cand(10, 1000), cand(11, 400)];
        cands[0].scope_share_permille = 100; // 100 MiB on the pressured node
        cands[1].scope_share_permille = 1000; // all 400 on it
        assert_eq!(ranked(&cands, RankBy::Footprint), vec![11, 10]);
    }

    #[test]
    fn oom_score_mode_and_ties() {
        let mut cands = vec![cand(10, 100), cand(11, 100), cand(12, 50)];
        cands[2].oom_score = Some(900);
        cands[0].oom_score = Some(10);
        cands[1].oom_score = Some(10);
        assert_eq!(ranked(&cands, RankBy::OomScore), vec![12, 10, 11]);
        assert_eq!(ranked(&cands, RankBy::Footprint), vec![10, 11, 12]);
    }

    #[test]
    fn growth_mode() {
        // without growth (first scan) it is the default order
        let mut cands = vec![cand(10, 900), cand(11, 100), cand(12, 500)];
        assert_eq!(ranked(&cands, RankBy::Growth), ranked(&cands, RankBy::Footprint));
        // the small fast grower first, then the slow grower; a shrinking big one last
        cands[1].growth_kib = 30 * 1024;
        cands[2].growth_kib = 10 * 1024;
        cands[0].growth_kib = -200 * 1024;
        assert_eq!(ranked(&cands, RankBy::Growth), vec![11, 12, 10]);
        // avoid weighs growth too; the never-victims stay out
        cands[1].preference = Preference::Avoid;
        assert_eq!(ranked(&cands, RankBy::Growth), vec![12, 11, 10]);
        cands[2].oom_score_adj = Some(-1000);
        assert_eq!(ranked(&cands, RankBy::Growth), vec![11, 10]);
        let parsed: RankBy = toml::from_str::<toml::Table>("r = \"growth\"").expect("toml")["r"].clone().try_into().expect("rank_by");
        assert_eq!(parsed, RankBy::Growth);
    }
}
