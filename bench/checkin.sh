#!/usr/bin/env bash
# Server check-in load: a real server (in-process, SQLite in a temporary directory) with
# a signed catalog of UPDATES updates, HOSTS enrolled hosts in one group with every update
# approved, then CONCURRENCY clients (reqwest, keep-alive) posting CHECKINS check-ins over
# HTTP, each with a PACKAGES-package inventory that some of the updates apply to (so
# assignments are computed and the director signs per-host metadata). A warm-up round
# (one check-in per host) is not measured; a run with one client at a time follows.
# Reports check-ins/s, latency percentiles, CPU per check-in by thread group (server
# tokio workers, sqlx SQLite threads, load client), and checks the assignment counts and
# one answer's director signature.
# Target: at least 10x the check-in rate of 10,000 hosts polling hourly with jitter
# (10,000 / 3600 s = 2.8/s, so >= 27.8 check-ins/s) on this 2-core machine, with p99 < 1 s.
# Whole-process CPU and peak memory (server and load client together) come from
# /usr/bin/time when it is installed.
# Usage: bench/checkin.sh [HOSTS UPDATES PACKAGES CONCURRENCY CHECKINS [PRESENT]]
# PRESENT: how many catalog updates name packages each host has (default: 40% of them);
# bench/checkin-scale.sh compares 50 and 10,000 updates at the same PRESENT.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release -q -p patchday-server --example checkin_bench
BIN=$CARGO_TARGET_DIR/release/examples/checkin_bench
ARGS=("${1:-1000}" "${2:-50}" "${3:-800}" "${4:-32}" "${5:-5000}" ${6:+"$6"})
echo "checkin: hosts=${ARGS[0]} updates=${ARGS[1]} packages=${ARGS[2]} concurrency=${ARGS[3]} checkins=${ARGS[4]}"
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
status=0
if [ -x /usr/bin/time ]; then
  /usr/bin/time -f "whole process: user %U s, system %S s, wall %e s, max RSS %M KiB" "$BIN" "${ARGS[@]}" 2>&1 | tee "$LOG" || status=$?
else
  echo "(/usr/bin/time not installed: apt-get install -y time; whole-process figures skipped)"
  "$BIN" "${ARGS[@]}" 2>&1 | tee "$LOG" || status=$?
fi
# The verdict last, after /usr/bin/time's line.
echo
grep -E '^(PASS|FAIL):' "$LOG" || { echo "FAIL: the benchmark did not finish (exit $status)"; if [ "$status" -eq 0 ]; then status=1; fi; }
exit "$status"
