# shellcheck shell=bash
# scripts/lib/stack-auth.sh: the stack's authenticated mode (STAMPEDE_STACK_AUTH=1): a stack CA
# and server certificate, generated passwords, the Redis ACL, PostgreSQL's TLS and hba
# files, the Kafka broker's --auth directory, and the mode each running component was
# started in. Needs STACK_DIR, SCRIPT_DIR, log/die (lib/common.sh), lib/pki.sh, and the
# component libs (redis.sh, redis-replica.sh, redis-cluster.sh, postgres.sh, kafka.sh) for
# their globals.
#
#   stack_auth            true when this command runs in authenticated mode
#   stack_mode            auth or plain: the mode this command wants
#   mode_of DIR           the mode DIR's component was last started in (plain if unmarked)
#   mark_mode DIR         records the wanted mode in DIR (just before a start; plain: no file)
#   auth_secret NAME      the password in SECRETS_DIR/NAME, generated once (0600)
#   auth_secrets          every password the stack uses, generated once; sets PG_PASSWORD
#   auth_pki              the stack CA and the server certificate, made once
#   auth_redis_conf ROLE  redis.conf lines: ACL users (and masteruser for ROLE replica and
#                         for a cluster node, ROLE redis-cluster:PORT)
#   auth_pg_conf          stampede.conf lines for TLS and the hba file; writes both files
#   auth_kafka_dir        the directory for `scripts/kafka-broker start --auth`, refreshed
#   auth_env              the exports `scripts/stack env` prints in this mode
#   auth_check_modes COMPONENT...  dies if one of them runs in the other mode

case ${STAMPEDE_STACK_AUTH:-0} in
    0 | 1) ;;
    *) die "STAMPEDE_STACK_AUTH must be 0 or 1, not '${STAMPEDE_STACK_AUTH}'" ;;
esac
PKI_DIR=$STACK_DIR/pki         # ca.{crt,key}, server.{crt,key}
SECRETS_DIR=$STACK_DIR/secrets # one password a file
AUTH_CA=$PKI_DIR/ca.crt
# The address the local node's pods reach the stack at (scripts/cluster DNATs it to loopback):
# the server certificate names it beside 127.0.0.1 and localhost.
STACK_NODE_ADDR=${KAFKA_NODE_LISTENER%:*}
# Users: `stampede` for the service everywhere; Redis adds `admin` (scripts/stack's own
# PING/INFO/SHUTDOWN, and the cluster's creation) and `replication` (a replica's link); Kafka
# adds `broker` (its own inter-broker connections over the SASL_SSL listener).
AUTH_USER=stampede

stack_auth() { [ "${STAMPEDE_STACK_AUTH:-0}" = 1 ]; }
stack_mode() { if stack_auth; then echo auth; else echo plain; fi; }

mode_of() { # DIR: auth or plain (components started before modes existed are plain)
    local m=plain
    [ -r "$1/stack-mode" ] && IFS= read -r m <"$1/stack-mode"
    printf '%s\n' "${m:-plain}"
}

mark_mode() { # DIR: plain mode leaves no marker (its state stays as it always was)
    if stack_auth; then
        mkdir -p "$1" && echo auth >"$1/stack-mode"
    else
        rm -f "$1/stack-mode"
    fi
}

auth_secret() { # NAME: prints SECRETS_DIR/NAME, generating it the first time
    local f=$SECRETS_DIR/$1 tmp pw
    if [ ! -s "$f" ]; then
        (umask 077 && mkdir -p "$SECRETS_DIR")
        chmod 700 "$SECRETS_DIR"
        tmp=$(umask 077 && mktemp "$f.XXXXXX")
        # hex: safe unquoted in URLs, redis.conf, JAAS and properties files
        openssl rand -hex 24 >"$tmp" || { rm -f "$tmp"; die "openssl rand failed"; }
        # ln fails if a concurrent caller won: then its password is the one
        ln "$tmp" "$f" 2>/dev/null || true
        rm -f "$tmp"
    fi
    IFS= read -r pw <"$f" || true
    [ -n "$pw" ] || die "empty secret $f (remove it to have it made again)"
    printf '%s\n' "$pw"
}

AUTH_SECRETS="redis.password redis-admin.password redis-replication.password postgres.password
kafka.password kafka-broker.password"

