#!/usr/bin/env bash
# OSV engine vs `cargo audit` on the same RustSec snapshot and the same Cargo.lock files.
#
# Accuracy: the set of (crate, version, advisory id) each tool reports per lockfile
# (vulnerabilities and informational warnings; yanked-crate warnings are not advisories
# and are left out).
# Speed: wall and CPU time of N runs of each tool per lockfile (each run loads the whole
# database, parses the lockfile and matches), as a ratio.
#
# Inputs:
#   ../shared/data/rustsec-osv/crates   RustSec's OSV export (required; the bench says so and
#                                       exits 0 when it is missing)
#   cargo-audit                         on PATH, or CARGO_AUDIT=/path/to/cargo-audit
#                                       (cargo install cargo-audit --locked)
#   RUSTSEC_DB (optional)               a checkout of rustsec/advisory-db (markdown format);
#                                       otherwise the OSV files are converted to that format
#                                       here, so both tools read the very same advisories.
# Usage: bench/audit-osv.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
RUNS=${1:-10}
OSV=${OSV_DIR:-$REPO/../shared/data/rustsec-osv/crates}
if [ ! -d "$OSV" ]; then
  echo "audit-osv: $OSV is missing (shared RustSec OSV snapshot); nothing to compare"
  exit 0
fi
CARGO_AUDIT=${CARGO_AUDIT:-$(command -v cargo-audit || true)}
if [ -z "$CARGO_AUDIT" ]; then
  echo "audit-osv: cargo-audit not found; install it with: cargo install cargo-audit --locked"
  exit 0
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
cargo build --release -q -p patchday-audit --example audit_cli
OURS=$CARGO_TARGET_DIR/release/examples/audit_cli

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# 1. The advisory database in cargo-audit's format.
DB=$WORK/db
if [ -n "${RUSTSEC_DB:-}" ]; then
  mkdir -p "$DB" && cp -r "$RUSTSEC_DB/crates" "$DB/"
  DB_WHAT="rustsec/advisory-db checkout $RUSTSEC_DB"
else
  DB_WHAT="converted from the OSV snapshot"
  python3 - "$OSV" "$DB" <<'PY'
import json, os, sys
src, dst = sys.argv[1], sys.argv[2]
def q(s): return json.dumps(s)
for name in sorted(os.listdir(src)):
    if not name.endswith(".json"): continue
    a = json.load(open(os.path.join(src, name)))
    for aff in a.get("affected", []):
        pkg = aff["package"]["name"]
        patched, unaffected = [], []
        for r in aff.get("ranges", []):
            if r.get("type") != "SEMVER": continue
            ev = r["events"]
            intro = [e["introduced"] for e in ev if "introduced" in e]
            # events come as introduced/fixed pairs in order (RustSec's export)
            if intro and intro[0] not in ("0", "0.0.0-0"):
                unaffected.append("< " + intro[0])
            for i, e in enumerate(ev):
                nxt = next((x["introduced"] for x in ev[i+1:] if "introduced" in x), None)
                if "fixed" in e:
                    patched.append(">= %s" % e["fixed"] + (", < %s" % nxt if nxt else ""))
                if "last_affected" in e:
                    patched.append("> %s" % e["last_affected"] + (", < %s" % nxt if nxt else ""))
                if "introduced" in e and i > 0 and "fixed" not in ev[i-1] and "last_affected" not in ev[i-1]:
                    pass
        info = (aff.get("database_specific") or {}).get("informational")
        d = os.path.join(dst, "crates", pkg); os.makedirs(d, exist_ok=True)
        lines = ["```toml", "[advisory]", "id = %s" % q(a["id"]), "package = %s" % q(pkg),
                 "date = %s" % q(a.get("published", "2000-01-01")[:10])]
        if a.get("aliases"): lines.append("aliases = [%s]" % ", ".join(q(x) for x in a["aliases"]))
        if info: lines.append("informational = %s" % q(info))
        if a.get("withdrawn"): lines.append("withdrawn = %s" % q(a["withdrawn"][:10]))
        lines += ["", "[versions]", "patched = [%s]" % ", ".join(q(x) for x in patched)]
        if unaffected: lines.append("unaffected = [%s]" % ", ".join(q(x) for x in unaffected))
        lines += ["```", "", "# %s" % (a.get("summary") or a["id"]), "", (a.get("details") or "-")]
        open(os.path.join(d, a["id"] + ".md"), "w").write("\n".join(lines) + "\n")
PY
fi

# 2. Lockfiles: this repository's, cargo-audit's own, and one made from the snapshot
#    with every boundary version (introduced, fixed, last_affected and their neighbours).
LOCKS=$WORK/locks; mkdir -p "$LOCKS"
cp Cargo.lock "$LOCKS/patchday.lock" 2>/dev/null || true
CA_LOCK=$(ls ~/.cargo/registry/src/*/cargo-audit-*/Cargo.lock 2>/dev/null | head -1 || true)
[ -n "$CA_LOCK" ] && cp "$CA_LOCK" "$LOCKS/cargo-audit.lock"
python3 - "$OSV" "$LOCKS/boundaries.lock" <<'PY'
import json, os, re, sys
src, out = sys.argv[1], sys.argv[2]
seen = set()
def add(n, v):
    if not re.fullmatch(r"\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?", v) or v == "0.0.0-0": return
    seen.add((n, v))
