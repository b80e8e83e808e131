//! Parsers on real /proc files captured from several kernels (tests/fixtures/proc/<kernel>/,
//! each with a SOURCE.md), and on every truncation and corruption of them.
// The test harness loads fixtures from disk; the crate under test never does.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use thrashguard_core::parse::{self, meminfo, pid, psi, vmstat};
use thrashguard_core::snapshot::Snapshot;
use thrashguard_core::units::{Kib, Micros, Pid};

fn dir(kernel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/proc").join(kernel)
}

fn read(kernel: &str, file: &str) -> Vec<u8> {
    std::fs::read(dir(kernel).join(file)).unwrap_or_else(|e| panic!("{kernel}/{file}: {e}"))
}

fn all_files() -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/proc");
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_none() {
                let rel = p.strip_prefix(&root).expect("prefix").display().to_string();
                out.push((rel, std::fs::read(&p).expect("read")));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn host_6_18_has_everything() {
    let k = "6.18.44-host";
    let m = meminfo::parse("meminfo", &read(k, "meminfo")).expect("meminfo");
    assert!(m.mem_total > Kib(1024 * 1024));
    assert!(m.mem_available.is_some() && m.zswap.is_some());
    let v = vmstat::parse("vmstat", &read(k, "vmstat")).expect("vmstat");
    assert!(v.workingset_refault_anon.is_some() && v.workingset_refault_file.is_some());
    assert!(v.allocstall.is_some() && v.pgscan_direct.is_some() && v.oom_kill.is_some());
    let p = psi::parse("pressure/memory", &read(k, "pressure/memory")).expect("psi");
    assert!(p.full.is_some());
    psi::parse("pressure/io", &read(k, "pressure/io")).expect("psi io");
    let st = pid::parse_stat(&read(k, "pid/stat")).expect("stat");
    assert!(!st.is_kernel_thread() && !st.is_exiting() && st.start_time > 0);
    let status = pid::parse_status(&read(k, "pid/status")).expect("status");
    assert!(status.vm_rss.is_some() && status.vm_swap.is_some());
    let kt = pid::parse_stat(&read(k, "kthread/stat")).expect("kthread stat");
    assert!(kt.is_kernel_thread());
    assert_eq!(kt.pid, Pid(2));
    let kts = pid::parse_status(&read(k, "kthread/status")).expect("kthread status");
    assert_eq!(kts.vm_rss, None, "a kernel thread has no mm");
    let z = pid::parse_stat(&read(k, "zombie/stat")).expect("zombie stat");
    assert!(z.is_exiting());
}

#[test]
fn debian_6_1_guest_mid_thrash() {
    let k = "6.1.0-50-amd64";
    let s = Snapshot::parse(Micros(0), Some(&read(k, "pressure/memory")), &read(k, "meminfo"), &read(k, "vmstat")).expect("snapshot");
    assert_eq!(s.mem.mem_available, Some(Kib(0)));
    assert!(s.psi.and_then(|p| p.full).is_some_and(|f| f.avg10 > 1000), "full avg10 above 10 %");
    assert!(s.vm.refaults().is_some() && s.vm.pswpin.is_some());
    let sample = s.scope_sample();
    assert!(sample.stall.is_some() && sample.swap_free < sample.swap_total);
}

#[test]
fn kernel_5_x_below_without_psi_file() {
    let k = "5.x-below";
    let m = meminfo::parse("meminfo", &read(k, "meminfo")).expect("meminfo");
    assert!(m.mem_available.is_some());
    let v = vmstat::parse("vmstat", &read(k, "vmstat")).expect("vmstat");
    // single workingset_refault before 5.9
    assert_eq!(v.workingset_refault_anon, None);
    assert!(v.refaults().is_some());
    let st = pid::parse_stat(&read(k, "pid/stat")).expect("stat without trailing newline");
    assert_eq!(st.comm.as_bytes(), b"bash");
    pid::parse_status(&read(k, "pid/status")).expect("status");
    let s = Snapshot::parse(Micros(0), None, &read(k, "meminfo"), &read(k, "vmstat")).expect("snapshot");
    assert!(s.psi.is_none() && s.scope_sample().stall.is_none());
}

#[test]
fn kernel_4_x_ubuntu() {
    let k = "4.x-go-sysinfo-ubuntu1710";
    meminfo::parse("meminfo", &read(k, "meminfo")).expect("meminfo");
    let v = vmstat::parse("vmstat", &read(k, "vmstat")).expect("vmstat");
    assert!(v.allocstall.is_some() && v.oom_kill.is_some());
}

#[test]
fn kernel_3_x_vmstat_with_zone_counters() {
    let v = vmstat::parse("vmstat", &read("3.15-4.4-goprocinfo", "vmstat")).expect("vmstat");
    assert!(v.allocstall.is_some(), "single allocstall field");
    assert_eq!(v.oom_kill, None);
    assert!(v.refaults().is_some());
}

#[test]
fn kernel_2_6_meminfo_without_memavailable() {
    let m = meminfo::parse("meminfo", &read("2.6.32-3.13-goprocinfo", "meminfo")).expect("meminfo");
    assert_eq!(m.mem_available, None);
    let est = m.available();
    assert!(est > m.mem_free && est < m.mem_total, "estimated {est:?}");
}

#[test]
fn every_fixture_truncated_at_every_byte_never_panics() {
    for (name, bytes) in all_files() {
        for cut in 0..bytes.len() {
            let b = &bytes[..cut];
            let _ = meminfo::parse("meminfo", b);
            let _ = vmstat::parse("vmstat", b);
            let _ = psi::parse("pressure/memory", b);
            let _ = pid::parse_stat(b);
            let _ = pid::parse_status(b);
            let _ = parse::cgroup::parse_memory_stat("memory.stat", b);
            let _ = parse::smaps::parse_rollup(b);
            let _ = parse::smaps::SmapsSum::new(None).feed(b);
            let _ = parse::maps::lines(b).count();
        }
        let _ = name;
    }
}

#[test]
fn truncated_meminfo_never_reports_a_half_number() {
    let full = read("6.18.44-host", "meminfo");
    let whole = meminfo::parse("meminfo", &full).expect("meminfo");
    for cut in 0..full.len() {
        if let Ok(m) = meminfo::parse("meminfo", &full[..cut]) {
            // whatever was parsed from a prefix agrees with the whole file
            assert_eq!(m.mem_total, whole.mem_total);
            assert_eq!(m.mem_free, whole.mem_free);
            assert!(m.mem_available.is_none() || m.mem_available == whole.mem_available, "cut at {cut}");
        }
    }
}

proptest! {
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = meminfo::parse("meminfo", &bytes);
        let _ = vmstat::parse("vmstat", &bytes);
        let _ = psi::parse("pressure/memory", &bytes);
        let _ = pid::parse_stat(&bytes);
        let _ = pid::parse_status(&bytes);
        let _ = parse::cgroup::parse_memory_stat("memory.stat", &bytes);
        let _ = parse::cgroup::parse_limit("memory.max", &bytes);
        let _ = parse::smaps::parse_rollup(&bytes);
        let _ = parse::smaps::SmapsSum::new(Some((0x1000, 0x2000))).feed(&bytes);
        let _ = parse::maps::lines(&bytes).count();
        let mut c = parse::pagemap::PageCounts::default();
        c.add_entries(&bytes);
        let _ = parse::zoneinfo::parse("zoneinfo", &bytes);
        let _ = parse::buddyinfo::parse("buddyinfo", &bytes);
    }

    #[test]
    fn flipped_bytes_in_real_files_never_panic(idx in 0usize..4096, byte in any::<u8>()) {
        for (_, mut bytes) in all_files() {
            if !bytes.is_empty() {
                let i = idx % bytes.len();
                bytes[i] = byte;
            }
            let _ = meminfo::parse("meminfo", &bytes);
            let _ = vmstat::parse("vmstat", &bytes);
            let _ = psi::parse("pressure/memory", &bytes);
            let _ = pid::parse_stat(&bytes);
            let _ = parse::zoneinfo::parse("zoneinfo", &bytes);
        }
    }
}

