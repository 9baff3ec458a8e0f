#!/usr/bin/env bash
# Drain benchmark: 1 000 000 issuances through relay -> Kafka -> writer -> PostgreSQL,
# timed per stage and end to end, on the local stack (loopback only, bounded by N).
#   bench/drain.sh               # N=1000000
#   N=200000 bench/drain.sh
# Stages (each measured alone, then all together):
#   fill    the real issue script (EVALSHA) driven by redis-benchmark, fresh user per call
#   relay   outbox stream -> Kafka, until the stream is empty
#   writer  Kafka -> PostgreSQL, until every row is in
#   e2e     a second campaign, filled first, then relay and writer started together
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
N=${N:-1000000}
PARTITIONS=${PARTITIONS:-6}
ensure_bin
scripts/stack up >/dev/null
eval "$(scripts/stack env)"
run=$(date +%s)
out="$STAMPEDE_HOME/bench-drain-$run"
mkdir -p "$out"
"$BIN" migrate >/dev/null
sha=$(redis-cli -x script load <service/src/lua/issue.lua)
now() { date +%s.%N; }
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.0f", n / (b - a) }'; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# fill C: N issue-script calls with random 12-digit users; prints issued count.
fill() {
  local c=$1
  "$BIN" campaign create --id "$c" --stock "$N" --partitions "$PARTITIONS" >/dev/null
  redis-benchmark -q -n "$N" -c 32 -P 16 -r 1000000000000 evalsha "$sha" 3 \
    "{stampede:$c}:meta" "{stampede:$c}:holders" "{stampede:$c}:outbox" \
    "u__rand_int__" "$c" "BENCHCODE0000000" >/dev/null
  redis-cli hget "{stampede:$c}:meta" issued
}
outbox_len() { redis-cli xlen "{stampede:$1}:outbox"; }
rows() { psql_value "SELECT count(*) FROM coupon_issuances WHERE campaign = '$1'"; }
wait_until() { # wait_until LIMIT_S CMD… : polls every 0.2 s
  local limit=$1; shift
  local end=$(( $(date +%s) + limit ))
  until "$@"; do
    [ "$(date +%s)" -lt "$end" ] || { echo "timed out after ${limit}s: $*" >&2; return 1; }
    sleep 0.2
  done
}
outbox_empty() { [ "$(outbox_len "$1")" -eq 0 ]; }
all_rows() { [ "$(rows "$1")" -ge "$2" ]; }
relay() { start_role "$out/relay-$1.log" relay --metrics-listen 127.0.0.1:0 --relay-consumer "bench-$run-$1"; }
writer() {
  start_role "$out/writer-$1.log" writer --metrics-listen 127.0.0.1:0 \
    --group "bench-$run-$1" --topics "stampede.$1"
}

a="drain-a-$run"
t0=$(now); issued=$(fill "$a"); t1=$(now)
echo "fill    $issued issuances in $(secs "$t0" "$t1") s: $(rate "$issued" "$t0" "$t1") /s (issue script via redis-benchmark)"

relay "$a"; t2=$(now)
wait_until 600 outbox_empty "$a"; t3=$(now)
echo "relay   $(secs "$t2" "$t3") s: $(rate "$issued" "$t2" "$t3") rows/s (outbox -> Kafka, acknowledged)"
stop_roles

writer "$a"; t4=$(now)
wait_until 600 all_rows "$a" "$issued"; t5=$(now)
echo "writer  $(secs "$t4" "$t5") s: $(rate "$issued" "$t4" "$t5") rows/s (Kafka -> PostgreSQL, committed)"
stop_roles

b="drain-b-$run"
issued_b=$(fill "$b")
relay "$b"; writer "$b"; t6=$(now)
wait_until 600 all_rows "$b" "$issued_b"; t7=$(now)
echo "e2e     $issued_b rows in $(secs "$t6" "$t7") s: $(rate "$issued_b" "$t6" "$t7") rows/s (outbox -> Kafka -> PostgreSQL)"
stop_roles
for c in "$a" "$b"; do
  if "$BIN" audit --campaign "$c" --grace-secs 0 --json >"$out/audit-$c.json"; then
    echo "audit   $c: clean"
  else
    echo "audit   $c: NOT CLEAN (see $out/audit-$c.json)"; exit 1
  fi
done
