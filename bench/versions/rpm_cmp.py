#!/usr/bin/python3
"""Reads A<TAB>B pairs on stdin, prints A<TAB>B<TAB>-1|0|1|ERR using librpm (python3-rpm,
rpm.ver = rpmverParse + rpmverCmp). Timing of librpm itself goes to stderr."""
import sys
import time

import rpm

pairs = [l.rstrip("\n").split("\t") for l in sys.stdin if "\t" in l]
out = []
t0 = time.perf_counter()
for a, b in pairs:
    try:
        x, y = rpm.ver(a), rpm.ver(b)
        out.append(f"{a}\t{b}\t{(x > y) - (x < y)}")
    except Exception:  # librpm refuses e.g. an empty version
        out.append(f"{a}\t{b}\tERR")
elapsed = time.perf_counter() - t0
sys.stdout.write("\n".join(out) + "\n")
print(f"librpm via python3-rpm: {elapsed * 1e9 / max(len(pairs), 1):.0f} ns per comparison "
      f"(includes Python call overhead)", file=sys.stderr)
