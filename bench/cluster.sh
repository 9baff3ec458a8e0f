#!/usr/bin/env bash
# Redis Cluster benchmark (make bench-cluster): one hot campaign on 1, 2 and 3 buckets
# (`--shards`) of the stack's cluster (3 primaries + 3 replicas on 7000-7005), side by side
# in one run, rounds interleaved (1, 2, 3, 1, 2, 3, …), medians printed: issuances/s, p50,
# p99, and Redis CPU per issuance summed over the primaries and on the busiest one (the
# core that limits a campaign). Then the time a campaign of SOLDOUT_STOCK (1 000 000) in 3
# buckets takes to sell out under the same load, and the ledger's verdict on it.
#   bench/cluster.sh                         # 3 rounds of 5 s per bucket count
#   ROUNDS=5 DURATION=10s bench/cluster.sh
#   SOLDOUT_STOCK=0 bench/cluster.sh         # skip the sell-out run
# `serve --no-relay --auth none` on the cluster URL: the issue path and Redis alone (no
# relay, no token verification: bench/issue.sh measures those), one fresh user per
# request (bench/cluster.lua). Everything on loopback; wrk runs are bounded by -d, the
# sell-out run by SOLDOUT_LIMIT seconds (180).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/service.sh
DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
SOLDOUT_STOCK=${SOLDOUT_STOCK:-1000000}
SOLDOUT_LIMIT=${SOLDOUT_LIMIT:-180}
PORT=${BENCH_PORT:-3191}
ensure_bin
command -v wrk >/dev/null || scripts/deps
scripts/stack up >/dev/null
echo "starting the stack's Redis Cluster (scripts/stack up redis-cluster)"
STAMPEDE_SKIP_DEPS=1 scripts/stack up redis-cluster >/dev/null
eval "$(scripts/stack env)"
export STAMPEDE_REDIS_URL=${STAMPEDE_REDIS_CLUSTER_URL:?scripts/stack printed no cluster URL}

run=$(date +%s)
log="$STAMPEDE_HOME/bench-cluster-service.log"
STAMPEDE_LOG=warn start_service "$PORT" "$log" --no-relay --auth none
url="http://127.0.0.1:$PORT"

# ncli PORT ARGS…: redis-cli on one node, as the URL's user (password via the environment).
ncli() {
  local port=$1 rest=${STAMPEDE_REDIS_URL#*://} userinfo=""
  shift
  case $rest in *@*) userinfo=${rest%@*} ;; esac
  if [ -n "$userinfo" ]; then
    REDISCLI_AUTH=${userinfo#*:} redis-cli --user "${userinfo%%:*}" -p "$port" "$@"
  else
    redis-cli -p "$port" "$@"
  fi
}
primaries() { ncli 7000 cluster nodes | awk '$3 ~ /master/ && $3 !~ /fail/ {split($2, a, "[:@]"); print a[2]}' | sort; }
# cpu_by_node: "port=seconds …" of every primary's used CPU.
cpu_by_node() { local p; for p in $(primaries); do printf '%s=%s ' "$p" "$(ncli "$p" info cpu | tr -d '\r' | awk -F: '/^used_cpu_(sys|user):/ {s += $2} END {printf "%.6f", s}')"; done; }
# issued C: C's issued count (a generous Redis timeout: the cluster is busy serving wrk).
issued() { STAMPEDE_REDIS_TIMEOUT_MS=3000 "$BIN" campaign show --id "$1" | sed -n 's/.*"issued":\([0-9]*\).*/\1/p'; }

results="$STAMPEDE_HOME/bench-cluster.tsv"
: >"$results"
for n in 1 2 3; do
  "$BIN" campaign create --id "bench-x$n-$run" --stock 1000000000 --shards "$n" >/dev/null
done
# one_run N: a wrk run on the campaign of N buckets; appends
# "N rps p50_us p99_us total_redis_us busiest_redis_us" to $results.
one_run() {
  local n=$1 c="bench-x$1-$run" cpu0 cpu1 n0 line
  cpu0=$(cpu_by_node)
  n0=$(issued "$c")
  line=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s bench/cluster.lua "$url" -- "$c" "r$RANDOM" |
    awk -v n="$n" 'function us(v) { if (v ~ /us$/) return v+0; if (v ~ /ms$/) return v*1000; if (v ~ /s$/) return v*1e6; return v }
      /^Requests\/sec:/ {rps=$2} $1=="50%" {p50=us($2)} $1=="99%" {p99=us($2)}
      END {printf "%s\t%s\t%s\t%s", n, rps, p50, p99}')
  cpu1=$(cpu_by_node)
  awk -v line="$line" -v a="$cpu0" -v b="$cpu1" -v k="$(( $(issued "$c") - n0 ))" 'BEGIN {
    na = split(a, x, " "); split(b, y, " "); total = 0; top = 0
    for (i = 1; i <= na; i++) { split(x[i], p, "="); split(y[i], q, "="); d = q[2] - p[2]; total += d; if (d > top) top = d }
    printf "%s\t%.2f\t%.2f\n", line, (k > 0 ? total * 1e6 / k : 0), (k > 0 ? top * 1e6 / k : 0) }' >>"$results"
}
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION x $ROUNDS rounds per bucket count; serve, $(primaries | wc -l) primaries, their replicas and wrk on $(nproc) cores"
for round in $(seq "$ROUNDS"); do
  for n in 1 2 3; do
    echo "  round $round: $n bucket(s)"
    one_run "$n"
  done
