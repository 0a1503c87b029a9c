#!/usr/bin/env bash
# Issue 12, point 3: serving a payload kept in an S3-compatible object store (Garage,
# single node, on this machine), streamed through `patchday server` or redirected to a
# presigned URL, against nginx serving the same file from disk, all in one run.
#
# One SIZE-MiB payload (a .deb of random bytes, so nothing compresses) is pushed to a
# server with --content s3://…; then each way is timed with curl: ROUNDS downloads one at
# a time, and ROUNDS rounds of PARALLEL downloads at once (aggregate MB/s). The server's
# CPU seconds per GB served are read from /proc. Every download is checked against the
# payload's sha256.
#
#   nginx        the file from disk (the peer: a static file server's limit here)
#   streamed     GET /v1/tuf/targets/… through patchday (S3 → server → client)
#   redirect     the same GET with --content-redirect: 307, then the presigned URL
#                (what an agent does; curl -L drops the bearer token on the new host)
#   s3-direct    the presigned URL alone (Garage's own limit)
#
# STORE=local (issue 12, point 7) measures the default instead: payloads in the server's
# own directory (`--data DIR`), streamed, against nginx; no Garage, no redirect.
#
# Needs: Garage (PATCHDAY_TEST_S3 set, or `garage` on PATH for .ci/s3-server; not with
# STORE=local), nginx, curl, dpkg-deb, python3. PATCHDAY: the binary [default: target/debug/patchday; build it
# with `cargo build -p patchday-cli`; a release build serves faster].
# Usage: [STORE=s3|local] bench/content-s3.sh [SIZE_MIB ROUNDS PARALLEL]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE="${1:-64}"; ROUNDS="${2:-5}"; PARALLEL="${3:-4}"; STORE="${STORE:-s3}"
PATCHDAY="${PATCHDAY:-$PWD/target/debug/patchday}"
[ -x "$PATCHDAY" ] || { echo "no $PATCHDAY: cargo build -p patchday-cli" >&2; exit 1; }
work="$(mktemp -d)"; s3_dir=""; pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -z "$s3_dir" ] || .ci/s3-server stop "$s3_dir"
  rm -rf "$work"
}
trap cleanup EXIT
if [ "$STORE" = s3 ]; then
  if [ -z "${PATCHDAY_TEST_S3:-}" ]; then
    s3_dir="$work/garage"
    PATCHDAY_TEST_S3="$(.ci/s3-server start "$s3_dir")"
  fi
  # http://KEY:SECRET@HOST:PORT/BUCKET?region=R
  read -r key secret endpoint bucket region < <(python3 -c '
import sys, urllib.parse as u
p = u.urlsplit(sys.argv[1]); q = dict(u.parse_qsl(p.query))
print(p.username, p.password, "%s://%s:%d" % (p.scheme, p.hostname, p.port), p.path.strip("/"), q.get("region", "us-east-1"))
' "$PATCHDAY_TEST_S3")
  printf '%s' "$secret" >"$work/s3-secret"; chmod 600 "$work/s3-secret"
  prefix="bench/$$"
  content=(--content "s3://$bucket/$prefix" --content-endpoint "$endpoint" --content-region "$region"
    --content-access-key-id "$key" --content-secret-file "$work/s3-secret")
else
  content=()
  endpoint="(none: --data DIR/content)"
fi

# The payload: a .deb holding SIZE MiB of random bytes, stored uncompressed.
mkdir -p "$work/pkg/DEBIAN" "$work/pkg/opt/pd-bench"
head -c "$((SIZE << 20))" /dev/urandom >"$work/pkg/opt/pd-bench/blob"
printf 'Package: pd-bench\nVersion: 1.0-1\nArchitecture: all\nMaintainer: bench <bench@example.invalid>\nDescription: bench payload\n' \
  >"$work/pkg/DEBIAN/control"
dpkg-deb -Znone --build "$work/pkg" "$work/pd-bench.deb" >/dev/null
sha="$(sha256sum "$work/pd-bench.deb" | cut -d' ' -f1)"
bytes="$(stat -c %s "$work/pd-bench.deb")"
"$PATCHDAY" keys generate --keys "$work/keys" >/dev/null
"$PATCHDAY" catalog init --keys "$work/keys" --repo "$work/catalog" >/dev/null
"$PATCHDAY" catalog add-deb --keys "$work/keys" --repo "$work/catalog" --id PD-BENCH-1 \
  --emergency bench "$work/pd-bench.deb" >/dev/null
target="$(cd "$work/catalog/targets" && ls | grep "^$sha\." | head -n 1)"

server_pid=""
start_server() {
  "$PATCHDAY" server --data "$work/server" --listen 127.0.0.1:0 \
    --catalog-root "$work/catalog/metadata/1.root.json" --admin-token-file "$work/admin" \
    ${content[@]+"${content[@]}"} "$@" >"$work/server.out" 2>"$work/server.log" &
  server_pid=$!; pids+=("$server_pid")
  for _ in $(seq 1 100); do
    url="$(sed -n 's/^patchday server listening on //p' "$work/server.out")"
    [ -z "$url" ] || break
    sleep 0.1
  done
  [ -n "$url" ] || { cat "$work/server.log" >&2; exit 1; }
}
stop_server() { kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; }
cpu() { awk '{ print $14 + $15 }' "/proc/$server_pid/stat"; }

start_server
token="$(cat "$work/admin")"
PATCHDAY_SERVER="$url" PATCHDAY_TOKEN="$token" "$PATCHDAY" catalog push --repo "$work/catalog" >/dev/null

# nginx serves the same file from disk.
mkdir -p "$work/www"; cp "$work/pd-bench.deb" "$work/www/$target"
nginx_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cat >"$work/nginx.conf" <<EOF
daemon off; user root; worker_processes 2; pid $work/nginx.pid; error_log $work/nginx.err;
events { worker_connections 256; }
http { access_log off; sendfile on; tcp_nopush on;
  server { listen 127.0.0.1:$nginx_port; root $work/www; } }
EOF
nginx -c "$work/nginx.conf" -p "$work" & pids+=("$!")
sleep 0.5

# One download into $1 (curl's own time printed); checked afterwards, outside the timing.
get() { local out="$1"; shift; curl -sf -L "$@" -o "$out" -w '%{time_total}\n'; }
check() {
  for f in "$@"; do
    [ "$(sha256sum "$f" | cut -d' ' -f1)" = "$sha" ] || { echo "wrong bytes in $f" >&2; exit 1; }
    rm -f "$f"
  done
}
median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
measure() { # NAME CURL-ARGS...: single-stream and parallel MB/s (median of ROUNDS)
  local name="$1"; shift
  local before; before="$(cpu)"
  local times=()
  for i in $(seq 1 "$ROUNDS"); do times+=("$(get "$work/one.$i" "$@")"); check "$work/one.$i"; done
  local one; one="$(printf '%s\n' "${times[@]}" | median)"
  local walls=()
  for i in $(seq 1 "$ROUNDS"); do
    local s; s="$(date +%s.%N)"
    local jobs=()
    for j in $(seq 1 "$PARALLEL"); do get "$work/par.$j" "$@" >/dev/null & jobs+=("$!"); done
    wait "${jobs[@]}"
    walls+=("$(awk -v a="$(date +%s.%N)" -v b="$s" 'BEGIN { print a - b }')")
    check "$work"/par.*
  done
  local par; par="$(printf '%s\n' "${walls[@]}" | median)"
  local after; after="$(cpu)"
  local served=$(( ROUNDS * (1 + PARALLEL) ))
  awk -v n="$name" -v b="$bytes" -v one="$one" -v par="$par" -v p="$PARALLEL" \
      -v cpu="$(( after - before ))" -v hz="$(getconf CLK_TCK)" -v served="$served" 'BEGIN {
    printf "%-10s %8.0f %8.0f %8.2f\n", n, b / one / 1e6, p * b / par / 1e6, (cpu / hz) / (served * b / 1e9) }' \
    | tee -a "$work/results"
}

