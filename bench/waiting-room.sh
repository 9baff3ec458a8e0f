#!/usr/bin/env bash
# Waiting-room benchmark (issue #16, load-test report 001). Three parts, each bounded:
#   memory        QUEUED (1 000 000) users join one campaign's room through the service
#                 (wrk, bench/queue-join.lua, a pre-minted token per user) on a PRIVATE
#                 redis-server (loopback, no persistence, nothing else in it); prints
#                 INFO used_memory before and after, bytes per queued user, MEMORY USAGE of
#                 each wr:* key, and the joins' rate and latency. With them queued, FRONT
#                 (2000) k6 users who joined before them (k6-jobs/queue-status.js, ISSUE=0,
#                 while the campaign was paused) join again (200, the same place), poll,
#                 are admitted and issue for CHECK_SECS (60): 0 errors and the p95 of each
#                 endpoint, until and past the sell-out (stock 1500) that empties the room.
#   queue         report 001's `queue` shape, k6-jobs/queue.js: arrivals ramp 0 -> Q_RATE
#                 (67/s) over Q_SECS (240 s; ~8 000 users), stock 2500, maxActive 500,
#                 20 admissions/s: a line forms, sells out mid-run.
#   queue-status  report 001's `queue-status` shape at full scale, k6-jobs/queue-status.js:
#                 S_VUS (2000) users, started 50/s, join and poll for S_SECS (300 s), each
#                 S_THINK_MIN..S_THINK_MAX (1..5 s, the report's locust `between(1, 5)`)
#                 between two requests; stock 1000, maxActive 500, 5 admissions/s.
# queue and queue-status run against the stack's Redis (AOF, auth) with `serve`'s defaults
# (the relay in-process for the campaign). Both sample ZCARD wr:active every 50 ms and
# report the largest (must be <= maxActive), and compare coupons issued with the stock.
# Each k6 run gets P95_MS (10) as its threshold and ERROR_RATE 0.
#   bench/waiting-room.sh                     # every part
#   PARTS=memory QUEUED=200000 bench/waiting-room.sh
#   PARTS=queue,queue-status bench/waiting-room.sh
# Results: $STAMPEDE_HOME/bench-waiting-room-<run>/ (k6 summaries, logs, results.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/service.sh
PARTS=${PARTS:-memory,queue,queue-status}
QUEUED=${QUEUED:-1000000} FRONT=${FRONT:-2000} CHECK_SECS=${CHECK_SECS:-60}
Q_RATE=${Q_RATE:-67} Q_SECS=${Q_SECS:-240} S_VUS=${S_VUS:-2000} S_SECS=${S_SECS:-300}
S_THINK_MIN=${S_THINK_MIN:-1} S_THINK_MAX=${S_THINK_MAX:-5}
P95_MS=${P95_MS:-10}
PORT=${BENCH_PORT:-3195}
REDIS_PORT=${BENCH_REDIS_PORT:-18381}
ensure_bin
K6=$(scripts/deps k6-path)
command -v wrk >/dev/null || scripts/deps
scripts/stack up >/dev/null
eval "$(scripts/stack env)"
run=$(date +%s)
work="$STAMPEDE_HOME/bench-waiting-room-$run"
mkdir -p "$work"
results="$work/results.txt"
STAMPEDE_WAITING_ROOM_KEY=$(openssl rand -hex 32)
export STAMPEDE_WAITING_ROOM_KEY
ulimit -n 65536 2>/dev/null || true
say() { echo "$*" | tee -a "$results"; }
has_part() { [[ ",$PARTS," == *",$1,"* ]]; }

