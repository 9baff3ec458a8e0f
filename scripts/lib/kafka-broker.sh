# shellcheck shell=bash
# scripts/lib/kafka-broker.sh: one broker's files and process, for scripts/kafka-broker
# (sourced): its config, storage, log, readiness and exit. Needs the paths parse_opts sets
# (DIR, CONF, LOG4J_CONF, PIDFILE, LOG, DATA, CLUSTER_ID_FILE), PORT/CPORT/NODE_LISTENER/
# TIMEOUT/AUTH_DIR, JAVA/LIBS (lib/kafka-jvm.sh), log/die (lib/common.sh) and lib/proc.sh.
#
#   is_our_broker PID     PID runs this DIR's broker (not a process that reused the pid)
#   broker_pid            pid of this DIR's running broker
#   conf_port [NAME]      the client (PLAINTEXT or SASL_SSL; or NAME's) port in DIR/server.properties
#   check_auth_dir        AUTH_DIR (--auth) holds ca.crt, server.pem and users
#   same_auth_as_running  the running broker's config has --auth exactly when this start has
#   cluster_id            the cluster id, generated once per DIR
#   write_config          server.properties and log4j2.properties (on every start)
#   sasl_config           the SASL_SSL/SCRAM lines write_config adds with --auth
#   format_storage        formats DATA once (meta.properties, bootstrap checkpoint; with
#                         --auth the SCRAM users, passed in a java @argfile, not on the
#                         command line; reformatting when they changed)
#   rotate_log            moves kafka.log to kafka.log.1 past LOG_ROTATE_BYTES
#   broker_ready          0 ready, 1 not yet, 2 the started process exited
#   wait_ready            polls broker_ready until ready or TIMEOUT seconds
#   wait_gone PID SECS    waits until PID is gone; false after SECS

MAIN_CLASS=kafka.Kafka
STORAGE_CLASS=kafka.tools.StorageTool
READY_LINE='Kafka Server started' # KafkaRaftServer, once the broker is unfenced
LOG_ROTATE_BYTES=$((64 * 1024 * 1024))

# Is PID the broker of this DIR (and not some other process that reused the pid)?
is_our_broker() {
    local pid=$1 cmdline
    [ -r "/proc/$pid/cmdline" ] || return 0 # no procfs: trust the pid file
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    case $cmdline in *" $MAIN_CLASS $CONF "*) return 0 ;; *) return 1 ;; esac
}

broker_pid() { # pid of this DIR's running broker
    local pid
    pid=$(read_pidfile "$PIDFILE") && pid_alive "$pid" && is_our_broker "$pid" && printf '%s\n' "$pid"
}

conf_port() { # the client (PLAINTEXT or SASL_SSL; or NAME's) port in DIR/server.properties
    local name=${1:-PLAINTEXT|SASL_SSL}
    [ -r "$CONF" ] || return 1
    sed -En "s#^listeners=.*(${name})://127\.0\.0\.1:([0-9]*).*#\2#p" "$CONF" | head -n 1 | grep .
}

check_auth_dir() { # --auth DIR: what the broker's SASL_SSL listeners need
    [ -z "$AUTH_DIR" ] && return 0
    AUTH_DIR=$(realpath -m "$AUTH_DIR")
    local f
    for f in ca.crt server.pem users; do
        [ -s "$AUTH_DIR/$f" ] || die "--auth $AUTH_DIR: no $f (needs ca.crt, server.pem, users)"
    done
    grep -qE '^[A-Za-z0-9_.-]+ [^ ]+$' "$AUTH_DIR/users" ||
        die "--auth $AUTH_DIR: users must hold lines 'NAME PASSWORD' (the first the broker's own)"
}

same_auth_as_running() { # a running broker was started with --auth iff this start has it
    local has=0
    grep -q '^listeners=SASL_SSL://' "$CONF" 2>/dev/null && has=1
    [ "$has" = "$([ -n "$AUTH_DIR" ] && echo 1 || echo 0)" ]
}

