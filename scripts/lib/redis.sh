# shellcheck shell=bash
# scripts/lib/redis.sh: the stack's Redis (scripts/stack): config, start, stop, status. Needs
# STACK_DIR and WAIT_SECS, and log/die/have (lib/common.sh), pid_alive/read_pidfile/
# show_log_tail (lib/proc.sh), wait_for (scripts/stack) and mode_of/mark_mode/stack_auth/
# auth_secret/auth_redis_conf (lib/stack-auth.sh).
#
#   redis_cli ARGS...     redis-cli on the stack's port (3 s at most)
#   redis_cli_on SECS PORT ARGS...  redis-cli on PORT, as user admin if ours runs authenticated
#   redis_ping            the port answers PONG
#   redis_server_pid      pid of whatever Redis answers on the port
#   redis_our_pid         pid from our pid file, if that process is alive
#   redis_write_conf      writes STACK_DIR/redis/redis.conf (on every up)
#   redis_wait_ready      0 ready, 1 not yet, 2 the started process died (for wait_for)
#   redis_up              starts it unless something answers on the port
#   redis_down            SHUTDOWN (AOF flushed), then SIGTERM if needed; only ours
#   redis_status          one status line; true if up

REDIS_NAME=${REDIS_NAME:-redis} # in messages; lib/redis-replica.sh runs these as replica
REDIS_PORT=${STAMPEDE_REDIS_PORT:-6379}
REDIS_DIR=$STACK_DIR/redis
REDIS_CONF=$REDIS_DIR/redis.conf
REDIS_PIDFILE=$REDIS_DIR/redis.pid
REDIS_LOG=$REDIS_DIR/redis.log

redis_cli() { redis_cli_on 3 "$REDIS_PORT" "$@"; }

redis_cli_on() { # SECS PORT ARGS...: the default user is off in authenticated mode
    local secs=$1 port=$2
    shift 2
    if [ "$(mode_of "$REDIS_DIR")" = auth ]; then
        REDISCLI_AUTH=$(auth_secret redis-admin.password) timeout "$secs" redis-cli --user admin -h 127.0.0.1 -p "$port" "$@"
    else
        timeout "$secs" redis-cli -h 127.0.0.1 -p "$port" "$@"
    fi
}

redis_ping() { [ "$(redis_cli ping 2>/dev/null)" = PONG ]; }

redis_server_pid() { # pid of whatever redis answers on the port
    redis_cli info server 2>/dev/null | tr -d '\r' | sed -n 's/^process_id://p'
}

redis_our_pid() { # pid from our pidfile, if that process is alive
    local pid
    pid=$(read_pidfile "$REDIS_PIDFILE") && pid_alive "$pid" && printf '%s\n' "$pid"
}

redis_write_conf() {
    mkdir -p "$REDIS_DIR/data"
    cat >"$REDIS_CONF" <<EOF
# written by scripts/stack; rewritten on every 'up'
bind 127.0.0.1
port ${REDIS_PORT}
# Loopback only; the local node's pods reach it through DNAT from the node address
# (scripts/cluster), arriving from pod addresses, which protected mode would refuse.
protected-mode no
# scripts/stack starts it in the background itself (setsid), so it can tell at once when
# the process dies (e.g. port in use) instead of waiting for the timeout
daemonize no
pidfile ${REDIS_PIDFILE}
logfile ${REDIS_LOG}
dir ${REDIS_DIR}/data
# durability: AOF with fsync every second, no RDB snapshots
appendonly yes
appendfsync everysec
appendfilename "appendonly.aof"
appenddirname "appendonlydir"
save ""
${REDIS_EXTRA_CONF:-}
EOF
    if stack_auth; then # ACL users with passwords (hashed; a replica's masterauth in clear)
        chmod 600 "$REDIS_CONF"
        auth_redis_conf "$REDIS_NAME" >>"$REDIS_CONF" || die "${REDIS_NAME}: could not write its ACL"
    fi
}