echo "payload: $SIZE MiB ($bytes bytes), $ROUNDS rounds, $PARALLEL parallel; store $STORE, object store $endpoint; $PATCHDAY"
echo "way        MB/s one  MB/s $PARALLEL  patchday CPU s/GB"
measure nginx "http://127.0.0.1:$nginx_port/$target"
measure streamed -H "Authorization: Bearer $token" "$url/v1/tuf/targets/$target"
if [ "$STORE" = local ]; then
  echo
  awk '{ one[$1] = $2; par[$1] = $3 } END {
    r1 = one["streamed"] / one["nginx"]; rp = par["streamed"] / par["nginx"]
    printf "streamed / nginx: %.2fx one at a time, %.2fx %s at once (target >= 0.9x)\n", r1, rp, "'"$PARALLEL"'"
    printf "%s\n", (r1 >= 0.9 && rp >= 0.9) ? "PASS" : "FAIL" }' "$work/results"
  exit 0
fi
stop_server
start_server --content-redirect
measure redirect -H "Authorization: Bearer $token" "$url/v1/tuf/targets/$target"
presigned="$(curl -s -o /dev/null -w '%{redirect_url}' -H "Authorization: Bearer $token" "$url/v1/tuf/targets/$target")"
measure s3-direct "$presigned"
echo
awk '{ one[$1] = $2; par[$1] = $3 } END {
  printf "streamed / nginx: %.2fx one at a time, %.2fx %s at once\n", one["streamed"] / one["nginx"], par["streamed"] / par["nginx"], "'"$PARALLEL"'"
  printf "redirect / nginx: %.2fx one at a time, %.2fx %s at once\n", one["redirect"] / one["nginx"], par["redirect"] / par["nginx"], "'"$PARALLEL"'"
  printf "streamed / s3-direct: %.2fx one at a time (the server'"'"'s own cost on top of the store)\n", one["streamed"] / one["s3-direct"]
}' "$work/results"
