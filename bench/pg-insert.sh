#!/usr/bin/env bash
# PostgreSQL alone: the CPU it spends per stored row for the writer's insert (UNNEST), COPY
# in text and binary format (the writer's since issue #14), and COPY into a staging table
# followed by INSERT ... SELECT ... ON CONFLICT. The stack's PostgreSQL, its TLS and
# credentials; fresh tables of the writer's shape, dropped afterwards. Bounded: REPS x 4
# methods x ROWS rows.
#
#   bench/pg-insert.sh                         # ROWS=200000 BATCH=500 REPS=3
#   ROWS=100000 REPS=5 bench/pg-insert.sh unnest copy_binary
#   bench/pg-insert.sh collation               # the keys' collation: C, a language's, "C" keys
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${STAMPEDE_HOME:-$HOME/.cache/stampede}/venv-bench
if ! "$venv/bin/python" -c 'import psycopg' 2>/dev/null; then
  echo "installing psycopg into $venv (once)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'psycopg[binary]'
fi
scripts/stack up >/dev/null
eval "$(scripts/stack env)"
"$venv/bin/python" bench/pg_insert.py "$@"
