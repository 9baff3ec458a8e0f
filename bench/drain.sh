#!/usr/bin/env bash
# Drain benchmark: 1 000 000 issuances through relay -> Kafka -> writer -> PostgreSQL,
# timed per stage and end to end, on the local stack (loopback only, bounded by N).
#   bench/drain.sh               # N=1000000
#   N=200000 bench/drain.sh
#   KEEP=1 bench/drain.sh        # keep the campaigns' keys and rows afterwards
# Stages (each measured alone, then all together):
#   fill    POST /issue with a fresh user per request (wrk), until the stock is gone
#   relay   outbox stream -> Kafka, until the stream is empty
#   writer  Kafka -> PostgreSQL, until every row is in
#   e2e     a second campaign, filled first, then relay and writer started together
#   live    a third campaign issued while serve's in-process relay (its default) and a
#           writer run: from the first issuance to the last row in PostgreSQL, rows/s, and
#           the p50/p99 of issuance-to-row latency (persisted_at - issued_at)
#   STAGES="live" bench/drain.sh   # only some stages (default: fill relay writer e2e live)
#   OUTBOX_BATCHES=never STAMPEDE_RELAY_MESSAGE_BATCHES=never bench/drain.sh   # per coupon
#   PIPELINE=8 STAGES=live bench/drain.sh   # wrk pipelines 8 requests per connection (HTTP/1.1)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/service.sh
. scripts/lib/cpu.sh
N=${N:-1000000}
PARTITIONS=${PARTITIONS:-6}
bench_setup drain
PORT=${BENCH_PORT:-3183}
# The fill's issuer runs no relay, so in `auto` nothing would tell it that the relays draining
# its outbox (of this release) read batch entries: it is told, as a deployed issuer learns
# from its relays. OUTBOX_BATCHES=never fills an entry per coupon (and with
# STAMPEDE_RELAY_MESSAGE_BATCHES=never the relays send a message per coupon), for comparison.
STAMPEDE_LOG=warn start_service "$PORT" "$out/service.log" --no-relay --max-in-flight 4096 \
  --outbox-batches "${OUTBOX_BATCHES:-always}"
now() { date +%s.%N; }
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.0f", n / (b - a) }'; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# prepare C: creates campaign C with a stock of N and mints one bearer token per user
# (a tenth more than the stock, so every user wrk sends before the sell-out is a fresh
# one), before any clock starts.
prepare() {
  "$BIN" campaign create --id "$1" --stock "$N" --partitions "$PARTITIONS" >/dev/null
  "$BIN" token --with-sub --sub-prefix "$1" --count "$((N + N / 10 + 1000))" >"$out/tokens-$1.txt"
}
# fill C: issues the whole stock of N through the HTTP API, a fresh user per request;
# prints the issued count. The relay is off, so everything waits in the outbox.
fill() {
  local c=$1 wrk_pid
  wrk -t2 -c64 -d600s -s bench/issue.lua "http://127.0.0.1:$PORT" -- issue "$c" "$out/tokens-$c.txt" 2 "${PIPELINE:-1}" >/dev/null &
  wrk_pid=$!
  poll_until 600 sold_out "$c"
  ticks "$wrk_pid" >"$out/wrk-ticks-$c"
  kill "$wrk_pid"; wait "$wrk_pid" 2>/dev/null || true
  rm -f "$out/tokens-$c.txt"
  rcli hget "{stampede:$c}:meta" issued
}
sold_out() { [ "$(rcli hget "{stampede:$1}:meta" issued)" -ge "$N" ]; }
outbox_len() { rcli xlen "{stampede:$1}:outbox"; }
rows() { writer_rows "http://127.0.0.1:$WRITER_METRICS_PORT" "$1"; }
outbox_empty() { [ "$(outbox_len "$1")" -eq 0 ]; }
all_rows() { [ "$(rows "$1")" -ge "$2" ]; }
relay() {
  start_role "$out/relay-$1.log" relay --metrics-listen 127.0.0.1:0 --relay-consumer "bench-$run-$1" \
    ${RELAY_BATCH:+--relay-batch "$RELAY_BATCH"}
  RELAY_PID=$ROLE_PID
}
WRITER_METRICS_PORT=${WRITER_METRICS_PORT:-18184}
writer() {
  start_role "$out/writer-$1.log" writer --metrics-listen "127.0.0.1:$WRITER_METRICS_PORT" \
    --group "bench-$run-$1" --topics "stampede.$1" ${BATCH_ROWS:+--batch-rows "$BATCH_ROWS"}
  WRITER_PID=$ROLE_PID
}

