#!/usr/bin/env bash
# Load benchmark (issue 12, point 8), in one run:
#
#  rates   check-ins per second on SQLite (one server), on PostgreSQL with one replica
#          and with three replicas behind nginx: each a fresh database and RATE_HOSTS hosts
#          set up by the fleet simulator (bench/fleet: real enrolment, host keys, signed
#          check-ins, the director's signature and the TUF catalog verified), then every
#          host checks in once more (unchanged inventory) at CONCURRENCY at a time. The
#          peer in the same run: nginx serving a static file of the size of one check-in
#          exchange (the loopback bytes per check-in) to curl at the same concurrency.
#  cost    the cost of one more host from SMALL to LARGE hosts on SQLite (database bytes
#          after a checkpoint, server memory), and at LARGE hosts the compliance report
#          (GET /v1/report, streamed): its time, size and the server's peak memory while
#          it is written. Goal: server RSS under 256 MB at 100,000 hosts.
#
# Usage: bench/scale.sh ; environment: PARTS ("rates cost"), RATE_HOSTS (5000),
# CONCURRENCY (32), SMALL (10000), LARGE (100000), BUILD=0 to use the binaries already
# built in CARGO_TARGET_DIR/release. PostgreSQL: the server in PATCHDAY_TEST_POSTGRES, or
# a throwaway cluster started here with .ci/postgres-cluster (Debian's postgresql).
set -euo pipefail
cd "$(dirname "$0")/.."
PARTS=${PARTS:-rates cost}
RATE_HOSTS=${RATE_HOSTS:-5000}
CONCURRENCY=${CONCURRENCY:-32}
SMALL=${SMALL:-10000}
LARGE=${LARGE:-100000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
ulimit -n "$(ulimit -Hn)"
if [ "${BUILD:-1}" = 1 ]; then cargo build --release -q -p patchday-cli -p patchday-fleet; fi
PD=$CARGO_TARGET_DIR/release/patchday
FLEET=$CARGO_TARGET_DIR/release/patchday-fleet

W=$(mktemp -d /tmp/patchday-scale.XXXXXX)
pids=(); cluster=""; dbs=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for d in "${dbs[@]}"; do psql -q "$PG" -c "DROP DATABASE IF EXISTS $d WITH (FORCE)" >/dev/null 2>&1 || true; done
  if [ -n "$cluster" ]; then .ci/postgres-cluster stop "$cluster" || true; fi
  rm -rf "$W" /dev/shm/patchday-scale-$$-*
}
trap cleanup EXIT
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# ---- A catalog with one update (a small payload: check-ins are measured, not downloads).
"$PD" keys generate --keys "$W/keys" >/dev/null
"$PD" catalog init --keys "$W/keys" --repo "$W/catalog" >/dev/null
mkdir -p "$W/pkg/DEBIAN" "$W/pkg/usr/share/pd-scale"
head -c 4096 /dev/urandom >"$W/pkg/usr/share/pd-scale/data.bin"
printf 'Package: pd-scale\nVersion: 1.0-2\nArchitecture: amd64\nMaintainer: bench <bench@example.org>\nDescription: scale benchmark\n' >"$W/pkg/DEBIAN/control"
dpkg-deb -Zxz --root-owner-group --build "$W/pkg" "$W/pd-scale.deb" >/dev/null
"$PD" catalog add-deb --keys "$W/keys" --repo "$W/catalog" --id PD-SCALE-1 --severity important \
  --train "$(date -u +%Y-%m)" --since 1.0-1 "$W/pd-scale.deb" >/dev/null

