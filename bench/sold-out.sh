#!/usr/bin/env bash
# What the sold-out path (a 410 answered from memory) costs beyond /healthz, split by what
# it does: one `serve --no-relay` per variant, nothing else running, each with the same
# campaign sold out, driven by wrk (-t2 -c64, bench/issue.lua: a fresh user and token per
# request) round by round, alternated with /healthz on a process of its own, each round in
# a rotated order (every other one reversed). Per run: req/s, the serving process's CPU
# per request, and its voluntary and involuntary context switches per request (every
# thread, /proc/PID/task/*/status).
#   base     serve's defaults (a token verified; the per-user budget is configured, and
#            since 2026-12-04 the sold-out answer comes before it)
#   nouser   STAMPEDE_USER_RATE=0: no per-user budget
#   noauth   --auth none: no token verified (the body names the user)
#   oneworker TOKIO_WORKER_THREADS=1: one tokio worker, no wake-ups across workers
#   baseline serve's defaults, from the build BASELINE_BIN names (an earlier one, A/B)
#   bench/sold-out.sh                       # ROUNDS=3, 5 s runs, every variant
#   ROUNDS=2 VARIANTS="base noauth" bench/sold-out.sh
#   BASELINE_BIN=/tmp/stampede-service-old VARIANTS="base baseline" bench/sold-out.sh
# Everything on loopback; each wrk run is bounded by -d.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/service.sh
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
VARIANTS=${VARIANTS:-base nouser noauth oneworker}
PORT=${BENCH_PORT:-3211}
TOKENS_PER_SEC=${TOKENS_PER_SEC:-70000}
command -v wrk >/dev/null || scripts/deps
bench_setup sold-out
secs=${DURATION%s}; [[ $secs =~ ^[0-9]+$ ]] || secs=5
gone="bench-sold-out-$run"
"$BIN" campaign create --id "$gone" --stock 1 >/dev/null

declare -A pid_of url_of
port=$PORT
# /healthz on a process of its own: no variant's process serves more than its own runs.
STAMPEDE_LOG=warn start_service "$port" "$out/healthz.log" --no-relay
pid_of[healthz]=$SVC_PID url_of[healthz]=$SVC_METRICS
port=$((port + 2))
for v in $VARIANTS; do
  log="$out/$v.log"
  case $v in
    base) STAMPEDE_LOG=warn start_service "$port" "$log" --no-relay ;;
    nouser) STAMPEDE_USER_RATE=0 STAMPEDE_LOG=warn start_service "$port" "$log" --no-relay ;;
    noauth) STAMPEDE_LOG=warn start_service "$port" "$log" --no-relay --auth none ;;
    oneworker) TOKIO_WORKER_THREADS=1 STAMPEDE_LOG=warn start_service "$port" "$log" --no-relay ;;
    baseline) BIN=${BASELINE_BIN:?the baseline variant runs the build BASELINE_BIN names} \
      STAMPEDE_LOG=warn start_service "$port" "$log" --no-relay ;;
    *) echo "unknown variant '$v' (base, nouser, noauth, oneworker, baseline)" >&2; exit 2 ;;
  esac
  pid_of[$v]=$SVC_PID
  url_of[$v]="http://127.0.0.1:$port"
  # The first request takes the one coupon (or finds it taken); the second is answered
  # SOLD_OUT by Redis, which this process then remembers.
  for u in first second; do
    curl -s -o /dev/null -XPOST -H "Authorization: Bearer $("$BIN" token --sub "$u")" \
      -H 'content-type: application/json' -d "{\"userId\":\"$u\"}" "${url_of[$v]}/v1/campaigns/$gone/issue"
  done
  port=$((port + 2))
done

tokens="$out/tokens.txt"
# switches PID: "voluntary involuntary" context switches of every thread of PID so far.
switches() {
  cat /proc/"$1"/task/*/status 2>/dev/null |
    awk '/^voluntary_ctxt_switches/ {v += $2} /^nonvoluntary_ctxt_switches/ {n += $2} END {print v + 0, n + 0}'
}
# measure NAME PID URL MODE [CAMPAIGN]: one wrk run; appends its line to $out/runs.tsv.
measure() {
  local name=$1 pid=$2 url=$3 mode=$4; shift 4
  "$BIN" token --with-sub --sub-prefix "$run-$name-$((++minted))" --count "$((secs * TOKENS_PER_SEC))" >"$tokens"
  local t0 s0 result t1 s1
  t0=$(ticks "$pid"); s0=$(switches "$pid")
  result=$(wrk -t2 -c64 -d"$DURATION" -s bench/issue.lua "$url" -- "$mode" "$@" "$tokens" 2 2>/dev/null |
    awk '/ requests in / {n = $1} /^Requests\/sec:/ {r = $2} END {print n + 0, r + 0}')
  t1=$(ticks "$pid"); s1=$(switches "$pid")
  awk -v name="$name" -v res="$result" -v t="$((t1 - t0))" -v hz="$(getconf CLK_TCK)" \
    -v s0="$s0" -v s1="$s1" 'BEGIN {
      split(res, r, " "); split(s0, a, " "); split(s1, b, " ")
      n = r[1] > 0 ? r[1] : 1
      printf "%s\t%.0f\t%.1f\t%.3f\t%.3f\n", name, r[2], t * 1e6 / hz / n, (b[1] - a[1]) / n, (b[2] - a[2]) / n
    }' | tee -a "$out/runs.tsv"
}
minted=0
echo "wrk -t2 -c64 -d$DURATION x $ROUNDS rounds; variants: $VARIANTS (name, req/s, serve us CPU/req, voluntary and involuntary switches/req)"
read -ra order <<<"healthz $VARIANTS"
for ((r = 0; r < ROUNDS; r++)); do
  # Each round starts one further along, every other one backwards: no variant always runs
  # first, or after the same one.
  for ((i = 0; i < ${#order[@]}; i++)); do
    j=$(( r % 2 ? ${#order[@]} - 1 - i : i ))
    v=${order[(j + r) % ${#order[@]}]}
    if [ "$v" = healthz ]; then
      measure healthz "${pid_of[healthz]}" "${url_of[healthz]}" healthz
    else
      measure "$v" "${pid_of[$v]}" "${url_of[$v]}" issue "$gone"
    fi
  done
done
rm -f "$tokens"
python3 - "$out/runs.tsv" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
names = list(dict.fromkeys(r[0] for r in rows))
med = {n: [statistics.median(float(r[i]) for r in rows if r[0] == n) for i in (1, 2, 3, 4)] for n in names}
h = med["healthz"][0]
print("medians:")
for n in names:
    rps, cpu, vol, inv = med[n]
    ratio = "" if n == "healthz" else f"  ÷ healthz {rps / h:.2f}"
    print(f"  {n:10} {rps:8.0f} req/s  serve {cpu:5.1f} us CPU/req  switches/req {vol:.3f} + {inv:.3f}{ratio}")
PY
stop_roles
forget_campaign "$gone"
