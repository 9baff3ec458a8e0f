# shellcheck shell=bash
# scripts/lib/postgres.sh: the stack's PostgreSQL (scripts/stack): a cluster of its own run as
# the OS user `stampede` when we are root, its config, role and database. Needs STACK_DIR and
# WAIT_SECS, and log/die/have (lib/common.sh), pid_alive/read_pidfile/show_log_tail
# (lib/proc.sh), wait_for (scripts/stack) and stack_auth/mark_mode/auth_pg_conf/AUTH_CA
# (lib/stack-auth.sh; in authenticated mode PG_PASSWORD is the generated one). Sources
# lib/pg-client.sh (psql_url: a URL's password kept off psql's command line).
#
#   pg_bindir             bin dir matching the cluster's version, else the newest installed
#   as_pg CMD...          CMD as the cluster's OS user (postgres will not run as root)
#   pg_isready_cmd        path of a pg_isready
#   pg_ping               the port accepts connections
#   pg_our_pid            postmaster pid of our cluster, if it is alive
#   pg_our_port           the port our postmaster listens on (postmaster.pid)
#   pg_ensure_os_user     creates the `stampede` system user (as root)
#   pg_ensure_reachable   lets that user search every directory down to PG_DIR (ACLs)
#   pg_init BIN           initdb once; pg_hba line for pods; stampede.conf on every up
#                         (authenticated mode: plus TLS and its own hba file)
#   pg_psql_admin BIN ARGS...  superuser psql over our unix socket
#   pg_ensure_database BIN     role password and database
#   pg_prune_test_databases  drops the test suites' databases (t_*) nobody is connected to
#   pg_url                the stack's database URL (authenticated: TLS, verify-full)
#   pg_up                 starts it unless something answers on the port
#   pg_down               pg_ctl stop (fast); only ours
#   pg_status             one status line; true if up

# shellcheck source=scripts/lib/pg-client.sh
. "$(dirname "${BASH_SOURCE[0]}")/pg-client.sh"

PG_PORT=${STAMPEDE_PG_PORT:-5432}
PG_DIR=$STACK_DIR/postgres
PG_DATA=$PG_DIR/data
PG_RUN=$PG_DIR/run # unix socket directory
PG_LOG=$PG_DIR/postgres.log
PG_OS_USER=stampede # postgres refuses to run as root; used only when we are root
PG_ROLE=stampede
PG_PASSWORD=stampede
PG_DATABASE=stampede

