#!/usr/bin/env bash
# Publishing cost against catalog size (issue 9, point 6): time to add one update to a
# catalog of 10 updates and to one of 10,000 (median of 9 adds each), and the metadata
# kept on disk. Target: the add at 10,000 within 1.5x of the add at 10.
# Usage: bench/catalog-add.sh [SMALL LARGE ADDS]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release -q -p patchday-trust --example add_bench
exec "$CARGO_TARGET_DIR/release/examples/add_bench" "${1:-10}" "${2:-10000}" "${3:-9}"
