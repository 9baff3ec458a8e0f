#!/usr/bin/env python3
"""Where the CPU of every running `stampede-service serve` goes, thread group by thread
group: every 0.5 s, each thread's time run and time runnable but waiting for a core
(/proc/<pid>/task/<tid>/schedstat), summed per thread name (tokio-rt-worker, relay, the
librdkafka threads). Run it beside a benchmark; the summary compares the request workers of
the relay-on `serve` while its relay works (an issue run) with those of `serve --no-relay`.

Usage: bench/serve_schedstat.py record OUT SECONDS   samples for SECONDS into OUT (JSON lines)
       bench/serve_schedstat.py summary OUT          the comparison, one line per path
       bench/serve_schedstat.py --self-test          checks the summary on rows it writes
e.g.   bench/serve_schedstat.py record /tmp/sched.jsonl 150 & bench/issue.sh"""
import json
import os
import re
import sys
import tempfile
import time

WORKERS = "tokio-rt-worker"
PERIOD = 0.5


def serving():
    """{pid: command line} of the `serve` processes running."""
    found = {}
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = open(f"/proc/{p}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if len(cmd) > 1 and b"stampede-service" in cmd[0] and cmd[1] == b"serve":
            found[int(p)] = b" ".join(cmd).decode(errors="replace")
    return found


def threads(pid):
    """{thread name without its number: [ns run, ns waiting]} of one process."""
    groups = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return groups
    for tid in tids:
        try:
            name = open(f"/proc/{pid}/task/{tid}/comm").read().strip()
            run, wait, _ = map(int, open(f"/proc/{pid}/task/{tid}/schedstat").read().split())
        except (OSError, ValueError):
            continue
        g = groups.setdefault(re.sub(r"[-_ ]?\d+$", "", name), [0, 0])
        g[0] += run
        g[1] += wait
    return groups


def record(out, seconds):
    prev, end = {}, time.time() + seconds
    with open(out, "w") as f:
        while time.time() < end:
            now = time.time()
            for pid, cmd in serving().items():
                cur = threads(pid)
                if pid in prev:
                    ms = {k: [round((v[i] - prev[pid].get(k, [0, 0])[i]) / 1e6, 1) for i in (0, 1)]
                          for k, v in cur.items()}
                    if sum(v[0] for v in ms.values()) >= 100:  # ran >= 0.2 core: under load
                        row = {"t": round(now, 1), "pid": pid, "relay": "--no-relay" not in cmd, "ms": ms}
                        f.write(json.dumps(row) + "\n")
                        f.flush()
                prev[pid] = cur
            time.sleep(max(0.0, PERIOD - (time.time() - now)))


def summary(rows):
    """Per path, the intervals that were issue runs: relay-on ones are those where its relay
    thread worked (>= 5 ms in 0.5 s), relay-off ones every loaded interval of --no-relay."""
    def issuing(r):
        busy = r["ms"].get(WORKERS, [0, 0])[0] >= 200
        return busy and (not r["relay"] or r["ms"].get("relay", [0, 0])[0] >= 5)
    out = {}
    for relay in (True, False):
        rs = [r for r in rows if r["relay"] == relay and issuing(r)]
        if not rs:
            continue
        run = sum(r["ms"][WORKERS][0] for r in rs)
        wait = sum(r["ms"][WORKERS][1] for r in rs)
        others = sum(v[0] for r in rs for k, v in r["ms"].items() if k != WORKERS)
        secs = len(rs) * PERIOD
        out["relay on" if relay else "relay off"] = {
            "intervals": len(rs),
            "workers_cores": round(run / 1e3 / secs, 3),
            "workers_wait_per_run": round(wait / run, 2),
            "other_threads_cores": round(others / 1e3 / secs, 3),
        }
    return out


def self_test():
    def row(relay, worker, relay_ms, rdk=0.0):
        ms = {WORKERS: worker, "relay": [relay_ms, 0.0], "rdk:broker": [rdk, 0.0]}
        return {"t": 0, "pid": 1 if relay else 2, "relay": relay, "ms": ms}
    rows = [
        row(True, [300.0, 510.0], 17.0, 9.0),
        row(True, [290.0, 490.0], 18.0, 9.0),
        row(True, [450.0, 460.0], 0.7),  # sold-out or healthz on the headline: not an issue run
        row(False, [340.0, 480.0], 0.0),
        row(False, [20.0, 10.0], 0.0),  # idle
    ]
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
    got = summary(load(f.name))
    os.unlink(f.name)
    want = {
        "relay on": {"intervals": 2, "workers_cores": 0.59, "workers_wait_per_run": 1.69,
                     "other_threads_cores": 0.053},
        "relay off": {"intervals": 1, "workers_cores": 0.68, "workers_wait_per_run": 1.41,
                      "other_threads_cores": 0.0},
    }
    assert got == want, f"{got} != {want}"
    print("serve_schedstat: self-test passed")


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def main(argv):
    if argv[1:2] == ["--self-test"]:
        return self_test()
    if len(argv) == 4 and argv[1] == "record":
        return record(argv[2], float(argv[3]))
    if len(argv) == 3 and argv[1] == "summary":
        for path, figures in summary(load(argv[2])).items():
            print(f"{path}: {json.dumps(figures)}")
        return None
    sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
