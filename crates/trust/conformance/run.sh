#!/usr/bin/env bash
# Runs the public TUF conformance suite (theupdateframework/tuf-conformance) against
# patchday-tuf-client and prints the pass count. Not part of CI: it needs a checkout of the
# suite, the python-tuf 7 packages from PyPI and Debian's faketime.
#
#   TUF_CONFORMANCE_DIR=/path/to/tuf-conformance crates/trust/conformance/run.sh [pytest args]
#
# The suite's Python dependencies go into a venv inside the checkout (env/, as its Makefile
# does) unless PYTHON points at an interpreter that already has them.
set -euo pipefail

: "${TUF_CONFORMANCE_DIR:?set TUF_CONFORMANCE_DIR to a checkout of tuf-conformance}"
repo_root="$(cd "$(dirname "$0")/../../.." && pwd)"
suite="$(cd "$TUF_CONFORMANCE_DIR" && pwd)"

command -v faketime >/dev/null || { echo "faketime is missing: apt-get install -y faketime" >&2; exit 2; }

if [ -z "${PYTHON:-}" ]; then
    if [ ! -x "$suite/env/bin/python" ]; then
        python3 -m venv "$suite/env"
        "$suite/env/bin/python" -m pip install --quiet -e "$suite"
    fi
    PYTHON="$suite/env/bin/python"
fi

(cd "$repo_root" && cargo build --quiet -p patchday-trust --bin patchday-tuf-client)
target_dir="${CARGO_TARGET_DIR:-$repo_root/target}"
client="$(cd "$repo_root" && realpath "$target_dir")/debug/patchday-tuf-client"

report="$(mktemp)"
trap 'rm -f "$report"' EXIT
cd "$suite"
set +e
"$PYTHON" -m pytest -q -p no:cacheprovider tuf_conformance --entrypoint "$client" "$@" | tee "$report"
status=${PIPESTATUS[0]}
set -e
summary="$(grep -E '^[=]* ?[0-9]+ (passed|failed)' "$report" | tail -1)"
passed="$(grep -oE '[0-9]+ passed' <<<"$summary" | grep -oE '[0-9]+' || echo 0)"
failed="$(grep -oE '[0-9]+ failed' <<<"$summary" | grep -oE '[0-9]+' || echo 0)"
echo "TUF conformance: $passed passed, $failed failed ($((passed + failed)) run)"
exit "$status"
