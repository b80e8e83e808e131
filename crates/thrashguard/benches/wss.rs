//! Pages per second that `wss` reads from a process with 8 GiB mapped: pagemap by `pread`
//! (8 bytes per page in 64 KiB chunks, the way `wss` reads it) against the `PAGEMAP_SCAN`
//! ioctl, beside the cost of reading the same bytes from memory (counting an in-memory
//! copy of the pagemap entries with the same code, and a plain memcpy of them), and of
//! reading the populated memory itself.
//!
//! The bench measures itself through /proc/self/pagemap over one 8 GiB private anonymous
//! mapping (MAP_NORESERVE), in four states: untouched (nothing present), every page read
//! (the shared zero page everywhere: present, no RAM but 16 MiB of page tables), 1 GiB
//! written (the other 7 untouched), and 1 GiB with every other page written (512 MiB; the
//! worst case for PAGEMAP_SCAN, one region per page). Each state starts from an untouched
//! mapping (MADV_DONTNEED of all of it). The two written states allocate RAM, so they run
//! only inside a memory cgroup with a limit of at most 4 GiB (`bench/wss/run` makes one);
//! elsewhere they are skipped and say so. Speed is measured, not asserted: it prints a
//! table (median of 7 runs each) with ratios and exits 0. Set `TG_BENCH_JSON=FILE` to also
//! write the numbers as JSON.

use std::os::fd::AsFd;
use std::time::Instant;

use rustix::mm::{MapFlags, ProtFlags, mmap_anonymous, munmap};
use thrashguard::wss::PagemapReader;
use thrashguard_core::parse::pagemap::PageCounts;

const GIB: usize = 1 << 30;
const MAPPED: usize = 8 * GIB;
const WRITTEN: usize = GIB;
const RUNS: usize = 7;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Seconds per call of `f`, median of RUNS after one warm-up.
fn time(mut f: impl FnMut()) -> f64 {
    f();
    median(
        (0..RUNS)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

/// The memory cgroup (v1 or v2) this process is in and its limit, when there is one.
fn memory_limit() -> Option<(String, u64)> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrl, path) = (f.next()?, f.next()?, f.next()?);
        let file = if ctrl.split(',').any(|c| c == "memory") {
            format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes")
        } else if ctrl.is_empty() {
            format!("/sys/fs/cgroup{path}/memory.max")
        } else {
            continue;
        };
        if let Ok(v) = std::fs::read_to_string(&file)
            && let Ok(limit) = v.trim().parse::<u64>()
        {
            return Some((path.to_string(), limit));
        }
    }
    None
}

struct Row {
    state: &'static str,
    present: u64,
    pread: f64,
    scan: Option<f64>,
    counted: f64,
    memcpy: f64,
    touch: Option<f64>,
}

