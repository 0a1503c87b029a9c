#!/usr/bin/env bash
# Issue 14, point 5: the folder scan under a flood. A throwaway clamd (Debian's
# clamav-daemon, an EICAR hash signature written here), `patchday-agent scan-folders`
# on a root whose applied baseline scans /home/*/Downloads, then FILES files dropped
# into one Downloads folder at once (every tenth one EICAR). Prints the scan's peak
# memory before and after the flood (VmHWM), how long until every hit was quarantined,
# and whether the kernel's inotify queue overflowed (then the scan walks the folder).
# Needs root (clamd as root) and a built agent.
# Usage: bench/scan-flood.sh [FILES] [AGENT_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
files="${1:-20000}"
agent="${2:-target/debug/patchday-agent}"
[ -x "$agent" ] || { echo "build the agent first: cargo build -p patchday-agent (or pass its path)"; exit 1; }
dir="$(mktemp -d)"
clamd_pid=""
scan_pid=""
cleanup() {
  [ -n "$scan_pid" ] && kill "$scan_pid" 2>/dev/null || true
  [ -n "$clamd_pid" ] && kill "$clamd_pid" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

eicar='X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'
mkdir -p "$dir/db"
printf '%s' "$eicar" > "$dir/eicar"
echo "$(md5sum < "$dir/eicar" | cut -d' ' -f1):68:Bench.EICAR" > "$dir/db/bench.hdb"
cat > "$dir/clamd.conf" <<EOF
LocalSocket $dir/clamd.sock
Foreground yes
DatabaseDirectory $dir/db
LogFile $dir/clamd.log
TemporaryDirectory $dir
PidFile $dir/clamd.pid
User root
EOF
/usr/sbin/clamd -c "$dir/clamd.conf" >/dev/null 2>&1 &
clamd_pid=$!
for _ in $(seq 1 600); do
  [ -S "$dir/clamd.sock" ] && break
  sleep 0.1
done

root="$dir/root"
mkdir -p "$root/var/lib/patchday" "$root/home/alice/Downloads" "$dir/state"
python3 - "$root" "$dir/clamd.sock" <<'EOF'
import json, sys
root, sock = sys.argv[1], sys.argv[2]
policy = f'''[baseline]
name = "flood"
version = "1"

[scan]
folders = ["/home/*/Downloads"]
clamd = "unix:{sock}"
max_scans_per_second = 1000
'''
json.dump({"flood": {"version": "1", "policy": policy}},
          open(f"{root}/var/lib/patchday/baselines.json", "w"))
EOF

# Not enrolled: findings stay in the bounded outbox (the server is not the subject).
RUST_LOG=info "$agent" --server http://127.0.0.1:9 --root "$root" --state "$dir/state" \
  scan-folders > "$dir/scan.log" 2>&1 &
scan_pid=$!
for _ in $(seq 1 600); do
  grep -q "watching folder" "$dir/scan.log" && break
  sleep 0.1
done
idle_kb=$(awk '/VmHWM/ {print $2}' "/proc/$scan_pid/status")

start=$(date +%s.%N)
python3 - "$root/home/alice/Downloads" "$files" "$dir/eicar" <<'EOF'
import os, sys
folder, n, eicar = sys.argv[1], int(sys.argv[2]), open(sys.argv[3], "rb").read()
for i in range(n):
    with open(os.path.join(folder, f"file-{i:06d}.bin"), "wb") as f:
        f.write(eicar if i % 10 == 0 else b"clean file %d\n" % i)
EOF
written=$(date +%s.%N)
hits=$(( (files + 9) / 10 ))
while :; do
  held=$(find "$root/var/lib/patchday/quarantine" -name '*.quarantined' | wc -l)
  [ "$held" -ge "$hits" ] && break
  if awk -v a="$(date +%s.%N)" -v b="$start" 'BEGIN { exit !(a - b > 1800) }'; then
    echo "gave up after 1800 s with $held of $hits hits quarantined"; exit 1
  fi
  sleep 0.5
done
done_at=$(date +%s.%N)
peak_kb=$(awk '/VmHWM/ {print $2}' "/proc/$scan_pid/status")
overflow=$(grep -c "more folder events than the kernel queues" "$dir/scan.log" || true)
left_clean=$(find "$root/home/alice/Downloads" -type f | wc -l)
printf 'files %d (hits %d), written in %.1f s, all hits quarantined %.1f s after the first write\n' \
  "$files" "$hits" "$(awk -v a="$written" -v b="$start" 'BEGIN { print a - b }')" \
  "$(awk -v a="$done_at" -v b="$start" 'BEGIN { print a - b }')"
printf 'scan-folders peak memory (VmHWM): %d KiB idle, %d KiB after the flood\n' "$idle_kb" "$peak_kb"
printf 'inotify queue overflows (then a walk of the folder): %d; clean files left in place: %d\n' \
  "$overflow" "$left_clean"
