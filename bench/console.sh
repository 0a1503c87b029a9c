#!/usr/bin/env bash
# Console page times at fleet scale (issue 11, point 1): a real `patchday server`
# (release build) filled by the fleet simulator (bench/fleet: N hosts with the real agent
# protocol, one emergency update installed everywhere, a second one still needed), then
# the console's pages fetched with a logged-in session. The figure is the time to first
# byte over loopback (curl's time_starttransfer: the server's work, as the page is
# rendered whole before it is sent): the first request (cold: nothing cached in the
# server's memory) and the median and worst of R requests per page. Check-ins keep each
# host's evaluation and its summary (server/src/fleet_view.rs); the overview, tenant and
# updates pages count the summaries, the rollout progress and host pages read the whole
# evaluations. The overview also keeps each tenant's numbers for 15 s (console/cache.rs).
# Target: every page, its first (cold) request and its median, < 200 ms at 10,000 hosts.
#
# Usage: bench/console.sh [N] [R] ; PROFILE=debug tries it on the debug binaries
# (`cargo build --workspace`; figures only from release), KEEP=1 keeps the directory.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000}
R=${2:-10}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
ulimit -n "$(ulimit -Hn)"
PROFILE=${PROFILE:-release}
if [ "$PROFILE" = release ] && [ "${BUILD:-1}" = 1 ]; then cargo build --release -q -p patchday-cli -p patchday-fleet; fi
PD=$CARGO_TARGET_DIR/$PROFILE/patchday
FLEET=$CARGO_TARGET_DIR/$PROFILE/patchday-fleet

W=$(mktemp -d /tmp/patchday-console-bench.XXXXXX)
STATE=/dev/shm/patchday-console-bench-$$
SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  if [ "${KEEP:-0}" != 1 ]; then rm -rf "$W" "$STATE"; else echo "kept $W and $STATE"; fi
}
trap cleanup EXIT

# Two small updates: pd-bench-a (installed everywhere during the run), pd-bench-b (left
# needed, so the overview has exposure to count).
small_deb() { # NAME VERSION
  local d=$W/build/$1-$2
  mkdir -p "$d/DEBIAN" "$d/usr/share/doc/$1"
  printf 'Package: %s\nVersion: %s\nArchitecture: amd64\nMaintainer: bench <bench@example.org>\nSource: %s\nDescription: console benchmark payload\n' "$1" "$2" "$1" >"$d/DEBIAN/control"
  printf '%s (%s) bookworm-security; urgency=high\n\n  * Fix CVE-2099-7%03d.\n\n -- bench <bench@example.org>  Tue, 01 Dec 2026 00:00:00 +0000\n' "$1" "$2" "$RANDOM" | gzip -9n >"$d/usr/share/doc/$1/changelog.Debian.gz"
  dpkg-deb -Zxz --root-owner-group --build "$d" "$W/$1_$2_amd64.deb" >/dev/null
  echo "$W/$1_$2_amd64.deb"
}
"$PD" keys generate --keys "$W/keys" >/dev/null
"$PD" catalog init --keys "$W/keys" --repo "$W/catalog" >/dev/null
add() { "$PD" catalog add-deb --keys "$W/keys" --repo "$W/catalog" --id "$1" --severity "$2" --emergency bench --since 1.0-1 "$(small_deb "$3" 1.0-2)" >/dev/null; }
add PD-BENCH-A critical pd-bench-a
add PD-BENCH-B important pd-bench-b

"$PD" server --data "$W/server" --listen 127.0.0.1:0 --catalog-root "$W/catalog/metadata/1.root.json" \
  --admin-token-file "$W/admin-token" --max-connections $((N + 4000)) \
  >"$W/server.out" 2>"$W/server.log" &
SERVER_PID=$!
for _ in $(seq 600); do
  grep -q "listening on" "$W/server.out" 2>/dev/null && break
  sleep 0.1
done
URL=$(sed -n 's/^patchday server listening on //p' "$W/server.out" | head -1)
[ -n "$URL" ] || { echo "FAIL: the server did not start"; cat "$W/server.log"; exit 1; }
export PATCHDAY_SERVER=$URL PATCHDAY_TOKEN
PATCHDAY_TOKEN=$(cat "$W/admin-token")
"$PD" catalog push --repo "$W/catalog" >/dev/null
"$PD" tenant create acme >/dev/null
"$PD" group create --tenant acme fleet >/dev/null
"$PD" enroll-token create --tenant acme --unlimited --group fleet 2>/dev/null | tr -d '\n' >"$W/token-fleet"

echo "filling $URL with $N simulated hosts (PD-BENCH-A approved and installed, PD-BENCH-B needed)"
"$FLEET" --server "$URL" --server-pid "$SERVER_PID" --install-ms 10 --idle-seconds 1 \
  --state "$STATE" --group "fleet=$W/token-fleet:$N" --mode push --horizon-seconds 900 \
  --package pd-bench-a:1.0-1 --package pd-bench-b:1.0-1 --package libfiller1:2.3-1 \
  --label console-fill \
  --approve "$PD approve --tenant acme --group fleet PD-BENCH-A --emergency --reason 'console bench' >/dev/null" \
  >"$W/fleet.out" 2>&1 || { echo "FAIL: the fleet simulator failed"; tail -20 "$W/fleet.out"; exit 1; }
grep -E "installed|hosts" "$W/fleet.out" | tail -3

# Log in as the console does: the login form's double-submit cookie, then the token.
JAR=$W/cookies
form=$(curl -s -c "$JAR" "$URL/console/login")
csrf=$(sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' <<<"$form" | head -1)
code=$(curl -s -o /dev/null -w '%{http_code}' -b "$JAR" -c "$JAR" \
  --data-urlencode "csrf=$csrf" --data-urlencode "token=$PATCHDAY_TOKEN" "$URL/console/login")
[ "$code" = 303 ] || { echo "FAIL: console login answered $code"; exit 1; }

status=0
page() { # NAME PATH [TARGET_MS]
  local times=() t
  for _ in $(seq "$R"); do
    t=$(curl -s -o /dev/null -b "$JAR" -w '%{http_code} %{time_starttransfer}' "$URL$2")
    [ "${t%% *}" = 200 ] || { echo "FAIL: $2 answered ${t%% *}"; status=1; return; }
    times+=("${t#* }")
  done
  python3 - "$1" "$2" "${3:-}" "${times[@]}" <<'PY' || status=1
import statistics, sys
name, path, target = sys.argv[1], sys.argv[2], sys.argv[3]
ms = sorted(float(t) * 1000 for t in sys.argv[4:])  # the first request is the cold one
med, worst = statistics.median(ms), ms[-1]
first = float(sys.argv[4]) * 1000
line = f"{name:<10} {path:<40} first {first:8.1f} ms  median {med:8.1f} ms  worst {worst:8.1f} ms  ({len(ms)} requests)"
if target:
    ok = max(first, med) < float(target)
    print(("PASS: " if ok else "FAIL: ") + line + f"  target: first and median < {target} ms")
    sys.exit(0 if ok else 1)
print("      " + line)
PY
}
host=$("$PD" host list --tenant acme --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
echo
echo "console pages at $N hosts ($PROFILE build, time to first byte over loopback):"
page overview / 200
page tenant /console/tenants/acme 200
page updates /console/tenants/acme/updates 200
page rollout /console/tenants/acme/rollouts/PD-BENCH-A/progress.json 200
page host "/console/tenants/acme/hosts/$host" 200
page catalog /console/catalog 200
exit $status
