#!/usr/bin/env python3
"""In the lab guest (started by thrashguard-lab.service as /mnt/lab/guest-run): install the
thrashguard .deb from the 9p share and check the packaged service end to end.

Steps, each recorded in /mnt/lab/out/deb-check.json and the text files beside it:
 1. dpkg -i: the unit is enabled and started (no other guard is active), reaches READY
    (active, StatusText from the daemon), lifeline off (no key), capabilities as the unit says;
 2. systemd-analyze security thrashguard.service (the real one, not --offline);
 3. inside the unit's mount namespace (nsenter): what is writable (PSI trigger, cgroup
    files, /proc/sysrq-trigger);
 4. systemctl kill -s STOP: the watchdog kills the stopped guard and systemd restarts it
    (NRestarts + 1, a new MainPID), timed;
 5. a hog (grows 100 MiB steps toward 3 x RAM, re-touching its heap) with disk swap: the
    packaged defaults rescue it (SIGKILL), no watchdog restart meanwhile;
 6. dpkg -r then dpkg -P: stopped, files gone, conffile kept by -r and removed by -P,
    no unit, no enablement state left;
 7. dpkg -i with earlyoom active: installed and enabled but not started, and it says why.
Then the runner unit powers the guest off.
"""
import glob
import json
import os
import subprocess
import sys
import time

OUT = "/mnt/lab/out"
RES = {"steps": {}}
T0 = time.monotonic()


def now():
    return round(time.monotonic() - T0, 2)


def sh(cmd, timeout=120, check=False):
    p = subprocess.run(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"{cmd}: rc {p.returncode}: {p.stdout}")
    return p.returncode, p.stdout


def save(name, text):
    with open(os.path.join(OUT, name), "w") as f:
        f.write(text)


def show(unit="thrashguard"):
    _, out = sh(f"systemctl show -p ActiveState,SubState,StatusText,NRestarts,MainPID,Result,WatchdogUSec,Type {unit}")
    return dict(l.split("=", 1) for l in out.splitlines() if "=" in l)


def step(name, ok, **info):
    RES["steps"][name] = {"ok": bool(ok), "t": now(), **info}
    print(f"[deb-check] {name}: {'ok' if ok else 'FAIL'} {json.dumps(info)[:400]}", flush=True)


def wait_for(pred, timeout, every=0.5):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(every)
    return None


def journal(since_cursor=None):
    _, out = sh("journalctl -u thrashguard -b --no-pager -o short-monotonic")
    return out


def install():
    deb = sorted(glob.glob("/mnt/lab/thrashguard_*.deb"))[-1]
    t = time.monotonic()
    rc, out = sh(f"dpkg -i {deb}", timeout=300)
    return deb, rc, out, round(time.monotonic() - t, 2)


def hog(limit_s=120):
    """The lab's hog (workloads.py): 100 MiB steps toward 3 x RAM, re-touching the heap."""
    code = r"""
import os, time
total = int(open('/proc/meminfo').read().split()[1]) * 1024
step = 100 << 20
chunks = []
junk = os.urandom(1 << 20)
while sum(len(c) for c in chunks) < 3 * total:
    b = bytearray(step)
    for off in range(0, step, 4096 * 3):
        b[off:off + 64] = junk[:64]
    chunks.append(b)
    for c in chunks:
        for off in range(0, len(c), 4096):
            c[off] = (c[off] + 1) & 255
"""
    t = time.monotonic()
    # the runner is at oom_score_adj -1000 (never a victim) and children inherit it: put the
    # hog back to 0, as any process started by a user
    def reset():
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("0")
    p = subprocess.Popen([sys.executable, "-c", code], preexec_fn=reset)
    try:
        rc = p.wait(timeout=limit_s)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = p.wait()
        return rc, round(time.monotonic() - t, 1), "timeout"
    return rc, round(time.monotonic() - t, 1), "exited"


