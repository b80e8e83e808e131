#!/usr/bin/env python3
"""The lab's scenario workloads. Runs INSIDE the qemu guest only (never on the host).

    python3 workloads.py SCENARIO

Prints one JSON line per notable moment on stdout, {"mono": CLOCK_MONOTONIC seconds,
"text": "..."}; the guest runner turns them into trace events. Sizes are fractions of the
guest's MemTotal. Memory is touched with one write per 4 KiB page (a C-speed slice
assignment), which is what makes it resident, and re-touched the same way.
"""
import json
import os
import subprocess
import sys
import time

PAGE = 4096
MiB = 1 << 20


def mark(text, **extra):
    print(json.dumps({"mono": time.monotonic(), "text": text, **extra}), flush=True)


def mem_total():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise SystemExit("no MemTotal")


def touch(buf, value):
    """Write one byte in every page of buf (faults it in, or back in from swap)."""
    n = (len(buf) + PAGE - 1) // PAGE
    buf[::PAGE] = bytes([value & 0xFF]) * n


def pattern_block(random_per_page):
    """1 MiB whose every page starts with random_per_page random bytes, then zeros: such a
    page compresses about 4096 / random_per_page : 1 (zram sees realistic data)."""
    block = bytearray(MiB)
    for off in range(0, MiB, PAGE):
        block[off:off + random_per_page] = os.urandom(random_per_page)
    return bytes(block)


def filled(size, block):
    """size bytes: block repeated."""
    buf = bytearray(size)
    mv = memoryview(buf)
    for off in range(0, size, len(block)):
        end = min(size, off + len(block))
        mv[off:end] = block[: end - off]
    return buf


# ----------------------------------------------------------------------------- scenarios

LABSPIKE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "labspike")


def spike(args=("--madvise",), n=3, gap=10.0):
    """The benign spike: three times, a C program (labspike.c) maps 90 % of RAM, asks for
    transparent huge pages (MADV_HUGEPAGE), writes one byte in every 4 KiB page once, and
    exits (which frees it); the next one starts 10 s after the previous one has exited.
    run-scenario declares the swap disk solid-state for it (THP swapped out whole)."""
    for i in range(n):
        start = time.monotonic()
        mark(f"spike {i + 1} start", args=" ".join(args))
        rc = subprocess.call([LABSPIKE, *args])  # prints its own mark line (secs, AnonHugePages)
        mark(f"spike {i + 1} exited", rc=rc, secs=round(time.monotonic() - start, 3))
        if i < n - 1:
            time.sleep(gap)


def spikespeed():
    """Calibration, not a scenario: one 90 % spike per labspike variant, 10 s apart."""
    variants = [[], ["--populate"], ["--madvise"], ["--nohuge"]]
    for i, args in enumerate(variants):
        start = time.monotonic()
        mark("variant start", args=" ".join(args) or "(touch)")
        rc = subprocess.call([LABSPIKE, *args])
        mark("variant exited", rc=rc, secs=round(time.monotonic() - start, 3))
        if i < len(variants) - 1:
            time.sleep(10.0)


def spike_slow_once():
    """One process: allocate 90 % of RAM as fast as CPython can, touch it, exit (frees it)."""
    n = int(mem_total() * 0.90)
    t = time.monotonic()
    buf = bytearray(n)  # CPython zero-fills it: every page is written once, which is the touch
    # (a second pass would re-fault what the first pass pushed to swap: a hog, not a spike)
    mark("spike allocated and touched", bytes=n, secs=round(time.monotonic() - t, 3))
    # exiting frees it


def spike_slow():
    """The first spike (kept as a record): three Python bytearrays of 90 % of RAM, each its
    own process that exits; the next one starts 10 s after the previous one has exited. NOT
    the benign case under TCG: each takes 13-19 s and holds ~50 % full stall for 8-15 s."""
    me = os.path.abspath(__file__)
    for i in range(3):
        start = time.monotonic()
        mark(f"spike {i + 1} start")
        rc = subprocess.call([sys.executable, me, "spike-slow-once"])
        mark(f"spike {i + 1} exited", rc=rc, secs=round(time.monotonic() - start, 3))
        if i < 2:
            time.sleep(10.0)


