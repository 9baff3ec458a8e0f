#!/usr/bin/env bash
# Issue #14's aims in one sitting (`make bench`): the headline (bench/issue.sh: issue and
# sold-out against /healthz, serve as deployed), reports 002 and 004's peaks
# (bench/reports.sh), report 000's spike (bench/spike.sh) and the drain while issuing
# (bench/drain.sh, its live stage), one after the other on the same stack; each bench's
# output shows as it runs and lands in DIR/<bench>.log; then bench/aims_report.py prints
# every aim, what was measured and whether it was met (docs/benchmarks.md).
#   bench/aims.sh                        # ~10 min on two cores
#   ISSUE_ROUNDS=5 SPIKE_ROUNDS=20 REPORT_ROUNDS=3 DRAIN_N=200000 bench/aims.sh
#   SPIKE_WIRE=0 bench/aims.sh           # the spike without its packet capture (tcpdump)
# Each bench alone: make bench-issue, bench-reports, bench-spike, bench-drain.
# For comparable figures stop the local node first (scripts/cluster down): its kube-proxy
# rules tax every loopback packet.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/service.sh
ensure_bin
out="$STAMPEDE_HOME/bench-aims-$(date +%s)"
mkdir -p "$out"

# step NAME VAR=VALUE... SCRIPT: runs SCRIPT with those variables, its output to the
# terminal and DIR/NAME.log; a failing bench is said and the next one still runs.
step() {
  local name=$1 t0
  shift
  t0=$(date +%s)
  echo "== aims: $name ($*), $(date +%T)"
  if ! env "$@" 2>&1 | tee "$out/$name.log"; then
    echo "== aims: $name FAILED (its log: $out/$name.log)"
  fi
  echo "== aims: $name took $(( $(date +%s) - t0 )) s"
}

step issue ROUNDS="${ISSUE_ROUNDS:-3}" bench/issue.sh
step reports ROUNDS="${REPORT_ROUNDS:-2}" bench/reports.sh
# WIRE=1: the spike's time split at the wire, the server's share against k6's own.
step spike WIRE="${SPIKE_WIRE:-1}" ROUNDS="${SPIKE_ROUNDS:-10}" bench/spike.sh
step drain STAGES=live N="${DRAIN_N:-1000000}" bench/drain.sh
echo
python3 bench/aims_report.py "$out" | tee "$out/aims.txt"
