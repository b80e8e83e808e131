"""Per-run measures of the thrash lab, computed on the host from what a guest run left in
its output directory (NAME.result.json, NAME.trace.jsonl.gz, NAME.probe-*.txt).

Used by run-scenario (after every run: adds "metrics" to NAME.result.json) and by
summarize (which can recompute them). Times are seconds on the trace's clock; durations
count from the workload's start.
"""
import bisect
import gzip
import json
import os

SETTLE_MS = 50.0          # "latency stays under 50 ms"
RECOVER_WITHIN_S = 180.0  # "recovered within 180 s"
INTERVAL_MS = 100.0       # the probes' tick
NOT_RESCUE = {"runner-timeout", "runner", "workload"}


def is_rescue(k, daemon, ws):
    """A kill that counts: by the kernel's OOM killer or by the daemon under test, after the
    workload started (other senders, e.g. udev retiring its workers, are kept but not counted)."""
    return k["t"] >= ws and (k["by"] == "kernel-oom" or k["by"] == daemon)


def load_trace(path):
    """[(t, full avg10 %, full total µs)] of the samples with PSI."""
    out = []
    with gzip.open(path, "rt") as f:
        for i, line in enumerate(f):
            if i == 0 or not line.strip():
                continue
            o = json.loads(line)
            text = o.get("pressure/memory")
            if "event" in o or not text:
                continue
            for ln in text.splitlines():
                if ln.startswith("full "):
                    kv = dict(p.split("=", 1) for p in ln.split()[1:])
                    out.append((o["t"], float(kv["avg10"]), int(kv["total"])))
    return out


def load_probe(path, t0):
    """[(t scheduled, latency ms)] on the trace's clock, as measured (no correction)."""
    ticks = []
    if not os.path.exists(path):
        return ticks
    for line in open(path):
        if line.startswith("#") or not line.strip():
            continue
        a, b = line.split()
        ticks.append((float(a) - t0, float(b)))
    return ticks


def corrected(ticks):
    """The expected-interval correction (wrk2 / HdrHistogram): a tick that took L ms hid
    the ticks scheduled during it; they would have taken L-100, L-200, ... ms."""
    out = []
    for t, lat in ticks:
        out.append((t, lat))
        k = 1
        while lat - k * INTERVAL_MS > 0:
            out.append((t + k * INTERVAL_MS / 1e3, lat - k * INTERVAL_MS))
            k += 1
    return out


def pct(values, q):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def probe_metrics(ticks, ws, killed_at=None):
    win = [(t, l) for t, l in corrected(ticks) if t >= ws]
    if not win:
        return {"ticks": 0}
    lats = [l for _, l in win]
    bad = [t + l / 1e3 for t, l in win if l >= SETTLE_MS]
    settle = (max(bad) - ws) if bad else 0.0
    last = ticks[-1][0] + ticks[-1][1] / 1e3
    return {
        "ticks": len([1 for t, _ in ticks if t >= ws]), "ticks_corrected": len(win),
        "max_stall_ms": round(max(lats), 1), "p99_ms": round(pct(lats, 0.99), 1), "p50_ms": round(pct(lats, 0.50), 1),
        # when latency went under 50 ms for good (from the workload's start); None if it
        # never did before the probe's record ended (or the probe was killed)
        "settled_after_s": None if (killed_at is not None or (bad and max(bad) >= last - 1.0)) else round(settle, 2),
        "killed_at": killed_at,
    }


