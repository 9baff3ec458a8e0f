#!/usr/bin/env bash
# Report 000's spike against `serve` as deployed (its defaults: the relay in-process, a
# writer running): VUS (1000) users at once, one request each, with k6 — the real profile
# (k6-jobs/spike.js, POST /issue with a token per user) — alternated in the same run with
# the same spike against /healthz (bench/spike-healthz.js: the floor that k6 starting 1 000
# VUs and opening 1 000 connections on two cores sets) and against a sold-out campaign (the
# same requests answered 410 from memory: HTTP, the token and routing without Redis).
# Prints each run's p95 and the medians' ratios (aim: issue within 1.2x of healthz, 0
# errors; issue to sold-out, whose k6 work is the same, is the service's own share), and
# what the time is made of:
#   connect   k6's http_req_connecting p95 (the kernel's handshake; a full listen queue
#             shows here as SYN retries)
#   waiting   k6's http_req_waiting p95 (request sent -> first byte back: waiting to be
#             accepted and scheduled, plus the handler)
#   handler   the service's own stampede_http_request_duration_seconds p95 (interpolated
#             in its buckets): from the router to the answer, Redis included
#   cpu       CPU seconds k6, serve and Redis used during the spike, and every other
#             process (the relay's Kafka broker, the writer, PostgreSQL, the rest)
#   overflow  the kernel's TcpExt ListenOverflows + ListenDrops during the spike
# WIRE=1 also captures each spike's SYNs and first bytes on the loopback (tcpdump) and
# splits k6's waiting at the wire (bench/spike_wire.py): the server's share, from the
# request's first byte in to the answer's out, against the rest, the client's own.
#   bench/spike.sh            # ROUNDS=10 VUS=1000 (~30 s; medians of 3 rounds swung 1.0-3.3x within an hour)
#   ROUNDS=5 VUS=500 bench/spike.sh
#   CLIENT_NICE=19 bench/spike.sh   # k6 at that niceness (it yields the cores to the service)
#   WIRE=1 ROUNDS=5 bench/spike.sh  # + the wire split (needs tcpdump; installs it)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/service.sh
ROUNDS=${ROUNDS:-10}
VUS=${VUS:-1000}
PORT=${BENCH_PORT:-3187}
K6=$(scripts/deps k6-path)
bench_setup spike
c="bench-spike-$run"
gone="bench-spike-gone-$run"
"$BIN" campaign create --id "$c" --stock 100000000 >/dev/null
"$BIN" campaign create --id "$gone" --stock 1 >/dev/null
STAMPEDE_LOG=warn start_service "$PORT" "$out/service.log" --relay-campaigns "$c,$gone"
serve_pid=$SVC_PID
ops_url=$SVC_METRICS
STAMPEDE_LOG=warn start_role "$out/writer.log" writer --metrics-listen 127.0.0.1:0 \
  --group "bench-spike-$run" --topics "^stampede\\.bench-spike-(gone-)?$run"
# Sell the "gone" campaign out so that its spike takes the memory path.
curl -sf -XPOST -H "Authorization: Bearer $("$BIN" token --sub first)" \
  -H 'content-type: application/json' -d '{"userId":"first"}' \
  "http://127.0.0.1:$PORT/v1/campaigns/$gone/issue" >/dev/null
# Raise the open-files limit for 1 000 client and 1 000 server sockets.
ulimit -n 65536 2>/dev/null || true
if [ "${WIRE:-0}" = 1 ] && ! command -v tcpdump >/dev/null; then
  echo "spike: installing tcpdump for WIRE=1"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q tcpdump >/dev/null
fi

# capture_start PORT FILE: tcpdump of SYNs and segments carrying data to or from PORT on
# the loopback, into FILE, once it is listening (its pid in $cap_pid).
capture_start() {
  tcpdump -i lo -n -s 96 -U --time-stamp-precision=nano -w "$2" \
    "tcp port $1 and (tcp[tcpflags] & tcp-syn != 0 or ip[2:2] - ((ip[0] & 0xf) << 2) - ((tcp[12] & 0xf0) >> 2) != 0)" \
    2>"$2.log" &
  cap_pid=$!
  for _ in $(seq 100); do grep -q 'listening on' "$2.log" && return; sleep 0.05; done
  echo "spike: tcpdump did not start (see $2.log)" >&2
}
capture_stop() { kill -INT "$cap_pid" 2>/dev/null; wait "$cap_pid" 2>/dev/null || true; }

