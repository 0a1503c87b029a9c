#!/usr/bin/env bash
# Version-ordering benchmark for crates/pkg: compares patchday_pkg::version::compare_deb
# with `dpkg --compare-versions` and compare_rpm with librpm (python3-rpm), on pairs
# drawn from the apt lists and the dpkg status file plus generated edge cases.
# Prints the agreement count, every disagreement, and time per comparison with ratios.
#
# usage (from the repo root): bench/versions.sh [DEB_PAIRS] [RPM_PAIRS]
set -euo pipefail
cd "$(dirname "$0")/.."
DEB_PAIRS=${1:-12000}
RPM_PAIRS=${2:-12000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-pkg}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

cargo build --quiet --release -p patchday-pkg --example vercmp
VERCMP="$CARGO_TARGET_DIR/release/examples/vercmp"

# package<TAB>version from every Packages list apt has, and from the dpkg status file.
extract() { awk '/^Package: /{p=$2} /^Version: /{print p "\t" $2}'; }
shopt -s nullglob
for f in /var/lib/apt/lists/*_Packages /var/lib/apt/lists/*_Packages.lz4 \
         /var/lib/apt/lists/*_Packages.gz /var/lib/apt/lists/*_Packages.xz; do
  case "$f" in
    *.lz4) lz4cat "$f" ;;
    *.gz) zcat "$f" ;;
    *.xz) xzcat "$f" ;;
    *) cat "$f" ;;
  esac | extract
done > "$WORK/versions.tsv"
[ -r /var/lib/dpkg/status ] && extract < /var/lib/dpkg/status >> "$WORK/versions.tsv"
echo "== Debian: $(cut -f2 "$WORK/versions.tsv" | sort -u | wc -l) distinct real versions from apt lists + dpkg status"

python3 bench/versions/gen_pairs.py deb "$WORK/versions.tsv" "$DEB_PAIRS" > "$WORK/deb-pairs.tsv"
"$VERCMP" deb --dpkg < "$WORK/deb-pairs.tsv"

echo
echo "== RPM"
RPM_PY=/usr/bin/python3
if ! "$RPM_PY" -c 'import rpm' 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing python3-rpm (librpm's Python bindings) ..."
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-rpm >/dev/null
  fi
fi
if ! "$RPM_PY" -c 'import rpm' 2>/dev/null; then
  echo "SKIP: python3-rpm not available; install it (apt-get install python3-rpm) to compare with librpm"
  exit 0
fi
echo "librpm $("$RPM_PY" -c 'import rpm; print(rpm.__version__)')"
python3 bench/versions/gen_pairs.py rpm "$RPM_PAIRS" > "$WORK/rpm-pairs.tsv"
"$VERCMP" rpm < "$WORK/rpm-pairs.tsv" > "$WORK/rpm-ours.tsv"
"$RPM_PY" bench/versions/rpm_cmp.py < "$WORK/rpm-pairs.tsv" > "$WORK/rpm-librpm.tsv"
paste "$WORK/rpm-ours.tsv" "$WORK/rpm-librpm.tsv" | awk -F'\t' '
  $6 == "ERR" { refused++; next }
  $3 == $6 { agree++; next }
  { bad++; printf "DISAGREE %s vs %s: ours %s librpm %s\n", $1, $2, $3, $6 }
  END { printf "agreement with librpm rpmverCmp: %d / %d pairs (%d disagreements, %d pairs librpm refuses to parse)\n",
        agree, agree + bad, bad, refused }'
