#!/usr/bin/env bash
# Issue 12, point 7: what one agent's audit facts cost on the wire and in server CPU,
# sent whole (agents before issue 12) against by parts, for this machine's real facts.
# Usage: bench/facts.sh [--root DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run -q --release -p patchday-audit --example facts_upload -- "$@"
