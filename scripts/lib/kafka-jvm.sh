# shellcheck shell=bash
# scripts/lib/kafka-jvm.sh: Java, the Kafka jars, JVM options, the class-data-sharing archive
# and the Kafka command-line tools, for scripts/kafka-broker (sourced). Needs SCRIPT_DIR,
# log/die (lib/common.sh); the CDS helpers need CDS_PENDING, LOG and LOG_FROM (the broker's).
#
#   size_mib SIZE         512m, 1g, 262144k, 536870912 -> MiB
#   find_java             sets JAVA (a JRE >= 17) and JAVA_RELEASE, or dies
#   find_libs             sets LIBS, the jar directory (scripts/deps kafka-path)
#   common_jvm_opts       JVM options shared by the broker and the tools, one a line
#   cds_archive           path of the AppCDS archive for this JDK and jar set
#   cds_setup             sets CDS_OPTS (use the archive, or record it; may hold fd 6)
#   cds_finish CLEAN      after the broker exited: keeps a recorded archive that loads
#   cds_check             after a start: removes an archive the JVM did not accept
#   cmd_tool CLASS|ALIAS ARGS...   execs a Kafka CLI class with the jars (log to stderr)

size_mib() { # 512m, 1g, 262144k, 536870912 -> MiB
    local v=$1 n
    n=${v%[kKmMgG]}
    case $n in '' | *[!0-9]*) return 1 ;; esac
    case $v in
        *[kK]) printf '%s\n' $((n / 1024)) ;;
        *[mM]) printf '%s\n' "$n" ;;
        *[gG]) printf '%s\n' $((n * 1024)) ;;
        *) printf '%s\n' $((n / 1024 / 1024)) ;;
    esac
}

find_java() {
    if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then
        JAVA=$JAVA_HOME/bin/java
    elif command -v java >/dev/null 2>&1; then
        JAVA=$(command -v java)
    else
        die "no java (a JRE >= 17) on PATH or in JAVA_HOME; run scripts/deps kafka"
    fi
    # The JDK's `release` file says its version without starting a JVM.
    local real v=''
    real=$(readlink -f "$JAVA")
    JAVA_RELEASE=${real%/bin/java}/release
    if [ -r "$JAVA_RELEASE" ]; then
        v=$(sed -n 's/^JAVA_VERSION="\([0-9]*\).*/\1/p' "$JAVA_RELEASE")
    else
        JAVA_RELEASE=''
    fi
    [ "$v" = 1 ] && v=8
    if [ -z "$v" ]; then
        v=$("$JAVA" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = //p')
        v=${v#1.}
    fi
    case $v in '' | *[!0-9]*) die "cannot tell the version of $JAVA" ;; esac
    [ "$v" -ge 17 ] || die "$JAVA is Java $v; the Kafka broker needs Java 17 or newer"
}

LIBS=
find_libs() {
    LIBS=$("$SCRIPT_DIR/deps" kafka-path) || die "could not get the Kafka jars (scripts/deps kafka)"
    [ -d "$LIBS" ] || die "scripts/deps kafka-path printed '$LIBS', which is no directory"
}

# JVM options shared by the broker and the tools: start fast on a small machine.
# - SerialGC: no GC worker threads to set up, and a 512 MiB heap needs nothing more.
# - Xshare:auto (the default, stated): use CDS archives (the JDK's, and ours if given)
#   when they fit, run without them when they do not.
# - TieredStopAtLevel=1 (tools; the broker unless --jit full): C1 alone gets a JVM to
#   work faster; C2 would only pay off in long runs under load (benchmarks).
common_jvm_opts() {
    printf '%s\n' -XX:+UseSerialGC -Xshare:auto -Djava.awt.headless=true \
        -Dlog4j2.disable.jmx=true -XX:+ExitOnOutOfMemoryError
}

# --- class-data sharing (AppCDS) ------------------------------------------------------
# One archive per Kafka jar set and JDK build, made by -XX:ArchiveClassesAtExit when a broker
# exits. Only one broker at a time records one: it holds an flock on the archive's lock file
# (its JVM inherits the descriptor), writes to a temporary name, and `stop` moves that into
# place once the JVM is gone and a test load (-Xshare:on) accepts it. A JVM that cannot use
# an archive (changed JDK or jars) runs without it, so a stale archive costs only speed;
# `start` removes one that the JVM reported as unusable.

CDS_OPTS=()
cds_archive() { # path of the archive for this JDK and jar set
    local key
    key=$({ cat "${JAVA_RELEASE:-/dev/null}" "$(dirname "$LIBS")/libs.complete" 2>/dev/null
        printf '%s\n' "$(readlink -f "$JAVA")"; } | md5sum | cut -c1-12)
    printf '%s/cds/broker-%s.jsa\n' "$(dirname "$LIBS")" "$key"
}

cds_setup() { # sets CDS_OPTS; may leave fd 6 open (the recording lock) for the broker
    CDS_OPTS=()
    rm -f "$CDS_PENDING"
    [ "${STAMPEDE_KAFKA_CDS:-1}" = 1 ] || return 0
    local archive
    archive=$(cds_archive)
    if [ -s "$archive" ]; then
        CDS_OPTS=(-XX:SharedArchiveFile="$archive")
        return 0
    fi
    mkdir -p "$(dirname "$archive")"
    exec 6>"$archive.lock"
    if ! flock -n 6; then # another broker is recording it
        exec 6>&-
        return 0
    fi
    rm -f "$archive".tmp.* # leftovers of brokers that did not stop cleanly
    local tmp=$archive.tmp.$$
    printf '%s\n%s\n%s\n' "$tmp" "$JAVA" "$LIBS" >"$CDS_PENDING"
    CDS_OPTS=(-XX:ArchiveClassesAtExit="$tmp" '-Xlog:cds*=error')
}

cds_finish() { # after the broker exited: CLEAN=1 if it stopped cleanly
    local clean=$1 tmp java libs
    [ -f "$CDS_PENDING" ] || return 0
    { IFS= read -r tmp && IFS= read -r java && IFS= read -r libs; } <"$CDS_PENDING" || true
    rm -f "$CDS_PENDING"
    case $tmp in *.jsa.tmp.*) ;; *) return 0 ;; esac
    if [ "$clean" = 1 ] && [ -s "$tmp" ] &&
        "$java" -Xshare:on -XX:SharedArchiveFile="$tmp" -cp "$libs/*" -version >/dev/null 2>&1; then
        # (a concurrent start may have swept it away as a leftover: then next time)
        if mv -f "$tmp" "${tmp%.tmp.*}" 2>/dev/null; then
            log "saved a class-data archive for faster starts: ${tmp%.tmp.*}"
        fi
    else
        rm -f "$tmp"
    fi
}