# max_active REDIS_CLI_FN C FILE: the largest ZCARD of C's wr:active, sampled every 50 ms
# until FILE.stop exists (at most 15 minutes), written to FILE.
max_active() {
  local cli=$1 key="{stampede:$2}:wr:active" most=0 n deadline=$((EPOCHSECONDS + 900))
  while [ ! -e "$3.stop" ] && [ "$EPOCHSECONDS" -lt "$deadline" ]; do
    n=$("$cli" zcard "$key" 2>/dev/null || echo 0)
    [ "${n:-0}" -le "$most" ] || most=$n
    sleep 0.05
  done
  echo "$most" >"$3"
}
# k6_run NAME SCRIPT ENV…: one k6 run against $base for $campaign; its summary in
# $work/NAME.json (a failed threshold is reported, not fatal).
k6_run() {
  local name=$1 script=$2; shift 2
  env "$@" BASE_URL="$base" CAMPAIGN="$campaign" P95_MS="$P95_MS" LOG_ISSUED=0 \
    SUMMARY_FILE="$work/$name.json" timeout 900 "$K6" run --quiet --no-color "k6-jobs/$script.js" \
    >/dev/null 2>"$work/$name.stderr" || echo "  k6 $name exited $? (thresholds, see $work/$name.stderr)"
}
# report NAME STOCK MAX_ACTIVE MOST ISSUED ADMITTED: one summary line per k6 run.
report() {
  python3 - "$work/$1.json" "$@" <<'PY' | tee -a "$results"
import json, sys
path, name, stock, max_active, most, issued, admitted = sys.argv[1:]
s = json.load(open(path)); q = s.get("queue", {}); o = s["outcomes"]
print(f"{name}: {s['requests']} requests in {s['durationS']} s ({s['rps']} req/s), errors {s['errorRate']} "
      f"(5xx {o['503']}, other {o['other']}), p95 {s['p95']} ms (join {q.get('joinP95')}, poll {q.get('pollP95')}, "
      f"issue {q.get('issueP95')}), p99 {s['p99']} ms, thresholds {'PASS' if s['thresholdsPassed'] else 'FAIL ' + str(s['failedThresholds'])}")
print(f"  users {s['iterations']} (dropped {s['droppedIterations']}); queue answers: joined {q.get('joined')} waiting {q.get('waiting')} "
      f"admitted {q.get('admitted')} sold_out {q.get('sold_out')} expired {q.get('expired')} issued {q.get('issued')} "
      f"other {q.get('other')} gave up {q.get('gaveUp')}; wait to admission p50 {q.get('waitP50Ms')} / p95 {q.get('waitP95Ms')} ms")
print(f"  coupons {o['201']} (campaign issued {issued}, stock {stock}); admitted {admitted}; admitted without coupon "
      f"{q.get('admittedNoCoupon')}; max active seen {most} (maxActive {max_active})")
PY
}
issued_of() { "$BIN" campaign show --id "$1" "${@:2}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["stock"]["issued"])'; }
admitted_of() {
  curl -s "$SVC_METRICS/metrics" |
    awk -v c="$1" 'index($0, "stampede_waiting_room_admitted_total{campaign=\"" c "\"}") == 1 { print $2 }'
}
say "bench/waiting-room: run $run, $(nproc) cores, parts $PARTS; k6 thresholds p95 < $P95_MS ms, errors 0"

if has_part memory; then
  redis_url="redis://127.0.0.1:$REDIS_PORT"
  pcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
  if pcli ping >/dev/null 2>&1; then echo "port $REDIS_PORT already answers; set BENCH_REDIS_PORT" >&2; exit 1; fi
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
    --dir "$work" --logfile "$work/redis.log" &
  redis_pid=$!
  trap 'stop_roles; kill -TERM "$redis_pid" 2>/dev/null || true; wait "$redis_pid" 2>/dev/null || true' EXIT
  for _ in $(seq 100); do pcli ping >/dev/null 2>&1 && break; sleep 0.05; done
  campaign="bench-wr-memory-$run"
  stock=1500
  "$BIN" campaign create --id "$campaign" --stock "$stock" --redis-url "$redis_url" --waiting-room \
    --max-active 100 --admit-per-second 50 --session-ttl 120s --queue-ttl 1h >/dev/null
  "$BIN" campaign pause --id "$campaign" --redis-url "$redis_url" >/dev/null
  STAMPEDE_LOG=warn start_service "$PORT" "$work/memory-service.log" --no-relay --redis-url "$redis_url"
  base="http://127.0.0.1:$PORT"
  front_id="front-$run"
  say "memory: $FRONT k6 users join first (campaign paused: nobody admitted), then $QUEUED through wrk"
  k6_run front queue-status RUN_ID="$front_id" VUS="$FRONT" SPAWN=100000 DURATION=3 THINK_MIN=3 THINK_MAX=3 ISSUE=0
  used() { pcli info memory | tr -d '\r' | sed -n 's/^used_memory://p'; }
  before=$(used)
  "$BIN" token --with-sub --sub-prefix "fill-$run" --count "$QUEUED" >"$work/tokens.txt"
  t0=$(date +%s%N)
  # Each wrk thread stops once its users have joined, but wrk itself waits out -d: stop it
  # (SIGINT: it prints its figures) once the line holds them all, within 10 minutes.
  wrk -t2 -c64 -d600s --latency -s bench/queue-join.lua "$base" -- "$campaign" "$work/tokens.txt" 2 \
    >"$work/wrk-join.txt" 2>&1 &
  wrk_pid=$!
  # (or once it stops growing for 3 s: a join that failed is counted as `other`).
  last=0 still=0
  while kill -0 "$wrk_pid" 2>/dev/null && [ "$last" -lt $((FRONT + QUEUED)) ] && [ "$still" -lt 15 ]; do
    sleep 0.2
    n=$(pcli zcard "{stampede:$campaign}:wr:line")
    if [ "$n" -gt "$last" ]; then last=$n still=0; else still=$((still + 1)); fi
  done
  secs=$(( ($(date +%s%N) - t0) / 1000000 ))
  sleep 0.5
  kill -INT "$wrk_pid" 2>/dev/null || true
  wait "$wrk_pid" || true
  rm -f "$work/tokens.txt"
  after=$(used)
  queued=$(pcli zcard "{stampede:$campaign}:wr:line")
  say "  wrk: $(grep -E '^joined=' "$work/wrk-join.txt") in $((secs / 1000)).$(( (secs % 1000) / 100 )) s" \
    "($(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$work/wrk-join.txt") joins/s; latency p50" \
    "$(awk '$1 == "50%" {print $2}' "$work/wrk-join.txt"), p99 $(awk '$1 == "99%" {print $2}' "$work/wrk-join.txt"))"
  say "  line: $queued queued; used_memory $before -> $after B: $(( (after - before) / QUEUED )) B per queued user"
  for k in line seen active entry state; do
    k="{stampede:$campaign}:wr:$k"
    say "  MEMORY USAGE $k: $(pcli memory usage "$k" samples 0) B ($(pcli type "$k"), $(pcli object encoding "$k" 2>/dev/null))"
  done
  "$BIN" campaign resume --id "$campaign" --redis-url "$redis_url" >/dev/null
  say "memory: with them queued, the $FRONT front users join again, poll, are admitted and issue for $CHECK_SECS s (stock $stock)"
  touch "$work/memory.max.stop"  # (the sampler is for the stack parts; here the line is the point)
  k6_run memory-check queue-status RUN_ID="$front_id" VUS="$FRONT" SPAWN=100000 DURATION="$CHECK_SECS" \
    THINK_MIN=0.5 THINK_MAX=1.5
  report memory-check "$stock" 100 - "$(issued_of "$campaign" --redis-url "$redis_url")" "$(admitted_of "$campaign")"
  say "  after the sell-out: line $(pcli zcard "{stampede:$campaign}:wr:line"), used_memory $(used) B"
  stop_roles
  forget_campaign "$campaign"
