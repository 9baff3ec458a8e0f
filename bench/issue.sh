#!/usr/bin/env bash
# Issue-path benchmark: wrk drives POST /issue with fresh users, the post-sell-out path
# (410 from memory) and /healthz in one run, and prints req/s, p50, p99, Redis CPU per
# issuance and the ratios. All runs use the same wrk Lua script (bench/issue.lua), so the
# client's per-request cost is equal and the ratios compare the server's paths. Everything
# on loopback; each wrk run is bounded by -d.
#   bench/issue.sh            # defaults: 3 rounds of 5 s per path, 2 threads, 64 connections
#   ROUNDS=5 DURATION=10s CONNECTIONS=32 bench/issue.sh
#   STAMPEDE_BIN=/path/to/stampede-service bench/issue.sh   # another build (a baseline)
#   AUTH=none bench/issue.sh   # serve --auth none: the same requests, nothing verified
#                              # (the A/B for the cost of verifying tokens)
#   REPLICA=1 bench/issue.sh   # also `issue-replica`: a third service with
#                              # --durability replica (the stack's replica attached)
#   RELAY_FLAGS="--relay-gather-ms 0" bench/issue.sh   # relay settings of the headline serve
#   RELAY_FLAGS="--outbox-batches never" bench/issue.sh   # the headline writing an outbox
#                              # entry per coupon (the default, auto, writes a batch entry
#                              # per script call once its relay has read the campaign)
#   PIPELINE_IDLE=1 bench/issue.sh   # Kafka, PostgreSQL, the writer and the headline's relay
#                              # and librdkafka threads under SCHED_IDLE (only CPU the issue
#                              # path leaves): whether the pipeline's CPU makes the tail
#   PROFILE=1 bench/issue.sh   # then one more relay-on issue run under `perf record` (service
#                              # and Redis, cpu-clock, call graphs): top symbols per process
#                              # in $STAMPEDE_HOME/bench-profile-{service,redis}.txt
#   PROFILE=sold-out bench/issue.sh   # the same for one more run of the sold-out path
#   CLIENT_NICE=19 bench/issue.sh   # wrk at that niceness (it yields the cores to the service)
#   PIPELINE=8 TOKENS_PER_SEC=150000 bench/issue.sh   # each connection's writes carry 8
#                              # requests (HTTP/1.1 pipelining): the client's and the kernel's
#                              # share per request falls; every path alike, healthz too
# The headline is `serve` as the operator deploys it: its defaults, the outbox relay running
# in-process, a writer turning the issuances into PostgreSQL rows, Kafka and PostgreSQL on
# the same cores (`issue`, `sold-out`). Beside it, a second `serve --no-relay` on the same
# Redis is the hot path alone (`issue-no-relay`): the split says what the pipeline costs.
# After each issue run the bench waits until the relay has emptied the outbox, so the Redis
# CPU per issuance (INFO cpu, before and after) includes the relay's reads, acks and deletes,
# and the CPU split (µs per issuance of the serving process — its relay thread's part shown —,
# Redis, the Kafka broker, PostgreSQL, the writer and wrk, from /proc) all it set off.
# Every path also prints the serving process's own CPU per request ("serve us CPU/req"):
# on this shared machine a steadier figure than req/s, which moves with the neighbours.
# The paths run interleaved (healthz, issue, issue-no-relay, sold-out, healthz, …) and each
# figure is the median over the rounds, so a noisy neighbour hits every path alike. Every
# request carries a bearer token (serve verifies it on the issue paths), minted before each
# run with `stampede-service token`: TOKENS_PER_SEC (60000) x DURATION users per run.
set -euo pipefail
# A failing step says which: set -e alone ends the run without a word.
trap 'echo "bench/issue.sh: line $LINENO: \"$BASH_COMMAND\" failed (exit $?)" >&2' ERR
cd "$(dirname "$0")/.."
. scripts/lib/service.sh
. scripts/lib/cpu.sh
DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
PIPELINE=${PIPELINE:-1}
TOKENS_PER_SEC=${TOKENS_PER_SEC:-60000}
PORT=${BENCH_PORT:-3181}
ensure_bin
command -v wrk >/dev/null || scripts/deps
scripts/stack up >/dev/null
eval "$(scripts/stack env)"