cluster_id() { # generated once per DIR: a Kafka Uuid is 16 random bytes in URL-safe base64
    local id=''
    if [ -s "$CLUSTER_ID_FILE" ]; then
        IFS= read -r id <"$CLUSTER_ID_FILE" || true
    fi
    if [ -z "$id" ]; then
        # not starting with '-', which the tool would take for an option
        until [ -n "$id" ] && [ "${id#-}" = "$id" ]; do
            id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | cut -c1-22)
        done
        printf '%s\n' "$id" >"$CLUSTER_ID_FILE"
    fi
    printf '%s\n' "$id"
}

write_config() {
    # Auto-creation is off unless a test asks for it: clients must not create topics.
    local auto=${STAMPEDE_KAFKA_AUTO_CREATE_TOPICS:-false}
    case $auto in true | false) ;; *) die "STAMPEDE_KAFKA_AUTO_CREATE_TOPICS must be true or false, not '$auto'" ;; esac
    local client=PLAINTEXT # the client listener's name is its protocol: SASL_SSL with --auth
    if [ -n "$AUTH_DIR" ]; then # 0600: the broker's own password goes in
        client=SASL_SSL
        rm -f "$CONF"
        (umask 077 && : >"$CONF")
    fi
    cat >"$CONF" <<EOF
# written by scripts/kafka-broker on every start; edits are lost
# single node, KRaft combined mode
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:${CPORT}
listeners=${client}://127.0.0.1:${PORT},CONTROLLER://127.0.0.1:${CPORT}${NODE_LISTENER:+,NODE://127.0.0.1:${NODE_LISTENER##*:}}
advertised.listeners=${client}://127.0.0.1:${PORT}${NODE_LISTENER:+,NODE://${NODE_LISTENER}}
listener.security.protocol.map=${client}:${client},CONTROLLER:PLAINTEXT${NODE_LISTENER:+,NODE:${client}}
controller.listener.names=CONTROLLER
inter.broker.listener.name=${client}
log.dirs=${DATA}

# one replica of everything, internal topics included
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# fewer internal partitions than the default 50: faster first group join and restart
offsets.topic.num.partitions=1
transaction.state.log.num.partitions=1
auto.create.topics.enable=${auto}
group.initial.rebalance.delay.ms=0

# Restart after kill -9: the new broker process cannot register until the controller has
# expired the dead one's session (default 9 s, retried every heartbeat interval, 2 s).
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=3000

# a small machine: fewer threads, a small log-cleaner buffer (the default is 128 MiB of heap)
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=2
background.threads=4
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
EOF
    [ -z "$AUTH_DIR" ] || sasl_config >>"$CONF"
    cat >"$LOG4J_CONF" <<EOF
# written by scripts/kafka-broker on every start; the broker's stdout goes to kafka.log
status = warn
name = stampede-kafka-broker
appender.out.type = Console
appender.out.name = OUT
appender.out.target = SYSTEM_OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
EOF
}

# --auth: SASL_SSL (SCRAM-SHA-512, TLS from DIR's PEM files) on the client listener, which
# is also the inter-broker one (the broker logs in as the first user of DIR/users), and on
# the NODE listener; only the controller listener stays PLAINTEXT, on loopback.
sasl_config() {
    local broker_user broker_pw
    read -r broker_user broker_pw <"$AUTH_DIR/users"
    cat <<EOF

# --auth ${AUTH_DIR}: SASL_SSL with SCRAM-SHA-512; users made at format time
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="${broker_user}" password="${broker_pw}";
listener.name.node.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PEM
ssl.keystore.location=${AUTH_DIR}/server.pem
ssl.truststore.type=PEM
ssl.truststore.location=${AUTH_DIR}/ca.crt
ssl.client.auth=none
EOF
}

