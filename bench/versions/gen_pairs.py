#!/usr/bin/env python3
"""Writes version pairs (A<TAB>B per line) for bench/versions.sh.

usage: gen_pairs.py deb VERSIONS_FILE COUNT > pairs.tsv
       gen_pairs.py rpm COUNT > pairs.tsv

deb: VERSIONS_FILE holds "package<TAB>version" lines from the apt lists and the dpkg
status file. Pairs are a mix of real versions (same package in different suites,
neighbours in sorted order, random), mutations of real versions (epochs, ~, +, leading
zeros, binNMU suffixes) and generated edge cases. Fixed seed: the same input gives the
same pairs.
rpm: generated rpm-like [epoch:]version[-release] strings with ~, ^, letters, leading
zeros and odd separators, plus near-miss pairs.
"""
import random
import sys
from collections import defaultdict

rng = random.Random(20260101)


def token_string(alphabet, n):
    return "".join(rng.choice(alphabet) for _ in range(n))


DEB_TOKENS = ["0", "1", "2", "9", "10", "00", "01", "123", "a", "b", "z", "A", "Z",
              ".", ".", "+", "~", "~", "-", ":", "dfsg", "rc", "b1", "deb12u", "ubuntu"]


def deb_edge():
    s = rng.choice("0123456789") + token_string(DEB_TOKENS, rng.randint(0, 6))
    if rng.random() < 0.2:
        s = f"{rng.randint(0, 3)}:{s}"
    return s


def mutate_deb(v):
    m = rng.randint(0, 11)
    if m == 0:
        return v + "~"
    if m == 1:
        return v + "+b1"
    if m == 2:
        return ("1:" + v) if ":" not in v else v.split(":", 1)[1]
    if m == 3:
        return v + ".0"
    if m == 4:
        return v.replace(".", ".0", 1)
    if m == 5:
        return v + "-0" if "-" not in v else v + ".1"
    if m == 6:
        return v.replace("-", "~", 1)
    if m == 7:
        i = rng.randrange(len(v))
        return v[:i] + rng.choice("0123456789.+~a") + v[i + 1:]
    if m == 8:
        return v + "a"
    if m == 9:
        return v + "+"
    if m == 10:
        return v.replace("+", "~", 1)
    return v


def deb(path, count):
    by_pkg = defaultdict(set)
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 2 and parts[1]:
                by_pkg[parts[0]].add(parts[1])
    versions = sorted({v for vs in by_pkg.values() for v in vs})
    multi = [sorted(vs) for vs in by_pkg.values() if len(vs) > 1]
    pairs = []
    quarter = count // 4
    # Same package, different versions (bookworm vs bookworm-security/updates vs installed).
    for _ in range(quarter):
        if not multi:
            break
        vs = rng.choice(multi)
        a, b = rng.sample(vs, 2)
        pairs.append((a, b))
    # Neighbours in sorted order and random real pairs.
    if len(versions) > 1:
        for _ in range(quarter):
            i = rng.randrange(len(versions) - 1)
            pairs.append((versions[i], versions[i + 1]))
        for _ in range(quarter // 2):
            pairs.append((rng.choice(versions), rng.choice(versions)))
        for _ in range(quarter // 2):
            v = rng.choice(versions)
            pairs.append((v, mutate_deb(v)))
    while len(pairs) < count:
        a = deb_edge()
        b = mutate_deb(a) if rng.random() < 0.5 else deb_edge()
        pairs.append((a, b))
    for a, b in pairs:
        if "\t" not in a + b and "\n" not in a + b:
            print(f"{a}\t{b}")


RPM_TOKENS = ["0", "1", "2", "9", "10", "00", "01", "007", "123", "a", "b", "z", "A",
              "rc", "alpha", "git", "el9", "fc40", ".", ".", ".", "_", "+", "~", "^", "-"]


def rpm_field():
    s = rng.choice(["0", "1", "2", "10", "a", "1.0", "2.4"]) + token_string(RPM_TOKENS, rng.randint(0, 6))
    return s.replace("-", ".")


def rpm_evr():
    s = rpm_field()
    if rng.random() < 0.6:
        s += "-" + rpm_field()
    if rng.random() < 0.2:
        s = f"{rng.choice(['0', '1', '2', '', '01'])}:{s}"
    return s


def mutate_rpm(v):
    m = rng.randint(0, 7)
    if m == 0:
        return v + "~rc1"
    if m == 1:
        return v + "^git1"
    if m == 2:
        return v + ".0"
    if m == 3:
        return "0:" + v if ":" not in v else v
    if m == 4:
        return v.split("-")[0]
    if m == 5:
        i = rng.randrange(len(v))
        return v[:i] + rng.choice("0123456789.~^a_") + v[i + 1:]
    if m == 6:
        return v.replace(".", "_", 1)
    return v + "a"


def rpm(count):
    for _ in range(count):
        a = rpm_evr()
        b = mutate_rpm(a) if rng.random() < 0.5 else rpm_evr()
        print(f"{a}\t{b}")


if __name__ == "__main__":
    if sys.argv[1] == "deb":
        deb(sys.argv[2], int(sys.argv[3]))
    else:
        rpm(int(sys.argv[2]))