STAGES=${STAGES:-fill relay writer e2e live}
has_stage() { [[ " $STAGES " == *" $1 "* ]]; }
campaigns=()

if has_stage fill || has_stage relay || has_stage writer; then
a="drain-a-$run"; campaigns+=("$a")
prepare "$a"
t0=$(now); issued=$(fill "$a"); t1=$(now)
echo "fill    $issued issuances in $(secs "$t0" "$t1") s: $(rate "$issued" "$t0" "$t1") /s (POST /issue via wrk -c64, relay off)"

relay "$a"; t2=$(now)
poll_until 600 outbox_empty "$a"; t3=$(now)
echo "relay   $(secs "$t2" "$t3") s: $(rate "$issued" "$t2" "$t3") rows/s (outbox -> Kafka, acknowledged)"
stop_role "$RELAY_PID"

writer "$a"; t4=$(now)
poll_until 600 all_rows "$a" "$issued"; t5=$(now)
echo "writer  $(secs "$t4" "$t5") s: $(rate "$issued" "$t4" "$t5") rows/s (Kafka -> PostgreSQL, committed)"
stop_role "$WRITER_PID"
fi

if has_stage e2e; then
b="drain-b-$run"; campaigns+=("$b")
prepare "$b"
issued_b=$(fill "$b")
relay "$b"; writer "$b"; t6=$(now)
poll_until 600 all_rows "$b" "$issued_b"; t7=$(now)
echo "e2e     $issued_b rows in $(secs "$t6" "$t7") s: $(rate "$issued_b" "$t6" "$t7") rows/s (outbox -> Kafka -> PostgreSQL)"
stop_role "$RELAY_PID"; stop_role "$WRITER_PID"
fi

if has_stage live; then
l="drain-live-$run"; campaigns+=("$l")
prepare "$l"
# serve with its defaults: the relay in-process, as the operator deploys issuers.
STAMPEDE_LOG=warn start_service "$((PORT + 2))" "$out/service-live.log" --relay-campaigns "$l"
live_pid=$SVC_PID
writer "$l"
cpu0=$(cpu_ticks "$live_pid" "$WRITER_PID")
t8=$(now); issued_l=$(PORT=$((PORT + 2)) fill "$l")
poll_until 600 all_rows "$l" "$issued_l"; t9=$(now)
latency=$(row_latency "$l")
# From the first issuance (Redis's clock, in the row) to the last row's commit, not from
# wrk's start: loading a million tokens into its Lua takes it seconds before the first request.
span=$(psql_value "SELECT extract(epoch FROM max(persisted_at) - min(issued_at)) FROM coupon_issuances WHERE campaign = '$l'")
echo "live    $issued_l rows in $(secs 0 "$span") s from the first issuance: $(rate "$issued_l" 0 "$span") rows/s; issuance-to-row p50 / p99 $latency ms (relay in serve, writer, issuing meanwhile; wrk's start included: $(secs "$t8" "$t9") s)"
split=$(cpu_per "$cpu0" "$(cpu_ticks "$live_pid" "$WRITER_PID")" "$issued_l" \
  "wrk=$(awk -v t="$(cat "$out/wrk-ticks-$l")" -v hz="$(getconf CLK_TCK)" 'BEGIN { print t / hz }')")
echo "live    CPU us per row: $split(total $(cpu_total "$split"); wrk's token loading included)"
stop_role "$WRITER_PID"; stop_role "$live_pid"
fi

for c in "${campaigns[@]}"; do
  echo "rows    $c: $(psql_value "SELECT count(*) FROM coupon_issuances WHERE campaign = '$c'") in PostgreSQL"
  if "$BIN" audit --campaign "$c" --grace-secs 0 --json >"$out/audit-$c.json"; then
    echo "audit   $c: clean"
  else
    echo "audit   $c: NOT CLEAN (see $out/audit-$c.json)"; exit 1
  fi
  [ -n "${KEEP:-}" ] || forget_campaign "$c"
done