pg_bindir() { # bin dir matching an existing cluster's version, else the newest installed
    local v
    if [ -r "$PG_DATA/PG_VERSION" ]; then
        v=$(cat "$PG_DATA/PG_VERSION")
        if [ -x "/usr/lib/postgresql/$v/bin/postgres" ]; then
            printf '%s\n' "/usr/lib/postgresql/$v/bin"
            return 0
        fi
        log "postgres: $PG_DATA was made by PostgreSQL $v, whose binaries are not installed"
        return 1
    fi
    local d
    d=$(for b in /usr/lib/postgresql/*/bin; do [ -x "$b/initdb" ] && printf '%s\n' "$b"; done |
        sort -V | tail -n 1)
    [ -n "$d" ] || return 1
    printf '%s\n' "$d"
}

# Run a command as the OS user that owns the cluster (postgres will not run as root).
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u "$PG_OS_USER" -- "$@"
    else
        "$@"
    fi
}

pg_isready_cmd() {
    local bin
    if bin=$(pg_bindir 2>/dev/null) && [ -x "$bin/pg_isready" ]; then
        printf '%s\n' "$bin/pg_isready"
    elif have pg_isready; then
        command -v pg_isready
    else
        return 1
    fi
}

pg_ping() {
    local isready
    isready=$(pg_isready_cmd) || return 1
    "$isready" -q -h 127.0.0.1 -p "$PG_PORT" -U "$PG_ROLE" -d postgres -t 2
}

pg_our_pid() { # postmaster pid of our cluster, if it is alive
    local pid
    pid=$(read_pidfile "$PG_DATA/postmaster.pid") && pid_alive "$pid" && printf '%s\n' "$pid"
}

pg_our_port() { sed -n '4p' "$PG_DATA/postmaster.pid" 2>/dev/null; }

pg_ensure_os_user() {
    [ "$(id -u)" -eq 0 ] || return 0
    if ! id -u "$PG_OS_USER" >/dev/null 2>&1; then
        log "postgres: creating system user ${PG_OS_USER}"
        useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin --comment "Stampede local stack" "$PG_OS_USER"
    fi
}

# The cluster's OS user must be able to reach $PG_DIR; with the default STAMPEDE_HOME under
# /root (mode 0700) it cannot. Grant it search (x) permission only, by ACL, on each
# directory on the way that blocks it.
pg_ensure_reachable() {
    [ "$(id -u)" -eq 0 ] || return 0
    local path='' part
    local -a parts
    IFS=/ read -r -a parts <<<"${PG_DIR#/}"
    for part in "${parts[@]}"; do
        path=$path/$part
        [ -d "$path" ] || break
        runuser -u "$PG_OS_USER" -- test -x "$path" && continue
        have setfacl || die "postgres: user ${PG_OS_USER} cannot reach ${path}; install acl (scripts/deps) or set STAMPEDE_HOME to a directory it can reach"
        log "postgres: granting ${PG_OS_USER} search permission on ${path} (setfacl -m u:${PG_OS_USER}:x)"
        setfacl -m "u:${PG_OS_USER}:x" "$path" ||
            die "postgres: setfacl on ${path} failed; set STAMPEDE_HOME to a directory user ${PG_OS_USER} can reach"
        runuser -u "$PG_OS_USER" -- test -x "$path" || die "postgres: user ${PG_OS_USER} still cannot reach ${path}"
    done
}

pg_init() {
    local bin=$1
    mkdir -p "$PG_DIR" "$PG_RUN"
    if [ "$(id -u)" -eq 0 ]; then
        chown "$PG_OS_USER:$PG_OS_USER" "$PG_DIR" "$PG_RUN"
        touch "$PG_LOG" && chown "$PG_OS_USER:$PG_OS_USER" "$PG_LOG"
    fi
    chmod 0700 "$PG_RUN"
    pg_ensure_reachable
    if [ ! -e "$PG_DATA/PG_VERSION" ]; then
        if [ -d "$PG_DATA" ]; then
            log "postgres: removing half-initialised $PG_DATA"
            rm -rf "$PG_DATA"
        fi
        log "postgres: initdb $PG_DATA ($("$bin/postgres" --version))"
        if ! as_pg "$bin/initdb" -D "$PG_DATA" -U "$PG_ROLE" --auth=trust \
            --encoding=UTF8 --no-locale >>"$PG_LOG" 2>&1; then
            show_log_tail "$PG_LOG"
            die "postgres: initdb failed"
        fi
        printf "\n# added by scripts/stack\ninclude_if_exists 'stampede.conf'\n" >>"$PG_DATA/postgresql.conf"
    fi
    # The local node's pods arrive (DNAT from the node address, scripts/cluster) from pod
    # addresses: password authentication for them, trust stays loopback-only.
    grep -q '^host stampede stampede 10.244.0.0/16' "$PG_DATA/pg_hba.conf" ||
        printf '# added by scripts/stack: pods of the local node\nhost stampede stampede 10.244.0.0/16 scram-sha-256\n' >>"$PG_DATA/pg_hba.conf"
    # Rewritten on every start so port changes take effect.
    cat >"$PG_DATA/stampede.conf" <<EOF
# written by scripts/stack; rewritten on every 'up'
listen_addresses = '127.0.0.1'
port = ${PG_PORT}
unix_socket_directories = '${PG_RUN}'
max_connections = 200
fsync = on
synchronous_commit = on
full_page_writes = on
# The writer's batch inserts are the workload: room for the indexes, and checkpoints
# spaced out so full-page writes do not dominate the WAL.
shared_buffers = 512MB
max_wal_size = 4GB
checkpoint_timeout = 15min
wal_compression = on
log_timezone = 'UTC'
timezone = 'UTC'
EOF
    if stack_auth; then
        auth_pg_conf >>"$PG_DATA/stampede.conf" || die "postgres: could not write its TLS and hba files"
    fi
    [ "$(id -u)" -ne 0 ] || chown "$PG_OS_USER:$PG_OS_USER" "$PG_DATA/stampede.conf"
}

pg_psql_admin() { # superuser session over our unix socket
    local bin=$1
    shift
    as_pg "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_RUN" -p "$PG_PORT" -U "$PG_ROLE" -d postgres "$@"
}

pg_ensure_database() {
    local bin=$1 exists
    # on stdin, not the command line (ps shows that)
    pg_psql_admin "$bin" <<<"ALTER ROLE ${PG_ROLE} WITH LOGIN PASSWORD '${PG_PASSWORD}'" ||
        die "postgres: could not set the password of role ${PG_ROLE}"
    exists=$(pg_psql_admin "$bin" -tA -c "SELECT 1 FROM pg_database WHERE datname = '${PG_DATABASE}'") ||
        die "postgres: could not list databases"
    if [ "$exists" != 1 ]; then
        log "postgres: creating database ${PG_DATABASE} owned by ${PG_ROLE}"
        pg_psql_admin "$bin" -c "CREATE DATABASE ${PG_DATABASE} OWNER ${PG_ROLE}" ||
            die "postgres: could not create database ${PG_DATABASE}"
    fi
}

# The black-box suites make a database per test (t_<pid><stamp>_<n>) and never drop it (a
# test that fails keeps its rows to look at). They pile up across runs, so each suite run
# first drops the ones left over; one still in use refuses DROP and stays.
pg_prune_test_databases() {
    local bin names name dropped=0
    bin=$(pg_bindir) || die "postgres: no PostgreSQL server under /usr/lib/postgresql/*/bin (scripts/deps)"
    pg_our_pid >/dev/null || { log "postgres: not ours or not up; nothing pruned"; return 0; }
    names=$(pg_psql_admin "$bin" -tA -c "SELECT datname FROM pg_database WHERE datname LIKE 't\_%'") ||
        die "postgres: could not list databases"
    for name in $names; do
        if pg_psql_admin "$bin" -c "DROP DATABASE \"${name}\"" 2>/dev/null; then
            dropped=$((dropped + 1))
        fi
    done
    log "postgres: dropped ${dropped} leftover test database(s)"
}

pg_url() {
    if stack_auth; then
        printf 'postgres://%s:%s@127.0.0.1:%s/%s?sslmode=verify-full&sslrootcert=%s\n' \
            "$PG_ROLE" "$PG_PASSWORD" "$PG_PORT" "$PG_DATABASE" "$AUTH_CA"
    else
        printf 'postgres://%s:%s@127.0.0.1:%s/%s\n' "$PG_ROLE" "$PG_PASSWORD" "$PG_PORT" "$PG_DATABASE"
    fi
}

pg_up() {
    local bin
    bin=$(pg_bindir) || die "postgres: no PostgreSQL server under /usr/lib/postgresql/*/bin (scripts/deps)"
    if pg_ping; then
        local ours
        ours=$(pg_our_pid || true)
        if [ -n "$ours" ] && [ "$(pg_our_port)" = "$PG_PORT" ]; then
            log "postgres: already up on 127.0.0.1:${PG_PORT} (pid ${ours})"
            pg_ensure_database "$bin"
        else
            log "postgres: 127.0.0.1:${PG_PORT} already answers (not started by scripts/stack); leaving it alone"
            PSQL=$bin/psql psql_url "$(pg_url)" -X -q -tA -c 'SELECT 1' >/dev/null 2>&1 ||
                die "postgres: that server does not accept ${PG_URL_BARE} (password not shown); stop it or set STAMPEDE_PG_PORT"
        fi
        return 0
    fi
    pg_ensure_os_user
    pg_init "$bin"
    mark_mode "$PG_DIR"
    local pid
    if pid=$(pg_our_pid); then
        # Ours, running, but not answering on this port (e.g. still starting, or started on
        # another port). Let pg_ctl restart it with the current config.
        log "postgres: pid ${pid} runs but 127.0.0.1:${PG_PORT} does not answer; restarting"
        as_pg "$bin/pg_ctl" -D "$PG_DATA" -m fast -w -t "$WAIT_SECS" stop >>"$PG_LOG" 2>&1 || true
    fi
    log "postgres: starting on 127.0.0.1:${PG_PORT}"
    # pg_ctl -w polls (bounded by -t) until the server accepts connections or has exited.
    # 9>&-: the postmaster must not inherit (and so hold forever) the stack lock.
    if ! as_pg "$bin/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$WAIT_SECS" start >/dev/null 2>&1 9>&-; then
        show_log_tail "$PG_LOG"
        die "postgres: pg_ctl start failed"
    fi
    if ! wait_for "$WAIT_SECS" "postgres: waiting for pg_isready" pg_ping; then
        show_log_tail "$PG_LOG"
        die "postgres: not answering on 127.0.0.1:${PG_PORT}"
    fi
    pg_ensure_database "$bin"
    log "postgres: up on 127.0.0.1:${PG_PORT} (pid $(pg_our_pid))"
}

pg_down() {
    local pid bin
    if ! pid=$(pg_our_pid); then
        if pg_ping; then
            log "postgres: 127.0.0.1:${PG_PORT} answers but was not started by scripts/stack; leaving it alone"
        else
            log "postgres: already down"
        fi
        return 0
    fi
    bin=$(pg_bindir) || die "postgres: cannot find pg_ctl to stop pid ${pid}"
    log "postgres: stopping (pid ${pid})"
    if ! as_pg "$bin/pg_ctl" -D "$PG_DATA" -m fast -w -t "$WAIT_SECS" stop >>"$PG_LOG" 2>&1; then
        show_log_tail "$PG_LOG"
        die "postgres: pg_ctl stop failed"
    fi
    wait_for "$WAIT_SECS" "postgres: waiting for pid ${pid} to exit" eval "! pid_alive $pid" ||
        die "postgres: pid ${pid} did not stop"
    log "postgres: stopped"
}

pg_status() {
    local pid=- state=down note=''
    if pg_ping; then
        state=up
        local ours
        ours=$(pg_our_pid || true)
        if [ -n "$ours" ] && [ "$(pg_our_port)" = "$PG_PORT" ]; then
            pid=$ours
        else
            pid='?'
            note=' (not started by scripts/stack)'
        fi
    fi
    printf '%-9s %-5s %-16s pid %s%s\n' postgres "$state" "127.0.0.1:${PG_PORT}" "$pid" "$note"
    [ "$state" = up ]
}
