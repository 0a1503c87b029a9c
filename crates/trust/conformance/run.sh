#!/usr/bin/env bash
# Runs the public TUF conformance suite (theupdateframework/tuf-conformance) against
# patchday-tuf-client, prints the pass count and fails unless every test ran and passed
# (113 of 113 at the pinned suite commit). .ci/run runs it on every CI run.
#
#   crates/trust/conformance/run.sh [pytest args]
#
# The suite: TUF_CONFORMANCE_DIR, or else ../shared/third_party/tuf-conformance beside
# the repository (CI's copy, pinned, with its LICENSE). It is only read: it is copied to
# a temporary directory and run there.
# Python: the suite's pinned dependencies (its pyproject.toml) go into a virtualenv in
# target/tuf-conformance-venv (TUF_CONFORMANCE_VENV) unless PYTHON names an interpreter
# that has them. The suite moves the client's clock with Debian's faketime.
# EXPECTED (default 113): the least number of passed tests that counts as success.
# CLIENT: a built patchday-tuf-client to use instead of building the debug one.
set -euo pipefail

repo_root="$(cd "$(dirname "$0")/../../.." && pwd)"
expected="${EXPECTED:-113}"

if [ -z "${TUF_CONFORMANCE_DIR:-}" ] && [ -d "$repo_root/../shared/third_party/tuf-conformance" ]; then
    TUF_CONFORMANCE_DIR="$repo_root/../shared/third_party/tuf-conformance"
fi
: "${TUF_CONFORMANCE_DIR:?set TUF_CONFORMANCE_DIR to a checkout of tuf-conformance (none at ../shared/third_party/tuf-conformance)}"
suite="$(cd "$TUF_CONFORMANCE_DIR" && pwd)"
[ -f "$suite/LICENSE" ] || { echo "no LICENSE in $suite: not the pinned suite" >&2; exit 2; }

command -v faketime >/dev/null || { echo "faketime is missing: apt-get install -y faketime" >&2; exit 2; }

target_dir="$(cd "$repo_root" && mkdir -p "${CARGO_TARGET_DIR:-target}" && realpath "${CARGO_TARGET_DIR:-target}")"
if [ -z "${PYTHON:-}" ]; then
    venv="${TUF_CONFORMANCE_VENV:-$target_dir/tuf-conformance-venv}"
    # The suite's pinned dependencies, as its pyproject.toml lists them.
    deps=("securesystemslib[crypto]==1.4.0" "tuf==7.0.0" "pytest==9.1.1" "pytest-json-report==1.5.0")
    stamp="$venv/.patchday-deps"
    if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "${deps[*]}" ]; then
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${deps[@]}"
        echo "${deps[*]}" >"$stamp"
    fi
    PYTHON="$venv/bin/python"
fi
grep -q '"tuf==7.0.0"' "$suite/pyproject.toml" \
    || echo "warning: $suite/pyproject.toml no longer pins tuf==7.0.0; update the list in $0" >&2

if [ -z "${CLIENT:-}" ]; then
    (cd "$repo_root" && cargo build --quiet --workspace --bin patchday-tuf-client)
    CLIENT="$target_dir/debug/patchday-tuf-client"
fi
[ -x "$CLIENT" ] || { echo "no client at $CLIENT" >&2; exit 2; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -r "$suite/." "$work/suite"
chmod -R u+w "$work/suite"
cd "$work/suite"
set +e
PYTHONDONTWRITEBYTECODE=1 "$PYTHON" -m pytest -q -p no:cacheprovider tuf_conformance \
    --entrypoint "$CLIENT" "$@" | tee "$work/report"
status=${PIPESTATUS[0]}
set -e
summary="$(grep -E '^[=]* ?[0-9]+ (passed|failed)' "$work/report" | tail -1 || true)"
passed="$(grep -oE '[0-9]+ passed' <<<"$summary" | grep -oE '[0-9]+' || echo 0)"
failed="$(grep -oE '[0-9]+ failed' <<<"$summary" | grep -oE '[0-9]+' || echo 0)"
echo "TUF conformance: $passed passed, $failed failed ($((passed + failed)) run)"
if [ "$status" -ne 0 ]; then
    exit "$status"
fi
# Extra pytest arguments (-k ...) select fewer tests on purpose; a full run must reach EXPECTED.
if [ "$#" -eq 0 ] && [ "$passed" -lt "$expected" ]; then
    echo "TUF conformance: $passed passed, fewer than the $expected expected" >&2
    exit 1
fi
