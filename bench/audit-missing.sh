#!/usr/bin/env bash
# Missing security updates, accuracy against peers on this host (issue 4, point 5):
# patchday-audit's missing-security-update findings against
#   (a) `apt-get -s upgrade` filtered to the security suite (Inst lines whose origin
#       names a -security archive), and
#   (b) Lynis test PKGS-7392 (`vulnerable_package[]=` in its report), which runs
#       `apt-get --dry-run --show-upgraded upgrade | grep '-security' | grep ^Inst`.
# Prints the counts, the set differences both ways with an explanation computed from
# the versions and origins read here, and whether ours is a superset. Then builds a
# throwaway --root image whose point release hides a pending security fix and shows
# that ours catches it while `apt-get -s -o Dir=ROOT upgrade` misses it.
#
# Needs: apt-get, dpkg; lynis (apt-get install -y lynis) and root for part (b).
# Env: LYNIS_REPORT=FILE reads an existing report instead of running Lynis.
# Usage: bench/audit-missing.sh
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-target}"
cargo build --quiet --release -p patchday-audit --examples
ours_bin="$target/release/examples/missing_updates"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

vgt() { dpkg --compare-versions "$1" gt "$2"; }
veq() { dpkg --compare-versions "$1" eq "$2"; }

# Inst lines as NAME|OLD|NEW|ORIGINS (NAME without :arch), one per line.
parse_inst() {
  sed -nE 's/^Inst ([^ ]+) \[([^]]*)\] \(([^ ]+) ([^[]*)\[[^]]*\]\).*$/\1|\2|\3|\4/p' |
    sed -E 's/^([^:|]+):[^|]*\|/\1|/; s/ *$//; s/, /,/g'
}
# The names apt-get -s upgrade lists as "kept back".
kept_back() {
  awk '/have been kept back:/ { on = 1; next } on && /^  / { for (i = 1; i <= NF; i++) print $i; next } { on = 0 }'
}
# binary package -> source package, for the source counts.
dpkg-query -W -f '${Package} ${source:Package}\n' | sort -u > "$work/sources"
count_sources() { sort -u | join - "$work/sources" | awk '{ print $2 }' | sort -u | wc -l; }

echo "host:  $(. /etc/os-release; echo "$PRETTY_NAME"), $(dpkg-query -W -f '${db:Status-Abbrev}\n' | grep -c '^.i') packages installed"
echo "lists: $(ls /var/lib/apt/lists/*_InRelease /var/lib/apt/lists/*_Release 2> /dev/null | sed 's#.*/##; s/_InRelease$//; s/_Release$//' | paste -sd' ')"

# --- ours ---------------------------------------------------------------------------
"$ours_bin" > "$work/ours.txt" 2> "$work/ours.err"
awk '{ print $1 }' "$work/ours.txt" | sort -u > "$work/O"
echo "ours:  $(wc -l < "$work/O") binary packages ($(count_sources < "$work/O") source packages) with a missing security update  [$ours_bin]"
sed 's/^/       /' "$work/ours.err"

# --- apt ----------------------------------------------------------------------------
apt_cmd=(apt-get -s -o Debug::NoLocking=1 upgrade)
LC_ALL=C "${apt_cmd[@]}" > "$work/apt.out" 2> /dev/null
parse_inst < "$work/apt.out" | sort -u > "$work/apt.inst"
awk -F'|' '$4 ~ /-security/ { print $1 }' "$work/apt.inst" | sort -u > "$work/A"
kept_back < "$work/apt.out" | sed 's/:.*//' | sort -u > "$work/kept"
apt-mark showhold 2> /dev/null | sed 's/:.*//' | sort -u > "$work/held"
echo "apt:   $(wc -l < "$work/A") binary packages ($(count_sources < "$work/A") source packages) upgraded from a -security origin, of $(wc -l < "$work/apt.inst") upgrades  [${apt_cmd[*]} | Inst lines with -security]"

# The exact definition, from apt's own version tables: installed lower than a version
# that apt lists from a -security source (not what apt would upgrade to).
dpkg-query -W -f '${db:Status-Abbrev} ${Package}:${Architecture} ${Version}\n' |
  awk '$1 ~ /^.i/ { print $2 }' > "$work/installed"
