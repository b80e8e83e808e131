#!/usr/bin/env python3
"""In the lab guest (started by thrashguard-lab.service as /mnt/lab/guest-run): check the
counts of `thrashguard wss` on a kernel that tracks soft-dirty pages (Debian 12, 6.1: soft
dirty yes, PAGEMAP_SCAN no, so wss reads pagemap with pread), then (with "capture" in
/mnt/lab/check.json) copy the /proc and /sys files the doctor and the parsers read.

A helper process (this file, `helper` argument) maps 64 MiB (16384 pages) of anonymous
memory with MADV_NOHUGEPAGE (its own VMA, 4 KiB pages: the counts are exact), writes every
page once and then obeys commands on stdin:

    loop K D    every 50 ms read pages [0, K) and write pages [K, K+D)
    once K D    do that once, then stay idle
    pause       stay idle
    exit        exit now

Checks (each a step in /mnt/lab/out/wss-check.json with expected and reported numbers):
 fresh          --no-reset right after the populate: all 16384 referenced, dirtied, present
 loop-*         K pages read and D written continuously, `--interval 1 --samples 3` with the
                reset: every sample K+D referenced, D dirtied (--range: exact to TOL pages);
                auto and --pagemap pread; --pagemap scan must fail (no PAGEMAP_SCAN on 6.1)
 whole-process  the same without --range: smaps_rollup of the whole process, at least K+D
 idle           paused: 0 referenced, 0 dirtied per interval
 no-reset       after a reset, `once 1000 500`; --no-reset over 3 samples with `once 3000 700`
                after the first: 1500/500 then 3700/1200 (cumulative since the reset)
 thp            informational: the same loop on a MADV_HUGEPAGE mapping (counts in whole huge pages)
 exited         a helper that exits after wss's first sample: outcome exited, exit code 0
 zombie, kernel-thread, not-found: one line each, exit code 1
"""
import json
import os
import subprocess
import sys
import threading
import time

OUT = os.environ.get("WSS_CHECK_OUT", "/mnt/lab/out")  # the overrides: a dry run of the flow off the guest
TG = os.environ.get("WSS_CHECK_TG", "/mnt/lab/thrashguard")
NPAGES = 16384  # 64 MiB
TOL = 2  # pages
RES = {"steps": {}, "ok": False}
T0 = time.monotonic()


# ---------------------------------------------------------------- the helper process

