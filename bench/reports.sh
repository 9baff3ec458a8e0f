#!/usr/bin/env bash
# The peaks of load-test reports 002 and 004 replayed with k6 against `serve` as deployed
# (its defaults: the relay in-process, a writer running, Kafka and PostgreSQL on the same
# cores), each iteration a fresh user with a token:
#   002-peak  k6-jobs/peak.js: 10 s at 100 req/s, 20 s climb to 2 000 req/s, 10 s back to
#             100, 20 s to 0 (the report: p95 1.66 s at 2 000/s)
#   004-peak  k6-jobs/soak.js RATE=1000 DURATION=30 MAX_VUS=500: 1 000 iterations/s for
#             30 s with at most 500 VUs (the report: 691 req/s of 1 000, 2.33 % failed, p95
#             961 ms, and its Kafka consumers took 15 min to drain the run)
# Per run: p95/p99, outcomes, dropped iterations, and the drain the reports suffered from:
# how long after the last issuance the last row was in PostgreSQL, and the issuance-to-row
# p50/p99 (from the rows' issued_at and persisted_at); beside k6's figures, the service's
# own p95 (its latency histogram) and the CPU k6, serve and Redis used over the run. Shapes alternate, ROUNDS times; the k6 threshold is the aim, P95_MS (5).
#   bench/reports.sh                       # ROUNDS=2 SHAPES="002-peak 004-peak"
#   ROUNDS=3 SHAPES=004-peak bench/reports.sh
#   CLIENT_NICE=19 bench/reports.sh       # k6 at that niceness: the client, which stands for
#                                         # users elsewhere, yields the cores to what it measures
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/service.sh
ROUNDS=${ROUNDS:-2}
SHAPES=${SHAPES:-002-peak 004-peak}
P95_MS=${P95_MS:-5}
PORT=${BENCH_PORT:-3189}
WRITER_URL="http://127.0.0.1:${WRITER_METRICS_PORT:-18190}"
K6=$(scripts/deps k6-path)
bench_setup reports

# One campaign per run, all created before serve and the writer start (the writer
# subscribes by pattern to topics that exist when it starts).
campaigns=()
for i in $(seq "$ROUNDS"); do
  for s in $SHAPES; do
    case $s in 002-peak | 004-peak) ;; *) echo "unknown shape $s (002-peak, 004-peak)" >&2; exit 2 ;; esac
    c="bench-rep-$run-$s-$i"
    "$BIN" campaign create --id "$c" --stock 1000000 >/dev/null
    campaigns+=("$c")
  done
done
relay_list=$(IFS=,; echo "${campaigns[*]}")
STAMPEDE_LOG=warn start_service "$PORT" "$out/service.log" --relay-campaigns "$relay_list"
serve_pid=$SVC_PID
ops_url=$SVC_METRICS
STAMPEDE_LOG=warn start_role "$out/writer.log" writer --metrics-listen "${WRITER_URL#http://}" \
  --group "bench-reports-$run" --topics "^stampede\\.bench-rep-$run-.*"
wait_http "$WRITER_URL/metrics" "$ROLE_PID" "$out/writer.log"
ulimit -n 65536 2>/dev/null || true

all_rows() { [ "$(writer_rows "$WRITER_URL" "$1")" -ge "$2" ]; }
echo "bench/reports: run $run, $(nproc) cores, shapes $SHAPES x $ROUNDS rounds, k6 threshold p95 < $P95_MS ms"
for c in "${campaigns[@]}"; do
  s=${c#"bench-rep-$run-"}; s=${s%-*}
  case $s in
    002-peak) script=peak; shape_env=() ;;
    004-peak) script=soak; shape_env=(RATE=1000 DURATION=30 MAX_VUS=500) ;;
  esac
  issue_histogram "$ops_url" >"$out/$c.h0"
  redis_pids=$(pgrep -x redis-server | tr '\n' ' ')
  # shellcheck disable=SC2086 # a list of pids
  t0=$(ticks "$serve_pid"); r0=$(ticks $redis_pids)
  env "${shape_env[@]}" BASE_URL="http://127.0.0.1:$PORT" CAMPAIGN="$c" RUN_ID="$c" LOG_ISSUED=0 \
    TIME_SCALE=1 P95_MS="$P95_MS" SUMMARY_FILE="$out/$c.json" /usr/bin/time -f '%U %S' -o "$out/$c.k6cpu" \
    timeout 300 ${CLIENT_NICE:+nice -n "$CLIENT_NICE"} "$K6" run --quiet --no-color "k6-jobs/$script.js" >/dev/null 2>"$out/$c.stderr" ||
    echo "  k6 $c exited $? (thresholds, see $out/$c.stderr)"
  # shellcheck disable=SC2086 # a list of pids
  cpu="$(( $(ticks "$serve_pid") - t0 )) $(( $(ticks $redis_pids) - r0 )) $(tail -n 1 "$out/$c.k6cpu" | awk '{printf "%d", 100 * ($1 + $2)}')"
  issue_histogram "$ops_url" >"$out/$c.h1"
  issued=$(rcli hget "{stampede:$c}:meta" issued)
  poll_until 300 all_rows "$c" "$issued"
  last=$(psql_value "SELECT round(1000 * extract(epoch FROM max(persisted_at) - max(issued_at))) FROM coupon_issuances WHERE campaign = '$c'")
  PYTHONPATH=bench PYTHONDONTWRITEBYTECODE=1 python3 - "$out/$c" "$s" "$issued" "$last" "$(row_latency "$c")" "$cpu" <<'PY' | tee -a "$out/results.txt"
import json, sys
from spike_report import buckets, handler_p95
base, shape, issued, last, latency, cpu = sys.argv[1:]
k = json.load(open(f"{base}.json"))
o = k["outcomes"]
serve, redis, k6 = (int(x) / 100 for x in cpu.split())
handler = handler_p95(buckets(f"{base}.h0"), buckets(f"{base}.h1"))
print(f"{shape}: {k['requests']} req ({k['rps']:.0f}/s), p95 {k['p95']:.2f} ms, p99 {k['p99']:.2f} ms "
      f"(the service's own p95 {handler:.2f} ms), 201 {o['201']}, errors {o['503'] + o['other']}, "
      f"dropped {k['droppedIterations']}; CPU s k6 {k6:.1f}, serve {serve:.1f}, Redis {redis:.1f}; "
      f"{issued} issued, the last row in PostgreSQL {last} ms after the last issuance, "
      f"issuance-to-row p50 / p99 {latency} ms")
PY
done
for c in "${campaigns[@]}"; do
  if ! "$BIN" audit --campaign "$c" --grace-secs 0 --json >"$out/audit-$c.json"; then
    echo "audit $c: NOT CLEAN (see $out/audit-$c.json)"; exit 1
  fi
done
echo "audit: all ${#campaigns[@]} campaigns clean; results in $out/results.txt"
stop_roles
for c in "${campaigns[@]}"; do forget_campaign "$c"; done
