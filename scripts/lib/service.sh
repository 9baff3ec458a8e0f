# shellcheck shell=bash
# scripts/lib/service.sh: the service and operator binaries and their roles, for bench/*.sh
# and the demos/tests that run stampede-service as plain processes (source it from the repo
# root; it defines functions only, sets STAMPEDE_HOME/CARGO_TARGET_DIR, BIN and OPERATOR,
# exports the local token settings (local_auth) and traps EXIT to stop the roles it started).
#
#   ensure_bin            cargo build --release of stampede-service (quick when up to date);
#                         with STAMPEDE_BIN set, that binary is used as it is (e.g. a baseline)
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
#   psql_value SQL        one value from the stack's database
#   rcli ARGS...          redis-cli on STAMPEDE_REDIS_URL, as its user (the password through
#                         the environment, never on the command line); -c on a
#                         redis+cluster:// URL (its first seed node)
#   forget_campaign C     removes a benchmark campaign's keys, registry entry, rows and topics
: "${STAMPEDE_HOME:=$HOME/.cache/stampede}"
: "${CARGO_TARGET_DIR:=$STAMPEDE_HOME/target}"
export STAMPEDE_HOME CARGO_TARGET_DIR
BIN="${STAMPEDE_BIN:-$CARGO_TARGET_DIR/release/stampede-service}"

# ensure_bin: brings the release binary up to date (a no-op in a second when it is), unless
# STAMPEDE_BIN names another build to run.
ensure_bin() {
  if [ -n "${STAMPEDE_BIN:-}" ]; then
    [ -x "$BIN" ] || { echo "STAMPEDE_BIN=$BIN is not an executable" >&2; return 1; }
    return 0
  fi
  cargo build --release -q -p stampede-service
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
  psql "${STAMPEDE_DATABASE_URL:?}" -qtAX -c "$1"
}

# forget_campaign C: removes a benchmark campaign's Redis keys, registry entry, rows and
# Kafka topics, so repeated runs measure the same-sized store instead of an ever-growing
# one, and a writer consuming every campaign does not replay benchmark traffic later.
forget_campaign() {
  local c=$1
  scripts/kafka-broker tool topics --bootstrap-server "${STAMPEDE_KAFKA_BROKERS:-127.0.0.1:9092}" \
    --delete --topic "stampede(-dlq)?\\.${c//./\\.}" >/dev/null 2>&1 || true
  rcli del "{stampede:$c}:meta" "{stampede:$c}:holders" "{stampede:$c}:outbox" >/dev/null
  rcli srem stampede:campaigns "$c" >/dev/null
  if [ -n "${STAMPEDE_DATABASE_URL:-}" ]; then
    psql_value "DELETE FROM coupon_issuances WHERE campaign = '$c'" >/dev/null 2>&1 || true
  fi
}

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
