# Shared shell helpers for scripts/ and bench/ (source it; it defines functions only).
: "${STAMPEDE_HOME:=$HOME/.cache/stampede}"
: "${CARGO_TARGET_DIR:=$STAMPEDE_HOME/target}"
export STAMPEDE_HOME CARGO_TARGET_DIR
BIN="$CARGO_TARGET_DIR/release/stampede-service"

# ensure_bin: builds the release binary when it is missing.
ensure_bin() {
  [ -x "$BIN" ] || cargo build --release -p stampede-service
}

# start_service PORT LOG [serve flags…]: starts `serve` in the background, sets SVC_PID,
# stops it on exit, and waits (bounded) until /readyz answers.
start_service() {
  local port=$1 log=$2; shift 2
  if curl -s -o /dev/null "http://127.0.0.1:$port/healthz"; then
    echo "port $port is already in use; stop that process or pick another port" >&2
    return 1
  fi
  STAMPEDE_LOG=${STAMPEDE_LOG:-info} "$BIN" serve --listen "127.0.0.1:$port" "$@" >"$log" 2>&1 &
  SVC_PID=$!
  trap 'kill -TERM $SVC_PID 2>/dev/null; wait $SVC_PID 2>/dev/null || true' EXIT
  for _ in $(seq 200); do
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && return 0
    kill -0 "$SVC_PID" 2>/dev/null || break
    sleep 0.05
  done
  echo "service on port $port did not become ready; its log:" >&2
  cat "$log" >&2
  return 1
}