REDIS_STARTED_PID=
redis_wait_ready() {
    redis_ping && return 0
    pid_alive "$REDIS_STARTED_PID" || return 2
    return 1
}

redis_up() {
    if ! have redis-server || ! have redis-cli; then
        die "redis-server/redis-cli not installed (scripts/deps)"
    fi
    if redis_ping; then
        local pid ours
        pid=$(redis_server_pid)
        ours=$(redis_our_pid || true)
        if [ -n "$ours" ] && [ "$ours" = "$pid" ]; then
            log "${REDIS_NAME}: already up on 127.0.0.1:${REDIS_PORT} (pid ${pid})"
        else
            log "${REDIS_NAME}: 127.0.0.1:${REDIS_PORT} already answers (pid ${pid:-?}, not started by scripts/stack); leaving it alone"
        fi
        return 0
    fi
    redis_write_conf
    mark_mode "$REDIS_DIR"
    rm -f "$REDIS_PIDFILE"
    log "${REDIS_NAME}: starting on 127.0.0.1:${REDIS_PORT}"
    # Own session (setsid: no terminal signals), stdin closed; 9>&-: the server must not
    # inherit (and so hold forever) the stack lock. No job control here, so the background
    # child is no process-group leader and setsid execs redis-server in it: $! is its pid.
    setsid redis-server "$REDIS_CONF" </dev/null >>"$REDIS_LOG" 2>&1 9>&- &
    REDIS_STARTED_PID=$!
    printf '%s\n' "$REDIS_STARTED_PID" >"$REDIS_PIDFILE"
    if ! wait_for "$WAIT_SECS" "${REDIS_NAME}: waiting for PONG" redis_wait_ready; then
        show_log_tail "$REDIS_LOG"
        die "${REDIS_NAME}: not answering on 127.0.0.1:${REDIS_PORT}"
    fi
    log "${REDIS_NAME}: up on 127.0.0.1:${REDIS_PORT} (pid $(redis_server_pid))"
}

redis_down() {
    local pid
    if ! pid=$(redis_our_pid); then
        rm -f "$REDIS_PIDFILE"
        if redis_ping; then
            log "${REDIS_NAME}: 127.0.0.1:${REDIS_PORT} answers but was not started by scripts/stack; leaving it alone"
        else
            log "${REDIS_NAME}: already down"
        fi
        return 0
    fi
    log "${REDIS_NAME}: stopping (pid ${pid})"
    # SHUTDOWN flushes the AOF; the connection closes without a reply on success.
    # Ask the process we started, on the port its own config says.
    local port
    port=$(sed -n 's/^port //p' "$REDIS_CONF" 2>/dev/null || true)
    redis_cli_on 10 "${port:-$REDIS_PORT}" shutdown >/dev/null 2>&1 || true
    if ! wait_for "$WAIT_SECS" "${REDIS_NAME}: waiting for pid ${pid} to exit" eval "! pid_alive $pid"; then
        log "${REDIS_NAME}: still running; sending SIGTERM"
        kill -TERM "$pid" 2>/dev/null || true
        wait_for 10 "${REDIS_NAME}: waiting for pid ${pid} after SIGTERM" eval "! pid_alive $pid" ||
            die "${REDIS_NAME}: pid ${pid} did not stop"
    fi
    rm -f "$REDIS_PIDFILE"
    log "${REDIS_NAME}: stopped"
}

redis_status() {
    local pid=- state=down note=''
    if redis_ping; then
        state=up
        pid=$(redis_server_pid)
        local ours
        ours=$(redis_our_pid || true)
        [ "$ours" = "$pid" ] || note=' (not started by scripts/stack)'
    fi
    printf '%-9s %-5s %-16s pid %s%s\n' "$REDIS_NAME" "$state" "127.0.0.1:${REDIS_PORT}" "${pid:-?}" "$note"
    [ "$state" = up ]
}
