#!/usr/bin/env bash
# Single-host audit speed: patchday-audit's full fact collection (dpkg, os-release,
# kernels, apt lists, sysctl, CPU NX, cmdline, setuid and listening binaries with
# their ELF hardening, firewall, sshd) plus the hardening checks, against
# `lynis audit system --quick` on the same host in the same run.
#
# Needs: lynis (apt-get install -y lynis); run as root for the fullest picture.
# Usage: bench/audit-host.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v lynis > /dev/null || { echo "missing lynis (apt-get install -y lynis)" >&2; exit 1; }

target="${CARGO_TARGET_DIR:-target}"
cargo build --quiet --release -p patchday-audit --example hostaudit
ours_bin="$target/release/examples/hostaudit"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
now() { date +%s.%N; }
calc() { awk "BEGIN { print $1 }"; }

echo "host:  $(. /etc/os-release; echo "$PRETTY_NAME"), $(uname -r), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "peer:  lynis $(lynis show version 2>/dev/null || echo '?')"

# Ours: median of five runs, each one a fresh process doing the whole collection.
times=()
for _ in 1 2 3 4 5; do
  t0=$(now); "$ours_bin" --quiet 2> "$work/ours.summary"; t1=$(now)
  times+=("$(calc "$t1 - $t0")")
done
ours=$(printf '%s\n' "${times[@]}" | sort -g | sed -n 3p)
echo "ours:  $(printf '%.3f' "$ours") s median of 5 ($ours_bin --quiet): $(cat "$work/ours.summary")"

t0=$(now)
lynis audit system --quick --no-colors --logfile "$work/lynis.log" --report-file "$work/lynis-report.dat" > "$work/lynis.out" 2>&1 || true
t1=$(now)
peer=$(calc "$t1 - $t0")
echo "lynis: $(printf '%.3f' "$peer") s (lynis audit system --quick --no-colors)"
echo "       $(grep -E '^warning\[\]=' -c "$work/lynis-report.dat" || true) warnings, $(grep -E '^suggestion\[\]=' -c "$work/lynis-report.dat" || true) suggestions, hardening index $(sed -n 's/^hardening_index=//p' "$work/lynis-report.dat")"
echo "ratio: $(calc "int($peer / $ours + 0.5)")x faster (target >= 10x)"

# What both say about the kernel settings we check (lynis KRNL-6000 compares sysctl
# values against its default profile).
echo
echo "sysctl keys lynis flags (KRNL-6000) vs ours:"
"$ours_bin" 2>/dev/null | awk '/hardening\.sysctl\./ { print "  ours  " $1 " " $3 }'
keys=$("$ours_bin" 2>/dev/null | awk '/hardening\.sysctl\./ { print $3 }' | paste -sd'|')
grep -E "Result: sysctl key ($keys) " "$work/lynis.log" | sed -e 's/^.*Result: sysctl key /  lynis /' || true
