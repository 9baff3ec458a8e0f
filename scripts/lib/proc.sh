# scripts/lib/proc.sh: process, wait, build and certificate helpers shared by
# scripts/control-plane, scripts/cluster and scripts/cluster-addons (source it; it defines
# functions only). Callers set DIR (where NAME.pid, NAME.log and pki/ live) and define
# log/die.

gomod_version() { # GO.MOD MODULE: the version MODULE is required at
    sed -n "s|^[[:space:]]*\(require[[:space:]]\{1,\}\)\{0,1\}$2[[:space:]]\{1,\}\(v[^[:space:]]*\).*|\2|p" "$1" | head -n 1 | grep .
}

now() { printf '%s\n' "${EPOCHREALTIME/,/.}"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

pid_alive() { # PID: exists and is no zombie
    [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null || return 1
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}

read_pid() { # NAME: pid of DIR's NAME process if it runs (and is ours)
    local line='' cmd
    if [ -r "$DIR/$1.pid" ]; then IFS= read -r line <"$DIR/$1.pid" || true; fi
    case $line in '' | *[!0-9]*) return 1 ;; esac
    pid_alive "$line" || return 1
    if [ -r "/proc/$line/cmdline" ]; then
        cmd=$(tr '\0' ' ' <"/proc/$line/cmdline" 2>/dev/null) || return 1
        case $cmd in *"$DIR"*) ;; *) return 1 ;; esac # pid reused by someone else
    fi
    printf '%s\n' "$line"
}

show_log() { # FILE
    if [ -s "$1" ]; then
        printf -- '--- last lines of %s ---\n' "$1" >&2
        tail -n 30 "$1" >&2
        printf -- '---\n' >&2
    fi
}

# wait_until TIMEOUT PID LOG WHAT CMD...: polls CMD (every 0.1 s) until it succeeds; fails
# when PID dies or TIMEOUT seconds pass. PID may be empty (nothing to watch).
wait_until() {
    local timeout=$1 pid=$2 logf=$3 what=$4 deadline
    shift 4
    deadline=$(awk -v a="$(now)" -v t="$timeout" 'BEGIN { printf "%d", a + t }')
    while :; do
        "$@" && return 0
        if [ -n "$pid" ] && ! pid_alive "$pid"; then
            show_log "$logf"
            die "$what exited before it was ready"
        fi
        [ "${EPOCHSECONDS}" -lt "$deadline" ] || { show_log "$logf"; die "$what not ready after ${timeout} s"; }
        sleep 0.1
    done
}

stop_proc() { # NAME TIMEOUT KILL
    local name=$1 timeout=$2 kill=$3 pid deadline
    pid=$(read_pid "$name") || { rm -f "$DIR/$name.pid"; return 0; }
    if [ "$kill" = 1 ]; then kill -KILL "$pid" 2>/dev/null || true; else kill -TERM "$pid" 2>/dev/null || true; fi
    deadline=$((EPOCHSECONDS + timeout))
    while pid_alive "$pid"; do
        if [ "$EPOCHSECONDS" -ge "$deadline" ]; then
            log "$name (pid $pid) still runs after ${timeout} s; SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            deadline=$((EPOCHSECONDS + 10))
        fi
        sleep 0.05
    done
    rm -f "$DIR/$name.pid"
    log "stopped $name (pid $pid)"
}

# start_proc NAME CMD...: runs CMD in its own session, logging to DIR/NAME.log; sets PID.
start_proc() {
    local name=$1
    shift
    setsid "$@" </dev/null >>"$DIR/$name.log" 2>&1 &
    PID=$!
    echo "$PID" >"$DIR/$name.pid"
}

# sign_cert NAME SUBJECT SAN-EXT EKU: DIR/pki/NAME.{crt,key} signed by DIR/pki/ca (or by
# the CA named in $SIGN_CA, e.g. front-proxy-ca).
sign_cert() {
    local pki=$DIR/pki name=$1 subj=$2 san=$3 eku=$4 ext ca=${SIGN_CA:-ca}
    ext=$(mktemp)
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=$eku"
        [ -z "$san" ] || echo "$san"
    } >"$ext"
    if ! { openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$subj" \
        -keyout "$pki/$name.key" -out "$pki/$name.csr" 2>/dev/null &&
        openssl x509 -req -in "$pki/$name.csr" -CA "$pki/$ca.crt" -CAkey "$pki/$ca.key" \
            -CAcreateserial -days 3650 -extfile "$ext" -out "$pki/$name.crt" 2>/dev/null; }; then
        rm -f "$ext"
        die "openssl could not sign the $name certificate"
    fi
    rm -f "$ext" "$pki/$name.csr"
}

make_ca() { # NAME CN: DIR/pki/NAME.{crt,key}, once
    local pki=$DIR/pki
    [ -s "$pki/$1.crt" ] && [ -s "$pki/$1.key" ] && return 0
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
        -subj "/CN=$2" -keyout "$pki/$1.key" -out "$pki/$1.crt" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null ||
        die "openssl could not make the $1 CA"
}

# with_progress WHAT CMD...: runs CMD, printing "still WHAT (N s)" every 30 s meanwhile, so
# a long build or import never leaves a silent terminal; returns CMD's status.
with_progress() {
    local what=$1 t0=$EPOCHSECONDS pid rc=0
    shift
    "$@" &
    pid=$!
    while ! wait_briefly "$pid" 30; do
        log "still $what ($((EPOCHSECONDS - t0)) s)"
    done
    wait "$pid" || rc=$?
    return "$rc"
}

wait_briefly() { # PID SECS: true once PID has ended, false after SECS
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.1
    done
    return 1
}