# SCRAM users live in the metadata log, written at format time (--add-scram). DIR/scram.sum
# remembers which users file formatted DATA: a different one (or data formatted without
# --auth) means reformatting, which drops the broker's topics.
# The tool takes the users only as --add-scram arguments (a password, or the salted one,
# which logs in as well), so they go to java in an @argfile (0600 in DIR, removed after):
# the launcher reads the main class and its arguments from it, and ps shows the file's name.
format_storage() { # once per DIR: writes meta.properties and the bootstrap checkpoint
    local sum='' n p
    local -a scram=()
    if [ -n "$AUTH_DIR" ]; then
        sum=$(sha256sum <"$AUTH_DIR/users" | cut -d' ' -f1)
        while read -r n p; do scram+=(--add-scram "SCRAM-SHA-512=[name=$n,password=$p]"); done <"$AUTH_DIR/users"
        if [ -f "$DATA/meta.properties" ] && [ "$(cat "$DIR/scram.sum" 2>/dev/null)" != "$sum" ]; then
            log "the SCRAM users changed, or $DATA was formatted without them: reformatting (its topics are dropped)"
            rm -rf "$DATA"
        fi
    fi
    [ -f "$DATA/meta.properties" ] && return 0
    local id args a rc=0
    id=$(cluster_id)
    log "formatting $DATA (cluster id $id${AUTH_DIR:+; SCRAM-SHA-512 users from $AUTH_DIR/users})"
    args=$(umask 077 && mktemp "$DIR/.format-args.XXXXXX") || die "cannot write the format tool's arguments in $DIR"
    # Quoted for the launcher: "..." keeps spaces, and in it \\ stands for \ and \" for ".
    for a in "$STORAGE_CLASS" format --ignore-formatted -t "$id" -c "$CONF" "${scram[@]}"; do
        a=${a//\\/\\\\}
        printf '"%s"\n' "${a//\"/\\\"}"
    done >"$args"
    local -a opts
    mapfile -t opts < <(common_jvm_opts)
    "$JAVA" "${opts[@]}" -XX:TieredStopAtLevel=1 -Xmx256m \
        -Dlog4j2.configurationFile="$LOG4J_CONF" -cp "$LIBS/*" "@$args" \
        </dev/null >>"$LOG" 2>&1 7>&- || rc=$?
    rm -f "$args"
    if [ "$rc" -ne 0 ]; then
        show_log_tail "$LOG" 20
        die "$STORAGE_CLASS format failed"
    fi
    if [ -n "$sum" ]; then printf '%s\n' "$sum" >"$DIR/scram.sum"; else rm -f "$DIR/scram.sum"; fi
}

rotate_log() {
    local size
    size=$(stat -c %s "$LOG" 2>/dev/null || echo 0)
    [ "$size" -gt "$LOG_ROTATE_BYTES" ] && mv -f "$LOG" "$LOG.1"
    return 0
}

STARTED_PID='' LOG_FROM=0
broker_ready() { # 0 ready, 1 not yet, 2 gave up (the process exited)
    pid_alive "$STARTED_PID" || return 2
    # grep must read to the end: with -q it exits early, tail gets SIGPIPE, pipefail fails.
    tail -c "+$((LOG_FROM + 1))" "$LOG" 2>/dev/null | grep -F "$READY_LINE" >/dev/null || return 1
    port_open "$PORT"
}

wait_ready() {
    local deadline=$((SECONDS + TIMEOUT)) rc
    while :; do
        rc=0
        broker_ready || rc=$?
        case $rc in
            0) return 0 ;;
            2) log "the broker (pid $STARTED_PID) exited while starting"; return 1 ;;
        esac
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "not ready after ${TIMEOUT}s (wanted '$READY_LINE' in the log and 127.0.0.1:$PORT accepting)"
            return 1
        fi
        sleep 0.1
    done
}

wait_gone() { # PID SECS
    local deadline=$((SECONDS + $2))
    while pid_alive "$1"; do
        [ "$SECONDS" -ge "$deadline" ] && return 1
        sleep 0.05
    done
}