# overflows: the kernel's listen-queue overflows and drops so far (every socket).
overflows() {
  awk '/^TcpExt:/ { if (!h) { split($0, k); h = 1 } else { for (i = 2; i <= NF; i++) if (k[i] == "ListenOverflows" || k[i] == "ListenDrops") n += $i } } END { print n + 0 }' /proc/net/netstat
}
# machine_ticks: CPU time every process on the machine has used so far (/proc/stat).
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
# spike NAME: one spike against NAME (healthz, sold-out, issue); its k6 samples (CSV),
# summary, CPU and counters land in $out/NAME-$i.*
spike() {
  local name=$1 redis_pids ov0 t0 r0 m0 args
  redis_pids=$(pgrep -x redis-server | tr '\n' ' ')
  issue_histogram "$ops_url" >"$out/$name-$i.h0"
  ov0=$(overflows)
  # shellcheck disable=SC2086 # a list of pids
  t0=$(ticks "$serve_pid"); r0=$(ticks $redis_pids); m0=$(machine_ticks)
  [ "${WIRE:-0}" = 1 ] && capture_start "$PORT" "$out/$name-$i.pcap"
  case $name in
    healthz) args=(bench/spike-healthz.js) ;;
    sold-out) args=(-e CAMPAIGN="$gone" -e SUMMARY_FILE="$out/$name-$i.json" k6-jobs/spike.js) ;;
    issue) args=(-e CAMPAIGN="$c" -e SUMMARY_FILE="$out/$name-$i.json" k6-jobs/spike.js) ;;
  esac
  BASE_URL="http://127.0.0.1:$PORT" VUS=$VUS RUN_ID="$run-$name-$i" LOG_ISSUED=0 \
    /usr/bin/time -f '%U %S' -o "$out/$name-$i.k6cpu" \
    ${CLIENT_NICE:+nice -n "$CLIENT_NICE"} "$K6" run --quiet --no-color --out csv="$out/$name-$i.csv" "${args[@]}" \
    >"$out/$name-$i.stdout" 2>"$out/$name-$i.stderr" || echo "round $i: k6 $name exited $? (see $out/$name-$i.stderr)"
  # shellcheck disable=SC2086 # a list of pids
  echo "$(( $(ticks "$serve_pid") - t0 )) $(( $(ticks $redis_pids) - r0 )) $(( $(overflows) - ov0 )) $(( $(machine_ticks) - m0 ))" >"$out/$name-$i.counters"
  if [ "${WIRE:-0}" = 1 ]; then
    capture_stop
    python3 bench/spike_wire.py "$out/$name-$i.pcap" "$PORT" >"$out/$name-$i.wire"
  fi
  issue_histogram "$ops_url" >"$out/$name-$i.h1"
}
echo "k6 spike: $VUS VUs, one request each, x $ROUNDS rounds (healthz, sold-out, issue alternated)"
for i in $(seq "$ROUNDS"); do
  # healthz lives on the operations listener.
  PORT=${ops_url##*:} spike healthz
  spike sold-out
  spike issue
done
python3 bench/spike_report.py "$out" "$ROUNDS" | tee "$out/results.txt"
# What the service counted over every spike: a 503 is shed load or a failed Redis call.
curl -sf "$ops_url/metrics" >"$out/metrics.txt" || true
grep -E '^stampede_(http_shed_total|redis_errors_total|redis_issue_batch_size_(sum|count))' \
  "$out/metrics.txt" | sed 's/^/service: /' || true
echo "service: --max-in-flight ${STAMPEDE_MAX_IN_FLIGHT:-default}, peak RSS $(awk '/^VmHWM/ { print $2 " " $3 }' "/proc/$serve_pid/status")"
stop_roles
forget_campaign "$c"
forget_campaign "$gone"
