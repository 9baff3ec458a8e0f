# shellcheck shell=bash
# scripts/lib/service.sh: the service and operator binaries and their roles, for bench/*.sh
# and the demos/tests that run stampede-service as plain processes (source it from the repo
# root; it defines functions only, sets STAMPEDE_HOME/CARGO_TARGET_DIR, BIN and OPERATOR,
# exports the local token settings (local_auth) and traps EXIT to stop the roles it started).
#
#   ensure_bin            cargo build of stampede-service and -operator in the profile
#                         STAMPEDE_CARGO_PROFILE (release; dev under `make test`), together, as
#                         every build here, so they share one set of artefacts; quick when up
#                         to date; with STAMPEDE_BIN set, that binary is used as it is (e.g. a
#                         baseline)
#   bench_setup NAME      what a bench starts with: ensure_bin, the stack up and in the
#                         environment, the schema migrated; sets run (a stamp) and out
#                         ($STAMPEDE_HOME/bench-NAME-<run>, created)
#   ensure_operator       cargo build of stampede-operator (debug)
#   stop_roles            SIGTERM and wait for every role start_role started (the EXIT trap)
#   stop_role PID         SIGTERM and wait for one role
#   start_role LOG ARGS...     `stampede-service ARGS` in the background; sets ROLE_PID
#   wait_http URL PID LOG      polls URL (10 s at most); fails early if PID died
#   start_service PORT LOG [FLAGS...]   `serve` on 127.0.0.1:PORT (API) and PORT+10000
#                         (/metrics, /healthz, /readyz) until /readyz answers; sets SVC_PID
#                         and SVC_METRICS (the metrics base URL)
#   local_auth            exports STAMPEDE_JWT_HS256_SECRET/_ISSUER/_AUDIENCE for local runs
#                         (called on sourcing): serve verifies with them, k6 and
#                         `stampede-service token` mint with them
#   psql_value SQL        one value from the stack's database (psql_url: the password
#                         through the environment, never on the command line)
#   poll_until SECS CMD...  runs CMD every 0.2 s until it succeeds; fails after SECS
#   writer_rows URL C     rows a writer committed for campaign C, from its metrics at URL
#   ticks PID...          CPU clock ticks (user + system, every thread) the processes used
#   issue_histogram URL   the issue route's latency histogram at a service's metrics URL,
#                         "le count" per line (bench/spike_report.py reads it)
#   row_latency C         "P50 / P99": ms from issuance to row, over C's rows in PostgreSQL
#   rcli ARGS...          redis-cli on STAMPEDE_REDIS_URL, as its user (the password through
#                         the environment, never on the command line); -c on a
#                         redis+cluster:// URL (its first seed node)
#   redis_cpu             CPU seconds (user + system) the Redis of rcli has used so far
#   issued C              coupons campaign C has issued so far (`campaign show`)
#   forget_campaign C     removes a benchmark campaign's keys, registry entry, rows and topics
#   store_state           prints what earlier runs left: rows in PostgreSQL, topics in Kafka
#   kafka_topics ARGS...  Kafka's topic tool on the stack's broker, in the stack's protocol
#   campaign_topics C     the Kafka topics campaign C still has
# shellcheck source=scripts/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# shellcheck source=scripts/lib/kafka-client.sh
. "$(dirname "${BASH_SOURCE[0]}")/kafka-client.sh"
# shellcheck source=scripts/lib/pg-client.sh
. "$(dirname "${BASH_SOURCE[0]}")/pg-client.sh"
: "${CARGO_TARGET_DIR:=$STAMPEDE_HOME/target}"
export STAMPEDE_HOME CARGO_TARGET_DIR
: "${STAMPEDE_CARGO_PROFILE:=release}"
BIN="${STAMPEDE_BIN:-$(cargo_bin "$STAMPEDE_CARGO_PROFILE" stampede-service)}"

