# shellcheck shell=bash
# scripts/lib/redis-cluster.sh: a Redis Cluster in the local stack (component redis-cluster):
# three primaries and three replicas (one each), six redis-server processes on 127.0.0.1,
# ports STAMPEDE_REDIS_CLUSTER_PORT (default 7000) to +5, cluster bus on port + 10000 (Redis's
# default). `scripts/stack up redis-cluster` starts it beside the single Redis (test suites);
# STAMPEDE_REDIS_CLUSTER=1 makes it the stack's Redis instead (its URL in `env`). Each node is
# lib/redis.sh's Redis (AOF, the ACL of authenticated mode) in STACK_DIR/redis-cluster/PORT/,
# plus the cluster settings of rc_conf. Needs lib/redis.sh sourced first, lib/stack-auth.sh
# (auth_redis_conf role redis-cluster:PORT), port_open (lib/proc.sh) and wait_for
# (scripts/stack).
#
#   as_cluster_node PORT FN ARGS...  runs a lib/redis.sh function as the node on PORT
#   redis_cluster_url          the service's URL: redis+cluster://[user:password@]3 seed nodes
#   redis_cluster_default      true with STAMPEDE_REDIS_CLUSTER=1 (the cluster is the Redis)
#   redis_cluster_in_env       true when `env` prints STAMPEDE_REDIS_CLUSTER_URL: by default,
#                              or when one of its nodes is ours and answers
#   redis_cluster_running_mode the mode our running nodes were started in (empty: none runs)
#   redis_cluster_up           starts the nodes (leaves ours alone), forms the cluster the
#                              first time (redis-cli --cluster create), waits until it serves
#   redis_cluster_down         stops our nodes, replicas first (so nothing fails over)
#   redis_cluster_status       one line per node and a summary; true if all six serve

case ${STAMPEDE_REDIS_CLUSTER:-0} in
    0 | 1) ;;
    *) die "STAMPEDE_REDIS_CLUSTER must be 0 or 1, not '${STAMPEDE_REDIS_CLUSTER}'" ;;
esac
RC_PORT=${STAMPEDE_REDIS_CLUSTER_PORT:-7000}
case $RC_PORT in '' | *[!0-9]*) die "STAMPEDE_REDIS_CLUSTER_PORT must be a port number" ;; esac
RC_DIR=$STACK_DIR/redis-cluster
RC_NODES=6 # three primaries, one replica each
RC_PORTS=()
for ((rc_i = 0; rc_i < RC_NODES; rc_i++)); do RC_PORTS+=($((RC_PORT + rc_i))); done
unset rc_i

# The cluster settings every node gets: sets lib/redis.sh's REDIS_EXTRA_CONF for NODE_DIR
# (read, not $(cat): no process for it, as_cluster_node runs often).
# shellcheck disable=SC2034 # lib/redis.sh's global (as_cluster_node's subshell only)
rc_conf() { # NODE_DIR
    IFS= read -r -d '' REDIS_EXTRA_CONF <<EOF || true
# Redis Cluster (lib/redis-cluster.sh); its state (nodes, slots, epochs) in nodes.conf
cluster-enabled yes
cluster-config-file $1/nodes.conf
# a primary unreachable for 2 s is failed over within seconds (default 15 s: slow for tests)
cluster-node-timeout 2000
# the shards that have a primary keep serving while another one fails over
cluster-require-full-coverage no
# a replica may always be promoted, however long its link to the primary was down
cluster-replica-validity-factor 0
# one replica a primary: start its full sync at once (default: wait 5 s for more replicas)
repl-diskless-sync-delay 0
EOF
}

# shellcheck disable=SC2030,SC2034 # lib/redis.sh's globals, changed in this subshell only
as_cluster_node() { # PORT FN ARGS...
    local port=$1
    shift
    (
        REDIS_NAME=redis-cluster:$port
        REDIS_PORT=$port
        REDIS_DIR=$RC_DIR/$port
        REDIS_CONF=$REDIS_DIR/redis.conf
        REDIS_PIDFILE=$REDIS_DIR/redis.pid
        REDIS_LOG=$REDIS_DIR/redis.log
        rc_conf "$REDIS_DIR"
        "$@"
    )
}

redis_cluster_url() { # every node a seed: any may be down, and a client reaching the nodes
    # through address translation maps each announced port to its seed (`announced=`)
    local seeds p
    seeds=$(for p in "${RC_PORTS[@]}"; do printf '127.0.0.1:%s,' "$p"; done)
    seeds=${seeds%,}
    if stack_auth; then
        printf 'redis+cluster://%s:%s@%s\n' "$AUTH_USER" "$(auth_secret redis.password)" "$seeds"
    else
        printf 'redis+cluster://%s\n' "$seeds"
    fi
}

