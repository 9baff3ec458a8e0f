#!/usr/bin/env bash
# The platform on the local node, measured: `scripts/cluster up` from a stopped node (the
# binaries and images cached) and again while it runs; the image sizes; the example
# campaign from `kubectl apply` to Ready and to Open (window already open, so Open means
# the gated preflight passed in a real k6 pod); N campaigns (20) applied at once until
# all are Ready; the memory of the node's components. Prints one line per figure.
#   bench/node.sh                 # needs scripts/stack up; brings the node up itself
#   CAMPAIGNS=10 bench/node.sh
set -euo pipefail
cd "$(dirname "$0")/.."
: "${STAMPEDE_HOME:=$HOME/.cache/stampede}"
export STAMPEDE_HOME
N=${CAMPAIGNS:-20}
NS=bench-node-$(date -u +%H%M%S)
say() { printf '%-44s %s\n' "$1" "$2"; }
ms_since() { awk -v a="$1" -v b="${EPOCHREALTIME/,/.}" 'BEGIN { printf "%.1f s", b - a }'; }

scripts/stack up >/dev/null
scripts/cluster down >/dev/null 2>&1
t=${EPOCHREALTIME/,/.}
scripts/cluster up >/dev/null 2>&1
say "cluster up (stopped node, binaries cached)" "$(ms_since "$t")"
t=${EPOCHREALTIME/,/.}
scripts/cluster up >/dev/null 2>&1
say "cluster up (running node)" "$(ms_since "$t")"
eval "$(scripts/cluster env)"
scripts/helm-install-local >/dev/null
scripts/images list | awk -F'\t' '{ printf "%-44s %s archive, %s unpacked\n", "image " $1, $3, $4 }'

kubectl create namespace "$NS" >/dev/null
trap 'kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1 || true' EXIT
ready() { [ "$(kubectl -n "$NS" get cc "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]; }
phase() { kubectl -n "$NS" get cc "$1" -o jsonpath='{.status.phase}'; }

# The example, its window open already: Open once the gated preflight passed.
name=example-$(date -u +%H%M%S)
sed -e "s/^  name: spring-sale$/  name: $name/" -e "s/^  namespace: default$/  namespace: $NS/" \
    -e "s/opensAt: .*/opensAt: \"$(date -u -d '-1 minute' +%FT%TZ)\"/" \
    -e "s/closesAt: .*/closesAt: \"$(date -u -d '+1 hour' +%FT%TZ)\"/" \
    -e "s/deletionPolicy: Retain/deletionPolicy: Delete/" examples/campaign.yaml >"/tmp/$name.yaml"
t=${EPOCHREALTIME/,/.}
kubectl apply -f "/tmp/$name.yaml" >/dev/null
until ready "$name"; do sleep 0.2; done
say "example: apply -> Ready (issuer, writer pods Ready)" "$(ms_since "$t")"
until [ "$(phase "$name")" = Open ]; do sleep 0.2; done
say "example: apply -> Open (gate passed)" "$(ms_since "$t")"
kubectl -n "$NS" delete cc "$name" --wait=false >/dev/null

# N small campaigns at once (requests sized so N fit the node).
t=${EPOCHREALTIME/,/.}
for i in $(seq "$N"); do
    cat <<EOF
---
apiVersion: stampede.dev/v1alpha1
kind: CouponCampaign
metadata: {name: bulk-$i-$(date -u +%H%M%S), namespace: $NS}
spec:
  stock: 100
  issuer: {minReplicas: 1, maxReplicas: 1, resources: {requests: {cpu: 10m, memory: 32Mi}}}
  writer: {resources: {requests: {cpu: 10m, memory: 32Mi}}}
  deletionPolicy: Delete
EOF
done | kubectl apply -f - >/dev/null
until [ "$(kubectl -n "$NS" get cc -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True)" -ge "$N" ]; do
    sleep 0.5
done
say "$N campaigns applied at once -> all Ready" "$(ms_since "$t")"

# Memory of the node's components (RSS) with those campaigns running.
for _ in $(seq 120); do # metrics-server needs a scrape or two of the new pods
    [ "$(kubectl top pods -n "$NS" --no-headers 2>/dev/null | wc -l)" -ge $((2 * N)) ] && break
    sleep 1
done
for p in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy containerd; do
    kb=$(ps -C "$p" -o rss= | awk '{ s += $1 } END { print s + 0 }')
    say "memory $p" "$((kb / 1024)) MiB"
done
kb=$(ps -C containerd-shim-runc-v2 -o rss= | awk '{ s += $1; n++ } END { printf "%d %d", s, n }')
say "memory containerd shims" "$(( ${kb% *} / 1024 )) MiB (${kb#* } shims)"
kubectl top pods -n kube-system --no-headers | awk '{ printf "%-44s %s (CPU %s)\n", "memory pod " $1, $3, $2 }'
kubectl top pods -n stampede-system --no-headers | awk '{ printf "%-44s %s (CPU %s)\n", "memory pod " $1, $3, $2 }'
kubectl top pods -n "$NS" --no-headers | awk '/issuer/ { i += $3; ni++ } /writer/ { w += $3; nw++ }
    END { printf "%-44s %d Mi over %d issuers, %d Mi over %d writers\n", "memory campaign pods", i, ni, w, nw }'
