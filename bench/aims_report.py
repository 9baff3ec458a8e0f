#!/usr/bin/env python3
"""bench/aims_report.py DIR: issue #14's aims judged from the logs bench/aims.sh wrote.

Reads DIR/{issue,reports,spike,drain}.log (the benches' own summary lines, named below
beside each aim) and prints one table: the aim, what this sitting measured, met or not.
Exits 1 when a summary line is missing (a bench failed, or its output changed), never
because an aim is unmet: a benchmark reports, it does not pass or fail.

  python3 bench/aims_report.py DIR
  python3 bench/aims_report.py --self-test   # the parser against lines the benches print
"""
import re
import statistics
import sys

NUM = r"([\d.]+)"
# Each pattern is one summary line a bench prints (the bench named first).
ISSUE = re.compile(rf"^issue +\d+ req/s +p50 +{NUM} ms +p99 +{NUM} ms.*redis +{NUM} us/issuance", re.M)
NO_RELAY = re.compile(rf"^issue-no-relay +\d+ req/s.*redis +{NUM} us/issuance", re.M)
RATIO = re.compile(rf"^ratio (issue|sold-out)/healthz +{NUM}", re.M)
PEAK = re.compile(rf"^(002|004)-peak: .*?, p95 {NUM} ms, .*errors (\d+), dropped (\d+)", re.M)
SPIKE = re.compile(
    rf"^median p95: healthz {NUM} ms, sold-out {NUM} ms, issue {NUM} ms: issue/healthz {NUM}.*errors (\d+)", re.M)
PAIRED = re.compile(rf"^paired per round: issue/healthz median {NUM}, range \S+, (\d+) of (\d+) rounds within", re.M)
# bench/spike.sh with WIRE=1: k6's waiting split at the wire, per spike.
WIRE = re.compile(rf"^wire (healthz|sold-out|issue) +{NUM} / +{NUM} +\| +{NUM} +{NUM} ", re.M)
LIVE = re.compile(rf"^live +(\d+) rows in {NUM} s from the first issuance: (\d+) rows/s; "
                  rf"issuance-to-row p50 / p99 (\S+) / (\S+) ms", re.M)
LIVE_CPU = re.compile(rf"^live +CPU us per row: (.*?)\(total {NUM}", re.M)