xargs apt-cache policy < "$work/installed" 2> /dev/null | awk '
  /^[^ ]/ { name = $1; sub(/:$/, "", name); inst = ""; v = ""; next }
  /^  Installed:/ { inst = $2; next }
  /^ (\*\*\*|   ) [^ ]+ [0-9-]+$/ { v = ($1 == "***") ? $2 : $1; next }
  /^        [0-9-]+ / && /-security/ { if (v != "") print name, inst, v }' | sort -u > "$work/policy.sec"
while read -r n i v; do
  if dpkg --compare-versions "$i" lt "$v"; then echo "${n%%:*}"; fi
done < "$work/policy.sec" | sort -u > "$work/T"
echo "truth: $(wc -l < "$work/T") binary packages ($(count_sources < "$work/T") source packages) installed below a version apt-cache policy lists from a -security source  [apt-cache policy <installed packages>]"

# --- lynis --------------------------------------------------------------------------
lynis_ok=0
if [ -n "${LYNIS_REPORT:-}" ]; then
  cp "$LYNIS_REPORT" "$work/lynis.dat" && lynis_ok=1
  lynis_how="report $LYNIS_REPORT"
elif command -v lynis > /dev/null && [ "$(id -u)" = 0 ]; then
  # Lynis runs `apt-get update` first unless told not to; keep the lists the other two
  # tools read.
  printf 'refresh-repositories=no\n' > "$work/norefresh.prf"
  chmod 600 "$work/norefresh.prf"
  lynis_how="lynis $(lynis show version 2> /dev/null) audit system --quick --no-colors --tests PKGS-7392 --profile norefresh.prf"
  lynis audit system --quick --no-colors --tests PKGS-7392 --profile "$work/norefresh.prf" \
    --logfile "$work/lynis.log" --report-file "$work/lynis.dat" > "$work/lynis.out" 2>&1 || true
  [ -s "$work/lynis.dat" ] && lynis_ok=1
else
  lynis_how="lynis not run (not installed or not root; apt-get install -y lynis, or LYNIS_REPORT=FILE)"
fi
if [ "$lynis_ok" = 1 ]; then
  sed -n 's/^vulnerable_package\[\]=//p' "$work/lynis.dat" | sed 's/:.*//' | sort -u > "$work/L"
  echo "lynis: $(wc -l < "$work/L") binary packages ($(count_sources < "$work/L") source packages) as vulnerable_package[]  [$lynis_how]"
else
  : > "$work/L"
  echo "lynis: -  [$lynis_how]"
fi

