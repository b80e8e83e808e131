"""Host side of `bench/lab/run-scenario --lifeline`: the lifeline proof from outside a
thrashing guest (docs/lifeline.md). Runs on the HOST; allocates nothing to speak of.

prepare()   a fresh key pair per run (`thrashguard keygen`: ops = the operator's key, host =
            the guest daemon's reply-signing key), the authorized-keys file and a daemon
            config on the 9p share; a free UDP port on 127.0.0.1 that qemu forwards to the
            guest's 7411.
Client      a thread that, once the guest runner says the daemon is up, sends
            `thrashguard send 127.0.0.1:PORT status --json` every 500 ms (one at a time: a
            tick whose previous request is still out is skipped and counted), and one
            `rescue` RESCUE_AFTER_S after the first status reply showing full stall >= 30 %
            over the daemon's last second (the thrash onset as the daemon sees it).
analyze()   maps every request onto the trace's clock (the daemon logs each accepted
            request with its wall clock; the guest runner records the wall clock at the
            trace's t=0), adds the trace's trailing-second PSI full share at that moment,
            finds the rescue's SIGKILL in the kernel's kill events of result.json, and
            writes NAME.lifeline.json.
"""
import bisect
import gzip
import json
import os
import re
import socket
import statistics
import subprocess
import threading
import time

GUEST_PORT = 7411
HOST_ID = "labguest"
EVERY_S = 0.5
TIMEOUT_MS = 2000
RESCUE_AFTER_S = 10.0
ONSET_PCT = 30.0
FALLBACK_RESCUE_S = 40.0
# the daemon's log line for an accepted request: "lifeline: status from 10.0.2.2:PORT (key ...): ..."
SERVED = re.compile(r"^lifeline: (status|rescue|kill|freeze|thaw|sysrq) from ")  # after the workload started, if no reply ever showed the onset

CONFIG = """# bench/lab lifeline run: the policy does not act by itself (the guest keeps thrashing
# until the operator's rescue arrives through the lifeline)
[policy]
sustain_ms = 600000
sustain_corroborated_ms = 600000

[lifeline]
listen = "0.0.0.0:{port}"
authorized_keys = "/etc/thrashguard/lifeline.authorized"
host_key = "/etc/thrashguard/host.key"
host_id = "{host_id}"
"""


def free_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def prepare(binary, out, share):
    """Keys in OUT/lifeline (kept), guest files in SHARE/lifeline. Returns the client's settings."""
    keys = os.path.join(out, "lifeline-keys")
    if os.path.exists(keys):
        for f in os.listdir(keys):
            os.remove(os.path.join(keys, f))
    for name in ("ops", "host"):
        subprocess.run([binary, "keygen", "--out", keys, "--name", name], check=True, stdout=subprocess.DEVNULL)
    g = os.path.join(share, "lifeline")
    os.makedirs(g, exist_ok=True)
    with open(os.path.join(keys, "ops.pub")) as f, open(os.path.join(g, "lifeline.authorized"), "w") as o:
        o.write(f.read())
    with open(os.path.join(keys, "host.key")) as f, open(os.path.join(g, "host.key"), "w") as o:
        o.write(f.read())
    config = CONFIG.format(port=GUEST_PORT, host_id=HOST_ID)
    with open(os.path.join(g, "lab.toml"), "w") as o:
        o.write(config)
    port = free_udp_port()
    return {"host_port": port, "guest_port": GUEST_PORT, "host_id": HOST_ID, "keys": keys, "config": config,
            "nic": f"user,model=virtio-net-pci,hostfwd=udp:127.0.0.1:{port}-:{GUEST_PORT}"}


