# shellcheck shell=bash
# scripts/lib/k8s-build.sh: builds and caches etcd and the Kubernetes binaries from the
# wrapper modules under hack/control-plane/, for scripts/control-plane (sourced). Needs
# HACK_DIR, SRC_DIR, BIN_DIR, MARKER, K8S_VERSION, K8S_MINOR, STAGING_VERSION, ETCD_VERSION,
# usage, log/die (lib/common.sh) and now/elapsed/with_progress/gomod_hash (lib/proc.sh).
#
#   marker_line NAME          the line BIN_DIR/.versions holds for binary NAME when current:
#                             the version built, Go's, and gomod_hash of the wrapper module
#   is_built NAME             BIN_DIR/NAME exists and its marker line matches
#   prepare_module etcd|kube  copies the wrapper module to SRC_DIR, applies version overrides
#   build_one NAME MODULE PACKAGE [LDFLAGS...]   go build into BIN_DIR, updates the marker
#   cmd_build [--with-kcm] [--with-node] [--force]   `scripts/control-plane build`; one at a
#                             time (an flock on BIN_DIR/.build.lock, released before returning)
#   ensure_built [--with-kcm|--with-node]        builds only what is missing or stale

marker_line() { # NAME: the marker line for binary NAME
    # The wrapper module (its go.mod, go.sum and main packages) is part of what was built,
    # as much as the versions it pins.
    local module=kube pinned=k8s.io/kubernetes@$K8S_VERSION
    [ "$1" != etcd ] || { module=etcd pinned=go.etcd.io/etcd/server/v3@$ETCD_VERSION; }
    printf '%s %s %s wrapper-%s\n' "$1" "$pinned" "$(go env GOVERSION)" "$(gomod_hash "$HACK_DIR/$module")"
}

is_built() { # NAME
    [ -x "$BIN_DIR/$1" ] && [ -r "$MARKER" ] && grep -qxF "$(marker_line "$1")" "$MARKER"
}

prepare_module() { # etcd|kube: copy the wrapper module to SRC_DIR and apply the overrides
    local name=$1 dst=$SRC_DIR/$1 m
    rm -rf "$dst.tmp"
    mkdir -p "$SRC_DIR"
    cp -R "$HACK_DIR/$name" "$dst.tmp"
    rm -rf "$dst"
    mv "$dst.tmp" "$dst"
    if [ "$name" = etcd ] && [ -n "${STAMPEDE_ETCD_VERSION:-}" ]; then
        (cd "$dst" && go mod edit -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION")
    fi
    if [ "$name" = kube ] && [ -n "${STAMPEDE_K8S_VERSION:-}" ]; then
        (
            cd "$dst" || exit 1
            go mod edit -require="k8s.io/kubernetes@$K8S_VERSION"
            sed -n 's|^[[:space:]]*\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>.*|\1|p' go.mod |
                while IFS= read -r m; do go mod edit -replace="$m=$m@$STAGING_VERSION"; done
        )
    fi
    if [ -n "${STAMPEDE_ETCD_VERSION:-}${STAMPEDE_K8S_VERSION:-}" ]; then
        (cd "$dst" && go mod tidy) || die "go mod tidy failed in $dst"
    fi
}

build_one() { # NAME MODULE PACKAGE [LDFLAGS...]
    local name=$1 module=$2 pkg=$3 t
    shift 3
    t=$(now)
    log "building $name ($(marker_line "$name" | cut -d' ' -f2)) ..."
    mkdir -p "$BIN_DIR"
    (cd "$SRC_DIR/$module" && with_progress "building $name" go build -trimpath -ldflags "-s -w $*" -o "$BIN_DIR/.$name.tmp" "$pkg") ||
        die "go build of $name failed (module $SRC_DIR/$module)"
    mv -f "$BIN_DIR/.$name.tmp" "$BIN_DIR/$name" # a new inode: running copies keep theirs
    { grep -v "^$name " "$MARKER" 2>/dev/null || true; marker_line "$name"; } >"$MARKER.tmp"
    mv -f "$MARKER.tmp" "$MARKER"
    log "built $name in $(elapsed "$t") s ($(du -h "$BIN_DIR/$name" | cut -f1))"
}

cmd_build() {
    local with_kcm=0 with_node=0 force=0 names n kube_prepared=0
    while [ $# -gt 0 ]; do
        case $1 in
            --with-kcm) with_kcm=1; shift ;;
            --with-node) with_kcm=1; with_node=1; shift ;;
            --force) force=1; shift ;;
            -h | --help) usage; exit 0 ;;
            *) die "build: unknown option $1" ;;
        esac
    done
    command -v go >/dev/null || die "no go on PATH"
    # Two tests starting control planes on a fresh machine would each build, and the second
    # would remove the module source under the first: the second waits, then finds the
    # binaries cached. Descriptor 6 is closed again before anything is started, so no etcd
    # or kube-apiserver inherits the lock.
    mkdir -p "$BIN_DIR"
    exec 6>"$BIN_DIR/.build.lock"
    if ! flock -n 6; then
        log "another build of the control plane is running; waiting for it (up to 1 h) ..."
        flock -w 3600 6 || die "another build still holds $BIN_DIR/.build.lock after 1 h"
    fi
    names="etcd kube-apiserver"
    [ "$with_kcm" = 1 ] && names="$names kube-controller-manager"
    [ "$with_node" = 1 ] && names="$names kube-scheduler kube-proxy kubelet kubectl"
    local v=k8s.io/component-base/version kube_ld
    kube_ld="-X $v.gitVersion=$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$K8S_MINOR"
    kube_ld+=" -X $v.gitTreeState=clean -X $v.buildDate=1970-01-01T00:00:00Z"
    for n in $names; do
        if [ "$force" = 0 ] && is_built "$n"; then
            log "$n is cached: $BIN_DIR/$n"
            continue
        fi
        case $n in
            etcd) prepare_module etcd; build_one etcd etcd . ;;
            *)
                [ "$kube_prepared" = 1 ] || { prepare_module kube; kube_prepared=1; }
                build_one "$n" kube "./$n" "$kube_ld"
                ;;
        esac
    done
    exec 6>&-
}

ensure_built() { # [--with-kcm|--with-node]
    local n need=0
    for n in etcd kube-apiserver; do is_built "$n" || need=1; done
    [ "${1:-}" = --with-kcm ] && { is_built kube-controller-manager || need=1; }
    if [ "${1:-}" = --with-node ]; then
        for n in kube-controller-manager kube-scheduler kube-proxy kubelet kubectl; do is_built "$n" || need=1; done
    fi
    [ "$need" = 0 ] || cmd_build "$@"
}
