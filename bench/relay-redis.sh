#!/usr/bin/env bash
# What the relay's work in Redis does to the issue path's tail, without Kafka: one
# `serve --no-relay` driven by wrk (-t2 -c64, fresh users, tokens), its campaign's outbox
# read four ways, alternated round by round, each on a campaign of its own:
#   alone    nothing reads the outbox (the hot path alone)
#   group    every 50 ms one script does in Redis what the relay does there: XREADGROUP of
#            up to 2 000 entries (each delivered entry goes into the group's pending list,
#            and Redis propagates an XCLAIM per entry to the AOF), XACK of them, XTRIM MINID
#   noack    the same read with NOACK (no pending list, nothing to acknowledge), then the
#            trim: reading and trimming alone
#   relay    the real relay (`stampede-service relay`, its own process) into Kafka
#   balone, bgroup, brelay   the same as alone, group, relay on a second `serve --no-relay
#            --outbox-batches always`: one outbox entry per issue script call instead of per
#            coupon (the first serve runs `--outbox-batches never`: its relay would turn them on)
#   bchunk   as bgroup, but every 50 ms the script runs in chunks of CHUNK (32) entries, back
#            to back until one comes back short (bench/chunk_reader.py): the same work in
#            Redis, in shorter stops
# Prints per mode the medians of req/s, p50, p90, p99 and Redis's CPU per issuance (the
# readers' share included: each run waits until its outbox is empty). Everything on
# loopback; every wrk run is bounded by -d and every reader stops with its run.
#   bench/relay-redis.sh                 # ROUNDS=3, 5 s runs
#   ROUNDS=5 MODES="alone group" bench/relay-redis.sh
#   MODES="relay brelay" bench/relay-redis.sh     # per-coupon against batch entries
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/service.sh
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
MODES=${MODES:-alone group noack relay balone bgroup brelay}
PORT=${BENCH_PORT:-3197}
BATCH_PORT=$((PORT + 1))
command -v wrk >/dev/null || scripts/deps
bench_setup relay-redis
for m in $MODES; do
  case $m in alone | group | noack | relay | balone | bgroup | brelay | bchunk) ;;
    *) die "MODES: unknown mode $m (alone group noack relay balone bgroup brelay bchunk)" ;;
  esac
  "$BIN" campaign create --id "bench-rr-$m-$run" --stock 100000000 >/dev/null
done
reader=""
cleanup() {
  [ -z "$reader" ] || kill "$reader" 2>/dev/null || true
  stop_roles
  for m in $MODES; do forget_campaign "bench-rr-$m-$run"; done
}
trap cleanup EXIT
STAMPEDE_LOG=warn start_service "$PORT" "$out/service.log" --no-relay --outbox-batches never
case " $MODES " in *" b"*)
  STAMPEDE_LOG=warn start_service "$BATCH_PORT" "$out/service-batches.log" --no-relay --outbox-batches always ;;
esac
relayed=$(for m in relay brelay; do case " $MODES " in *" $m "*) printf '%s,' "bench-rr-$m-$run" ;; esac; done)
if [ -n "$relayed" ]; then
  STAMPEDE_LOG=warn start_role "$out/relay.log" relay --metrics-listen 127.0.0.1:0 \
    --relay-campaigns "${relayed%,}"
fi
# The relay's Redis work in one script (ARGV[1]: entries per read; ARGV[2]: group or noack).
read_script='local r
if ARGV[2] == "noack" then
  r = redis.call("XREADGROUP", "GROUP", "bench", "r", "COUNT", ARGV[1], "NOACK", "STREAMS", KEYS[1], ">")
else
  r = redis.call("XREADGROUP", "GROUP", "bench", "r", "COUNT", ARGV[1], "STREAMS", KEYS[1], ">")
end
if not r or not r[1] then return 0 end
local e = r[1][2]
if ARGV[2] ~= "noack" then
  local ids = {}
  for i, x in ipairs(e) do ids[i] = x[1] end
  redis.call("XACK", KEYS[1], "bench", unpack(ids))