fi

# redis_cost: "EVALSHA-calls EVALSHA-usec CPU-seconds" of the stack's Redis so far (INFO
# commandstats and cpu; the bench's user may not reset them, so runs take differences).
redis_cost() {
  { rcli info commandstats; rcli info cpu; } | tr -d '\r' | awk -F'[=,:]' '
    /^cmdstat_evalsha:/ { calls = $3; usec = $5 }
    /^used_cpu_(sys|user):/ { cpu += $2 }
    END { printf "%d %d %.3f\n", calls, usec, cpu }'
}
# stack_shape NAME SCRIPT STOCK MAX RATE QTTL K6ENV…: one report-001 shape on the stack.
stack_shape() {
  local name=$1 script=$2 stock=$3 max=$4 rate=$5 qttl=$6; shift 6
  campaign="bench-wr-$name-$run"
  "$BIN" campaign create --id "$campaign" --stock "$stock" --waiting-room --max-active "$max" \
    --admit-per-second "$rate" --session-ttl 120s --queue-ttl "$qttl" >/dev/null
  STAMPEDE_LOG=warn start_service "$PORT" "$work/$name-service.log" --relay-campaigns "$campaign"
  base="http://127.0.0.1:$PORT"
  say "$name: $* on $campaign: stock $stock, maxActive $max, $rate admissions/s, queueTtl $qttl"
  max_active rcli "$campaign" "$work/$name.max" &
  local sampler=$!
  local before after c0 u0 p0 c1 u1 p1
  before=$(redis_cost)
  k6_run "$name" "$script" "$@"
  after=$(redis_cost)
  touch "$work/$name.max.stop"
  wait "$sampler"
  report "$name" "$stock" "$max" "$(cat "$work/$name.max")" "$(issued_of "$campaign")" "$(admitted_of "$campaign")"
  # Redis's side: each script call's own time (commandstats) and all of Redis's CPU (AOF,
  # replies, the relay's reads included) per script call, over the k6 run.
  read -r c0 u0 p0 <<<"$before"
  read -r c1 u1 p1 <<<"$after"
  say "$(awk -v c="$((c1 - c0))" -v u="$((u1 - u0))" -v p0="$p0" -v p1="$p1" 'BEGIN {
    if (c > 0) printf "  redis: %d script calls, %.1f us each inside the script, %.1f us of Redis CPU per call (%.1f s)", c, u / c, (p1 - p0) * 1e6 / c, p1 - p0 }')"
  stop_roles
  forget_campaign "$campaign"
}
if has_part queue; then
  stack_shape queue queue 2500 500 20 60s RATE="$Q_RATE" DURATION="$Q_SECS" MAX_WAIT=120 PRE_VUS=1500
fi
if has_part queue-status; then
  stack_shape queue-status queue-status 1000 500 5 60s VUS="$S_VUS" DURATION="$S_SECS" \
    THINK_MIN="$S_THINK_MIN" THINK_MAX="$S_THINK_MAX"
fi
say "report 001 (the ticketing system's waiting-room token API): 4 224 requests, 3 887 failed (92 %), HTTP 500 from ~500 active tokens"
echo "results: $results"
