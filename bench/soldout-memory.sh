#!/usr/bin/env bash
# Sold-out cache memory: the resident memory of `serve` once it holds a sold-out campaign
# of N holders (default 10 000 000) in memory, read from /proc/<pid>/status (VmRSS after
# the holders loaded, VmHWM for the peak while loading). Everything runs against a
# PRIVATE redis-server on a free loopback port (no persistence), never the shared stack's.
#   bench/soldout-memory.sh                       # N=10000000, the release build
#   N=1000000 bench/soldout-memory.sh
#   STAMPEDE_BIN=/path/to/stampede-service bench/soldout-memory.sh   # another build (a baseline)
# The holders are written by a Lua loop inside Redis (a few seconds for 10 M), the
# campaign's meta hash says sold out (issued = total = N), then one request for a new user
# makes the replica see SOLD_OUT and load the holders; the script waits for the log line
# "answering from memory" and reads the figures. A holder must then still get 200 and a
# new user 410.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/service.sh
N=${N:-10000000}
PORT=${BENCH_PORT:-3191}
REDIS_PORT=${BENCH_REDIS_PORT:-18379}
LOAD_SECS=${LOAD_SECS:-300}
ensure_bin

work="$STAMPEDE_HOME/bench-soldout-memory"
rm -rf "$work"
mkdir -p "$work"
rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
if rcli ping >/dev/null 2>&1; then
  echo "port $REDIS_PORT already answers; set BENCH_REDIS_PORT to a free one" >&2
  exit 1
fi
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
  --dir "$work" --logfile "$work/redis.log" &
redis_pid=$!
stop_all() {
  stop_roles
  kill -TERM "$redis_pid" 2>/dev/null || true
  wait "$redis_pid" 2>/dev/null || true
}
trap stop_all EXIT
for _ in $(seq 100); do rcli ping >/dev/null 2>&1 && break; sleep 0.05; done
rcli ping >/dev/null

c="bench-soldout-$N"
meta="{stampede:$c}:meta"
holders="{stampede:$c}:holders"
t0=$EPOCHSECONDS
# Holders as issue.lua writes them ("seq:issuedMs:code"), in slices of 500 000 per EVAL so
# no single call blocks Redis for long.
fill='for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do
  redis.call("HSET", KEYS[1], "user-" .. i, i .. ":1764460800000:C" .. i)
end
return 0'
for ((lo = 1; lo <= N; lo += 500000)); do
  hi=$((lo + 499999 < N ? lo + 499999 : N))
  rcli eval "$fill" 1 "$holders" "$lo" "$hi" >/dev/null
done
rcli hset "$meta" total "$N" issued "$N" opens_ms 0 closes_ms 0 paused 0 closed 0 \
  created_ms 1764460800000 >/dev/null
rcli sadd stampede:campaigns "$c" >/dev/null
echo "redis: $(rcli hlen "$holders") holders of $c written in $((EPOCHSECONDS - t0)) s"

status_kb() { # FIELD: that field of the service's /proc status, in kB
  awk -v f="$1:" '$1 == f { print $2 }' "/proc/$SVC_PID/status"
}
log="$work/serve.log"
STAMPEDE_LOG=info start_service "$PORT" "$log" --no-relay \
  --redis-url "redis://127.0.0.1:$REDIS_PORT" --redis-timeout-ms 2000
url="http://127.0.0.1:$PORT/v1/campaigns/$c/issue"
issue() { # USER: prints the HTTP status
  curl -s -o /dev/null -w '%{http_code}' -XPOST -H "Authorization: Bearer $("$BIN" token --sub "$1")" "$url"
}
rss_idle=$(status_kb VmRSS)
code=$(issue "late-0")
[ "$code" = 410 ] || { echo "expected 410 for a new user, got $code" >&2; exit 1; }
t0=$EPOCHSECONDS
deadline=$((EPOCHSECONDS + LOAD_SECS))
until grep -q 'answering from memory' "$log"; do
  [ "$EPOCHSECONDS" -lt "$deadline" ] || { tail -n 20 "$log" >&2; echo "holders not loaded after $LOAD_SECS s" >&2; exit 1; }
  kill -0 "$SVC_PID" 2>/dev/null || { tail -n 20 "$log" >&2; echo "serve died (out of memory?)" >&2; exit 1; }
  sleep 0.2
done
load_secs=$((EPOCHSECONDS - t0))
rss=$(status_kb VmRSS)
hwm=$(status_kb VmHWM)
holder=$(issue "user-$((N / 2))")
late=$(issue "late-1")
[ "$holder" = 200 ] || { echo "a holder got $holder, not 200" >&2; exit 1; }
[ "$late" = 410 ] || { echo "a new user got $late, not 410" >&2; exit 1; }
memory=$(curl -s "$SVC_METRICS/metrics" |
  awk -v c="$c" 'index($0, "stampede_soldout_memory_answers_total{campaign=\"" c "\"}") == 1 { print $2 }')
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
echo "binary:        $BIN"
echo "holders:       $N (loaded in ${load_secs} s)"
echo "VmRSS idle:    $(mib "$rss_idle")"
echo "VmRSS loaded:  $(mib "$rss")  (+$(mib $((rss - rss_idle))))"
echo "VmHWM (peak):  $(mib "$hwm")"
echo "holder user-$((N / 2)): $holder; new user: $late; 410s answered from memory: ${memory:-0}"
grep -o 'holders=[0-9]*.*' "$log" | head -n 1 || true