def judge(logs):
    """Rows (aim, measured, met: True/False/None) from the four logs' text; None: no line."""
    rows = []
    issue, no_relay = ISSUE.search(logs["issue"]), NO_RELAY.search(logs["issue"])
    ratios = {m[1]: float(m[2]) for m in RATIO.finditer(logs["issue"])}
    rows.append(("issue ÷ /healthz ≥ 0.35 (serve defaults, wrk -c64)",
                 ratios.get("issue"), lambda v: v >= 0.35, "{:.2f}"))
    rows.append(("issue p99 ≤ 5 ms (the same runs)",
                 issue and float(issue[2]), lambda v: v <= 5, "{:.2f} ms"))
    rows.append(("sold-out ÷ /healthz ≥ 0.85",
                 ratios.get("sold-out"), lambda v: v >= 0.85, "{:.2f}"))
    peaks = {}
    for m in PEAK.finditer(logs["reports"]):
        peaks.setdefault(m[1], []).append((float(m[2]), int(m[3]) + int(m[4])))
    for shape in ("002", "004"):
        runs = peaks.get(shape)
        p95 = runs and statistics.median(p for p, _ in runs)
        bad = runs and sum(e for _, e in runs)
        rows.append((f"report {shape} peak: k6 p95 ≤ 5 ms (median of rounds), 0 errors",
                     runs and (p95, bad, [p for p, _ in runs]), lambda v: v[0] <= 5 and v[1] == 0,
                     lambda v: f"{v[0]:.2f} ms ({', '.join(f'{p:.2f}' for p in v[2])}); "
                               f"errors+dropped {v[1]}"))
    spike, paired = SPIKE.search(logs["spike"]), PAIRED.search(logs["spike"])
    pairs = f"; per round {paired[1]}× median, {paired[2]} of {paired[3]} within 1.2" if paired else ""
    rows.append(("spike (1 000 users at once): issue p95 ≤ 1.2 × /healthz's",
                 spike and (float(spike[4]), float(spike[3]), float(spike[1])), lambda v: v[0] <= 1.2,
                 lambda v: f"{v[0]:.2f}× ({v[1]:.1f} / {v[2]:.1f} ms, medians{pairs})"))
    rows.append(("spike: 0 errors", spike and int(spike[5]), lambda v: v == 0, "{}"))
    live = LIVE.search(logs["drain"])
    rows.append(("drain while issuing ≥ 100 000 rows/s end to end",
                 live and (int(live[3]), int(live[1]), live[5]), lambda v: v[0] >= 100_000,
                 lambda v: f"{v[0]:,} rows/s ({v[1]:,} rows; issuance-to-row p99 {v[2]} ms)"))
    info = []
    if issue and no_relay:
        info.append(f"Redis CPU per issuance: {issue[3]} µs with the relay, {no_relay[1]} µs without")
    wire = {m[1]: (float(m[3]), float(m[5])) for m in WIRE.finditer(logs["spike"])}
    if "issue" in wire and "healthz" in wire:
        info.append(f"spike at the wire (p95, medians): the server answered issue in {wire['issue'][0]:.1f} ms, "
                    f"/healthz in {wire['healthz'][0]:.1f} ms; k6's own share of its waiting "
                    f"{wire['issue'][1]:.1f} and {wire['healthz'][1]:.1f} ms")
    cpu = LIVE_CPU.search(logs["drain"])
    if cpu:
        total = float(cpu[2])
        client = float(dict(kv.split("=") for kv in cpu[1].split()).get("wrk", 0))
        own = total - client
        info.append(f"drain while issuing: {total:.1f} µs of CPU per row, the platform's own {own:.1f} "
                    f"(wrk {client:.1f}): two cores, fully used, fit {2e6 / total:,.0f} rows/s with the client, "
                    f"{2e6 / own:,.0f} without; 100 000 rows/s is {own / 10:.2f} cores of the platform's")
    return [(aim, value, None if value is None else test(value),
             None if value is None else (fmt(value) if callable(fmt) else fmt.format(value)))
            for aim, value, test, fmt in rows], info


def render(rows, info):
    """The table as printed; returns it with the count of rows measured."""
    width = max(len(aim) for aim, *_ in rows)
    lines = [f"{'aim (issue #14)':<{width}}  met  measured"]
    for aim, _, met, shown in rows:
        verdict = "—  " if met is None else ("yes" if met else "no ")
        lines.append(f"{aim:<{width}}  {verdict}  {shown if shown is not None else 'not measured: no summary line'}")
    done = [met for _, _, met, _ in rows if met is not None]
    lines.append(f"met {sum(done)} of {len(rows)} aims ({len(rows) - len(done)} not measured)")
    lines.extend(info or [])
    return "\n".join(lines), len(done)


