# shellcheck shell=bash
# scripts/lib/redis-replica.sh: an optional replica of the stack's Redis, for
# `stampede-service serve --durability replica` and failover rehearsals (scripts/stack with
# STAMPEDE_REDIS_REPLICA=1, or `scripts/stack up replica`). It is the primary's config
# (lib/redis.sh) on its own port (STAMPEDE_REDIS_REPLICA_PORT, default Redis port + 1) and
# directory, plus `replicaof` the primary. Needs lib/redis.sh sourced first.
#
#   as_replica FN ARGS...   runs a lib/redis.sh function with the replica's port, files, name
#   replica_link            its link to the primary: up, down, or empty when unreachable
#   replica_up              starts it (after the primary) unless something answers its port,
#                           and waits until it is in sync
#   replica_down            stops it (only ours)
#   replica_status          one status line, with its link to the primary; true if up

REPLICA_PORT=${STAMPEDE_REDIS_REPLICA_PORT:-$((REDIS_PORT + 1))}

# shellcheck disable=SC2030,SC2034 # lib/redis.sh's globals, changed in this subshell only
as_replica() {
    (
        REDIS_EXTRA_CONF="replicaof 127.0.0.1 ${REDIS_PORT}"
        REDIS_NAME=replica
        REDIS_PORT=$REPLICA_PORT
        REDIS_DIR=$STACK_DIR/redis-replica
        REDIS_CONF=$REDIS_DIR/redis.conf
        REDIS_PIDFILE=$REDIS_DIR/redis.pid
        REDIS_LOG=$REDIS_DIR/redis.log
        "$@"
    )
}

replica_link() { # the replica's link to the primary: up, down or empty
    as_replica redis_cli info replication 2>/dev/null | tr -d '\r' | sed -n 's/^master_link_status://p'
}

replica_up() {
    as_replica redis_up
    wait_for "$WAIT_SECS" "replica: waiting for its link to the primary" \
        eval '[ "$(replica_link)" = up ]' || die "replica: no link to the primary (see its log)"
    log "replica: in sync with 127.0.0.1:${REDIS_PORT}"
}

replica_down() { as_replica redis_down; }

replica_status() {
    local line link
    line=$(as_replica redis_status) || { printf '%s\n' "$line"; return 1; }
    link=$(replica_link)
    printf '%s (link to primary: %s)\n' "$line" "${link:-unknown}"
}
