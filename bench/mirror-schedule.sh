#!/usr/bin/env bash
# Issue 12, point 1: what a scheduled mirror run costs now that its working catalog is
# built from the store at each run. A server (SQLite, local payloads) holds a catalog of
# N mirror-signed updates (one small payload each) and runs the mirror every 2 s over a
# signed apt archive on 127.0.0.1 with nothing new; reported: the build of the working
# catalog (metadata from the database, N update documents from the content store) and
# the whole run (build, sync: one InRelease, the role's expiring bins, the prune reading
# every document), median of RUNS runs after the first. Debug build, as the tests run.
# Usage: bench/mirror-schedule.sh [N] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000}
runs=${2:-5}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build -q -p patchday-cli
pd=$CARGO_TARGET_DIR/debug/patchday
w=$CARGO_TARGET_DIR/bench-mirror-schedule-$n
rm -rf "$w"
mkdir -p "$w/debs" "$w/online"
$pd keys generate --keys "$w/keys" >/dev/null
$pd catalog init --keys "$w/keys" --repo "$w/catalog" >/dev/null
$pd keys generate --keys "$w/mirror-keys" >/dev/null
$pd catalog delegate --keys "$w/keys" --repo "$w/catalog" --role mirror \
  --key-file "$w/mirror-keys/targets.pem" >/dev/null
cp "$w/keys/snapshot.pem" "$w/keys/timestamp.pem" "$w/online/"
start=$(date +%s)
for i in $(seq 1 "$n"); do
  d="$w/debs/bench$i"
  mkdir -p "$d/DEBIAN"
  printf 'Package: bench%s\nVersion: 1.0-1\nArchitecture: all\nMaintainer: Bench <bench@bench.invalid>\nDescription: bench\n' "$i" >"$d/DEBIAN/control"
  dpkg-deb -b -Zgzip "$d" "$w/debs/bench$i.deb" >/dev/null
  $pd catalog add-deb --keys "$w/online" --repo "$w/catalog" --as mirror \
    --key-file "$w/mirror-keys/targets.pem" --id "mirror-BENCH-$i" --train 2026-12 \
    "$w/debs/bench$i.deb" >/dev/null
done
echo "catalog of $n mirror-signed updates made in $(($(date +%s) - start)) s"

# A signed archive with nothing in it (gpg, Ed25519), served on 127.0.0.1.
export GNUPGHOME="$w/gnupg"
mkdir -m 700 "$GNUPGHOME"
gpg -q --batch --passphrase '' --quick-gen-key 'Bench Archive <archive@bench.invalid>' ed25519 sign never
gpg -q --export >"$w/archive-keyring.gpg"
dists="$w/archive/dists/bookworm-security"
mkdir -p "$dists/main/binary-amd64"
: | gzip -n >"$dists/main/binary-amd64/Packages.gz"
sha=$(sha256sum "$dists/main/binary-amd64/Packages.gz" | cut -d' ' -f1)
size=$(stat -c %s "$dists/main/binary-amd64/Packages.gz")
fmt='+%a, %d %b %Y %H:%M:%S UTC'
printf 'Suite: bookworm-security\nCodename: bookworm-security\nDate: %s\nValid-Until: %s\nSHA256:\n %s %s main/binary-amd64/Packages.gz\n' \
  "$(date -u -d '-1 hour' "$fmt")" "$(date -u -d '+7 days' "$fmt")" "$sha" "$size" >"$dists/Release"
gpg -q --batch --clearsign -o "$dists/InRelease" "$dists/Release"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 "$port" --directory "$w/archive" >/dev/null 2>&1 &
archive_pid=$!
cat >"$w/mirror.toml" <<TOML
[[source]]
name = "bench-security"
uri = "http://127.0.0.1:$port/"
suite = "bookworm-security"
components = ["main"]
architectures = ["amd64"]
keyring = "archive-keyring.gpg"
TOML

RUST_LOG=warn,patchday_server=debug $pd server --data "$w/server" --listen 127.0.0.1:0 \
  --catalog-root "$w/catalog/metadata/1.root.json" --admin-token-file "$w/admin-token" \
  --mirror-every 2s --mirror-config "$w/mirror.toml" \
  --mirror-key "$w/mirror-keys/targets.pem" --mirror-online-keys "$w/online" \
  >"$w/server.out" 2>"$w/server.log" &
server_pid=$!
trap 'kill $server_pid $archive_pid 2>/dev/null || true; gpgconf --kill gpg-agent 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do grep -q 'listening on' "$w/server.out" && break; sleep 0.2; done
url=$(sed -n 's/^patchday server listening on //p' "$w/server.out")
PATCHDAY_SERVER=$url PATCHDAY_TOKEN=$(cat "$w/admin-token") $pd catalog push --repo "$w/catalog"
want=$((runs + 1))
for _ in $(seq 1 600); do
  [ "$(grep -c 'scheduled mirror run finished' "$w/server.log")" -ge "$want" ] && break
  sleep 1
done
python3 - "$w/server.log" "$n" "$runs" <<'PY'
import re, statistics, sys
log, n, runs = open(sys.argv[1]).read(), int(sys.argv[2]), int(sys.argv[3])
strip = lambda s: re.sub(r"\x1b\[[0-9;]*m", "", s)
lines = [strip(l) for l in log.splitlines()]
built = [int(m.group(1)) for l in lines if "built the mirror's working catalog" in l and (m := re.search(r"elapsed_ms=(\d+)", l))]
runs_ms = [int(m.group(1)) for l in lines if "scheduled mirror run finished" in l and (m := re.search(r"elapsed_ms=(\d+)", l))]
docs = [int(m.group(1)) for l in lines if "built the mirror's working catalog" in l and (m := re.search(r"documents=(\d+)", l))]
if len(runs_ms) < runs + 1 or len(built) < runs + 1:
    sys.exit(f"only {len(runs_ms)} runs finished; see {sys.argv[1]}")
b, r = built[1:runs + 1], runs_ms[1:runs + 1]
print(f"{n} updates ({docs[-1]} documents): working catalog built in {statistics.median(b)} ms, run {statistics.median(r)} ms (median of {runs}; builds {b}, runs {r})")
PY