SAMPLE = {
    "issue": """issue             36704 req/s  p50  1.61 ms  p99  7.79 ms  non-2xx 0        redis 10.20 us/issuance  serve  19.7 us CPU/req  runs: 35780
issue-no-relay    42178 req/s  p50  1.44 ms  p99  5.03 ms  non-2xx 0        redis 11.69 us/issuance  serve  17.3 us CPU/req  runs: 44266
ratio issue/healthz          0.30 (serve defaults, relay and writer on; aim >= 0.35, p99 <= 5 ms)
ratio issue-no-relay/healthz 0.34 (the hot path alone)
ratio sold-out/healthz       0.86 (aim >= 0.85)""",
    "reports": """002-peak: 33499 req (558/s), p95 4.27 ms, p99 13.47 ms (the service's own p95 1.46 ms), 201 33499, errors 0, dropped 0; CPU s k6 19.1
004-peak: 30002 req (1000/s), p95 1.83 ms, p99 5.67 ms (the service's own p95 0.76 ms), 201 30002, errors 0, dropped 0; CPU s k6 15.7
002-peak: 33499 req (558/s), p95 6.10 ms, p99 9.07 ms (the service's own p95 0.89 ms), 201 33499, errors 0, dropped 0; CPU s k6 19.2
004-peak: 30003 req (1000/s), p95 1.83 ms, p99 5.28 ms (the service's own p95 0.74 ms), 201 30002, errors 1, dropped 0; CPU s k6 16.2""",
    "spike": "median p95: healthz 74.8 ms, sold-out 68.4 ms, issue 108.0 ms: issue/healthz 1.44 (aim <= 1.2), "
             "sold-out/healthz 0.91, issue/sold-out 1.58 (the same k6 work), errors 0 (aim 0)\n"
             "paired per round: issue/healthz median 2.07, range 0.64-4.99, 6 of 20 rounds within 1.2\n"
             "wire healthz       0.6 /     3.3  |     48.0     39.8    |    131.4            176.2\n"
             "wire issue         5.8 /    14.2  |     95.7     85.4    |    212.7            274.6",
    "drain": "live    1000000 rows in 37.7 s from the first issuance: 26507 rows/s; issuance-to-row p50 / p99 114 / 161 ms "
             "(relay in serve, writer, issuing meanwhile)\n"
             "live    CPU us per row: serve=14.1 serve.relay=0.8 redis=7.3 kafka=1.1 postgres=4.9 writer=1.0 "
             "wrk=11.7 (total 40.1; wrk's token loading included)",
}


def self_test():
    """The parser against lines as the benches print them: every aim found and judged."""
    rows, info = judge(SAMPLE)
    met = [m for _, _, m, _ in rows]
    assert met == [False, False, True, False, False, False, True, False], met
    assert rows[3][3] == "5.18 ms (4.27, 6.10); errors+dropped 0", rows[3][3]
    assert rows[4][3].startswith("1.83 ms") and rows[4][3].endswith("errors+dropped 1"), rows[4][3]
    assert rows[5][3] == "1.44× (108.0 / 74.8 ms, medians; per round 2.07× median, 6 of 20 within 1.2)", rows[5][3]
    assert rows[7][3] == "26,507 rows/s (1,000,000 rows; issuance-to-row p99 161 ms)", rows[7][3]
    assert info[0] == "Redis CPU per issuance: 10.20 µs with the relay, 11.69 µs without", info
    assert info[1] == ("spike at the wire (p95, medians): the server answered issue in 14.2 ms, /healthz in 3.3 ms; "
                       "k6's own share of its waiting 85.4 and 39.8 ms"), info
    assert info[2] == ("drain while issuing: 40.1 µs of CPU per row, the platform's own 28.4 (wrk 11.7): "
                       "two cores, fully used, fit 49,875 rows/s with the client, 70,423 without; "
                       "100 000 rows/s is 2.84 cores of the platform's"), info
    rows, info = judge(dict(SAMPLE, spike="k6 exited 1"))
    assert len(info) == 2, info
    assert [m for _, _, m, _ in rows][5:7] == [None, None]
    text, measured = render(rows, None)
    assert measured == 6 and "not measured" in text, text
    print("aims_report: self-test passed")


def main():
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    logs = {}
    for name in ("issue", "reports", "spike", "drain"):
        try:
            logs[name] = open(f"{sys.argv[1]}/{name}.log").read()
        except OSError:
            logs[name] = ""
    rows, info = judge(logs)
    text, measured = render(rows, info)
    print(text)
    sys.exit(0 if measured == len(rows) else 1)


if __name__ == "__main__":
    main()