run=$(date +%s)
live="bench-live-$run"
gone="bench-gone-$run"
alone="bench-alone-$run"
"$BIN" migrate >/dev/null
store_state
for c in "$live" "$alone"; do
  "$BIN" campaign create --id "$c" --stock 100000000 >/dev/null
done
"$BIN" campaign create --id "$gone" --stock 1 >/dev/null

log="$STAMPEDE_HOME/bench-service.log"
# The headline: serve's defaults, relaying its own campaigns (as the operator scopes an
# issuer), and a writer for the live campaign's topic.
# shellcheck disable=SC2086 # RELAY_FLAGS is a list of flags
STAMPEDE_LOG=warn start_service "$PORT" "$log" --relay-campaigns "$live,$gone" \
  ${RELAY_FLAGS:-} ${AUTH:+--auth "$AUTH"}
# /healthz lives on the operations listener; the same process, so still the reference.
ops_url=$SVC_METRICS
headline_pid=$SVC_PID
STAMPEDE_LOG=warn start_role "$STAMPEDE_HOME/bench-writer.log" writer \
  --metrics-listen 127.0.0.1:0 --group "bench-$run" --topics "stampede.$live"
writer_pid=$ROLE_PID
# The split: the hot path alone, nothing relaying its campaign.
STAMPEDE_LOG=warn start_service "$((PORT + 2))" "$log.no-relay" --no-relay ${AUTH:+--auth "$AUTH"}
alone_pid=$SVC_PID
alone_ops=$SVC_METRICS

if [ "${REPLICA:-0}" = 1 ]; then
  # The stack's Redis replica (scripts/stack up replica) and a second service that
  # acknowledges only what the replica holds; both services then run with it attached.
  if ! scripts/stack status replica >/dev/null 2>&1; then
    STAMPEDE_SKIP_DEPS=1 scripts/stack up replica >/dev/null
    trap 'scripts/stack down replica >/dev/null 2>&1; stop_roles' EXIT
  fi
  STAMPEDE_LOG=warn start_service "$((PORT + 1))" "$log.replica" --no-relay \
    --durability replica ${AUTH:+--auth "$AUTH"}
  replica_pid=$SVC_PID
fi

if [ "${PIPELINE_IDLE:-0}" = 1 ]; then
  # Every thread of the pipeline under SCHED_IDLE: it runs only on CPU the issue path leaves.
  pipeline_policy() { local p; for p in $(pgrep -f 'kafka\.Kafka') $(pgrep -x postgres); do chrt "$@" -a -p 0 "$p" >/dev/null; done; }
  # The stack's processes outlive the bench: back to SCHED_OTHER when it ends.
  trap 'pipeline_policy -o; [ "${REPLICA:-0}" != 1 ] || scripts/stack down replica >/dev/null 2>&1; stop_roles' EXIT
  pipeline_policy -i
  chrt -i -a -p 0 "$writer_pid" >/dev/null
  for t in /proc/"$headline_pid"/task/*; do
    case $(cat "$t/comm") in relay|rdk:*) chrt -i -p 0 "${t##*/}" >/dev/null ;; esac
  done
  echo "PIPELINE_IDLE: under SCHED_IDLE: Kafka, PostgreSQL, the writer and serve's threads $(for t in /proc/"$headline_pid"/task/*; do chrt -p "${t##*/}" | grep -q IDLE && cat "$t/comm"; done | tr '\n' ' ')"
fi

# Sell the "gone" campaign out so that every later request takes the memory path. A
# just-started service may not answer at once: a few tries, then the last answer is shown.
sell_out() {
  curl -s -o "$STAMPEDE_HOME/bench-sell-out" -w '%{http_code}' -XPOST \
    -H "Authorization: Bearer $("$BIN" token --sub first)" \
    -H 'content-type: application/json' -d '{"userId":"first"}' \
    "http://127.0.0.1:$PORT/v1/campaigns/$gone/issue"
}
for try in $(seq 20); do
  code=$(sell_out) || code=000
  case $code in 2*) break ;; esac
  [ "$try" -lt 20 ] || { echo "selling $gone out failed: HTTP $code $(cat "$STAMPEDE_HOME/bench-sell-out")" >&2; exit 1; }
  sleep 0.5