cds_check() { # after a start with an archive: drop it if the JVM could not use it
    [ "${#CDS_OPTS[@]}" -gt 0 ] || return 0
    case ${CDS_OPTS[0]} in -XX:SharedArchiveFile=*) ;; *) return 0 ;; esac
    if tail -c "+$((LOG_FROM + 1))" "$LOG" 2>/dev/null | grep '^\[.*\]\[\(warning\|error\)\]\[cds' >/dev/null; then
        log "the JVM did not accept ${CDS_OPTS[0]#*=}; removing it (the next clean stop records a new one)"
        rm -f "${CDS_OPTS[0]#*=}"
    fi
}

# --- tools ---------------------------------------------------------------------------

cmd_tool() {
    [ $# -ge 1 ] || die "usage: scripts/kafka-broker tool CLASS|ALIAS [ARGS...]"
    local class=$1
    shift
    case $class in
        topics) class=org.apache.kafka.tools.TopicCommand ;;
        console-producer) class=org.apache.kafka.tools.ConsoleProducer ;;
        console-consumer) class=org.apache.kafka.tools.consumer.ConsoleConsumer ;;
        get-offsets) class=org.apache.kafka.tools.GetOffsetShell ;;
        consumer-groups) class=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
        storage) class=$STORAGE_CLASS ;;
    esac
    find_java
    find_libs
    local conf
    conf=$(dirname "$LIBS")/tools-log4j2.properties
    if [ ! -s "$conf" ]; then
        cat >"$conf.$$" <<'EOF'
# written by scripts/kafka-broker: Kafka command-line tools log to stderr at WARN
status = warn
name = stampede-kafka-tools
appender.err.type = Console
appender.err.name = ERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = ERR
EOF
        mv -f "$conf.$$" "$conf"
    fi
    local -a jvm
    mapfile -t jvm < <(common_jvm_opts)
    exec "$JAVA" "${jvm[@]}" -XX:TieredStopAtLevel=1 -Xmx256m \
        -Dlog4j2.configurationFile="$conf" -cp "$LIBS/*" "$class" "$@"
}