done
python3 - "$results" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
base = None
for n in ("1", "2", "3"):
    rs = [r for r in rows if r[0] == n]
    rps, p50, p99, total, top = (statistics.median(float(r[i]) for r in rs) for i in (1, 2, 3, 4, 5))
    base = base or rps
    runs = " ".join(f"{float(r[1]):.0f}" for r in rs)
    print(f"{n} bucket(s)  {rps:8.0f} issuances/s ({rps/base:.2f}x)  p50 {p50/1000:5.2f} ms  p99 {p99/1000:5.2f} ms"
          f"  redis {total:5.2f} us/issuance (busiest primary {top:5.2f})  runs: {runs}")
PY

if [ "$SOLDOUT_STOCK" -gt 0 ]; then
  c="bench-soldout-$run"
  "$BIN" campaign create --id "$c" --stock "$SOLDOUT_STOCK" --shards 3 >/dev/null
  echo "selling out $SOLDOUT_STOCK coupons in 3 buckets (at most ${SOLDOUT_LIMIT}s)"
  t0=$(date +%s%N)
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"${SOLDOUT_LIMIT}s" -s bench/cluster.lua "$url" -- "$c" "s$RANDOM" >/dev/null &
  wrk_pid=$!
  sold=0 shown=$SECONDS
  while kill -0 "$wrk_pid" 2>/dev/null; do
    got=$(issued "$c" || echo 0)
    if [ "${got:-0}" -ge "$SOLDOUT_STOCK" ]; then sold=1; break; fi
    if [ $((SECONDS - shown)) -ge 10 ]; then echo "  $got issued"; shown=$SECONDS; fi
    sleep 0.2
  done
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  kill "$wrk_pid" 2>/dev/null || true
  wait "$wrk_pid" 2>/dev/null || true
  if [ "$sold" = 1 ]; then
    echo "sold out: $SOLDOUT_STOCK coupons in $ms ms ($(( SOLDOUT_STOCK * 1000 / ms )) issuances/s, polled every 0.2 s)"
  else
    echo "not sold out within ${SOLDOUT_LIMIT}s: $(issued "$c") of $SOLDOUT_STOCK"
  fi
  STAMPEDE_REDIS_TIMEOUT_MS=3000 "$BIN" campaign show --id "$c" >"$STAMPEDE_HOME/bench-cluster-soldout.json"
  python3 - "$STAMPEDE_HOME/bench-cluster-soldout.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["shards"]
verdict = "balanced" if not s["problems"] else "; ".join(s["problems"])
held = " ".join(f"{b['bucket'].split('~')[1]}:{b['issued']}/{b['total']}" for b in s["buckets"])
print(f"ledger: {verdict}; in transit {len(s['inTransit'])}; bucket issued/held: {held}")
PY
fi
stop_roles
# The campaigns' keys go (their outboxes hold every issuance: nothing relayed them).
forget_sharded() {
  local c=$1 b
  for b in "$c" $("$BIN" campaign show --id "$c" | python3 -c 'import json,sys; print(" ".join(b["bucket"] for b in json.load(sys.stdin).get("shards", {}).get("buckets", [])))'); do
    rcli del "{stampede:$b}:meta" "{stampede:$b}:holders" "{stampede:$b}:outbox" "{stampede:$b}:ledger" "{stampede:$b}:epoch" "{stampede:$b}:fence" >/dev/null
    rcli srem stampede:campaigns "$b" >/dev/null
  done
}
for c in bench-x1-"$run" bench-x2-"$run" bench-x3-"$run" bench-soldout-"$run"; do
  "$BIN" campaign show --id "$c" >/dev/null 2>&1 && forget_sharded "$c"
done
echo "done; results in $results"
