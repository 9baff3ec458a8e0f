# shellcheck shell=bash
# scripts/lib/node-pki.sh: the extra certificates and kubeconfigs a control plane needs once
# a real node joins it (scripts/control-plane start --node ADDR, used by scripts/cluster).
# Sourced by scripts/control-plane; needs DIR, NODE_ADDR, NODE_NAME, SERVICE_IP, API_URL
# and the helpers of scripts/lib/proc.sh, scripts/lib/pki.sh and (healthz_ready)
# scripts/lib/apiserver.sh.
#
#   make_node_pki               front-proxy CA, per-component client certs, the kubelet's
#                               serving cert and DIR/kubeconfigs/*.kubeconfig, each once
#   write_cert_kubeconfig FILE NAME   a kubeconfig that authenticates with pki/NAME.crt
#   node_apiserver_flags        kube-apiserver's flags for a real node, one a line
#   start_scheduler PORT SECS   kube-scheduler, until its /healthz answers on its own socket

# Who each component is to the API server (the names RBAC's bootstrap roles expect).
NODE_IDENTITIES="kube-controller-manager:/CN=system:kube-controller-manager
kube-scheduler:/CN=system:kube-scheduler
kube-proxy:/CN=system:kube-proxy
kubelet:/O=system:nodes/CN=system:node:NODE
kubelet-client:/O=system:masters/CN=kube-apiserver-kubelet-client"

make_node_pki() {
    local pki=$DIR/pki line name subj
    make_ca front-proxy-ca stampede-front-proxy-ca
    [ -s "$pki/front-proxy-client.crt" ] || SIGN_CA=front-proxy-ca sign_cert front-proxy-client "/CN=front-proxy-client" "" clientAuth
    while IFS= read -r line; do
        name=${line%%:*} subj=${line#*:}
        [ -s "$pki/$name.crt" ] || sign_cert "$name" "${subj/NODE/$NODE_NAME}" "" clientAuth
    done <<<"$NODE_IDENTITIES"
    # The kubelet's serving certificate: the API server (logs, exec) and metrics-server
    # verify it against the cluster CA.
    [ -s "$pki/kubelet-serving.crt" ] ||
        sign_cert kubelet-serving "/O=system:nodes/CN=system:node:$NODE_NAME" \
            "subjectAltName=IP:$NODE_ADDR,DNS:$NODE_NAME" serverAuth
    mkdir -p "$DIR/kubeconfigs"
    for name in kube-controller-manager kube-scheduler kube-proxy kubelet; do
        write_cert_kubeconfig "$DIR/kubeconfigs/$name.kubeconfig" "$name"
    done
}

write_cert_kubeconfig() { # FILE NAME: a kubeconfig that authenticates with pki/NAME.crt
    cat >"$1.tmp" <<EOF2
apiVersion: v1
kind: Config
clusters:
- name: stampede
  cluster:
    server: $API_URL
    certificate-authority: $DIR/pki/ca.crt
users:
- name: $2
  user:
    client-certificate: $DIR/pki/$2.crt
    client-key: $DIR/pki/$2.key
contexts:
- name: stampede
  context: {cluster: stampede, user: $2}
current-context: stampede
EOF2
    chmod 600 "$1.tmp"
    mv -f "$1.tmp" "$1"
}

# node_apiserver_flags: kube-apiserver flags for a control plane with a real node.
node_apiserver_flags() {
    local p=$DIR/pki
    printf '%s\n' \
        --bind-address="$NODE_ADDR" --advertise-address="$NODE_ADDR" \
        --authorization-mode=Node,RBAC \
        --enable-admission-plugins=NodeRestriction,ServiceAccount \
        --service-account-issuer=https://kubernetes.default.svc.cluster.local \
        --kubelet-client-certificate="$p/kubelet-client.crt" --kubelet-client-key="$p/kubelet-client.key" \
        --kubelet-certificate-authority="$p/ca.crt" --kubelet-preferred-address-types=InternalIP \
        --requestheader-client-ca-file="$p/front-proxy-ca.crt" \
        --requestheader-allowed-names=front-proxy-client \
        --requestheader-extra-headers-prefix=X-Remote-Extra- \
        --requestheader-group-headers=X-Remote-Group --requestheader-username-headers=X-Remote-User \
        --proxy-client-cert-file="$p/front-proxy-client.crt" --proxy-client-key-file="$p/front-proxy-client.key" \
        --enable-aggregator-routing=true
}

# start_scheduler PORT TIMEOUT: kube-scheduler on loopback with its own identity.
start_scheduler() {
    local kc=$DIR/kubeconfigs/kube-scheduler.kubeconfig
    start_proc kube-scheduler "$BIN_DIR/kube-scheduler" --kubeconfig="$kc" \
        --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
        --bind-address=127.0.0.1 --secure-port="$1" --leader-elect=false
    wait_until "$2" "$PID" "$DIR/kube-scheduler.log" kube-scheduler healthz_ready "$PID" "$1"
}