/// /proc/net files of the 6.18 host, captured with a UDP socket bound to 0.0.0.0:7411 and
/// [::1]:7411 and a TCP listener on 127.0.0.1 (backlog 511, which /proc/net/tcp does not show).
#[test]
fn net_files_of_6_18() {
    use thrashguard_core::parse::{netstat, sockets};
    let k = "6.18.44-host";
    assert_eq!(netstat::counter("net/netstat", &read(k, "net/netstat"), "TcpExt", "PFMemallocDrop"), Ok(Some(0)));
    assert!(netstat::counter("net/netstat", &read(k, "net/netstat"), "TcpExt", "ListenOverflows").unwrap().is_some());
    assert!(netstat::counter("net/snmp", &read(k, "net/snmp"), "Udp", "RcvbufErrors").unwrap().is_some());
    let udp: Vec<_> = sockets::entries("net/udp", &read(k, "net/udp")).collect::<Result<_, _>>().unwrap();
    assert_eq!(udp.len(), 1);
    assert_eq!((udp[0].local_port, udp[0].state, udp[0].drops, udp[0].any_address()), (7411, sockets::UDP_UNCONNECTED, Some(0), true));
    let udp6: Vec<_> = sockets::entries("net/udp6", &read(k, "net/udp6")).collect::<Result<_, _>>().unwrap();
    assert_eq!((udp6[0].local_port, udp6[0].v6, udp6[0].any_address()), (7411, true, false));
    assert_eq!(udp6[0].local_addr[12..16], [1, 0, 0, 0], "::1 in the kernel's word order");
    let tcp: Vec<_> = sockets::entries("net/tcp", &read(k, "net/tcp")).collect::<Result<_, _>>().unwrap();
    assert!(tcp.iter().all(|s| s.state == sockets::TCP_LISTEN && s.drops.is_none() && s.tx_queue == 0));
    assert!(sockets::entries("net/tcp6", &read(k, "net/tcp6")).all(|r| r.is_ok()));
    // every truncation parses or errs, never panics
    for file in ["net/udp", "net/udp6", "net/tcp"] {
        let full = read(k, file);
        for cut in 0..full.len() {
            let _ = sockets::entries("net/udp", &full[..cut]).count();
        }
    }
}

