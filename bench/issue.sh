#!/usr/bin/env bash
# Issue-path benchmark: wrk drives POST /issue with fresh users, the post-sell-out path
# (410 from memory) and /healthz against the same server in one run, and prints req/s,
# p50, p99 and the ratios. All runs use the same wrk Lua script (bench/issue.lua), so the
# client's per-request cost is equal and the ratios compare the server's paths. Everything on loopback; each wrk run is bounded by -d.
#   bench/issue.sh            # defaults: 3 rounds of 5 s per path, 2 threads, 64 connections
#   ROUNDS=5 DURATION=10s CONNECTIONS=32 bench/issue.sh
#   STAMPEDE_BIN=/path/to/stampede-service bench/issue.sh   # another build (a baseline)
#   AUTH=none bench/issue.sh   # serve --auth none: the same requests, nothing verified
#                              # (the A/B for the cost of verifying tokens)
#   REPLICA=1 bench/issue.sh   # also `issue-replica`: a second service with
#                              # --durability replica (the stack's replica attached to both)
# The paths run interleaved (healthz, issue, sold-out, healthz, …) and each figure is the
# median over the rounds, so a noisy neighbour hits every path alike. Every request carries
# a bearer token (serve verifies it on the issue paths), minted before each run with
# `stampede-service token`: TOKENS_PER_SEC (60000) x DURATION users per run.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/service.sh
DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
TOKENS_PER_SEC=${TOKENS_PER_SEC:-60000}
PORT=${BENCH_PORT:-18181}
ensure_bin
command -v wrk >/dev/null || scripts/deps
scripts/stack up >/dev/null
eval "$(scripts/stack env)"

run=$(date +%s)
live="bench-live-$run"
gone="bench-gone-$run"
"$BIN" campaign create --id "$live" --stock 100000000 >/dev/null
"$BIN" campaign create --id "$gone" --stock 1 >/dev/null

log="$STAMPEDE_HOME/bench-service.log"
# The relay runs as its own process in production-sized setups; here it would compete for
# the same two cores, so the hot path is measured alone (bench/drain.sh measures the relay).
STAMPEDE_LOG=warn start_service "$PORT" "$log" --max-in-flight 4096 --no-relay ${AUTH:+--auth "$AUTH"}
# /healthz lives on the operations listener; the same process, so still the reference.
ops_url=$SVC_METRICS

if [ "${REPLICA:-0}" = 1 ]; then
  # The stack's Redis replica (scripts/stack up replica) and a second service that
  # acknowledges only what the replica holds; both services then run with it attached.
  if ! scripts/stack status replica >/dev/null 2>&1; then
    STAMPEDE_SKIP_DEPS=1 scripts/stack up replica >/dev/null
    trap 'scripts/stack down replica >/dev/null 2>&1; stop_roles' EXIT
  fi
  STAMPEDE_LOG=warn start_service "$((PORT + 1))" "$log.replica" --max-in-flight 4096 --no-relay \
    --durability replica ${AUTH:+--auth "$AUTH"}
fi

# Sell the "gone" campaign out so that every later request takes the memory path.
curl -sf -XPOST -H "Authorization: Bearer $("$BIN" token --sub first)" \
  -H 'content-type: application/json' -d '{"userId":"first"}' \
  "http://127.0.0.1:$PORT/v1/campaigns/$gone/issue" >/dev/null

results="$STAMPEDE_HOME/bench-issue.tsv"
: >"$results"
tokens="$STAMPEDE_HOME/bench-tokens.txt"
secs=${DURATION%s}; [[ $secs =~ ^[0-9]+$ ]] || secs=10
minted=0
wrk_run() { # name url mode [campaign]: appends "name rps p50_us p99_us non2xx" to $results
  local name=$1 url=$2 mode=$3; shift 3
  # Fresh users for every run, minted before wrk starts (not part of the measurement).
  "$BIN" token --with-sub --sub-prefix "$run-$name-$((++minted))" --count "$((secs * TOKENS_PER_SEC))" >"$tokens"
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s bench/issue.lua "$url" -- \
    "$mode" "$@" "$tokens" "$THREADS" |
    awk -v name="$name" '
      function us(v) { if (v ~ /us$/) return v+0; if (v ~ /ms$/) return v*1000; if (v ~ /s$/) return v*1e6; return v }
      /^Requests\/sec:/ {rps=$2} $1=="50%" {p50=us($2)} $1=="99%" {p99=us($2)}
      /Non-2xx or 3xx responses:/ {n=$NF}
      END {printf "%s\t%s\t%s\t%s\t%d\n", name, rps, p50, p99, n}' >>"$results"
}

echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION x $ROUNDS rounds; service + redis + wrk on $(nproc) cores"
url="http://127.0.0.1:$PORT"
for _ in $(seq "$ROUNDS"); do
  wrk_run healthz "$ops_url" healthz
  wrk_run issue "$url" issue "$live"
  if [ "${REPLICA:-0}" = 1 ]; then
    wrk_run issue-replica "http://127.0.0.1:$((PORT + 1))" issue "$live"
  fi
  wrk_run sold-out "$url" issue "$gone"
done
rm -f "$tokens"
python3 - "$results" <<'PY'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]) if l.strip()]
med = {}
for name in ("healthz", "issue", "issue-replica", "sold-out"):
    rs = [r for r in rows if r[0] == name]
    if not rs:
        continue
    rps, p50, p99 = (statistics.median(float(r[i]) for r in rs) for i in (1, 2, 3))
    med[name] = rps
    runs = " ".join(f"{float(r[1]):.0f}" for r in rs)
    non2xx = sum(int(r[4]) for r in rs)
    print(f"{name:9} {rps:10.0f} req/s  p50 {p50/1000:6.2f} ms  p99 {p99/1000:6.2f} ms  non-2xx {non2xx:<9} runs: {runs}")
h = med["healthz"]
print(f"ratio issue/healthz    {med['issue']/h:.2f} (aim >= 0.30, p99 <= 5 ms)")
print(f"ratio sold-out/healthz {med['sold-out']/h:.2f} (aim >= 0.80)")
if "issue-replica" in med:
    print(f"ratio issue-replica/issue {med['issue-replica']/med['issue']:.2f} (the cost of --durability replica)")
PY
issued=$("$BIN" campaign show --id "$live" | sed -n 's/.*"issued":\([0-9]*\).*/\1/p')
echo "coupons issued during the issue run: $issued (each one a fresh user)"
forget_campaign "$live"; forget_campaign "$gone"