auth_secrets() { # made here, in this shell, so that a failure stops the command
    local s
    for s in $AUTH_SECRETS; do auth_secret "$s" >/dev/null; done
    # shellcheck disable=SC2034 # lib/postgres.sh's global (role password, pg_url)
    PG_PASSWORD=$(auth_secret postgres.password)
}

sha256_of() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }

auth_pki() { # the CA and the server certificate, once; keys 0600
    (umask 077 && mkdir -p "$PKI_DIR")
    chmod 700 "$PKI_DIR"
    [ -s "$PKI_DIR/server.crt" ] && [ -s "$PKI_DIR/server.key" ] && return 0
    log "pki: making the stack CA and server certificate in $PKI_DIR"
    # shellcheck disable=SC2034 # read by lib/pki.sh, which works in DIR/pki
    local DIR=$STACK_DIR
    (umask 077 && make_ca ca stampede-stack-ca &&
        sign_cert server /CN=localhost \
            "subjectAltName=IP:127.0.0.1,DNS:localhost,IP:${STACK_NODE_ADDR}" serverAuth) ||
        die "pki: could not make the stack certificates"
    chmod 600 "$PKI_DIR"/*.key
    chmod 644 "$PKI_DIR"/*.crt
}

# Redis ACL. The service runs EVALSHA/SCRIPT LOAD (issue/admin Lua), hashes, sets, streams
# (XADD/XREADGROUP/XAUTOCLAIM/XACK/XDEL/XINFO), INCR+WAIT (fence) and INFO (the epoch check),
# on keys stampede:* and {stampede:<campaign>}:* (core/src/keys.rs). So: every command but
# @dangerous (FLUSHALL, CONFIG, DEBUG, KEYS, SHUTDOWN, REPLICAOF, CLIENT KILL/PAUSE, ...),
# plus INFO (read-only, in @dangerous), on exactly those key patterns. Passwords appear as
# SHA-256 hashes, so redis.conf holds no cleartext but the replica's masterauth.
# A cluster client's reads (CLUSTER SLOTS/SHARDS/NODES/MYID/INFO, READONLY, ASKING) are not
# in @dangerous on Redis 7.0 (CLUSTER REPLICAS/SLAVES are, and clients do not need them), so
# the same rules serve a cluster node. Every cluster node gets masteruser/masterauth: any
# node may be a replica after a failover (a primary that comes back rejoins as one).
auth_redis_conf() { # ROLE (redis|replica|redis-cluster:PORT)
    cat <<EOF
# STAMPEDE_STACK_AUTH=1: the default user is off; clients authenticate as an ACL user.
# It keeps every permission: Redis replays the AOF's MULTI/EXEC blocks (every multi-write Lua
# script) as the default user and, before redis/redis#14545 (7.0.15 included), drops a block
# that user may not run, logging only '== CRITICAL ==': a restart would lose the issue
# script's writes. Off, it cannot log in (no password); the permissions serve the replay alone.
user default off resetpass ~* &* +@all
user ${AUTH_USER} on #$(sha256_of "$(auth_secret redis.password)") resetkeys ~stampede:* ~{stampede:* resetchannels -@all +@all -@dangerous +info
user replication on #$(sha256_of "$(auth_secret redis-replication.password)") resetkeys resetchannels -@all +psync +replconf +ping
user admin on #$(sha256_of "$(auth_secret redis-admin.password)") ~* &* +@all
EOF
    if [ "$1" = replica ] || [[ $1 == redis-cluster:* ]]; then
        printf 'masteruser replication\nmasterauth %s\n' "$(auth_secret redis-replication.password)"
    fi
}

# PostgreSQL: TLS with the stack certificate (copied into PG_DIR/auth: the server runs as
# PG_OS_USER and wants its key 0600 and its own), and an hba file where TCP means hostssl
# with scram-sha-256. The unix socket (PG_RUN, 0700) stays trust for scripts/stack itself.
auth_pg_conf() {
    local d=$PG_DIR/auth
    auth_pki
    (umask 077 && mkdir -p "$d")
    cp "$PKI_DIR/server.crt" "$d/server.crt"
    (umask 077 && cp "$PKI_DIR/server.key" "$d/server.key")
    cat >"$d/pg_hba.conf" <<EOF
# written by scripts/stack (STAMPEDE_STACK_AUTH=1); rewritten on every 'up'
local     all       all                       trust
hostssl   all       ${PG_ROLE}  127.0.0.1/32  scram-sha-256
# the local node's pods (DNAT from the node address, scripts/cluster)
hostssl   ${PG_DATABASE}  ${PG_ROLE}  10.244.0.0/16 scram-sha-256
hostnossl all       all       0.0.0.0/0       reject
EOF
    chmod 600 "$d/server.key" "$d/pg_hba.conf"
    [ "$(id -u)" -ne 0 ] || chown -R "$PG_OS_USER:$PG_OS_USER" "$d"
    cat <<EOF
# STAMPEDE_STACK_AUTH=1: TLS, and ${d}/pg_hba.conf instead of the data directory's
ssl = on
ssl_cert_file = '${d}/server.crt'
ssl_key_file = '${d}/server.key'
hba_file = '${d}/pg_hba.conf'
password_encryption = 'scram-sha-256'
EOF
}

# The Kafka broker's --auth directory (scripts/kafka-broker): ca.crt, server.pem (key and
# certificate, PEM), users (NAME PASSWORD a line: SCRAM-SHA-512 users made at format time,
# the first the broker's own inter-broker identity). Rewritten from pki/ and secrets/.
auth_kafka_dir() {
    local d=$KAFKA_DIR/auth
    auth_pki
    (umask 077 && mkdir -p "$d" && {
        cp "$AUTH_CA" "$d/ca.crt"
        cat "$PKI_DIR/server.key" "$PKI_DIR/server.crt" >"$d/server.pem"
        printf 'broker %s\n%s %s\n' "$(auth_secret kafka-broker.password)" \
            "$AUTH_USER" "$(auth_secret kafka.password)" >"$d/users"
    }) || die "kafka: could not write $d"
    chmod 700 "$d"
    printf '%s\n' "$d"
}

auth_env() { # single-quoted: the database URL holds '&'
    auth_secrets
    local redis_url
    redis_url=redis://${AUTH_USER}:$(auth_secret redis.password)@127.0.0.1:${REDIS_PORT}
    if redis_cluster_default; then redis_url=$(redis_cluster_url); fi
    cat <<EOF
export STAMPEDE_REDIS_URL='${redis_url}'
export STAMPEDE_DATABASE_URL='$(pg_url)'
export STAMPEDE_KAFKA_BROKERS='127.0.0.1:${KAFKA_PORT}'
export STAMPEDE_KAFKA_SECURITY_PROTOCOL='SASL_SSL'
export STAMPEDE_KAFKA_SASL_MECHANISM='SCRAM-SHA-512'
export STAMPEDE_KAFKA_SASL_USERNAME='${AUTH_USER}'
export STAMPEDE_KAFKA_SASL_PASSWORD='$(auth_secret kafka.password)'
export STAMPEDE_KAFKA_CA_FILE='${AUTH_CA}'
EOF
    if [ "${STAMPEDE_REDIS_REPLICA:-0}" = 1 ]; then
        printf "export STAMPEDE_REDIS_REPLICA_URL='redis://%s:%s@127.0.0.1:%s'\n" \
            "$AUTH_USER" "$(auth_secret redis.password)" "$REPLICA_PORT"
    fi
    if redis_cluster_in_env; then
        printf "export STAMPEDE_REDIS_CLUSTER_URL='%s'\n" "$(redis_cluster_url)"
    fi
}

# A component started in the other mode is not switched under its clients' feet: `up`
# refuses and says how to switch (down, then up in the new mode). Data is kept.
auth_check_modes() { # COMPONENT...
    local c want other=() running
    want=$(stack_mode)
    for c in "$@"; do
        running=''
        case $c in
            redis) redis_our_pid >/dev/null && running=$(mode_of "$REDIS_DIR") ;;
            replica) as_replica redis_our_pid >/dev/null && running=$(mode_of "$STACK_DIR/redis-replica") ;;
            redis-cluster) running=$(redis_cluster_running_mode) ;;
            postgres) pg_our_pid >/dev/null && running=$(mode_of "$PG_DIR") ;;
            kafka) kafka_other_runs && running=other ;;
        esac
        [ -z "$running" ] || [ "$running" = "$want" ] || other+=("$c")
    done
    [ "${#other[@]}" -eq 0 ] && return 0
    local was=plain now=authenticated
    [ "$want" = auth ] || { was=authenticated now=plain; }
    die "${other[*]}: started in ${was} mode, and this 'up' is in ${now} mode (STAMPEDE_STACK_AUTH=${STAMPEDE_STACK_AUTH:-0}); run 'scripts/stack down' first (data, credentials and certificates are kept), then 'up' again"
}