def allocator(size, hold, pause, until):
    """Allocate size bytes, touch them, hold, free, pause; repeat until `until`."""
    k = 0
    while time.monotonic() < until:
        buf = bytearray(size)
        touch(buf, k)
        time.sleep(hold)
        del buf
        k += 1
        time.sleep(pause)


def run_until(cmd, deadline, shell=False):
    """Run cmd (in its own process group) until it exits or `deadline`; at the deadline
    SIGTERM its group (the kill trace then shows kills `by` the workload, not a rescue).
    Returns True if it finished by itself."""
    p = subprocess.Popen(cmd, shell=shell, preexec_fn=os.setpgrp)
    try:
        p.wait(timeout=max(0.0, deadline - time.monotonic()))
        return True
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, 15)
        p.wait()
        return False


def compile_like(alloc_secs=80.0, secs=85.0):
    """Page-cache churn like a build: copy /usr to disk and read both trees back, while two
    processes of ~300 MiB each allocate, touch and free in a loop (total below RAM) for
    80 s. The copy and the reads are stopped (SIGTERM from the workload) 85 s after the start
    wherever they are, so that the workload ends by itself inside the runner's 100 s limit
    however loaded the host is (under TCG the copy alone took 45 s, 63 s, 87 s on this
    host, and the reads then ran into that limit)."""
    start = time.monotonic()
    limit = start + alloc_secs
    deadline = start + secs
    pids = []
    for i in range(2):
        pid = os.fork()
        if pid == 0:
            try:
                time.sleep(0.5 * i)
                allocator(300 * MiB, hold=1.0, pause=0.5, until=limit)
            finally:
                os._exit(0)
        pids.append(pid)
    mark("allocators started", n=2, mib_each=300)
    dst = "/var/tmp/build"
    subprocess.call(["rm", "-rf", dst])
    t = time.monotonic()
    finished = run_until(["cp", "-a", "/usr", dst], deadline)
    mark("copied /usr" + ("" if finished else " (stopped at the deadline)"), secs=round(time.monotonic() - t, 3))
    for tree in (dst, "/usr", dst):
        if time.monotonic() > deadline:
            break
        t = time.monotonic()
        finished = run_until(f"find {tree} -type f -print0 | xargs -0 cat > /dev/null 2>&1", deadline, shell=True)
        mark(f"read {tree}" + ("" if finished else " (stopped at the deadline)"), secs=round(time.monotonic() - t, 3))
    for pid in pids:
        os.kill(pid, 15)
    for pid in pids:
        os.waitpid(pid, 0)
    mark("allocators stopped")
    # The copy stays: the root disk is a per-run overlay, thrown away after the run.


def benign_big(frac, secs=40.0, every=5.0):
    """One process holds frac of RAM steadily and re-touches all of it every 5 s."""
    n = int(mem_total() * frac)
    t = time.monotonic()
    buf = bytearray(n)
    touch(buf, 1)
    mark("allocated and touched", bytes=n, secs=round(time.monotonic() - t, 3))
    end = t + secs
    k = 2
    while True:
        nxt = time.monotonic() + every
        if nxt > end:
            break
        time.sleep(every)
        t1 = time.monotonic()
        touch(buf, k)
        k += 1
        mark("re-touched", secs=round(time.monotonic() - t1, 3))
    time.sleep(max(0.0, end - time.monotonic()))


