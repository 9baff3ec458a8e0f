#!/usr/bin/env bash
# Report 000's spike against `serve` as deployed (its defaults: the relay in-process, a
# writer running): VUS (1000) users at once, one request each, with k6 — the real profile
# (k6-jobs/spike.js, POST /issue with a token per user) and, alternated with it in the same
# run, the same spike against /healthz (bench/spike-healthz.js): the floor that k6 starting
# 1 000 VUs and opening 1 000 connections on two cores sets. Prints each run's p95 and the
# medians' ratio (aim: issue within 1.2x of healthz, 0 errors).
#   bench/spike.sh            # ROUNDS=3 VUS=1000
#   ROUNDS=5 VUS=500 bench/spike.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/service.sh
ROUNDS=${ROUNDS:-3}
VUS=${VUS:-1000}
PORT=${BENCH_PORT:-18187}
ensure_bin
K6=$(scripts/deps k6-path)
scripts/stack up >/dev/null
eval "$(scripts/stack env)"
run=$(date +%s)
c="bench-spike-$run"
out="$STAMPEDE_HOME/bench-spike-$run"
mkdir -p "$out"
"$BIN" migrate >/dev/null
"$BIN" campaign create --id "$c" --stock 100000000 >/dev/null
STAMPEDE_LOG=warn start_service "$PORT" "$out/service.log" --relay-campaigns "$c"
ops_url=$SVC_METRICS
STAMPEDE_LOG=warn start_role "$out/writer.log" writer --metrics-listen 127.0.0.1:0 \
  --group "bench-spike-$run" --topics "stampede.$c"
# Raise the open-files limit for 1 000 client and 1 000 server sockets.
ulimit -n 65536 2>/dev/null || true
echo "k6 spike: $VUS VUs, one request each, x $ROUNDS rounds (healthz, issue alternated)"
for i in $(seq "$ROUNDS"); do
  BASE_URL=$ops_url VUS=$VUS "$K6" run --quiet --no-color bench/spike-healthz.js \
    2>"$out/healthz-$i.stderr" | tail -n 1 >"$out/healthz-$i.json"
  BASE_URL="http://127.0.0.1:$PORT" CAMPAIGN=$c VUS=$VUS RUN_ID="$run-$i" LOG_ISSUED=0 \
    SUMMARY_FILE="$out/issue-$i.json" "$K6" run --quiet --no-color k6-jobs/spike.js \
    >/dev/null 2>"$out/issue-$i.stderr" || echo "round $i: k6 spike exited $? (see $out/issue-$i.stderr)"
done
python3 - "$out" "$ROUNDS" "$VUS" <<'PY'
import json, statistics, sys
out, rounds, vus = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
h = [json.load(open(f"{out}/healthz-{i}.json")) for i in range(1, rounds + 1)]
s = [json.load(open(f"{out}/issue-{i}.json")) for i in range(1, rounds + 1)]
for i, (a, b) in enumerate(zip(h, s), 1):
    print(f"round {i}: healthz p95 {a['p95']:7.1f} ms ({a['failed']} failed)   "
          f"issue p95 {b['p95']:7.1f} ms  outcomes {b['outcomes']}  errorRate {b['errorRate']}")
hp = statistics.median(a["p95"] for a in h)
ip = statistics.median(b["p95"] for b in s)
errors = sum(a["failed"] for a in h) + sum(b["outcomes"].get("503", 0) + b["outcomes"].get("other", 0) for b in s)
print(f"median p95: healthz {hp:.1f} ms, issue {ip:.1f} ms: issue/healthz {ip / hp:.2f} (aim <= 1.2), errors {errors} (aim 0)")
PY
forget_campaign "$c"
