#!/usr/bin/env bash
# Check-in cost against catalog size (issue 9, point 6): bench/checkin.sh with 50 updates
# and with 10,000, each host having packages of the same number of them (PRESENT, default
# 20), so the assignment count is the same; compares the server CPU per check-in.
# Target: at 10,000 updates within 1.5x of 50.
# Usage: bench/checkin-scale.sh [HOSTS PRESENT CHECKINS]
set -euo pipefail
cd "$(dirname "$0")/.."
HOSTS=${1:-200}; PRESENT=${2:-20}; CHECKINS=${3:-2000}
cpu() { grep -E "^  server CPU per check-in" "$1" | sed -E 's/.*check-in ([0-9.]+) ms.*/\1/'; }
small=$(mktemp); large=$(mktemp); trap 'rm -f "$small" "$large"' EXIT
bench/checkin.sh "$HOSTS" 50 800 16 "$CHECKINS" "$PRESENT" | tee "$small"
bench/checkin.sh "$HOSTS" 10000 800 16 "$CHECKINS" "$PRESENT" | tee "$large"
a=$(cpu "$small"); b=$(cpu "$large")
echo
echo "server CPU per check-in: ${a} ms at 50 updates, ${b} ms at 10,000 (same ${PRESENT} updates present per host)"
awk -v a="$a" -v b="$b" 'BEGIN { r = b / a; printf "%s: %.2fx (target <= 1.5x)\n", (r <= 1.5 ? "PASS" : "FAIL"), r; exit (r <= 1.5 ? 0 : 1) }'