# --- explanations -------------------------------------------------------------------
# Why a package we report is not in the peer's list.
explain_ours_only() {
  local name=$1 peer=$2 inst old new origins installed secv secsuite point
  read -r _ installed _ secv secsuite point _ < <(grep -m1 "^$name " "$work/ours.txt")
  point=${point#point=}
  inst=$(grep -m1 "^$name|" "$work/apt.inst" || true)
  if [ -n "$inst" ]; then
    IFS='|' read -r _ old new origins <<< "$inst"
    if [ "$peer" = lynis ] && [[ "$origins" == *-security* ]]; then
      echo "in-apt-not-lynis|apt upgrades it from $origins but Lynis's report lacks it (Lynis ran at another time or without root)"
    elif vgt "$new" "$secv"; then
      echo "point-release-newer|apt's candidate $new comes from $origins only (a point release), newer than $secv in $secsuite: apt upgrades to $new, which includes the fix, but a -security filter misses it"
    elif veq "$new" "$secv"; then
      echo "same-version-other-origin|apt's candidate $new equals $secv in $secsuite but apt names only $origins"
    else
      echo "candidate-below-security|apt's candidate $new from $origins is lower than $secv in $secsuite (pinned or preferred origin): apt's upgrade leaves the security fix pending"
    fi
  elif grep -qx "$name" "$work/held"; then
    echo "on-hold|package is on hold (apt-mark showhold): apt-get upgrade skips it; installed $installed, $secsuite has $secv"
  elif grep -qx "$name" "$work/kept"; then
    echo "kept-back|apt-get upgrade keeps it back (its upgrade needs new packages or removals; dist-upgrade would take $secv from $secsuite)"
  else
    local cand
    cand=$(LC_ALL=C apt-cache policy "$name" 2> /dev/null | sed -n 's/^ *Candidate: //p' | head -1)
    if [ -n "$cand" ] && veq "$cand" "$installed"; then
      echo "candidate-is-installed|apt's candidate is the installed $installed (pin priority), so apt shows no upgrade; $secsuite has $secv"
    else
      echo "unexplained|apt does not upgrade it (candidate ${cand:-none}); installed $installed, $secsuite has $secv, point release ${point}"
    fi
  fi
}
# Why a package the peer reports is not in ours.
explain_peer_only() {
  local name=$1 inst old new origins
  inst=$(grep -m1 "^$name|" "$work/apt.inst" || true)
  if [ -n "$inst" ]; then
    IFS='|' read -r _ old new origins <<< "$inst"
    if [[ "$origins" != *-security* ]]; then
      echo "lynis-pattern|Lynis's grep '-security' is parsed as grep -s -e 'curity' and matches 'curity' anywhere in the Inst line; apt takes $new from $origins, no security origin"
    else
      echo "ours-misses|apt upgrades $old -> $new from $origins, ours has no finding (a bug in checks::missing_security_updates)"
    fi
  else
    echo "not-in-apt-now|not upgradable in this apt run (Lynis's report is from another time)"
  fi
}

compare() { # peer-name peer-file
  local peer=$1 P=$2 n
  local both only_ours only_peer
  both=$(comm -12 "$work/O" "$P" | wc -l)
  only_ours=$(comm -23 "$work/O" "$P" | wc -l)
  only_peer=$(comm -13 "$work/O" "$P" | wc -l)
  echo
  echo "== ours vs $peer: both $both, ours only $only_ours, $peer only $only_peer; ours is $([ "$only_peer" = 0 ] && echo "a SUPERSET" || echo "NOT a superset") of $peer"
  : > "$work/classes.$peer"
  for n in $(comm -23 "$work/O" "$P"); do
    explain_ours_only "$n" "$peer" | sed "s/^/$n|/" >> "$work/classes.$peer"
  done
  for n in $(comm -13 "$work/O" "$P"); do
    explain_peer_only "$n" | sed "s/^/$n|/" | sed 's/|/|peer-only:/' >> "$work/classes.$peer"
  done
  if [ -s "$work/classes.$peer" ]; then
    echo "   differences by class (count, class):"
    awk -F'|' '{ print $2 }' "$work/classes.$peer" | sort | uniq -c | sed 's/^/   /'
    echo "   each difference:"
    awk -F'|' '{ printf "   %-28s %-26s %s\n", $1, $2, $3 }' "$work/classes.$peer"
  fi
}
echo
echo "== ours vs apt-cache policy version tables: ours only $(comm -23 "$work/O" "$work/T" | wc -l), tables only $(comm -13 "$work/O" "$work/T" | wc -l)"
comm -3 "$work/O" "$work/T" | sed 's/^/   differs: /'
compare apt "$work/A"
[ "$lynis_ok" = 1 ] && compare lynis "$work/L"
if [ "$lynis_ok" = 1 ]; then
  echo
  echo "== lynis vs apt filter: $(comm -3 "$work/A" "$work/L" | wc -l) differences (PKGS-7392 is that same apt-get filter)"
fi
# Where we agree with apt, do we agree on the version?
agree=0; disagree=0
for n in $(comm -12 "$work/O" "$work/A"); do
  secv=$(awk -v n="$n" '$1 == n { print $4; exit }' "$work/ours.txt")
  new=$(grep -m1 "^$n|" "$work/apt.inst" | cut -d'|' -f3)
  if veq "$secv" "$new"; then agree=$((agree + 1)); else
    disagree=$((disagree + 1)); echo "   version differs: $n ours $secv, apt $new"; fi
done
echo "   on the $((agree + disagree)) packages both report, the security version agrees on $agree"

# --- CVEs the pending updates fix, from their changelogs (--debs) -----------------------
# One .deb per source package (its smallest binary at the security version) is enough:
# a changelog belongs to the source. AUDIT_MISSING_DEBS=0 skips the download.
if [ "${AUDIT_MISSING_DEBS:-1}" != 0 ]; then
  echo
  mkdir -p "$work/debs" && chmod 755 "$work" "$work/debs"
  awk '{ print $1 "=" $4 }' "$work/ours.txt" > "$work/want"
  if (cd "$work/debs" && xargs apt-get download --print-uris < "$work/want" 2> /dev/null) |
      awk '{ f = $2; sub(/_.*/, "", f); print f, $3, $2 }' | sort > "$work/uris" &&
    join "$work/uris" "$work/sources" | sort -k4,4 -k2,2n | awk '!seen[$4]++ { print $1 }' | sort > "$work/pick" &&
    [ -s "$work/pick" ]; then
    picks=$(join "$work/pick" <(sed 's/=/ /' "$work/want" | sort) | awk '{ print $1 "=" $2 }')
    (cd "$work/debs" && apt-get download $picks > /dev/null 2>&1) || true
    "$ours_bin" --debs "$work/debs" > "$work/ours.debs" 2> /dev/null
    ndebs=$(ls "$work/debs"/*.deb 2> /dev/null | wc -l)
    mb=$(du -sm "$work/debs" | cut -f1)
    with=$(awk '$7 != "ids=-"' "$work/ours.debs" | wc -l)
    cves=$(awk '{ sub(/^ids=/, "", $7); gsub(/,/, "\n", $7); print $7 }' "$work/ours.debs" | grep '^CVE-' | sort -u | wc -l)
    srcs=$(awk '$7 != "ids=-" { print $1 }' "$work/ours.debs" | sort -u | join - "$work/sources" | awk '{ print $2 }' | sort -u | wc -l)
    echo "== CVEs fixed by the pending updates, from changelog.Debian.gz ($ndebs .deb files, ${mb} MB, one per source, apt-get download; $ours_bin --debs DIR)"
    echo "   $with of $(wc -l < "$work/ours.txt") findings ($srcs of $(count_sources < "$work/O") source packages) name CVEs; $cves distinct CVE ids"
    nocl=$(awk '$7 == "ids=-" { print $1 }' "$work/ours.debs" | sort -u | join - "$work/sources" | awk '{ print $2 }' | sort -u | paste -sd' ')
    [ -n "$nocl" ] && echo "   sources without CVE ids (no CVE in the changelog since the installed version, or the picked binary's doc dir is a symlink): $nocl"
    awk '$7 != "ids=-" { n = split($7, a, ","); printf "   %-28s %s -> %s: %d ids, e.g. %s\n", $1, $2, $4, n, substr(a[1], 5) }' "$work/ours.debs" | head -5
  else
    echo "== CVEs from changelogs: skipped (apt-get download --print-uris gave nothing; no network?)"
  fi
fi

# --- the point-release case in a throwaway root -------------------------------------
# Three synthetic packages, installed at 1.0-1:
#   pd-newer-point: bookworm-updates 1.0-1+deb12u2 > bookworm-security 1.0-1+deb12u1
#   pd-between:     bookworm-updates 1.0-1+deb12u1 < bookworm-security 1.0-1+deb12u2
#   pd-current:     installed = bookworm-security 1.0-1+deb12u1 (a control: no finding)
# apt is run twice: default priorities, and with bookworm-updates preferred
# (APT::Default-Release=bookworm-updates, priority 990), as a site pin would.
echo
echo "== point release hiding a security fix, in a throwaway --root"
root="$work/root"
mkdir -p "$root/var/lib/dpkg" "$root/var/lib/apt/lists/partial" "$root/var/cache/apt/archives/partial" \
  "$root/etc/apt/sources.list.d" "$root/etc/apt/preferences.d" "$root/etc/apt/apt.conf.d"
cp /etc/os-release "$root/etc/os-release"
cp /var/lib/dpkg/status "$root/var/lib/dpkg/status"
cp /var/lib/apt/lists/*_InRelease /var/lib/apt/lists/*_Release "$root/var/lib/apt/lists/" 2> /dev/null || true
cp /var/lib/apt/lists/*_Packages* "$root/var/lib/apt/lists/"
cp /etc/apt/sources.list "$root/etc/apt/" 2> /dev/null || true
cp /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list "$root/etc/apt/sources.list.d/" 2> /dev/null || true
stanza() { # name version
  printf 'Package: %s\nVersion: %s\nArchitecture: all\nMaintainer: Patchday bench <bench@example.org>\nInstalled-Size: 1\nFilename: pool/main/p/%s/%s_%s_all.deb\nSize: 1000\nSHA256: %064d\nDescription: synthetic package for bench/audit-missing.sh\n\n' \
    "$1" "$2" "$1" "$1" "$2" 0
}
installed_stanza() {
  printf 'Package: %s\nStatus: install ok installed\nPriority: optional\nSection: misc\nInstalled-Size: 1\nMaintainer: Patchday bench <bench@example.org>\nArchitecture: all\nVersion: %s\nDescription: synthetic package for bench/audit-missing.sh\n\n' "$1" "$2"
}
# Decompress a suite's Packages index (apt reads the plain file as well) and append.
add_to_suite() { # suite-regex stanzas...
  local f plain
  f=$(ls "$root"/var/lib/apt/lists/*_dists_"$1"_main_binary-*_Packages* | head -1)
  plain=${f%.lz4}; plain=${plain%.gz}; plain=${plain%.xz}
  if [ "$f" != "$plain" ]; then /usr/lib/apt/apt-helper cat-file "$f" > "$plain"; rm "$f"; fi
  shift
  printf '\n' >> "$plain"
  cat >> "$plain"
}
{ stanza pd-newer-point 1.0-1+deb12u2; stanza pd-between 1.0-1+deb12u1; } | add_to_suite bookworm-updates
{ stanza pd-newer-point 1.0-1+deb12u1; stanza pd-between 1.0-1+deb12u2; stanza pd-current 1.0-1+deb12u1; } | add_to_suite bookworm-security
{ installed_stanza pd-newer-point 1.0-1; installed_stanza pd-between 1.0-1; installed_stanza pd-current 1.0-1+deb12u1; } >> "$root/var/lib/dpkg/status"

"$ours_bin" --root "$root" 2> /dev/null | grep '^pd-' > "$work/root.ours" || true
apt_root=(apt-get -s -o Dir="$root" -o Dir::State::status="$root/var/lib/dpkg/status" -o Debug::NoLocking=1 -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=)
LC_ALL=C "${apt_root[@]}" upgrade 2> /dev/null | parse_inst | grep '^pd-' > "$work/root.apt" || true
LC_ALL=C "${apt_root[@]}" -o APT::Default-Release=bookworm-updates upgrade 2> /dev/null | parse_inst | grep '^pd-' > "$work/root.apt.pinned" || true
echo "   ours  ($ours_bin --root ROOT):"
sed 's/^/     /' "$work/root.ours"
echo "   apt   (apt-get -s -o Dir=ROOT -o Dir::State::status=ROOT/var/lib/dpkg/status upgrade), Inst lines:"
sed 's/^/     /' "$work/root.apt"
echo "   apt pinned (same, -o APT::Default-Release=bookworm-updates), Inst lines:"
sed 's/^/     /' "$work/root.apt.pinned"
for p in pd-newer-point pd-between pd-current; do
  secv=$(awk -v p="$p" '$1 == p { print $4 }' "$work/root.ours")
  for run in apt apt.pinned; do
    line=$(grep -m1 "^$p|" "$work/root.$run" || true)
    IFS='|' read -r _ _ new origins <<< "${line:-x|||}"
    a=0; [[ "$origins" == *-security* ]] && a=1
    if [ -n "$secv" ] && [ "$a" = 0 ]; then
      verdict="ours catches it (security $secv); the apt -security filter misses it"
      if [ -z "$new" ]; then verdict="$verdict (apt upgrades nothing)"
      elif dpkg --compare-versions "$new" ge "$secv"; then verdict="$verdict (apt upgrades to $new from $origins, which includes the fix)"
      else verdict="$verdict (apt upgrades to $new from $origins, leaving the security fix pending)"; fi
    elif [ -n "$secv" ]; then verdict="both report it (apt: $new from $origins)"
    elif [ "$a" = 1 ]; then verdict="ONLY apt reports it"
    else verdict="neither reports it (nothing pending)"; fi
    printf '   %-15s %-10s %s\n' "$p" "${run/./ }" "$verdict"
  done
done