/// smaps_rollup, smaps, maps and pagemap of a python3 with a 64-page mapping (48 pages
/// written, 8 read, 8 untouched) on the 6.18 host (no soft-dirty).
#[test]
fn wss_files_of_6_18() {
    use thrashguard_core::parse::{maps, pagemap::PageCounts, smaps};
    use thrashguard_core::units::Pages;
    let k = "6.18.44-host/wss";
    let rollup = smaps::parse_rollup(&read(k, "smaps_rollup")).expect("rollup");
    assert_eq!((rollup.rss, rollup.referenced, rollup.swap), (Kib(14144), Kib(14144), Kib(0)));
    let text = read(k, "smaps.txt");
    let mut all = smaps::SmapsSum::new(None);
    all.feed(&text).expect("smaps");
    assert_eq!((all.totals().rss, all.totals().referenced, all.totals().swap), (rollup.rss, rollup.referenced, rollup.swap));
    assert_eq!(all.totals().mappings, 121);
    let range = maps::parse_range("7f1e027db000-7f1e0281b000").expect("range");
    let mut one = smaps::SmapsSum::new(Some(range));
    one.feed(&text).expect("smaps");
    assert_eq!((one.totals().rss, one.totals().referenced, one.totals().mappings, one.totals().partial), (Kib(192), Kib(192), 1, 0));
    let maps_text = read(k, "maps.txt");
    let lines: Vec<_> = maps::lines(&maps_text).collect::<Result<_, _>>().expect("maps");
    assert_eq!(lines.len(), 121);
    assert!(lines.iter().any(|l| (l.start, l.end) == range && l.path.is_empty()));
    assert!(lines.last().expect("last").is_kernel_area());
    let mut c = PageCounts::default();
    c.add_entries(&read(k, "pagemap-64pages.bin"));
    assert_eq!((c.scanned, c.present, c.swapped, c.soft_dirty, c.file_shared), (Pages(64), Pages(56), Pages(0), Pages(0), Pages(0)));
    // cut at every 7th line (every line is quadratic and slow in a debug build): an error or
    // a smaller sum, never a panic or more than the whole
    for (no, _) in text.iter().enumerate().filter(|(_, b)| **b == b'\n').step_by(7) {
        let mut part = smaps::SmapsSum::new(None);
        if part.feed(&text[..=no]).is_ok() {
            assert!(part.totals().rss <= rollup.rss);
        }
        let _ = maps::lines(&maps_text[..no.min(maps_text.len())]).count();
    }
    for cut in 0..read(k, "smaps_rollup").len() {
        if let Ok(t) = smaps::parse_rollup(&read(k, "smaps_rollup")[..cut]) {
            assert_eq!((t.rss, t.referenced), (rollup.rss, rollup.referenced), "cut at {cut}");
        }
    }
}