end
redis.call("XTRIM", KEYS[1], "MINID", e[#e][1])
return #e'
outbox() { echo "{stampede:bench-rr-$1-$run}:outbox"; }
# Emptied: the readers trim up to the last entry they read and leave it (XTRIM MINID keeps
# it), the relay removes everything it delivered.
drained() { [ "$(rcli xlen "$(outbox "$1")")" -le 1 ]; }
results="$out/runs.tsv"
tokens="$out/tokens.txt"
secs=${DURATION%s}
n=0
echo "wrk -t2 -c64 -d$DURATION x $ROUNDS rounds, modes: $MODES; results in $out"
for _ in $(seq "$ROUNDS"); do
  for m in $MODES; do
    c="bench-rr-$m-$run"
    "$BIN" token --with-sub --sub-prefix "$run-$((++n))" --count "$((secs * 60000))" >"$tokens"
    case $m in b*) port=$BATCH_PORT ;; *) port=$PORT ;; esac
    case $m in group | noack | bgroup)
      rcli xgroup create "$(outbox "$m")" bench '$' MKSTREAM >/dev/null 2>&1 || true
      rcli -r -1 -i 0.05 eval "$read_script" 1 "$(outbox "$m")" 2000 "${m#b}" >/dev/null 2>&1 &
      reader=$! ;;
    bchunk)
      rcli xgroup create "$(outbox "$m")" bench '$' MKSTREAM >/dev/null 2>&1 || true
      printf '%s' "$read_script" | python3 bench/chunk_reader.py "$(outbox "$m")" "${CHUNK:-32}" 0.05 &
      reader=$! ;;
    esac
    cpu0=$(redis_cpu); n0=$(issued "$c")
    line=$(wrk -t2 -c64 -d"$DURATION" --latency -s bench/issue.lua "http://127.0.0.1:$port" -- \
      issue "$c" "$tokens" 2 2>/dev/null | awk '
      function us(v) { if (v ~ /us$/) return v+0; if (v ~ /ms$/) return v*1000; if (v ~ /s$/) return v*1e6; return v }
      /^Requests\/sec:/ {rps=$2} $1=="50%" {p50=us($2)} $1=="90%" {p90=us($2)} $1=="99%" {p99=us($2)}
      END {printf "%s\t%s\t%s\t%s", rps, p50, p90, p99}')
    # The readers' share of Redis lands after the run too: wait (bounded) for it.
    case $m in alone | balone) ;; *) poll_until 60 drained "$m" ;; esac
    if [ -n "$reader" ]; then kill "$reader"; wait "$reader" 2>/dev/null || true; reader=""; fi
    redis_us=$(awk -v a="$cpu0" -v b="$(redis_cpu)" -v n="$(( $(issued "$c") - n0 ))" \
      'BEGIN { printf "%.1f", (n > 0 ? (b - a) * 1e6 / n : 0) }')
    printf '%s\t%s\t%s\n' "$m" "$line" "$redis_us" | tee -a "$results" |
      awk -F'\t' '{printf "  %-6s %8.0f req/s  p50 %5.2f ms  p90 %5.2f ms  p99 %6.2f ms  redis %5.1f us/issuance\n", $1, $2, $3/1000, $4/1000, $5/1000, $6}'
  done
done
rm -f "$tokens"
python3 - "$results" "$MODES" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
print("medians:")
for m in sys.argv[2].split():
    rs = [r for r in rows if r[0] == m]
    rps, p50, p90, p99, redis = (statistics.median(float(r[i]) for r in rs) for i in range(1, 6))
    runs = " ".join(f"{float(r[4]) / 1000:.1f}" for r in rs)
    print(f"  {m:6} {rps:8.0f} req/s  p50 {p50/1000:5.2f} ms  p90 {p90/1000:5.2f} ms  p99 {p99/1000:6.2f} ms"
          f"  redis {redis:5.1f} us/issuance  (p99 per run: {runs} ms)")
PY
