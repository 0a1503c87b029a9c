#!/usr/bin/env bash
# Issue 12, point 2: bench/checkin.sh on SQLite and on PostgreSQL in one run, same
# arguments, and the ratio of their check-in rates. PostgreSQL is a throwaway database on
# the server named in PATCHDAY_TEST_POSTGRES (or a throwaway cluster started here with
# .ci/postgres-cluster when it is unset; needs Debian's postgresql package). The server
# CPU per check-in that checkin.sh reports is the Patchday process only: PostgreSQL's own
# CPU is in its processes (the whole-machine figure is the check-in rate).
# Usage: bench/checkin-postgres.sh [HOSTS UPDATES PACKAGES CONCURRENCY CHECKINS]
set -euo pipefail
cd "$(dirname "$0")/.."
ARGS=("${1:-1000}" "${2:-50}" "${3:-800}" "${4:-32}" "${5:-5000}")
rate() { grep -E "check-ins/s" "$1" | head -n 1 | sed -E 's/.* ([0-9.]+) check-ins\/s.*/\1/'; }
sqlite=$(mktemp); pg=$(mktemp); cluster=""
cleanup() {
  rm -f "$sqlite" "$pg"
  if [ -n "${db:-}" ]; then psql -q "$server" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true; fi
  if [ -n "$cluster" ]; then .ci/postgres-cluster stop "$cluster"; fi
}
trap cleanup EXIT
server="${PATCHDAY_TEST_POSTGRES:-}"
if [ -z "$server" ]; then
  cluster="$(mktemp -d)"
  server="$(.ci/postgres-cluster start "$cluster")"
fi
db="patchday_bench_$$"
psql -q "$server" -c "CREATE DATABASE $db"
pg_url="$(python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' "$server" "$db")"
echo "== SQLite"
bench/checkin.sh "${ARGS[@]}" | tee "$sqlite" || true
echo "== PostgreSQL"
PATCHDAY_BENCH_DATABASE="$pg_url" bench/checkin.sh "${ARGS[@]}" | tee "$pg" || true
a=$(rate "$sqlite"); b=$(rate "$pg")
echo
echo "check-ins/s: SQLite ${a}, PostgreSQL ${b} (one replica, same machine)"
awk -v a="$a" -v b="$b" 'BEGIN { printf "PostgreSQL / SQLite: %.2fx\n", b / a }'
