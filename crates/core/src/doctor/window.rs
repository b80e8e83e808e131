//! Counters read twice, `--window` seconds apart: the rates doctor's rules judge by.
//!
//! A single snapshot of /proc/vmstat or /proc/net/netstat only says what happened since
//! boot; whether it is happening *now* takes two readings. Owns the named-counter set
//! ([`Counters`]: every counter of vmstat, netstat/snmp and the PSI totals, by one flat
//! name) and the pair of readings ([`Window`]) with delta, rate and evidence helpers. The
//! edge reads the files; this module only parses text it is given. Must never read a file,
//! sleep or look at a clock.

use std::collections::BTreeMap;

use super::{Evidence, ev};
use crate::parse::{ParseError, counter_lines, numbered_lines, parse_u64, psi, words};

/// Counters by name: `pgscan_direct` (vmstat), `TcpExt ListenOverflows` (netstat and snmp:
/// group, space, name), `memory full total_us` (PSI: resource, kind, `total_us`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters(BTreeMap<String, u64>);

impl Counters {
    /// The value of `name`, if the kernel has it.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.0.get(name).copied()
    }

    /// How many counters there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Set one counter (tests build counter sets this way).
    pub fn set(&mut self, name: &str, value: u64) {
        self.0.insert(name.to_string(), value);
    }

    /// Add every counter of a /proc/vmstat text (`name value` per line).
    pub fn add_vmstat(&mut self, file: &'static str, buf: &[u8]) -> Result<(), ParseError> {
        for c in counter_lines(file, buf) {
            let (name, value) = c?;
            self.0.insert(String::from_utf8_lossy(name).into_owned(), value);
        }
        Ok(())
    }

    /// Add every counter of a /proc/net/netstat or /proc/net/snmp text (a header line of
    /// names, then a value line of the same group), as `Group Name`.
    pub fn add_netstat(&mut self, file: &'static str, buf: &[u8]) -> Result<(), ParseError> {
        let mut lines = numbered_lines(buf);
        while let Some((no, header)) = lines.next() {
            let mut hw = words(header);
            let Some(group) = hw.next().and_then(|g| g.strip_suffix(b":")) else { continue };
            let Some((vno, values)) = lines.next() else { return Err(ParseError::new(file, no, "header without a value line")) };
            let mut vw = words(values);
            if vw.next().and_then(|g| g.strip_suffix(b":")) != Some(group) {
                return Err(ParseError::new(file, vno, "value line of another group"));
            }
            let group = String::from_utf8_lossy(group);
            for name in hw {
                let value = vw.next().ok_or(ParseError::new(file, vno, "fewer values than names"))?;
                // snmp has signed fields (Tcp MaxConn -1): not counters, skipped.
                if let Some(v) = parse_u64(value) {
                    self.0.insert(format!("{group} {}", String::from_utf8_lossy(name)), v);
                }
            }
        }
        Ok(())
    }

    /// Add /proc/net/softnet_stat summed over CPUs as `softnet dropped` and
    /// `softnet time_squeeze`.
    pub fn add_softnet(&mut self, text: &str) -> Result<(), String> {
        let (dropped, squeezed) = super::net::parse_softnet(text)?;
        self.0.insert("softnet dropped".into(), dropped);
        self.0.insert("softnet time_squeeze".into(), squeezed);
        Ok(())
    }

    /// Add the `total=` stall counters of a /proc/pressure/RESOURCE text as
    /// `RESOURCE some total_us` and `RESOURCE full total_us`.
    pub fn add_pressure(&mut self, resource: &str, file: &'static str, buf: &[u8]) -> Result<(), ParseError> {
        let p = psi::parse(file, buf)?;
        self.0.insert(format!("{resource} some total_us"), p.some.total.0);
        if let Some(full) = p.full {
            self.0.insert(format!("{resource} full total_us"), full.total.0);
        }
        Ok(())
    }
}

/// Two readings of the same counters, `seconds` apart. `seconds` 0 (`--window 0`): one
/// reading only, so every delta and rate is unknown and rules judge by totals since boot.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Window {
    /// The first reading.
    pub first: Counters,
    /// The second (the same as the first when `seconds` is 0).
    pub last: Counters,
    /// Time between them.
    pub seconds: f64,
}

impl Window {
    /// One reading: no rates.
    pub fn single(c: Counters) -> Window {
        Window { first: c.clone(), last: c, seconds: 0.0 }
    }

    /// The latest value (since boot).
    pub fn total(&self, name: &str) -> Option<u64> {
        self.last.get(name)
    }

    /// How much `name` grew over the window; `None` without a window or without the
    /// counter. A counter that went backwards (wrapped, or reset) counts as 0.
    pub fn delta(&self, name: &str) -> Option<u64> {
        if self.seconds <= 0.0 {
            return None;
        }
        Some(self.last.get(name)?.saturating_sub(self.first.get(name)?))
    }

    /// The sum of the deltas of every counter whose name starts with `prefix`
    /// (`allocstall_` sums the per-zone counters); `None` when there is none.
    pub fn delta_prefix(&self, prefix: &str) -> Option<u64> {
        if self.seconds <= 0.0 {
            return None;
        }
        let mut sum = None;
        for (name, &last) in self.last.0.range(prefix.to_string()..).take_while(|(n, _)| n.starts_with(prefix)) {
            let first = self.first.get(name).unwrap_or(last);
            sum = Some(sum.unwrap_or(0u64).saturating_add(last.saturating_sub(first)));
        }
        sum
    }