for name in sorted(os.listdir(src)):
    if not name.endswith(".json"): continue
    a = json.load(open(os.path.join(src, name)))
    for aff in a.get("affected", []):
        n = aff["package"]["name"]
        for r in aff.get("ranges", []):
            for e in r["events"]:
                for v in e.values():
                    add(n, v)
                    m = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", v)
                    if m:
                        x, y, z = map(int, m.groups())
                        add(n, "%d.%d.%d" % (x, y, z + 1))
                        if z > 0: add(n, "%d.%d.%d" % (x, y, z - 1))
                        elif y > 0: add(n, "%d.%d.99" % (x, y - 1))
with open(out, "w") as f:
    f.write("version = 3\n")
    for n, v in sorted(seen):
        f.write('\n[[package]]\nname = "%s"\nversion = "%s"\nsource = "registry+https://github.com/rust-lang/crates.io-index"\n' % (n, v))
PY

# Each tool's findings as "crate@version advisory-id" lines.
ids_ours() { { "$OURS" --no-host --osv "$OSV" --cargo-lock "$1" --format json || true; } | python3 -c '
import json, re, sys
p = json.load(sys.stdin)
out = set()
for a in p["actions"]:
    for f in a["findings"]:
        # "crate version in LOCK is affected by ID[, ID...] (summary)": records that
        # share an alias are one vulnerability (OSV), listed together.
        m = re.match(r"(\S+) (\S+) in .* is affected by ([A-Z0-9-]+(?:, [A-Z0-9-]+)*)", f["reason"])
        if m:
            for i in m.group(3).split(", "):
                out.add("%s@%s %s" % (m.group(1), m.group(2), i))
print("\n".join(sorted(out)))'; }
ids_theirs() { { "$CARGO_AUDIT" audit --db "$DB" --no-fetch --stale --json -f "$1" 2>/dev/null || true; } | python3 -c '
import json, sys
r = json.load(sys.stdin)
out = set()
items = list(r["vulnerabilities"]["list"])
for kind, ws in r.get("warnings", {}).items():
    items += [w for w in ws if w.get("advisory")]
for v in items:
    out.add("%s@%s %s" % (v["package"]["name"], v["package"]["version"], v["advisory"]["id"]))
print("\n".join(sorted(out)))'; }

cpu_of() { # runs "$@" RUNS times; prints "wall cpu" seconds
  local t0 c0 t1 c1
  t0=$(date +%s.%N); c0=$(awk '{print $14+$15+$16+$17}' /proc/$$/stat)
  for _ in $(seq "$RUNS"); do "$@" >/dev/null 2>&1 || true; done
  t1=$(date +%s.%N); c1=$(awk '{print $14+$15+$16+$17}' /proc/$$/stat)
  python3 -c "print('%.3f %.3f' % (($t1-$t0), ($c1-$c0)/100))"
}

echo "audit-osv: $(ls "$OSV" | wc -l) OSV files; cargo-audit $("$CARGO_AUDIT" --version 2>/dev/null | head -1) reading a database $DB_WHAT; $RUNS runs per tool and lockfile"
printf '%-18s %6s %8s %8s %6s %6s %10s %10s %7s\n' lockfile crates ours cargo-au agree diff ours_wall_s ca_wall_s ratio
total_diff=0
for L in "$LOCKS"/*.lock; do
  n=$(grep -c '^\[\[package\]\]' "$L")
  ids_ours "$L" > "$WORK/ours.txt"
  ids_theirs "$L" > "$WORK/theirs.txt"
  no=$(grep -c . "$WORK/ours.txt" || true); nt=$(grep -c . "$WORK/theirs.txt" || true)
  both=$(comm -12 "$WORK/ours.txt" "$WORK/theirs.txt" | grep -c . || true)
  d=$(( no + nt - 2 * both ))
  total_diff=$(( total_diff + d ))
  read -r ow _oc < <(cpu_of "$OURS" --no-host --osv "$OSV" --cargo-lock "$L" --format json)
  read -r tw _tc < <(cpu_of "$CARGO_AUDIT" audit --db "$DB" --no-fetch --stale --json -f "$L")
  ratio=$(python3 -c "print('%.1f' % ($tw/$ow))")
  printf '%-18s %6s %8s %8s %6s %6s %10s %10s %6sx\n' "$(basename "$L")" "$n" "$no" "$nt" "$both" "$d" "$ow" "$tw" "$ratio"
  if [ "$d" -gt 0 ]; then
    echo "  only ours:       $(comm -23 "$WORK/ours.txt" "$WORK/theirs.txt" | tr '\n' ' ')"
    echo "  only cargo-audit: $(comm -13 "$WORK/ours.txt" "$WORK/theirs.txt" | tr '\n' ' ')"
  fi
done
echo "audit-osv: total differing (crate, version, advisory) findings: $total_diff (ratio = cargo-audit wall time / ours, same runs)"
