#!/usr/bin/env bash
# Archive sync: `patchday mirror run` following the real Debian security archive
# (bookworm-security main, pinned to Debian's archive keyring, signing as the delegated
# mirror role), selecting newer versions of the source packages installed on this
# machine, against `apt-get download` and `aptly mirror create/update` of the same binary
# packages, in the same run. Each tool runs twice: a first sync from empty, and a sync
# with nothing new. Reports wall time, bytes fetched and peak RSS (/usr/bin/time).
#
# Needs: root (apt-get install of aptly when missing, CI-style), curl, the archive
# answering. Skips with a message when the archive does not answer.
# Usage: bench/mirror.sh            # both phases, every tool
#        bench/mirror.sh second     # only the nothing-new phase, on the last run's state
#        BENCH_EXCLUDE='linux-image-* linux-headers-* linux-source-* linux-doc-*' bench/mirror.sh
#                                   # a smaller package set (more binary packages left out)
# Work and downloads live in $CARGO_TARGET_DIR/bench-mirror (default target/): the first
# sync of each tool starts from an empty directory every time; `second` reuses them.
set -euo pipefail
cd "$(dirname "$0")/.."
phases="${1:-all}"
case "$phases" in all | second) ;; *) echo "usage: $0 [all|second]" >&2; exit 2 ;; esac

URI=http://security.debian.org/debian-security
SUITE=bookworm-security
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
arch=$(dpkg --print-architecture)
target="${CARGO_TARGET_DIR:-target}"
work="$(realpath -m "$target/bench-mirror")"
mkdir -p "$work"
export DEBIAN_FRONTEND=noninteractive

if ! curl -fsS -m 20 -o /dev/null "$URI/dists/$SUITE/InRelease"; then
  echo "skipped: $URI/dists/$SUITE/InRelease did not answer; this benchmark needs the real archive"
  exit 0
fi
[ -r "$KEYRING" ] || apt-get install -y -q debian-archive-keyring
command -v aptly > /dev/null || apt-get install -y -q --no-install-recommends aptly
command -v gpgv > /dev/null || apt-get install -y -q --no-install-recommends gpgv

extra_exclude="${BENCH_EXCLUDE:-}"
need_kb=$([ -z "$extra_exclude" ] && echo 2600000 || echo 800000)
free_kb=$(df -Pk "$work" | awk 'NR == 2 { print $4 }')
if [ "$phases" = all ] && [ "$free_kb" -lt "$need_kb" ]; then
  echo "needs about $((need_kb / 1024)) MB free in $work (one tool's copy of the packages at a time); $((free_kb / 1024)) MB free" >&2
  exit 1
fi
cargo build --quiet --release -p patchday-cli
pd="$(realpath "$target/release/patchday")"

# Received bytes on every interface but lo: a cross-check of what each tool says it
# fetched (other traffic on the machine counts too).
rx() { awk 'NR > 2 && $1 != "lo:" { sub(/^[^:]*:/, ""); split($0, f, " "); s += f[1] } END { printf "%.0f\n", s }' /proc/net/dev; }
# measure NAME CMD...: runs CMD under /usr/bin/time; appends "NAME|seconds|KB|rx bytes".
results="$work/results.txt"
measure() {
  local name=$1
  shift
  local r0 r1
  r0=$(rx)
  # A fresh bash runs the step (the exported functions below): /usr/bin/time runs programs.
  /usr/bin/time -f "%e %M" -o "$work/time.txt" bash -c '"$@"' step "$@"
  r1=$(rx)
  read -r secs kb < "$work/time.txt"
  echo "$name|$secs|$kb|$((r1 - r0))" >> "$results"
}
bytes_in() { du -sb --apparent-size "$@" 2> /dev/null | awk '{ s += $1 } END { print s + 0 }'; }

echo "host:    $(. /etc/os-release; echo "$PRETTY_NAME"), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "archive: $URI $SUITE main ($arch), keyring $KEYRING"
echo "peers:   $(apt-get --version | head -1), aptly $(aptly version 2> /dev/null | sed -n 's/aptly version: //p')"
: > "$results"

# ---- patchday mirror run ----
pdw="$work/patchday"
set -f # the patterns are not file names
excl_toml=$(printf '"%s", ' "*-dbg" "*-dbgsym" $extra_exclude | sed 's/, $//')
set +f
cat > "$work/mirror.toml" << EOF
[[source]]
name = "debian-security"
uri = "$URI"
suite = "$SUITE"
components = ["main"]
architectures = ["$arch"]
keyring = "$KEYRING"
exclude = [$excl_toml]
EOF
mirror_run() {
  "$pd" mirror run --config "$work/mirror.toml" --repo "$pdw/catalog" --keys "$pdw/keys" \
    --dpkg-status /var/lib/dpkg/status --work "$pdw/work" \
    --as mirror --key-file "$pdw/mirror-keys/targets.pem" > "$pdw/$1.out"
}
export pd work pdw
export -f mirror_run
if [ "$phases" = all ]; then
  rm -rf "$pdw"
  mkdir -p "$pdw"
  "$pd" keys generate --keys "$pdw/keys" > /dev/null
  "$pd" keys generate --keys "$pdw/mirror-keys" > /dev/null
  "$pd" catalog init --keys "$pdw/keys" --repo "$pdw/catalog" > /dev/null
  "$pd" catalog delegate --keys "$pdw/keys" --repo "$pdw/catalog" --role mirror \
    --key-file "$pdw/mirror-keys/targets.pem" > /dev/null
  measure "patchday mirror run, first sync" mirror_run first
