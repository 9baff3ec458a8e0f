#!/usr/bin/env python3
"""bench/spike.sh's report: per round and spike (healthz, sold-out, issue) the k6 p95 and
what it is made of, then the medians and the aim (issue p95 within 1.2x of healthz's).

Usage: bench/spike_report.py OUT_DIR ROUNDS (the files bench/spike.sh leaves in OUT_DIR)."""
import csv
import json
import os
import statistics
import sys

SPIKES = ("healthz", "sold-out", "issue")


def p95(values):
    """The 95th percentile of a list of numbers (None when empty)."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[94]


def k6_samples(path):
    """k6's per-request samples from its CSV output, by metric name (ms)."""
    by_metric = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            by_metric.setdefault(row["metric_name"], []).append(float(row["metric_value"]))
    return by_metric


def buckets(path):
    """A histogram dump ("le count" lines) as {le: count}."""
    out = {}
    with open(path) as f:
        for line in f:
            le, n = line.split()
            out[float("inf") if le == "+Inf" else float(le)] = float(n)
    return out


def handler_p95(before, after):
    """The p95 (ms) of the requests a histogram gained between two dumps, interpolated
    linearly inside its bucket (None when it gained none)."""
    les = sorted(after)
    cum = [after[le] - before.get(le, 0.0) for le in les]
    total = cum[-1] if cum else 0.0
    if total <= 0:
        return None
    target, prev_le, prev_n = 0.95 * total, 0.0, 0.0
    for le, n in zip(les, cum):
        if n >= target:
            if le == float("inf"):
                return prev_le * 1000
            share = (target - prev_n) / (n - prev_n) if n > prev_n else 1.0
            return 1000 * (prev_le + share * (le - prev_le))
        prev_le, prev_n = le, n
    return None


def run(out, name, i):
    """One spike's figures."""
    base = f"{out}/{name}-{i}"
    samples = k6_samples(f"{base}.csv")
    user, system = (float(x) for x in open(f"{base}.k6cpu").read().split()[-2:])
    counters = [int(x) for x in open(f"{base}.counters").read().split()]
    serve_ticks, redis_ticks, overflows = counters[:3]
    # Every process's CPU over the spike less k6's, serve's and Redis's (older logs lack it).
    others = (counters[3] - serve_ticks - redis_ticks) / 100 - user - system if len(counters) > 3 else None
    if name == "healthz":
        summary = json.loads(open(f"{base}.stdout").read().strip().splitlines()[-1])
        outcomes, errors = {"200": summary["requests"] - summary["failed"]}, summary["failed"]
    else:
        summary = json.load(open(f"{base}.json"))
        outcomes = {k: v for k, v in summary["outcomes"].items() if v}
        errors = summary["outcomes"]["503"] + summary["outcomes"]["other"]
    wire = json.load(open(f"{base}.wire")) if os.path.exists(f"{base}.wire") else None
    return {
        "p95": p95(samples.get("http_req_duration", [])),
        "connect": p95(samples.get("http_req_connecting", [])),
        "waiting": p95(samples.get("http_req_waiting", [])),
        "handler": None if name == "healthz" else handler_p95(buckets(f"{base}.h0"), buckets(f"{base}.h1")),
        "k6_cpu": user + system,
        "serve_cpu": serve_ticks / 100,
        "redis_cpu": redis_ticks / 100,
        "others_cpu": others,
        "overflows": overflows,
        "outcomes": outcomes,
        "errors": errors,
        "wire_server": wire and wire["server"]["p95"],
        "wire_server_p50": wire and wire["server"]["p50"],
        "wire_to_request": wire and wire["syn_to_request"]["p95"],
        "wire_span": wire and wire["span_ms"],
    }


def median(values):
    """The median of the values that are not None (None when there are none)."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def ms(v):
    return "   -   " if v is None else f"{v:7.1f}"


def cpu(v):
    return "    -" if v is None else f"{v:6.2f}"


def main():
    out, rounds = sys.argv[1], int(sys.argv[2])
    runs = {name: [run(out, name, i) for i in range(1, rounds + 1)] for name in SPIKES}
    print("spike     round   p95 ms  connect  waiting  handler | CPU s: k6  serve  Redis others | overflows  outcomes")
    for i in range(rounds):
        for name in SPIKES:
            r = runs[name][i]
            print(f"{name:9} {i + 1:5} {ms(r['p95'])} {ms(r['connect'])}  {ms(r['waiting'])}  {ms(r['handler'])} |"
                  f"   {r['k6_cpu']:5.2f} {r['serve_cpu']:5.2f}  {r['redis_cpu']:5.2f} {cpu(r['others_cpu'])} | {r['overflows']:9}  {r['outcomes']}")
    keys = ("p95", "connect", "waiting", "handler", "k6_cpu", "serve_cpu", "redis_cpu", "others_cpu")
    med = {n: {k: median([r[k] for r in runs[n]]) for k in keys} for n in SPIKES}
    for name in SPIKES:
        m = med[name]
        print(f"median {name:9} p95 {ms(m['p95'])} ms, waiting {ms(m['waiting'])}, handler {ms(m['handler'])}; "
              f"CPU s k6 {m['k6_cpu']:.2f}, serve {m['serve_cpu']:.2f}, Redis {m['redis_cpu']:.2f}, others {cpu(m['others_cpu']).strip()}")
    wire_report(runs)
    errors = sum(r["errors"] for n in SPIKES for r in runs[n])
    h = med["healthz"]["p95"]
    print(f"median p95: healthz {h:.1f} ms, sold-out {med['sold-out']['p95']:.1f} ms, issue {med['issue']['p95']:.1f} ms: "
          f"issue/healthz {med['issue']['p95'] / h:.2f} (aim <= 1.2), sold-out/healthz {med['sold-out']['p95'] / h:.2f}, "
          f"issue/sold-out {med['issue']['p95'] / med['sold-out']['p95']:.2f} (the same k6 work), errors {errors} (aim 0)")
    # Each round's issue spike against the healthz spike run just before it: drift between
    # minutes cancels out of a pair.
    pairs = sorted(i["p95"] / h["p95"] for i, h in zip(runs["issue"], runs["healthz"]) if i["p95"] and h["p95"])
    if pairs:
        within = sum(p <= 1.2 for p in pairs)
        print(f"paired per round: issue/healthz median {statistics.median(pairs):.2f}, range {pairs[0]:.2f}-{pairs[-1]:.2f}, "
              f"{within} of {len(pairs)} rounds within 1.2")


def wire_report(runs):
    """With captures (WIRE=1): k6's waiting split at the wire, medians over the rounds."""
    if not any(r["wire_server"] is not None for n in SPIKES for r in runs[n]):
        return
    print("wire      (medians) server p50 / p95 ms  | k6 waiting p95  client's own | SYN->request p95  span ms")
    for name in SPIKES:
        m = {k: median([r[k] for r in runs[name]]) for k in ("wire_server_p50", "wire_server", "waiting", "wire_to_request", "wire_span")}
        own = [r["waiting"] - r["wire_server"] for r in runs[name] if r["waiting"] is not None and r["wire_server"] is not None]
        print(f"wire {name:9} {ms(m['wire_server_p50'])} / {ms(m['wire_server'])}  |  {ms(m['waiting'])}  {ms(median(own))}    |"
              f"  {ms(m['wire_to_request'])}          {ms(m['wire_span'])}")


if __name__ == "__main__":
    main()
