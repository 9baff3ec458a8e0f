# shellcheck shell=bash
# scripts/lib/common.sh: what every entry point under scripts/ needs first (source it before
# the other lib files). Sets STAMPEDE_HOME (absolute; not exported: callers that pass it on
# export it themselves). Callers set LOG_PREFIX (e.g. stack) before logging.
#
#   log MSG...                  "PREFIX: MSG" on stderr
#   die MSG...                  "PREFIX: error: MSG" on stderr, exit 1
#   have CMD                    CMD is on PATH
#   take_lock FD FILE SECS WHAT holds an flock on FILE through descriptor FD (until exit or
#                               `exec FD>&-`); dies "another WHAT holds FILE" after SECS
#   cargo_bin PROFILE NAME      where cargo puts binary NAME built in PROFILE: under
#                               $CARGO_TARGET_DIR (else STAMPEDE_HOME/target), dev in debug/

STAMPEDE_HOME=${STAMPEDE_HOME:-${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}/.cache/stampede}
case $STAMPEDE_HOME in /*) ;; *) STAMPEDE_HOME=$PWD/$STAMPEDE_HOME ;; esac

log() { printf '%s: %s\n' "$LOG_PREFIX" "$*" >&2; }
die() { printf '%s: error: %s\n' "$LOG_PREFIX" "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

take_lock() { # FD FILE SECS WHAT
    case $1 in '' | *[!0-9]*) die "take_lock: bad descriptor '$1'" ;; esac
    eval "exec $1>\"\$2\""
    flock -w "$3" "$1" || die "another $4 holds $2"
}

cargo_bin() { # PROFILE NAME
    local dir=$1
    [ "$dir" != dev ] || dir=debug
    printf '%s\n' "${CARGO_TARGET_DIR:-$STAMPEDE_HOME/target}/$dir/$2"
}