def compute(res, trace_path, probe_paths):
    ws = res["workload_start"]
    kills = [e for e in res.get("events", []) if e.get("event") == "kill"]
    rescue = [k for k in kills if is_rescue(k, res["daemon"], ws)]
    first = rescue[0] if rescue else None
    wrong = {}
    for k in rescue:
        if k["target"] != "workload":
            wrong.setdefault(k["pid"], f"{k['comm']}({k['target']}) by {k['by']}")
    runner_kill = next((k["t"] for k in kills if k["by"] == "runner-timeout"), None)
    m = {
        "time_to_rescue_s": round(first["t"] - ws, 2) if first else None,
        "first_rescue_by": first["by"] if first else None,
        "first_rescue_sig": first["sig"] if first else None,
        "victim_ok": (first["target"] == "workload") if first else None,
        "rescue_kills": len({k["pid"] for k in rescue}),
        "workload_pids_killed": len({k["pid"] for k in rescue if k["target"] == "workload"}),
        "wrong_kills": len(wrong), "wrong_kill_list": sorted(wrong.values()),
        "kernel_oom_kills": len([k for k in kills if k["by"] == "kernel-oom"]),
        "runner_timeout_kill_s": round(runner_kill - ws, 2) if runner_kill is not None else None,
        "workload_duration_s": round(res["workload_end"] - ws, 2),
    }
    if os.path.exists(trace_path):
        tr = load_trace(trace_path)
        after = [x for x in tr if x[0] >= ws]
        m["peak_full_avg10_pct"] = max((x[1] for x in after), default=None)
        ts = [x[0] for x in tr]
        best = 0.0
        for i, (t, _, tot) in enumerate(tr):
            if t < ws:
                continue
            j = bisect.bisect_right(ts, t - 1.0) - 1
            if j >= 0 and t > ts[j]:
                best = max(best, (tot - tr[j][2]) / 1e6 / (t - ts[j]))
        m["peak_full_1s_pct"] = round(100 * best, 1)
        # whole-run full stall (seconds) from the workload's start to the end of the recording
        if after:
            m["full_stall_s"] = round((after[-1][2] - after[0][2]) / 1e6, 2)
    probes = {}
    t0 = res.get("t0_mono")
    for p, path in probe_paths.items():
        pinfo = res.get("probes", {}).get(p, {})
        killed = next((k["t"] for k in rescue if k["target"] == f"probe-{p}"), None)
        probes[p] = probe_metrics(load_probe(path, t0), ws, killed) if t0 is not None else {}
        probes[p]["alive_at_end"] = pinfo.get("alive_at_end")
    m["probes"] = probes
    settles = [v.get("settled_after_s") for v in probes.values() if v.get("killed_at") is None]
    if settles and all(s is not None for s in settles):
        settle = max(settles)
        # settling in the last 10 s before the runner's kill is not a recovery either (the
        # workload was still there: the probes merely had a quiet spell)
        by_runner = runner_kill is not None and ws + settle > runner_kill - 10.0
        m["settled_after_s"] = settle
        m["recovered_180s"] = settle <= RECOVER_WITHIN_S and not by_runner
        m["recovered_note"] = "only after the runner killed the workload at its time limit" if by_runner else ""
    else:
        m["settled_after_s"] = None
        m["recovered_180s"] = False
        m["recovered_note"] = "probe latency never settled under 50 ms" if settles else "no surviving probe"
    ds = res.get("daemon_stats") or {}
    m["daemon_cpu_s"] = ds.get("cpu_s")
    m["daemon_rss_kb"] = ds.get("vmrss_kb")
    m["daemon_hwm_kb"] = ds.get("vmhwm_kb")
    # page-table walk (smaps_rollup) beside the counters above; runs before it have none
    m["daemon_rollup_rss_kb"] = ds.get("rollup_rss_kb")
    m["daemon_rollup_pss_kb"] = ds.get("rollup_pss_kb")
    m["daemon_rollup_locked_kb"] = ds.get("rollup_locked_kb")
    m["daemon_alive_at_end"] = ds.get("alive")
    return m


def annotate(out, name):
    """Compute the metrics of the run in directory `out` and store them in its result file."""
    rpath = os.path.join(out, f"{name}.result.json")
    res = json.load(open(rpath))
    probe_paths = {p: os.path.join(out, f"{name}.probe-{p}.txt") for p in ("tiny", "interactive")}
    res["metrics"] = compute(res, os.path.join(out, f"{name}.trace.jsonl.gz"), probe_paths)
    with open(rpath + ".tmp", "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    os.replace(rpath + ".tmp", rpath)
    return res