    /// The sum of the totals of every counter whose name starts with `prefix`.
    pub fn total_prefix(&self, prefix: &str) -> Option<u64> {
        let mut sum = None;
        for (_, &v) in self.last.0.range(prefix.to_string()..).take_while(|(n, _)| n.starts_with(prefix)) {
            sum = Some(sum.unwrap_or(0u64).saturating_add(v));
        }
        sum
    }

    /// Per second over the window.
    pub fn rate(&self, name: &str) -> Option<f64> {
        self.delta(name).map(|d| d as f64 / self.seconds)
    }

    /// Share of the window spent stalled, in percent, from a PSI `total_us` counter.
    pub fn stall_pct(&self, name: &str) -> Option<f64> {
        self.delta(name).map(|us| us as f64 / (self.seconds * 1e6) * 100.0)
    }

    /// Evidence for a counter: `total since boot`, plus `(+delta in Ns, rate/s)` with a window.
    pub fn evidence(&self, name: &str) -> Evidence {
        let value = match (self.total(name), self.delta(name)) {
            (None, _) => "not in this kernel".to_string(),
            (Some(t), None) => format!("{t} since boot"),
            (Some(t), Some(d)) => format!("{t} since boot, +{d} in {:.0} s ({:.1}/s)", self.seconds, d as f64 / self.seconds),
        };
        ev(name, value)
    }
}

/// The counter families doctor samples, each read twice over the window (or why it could
/// not be read).
#[derive(Clone, Debug, PartialEq)]
pub struct Sampled {
    /// /proc/vmstat.
    pub vmstat: super::Fact<Window>,
    /// /proc/net/netstat and /proc/net/snmp together (`TcpExt …`, `Udp …`).
    pub net: super::Fact<Window>,
    /// /proc/pressure/{memory,io,cpu} totals (`memory full total_us`, …).
    pub pressure: super::Fact<Window>,
}

impl Default for Sampled {
    fn default() -> Sampled {
        let none = || Err("not sampled".to_string());
        Sampled { vmstat: none(), net: none(), pressure: none() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_family_under_one_name_space() {
        let mut c = Counters::default();
        c.add_vmstat("vmstat", b"pgscan_direct 10\nallocstall_normal 3\nallocstall_movable 4\n").unwrap();
        c.add_netstat("net/netstat", b"TcpExt: ListenOverflows ListenDrops\nTcpExt: 5 6\n").unwrap();
        c.add_netstat("net/snmp", b"Tcp: RtoAlgorithm MaxConn\nTcp: 1 -1\nUdp: RcvbufErrors\nUdp: 2\n").unwrap();
        c.add_pressure(
            "memory",
            "pressure/memory",
            b"some avg10=0.00 avg60=0.00 avg300=0.00 total=100\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=40\n",
        )
        .unwrap();
        assert_eq!(c.get("pgscan_direct"), Some(10));
        assert_eq!(c.get("TcpExt ListenDrops"), Some(6));
        assert_eq!(c.get("Tcp MaxConn"), None, "signed fields are not counters");
        assert_eq!(c.get("Udp RcvbufErrors"), Some(2));
        assert_eq!(c.get("memory full total_us"), Some(40));
        assert!(c.add_netstat("net/netstat", b"TcpExt: A B\nTcpExt: 1\n").is_err());
        assert!(c.add_netstat("net/netstat", b"TcpExt: A B\nIpExt: 1 2\n").is_err());
    }

    #[test]
    fn deltas_and_rates_need_a_window() {
        let mut a = Counters::default();
        a.add_vmstat("vmstat", b"pgscan_direct 10\nallocstall_normal 3\nallocstall_movable 4\nwrapped 9\n").unwrap();
        let mut b = Counters::default();
        b.add_vmstat("vmstat", b"pgscan_direct 60\nallocstall_normal 5\nallocstall_movable 4\nwrapped 2\nnew 7\n").unwrap();
        let w = Window { first: a.clone(), last: b, seconds: 5.0 };
        assert_eq!(w.delta("pgscan_direct"), Some(50));
        assert_eq!(w.rate("pgscan_direct"), Some(10.0));
        assert_eq!(w.delta("wrapped"), Some(0));
        assert_eq!(w.delta("new"), None);
        assert_eq!(w.delta_prefix("allocstall_"), Some(2));
        assert_eq!(w.total_prefix("allocstall_"), Some(9));
        assert_eq!(w.delta_prefix("nothing_"), None);
        assert_eq!(w.evidence("pgscan_direct").value, "60 since boot, +50 in 5 s (10.0/s)");
        let one = Window::single(a);
        assert_eq!(one.delta("pgscan_direct"), None);
        assert_eq!(one.delta_prefix("allocstall_"), None);
        assert_eq!(one.evidence("pgscan_direct").value, "10 since boot");
        assert_eq!(one.evidence("absent").value, "not in this kernel");
    }

    #[test]
    fn stall_share_from_psi_totals() {
        let mut a = Counters::default();
        a.set("memory full total_us", 1_000_000);
        let mut b = a.clone();
        b.set("memory full total_us", 2_000_000);
        let w = Window { first: a, last: b, seconds: 4.0 };
        assert_eq!(w.stall_pct("memory full total_us"), Some(25.0));
    }
}