class Client(threading.Thread):
    """Status every 500 ms and one rescue, from the host, while the guest runs."""

    def __init__(self, binary, settings, share_out, stop):
        super().__init__(daemon=True)
        self.binary, self.s, self.share_out, self.stop = binary, settings, share_out, stop
        self.requests = []
        self.onset_host = None
        self.rescue = None
        self.notes = []

    def send(self, action, timeout_ms=TIMEOUT_MS, retries=0):
        cmd = [self.binary, "send", f"127.0.0.1:{self.s['host_port']}", action,
               "--key", os.path.join(self.s["keys"], "ops.key"),
               "--host-pub", os.path.join(self.s["keys"], "host.pub"), "--host-id", self.s["host_id"],
               "--json", "--timeout", str(timeout_ms), "--retries", str(retries)]
        sent = time.time()
        t = time.monotonic()
        p = subprocess.run(cmd, capture_output=True, text=True)
        lat = (time.monotonic() - t) * 1000.0
        rec = {"action": action, "sent_unix": round(sent, 4), "done_unix": round(time.time(), 4),
               "latency_ms": round(lat, 2), "rc": p.returncode}
        try:
            doc = json.loads(p.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            doc = {"error": (p.stdout + p.stderr).strip()[-300:]}
        if "reply" in doc:
            rec["answered"] = True
            rec["reply"] = doc["reply"]
        else:
            rec["answered"] = False
            rec["error"] = doc.get("error")
        return rec

    def flag(self, name):
        return os.path.exists(os.path.join(self.share_out, name))

    def run(self):
        # wait for the guest runner to say that the daemon is up
        while not self.stop.is_set() and not self.flag("lifeline-ready"):
            time.sleep(0.2)
        if self.stop.is_set():
            return
        self.notes.append(f"daemon up (host {time.time():.3f})")
        nxt = time.monotonic()
        workload_seen = None
        while not self.stop.is_set():
            now = time.monotonic()
            if now < nxt:
                time.sleep(min(0.05, nxt - now))
                continue
            tick = nxt
            rec = self.send("status")
            rec["tick_late_ms"] = round((now - tick) * 1000.0, 1)
            self.requests.append(rec)
            # ticks that passed while this request was out are skipped (one request at a time)
            done = time.monotonic()
            skipped = int((done - tick) // EVERY_S)
            if skipped:
                rec["ticks_skipped_after"] = skipped
            nxt = tick + EVERY_S * (1 + skipped)
            if workload_seen is None and self.flag("workload-started"):
                workload_seen = time.monotonic()
            r = rec.get("reply") or {}
            if (self.onset_host is None and workload_seen is not None and rec["answered"]
                    and (r.get("full_stall_pct") or 0.0) >= ONSET_PCT):
                self.onset_host = time.monotonic()
                self.notes.append(f"onset seen in a status reply: full {r.get('full_stall_pct')} % "
                                  f"(host {time.time():.3f})")
            due = None
            if self.onset_host is not None:
                due = self.onset_host + RESCUE_AFTER_S
            elif workload_seen is not None:
                due = workload_seen + FALLBACK_RESCUE_S
            if self.rescue is None and due is not None and time.monotonic() >= due:
                if self.onset_host is None:
                    self.notes.append("no status reply showed the onset: rescue sent at the fallback time")
                # retries with fresh nonces: the daemon answers a retry with the first outcome
                self.rescue = self.send("rescue", timeout_ms=TIMEOUT_MS, retries=2)
                self.rescue["onset_host_unix"] = round(time.time() - (time.monotonic() - self.onset_host), 4) \
                    if self.onset_host else None
                self.requests.append(self.rescue)


def _pct(v, q):
    v = sorted(v)
    if not v:
        return None
    return v[min(len(v) - 1, int(round((len(v) - 1) * q)))]


def _trace_full(trace):
    """(t, trailing-second full share %) of every sample of the trace."""
    ts, totals = [], []
    with gzip.open(trace, "rt") as f:
        for line in f:
            o = json.loads(line)
            text = o.get("pressure/memory")
            if not text:
                continue
            for ln in text.splitlines():
                if ln.startswith("full "):
                    kv = dict(p.split("=", 1) for p in ln.split()[1:])
                    ts.append(o["t"])
                    totals.append(int(kv["total"]))
    share = []
    for i in range(len(ts)):
        j = bisect.bisect_right(ts, ts[i] - 1.0) - 1
        share.append(None if j < 0 else round(100.0 * (totals[i] - totals[j]) / 1e6 / (ts[i] - ts[j]), 1))
    return ts, share


def reanalyze(out, name, labmetrics):
    """Recompute NAME.lifeline.json from the requests it keeps (`lablifeline.py DIR NAME`)."""
    doc = json.load(open(os.path.join(out, f"{name}.lifeline.json")))
    sm = doc["summary"]

    class Kept:
        requests = [{k: v for k, v in r.items() if k not in ("t_trace", "trace_full_1s_pct", "served_guest_unix")}
                    for r in doc["requests"]]
        rescue = next((r for r in requests if r["action"] == "rescue"), None)
        notes = sm.get("notes", [])
    return analyze(out, name, Kept, {"host_port": sm.get("host_port")}, labmetrics)


def analyze(out, name, client, settings, labmetrics):
    """NAME.lifeline.json: every request on the trace's clock, with the trace's PSI, and the numbers."""
    res = json.load(open(os.path.join(out, f"{name}.result.json")))
    t0_unix = res.get("t0_unix")
    # The daemon's log: one line per accepted request, stamped with the guest's wall clock.
    served = []
    dlog = os.path.join(out, f"{name}.daemon.log")
    if os.path.exists(dlog):
        for line in open(dlog):
            try:
                d = json.loads(line)
            except ValueError:
                continue
            msg = d.get("msg", "")
            if SERVED.match(msg) and "ts_unix_ms" in d:
                served.append((d["ts_unix_ms"] / 1000.0, msg))
    # Host wall clock -> guest wall clock. The client sends one request at a time from the
    # moment the daemon listens, so while the guest is quiet the k-th answered request is the
    # k-th request the daemon logged; each was served between its send and its reply. The
    # offset is the median of (served - midpoint) over the first quiet requests.
    reqs = client.requests
    quiet = []
    for r in reqs[:20]:
        if not r["answered"] or r["action"] != "status":
            break
        quiet.append(r)
    offsets = [g - (r["sent_unix"] + r["done_unix"]) / 2.0 for r, (g, _) in zip(quiet, served)
               if r["latency_ms"] < 100.0]
    offset = statistics.median(offsets) if offsets else None
    ts, share = _trace_full(os.path.join(out, f"{name}.trace.jsonl.gz"))
    ws = res.get("workload_start")
    for r in reqs:
        if offset is None or t0_unix is None:
            break
        t = (r["sent_unix"] + offset) - t0_unix
        r["t_trace"] = round(t, 3)
        i = bisect.bisect_left(ts, t)
        if 0 <= i < len(ts):
            r["trace_full_1s_pct"] = share[i]
    # Requests sent after the recorder stopped met a guest that was powering off: not counted.
    end = res.get("recorder_stopped")
    status = [r for r in reqs if r["action"] == "status" and not (end is not None and r.get("t_trace") is not None
                                                                  and r["t_trace"] > end)]
    late = sum(1 for r in reqs if r["action"] == "status") - len(status)
    before = [r for r in status if ws is not None and r.get("t_trace") is not None and r["t_trace"] < ws]
    during = [r for r in status if ws is not None and r.get("t_trace") is not None and r["t_trace"] >= ws]
    lat = [r["latency_ms"] for r in status if r["answered"]]

    def stats(rs):
        la = [r["latency_ms"] for r in rs if r["answered"]]
        return {"sent": len(rs), "answered": len(la),
                "answered_pct": round(100.0 * len(la) / len(rs), 1) if rs else None,
                "latency_ms": {"p50": _pct(la, 0.5), "p99": _pct(la, 0.99), "max": max(la) if la else None},
                "trace_full_1s_pct_max": max((r.get("trace_full_1s_pct") or 0.0 for r in rs), default=None)}
    kills = [e for e in res.get("events", []) if e.get("event") == "kill"]
    rescue = client.rescue
    summary = {"scenario": name, "daemon": res.get("daemon"), "host_port": settings["host_port"],
               "guest": "10.0.2.15 (qemu user net)", "every_s": EVERY_S, "timeout_ms": TIMEOUT_MS,
               "clock_offset_guest_minus_host_s": None if offset is None else round(offset, 4),
               "offset_pairs": len(offsets),
               "offset_spread_ms": round(1000 * (max(offsets) - min(offsets)), 1) if offsets else None,
               "daemon_served": len(served), "t0_unix_guest": t0_unix, "workload_start": ws,
               "workload_end": res.get("workload_end"), "notes": client.notes,
               "recorder_stopped": end, "status_after_recorder_stopped_not_counted": late,
               "status_all": stats(status), "status_before_workload": stats(before),
               "status_during_workload": stats(during),
               "latency_note": "latency = the whole `thrashguard send` process on the host (spawn, keys, one "
                               "datagram each way through qemu's user-mode network, verify), not the bare RTT"}
    if lat:
        summary["status_all"]["latency_ms"]["min"] = min(lat)
    pressure = [r for r in during if (r.get("trace_full_1s_pct") or 0.0) >= 10.0]
    summary["status_under_pressure_full_ge_10pct"] = stats(pressure)
    if rescue:
        rt = rescue.get("t_trace")
        tk = [e for e in kills if e.get("by") == "thrashguard" and rt is not None and e["t"] >= rt - 1.0]
        first = tk[0] if tk else None
        onset_t = None if rescue.get("onset_host_unix") is None or offset is None or t0_unix is None else \
            round(rescue["onset_host_unix"] + offset - t0_unix, 3)
        summary["rescue"] = {
            "sent_t": rt, "onset_seen_t": onset_t, "latency_ms": rescue["latency_ms"], "answered": rescue["answered"],
            "reply": rescue.get("reply"), "error": rescue.get("error"),
            "kill": first, "kill_ok": bool(first and first.get("target") == "workload" and first.get("sig") == 9),
            "sent_to_sigkill_ms": None if not first or rt is None else round((first["t"] - rt) * 1000.0, 1),
            "trace_full_1s_pct_at_send": rescue.get("trace_full_1s_pct"),
            "other_kills": [e for e in kills if e is not first and e.get("by") not in ("runner",)],
        }
        # what the probes felt: 10 s before the rescue was sent, and from the kill to the end
        probes = {}
        if first is not None:
            for p in ("tiny", "interactive"):
                path = os.path.join(out, f"{name}.probe-{p}.txt")
                if not os.path.exists(path):
                    continue
                pts = sorted(labmetrics.corrected(labmetrics.load_probe(path, res["t0_mono"])))
                before = [l for t, l in pts if rt - 10.0 <= t < rt]
                after = [l for t, l in pts if t >= first["t"]]
                after5 = [l for t, l in pts if first["t"] + 2.0 <= t]
                probes[p] = {"before_10s": {"max_ms": round(max(before), 1) if before else None,
                                            "p99_ms": round(_pct(before, 0.99), 1) if before else None},
                             "after_kill": {"max_ms": round(max(after), 1) if after else None,
                                            "p99_ms": round(_pct(after, 0.99), 1) if after else None},
                             "after_kill_plus_2s": {"max_ms": round(max(after5), 1) if after5 else None,
                                                    "p99_ms": round(_pct(after5, 0.99), 1) if after5 else None}}
        summary["probes"] = probes
    doc = {"summary": summary, "requests": reqs, "daemon_served": [{"guest_unix": g, "msg": m} for g, m in served]}
    with open(os.path.join(out, f"{name}.lifeline.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    return summary


if __name__ == "__main__":
    import sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import labmetrics
    print(json.dumps(reanalyze(sys.argv[1], sys.argv[2], labmetrics), indent=1))
