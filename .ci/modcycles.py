#!/usr/bin/env python3
"""Reports cycles between the top-level modules of each crate: module A uses B (a `crate::B`
path in A's files) and B uses A, directly or through others. Exits 1 if any crate has one."""
import os, re, sys
from collections import defaultdict

def modules(src):
    mods = {}
    for entry in sorted(os.listdir(src)):
        path = os.path.join(src, entry)
        if entry in ("lib.rs", "main.rs"):
            continue
        if entry.endswith(".rs"):
            mods[entry[:-3]] = [path]
        elif os.path.isdir(path):
            files = []
            for root, _, names in os.walk(path):
                files += [os.path.join(root, n) for n in names if n.endswith(".rs")]
            mods[entry] = files
    return mods

def strip_comments(text):
    return "\n".join(l.split("//")[0] for l in text.splitlines())

def cycles(src):
    mods = modules(src)
    uses = defaultdict(set)
    for m, files in mods.items():
        for f in files:
            text = strip_comments(open(f).read())
            # drop test modules: dependencies of tests are not the module's
            text = text.split("#[cfg(test)]")[0]
            for used in re.findall(r"\bcrate::(\w+)", text):
                if used != m and used in mods:
                    uses[m].add(used)
    found = []
    def reach(a, b, seen):
        if a == b:
            return True
        seen.add(a)
        return any(reach(n, b, seen) for n in uses[a] if n not in seen)
    for a in sorted(mods):
        for b in sorted(uses[a]):
            if reach(b, a, set()):
                found.append((a, b))
    return found

bad = False
for src in sys.argv[1:]:
    for a, b in cycles(src):
        print(f"{src}: module cycle: {a} uses {b}, and {b} reaches {a}")
        bad = True
sys.exit(1 if bad else 0)