# ensure_bin: brings the optimised binary up to date (a no-op in a second when it is), unless
# STAMPEDE_BIN names another build to run.
ensure_bin() {
  if [ -n "${STAMPEDE_BIN:-}" ]; then
    [ -x "$BIN" ] || { echo "STAMPEDE_BIN=$BIN is not an executable" >&2; return 1; }
    return 0
  fi
  cargo build --profile "$STAMPEDE_CARGO_PROFILE" -q -p stampede-service -p stampede-operator
}

# bench_setup NAME: the optimised binary up to date, the local stack up and its settings
# exported, the schema migrated; sets `run` (a stamp naming this run's campaigns) and `out`
# (its results directory, created).
bench_setup() {
  ensure_bin
  scripts/stack up >/dev/null
  eval "$(scripts/stack env)"
  "$BIN" migrate >/dev/null
  store_state
  run=$(date +%s)
  out="$STAMPEDE_HOME/bench-$1-$run"
  mkdir -p "$out"
}

# ensure_operator: the operator binary (debug: the test suite builds it too, and it only
# runs the local load-test runner here).
# shellcheck disable=SC2034 # used by the callers
OPERATOR="$CARGO_TARGET_DIR/debug/stampede-operator"
ensure_operator() {
  cargo build -q -p stampede-operator
}

# local_auth: the HS256 secret, issuer and audience every local serve verifies and every
# local client (k6, `$BIN token`, the bench) signs with, unless already set. The secret is
# made once per STAMPEDE_HOME (mode 600) and never printed.
local_auth() {
  local f="$STAMPEDE_HOME/local-jwt-secret"
  if [ -z "${STAMPEDE_JWT_HS256_SECRET:-}" ]; then
    if [ ! -s "$f" ]; then
      mkdir -p "$STAMPEDE_HOME"
      (umask 077; openssl rand -hex 32 >"$f")
    fi
    STAMPEDE_JWT_HS256_SECRET=$(cat "$f")
  fi
  : "${STAMPEDE_JWT_ISSUER:=stampede}" "${STAMPEDE_JWT_AUDIENCE:=stampede}"
  export STAMPEDE_JWT_HS256_SECRET STAMPEDE_JWT_ISSUER STAMPEDE_JWT_AUDIENCE
}
local_auth

# Background processes started by start_role/start_service; stopped (SIGTERM) on exit.
ROLE_PIDS=()
stop_roles() {
  local pid
  for pid in "${ROLE_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${ROLE_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  ROLE_PIDS=()
}
trap stop_roles EXIT

