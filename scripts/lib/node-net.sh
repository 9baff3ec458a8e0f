# shellcheck shell=bash
# scripts/lib/node-net.sh: the node's network on this host, for scripts/cluster (sourced).
# Pods live on the bridge NODE_BRIDGE (NODE_ADDR/24 is the node's own address and the pods'
# gateway); Services get ClusterIPs from SERVICE_CIDR, rewritten by kube-proxy. Nothing
# of either range may leave the machine:
#  - `unreachable` routes for POD_CIDR and SERVICE_CIDR, installed before anything starts
#    (the bridge's more specific route still carries pod traffic), so a packet kube-proxy
#    has not rewritten fails here instead of taking the default route;
#  - chain STAMPEDE-GUARD (filter INPUT and FORWARD): the node address answers only lo and
#    the bridge, pods reach only each other and this host, nothing is forwarded to or from
#    any other interface;
#  - no masquerading out of the host (the bridge plugin's ipMasq is off; kube-proxy only
#    masquerades hairpin traffic to the node address, on the bridge).
# The stack's data stores (loopback only) are reached from pods at NODE_ADDR:<port> through
# DNAT to 127.0.0.1 (chain STAMPEDE-STACK in nat PREROUTING, route_localnet on the bridge).
# Needs log/die (lib/common.sh); the addresses below are used by scripts/cluster and
# scripts/lib/node-runtime.sh too.
#
#   ipt ARGS...           iptables, waiting up to 5 s for the xtables lock
#   net_up STACK-PORT...  routes, bridge, guard and DNAT rules for the stack's ports; idempotent
#   net_down              everything net_up made, and what the bridge CNI plugin left
#   drop_kube_chains      the KUBE-* rules and chains left after `kube-proxy --cleanup`
#   pod_netns             network namespaces of this node's pods, one a line
#   net_status            the unreachable routes and the bridge's address

POD_CIDR=10.244.0.0/16
# shellcheck disable=SC2034 # used by scripts/lib/node-runtime.sh
NODE_POD_CIDR=10.244.0.0/24
NODE_ADDR=10.244.0.1
NODE_BRIDGE=stampede0
SERVICE_CIDR=10.96.0.0/16
# shellcheck disable=SC2034 # used by scripts/lib/node-runtime.sh
CLUSTER_DNS=10.96.0.10

ipt() { iptables -w 5 "$@"; }

net_up() { # STACK-PORT...: idempotent
    local p
    ip route replace unreachable "$POD_CIDR"
    ip route replace unreachable "$SERVICE_CIDR"
    if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
        ip link add "$NODE_BRIDGE" type bridge
    fi
    ip addr replace "$NODE_ADDR/24" dev "$NODE_BRIDGE"
    ip link set "$NODE_BRIDGE" up
    [ -d /proc/sys/net/bridge ] || modprobe br_netfilter 2>/dev/null || true
    [ -d /proc/sys/net/bridge ] || die "bridge netfilter is not available (modprobe br_netfilter)"
    sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 \
        "net.ipv4.conf.$NODE_BRIDGE.route_localnet=1" >/dev/null

    ipt -N STAMPEDE-GUARD 2>/dev/null || ipt -F STAMPEDE-GUARD
    ipt -A STAMPEDE-GUARD -i lo -j RETURN
    ipt -A STAMPEDE-GUARD -i "$NODE_BRIDGE" -o "$NODE_BRIDGE" -j RETURN # pod to pod
    ipt -A STAMPEDE-GUARD -i "$NODE_BRIDGE" -d "$NODE_ADDR" -j RETURN   # pod to node (INPUT)
    ipt -A STAMPEDE-GUARD -i "$NODE_BRIDGE" -d 127.0.0.1 -m conntrack --ctstate DNAT -j RETURN # to the stack
    ipt -A STAMPEDE-GUARD -i "$NODE_BRIDGE" -j DROP                     # pod to anywhere else
    ipt -A STAMPEDE-GUARD -d "$POD_CIDR" -j DROP                        # other interfaces to pods/node
    ipt -A STAMPEDE-GUARD -d "$SERVICE_CIDR" -j DROP
    local chain
    for chain in INPUT FORWARD; do
        ipt -C "$chain" -j STAMPEDE-GUARD 2>/dev/null || ipt -I "$chain" 1 -j STAMPEDE-GUARD
    done

    ipt -t nat -N STAMPEDE-STACK 2>/dev/null || ipt -t nat -F STAMPEDE-STACK
    for p in "$@"; do
        ipt -t nat -A STAMPEDE-STACK -i "$NODE_BRIDGE" -d "$NODE_ADDR" -p tcp --dport "$p" \
            -j DNAT --to-destination "127.0.0.1:$p"
    done
    ipt -t nat -C PREROUTING -j STAMPEDE-STACK 2>/dev/null || ipt -t nat -I PREROUTING 1 -j STAMPEDE-STACK
}

net_down() { # everything net_up made, and what the bridge CNI plugin left
    local chain
    for chain in INPUT FORWARD; do
        while ipt -D "$chain" -j STAMPEDE-GUARD 2>/dev/null; do :; done
    done
    ipt -F STAMPEDE-GUARD 2>/dev/null && ipt -X STAMPEDE-GUARD 2>/dev/null || true
    while ipt -t nat -D PREROUTING -j STAMPEDE-STACK 2>/dev/null; do :; done
    ipt -t nat -F STAMPEDE-STACK 2>/dev/null && ipt -t nat -X STAMPEDE-STACK 2>/dev/null || true
    drop_kube_chains
    ip link del "$NODE_BRIDGE" 2>/dev/null || true
    ip route del unreachable "$POD_CIDR" 2>/dev/null || true
    ip route del unreachable "$SERVICE_CIDR" 2>/dev/null || true
}

# drop_kube_chains: what the kubelet leaves (KUBE-FIREWALL, canaries, hints) once
# `kube-proxy --cleanup` removed the proxy's own rules, in every table, IPv4 and IPv6.
drop_kube_chains() {
    local cmd table rule chain
    for cmd in iptables ip6tables; do
        command -v "$cmd" >/dev/null || continue
        for table in filter nat mangle; do
            "$cmd" -w 5 -t "$table" -S 2>/dev/null | { grep -E '^-A [A-Z]+ .*-j KUBE-' || true; } |
                while IFS= read -r rule; do
                    # iptables -S quotes comments the way a shell does
                    eval "\"\$cmd\" -w 5 -t \"\$table\" ${rule/-A/-D}" 2>/dev/null || true
                done
            for chain in $("$cmd" -w 5 -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ {print $2}'); do
                "$cmd" -w 5 -t "$table" -F "$chain" 2>/dev/null || true
            done
            for chain in $("$cmd" -w 5 -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ {print $2}'); do
                "$cmd" -w 5 -t "$table" -X "$chain" 2>/dev/null || true
            done
        done
    done
}

# pod_netns: network namespaces of this node's pods (their eth0 is on NODE_POD_CIDR).
pod_netns() {
    local ns
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
        ip -n "$ns" -4 -o addr show 2>/dev/null | grep -q " ${NODE_ADDR%.*}\." && echo "$ns"
    done
    return 0
}

net_status() {
    ip route show type unreachable | grep -E "^unreachable ($POD_CIDR|$SERVICE_CIDR)" || echo "no unreachable routes"
    ip -br addr show "$NODE_BRIDGE" 2>/dev/null || echo "no bridge $NODE_BRIDGE"
}
