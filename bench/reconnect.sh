#!/usr/bin/env bash
# Issue 10, point 6 (push): a fleet reconnecting at once after a server restart.
# Starts a real `patchday server` (fresh data directory, loopback) once with the old
# listen backlog (1024, what tokio's TcpListener::bind used) and once with the new one
# (--listen-backlog, default 4096), and each time opens N connections at the same moment
# (python asyncio), each sending one `GET /v1/health`. Counts answered requests, resets,
# refusals and timeouts. The kernel caps any backlog at net.core.somaxconn (printed).
# Usage: bench/reconnect.sh [N [BACKLOG_BEFORE BACKLOG_AFTER]]
# PATCHDAY: the binary (default target/release/patchday, else target/debug/patchday).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-3000}
BEFORE=${2:-1024}
AFTER=${3:-4096}
BIN=${PATCHDAY:-target/release/patchday}
[ -x "$BIN" ] || BIN=target/debug/patchday
[ -x "$BIN" ] || { echo "build it first: cargo build --release -p patchday-cli (or cargo build --workspace)"; exit 1; }
ulimit -n "$((N * 2 + 1024))" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
echo "reconnect: N=$N binary=$BIN somaxconn=$(cat /proc/sys/net/core/somaxconn) tcp_max_syn_backlog=$(cat /proc/sys/net/ipv4/tcp_max_syn_backlog) syncookies=$(cat /proc/sys/net/ipv4/tcp_syncookies) open-files=$(ulimit -n)"
WORK=$(mktemp -d /var/tmp/pd-reconnect.XXXXXX)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

run() {
  local backlog=$1
  rm -rf "$WORK/data"
  "$BIN" server --data "$WORK/data" --listen 127.0.0.1:0 --listen-backlog "$backlog" \
    --max-connections $((N + 1000)) >"$WORK/out" 2>"$WORK/err" &
  PID=$!
  local url=
  for _ in $(seq 1 300); do
    url=$(sed -n 's/^patchday server listening on //p' "$WORK/out")
    [ -n "$url" ] && break
    sleep 0.1
  done
  [ -n "$url" ] || { echo "server did not start:"; cat "$WORK/err"; exit 1; }
  local port=${url##*:}
  python3 - "$port" "$N" "$backlog" <<'EOF'
import asyncio, sys, time
port, n, backlog = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
REQ = b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
async def one(start):
    await start.wait()
    t = time.monotonic()
    res = await attempt()
    return res, time.monotonic() - t
async def attempt():
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 30)
        w.write(REQ)
        await w.drain()
        head = await asyncio.wait_for(r.read(12), 30)
        w.close()
        return "ok" if head.startswith(b"HTTP/1.1 200") else "other:" + head.decode(errors="replace")
    except ConnectionResetError:
        return "reset"
    except ConnectionRefusedError:
        return "refused"
    except (asyncio.TimeoutError, TimeoutError):
        return "timeout"
    except OSError as e:
        return "oserror:%s" % e.errno
async def main():
    start = asyncio.Event()
    tasks = [asyncio.create_task(one(start)) for _ in range(n)]
    await asyncio.sleep(0.5)
    t0 = time.monotonic()
    start.set()
    both = await asyncio.gather(*tasks)
    took = time.monotonic() - t0
    res = [r for r, _ in both]
    lat = sorted(d for _, d in both)
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
    counts = {}
    for x in res:
        counts[x] = counts.get(x, 0) + 1
    bad = n - counts.get("ok", 0)
    print(f"backlog={backlog}: {counts.get('ok', 0)}/{n} answered, {counts.get('reset', 0)} resets, "
          f"{bad} failed in all {dict(sorted(counts.items()))}, all done in {took:.1f} s; "
          f"per connection p50 {pct(0.5):.2f} s p99 {pct(0.99):.2f} s max {lat[-1]:.2f} s")
asyncio.run(main())
EOF
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
}

run "$BEFORE"
run "$AFTER"