fi
measure "patchday mirror run, nothing new" mirror_run second

# The package set the mirror imported: every payload of the catalog, as name=version.
pkgset="$work/packages.txt"
if [ "$phases" = all ]; then
  find "$pdw/catalog/targets" -name '*.deb' -print0 | while IFS= read -r -d '' f; do
    dpkg-deb --show --showformat='${Package} ${Version} ${Architecture}\n' "$f"
  done | sort -u > "$pkgset"
  # The catalog's copies of the payloads are not needed for the nothing-new phase (it
  # reads metadata only); removed to keep the benchmark's disk use near 2 GB per tool.
  find "$pdw/catalog/targets" -name '*.deb' -delete
fi
npkgs=$(wc -l < "$pkgset")
nsources=$(grep -c '^  DEB-' "$pdw/first.out" || true)

# ---- apt-get download, with a private apt configuration and state ----
aw="$work/apt"
apt_() {
  apt-get -o "Dir::Etc::sourcelist=$aw/sources.list" -o "Dir::Etc::sourceparts=$aw/sources.list.d" \
    -o "Dir::Etc::preferencesparts=$aw/preferences.d" -o "Dir::State=$aw/state" \
    -o "Dir::State::status=/var/lib/dpkg/status" -o "Dir::Cache=$aw/cache" \
    -o "APT::Architecture=$arch" -o "APT::Architectures::=$arch" -o "Acquire::Languages=none" \
    -o "Debug::NoLocking=1" -q "$@"
}
apt_sync() {
  apt_ update > "$aw/$1.update.out"
  (cd "$aw/debs" && xargs -a "$aw/wanted.txt" bash -c 'apt_ download "$@"' apt > "$aw/$1.download.out")
}
apt_update() { apt_ update > "$aw/$1.update.out"; }
export aw arch
export -f apt_ apt_sync apt_update
if [ "$phases" = all ]; then
  rm -rf "$aw"
  mkdir -p "$aw/sources.list.d" "$aw/preferences.d" "$aw/state/lists/partial" "$aw/cache/archives/partial" "$aw/debs"
  echo "deb [signed-by=$KEYRING] $URI $SUITE main" > "$aw/sources.list"
  awk '{ print $1 ":" $3 "=" $2 }' "$pkgset" > "$aw/wanted.txt"
  measure "apt-get update + download, first sync" apt_sync first
fi
if [ -n "$(ls -A "$aw/debs" 2> /dev/null)" ]; then
  measure "apt-get update + download, nothing new" apt_sync second
  apt_debs=$(bytes_in "$aw/debs")
  # Removed to keep the benchmark's disk use near 2 GB at a time (a `second` rerun then
  # measures apt-get update only).
  rm -f "$aw/debs"/*.deb
else
  measure "apt-get update (its .debs were removed after the full run), nothing new" apt_update second
  apt_debs="(removed)"
fi

# ---- aptly mirror create + update, filtered to the same packages ----
xw="$work/aptly"
cat > "$work/aptly.conf" << EOF
{ "rootDir": "$xw", "architectures": ["$arch"], "gpgDisableVerify": false, "downloadConcurrency": 4 }
EOF
aptly_sync() {
  if [ "$1" = first ]; then
    aptly -config="$work/aptly.conf" mirror create -keyring="$KEYRING" \
      -architectures="$arch" -filter="$(cat "$xw.filter")" -filter-with-deps=false -force-components \
      bench-security "$URI" "$SUITE" main > "$xw.$1.create.out"
  fi
  aptly -config="$work/aptly.conf" mirror update -keyring="$KEYRING" bench-security > "$xw.$1.update.out"
}
export xw KEYRING URI SUITE arch
export -f aptly_sync
if [ "$phases" = all ]; then
  rm -rf "$xw"
  awk '{ printf "%s(Name (= %s), $Version (= %s), $Architecture (= %s))", (NR > 1 ? " | " : ""), $1, $2, $3 }' "$pkgset" > "$xw.filter"
  measure "aptly mirror create + update, first sync" aptly_sync first
fi
measure "aptly mirror update, nothing new" aptly_sync second

# ---- report ----
pd_bytes() { sed -n 's/.*, \([0-9]*\) bytes fetched.*/\1/p' "$pdw/$1.out" | awk '{ s += $1 } END { print s + 0 }'; }
echo
echo "package set: $npkgs binary packages of $nsources source versions (newer versions of source packages installed here; left out: *-dbg *-dbgsym $extra_exclude)"
echo "first sync of patchday: $(pd_bytes first) bytes fetched (its own count); second: $(grep -q unchanged "$pdw/second.out" && echo "unchanged, one InRelease" || pd_bytes second)"
echo "apt-get: $apt_debs bytes of .debs, $(bytes_in "$aw/state/lists") bytes of lists on disk"
echo "aptly:   $(bytes_in "$xw/pool") bytes in its pool"
echo
echo "| run | wall time | peak RSS | bytes received (all interfaces) |"
echo "|---|---|---|---|"
while IFS='|' read -r name secs kb bytes; do
  printf '| %s | %s s | %s MB | %s |\n' "$name" "$secs" "$((kb / 1024))" "$(printf "%'d" "$bytes")"
done < "$results"
