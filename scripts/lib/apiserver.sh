# shellcheck shell=bash
# scripts/lib/apiserver.sh: what a control plane in DIR needs besides its processes, for
# scripts/control-plane (sourced): loopback ports, certificates, the admin token, the
# kubeconfig and health probes. Needs DIR, API_HOST, SERVICE_IP, die (lib/common.sh) and
# make_ca/sign_cert (lib/pki.sh).
#
#   pick_port VAR         VAR= a free loopback TCP port, not in USED_PORTS (appended to it)
#   make_pki              DIR/pki: CA, apiserver and admin certs, service-account keys; token.csv
#   admin_token           the admin's static token
#   write_kubeconfig PORT DIR/kubeconfig for https://API_HOST:PORT as the admin
#   readyz PORT           /readyz answers 200 with the admin token
#   etcd_health PORT      etcd's /health says true
#   etcd_ready PID PORT   etcd_health, and PORT's listener is PID (not another test's etcd)
#   healthz_ready PID PORT  a component's /healthz (controller-manager, scheduler) answers on
#                         PORT, and PORT's listener is PID (not whatever took the port)

# Ports come from 20000-31999, below the kernel's ephemeral range (32768-60999 here): a
# port the kernel handed out for port 0 was free when picked but could be taken by any
# outgoing connection's source port before etcd bound it (CI saw etcd fail so, with
# "address already in use", while the other suite's tests opened connections).
pick_port() { # VAR: sets VAR to a free loopback TCP port not in $USED_PORTS, and adds it there
    local p
    if command -v python3 >/dev/null 2>&1; then
        p=$(python3 - $USED_PORTS <<'PY'
import random, socket, sys
used = set(sys.argv[1:])
for _ in range(500):
    p = random.randrange(20000, 32000)
    if str(p) in used:
        continue
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        s.close()
    print(p)
    break
PY
)
        if [ -n "$p" ]; then USED_PORTS="$USED_PORTS $p"; printf -v "$1" '%s' "$p"; return 0; fi
    fi
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 12000))
        case " $USED_PORTS " in *" $p "*) continue ;; esac
        # shellcheck disable=SC2016 # $1 is the inner shell's
        if ! timeout 1 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$p" 2>/dev/null; then
            USED_PORTS="$USED_PORTS $p"; printf -v "$1" '%s' "$p"; return 0
        fi
    done
    die "found no free loopback port"
}

# --- certificates, token, kubeconfig ---------------------------------------------------

make_pki() {
    local pki=$DIR/pki
    mkdir -p "$pki"
    chmod 700 "$pki"
    if [ ! -s "$pki/ca.crt" ] || [ ! -s "$pki/ca.key" ]; then
        make_ca ca stampede-control-plane-ca
        find "$pki" -name "*.crt" ! -name ca.crt -delete # signed by an older CA
    fi
    if [ ! -s "$pki/apiserver.crt" ]; then
        sign_cert apiserver "/CN=kube-apiserver" \
            "subjectAltName=IP:$API_HOST,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:$SERVICE_IP" \
            serverAuth
    fi
    if [ ! -s "$pki/admin.crt" ]; then
        sign_cert admin "/O=system:masters/CN=admin" "" clientAuth
    fi
    if [ ! -s "$pki/sa.key" ]; then
        openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null || die "openssl genrsa failed"
        openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null || die "openssl rsa failed"
    fi
    if [ ! -s "$DIR/token.csv" ]; then
        printf '%s,admin,admin,"system:masters"\n' "$(openssl rand -hex 32)" >"$DIR/token.csv"
        chmod 600 "$DIR/token.csv"
    fi
}

admin_token() { cut -d, -f1 "$DIR/token.csv"; }

write_kubeconfig() { # PORT
    local ca
    ca=$(base64 -w0 <"$DIR/pki/ca.crt")
    cat >"$DIR/kubeconfig.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: stampede
  cluster:
    server: https://$API_HOST:$1
    certificate-authority-data: $ca
users:
- name: admin
  user:
    token: $(admin_token)
contexts:
- name: stampede
  context:
    cluster: stampede
    user: admin
    namespace: default
current-context: stampede
EOF
    chmod 600 "$DIR/kubeconfig.tmp"
    mv -f "$DIR/kubeconfig.tmp" "$DIR/kubeconfig"
}

readyz() { # PORT: does /readyz answer 200 with the admin token?
    curl -sf -o /dev/null --max-time 2 --cacert "$DIR/pki/ca.crt" \
        -H "Authorization: Bearer $(admin_token)" "https://$API_HOST:$1/readyz"
}

etcd_health() { # PORT
    curl -sf --max-time 2 "http://127.0.0.1:$1/health" 2>/dev/null | grep -q '"health":"true"'
}

# A free port is picked before etcd binds it, so a control plane starting beside another
# can pick the port the other's etcd took; etcd's /health has no credentials to tell them
# apart (the apiserver's /readyz has: our CA and token), so ask the kernel whose it is.
etcd_ready() { # PID PORT
    etcd_health "$2" && listens_on "$1" "$2"
}

# The same for kube-controller-manager and kube-scheduler: any HTTPS server answers an
# unverified /healthz (-k: they serve self-signed certificates), so a component that died on
# "address already in use" would pass for ready while the port's taker answered for it.
healthz_ready() { # PID PORT
    listens_on "$1" "$2" && curl -sfk -o /dev/null --max-time 2 "https://127.0.0.1:$2/healthz"
}