def main():
    os.makedirs(OUT, exist_ok=True)
    _, v = sh("uname -r; systemctl --version | head -n1; cat /proc/meminfo | head -n3")
    RES["guest"] = v
    # the lab image keeps the anchors disabled
    others = [u for u in ("earlyoom", "systemd-oomd", "nohang") if sh(f"systemctl is-active --quiet {u}")[0] == 0]
    RES["others_active_before"] = others

    # 1. install
    deb, rc, out, secs = install()
    save("dpkg-install.txt", out)
    RES["deb"] = os.path.basename(deb)
    st = wait_for(lambda: (lambda s: s if s.get("ActiveState") == "active" else None)(show()), 60)
    ready = st or show()
    _, enabled = sh("systemctl is-enabled thrashguard")
    jr = journal()
    pid = ready.get("MainPID", "0")
    _, caps = sh(f"grep -E '^(Cap|VmLck|Name)' /proc/{pid}/status; cat /proc/{pid}/oom_score_adj")
    _, capsh = sh(f"for c in $(grep -E '^Cap(Eff|Bnd)' /proc/{pid}/status | cut -f2); do capsh --decode=$c 2>/dev/null || echo $c; done")
    step("install", rc == 0 and ready.get("ActiveState") == "active" and enabled.strip() == "enabled"
         and ready.get("StatusText", "").startswith("guarding") and "lifeline off" in jr,
         dpkg_rc=rc, dpkg_s=secs, show=ready, enabled=enabled.strip(), lifeline_off="lifeline off" in jr,
         proc_status=caps, caps=capsh)

    # 2. the exposure score of the real unit
    _, sec = sh("systemd-analyze security --no-pager thrashguard.service")
    save("systemd-analyze-security.txt", sec)
    score = next((l.split(": ")[-1] for l in sec.splitlines() if "Overall exposure level" in l), "?")
    _, verify = sh("systemd-analyze verify thrashguard.service")
    save("systemd-analyze-verify.txt", verify)
    step("security", "?" not in score, exposure=score, verify=verify.strip())

    # 3. what the sandbox lets the guard write (inside the unit's mount namespace)
    pid = show().get("MainPID", "0")
    checks = {}
    for name, path in [("psi_trigger", "/proc/pressure/memory"), ("cgroup_procs", "/sys/fs/cgroup/cgroup.procs"),
                       ("cgroup_kill_system_slice", "/sys/fs/cgroup/system.slice/cgroup.kill"),
                       ("sysrq_trigger", "/proc/sysrq-trigger"), ("oom_score_adj_1", "/proc/1/oom_score_adj"),
                       ("etc", "/etc/thrashguard"), ("run", "/run/thrashguard"), ("var_lib", "/var/lib/thrashguard"),
                       ("home", "/home")]:
        rc, _ = sh(f"nsenter -t {pid} -m -- test -w {path}")
        checks[name] = "writable" if rc == 0 else "not writable"
    rc, _ = sh(f"nsenter -t {pid} -m -- test -e /home/.")
    checks["home_visible"] = rc == 0
    step("sandbox", checks["psi_trigger"] == "writable" and checks["cgroup_procs"] == "writable", **checks)

    # 4. a stopped guard is killed by the watchdog and restarted
    before = show()
    t = time.monotonic()
    sh("systemctl kill -s STOP thrashguard")
    after = wait_for(lambda: (lambda s: s if s.get("MainPID") not in ("0", before.get("MainPID")) and s.get("ActiveState") == "active"
                                 and s.get("StatusText", "").startswith("guarding") else None)(show()), 60)
    restart_s = round(time.monotonic() - t, 1)
    after = after or show()
    jr = journal()
    save("journal-after-watchdog.txt", jr)
    step("watchdog", int(after.get("NRestarts", 0)) == int(before.get("NRestarts", 0)) + 1 and after.get("MainPID") != before.get("MainPID"),
         before=before, after=after, restart_s=restart_s, watchdog_line=[l for l in jr.splitlines() if "atchdog" in l][-3:])

    # 5. a hog, rescued with the packaged defaults
    sh("swapon /dev/vdb || (mkswap /dev/vdb && swapon /dev/vdb)")
    _, swaps = sh("cat /proc/swaps")
    before = show()
    rc, secs, how = hog()
    time.sleep(2)
    after = show()
    jr = journal()
    save("journal-after-hog.txt", jr)
    kills = [l for l in jr.splitlines() if "did kill" in l]
    step("hog_rescued", rc == -9 and how == "exited" and kills and after.get("NRestarts") == before.get("NRestarts")
         and after.get("ActiveState") == "active",
         hog_rc=rc, hog_s=secs, how=how, kills=kills[-3:], swaps=swaps, nrestarts_before=before.get("NRestarts"),
         nrestarts_after=after.get("NRestarts"))
    sh("swapoff /dev/vdb")

    # 6. remove, then purge
    rc, out = sh("dpkg -r thrashguard")
    save("dpkg-remove.txt", out)
    st = show()
    gone = not os.path.exists("/usr/bin/thrashguard") and not os.path.exists("/lib/systemd/system/thrashguard.service")
    conf_kept = os.path.exists("/etc/thrashguard/thrashguard.toml")
    step("remove", rc == 0 and st.get("ActiveState") in ("inactive", "failed") and gone and conf_kept,
         rc=rc, show=st, files_gone=gone, conffile_kept=conf_kept)
    rc, out = sh("dpkg -P thrashguard")
    save("dpkg-purge.txt", out)
    _, left = sh("ls -d /etc/thrashguard /var/lib/thrashguard /run/thrashguard /var/lib/systemd/deb-systemd-helper-enabled/*thrashguard* "
                 "/etc/systemd/system/multi-user.target.wants/thrashguard.service /var/lib/systemd/deb-systemd-helper-masked/thrashguard* 2>/dev/null")
    _, status = sh("dpkg -s thrashguard 2>&1 | head -n 2")
    step("purge", rc == 0 and not left.strip() and "not installed" in status, rc=rc, left=left.strip(), dpkg_s=status.strip())

    # 7. beside earlyoom: installed and enabled, not started, and it says so
    sh("systemctl start earlyoom")
    deb, rc, out, secs = install()
    save("dpkg-install-beside-earlyoom.txt", out)
    time.sleep(2)
    st = show()
    _, enabled = sh("systemctl is-enabled thrashguard")
    step("beside_earlyoom", rc == 0 and st.get("ActiveState") == "inactive" and "NOT started" in out and "earlyoom" in out,
         rc=rc, show=st, enabled=enabled.strip(), said=[l for l in out.splitlines() if l.startswith("thrashguard:")])
    sh("systemctl stop earlyoom")
    sh("dpkg -P thrashguard")

    RES["ok"] = all(s["ok"] for s in RES["steps"].values())
    RES["wall_s"] = now()


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # record how far it got
        RES["error"] = repr(e)
        RES["ok"] = False
    finally:
        with open(os.path.join(OUT, "deb-check.json"), "w") as f:
            json.dump(RES, f, indent=1)
            f.write("\n")
        sh("sync")
        # The runner unit's SuccessAction= is not honoured on this systemd (252 ignores it
        # in [Service]): power off at once, as guest-run does (the disks are a throwaway overlay).
        subprocess.run(["systemctl", "poweroff", "--force", "--force"], check=False)