done

results="$STAMPEDE_HOME/bench-issue.tsv"
: >"$results"
tokens="$STAMPEDE_HOME/bench-tokens.txt"
secs=${DURATION%s}; [[ $secs =~ ^[0-9]+$ ]] || secs=10
minted=0
drained() { [ "$(rcli xlen "{stampede:$1}:outbox")" -eq 0 ]; }
# batch_totals OPS_URL: "<issuances decided> <issue script calls> <issuances relayed>
# <Kafka messages relayed>" so far (group commit; batch messages).
batch_totals() {
  curl -sf "$1/metrics" | awk '/^stampede_redis_issue_batch_size_sum/ {s=$2}
    /^stampede_redis_issue_batch_size_count/ {c=$2} /^stampede_relay_produced_total/ {p+=$2}
    /^stampede_relay_messages_total/ {m=$2} END {printf "%d %d %d %d", s, c, p, m}'
}
# wrk_run name url mode [campaign]: appends "name rps p50_us p99_us non2xx redis_us" to
# $results (redis_us: Redis CPU microseconds per issuance, relay included; 0 for healthz)
wrk_run() {
  local name=$1 url=$2 mode=$3; shift 3
  local campaign=${1:-} cpu0 n0 redis_us=0 split0="" split="" serve_pid="" ops="" batch0="" batch="" per_message=""
  case $name in
    issue) serve_pid=$headline_pid ops=$ops_url ;;
    issue-no-relay) serve_pid=$alone_pid ops=$alone_ops ;;
  esac
  # The serving process's CPU per request, every path (healthz: the headline's ops listener).
  local served_by=${serve_pid:-$headline_pid} served0
  [ "$name" != issue-replica ] || served_by=$replica_pid
  [ -z "$ops" ] || batch0=$(batch_totals "$ops")
  # Fresh users for every run, minted before wrk starts (not part of the measurement).
  "$BIN" token --with-sub --sub-prefix "$run-$name-$((++minted))" --count "$((secs * TOKENS_PER_SEC))" >"$tokens"
  # Redis CPU per issuance for the paths that issue (the sold-out one issues nothing).
  [ -z "$campaign" ] || [ "$campaign" = "$gone" ] || { cpu0=$(redis_cpu); n0=$(issued "$campaign"); }
  [ -z "$serve_pid" ] || split0=$(cpu_ticks "$serve_pid" "$writer_pid")
  local line
  served0=$(ticks "$served_by")
  line=$(/usr/bin/time -f 'wrk_ticks %U %S' -o "$STAMPEDE_HOME/bench-wrk-time" ${CLIENT_NICE:+nice -n "$CLIENT_NICE"} wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s bench/issue.lua "$url" -- \
    "$mode" "$@" "$tokens" "$THREADS" "$PIPELINE" |
    awk -v name="$name" '
      function us(v) { if (v ~ /us$/) return v+0; if (v ~ /ms$/) return v*1000; if (v ~ /s$/) return v*1e6; return v }
      /^Requests\/sec:/ {rps=$2} $1=="50%" {p50=us($2)} $1=="99%" {p99=us($2)}
      /Non-2xx or 3xx responses:/ {n=$NF} / requests in / {reqs=$1}
      END {printf "%s\t%s\t%s\t%s\t%d\t%d", name, rps, p50, p99, n, reqs}')
  local served_us
  served_us=$(awk -v t="$(( $(ticks "$served_by") - served0 ))" -v hz="$(getconf CLK_TCK)" \
    -v r="$(cut -f6 <<<"$line")" 'BEGIN { printf "%.1f", (r > 0 ? t * 1e6 / hz / r : 0) }')
  line=$(cut -f1-5 <<<"$line")
  if [ -n "$campaign" ] && [ "$campaign" != "$gone" ]; then
    # The relay's share lands after the run: wait (bounded) for the outbox it drains.
    local t_end catchup_ms=""
    t_end=$(date +%s%N)
    if [ "$campaign" = "$live" ]; then
      wait_drained "$campaign"
      catchup_ms=$(( ($(date +%s%N) - t_end) / 1000000 ))
    fi
    local n=$(( $(issued "$campaign") - n0 ))
    redis_us=$(awk -v a="$cpu0" -v b="$(redis_cpu)" -v n="$n" \
      'BEGIN { printf "%.2f", (n > 0 ? (b - a) * 1e6 / n : 0) }')
    if [ -n "$serve_pid" ]; then
      split=$(cpu_per "$split0" "$(cpu_ticks "$serve_pid" "$writer_pid")" "$n" \
        "wrk=$(awk '{print $2 + $3}' "$STAMPEDE_HOME/bench-wrk-time")")
    fi
  fi
  # Issuances per issue script call over the run (the requests' own, not the sell-out's).
  [ -z "$ops" ] || batch=$(awk -v a="$batch0" -v b="$(batch_totals "$ops")" 'BEGIN {
    split(a, x, " "); split(b, y, " ")
    if (y[2] > x[2]) printf "%.1f", (y[1] - x[1]) / (y[2] - x[2]) }')
  # Issuances per Kafka message the relay delivered (batch messages).
  [ -z "$ops" ] || per_message=$(awk -v a="$batch0" -v b="$(batch_totals "$ops")" 'BEGIN {
    split(a, x, " "); split(b, y, " ")
    if (y[4] > x[4]) printf "%.1f", (y[3] - x[3]) / (y[4] - x[4]) }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$line" "$redis_us" "$split" "${catchup_ms:-}" "$batch" "$served_us" "$per_message" >>"$results"
}
wait_drained() {
  for _ in $(seq 600); do drained "$1" && return 0; sleep 0.1; done
  echo "the relay did not empty $1's outbox within 60 s" >&2
  return 1
}

echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION x $ROUNDS rounds; service + redis + wrk on $(nproc) cores"
url="http://127.0.0.1:$PORT"
for _ in $(seq "$ROUNDS"); do
  wrk_run healthz "$ops_url" healthz
  wrk_run issue "$url" issue "$live"
  wrk_run issue-no-relay "http://127.0.0.1:$((PORT + 2))" issue "$alone"
  if [ "${REPLICA:-0}" = 1 ]; then
    wrk_run issue-replica "http://127.0.0.1:$((PORT + 1))" issue "$alone"
  fi
  wrk_run sold-out "$url" sold-out "$gone"
done
if [ "${PROFILE:-0}" != 0 ]; then
  command -v perf >/dev/null || apt-get install -y -qq linux-perf >/dev/null
  redis_pid=$(rcli info server | tr -d '\r' | sed -n 's/^process_id://p')
  profiled=$live
  [ "$PROFILE" != sold-out ] || profiled=$gone
  echo "profiling one more relay-on ${PROFILE/1/issue} run (perf record, service pid $headline_pid, redis pid $redis_pid)"
  "$BIN" token --with-sub --sub-prefix "$run-profile" --count "$((secs * TOKENS_PER_SEC))" >"$tokens"
  perf record -q -e cpu-clock -F 499 -g -p "$headline_pid,$redis_pid" -o "$STAMPEDE_HOME/bench-perf.data" -- sleep "$secs" &
  perf_pid=$!
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -s bench/issue.lua "$url" -- issue "$profiled" "$tokens" "$THREADS" >/dev/null
  wait "$perf_pid" || true
  for who in "service:$headline_pid" "redis:$redis_pid"; do
    perf report -q -i "$STAMPEDE_HOME/bench-perf.data" --no-children --pid "${who#*:}" \
      --percentage relative --sort dso,symbol --stdio -g none --percent-limit 0.5 2>/dev/null |
      sed 's/ *- *- *$//; s/ *$//' | grep -v '^$' | sed -n 1,40p >"$STAMPEDE_HOME/bench-profile-${who%%:*}.txt"
    echo "  $STAMPEDE_HOME/bench-profile-${who%%:*}.txt"
  done
