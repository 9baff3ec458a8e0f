# shellcheck shell=bash
# scripts/lib/node-runtime.sh: the local node's own processes (containerd, the kubelet,
# kube-proxy), their generated configs and images, for scripts/cluster (sourced). Needs
# STATE (= DIR), CP, SOCK, BIN, NODE_NAME, SCRIPT_DIR, the addresses of lib/node-net.sh and
# read_pid/start_proc/wait_until (lib/proc.sh).
#
#   write_containerd_config   STATE/containerd/config.toml and the CNI conflist (every start)
#   start_containerd          containerd with that config, until `ctr version` answers
#   containerd_answers        `ctr version` on SOCK, quietly (the start's readiness probe)
#   load_images               scripts/images load (it builds what is stale) into containerd
#   write_kubelet_config      STATE/kubelet-config.yaml (every start)
#   start_kubelet             the kubelet, until its /healthz answers
#   start_kube_proxy          kube-proxy (iptables mode) with its config, until /healthz answers

# --- containerd ------------------------------------------------------------------------

write_containerd_config() {
    mkdir -p "$STATE/containerd" "$STATE/cni/net.d"
    cat >"$STATE/containerd/config.toml" <<EOF
# written by scripts/cluster on every start
version = 2
root = "$STATE/containerd/root"
state = "$STATE/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$("$SCRIPT_DIR/images" ref pause)"
  # no CAP_SYS_RESOURCE here: runc must not lower oom_score_adj below ours
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
EOF
    # Pods get routes to the bridge (the node, other pods) and to Services, and no default
    # route: anything else is unreachable inside the pod already.
    cat >"$STATE/cni/net.d/10-stampede.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "stampede", "plugins": [
  {"type": "bridge", "bridge": "$NODE_BRIDGE", "isGateway": true, "ipMasq": false,
   "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$STATE/cni/ipam",
            "ranges": [[{"subnet": "$NODE_POD_CIDR", "gateway": "$NODE_ADDR"}]],
            "routes": [{"dst": "$SERVICE_CIDR"}]}}
]}
EOF
}

start_containerd() {
    read_pid containerd >/dev/null && return 0
    write_containerd_config
    # Images are imported, never pulled: a pull (an image the node lacks) goes to a proxy
    # on a dead loopback port and fails at once, without even a DNS lookup leaving here.
    start_proc containerd env HTTPS_PROXY=http://127.0.0.1:9 HTTP_PROXY=http://127.0.0.1:9 NO_PROXY= \
        containerd --config "$STATE/containerd/config.toml"
    wait_until 30 "$PID" "$STATE/containerd.log" containerd containerd_answers
}

# The probe is quiet: a socket not yet there is the expected first answer, and a start that
# times out shows containerd's own log instead.
containerd_answers() { ctr -a "$SOCK" version >/dev/null 2>&1; }

load_images() {
    "$SCRIPT_DIR/images" load --address "$SOCK" --with-addons
}

# --- kubelet and kube-proxy ------------------------------------------------------------

write_kubelet_config() {
    mkdir -p "$STATE/kubelet" "$STATE/pod-logs"
    : >"$STATE/resolv.conf" # pods get cluster DNS only; nothing resolves outside
    cat >"$STATE/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# this machine: cgroup v1 with cgroupfs, swap allowed, no CAP_SYS_RESOURCE
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupsPerQOS: true
enforceNodeAllocatable: []
failSwapOn: false
oomScoreAdj: 0
localStorageCapacityIsolation: true
containerRuntimeEndpoint: unix://$SOCK
address: $NODE_ADDR
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $CP/pki/kubelet-serving.crt
tlsPrivateKeyFile: $CP/pki/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $CP/pki/ca.crt}
authorization: {mode: Webhook}
clusterDomain: cluster.local
clusterDNS: [$CLUSTER_DNS]
resolvConf: $STATE/resolv.conf
podLogsDir: $STATE/pod-logs
hairpinMode: hairpin-veth
serializeImagePulls: false
# the images are imported, never pulled: keep them however full the disk gets
imageGCHighThresholdPercent: 100
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%}
EOF
}

start_kubelet() {
    read_pid kubelet >/dev/null && return 0
    write_kubelet_config
    start_proc kubelet "$BIN/kubelet" --config="$STATE/kubelet-config.yaml" \
        --kubeconfig="$CP/kubeconfigs/kubelet.kubeconfig" --root-dir="$STATE/kubelet" \
        --hostname-override="$NODE_NAME" --node-ip="$NODE_ADDR" --v=1
    wait_until 60 "$PID" "$STATE/kubelet.log" kubelet \
        curl -sf -o /dev/null --max-time 2 http://127.0.0.1:10248/healthz
}

start_kube_proxy() {
    read_pid kube-proxy >/dev/null && return 0
    cat >"$STATE/kube-proxy-config.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $CP/kubeconfigs/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
clusterCIDR: $POD_CIDR
bindAddress: $NODE_ADDR
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: [$NODE_ADDR/32]
iptables: {localhostNodePorts: false}
# leave the host's conntrack sysctls alone (no CAP_SYS_RESOURCE here)
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
    start_proc kube-proxy "$BIN/kube-proxy" --config="$STATE/kube-proxy-config.yaml"
    wait_until 60 "$PID" "$STATE/kube-proxy.log" kube-proxy \
        curl -sf -o /dev/null --max-time 2 http://127.0.0.1:10256/healthz
}
