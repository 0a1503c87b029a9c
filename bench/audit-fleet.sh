#!/usr/bin/env bash
# Fleet aggregation: 100,000 synthetic hosts over 2,000 distinct (release, source,
# version) triples, 200 packages per host, 100 tenants. Target: the aggregation under
# one second of CPU. Peer in the same run: the same matching done per host without
# deduplication (measured on 1% of the hosts and scaled), reported as a ratio.
# Whole-process CPU and peak memory come from /usr/bin/time when it is installed.
# Usage: bench/audit-fleet.sh [HOSTS DISTINCT PER_HOST TENANTS]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release -q -p patchday-audit --example fleet_bench
BIN=$CARGO_TARGET_DIR/release/examples/fleet_bench
ARGS=("${1:-100000}" "${2:-2000}" "${3:-200}" "${4:-100}")
echo "audit-fleet: hosts=${ARGS[0]} distinct=${ARGS[1]} per_host=${ARGS[2]} tenants=${ARGS[3]}"
if [ -x /usr/bin/time ]; then
  /usr/bin/time -f "whole process: user %U s, system %S s, wall %e s, max RSS %M KiB" "$BIN" "${ARGS[@]}"
else
  echo "(/usr/bin/time not installed: apt-get install -y time; whole-process figures skipped)"
  "$BIN" "${ARGS[@]}"
fi