redis_cluster_default() { [ "${STAMPEDE_REDIS_CLUSTER:-0}" = 1 ]; }
redis_cluster_in_env() { redis_cluster_default || redis_cluster_ours_up; }

rc_node_ours() { # (as a node) our process runs and is the one answering the port
    local ours
    ours=$(redis_our_pid) && redis_ping && [ "$(redis_server_pid)" = "$ours" ]
}

redis_cluster_ours_up() {
    local p
    for p in "${RC_PORTS[@]}"; do
        as_cluster_node "$p" rc_node_ours && return 0
    done
    return 1
}

redis_cluster_running_mode() { # a running node's mode: one not in this command's mode first
    local p m first=''
    for p in "${RC_PORTS[@]}"; do
        as_cluster_node "$p" redis_our_pid >/dev/null || continue
        m=$(mode_of "$RC_DIR/$p")
        [ "$m" = "$(stack_mode)" ] || { printf '%s\n' "$m"; return 0; }
        first=${first:-$m}
    done
    [ -z "$first" ] || printf '%s\n' "$first"
}

# A node's CLUSTER INFO, INFO replication and CLUSTER NODES in one redis-cli (commands on
# stdin), carriage returns dropped; empty when it does not answer.
rc_facts() { # PORT
    printf 'CLUSTER INFO\nINFO replication\nCLUSTER NODES\n' |
        as_cluster_node "$1" redis_cli 2>/dev/null | tr -d '\r'
}

rc_get() { # FIELD < facts: the value of an INFO-style "FIELD:value" line
    sed -n "s/^$1://p" | head -n 1
}

# rc_role < facts: "primary, slots A-B …" or "replica of HOST:PORT (link up|down)", from the
# node's own line in CLUSTER NODES (flags myself,master|slave; a replica's primary by id).
rc_role() {
    awk '
        NF >= 8 {
            split($2, hp, "@"); addr[$1] = hp[1]
            if ($3 ~ /(^|,)myself(,|$)/) {
                flags = $3; primary = $4; slots = ""
                for (i = 9; i <= NF; i++) slots = slots (slots == "" ? "" : " ") $i
            }
        }
        /^master_link_status:/ { link = substr($0, 20) }
        END {
            if (flags ~ /master/) print "primary, slots " (slots == "" ? "none" : slots)
            else if (flags ~ /slave/)
                print "replica of " ((primary in addr) ? addr[primary] : primary) " (link " (link == "" ? "?" : link) ")"
            else print "role unknown" (flags == "" ? "" : " (" flags ")")
        }'
}

rc_check_ports() { # before any node starts: each port (and its bus port) is ours or free
    local p
    for p in "${RC_PORTS[@]}"; do
        as_cluster_node "$p" rc_node_ours && continue
        if port_open "$p" || port_open $((p + 10000)); then
            die "redis-cluster: 127.0.0.1:${p} or its cluster bus port $((p + 10000)) is in use by a process scripts/stack did not start; free it or set STAMPEDE_REDIS_CLUSTER_PORT"
        fi
    done
}

# fresh (no node knows another: form it), formed (every node knows others: nodes.conf
# kept from an earlier up), or a line saying which nodes are which.
rc_formation() {
    local p known fresh=() formed=()
    for p in "${RC_PORTS[@]}"; do
        known=$(rc_facts "$p" | rc_get cluster_known_nodes)
        if [ "${known:-0}" -le 1 ]; then fresh+=("$p"); else formed+=("$p"); fi
    done
    if [ "${#formed[@]}" -eq 0 ]; then
        echo fresh
    elif [ "${#fresh[@]}" -eq 0 ]; then
        echo formed
    else
        echo "nodes ${fresh[*]} know no other node, nodes ${formed[*]} do"
    fi
}

rc_create() { # redis-cli --cluster create, as user admin in authenticated mode (redis_cli_on)
    local p addrs=() out rc=0
    for p in "${RC_PORTS[@]}"; do addrs+=("127.0.0.1:$p"); done
    log "redis-cluster: forming the cluster (3 primaries, 1 replica each) of ${addrs[*]}"
    out=$(as_cluster_node "${RC_PORTS[0]}" redis_cli_on 120 "${RC_PORTS[0]}" \
        --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes 2>&1) || rc=$?
    if [ "$rc" -ne 0 ] || ! grep -q 'All 16384 slots covered' <<<"$out"; then
        printf -- '--- redis-cli --cluster create ---\n%s\n---\n' "$(tail -n 30 <<<"$out")" >&2
        die "redis-cluster: redis-cli --cluster create failed (exit ${rc})"
    fi
    log "redis-cluster: formed"
}