fi
rm -f "$tokens"
python3 - "$results" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
med = {}
for name in ("healthz", "issue", "issue-no-relay", "issue-replica", "sold-out"):
    rs = [r for r in rows if r[0] == name]
    if not rs:
        continue
    rps, p50, p99, cpu = (statistics.median(float(r[i]) for r in rs) for i in (1, 2, 3, 5))
    med[name] = rps
    runs = " ".join(f"{float(r[1]):.0f}/{float(r[3])/1000:.1f}" for r in rs)
    non2xx = sum(int(r[4]) for r in rs)
    redis = f"  redis {cpu:5.2f} us/issuance" if cpu else ""
    served = [float(r[9]) for r in rs if len(r) > 9 and r[9].strip()]
    served = f"  serve {statistics.median(served):5.1f} us CPU/req" if served else ""
    print(f"{name:14} {rps:8.0f} req/s  p50 {p50/1000:5.2f} ms  p99 {p99/1000:5.2f} ms  non-2xx {non2xx:<7}{redis}{served}  runs (req/s/p99 ms): {runs}")
    splits = [dict(kv.split("=") for kv in r[6].split()) for r in rs if len(r) > 6 and r[6].strip()]
    if splits:
        parts = {k: statistics.median(float(s[k]) for s in splits) for k in splits[0]}
        total = sum(v for k, v in parts.items() if "." not in k)
        shown = "  ".join(f"{k} {v:.1f}" if "." not in k else f"(its {k.split('.')[1]} thread {v:.1f})"
                          for k, v in parts.items() if v or "." not in k)
        print(f"{'':14} CPU us per issuance: {shown}  (total {total:.1f})")
    batches = [float(r[8]) for r in rs if len(r) > 8 and r[8].strip()]
    if batches:
        print(f"{'':14} issuances per issue script call {statistics.median(batches):.1f} (group commit, median)")
    per_message = [float(r[10]) for r in rs if len(r) > 10 and r[10].strip()]
    if per_message:
        print(f"{'':14} issuances per Kafka message {statistics.median(per_message):.1f} (batch messages, median)")
    lags = [float(r[7]) for r in rs if len(r) > 7 and r[7].strip()]
    if lags:
        print(f"{'':14} the relay emptied the outbox {statistics.median(lags):.0f} ms after wrk stopped (median; the wait is not in req/s)")
h = med["healthz"]
print(f"ratio issue/healthz          {med['issue']/h:.2f} (serve defaults, relay and writer on; aim >= 0.35, p99 <= 5 ms)")
print(f"ratio issue-no-relay/healthz {med['issue-no-relay']/h:.2f} (the hot path alone)")
print(f"ratio sold-out/healthz       {med['sold-out']/h:.2f} (aim >= 0.85)")
if "issue-replica" in med:
    print(f"ratio issue-replica/issue-no-relay {med['issue-replica']/med['issue-no-relay']:.2f} (the cost of --durability replica)")
PY
echo "coupons issued: $(issued "$live") with the relay on, $(issued "$alone") without (each one a fresh user)"
for c in "$live" "$alone" "$gone"; do forget_campaign "$c"; done