# stop_role PID: stops one background role (SIGTERM) and waits for it.
stop_role() {
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# start_role LOG ARGS…: runs `stampede-service ARGS` in the background, logging to LOG;
# sets ROLE_PID.
start_role() {
  local log=$1; shift
  STAMPEDE_LOG=${STAMPEDE_LOG:-info} "$BIN" "$@" >"$log" 2>&1 &
  ROLE_PID=$!
  ROLE_PIDS+=("$ROLE_PID")
}

# wait_http URL PID LOG: polls URL (bounded, 10 s) until it answers; fails early if PID died.
wait_http() {
  local url=$1 pid=$2 log=$3
  for _ in $(seq 200); do
    curl -sf "$url" >/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  echo "$url did not answer; log $log:" >&2
  tail -n 30 "$log" >&2
  return 1
}

# start_service PORT LOG [serve flags…]: starts `serve` (operations on PORT+10000) and
# waits until /readyz answers.
start_service() {
  local port=$1 log=$2; shift 2
  local ops=$((port + 10000)) p
  for p in "$port" "$ops"; do
    if curl -s -o /dev/null "http://127.0.0.1:$p/"; then
      echo "port $p is already in use; stop that process or pick another port" >&2
      return 1
    fi
  done
  start_role "$log" serve --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$ops" "$@"
  SVC_PID=$ROLE_PID
  SVC_METRICS="http://127.0.0.1:$ops"
  wait_http "$SVC_METRICS/readyz" "$SVC_PID" "$log"
}

# psql_value SQL: one value from the stack's database.
psql_value() {
  psql_url "${STAMPEDE_DATABASE_URL:?}" -qtAX -c "$1"
}

# poll_until LIMIT_S CMD…: runs CMD every 0.2 s until it succeeds; fails (status 1, a
# message naming CMD) once LIMIT_S seconds have passed.
poll_until() {
  local limit=$1; shift
  local end=$(( $(date +%s) + limit ))
  until "$@"; do
    [ "$(date +%s)" -lt "$end" ] || { echo "timed out after ${limit}s: $*" >&2; return 1; }
    sleep 0.2
  done
}

# writer_rows URL C: the rows a writer committed for campaign C, from its own metrics at
# URL (polling count(*) on a growing table would cost PostgreSQL more CPU than the inserts
# being measured).
writer_rows() {
  curl -sf "$1/metrics" |
    awk -v c="$2" '$1 == "stampede_writer_rows_total{campaign=\""c"\"}" {n = $2} END {print n + 0}'
}

# ticks PID…: CPU clock ticks (user + system, every thread; 100 a second) the processes
# have used so far; a process that is gone counts 0.
ticks() { local p t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo "$t"; }

# issue_histogram URL: the issue route's stampede_http_request_duration_seconds buckets at
# a service's metrics base URL, "le count" per line (cumulative, as exported).
issue_histogram() {
  curl -sf "$1/metrics" | awk '/^stampede_http_request_duration_seconds_bucket\{/ && /issue/ {
    match($0, /le="[^"]*"/); le = substr($0, RSTART + 4, RLENGTH - 5); n[le] += $NF } END { for (le in n) print le, n[le] }'
}

# row_latency C: the p50 and p99 of issuance-to-row latency (persisted_at - issued_at) over
# campaign C's rows, in ms, as "P50 / P99".
row_latency() {
  psql_value "SELECT round(1000 * extract(epoch FROM percentile_cont(0.5) WITHIN GROUP (ORDER BY persisted_at - issued_at)))::text || ' / ' || round(1000 * extract(epoch FROM percentile_cont(0.99) WITHIN GROUP (ORDER BY persisted_at - issued_at)))::text FROM coupon_issuances WHERE campaign = '$1'"
}

# forget_campaign C: removes a benchmark campaign's Redis keys, registry entry, rows and
# Kafka topics, so repeated runs measure the same-sized store instead of an ever-growing
# one, and a writer consuming every campaign does not replay benchmark traffic later.
forget_campaign() {
  local c=$1 out
  # A failure is said, not swallowed: a topic left behind is replayed into PostgreSQL by
  # the next writer that reads every campaign (the demo's, under a group it keeps).
  if ! out=$(kafka_topics --delete --if-exists --topic "$(campaign_topics_regex "$c")" 2>&1); then
    printf 'forget_campaign: the Kafka topics of %s are left: %s\n' "$c" \
      "$(grep -m 1 -e '^Error' -e 'Exception' <<<"$out" || tail -n 1 <<<"$out")" >&2
  fi
  local k keys=()
  # Every key of a campaign (core/src/keys.rs SUFFIXES): stock, outbox, fences, waiting room.
  for k in meta holders outbox epoch fence ledger wr:line wr:seen wr:active wr:entry wr:state; do
    keys+=("{stampede:$c}:$k")
  done
  rcli del "${keys[@]}" >/dev/null
  rcli srem stampede:campaigns "$c" >/dev/null
  if [ -n "${STAMPEDE_DATABASE_URL:-}" ]; then
    psql_value "DELETE FROM coupon_issuances WHERE campaign = '$c'" >/dev/null 2>&1 || true
  fi
}

# store_state: what earlier runs left in the stack (rows in PostgreSQL, campaign topics in
# Kafka), printed before a benchmark so runs can be told apart. A leak of both (forgotten
# topics replayed into PostgreSQL by the demo's writer: 12.8 M rows, 676 topics) measured
# no different from a clean stack on this noisy machine (docs/benchmarks.md).
# It also warns about a local node's packet rules left behind by processes killed without
# `scripts/cluster down`: every loopback packet then goes through kube-proxy's chains and
# conntrack (measured: /healthz 88-96k req/s with them, 110k without, the same hour).
store_state() {
  echo "the stack before the run: coupon_issuances ~$(psql_value "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE relname = 'coupon_issuances'") rows ($(psql_value "SELECT pg_size_pretty(pg_total_relation_size('coupon_issuances'))")), $(kafka_topics --list | grep -c '^stampede') campaign topics in Kafka"
  local rules
  rules=$({ iptables -w 5 -S 2>/dev/null; iptables -w 5 -t nat -S 2>/dev/null; } | grep -c -- '-j KUBE-' || true)
  if [ "${rules:-0}" -gt 0 ] && ! pgrep -x kube-proxy >/dev/null; then
    echo "WARNING: $rules kube-proxy rules are on this host with no kube-proxy running (a node killed without 'scripts/cluster down'): every loopback packet pays for them; run scripts/cluster down first for comparable figures" >&2
  fi
}

# kafka_topics ARGS…: Kafka's topic tool against the stack's broker, speaking its protocol
# (SASL_SSL in authenticated mode) through a client config that lives only for the call.
kafka_topics() {
  local props rc=0
  props=$(mktemp)
  kafka_client_props "$props" || { rm -f "$props"; return 1; }
  timeout 60 scripts/kafka-broker tool topics --command-config "$props" \
    --bootstrap-server "${STAMPEDE_KAFKA_BROKERS:-127.0.0.1:9092}" "$@" || rc=$?
  rm -f "$props"
  return "$rc"
}

# campaign_topics_regex C: C's topic and dead-letter topic (core/src/kafka.rs topic,
# dead_letter_topic) as one regex, whole-name: the topic tool's --topic and grep -E alike.
campaign_topics_regex() {
  printf 'stampede(-dlq)?\\.%s' "${1//./\\.}"
}

# campaign_topics C: the topics of campaign C the broker has (none: nothing printed).
campaign_topics() {
  local listed
  listed=$(kafka_topics --list) || return 1
  grep -E "^$(campaign_topics_regex "$1")\$" <<<"$listed" || true
}

redis_cpu() { rcli info cpu | tr -d '\r' | awk -F: '/^used_cpu_(sys|user):/ {s += $2} END {printf "%.6f", s}'; }
issued() { "$BIN" campaign show --id "$1" | sed -n 's/.*"issued":\([0-9]*\).*/\1/p'; }

# rcli ARGS…: redis-cli on the Redis of STAMPEDE_REDIS_URL (default the stack's), as the
# URL's user when it names one; the password goes through REDISCLI_AUTH, not argv. A
# redis+cluster:// URL: its first host:port, with -c (follows the cluster's redirects).
rcli() {
  local rest=${STAMPEDE_REDIS_URL:-redis://127.0.0.1:6379} userinfo="" hostport redirects=()
  case $rest in redis+cluster://*) redirects=(-c) ;; esac
  rest=${rest#*://}
  case $rest in *@*) userinfo=${rest%@*} ;; esac
  hostport=${rest##*@}
  hostport=${hostport%%/*}
  hostport=${hostport%%,*}
  if [ -n "$userinfo" ]; then
    REDISCLI_AUTH=${userinfo#*:} redis-cli "${redirects[@]}" --user "${userinfo%%:*}" -h "${hostport%:*}" -p "${hostport##*:}" "$@"
  else
    redis-cli "${redirects[@]}" -h "${hostport%:*}" -p "${hostport##*:}" "$@"
  fi
}