fn main() {
    let ps = rustix::param::page_size();
    let pages = (MAPPED / ps) as u64;
    let limited = memory_limit().filter(|(_, l)| *l <= 4 * GIB as u64);
    println!("wss bench: one {} GiB private anonymous mapping, {} pages of {} bytes; {} runs each, median", MAPPED / GIB, pages, ps, RUNS);
    match &limited {
        Some((cg, l)) => println!("memory cgroup {cg}, limit {} MiB: the written states run", l >> 20),
        None => println!("not in a memory cgroup limited to <= 4 GiB: the written states are SKIPPED (run bench/wss/run)"),
    }
    // SAFETY: a fresh private anonymous mapping with no reservation, used only through
    // `base` in this function and unmapped at its end.
    let base = unsafe {
        mmap_anonymous(std::ptr::null_mut(), MAPPED, ProtFlags::READ | ProtFlags::WRITE, MapFlags::PRIVATE | MapFlags::NORESERVE)
    }
    .expect("mmap 8 GiB");
    let mem = base.cast::<u8>();
    let (start, end) = (mem as u64, mem as u64 + MAPPED as u64);
    let pagemap = std::fs::File::open("/proc/self/pagemap").expect("pagemap");
    let mut reader = PagemapReader::new();
    let scan_works = reader.count_scan(pagemap.as_fd(), start, start + ps as u64).is_ok();
    if !scan_works {
        println!("PAGEMAP_SCAN: not on this kernel (6.7+ has it)");
    }
    // what pread returns, as one in-memory buffer: "the same bytes from memory"
    let mut copy = vec![0u8; (pages * 8) as usize];
    let mut dst = vec![0u8; copy.len()];
    let mut rows = Vec::new();
    let states: [(&str, bool); 4] =
        [("untouched", false), ("all read (zero page)", false), ("1 GiB written", true), ("1 GiB, every other page", true)];
    for (state, needs_ram) in states {
        if needs_ram && limited.is_none() {
            println!("{state}: SKIPPED (needs a memory cgroup)");
            continue;
        }
        // each state starts from an untouched mapping
        // SAFETY: the whole mapping; nothing holds references into it.
        unsafe { rustix::mm::madvise(base, MAPPED, rustix::mm::Advice::LinuxDontNeed) }.expect("madvise");
        match state {
            "all read (zero page)" => {
                for i in (0..MAPPED).step_by(ps) {
                    // SAFETY: inside the mapping.
                    std::hint::black_box(unsafe { mem.add(i).read_volatile() });
                }
            }
            "1 GiB written" => {
                for i in (0..WRITTEN).step_by(ps) {
                    // SAFETY: inside the mapping.
                    unsafe { mem.add(i).write_volatile(1) };
                }
            }
            "1 GiB, every other page" => {
                for i in (0..WRITTEN).step_by(2 * ps) {
                    // SAFETY: inside the mapping.
                    unsafe { mem.add(i).write_volatile(1) };
                }
            }
            _ => {}
        }
        let mut counts = PageCounts::default();
        let pread = time(|| counts = reader.count_pread(pagemap.as_fd(), start, end).expect("pread"));
        let by_scan = scan_works.then(|| {
            let mut c = PageCounts::default();
            let t = time(|| c = reader.count_scan(pagemap.as_fd(), start, end).expect("scan"));
            assert_eq!((c.present, c.swapped), (counts.present, counts.swapped), "{state}: both ways must agree");
            t
        });
        // the same bytes, from memory
        let n = rustix::io::pread(&pagemap, &mut copy[..], start / ps as u64 * 8).expect("pread copy");
        let counted = time(|| {
            let mut c = PageCounts::default();
            c.add_entries(std::hint::black_box(&copy[..n]));
            std::hint::black_box(c);
        });
        let memcpy = time(|| {
            dst.copy_from_slice(std::hint::black_box(&copy));
            std::hint::black_box(&dst);
        });
        let touch = needs_ram.then(|| {
            time(|| {
                let mut s = 0u8;
                for i in (0..WRITTEN).step_by(64) {
                    // SAFETY: inside the mapping.
                    s = s.wrapping_add(unsafe { mem.add(i).read_volatile() });
                }
                std::hint::black_box(s);
            })
        });
        rows.push(Row { state, present: counts.present.0, pread, scan: by_scan, counted, memcpy, touch });
    }
    // SAFETY: the mapping made above; nothing refers into it any more.
    unsafe { munmap(base, MAPPED) }.expect("munmap");

    let mps = |secs: f64| pages as f64 / secs / 1e6;
    println!();
    println!(
        "{:<26} {:>9} {:>14} {:>14} {:>12} {:>16} {:>13} {:>12}",
        "state", "present", "pread Mpage/s", "SCAN Mpage/s", "SCAN/pread", "count-mem Mpg/s", "memcpy Mpg/s", "pread ms"
    );
    for r in &rows {
        println!(
            "{:<26} {:>9} {:>14.1} {:>14} {:>12} {:>16.1} {:>13.1} {:>12.2}",
            r.state,
            r.present,
            mps(r.pread),
            r.scan.map_or("-".into(), |s| format!("{:.1}", mps(s))),
            r.scan.map_or("-".into(), |s| format!("{:.1}x", r.pread / s)),
            mps(r.counted),
            mps(r.memcpy),
            r.pread * 1e3
        );
    }
    for r in rows.iter().filter(|r| r.touch.is_some()) {
        let t = r.touch.unwrap_or(f64::NAN);
        println!(
            "{}: reading the written GiB itself (one byte per cache line): {:.2} ms = {:.1} M of its pages/s",
            r.state,
            t * 1e3,
            (WRITTEN / ps) as f64 / t / 1e6
        );
    }
    println!("pread/count-mem: pagemap by pread costs this many times counting the same entries already in memory:");
    for r in &rows {
        println!("  {:<26} {:.1}x", r.state, r.pread / r.counted);
    }
    if let Ok(file) = std::env::var("TG_BENCH_JSON") {
        let json: Vec<_> = rows
            .iter()
            .map(|r| {
                serde_json::json!({"state": r.state, "mapped_pages": pages, "present_pages": r.present,
                    "pread_s": r.pread, "pagemap_scan_s": r.scan, "count_in_memory_s": r.counted, "memcpy_s": r.memcpy,
                    "read_written_gib_s": r.touch,
                    "pread_mpages_per_s": mps(r.pread), "pagemap_scan_mpages_per_s": r.scan.map(mps),
                    "count_in_memory_mpages_per_s": mps(r.counted), "memcpy_mpages_per_s": mps(r.memcpy)})
            })
            .collect();
        let doc = serde_json::json!({"bench": "wss", "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
            "page_size": ps, "mapped_bytes": MAPPED, "runs": RUNS, "cgroup": limited.map(|(c, l)| serde_json::json!({"path": c, "limit_bytes": l})),
            "rows": json});
        std::fs::write(&file, serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n").expect("write json");
        println!("wrote {file}");
    }
}