# start_server NAME ARGS...: a release server in the background; sets URL and SERVER_PID.
start_server() {
  local name=$1; shift
  "$PD" server --listen "127.0.0.1:${LISTEN_PORT:-0}" --catalog-root "$W/catalog/metadata/1.root.json" \
    --admin-token-file "$W/admin-token" --max-connections 20000 "$@" \
    >"$W/$name.out" 2>"$W/$name.log" &
  SERVER_PID=$!; pids+=("$SERVER_PID")
  URL=""
  for _ in $(seq 600); do
    URL=$(sed -n 's/^patchday server listening on //p' "$W/$name.out" | head -1)
    [ -z "$URL" ] || break
    sleep 0.1
  done
  [ -n "$URL" ] || { echo "FAIL: server $name did not start"; cat "$W/$name.log"; exit 1; }
}
# prepare URL: the tenant, group and an unlimited enrolment token (into $W/token).
prepare() {
  local env=(PATCHDAY_SERVER="$1" PATCHDAY_TOKEN="$(cat "$W/admin-token")")
  env "${env[@]}" "$PD" catalog push --repo "$W/catalog" >/dev/null
  env "${env[@]}" "$PD" tenant create acme >/dev/null
  env "${env[@]}" "$PD" group create --tenant acme fleet >/dev/null
  env "${env[@]}" "$PD" enroll-token create --tenant acme --unlimited --group fleet 2>/dev/null | tr -d '\n' >"$W/token"
}
json() { sed -n 's/^SETUP-JSON //p' "$1"; }
field() { python3 -c 'import json,sys; v=json.loads(sys.argv[1]).get(sys.argv[2]); print("" if v is None else (round(v, 1) if isinstance(v, float) else v))' "$1" "$2"; }
cpu_ticks() { local t=0; for p in "$@"; do t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat"))); done; echo $t; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
# fleet URL PID COUNT LABEL STATE: set up COUNT hosts, then one more check-in each.
fleet() {
  "$FLEET" --server "$1" --server-pid "$2" --group "fleet=$W/token:$3" --package pd-scale:1.0-1 \
    --package libfiller1:2.3-1 --package libfiller2:0.9-4 --state "$5" \
    --setup-only --setup-concurrency "$CONCURRENCY" --label "$4" | tee "$W/$4.fleet"
}
declare -A R

if [[ " $PARTS " == *" rates "* ]]; then
  PG=${PATCHDAY_TEST_POSTGRES:-}
  if [ -z "$PG" ]; then cluster="$W/pg"; PG=$(.ci/postgres-cluster start "$cluster"); fi
  pg_db() { # NAME: a fresh database on $PG, its URL
    local db="patchday_scale_$$_$1"; dbs+=("$db")
    psql -q "$PG" -c "CREATE DATABASE $db" >/dev/null
    python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' "$PG" "$db"
  }
  echo "== rates: $RATE_HOSTS hosts, $CONCURRENCY at a time"
  # SQLite, one server.
  start_server sqlite --data "$W/sqlite"
  prepare "$URL"
  fleet "$URL" "$SERVER_PID" "$RATE_HOSTS" sqlite "/dev/shm/patchday-scale-$$-sqlite"
  R[sqlite]=$(json "$W/sqlite.fleet")
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
  # PostgreSQL, one replica.
  db=$(pg_db one)
  start_server pg1 --data "$W/pg1" --database "$db"
  prepare "$URL"
  fleet "$URL" "$SERVER_PID" "$RATE_HOSTS" pg1 "/dev/shm/patchday-scale-$$-pg1"
  R[pg1]=$(json "$W/pg1.fleet")
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
  # PostgreSQL, three replicas (one database, one shared content directory, the same
  # director key) behind nginx.
  db=$(pg_db three)
  replicas=(); upstreams=""
  for i in 1 2 3; do
    if [ "$i" = 1 ]; then start_server "pg3-$i" --data "$W/pg3-1" --database "$db" --content "$W/pg3-content"
    else
      mkdir -p "$W/pg3-$i"; cp -a "$W/pg3-1/director" "$W/pg3-$i/"
      start_server "pg3-$i" --data "$W/pg3-$i" --database "$db" --content "$W/pg3-content"
    fi
    replicas+=("$SERVER_PID"); upstreams+="server ${URL#http://};"
  done
  lb_port=$(port)
  cat >"$W/nginx-lb.conf" <<EOF
daemon off; user root; worker_processes 2; pid $W/nginx-lb.pid; error_log $W/nginx-lb.err;
events { worker_connections 4096; }
http { access_log off; client_max_body_size 64m;
  upstream patchday { $upstreams keepalive 64; }
  server { listen 127.0.0.1:$lb_port;
    location / { proxy_pass http://patchday; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host \$host; proxy_read_timeout 700s; proxy_buffering off; } } }
EOF
  nginx -c "$W/nginx-lb.conf" -p "$W" & pids+=("$!")
  sleep 0.5
  prepare "http://127.0.0.1:$lb_port"
  c0=$(cpu_ticks "${replicas[@]}")
  fleet "http://127.0.0.1:$lb_port" "${replicas[0]}" "$RATE_HOSTS" pg3 "/dev/shm/patchday-scale-$$-pg3"
  c1=$(cpu_ticks "${replicas[@]}")
  R[pg3]=$(json "$W/pg3.fleet")
  pg3_cpu=$(python3 -c "import sys; print(round(($c1 - $c0) / $(getconf CLK_TCK), 1))")
  for p in "${replicas[@]}"; do kill "$p"; done
  # The peer: nginx serving a static file of one check-in exchange's size.
  size=$(grep -h 'loopback bytes per check-in' "$W/sqlite.fleet" | sed -E 's/.* ([0-9]+)$/\1/' | head -1)
  size=${size:-16384}
  mkdir -p "$W/www"; head -c "$size" /dev/urandom >"$W/www/answer"
  st_port=$(port)
  cat >"$W/nginx-static.conf" <<EOF
daemon off; user root; worker_processes 2; pid $W/nginx-static.pid; error_log $W/nginx-static.err;
events { worker_connections 4096; }
http { access_log off; sendfile on; keepalive_requests 100000;
  server { listen 127.0.0.1:$st_port; root $W/www; } }
EOF
  nginx -c "$W/nginx-static.conf" -p "$W" & pids+=("$!")
  sleep 0.5
  t0=$(date +%s.%N)
  curl -s --no-progress-meter --parallel --parallel-max "$CONCURRENCY" -o /dev/null "http://127.0.0.1:$st_port/answer?[1-$RATE_HOSTS]" 2>/dev/null
  t1=$(date +%s.%N)
  nginx_rate=$(python3 -c "print(round($RATE_HOSTS / ($t1 - $t0)))")
  echo
  echo "check-ins/s ($RATE_HOSTS hosts, one more signed check-in each, $CONCURRENCY at a time):"
  printf '  %-28s %8s %8s %8s %10s %8s\n' engine "per s" "p50 ms" "p99 ms" "CPU ms/ci" "RSS MiB"
  for k in sqlite pg1 pg3; do
    j=${R[$k]}
    printf '  %-28s %8s %8s %8s %10s %8s\n' "$k" "$(field "$j" checkins_per_second)" "$(field "$j" checkin_p50_ms)" \
      "$(field "$j" checkin_p99_ms)" "$(field "$j" server_cpu_ms_per_checkin)" "$(field "$j" server_rss_mib)"
  done
  echo "  (pg3: CPU per check-in is replica 1's; the three replicas used $pg3_cpu CPU-s for set-up and check-ins together)"
  echo "  nginx, a static file of $size bytes to curl --parallel: $nginx_rate requests/s"
fi

if [[ " $PARTS " == *" cost "* ]]; then
  echo; echo "== cost per host: $SMALL then $LARGE hosts on SQLite"
  start_server cost --data "$W/cost"
  prepare "$URL"
  db_bytes() { # after a checkpoint, so the WAL's pages are in the file
    python3 -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute("PRAGMA wal_checkpoint(PASSIVE)")' "$W/cost/patchday.db" 2>/dev/null || true
    du -cb "$W/cost"/patchday.db* | tail -1 | cut -f1
  }
  fleet "$URL" "$SERVER_PID" "$SMALL" small "/dev/shm/patchday-scale-$$-small"
  small_db=$(db_bytes); small_rss=$(rss_kib "$SERVER_PID")
  fleet "$URL" "$SERVER_PID" "$((LARGE - SMALL))" large "/dev/shm/patchday-scale-$$-large"
  large_db=$(db_bytes); large_rss=$(rss_kib "$SERVER_PID"); large_hwm=$(hwm_kib "$SERVER_PID")
  rm -rf /dev/shm/patchday-scale-$$-small /dev/shm/patchday-scale-$$-large
  # The report at LARGE hosts: the peak over the report alone (VmHWM reset first).
  echo 5 >"/proc/$SERVER_PID/clear_refs" 2>/dev/null || true
  t0=$(date +%s.%N)
  curl -sf -H "Authorization: Bearer $(cat "$W/admin-token")" -o "$W/report.json" \
    -w 'first byte %{time_starttransfer} s, whole %{time_total} s, %{size_download} bytes\n' "$URL/v1/report" | tee "$W/report.timing"
  report_hwm=$(hwm_kib "$SERVER_PID")
  hosts_in_report=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["hosts"]))' "$W/report.json")
  echo
  python3 - "$SMALL" "$LARGE" "$small_db" "$large_db" "$small_rss" "$large_rss" "$large_hwm" "$report_hwm" "$hosts_in_report" "$(cat "$W/report.timing")" <<'EOF'
import sys
small, large, sdb, ldb, srss, lrss, lhwm, rhwm, inreport, timing = sys.argv[1:]
small, large, sdb, ldb, srss, lrss, lhwm, rhwm = map(int, (small, large, sdb, ldb, srss, lrss, lhwm, rhwm))
more = large - small
print(f"database: {sdb/1e6:.1f} MB at {small:,} hosts, {ldb/1e6:.1f} MB at {large:,}: {(ldb-sdb)/more:,.0f} bytes per more host")
print(f"server RSS: {srss/1024:.0f} MiB at {small:,} hosts, {lrss/1024:.0f} MiB at {large:,} (peak so far {lhwm/1024:.0f} MiB): {(lrss-srss)*1024/more:,.0f} bytes per more host")
print(f"report at {large:,} hosts ({inreport} in it): {timing}; server peak RSS while writing it {rhwm/1024:.0f} MiB")
ok = lhwm / 1024 < 256 and rhwm / 1024 < 256
print(("PASS" if ok else "FAIL") + f": server memory at {large:,} hosts under 256 MiB (peak {max(lhwm, rhwm)/1024:.0f} MiB)")
EOF
fi