def hog(step=100 * MiB, factor=3.0, random_per_page=1365):
    """Grow in 100 MiB steps as fast as possible toward factor x RAM, re-touching the
    whole heap after every step. Its pages compress about 3:1 (a third random), like
    ordinary program data, so zram gains something but not everything."""
    target = int(mem_total() * factor)
    block = pattern_block(random_per_page)
    chunks = []
    total = 0
    k = 0
    while total < target:
        chunks.append(filled(step, block))
        total += step
        k += 1
        for c in chunks:
            touch(c, k)
        if k % 5 == 0:
            mark("hog size", mib=total // MiB)
    mark("hog reached target", mib=total // MiB)


def slow_leak(rate=20 * MiB, step=10 * MiB, secs=150.0):
    """A leak whose memory stays in use: grows by about 20 MiB/s (10 MiB at a time, paced by
    the wall clock) and sweeps its whole heap between steps, so once the heap passes RAM
    every sweep pulls from swap and the working set never fits again."""
    block = pattern_block(1365)
    chunks = []
    t0 = time.monotonic()
    k = 0
    last = 0
    while time.monotonic() - t0 < secs:
        want = int((time.monotonic() - t0) * rate)
        while len(chunks) * step < want:
            chunks.append(filled(step, block))
        k += 1
        for c in chunks:
            touch(c, k)
        mib = len(chunks) * step // MiB
        if mib // 200 > last:
            last = mib // 200
            mark("leak size", mib=mib)
        if len(chunks) * step >= want:
            time.sleep(0.1)


def many_medium(n=8, frac=0.25, every=4.0, secs=100.0):
    """n processes of frac x RAM each, started every 4 s; each touches its memory
    continuously until the common end. Together they want 2 x RAM."""
    size = int(mem_total() * frac)
    end = time.monotonic() + secs
    pids = []
    for i in range(n):
        pid = os.fork()
        if pid == 0:
            try:
                buf = bytearray(size)
                k = 1
                while time.monotonic() < end:
                    touch(buf, k)
                    k += 1
            finally:
                os._exit(0)
        pids.append(pid)
        mark("medium started", i=i + 1, pid=pid, mib=size // MiB)
        if i < n - 1:
            time.sleep(every)
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            mark("medium killed", pid=pid, sig=os.WTERMSIG(status))


def stream_file(factor=2.0, path="/mnt/scratch/stream.bin"):
    """Benign streaming I/O: write a file of 2 x RAM with dd, then read it back, both
    through the page cache (the scratch disk, /dev/vdc)."""
    mib = int(mem_total() * factor) // MiB
    t = time.monotonic()
    subprocess.check_call(["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={mib}", "status=none"])
    subprocess.check_call(["sync"])
    mark("file written", mib=mib, secs=round(time.monotonic() - t, 3))
    t = time.monotonic()
    subprocess.check_call(["dd", f"if={path}", "of=/dev/null", "bs=1M", "status=none"])
    mark("file read", mib=mib, secs=round(time.monotonic() - t, 3))


def benign_steady(frac=0.70, secs=60.0, every=2.0):
    """One process holds frac of RAM steadily and re-touches all of it every 2 s."""
    benign_big(frac, secs=secs, every=every)


def memspeed():
    """Calibration, not a scenario: how fast this guest (this accelerator) faults memory in."""
    import mmap
    n = 256 * MiB
    t = time.monotonic()
    buf = bytearray(n)
    mark("bytearray zero-filled", mib=256, secs=round(time.monotonic() - t, 3))
    t = time.monotonic()
    touch(buf, 3)
    mark("bytearray re-touched", mib=256, secs=round(time.monotonic() - t, 3))
    del buf
    t = time.monotonic()
    m = mmap.mmap(-1, n)
    m[::PAGE] = b"\x01" * (n // PAGE)
    mark("mmap touched (kernel zeroing only)", mib=256, secs=round(time.monotonic() - t, 3))
    m.close()
    t = time.monotonic()
    b = bytes(64 * MiB)
    for _ in range(4):
        bytearray(b)
    mark("memcpy 4 x 64 MiB into fresh memory", secs=round(time.monotonic() - t, 3))


SCENARIOS = {
    "memspeed": memspeed,
    "spikespeed": spikespeed,
    "spike": spike,
    "spike-slow": spike_slow,
    "spike-slow-once": spike_slow_once,
    "compile": compile_like,
    "benign-big-75pct": lambda: benign_big(0.75),
    "hog-zram": hog,
    "hog-disk-swap": hog,
    "hog-noswap": hog,
    "slow-leak": slow_leak,
    "many-medium": many_medium,
    "stream-file": stream_file,
    "benign-70pct": benign_steady,
}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in SCENARIOS:
        sys.exit(f"usage: workloads.py {{{'|'.join(SCENARIOS)}}}")
    SCENARIOS[sys.argv[1]]()
