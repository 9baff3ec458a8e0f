# shellcheck shell=bash
# scripts/lib/proc.sh: processes, pid files, bounded waits and progress lines, shared by the
# entry points under scripts/ (source it; it defines functions only). The DIR-based helpers
# (read_pid, start_proc, stop_proc) need DIR (where NAME.pid and NAME.log live); wait_until,
# stop_proc and with_progress need log/die (scripts/lib/common.sh or the caller's own).
#
#   gomod_version GO.MOD MODULE   the version GO.MOD requires MODULE at
#   gomod_hash DIR                12 hex digits of sha256 over the Go module in DIR: go.mod,
#                                 go.sum and every .go file under it (for build markers)
#   now                           the time, seconds with decimals (EPOCHREALTIME)
#   elapsed T0                    seconds since T0 (from now), one decimal
#   pid_alive PID                 PID exists and is no zombie
#   read_pidfile FILE             the number on FILE's first line, if there is one
#   read_pid NAME                 pid of DIR/NAME.pid's process if it runs and is ours
#   port_open PORT                127.0.0.1:PORT accepts a TCP connection (2 s at most)
#   listens_on PID PORT           PID's own socket listens on TCP PORT (ss; not another program's)
#   show_log FILE                 FILE's last 30 lines on stderr, if it has any
#   show_log_tail FILE [N]        FILE's last N (30) lines on stderr, or "(no log at FILE)"
#   wait_until SECS PID LOG WHAT CMD...  polls CMD every 0.1 s; dies if PID dies or time is up
#   stop_proc NAME SECS KILL      SIGTERM (SIGKILL if KILL=1) DIR/NAME.pid's process, bounded
#   start_proc NAME CMD...        CMD in its own session, logging to DIR/NAME.log; sets PID
#   with_progress WHAT CMD...     runs CMD, logging "still WHAT (N s)" every 30 s
#   wait_briefly PID SECS         true once PID has ended, false after SECS

gomod_version() { # GO.MOD MODULE: the version MODULE is required at
    sed -n "s|^[[:space:]]*\(require[[:space:]]\{1,\}\)\{0,1\}$2[[:space:]]\{1,\}\(v[^[:space:]]*\).*|\2|p" "$1" | head -n 1 | grep .
}

# A wrapper module's go.mod and go.sum pin what is built, and its .go files choose what
# goes in (coredns' plugin list): a cached binary is stale once any of them changed. The
# .go files are read in path order; for a module whose .go files sit at its top (as
# hack/cluster's do) that is `cat go.mod go.sum ./*.go`, the digest cluster-addons'
# markers were written with, so the binaries cached before stay valid.
gomod_hash() { # DIR
    (
        cd "$1" || exit 1
        find . -name '*.go' -type f | LC_ALL=C sort | { cat go.mod go.sum && xargs -r -d '\n' cat; }
    ) | sha256sum | cut -c1-12
}

now() { printf '%s\n' "${EPOCHREALTIME/,/.}"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

pid_alive() { # PID: exists and is no zombie
    [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null || return 1
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0 # no procfs: trust kill -0
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}

read_pidfile() { # FILE: first line of a pid file, if the file exists and holds a number
    local line=''
    if [ -r "$1" ]; then IFS= read -r line <"$1" || true; fi
    case $line in '' | *[!0-9]*) return 1 ;; esac
    printf '%s\n' "$line"
}

port_open() { # PORT: does 127.0.0.1:PORT accept a TCP connection?
    # shellcheck disable=SC2016 # $1 is the inner shell's
    timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

# A port picked free is bound later, and another program can take it meanwhile: a probe
# that only talks to the port would take that program for ours. The kernel knows whose it is.
listens_on() { # PID PORT
    ss -ltnpH "sport = :$2" 2>/dev/null | grep -q "pid=$1,"
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

show_log_tail() { # FILE [LINES]: like show_log, and says so when there is no log
    if [ -s "$1" ]; then
        printf -- '--- last lines of %s ---\n' "$1" >&2
        tail -n "${2:-30}" "$1" >&2
        printf -- '---\n' >&2
    else
        log "(no log at $1)"
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
            # A caller that can pick another port is told that the one it picked was taken.
            if [ -n "${PORT_CLASH_MARKER:-}" ] &&
                [[ $(tail -n 30 "$logf") == *'address already in use'* ]]; then
                : >"$PORT_CLASH_MARKER"
            fi
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