def helper(npages, thp):
    import ctypes
    import mmap
    ps = mmap.PAGESIZE
    # a guard page on each side (PROT_NONE), so no neighbour merges into the mapping
    whole = mmap.mmap(-1, (npages + 2) * ps, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    base = ctypes.addressof(ctypes.c_char.from_buffer(whole))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    for a in (base, base + (npages + 1) * ps):
        if libc.mprotect(a, ps, 0) != 0:
            raise OSError(ctypes.get_errno(), "mprotect")
    whole.madvise(mmap.MADV_HUGEPAGE if thp else mmap.MADV_NOHUGEPAGE, ps, npages * ps)
    addr = base + ps
    m = memoryview(whole)[ps:(npages + 1) * ps]
    for i in range(npages):
        m[i * ps] = 1
    print(f"ready {addr:x}-{addr + npages * ps:x}", flush=True)
    state = {"cmd": ("pause", 0, 0)}
    cv = threading.Condition()

    def reader():
        for line in sys.stdin:
            w = line.split()
            if not w:
                continue
            with cv:
                state["cmd"] = (w[0], int(w[1]) if len(w) > 1 else 0, int(w[2]) if len(w) > 2 else 0)
                cv.notify()
        with cv:
            state["cmd"] = ("exit", 0, 0)
            cv.notify()

    threading.Thread(target=reader, daemon=True).start()

    def once(k, d):
        s = 0
        for i in range(k):
            s += m[i * ps]
        for i in range(k, k + d):
            m[i * ps] = (s & 0x7F) | 1

    last = None
    while True:
        with cv:
            cmd = state["cmd"]
            if cmd is last and cmd[0] != "loop":
                cv.wait()
                continue
        if cmd is not last:
            last = cmd
            if cmd[0] == "exit":
                os._exit(0)
            if cmd[0] in ("loop", "once"):
                once(cmd[1], cmd[2])
            print(f"did {cmd[0]} {cmd[1]} {cmd[2]}", flush=True)
            continue
        once(cmd[1], cmd[2])  # loop
        time.sleep(0.05)


class Helper:
    def __init__(self, npages=NPAGES, thp=False):
        self.p = subprocess.Popen([sys.executable, __file__, "helper", str(npages), "1" if thp else "0"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        if not line.startswith("ready "):
            raise RuntimeError(f"helper: {line!r}")
        self.range = line.split()[1]
        self.pid = self.p.pid

    def send(self, cmd, settle=0.3):
        self.p.stdin.write(cmd + "\n")
        self.p.stdin.flush()
        if cmd != "exit":
            line = self.p.stdout.readline()
            if not line.startswith("did "):
                raise RuntimeError(f"helper answered {line!r} to {cmd!r}")
            time.sleep(settle)

    def close(self):
        try:
            self.send("exit")
        except (BrokenPipeError, OSError):
            pass
        self.p.wait(timeout=30)


# ---------------------------------------------------------------- the checks

def now():
    return round(time.monotonic() - T0, 2)


def step(name, ok, **info):
    RES["steps"][name] = {"ok": bool(ok), "t": now(), **info}
    print(f"[wss-check] {name}: {'ok' if ok else 'FAIL'} {json.dumps(info)[:600]}", flush=True)


def wss(*args):
    """Run `thrashguard wss ... --json`: (exit code, lines, stderr)."""
    p = subprocess.run([TG, "wss", *map(str, args), "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=120)
    lines = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
    return p.returncode, lines, p.stderr


def of(lines, t):
    return [l for l in lines if l.get("type") == t]


def brief(s):
    return {k: s.get(k) for k in ("t_s", "interval_s", "referenced_pages", "dirtied_pages", "present_pages", "scanned_pages",
                                  "swapped_pages", "rss_kib", "referenced_kib", "mappings", "partial_mappings",
                                  "dirty_pages_per_s")}


def counts_step(name, rc, lines, want_ref, want_dirty, tol=TOL, exact_range=True, **extra):
    samples = of(lines, "sample")
    start = (of(lines, "start") or [{}])[0]
    got = [(s.get("referenced_pages"), s.get("dirtied_pages")) for s in samples]
    if exact_range:
        ok = rc == 0 and samples and all(r is not None and d is not None and abs(r - want_ref) <= tol and abs(d - want_dirty) <= tol
                                         for r, d in got)
    else:  # the whole process: at least what the helper's mapping gives, plus the interpreter's own
        ok = rc == 0 and samples and all(r is not None and d is not None and r >= want_ref - tol and d >= want_dirty - tol
                                         for r, d in got)
    step(name, ok, rc=rc, expected={"referenced_pages": want_ref, "dirtied_pages": want_dirty, "tolerance_pages": tol,
                                    "bound": "exact" if exact_range else "at least"},
         reported=[brief(s) for s in samples], soft_dirty=start.get("soft_dirty"),
         pagemap_method=start.get("pagemap_method"), **extra)
    return samples


def run_checks():
    _, uname = sh("uname -r")
    RES["kernel"] = uname.strip()
    _, thp = sh("cat /sys/kernel/mm/transparent_hugepage/enabled")
    RES["thp_enabled"] = thp.strip()
    h = Helper()
    RES["helper"] = {"pages": NPAGES, "range": h.range, "pid": h.pid}
    r = h.range

    # fresh: every page written since mapped; nobody reset
    rc, lines, err = wss(h.pid, "--range", r, "--no-reset", "--samples", 1, "--interval", 0.5)
    s = counts_step("fresh-no-reset", rc, lines, NPAGES, NPAGES)
    if s:
        step("fresh-present", s[0].get("present_pages") == NPAGES and s[0].get("scanned_pages") == NPAGES
             and s[0].get("mappings") == 1 and s[0].get("partial_mappings") == 0, reported=brief(s[0]),
             expected={"present_pages": NPAGES, "scanned_pages": NPAGES, "mappings": 1, "partial_mappings": 0})
    start = (of(lines, "start") or [{}])[0]
    step("probe", start.get("soft_dirty") == "supported" and start.get("pagemap_method") == "pread", start=start)

    for k, d in ((4096, 2048), (0, 8192), (NPAGES, 0)):
        h.send(f"loop {k} {d}")
        for method in ("auto", "pread"):
            rc, lines, err = wss(h.pid, "--range", r, "--interval", 1, "--samples", 3, "--pagemap", method)
            counts_step(f"loop-{k}-{d}-{method}", rc, lines, k + d, d, pagemap=method)
    h.send("loop 4096 2048")
    rc, lines, err = wss(h.pid, "--range", r, "--interval", 1, "--samples", 1, "--pagemap", "scan")
    major, minor = (int(x) for x in RES["kernel"].split(".")[:2])
    no_scan = (major, minor) < (6, 7)
    step("pagemap-scan-refused" if no_scan else "pagemap-scan-works", (rc != 0 and not of(lines, "sample")) if no_scan else rc == 0,
         rc=rc, stderr=err.strip()[-400:])
    rc, lines, err = wss(h.pid, "--interval", 1, "--samples", 3)
    counts_step("whole-process-4096-2048", rc, lines, 6144, 2048, exact_range=False)

    # idle: with the reset, nothing referenced or dirtied per interval
    h.send("pause")
    rc, lines, err = wss(h.pid, "--range", r, "--interval", 1, "--samples", 3)
    counts_step("idle", rc, lines, 0, 0)

    # --no-reset: counts since the last reset by anyone (the one just above, after its last sample)
    h.send("once 1000 500")
    p = subprocess.Popen([TG, "wss", str(h.pid), "--range", r, "--no-reset", "--interval", "1", "--samples", "3", "--json"],
                         stdout=subprocess.PIPE, text=True)
    lines = []
    for l in p.stdout:
        v = json.loads(l)
        lines.append(v)
        if v.get("type") == "sample" and len(of(lines, "sample")) == 1:
            h.send("once 3000 700", settle=0)
    rc = p.wait()
    samples = of(lines, "sample")
    want = [(1500, 500), (3700, 1200), (3700, 1200)]
    got = [(s.get("referenced_pages"), s.get("dirtied_pages")) for s in samples]
    ok = rc == 0 and len(got) == 3 and all(a is not None and b is not None and abs(a - c) <= TOL and abs(b - e) <= TOL
                                           for (a, b), (c, e) in zip(got, want))
    start = (of(lines, "start") or [{}])[0]
    step("no-reset-cumulative", ok, rc=rc, expected=[{"referenced_pages": a, "dirtied_pages": b} for a, b in want],
         reported=[brief(s) for s in samples], reset=start.get("reset"),
         warning=[w for w in start.get("warnings", []) if "no-reset" in w])
    h.close()

    # THP: counts in whole huge pages (informational)
    t = Helper(thp=True)
    _, ahp = sh(f"grep -A30 '^{t.range.split('-')[0].lstrip('0')}' /proc/{t.pid}/smaps | grep -m1 AnonHugePages")
    t.send("loop 1000 300")
    rc, lines, err = wss(t.pid, "--range", t.range, "--interval", 1, "--samples", 2)
    # a page counts alone where its 2 MiB block is not wholly inside the mapping (the kernel
    # faults those ends in as 4 KiB pages), else as its whole huge page
    base = int(t.range.split("-")[0], 16) // 4096

    def unit(i):
        b = (base + i) // 512
        return ("huge", b) if b * 512 >= base and (b + 1) * 512 <= base + NPAGES else ("4k", i)

    def pages(units):
        return sum(512 if u[0] == "huge" else 1 for u in units)

    blocks_ref, blocks_dirty = {unit(i) for i in range(1300)}, {unit(i) for i in range(1000, 1300)}
    step("thp-informational", rc == 0, rc=rc, anon_huge_pages=ahp.strip(),
         expected_4k={"referenced_pages": 1300, "dirtied_pages": 300},
         expected_if_huge_where_aligned={"referenced_pages": pages(blocks_ref), "dirtied_pages": pages(blocks_dirty)},
         reported=[brief(s) for s in of(lines, "sample")])
    t.close()

    # a process that exits during the measurement
    e = Helper(npages=4096)
    e.send("loop 100 100")
    p = subprocess.Popen([TG, "wss", str(e.pid), "--interval", "1", "--samples", "5", "--json"], stdout=subprocess.PIPE, text=True)
    lines = []
    for l in p.stdout:
        v = json.loads(l)
        lines.append(v)
        if v.get("type") == "sample" and len(of(lines, "sample")) == 1:
            e.send("exit")
            e.p.wait(timeout=30)
    rc = p.wait()
    proc = [l for l in of(lines, "process") if l.get("pid") == e.pid]
    step("exited", rc == 0 and proc and proc[0].get("outcome") == "exited" and 1 <= proc[0].get("samples", 0) < 5,
         rc=rc, process=proc, end=of(lines, "end"))

    # zombie, kernel thread, no such pid
    z = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while ") Z " not in open(f"/proc/{z.pid}/stat").read() and time.monotonic() < deadline:
        time.sleep(0.05)
    _, kw = sh("for d in /proc/[0-9]*; do c=$(cat $d/comm 2>/dev/null); case $c in kworker*) echo ${d#/proc/}; break;; esac; done")
    kw = kw.strip() or "2"
    rc, lines, err = wss(z.pid, 2, kw, 4194305, "--samples", 1, "--interval", 0.2)
    outs = {l["pid"]: l.get("outcome") for l in of(lines, "process")}
    step("zombie-kthread-missing", rc == 1 and outs.get(z.pid) == "zombie" and outs.get(2) == "kernel_thread"
         and outs.get(int(kw)) == "kernel_thread" and outs.get(4194305) == "not_found" and not of(lines, "sample"),
         rc=rc, outcomes=outs, kworker=kw, lines=of(lines, "process"))
    z.wait()


# ---------------------------------------------------------------- the capture

def sh(cmd, timeout=120):
    p = subprocess.run(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    return p.returncode, p.stdout


PROC_FILES = ["meminfo", "vmstat", "zoneinfo", "buddyinfo", "pagetypeinfo", "pressure/memory", "pressure/io",
              "pressure/cpu", "swaps", "uptime", "loadavg", "stat", "version", "cmdline", "cgroups", "filesystems",
              "net/netstat", "net/snmp", "net/softnet_stat", "net/udp", "net/udp6", "net/tcp", "net/tcp6",
              "sys/kernel/sysrq", "sys/kernel/hung_task_timeout_secs", "sys/kernel/numa_balancing",
              "sys/kernel/osrelease", "sys/fs/file-nr", "sys/net/core/somaxconn", "sys/net/core/netdev_max_backlog",
              "sys/net/ipv4/tcp_max_syn_backlog", "sys/net/ipv4/tcp_syncookies"]
PID_FILES = ["status", "stat", "statm", "limits", "oom_score_adj", "oom_score", "cmdline", "comm", "cgroup",
             "smaps_rollup"]


def copy(src, dst):
    try:
        with open(src, "rb") as f:
            data = f.read()
    except OSError as e:
        return f"{src}: {e.strerror}"
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with open(dst, "wb") as f:
        f.write(data)
    return None


def capture():
    root = os.path.join(OUT, "capture")
    skipped = []
    # a few processes: the helper (64 MiB), a sleep started as `tgfixture`, systemd, a zombie, kthreadd
    h = Helper()
    h.send("loop 4096 2048")
    os.makedirs(f"/tmp/wss-check-{os.getpid()}", exist_ok=True)
    link = f"/tmp/wss-check-{os.getpid()}/tgfixture"
    if not os.path.lexists(link):
        os.symlink("/bin/sleep", link)
    sl = subprocess.Popen([link, "300"])
    z = subprocess.Popen(["true"])
    time.sleep(1)
    pids = {"helper": h.pid, "tgfixture": sl.pid, "systemd": 1, "zombie": z.pid, "kthread": 2}
    rel = []
    for f in PROC_FILES:
        rel.append(f)
    for f in sorted(os.listdir("/proc/sys/vm")):
        rel.append(f"sys/vm/{f}")
    for name, pid in pids.items():
        for f in PID_FILES:
            err = copy(f"/proc/{pid}/{f}", os.path.join(root, "proc", str(pid), f))
            if err:
                skipped.append(err)
        for f in ["maps"] + (["numa_maps"] if name == "tgfixture" else []):
            err = copy(f"/proc/{pid}/{f}", os.path.join(root, "proc", str(pid), f))
            if err:
                skipped.append(err)
    for f in rel:
        err = copy(f"/proc/{f}", os.path.join(root, "proc", f))
        if err:
            skipped.append(err)
    time.sleep(5)
    for f in ("vmstat", "pressure/memory", "pressure/io", "pressure/cpu", "net/netstat", "net/snmp", "net/softnet_stat"):
        copy(f"/proc/{f}", os.path.join(root, "proc", f + ".later"))
    sys_files = []
    for top in ("/sys/devices/system/node", "/sys/kernel/mm/transparent_hugepage", "/sys/devices/system/clocksource/clocksource0"):
        for dp, dns, fns in os.walk(top, followlinks=False):
            if "/power" in dp or "/hugepages" in dp or "/memory_side_cache" in dp or "/access" in dp:
                continue
            depth = dp[len(top):].count("/")
            if depth > 1:
                continue
            for fn in fns:
                p = os.path.join(dp, fn)
                if fn in ("uevent",) or os.path.islink(p):
                    continue
                sys_files.append(p)
    for zram in sorted(d for d in os.listdir("/sys/block") if d.startswith("zram")):
        for fn in ("disksize", "mm_stat", "comp_algorithm", "io_stat", "bd_stat", "max_comp_streams"):
            sys_files.append(f"/sys/block/{zram}/{fn}")
    for p in sys_files:
        err = copy(p, os.path.join(root, "sys", p[len("/sys/"):]))
        if err:
            skipped.append(err)
    with open(os.path.join(root, "pids.json"), "w") as f:
        json.dump(pids, f, indent=1)
    _, z_state = sh(f"cut -d' ' -f3 /proc/{z.pid}/stat")
    sl.kill()
    sl.wait()
    z.wait()
    h.close()
    _, lsblk = sh("ls /sys/block")
    step("capture", True, pids=pids, zombie_state=z_state.strip(), skipped=skipped, block=lsblk.split())


def main():
    os.makedirs(OUT, exist_ok=True)
    cfg = {}
    cfg_path = os.environ.get("WSS_CHECK_CFG", "/mnt/lab/check.json")
    if os.path.exists(cfg_path):
        with open(cfg_path) as f:
            cfg = json.load(f)
    try:
        if cfg.get("wss", True):
            run_checks()
        if cfg.get("capture"):
            capture()
        RES["ok"] = all(s["ok"] for n, s in RES["steps"].items() if n != "thp-informational")
    except Exception as e:  # noqa: BLE001
        import traceback
        RES["error"] = f"{type(e).__name__}: {e}"
        RES["traceback"] = traceback.format_exc()
        print(RES["traceback"], flush=True)
    finally:
        RES["guest_s"] = now()
        with open(os.path.join(OUT, "wss-check.json"), "w") as f:
            json.dump(RES, f, indent=1)
            f.write("\n")
        os.sync()
        if "WSS_CHECK_OUT" not in os.environ:
            subprocess.run(["systemctl", "poweroff", "--force", "--force"], check=False)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "helper":
        helper(int(sys.argv[2]), sys.argv[3] == "1")
    else:
        main()