# For wait_for: 0 once every node says cluster_state:ok and has its role (three replicas,
# each link to its primary up); 2 when a node we started died. Logs progress when it
# changes (and every 5 s), and polls twice a second (each poll is six redis-cli).
RC_PROGRESS='' RC_PROGRESS_AT=0
rc_serving() {
    local p facts ok=0 replicas=0 links=0 down=()
    for p in "${RC_PORTS[@]}"; do
        facts=$(rc_facts "$p")
        if [ -z "$facts" ]; then
            as_cluster_node "$p" redis_our_pid >/dev/null || return 2
            down+=("$p")
            continue
        fi
        [ "$(rc_get cluster_state <<<"$facts")" = ok ] && ok=$((ok + 1))
        if [ "$(rc_get role <<<"$facts")" = slave ]; then
            replicas=$((replicas + 1))
            [ "$(rc_get master_link_status <<<"$facts")" = up ] && links=$((links + 1))
        fi
    done
    [ "$ok" -eq "$RC_NODES" ] && [ "$replicas" -eq $((RC_NODES / 2)) ] && [ "$links" -eq "$replicas" ] && return 0
    local now="cluster_state ok on ${ok}/${RC_NODES} nodes, ${links}/${replicas} replica links up"
    [ "${#down[@]}" -eq 0 ] || now+=", not answering: ${down[*]}"
    if [ "$now" != "$RC_PROGRESS" ] || [ "$SECONDS" -ge $((RC_PROGRESS_AT + 5)) ]; then
        log "redis-cluster: waiting: ${now}"
        RC_PROGRESS=$now RC_PROGRESS_AT=$SECONDS
    fi
    sleep 0.4
    return 1
}

redis_cluster_up() {
    local p t0=$SECONDS how secs=$((WAIT_SECS > 60 ? WAIT_SECS : 60))
    rc_check_ports
    for p in "${RC_PORTS[@]}"; do
        as_cluster_node "$p" redis_up || exit 1 # redis_up said why
    done
    how=$(rc_formation)
    case $how in
        fresh) rc_create ;;
        formed) log "redis-cluster: formed already (nodes.conf kept); waiting until it serves" ;;
        *) die "redis-cluster: half formed (${how}); to start afresh: scripts/stack down redis-cluster; rm -r ${RC_DIR}" ;;
    esac
    RC_PROGRESS='' RC_PROGRESS_AT=$SECONDS
    if ! wait_for "$secs" "redis-cluster: waiting for cluster_state:ok on every node" rc_serving; then
        redis_cluster_status >&2 || true
        die "redis-cluster: not serving (see the nodes' logs under ${RC_DIR}; to start afresh: scripts/stack down redis-cluster; rm -r ${RC_DIR})"
    fi
    log "redis-cluster: serving on 127.0.0.1:${RC_PORTS[0]}-${RC_PORTS[RC_NODES - 1]} (cluster_state ok on all ${RC_NODES} nodes) after $((SECONDS - t0)) s"
}

redis_cluster_down() { # replicas first: a primary stopped before its replica is failed over
    local p first=() last=()
    for p in "${RC_PORTS[@]}"; do
        if [ "$(rc_facts "$p" | rc_get role)" = slave ]; then first+=("$p"); else last+=("$p"); fi
    done
    for p in "${first[@]}" "${last[@]}"; do
        as_cluster_node "$p" redis_down || exit 1 # redis_down said why
    done
}

redis_cluster_status() {
    local p line facts pid st up=0 ok=0 primaries=0 replicas=0 slots='' other=()
    for p in "${RC_PORTS[@]}"; do
        if ! line=$(as_cluster_node "$p" redis_status); then
            pid=$(as_cluster_node "$p" redis_our_pid) && line+=" (our pid ${pid} runs but does not answer)"
            printf '%s\n' "$line"
            continue
        fi
        up=$((up + 1))
        facts=$(rc_facts "$p")
        st=$(rc_get cluster_state <<<"$facts")
        if [ "$st" = ok ]; then ok=$((ok + 1)); else other+=("${st:-?} on ${p}"); fi
        case $(rc_get role <<<"$facts") in
            master) primaries=$((primaries + 1)) ;;
            slave) replicas=$((replicas + 1)) ;;
        esac
        slots=${slots:-$(rc_get cluster_slots_assigned <<<"$facts")}
        printf '%s %s\n' "$line" "$(rc_role <<<"$facts")"
    done
    local state=down
    [ "$up" -eq 0 ] || state="cluster_state:ok on ${ok}/${up} answering nodes"
    [ "${#other[@]}" -eq 0 ] || state+=" (${other[*]})"
    printf '%-18s %s (%s/%s nodes up, %s primaries, %s replicas, %s/16384 slots assigned)\n' \
        redis-cluster "$state" "$up" "$RC_NODES" "$primaries" "$replicas" "${slots:-0}"
    [ "$up" -eq "$RC_NODES" ] && [ "$ok" -eq "$RC_NODES" ]
}