/// The lab guest captured idle (tests/fixtures/proc/6.1.0-50-amd64-guest, `bench/lab/wss-check
/// --capture`): Debian 12, 6.1, 1.5 GiB, no swap; the values are those of the captured files.
#[test]
fn debian_6_1_guest_idle_capture() {
    let k = "6.1.0-50-amd64-guest";
    let m = meminfo::parse("meminfo", &read(k, "proc/meminfo")).expect("meminfo");
    assert_eq!((m.mem_total, m.mem_free, m.mem_available), (Kib(1496020), Kib(1296616), Some(Kib(1254484))));
    assert_eq!((m.buffers, m.cached, m.anon_pages, m.shmem), (Kib(4404), Kib(44204), Some(Kib(85232)), Some(Kib(2432))));
    assert_eq!((m.swap_total, m.swap_free, m.zswap, m.sreclaimable), (Kib(0), Kib(0), Some(Kib(0)), Some(Kib(15976))));
    for file in ["proc/vmstat", "proc/vmstat.later"] {
        let v = vmstat::parse("vmstat", &read(k, file)).expect("vmstat");
        assert_eq!(v.nr_free_pages, Some(thrashguard_core::units::Pages(324154)), "{file}");
        assert_eq!((v.workingset_refault_anon, v.workingset_refault_file, v.refaults()), (Some(0), Some(0), Some(0)), "{file}");
        assert_eq!((v.pswpin, v.pswpout, v.oom_kill), (Some(0), Some(0), Some(0)), "{file}");
        // 6.1 splits allocstall by zone (dma, dma32, normal, movable, device): summed
        assert_eq!((v.allocstall, v.pgscan_direct, v.pgscan_kswapd, v.compact_stall), (Some(0), Some(0), Some(0), Some(0)), "{file}");
    }
    let v = vmstat::parse("vmstat", &read(k, "proc/vmstat")).expect("vmstat");
    assert_eq!(v.pgmajfault, Some(3886));
    for file in ["proc/pressure/memory", "proc/pressure/memory.later"] {
        let p = psi::parse("pressure/memory", &read(k, file)).expect("psi memory");
        assert_eq!((p.some.total, p.full.map(|f| f.total)), (Micros(0), Some(Micros(0))), "{file}: an idle guest");
    }
    let io = psi::parse("pressure/io", &read(k, "proc/pressure/io")).expect("psi io");
    assert_eq!((io.some.avg60, io.some.total, io.full.map(|f| f.total)), (33, Micros(1288440), Some(Micros(520371))));
    let cpu = psi::parse("pressure/cpu", &read(k, "proc/pressure/cpu")).expect("psi cpu");
    assert_eq!((cpu.some.avg10, cpu.some.total), (610, Micros(38494394)));
    assert_eq!(cpu.full.map(|f| f.total), Some(Micros(0)), "6.1 prints a zero full line for cpu");
    let zones = parse::buddyinfo::parse("buddyinfo", &read(k, "proc/buddyinfo")).expect("buddyinfo");
    assert_eq!(zones.iter().map(|z| z.name.as_str()).collect::<Vec<_>>(), ["DMA", "DMA32"]);
    assert_eq!(zones[1].free, [64, 59, 35, 41, 17, 7, 8, 6, 12, 17, 299]);
    // zoneinfo: no parser in parse/; the zones it lists are buddyinfo's plus empty ones
    let zi = String::from_utf8(read(k, "proc/zoneinfo")).expect("zoneinfo");
    assert_eq!(zi.matches("Node 0, zone").count(), 5);
    assert!(zi.contains("zone    DMA32\n  pages free     ") && zi.contains("managed  370165"));

    let stat = |p: &str| pid::parse_stat(&read(k, &format!("proc/{p}/stat"))).expect("stat");
    let status = |p: &str| pid::parse_status(&read(k, &format!("proc/{p}/status"))).expect("status");
    let systemd = stat("1");
    assert_eq!((systemd.comm.as_bytes(), systemd.is_kernel_thread(), systemd.is_exiting()), (&b"systemd"[..], false, false));
    assert_eq!(status("1").vm_rss, Some(Kib(11556)));
    let kt = stat("2");
    assert!(kt.is_kernel_thread() && kt.comm.as_bytes() == b"kthreadd");
    assert_eq!(status("2").vm_rss, None, "a kernel thread has no mm");
    let helper = status("367");
    assert_eq!(
        (helper.tgid, helper.uid, helper.vm_rss, helper.rss_anon, helper.vm_swap),
        (Some(Pid(367)), Some(0), Some(Kib(78328)), Some(Kib(72232)), Some(Kib(0)))
    );
    assert_eq!(pid::parse_statm_resident(&read(k, "proc/367/statm")), Ok(thrashguard_core::units::Pages(19582)));
    let fixture = stat("369");
    assert_eq!((fixture.comm.as_bytes(), fixture.ppid, fixture.start_time), (&b"tgfixture"[..], Pid(261), 11287));
    let z = stat("370");
    assert!(z.is_exiting() && z.state == b'Z' && z.comm.as_bytes() == b"true");
    assert_eq!(parse::parse_single_i64("oom_score_adj", &read(k, "proc/367/oom_score_adj")), Ok(-1000));
    assert_eq!(parse::maps::lines(&read(k, "proc/369/maps")).filter(|l| l.is_ok()).count(), 35);
}
