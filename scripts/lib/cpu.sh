# shellcheck shell=bash
# scripts/lib/cpu.sh: where the CPU of a benchmark run went, process by process, from /proc
# (source it after scripts/lib/service.sh, whose `ticks` it uses): the "CPU us per
# issuance" lines of bench/issue.sh and bench/drain.sh.
#
#   cpu_ticks SERVE_PID WRITER_PID   "name=ticks …": the issuer (and, as `serve.relay`, its
#                         relay thread, a part of serve's figure), Redis, the Kafka broker,
#                         PostgreSQL and the writer, each so far
#   cpu_per BEFORE AFTER N [NAME=SECONDS…]   "name=us …": the microseconds each group of two
#                         cpu_ticks lines spent per item (N items between them), then each
#                         NAME=SECONDS given (a client timed apart) per item
#   cpu_total SPLIT       the sum of a cpu_per line, parts of another (`serve.relay`) left out

# threads PID NAME: PID's threads named NAME as `ticks` takes them, "PID/task/TID" (a
# thread's own /proc/TID/stat would count the whole process).
threads() {
  local t
  for t in /proc/"$1"/task/*; do [ "$(cat "$t/comm" 2>/dev/null)" != "$2" ] || printf '%s/task/%s ' "$1" "${t##*/}"; done
}

cpu_ticks() {
  local name pids
  while read -r name pids; do
    # shellcheck disable=SC2086 # a list of pids
    printf '%s=%s ' "$name" "$(ticks $pids)"
  done <<EOF
serve $1
serve.relay $(threads "$1" relay)
redis $(pgrep -x redis-server | tr '\n' ' ')
kafka $(pgrep -f 'kafka\.Kafka' | tr '\n' ' ')
postgres $(pgrep -x postgres | tr '\n' ' ')
writer $2
EOF
}

cpu_per() {
  local before=$1 after=$2 n=$3; shift 3
  awk -v a="$before" -v b="$after" -v n="$n" -v hz="$(getconf CLK_TCK)" -v extra="$*" 'BEGIN {
    na = split(a, x, " "); split(b, y, " ")
    for (i = 1; i <= na; i++) { split(x[i], p, "="); split(y[i], q, "=")
      printf "%s=%.1f ", p[1], (q[2] - p[2]) * 1e6 / hz / n }
    ne = split(extra, e, " ")
    for (i = 1; i <= ne; i++) { split(e[i], p, "="); printf "%s=%.1f ", p[1], p[2] * 1e6 / n } }'
}

cpu_total() {
  awk -v s="$1" 'BEGIN { n = split(s, x, " ")
    for (i = 1; i <= n; i++) { split(x[i], p, "="); if (p[1] !~ /\./) t += p[2] }
    printf "%.1f", t }'
}
