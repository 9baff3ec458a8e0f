# shellcheck shell=bash
# scripts/lib/kafka.sh: the stack's Kafka broker (scripts/stack), run by scripts/kafka-broker
# with its state in STACK_DIR/kafka, or STACK_DIR/kafka-auth in authenticated mode. Needs
# STACK_DIR, WAIT_SECS, SCRIPT_DIR, and log/die (lib/common.sh), port_open (lib/proc.sh) and
# stack_auth/auth_kafka_dir (lib/stack-auth.sh).
#
#   kafka_broker ARGS...  scripts/kafka-broker ARGS, without the stack lock's descriptor
#   kafka_our_state [DIR] "STATE PORT PID" of our broker (STATE up|starting|down)
#   kafka_other_runs      the other mode's broker runs (or is starting)
#   kafka_running_dir     for down/status: the other mode's directory if only that broker runs
#   kafka_up              (re)starts ours as needed unless another answers on the port
#   kafka_down            stops ours
#   kafka_status          one status line; true if up

KAFKA_PORT=${STAMPEDE_KAFKA_PORT:-9092}
KAFKA_CPORT=${STAMPEDE_KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}
# Pods of the local node (scripts/cluster) reach the broker at the node address; DNAT takes
# them to this loopback port and the broker advertises the node address to them.
KAFKA_NODE_LISTENER=10.244.0.1:${STAMPEDE_KAFKA_NODE_PORT:-9094}
KAFKA_DIR=$STACK_DIR/kafka # server.properties, data/, kafka.log, kafka.pid
KAFKA_OTHER_DIR=$STACK_DIR/kafka-auth
# Authenticated mode has a directory of its own: its metadata holds the SCRAM users (made at
# format time), and switching modes back and forth keeps each mode's topics.
if [ "${STAMPEDE_STACK_AUTH:-0}" = 1 ]; then KAFKA_DIR=$KAFKA_OTHER_DIR KAFKA_OTHER_DIR=$STACK_DIR/kafka; fi
KAFKA_WAIT_SECS=$((WAIT_SECS > 60 ? WAIT_SECS : 60))

# scripts/kafka-broker does the work (jars from Maven Central via scripts/deps, KRaft
# combined mode, bounded readiness poll, log tail on failure); state in $KAFKA_DIR.
# --jit full: the stack's broker serves benchmarks, so it keeps the C2 compiler.

kafka_broker() { "$SCRIPT_DIR/kafka-broker" "$@" 9>&-; } # the broker must not hold the stack lock

kafka_our_state() { # [DIR]: prints "STATE PORT PID" of our broker (STATE up|starting|down)
    local line
    line=$(kafka_broker status --dir "${1:-$KAFKA_DIR}" 2>/dev/null || true)
    # e.g. "kafka     up       127.0.0.1:9092   pid 1234  /path"
    awk '{ split($3, a, ":"); print $2, a[2], $5 }' <<<"$line"
}

kafka_other_runs() {
    local state _
    read -r state _ < <(kafka_our_state "$KAFKA_OTHER_DIR")
    [ "$state" != down ]
}

kafka_running_dir() { # down/status act on the other mode's broker when only that one runs
    local state _
    read -r state _ < <(kafka_our_state)
    if [ "$state" = down ] && kafka_other_runs; then KAFKA_DIR=$KAFKA_OTHER_DIR; fi
}

kafka_up() {
    local state port pid auth=() d
    if stack_auth; then
        d=$(auth_kafka_dir) || exit 1
        auth=(--auth "$d")
    fi
    read -r state port pid < <(kafka_our_state)
    if [ "$state" = up ] && [ "$port" != "$KAFKA_PORT" ]; then
        log "kafka: our broker runs on 127.0.0.1:${port}, not ${KAFKA_PORT}; restarting it"
        kafka_broker stop --dir "$KAFKA_DIR" || die "kafka: could not stop pid ${pid}"
        state=down
    elif [ "$state" = up ] && ! grep -q "NODE://$KAFKA_NODE_LISTENER" "$KAFKA_DIR/server.properties" 2>/dev/null; then
        log "kafka: our broker has no listener for the local node's pods; restarting it"
        kafka_broker stop --dir "$KAFKA_DIR" || die "kafka: could not stop pid ${pid}"
        state=down
    fi
    if [ "$state" != up ] && [ "$state" != starting ] && port_open "$KAFKA_PORT"; then
        log "kafka: 127.0.0.1:${KAFKA_PORT} already answers (not started by scripts/stack); leaving it alone"
        return 0
    fi
    kafka_broker start --dir "$KAFKA_DIR" --port "$KAFKA_PORT" --controller-port "$KAFKA_CPORT" \
        --node-listener "$KAFKA_NODE_LISTENER" "${auth[@]}" --jit full --timeout "$KAFKA_WAIT_SECS" || die "kafka: not serving on 127.0.0.1:${KAFKA_PORT}"
}

kafka_down() {
    local state port pid
    kafka_running_dir
    read -r state port pid < <(kafka_our_state)
    if [ "$state" = down ]; then
        if port_open "$KAFKA_PORT"; then
            log "kafka: 127.0.0.1:${KAFKA_PORT} answers but was not started by scripts/stack; leaving it alone"
        else
            log "kafka: already down"
        fi
        return 0
    fi
    kafka_broker stop --dir "$KAFKA_DIR" --timeout "$KAFKA_WAIT_SECS" || die "kafka: could not stop pid ${pid}"
}

kafka_status() {
    local state port pid note=''
    kafka_running_dir
    read -r state port pid < <(kafka_our_state)
    if [ "$state" = up ] && [ "$port" = "$KAFKA_PORT" ]; then
        : # ours, serving
    elif port_open "$KAFKA_PORT"; then
        state=up pid='?' note=' (not started by scripts/stack)'
    else
        case $state in
            up) note=" (ours runs on 127.0.0.1:${port})" ;;
            starting) note=" (pid ${pid} is starting)" ;;
        esac
        state=down pid=-
    fi
    printf '%-9s %-5s %-16s pid %s%s\n' kafka "$state" "127.0.0.1:${KAFKA_PORT}" "$pid" "$note"
    [ "$state" = up ]
}
