#!/usr/bin/env python3
"""Package.swift's target dependencies against the modules' imports (issue #28).

Every module a target's sources import must be a declared dependency (no undeclared), and every
declared dependency must be imported by at least one of its sources (no declared-but-unused).
Products of packages (ArgumentParser) count under their product name. Exit 1 with one line per
mismatch; 0 when they agree.
Usage: python3 Scripts/check_imports.py [ROOT]
"""
import os
import re
import sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
pkg = open(os.path.join(root, "Package.swift")).read()
system = {"Foundation", "FoundationXML", "Glibc", "Darwin", "Dispatch", "Testing", "XCTest", "Synchronization", "os"}
targets = {}
for m in re.finditer(r'\.(?:target|executableTarget|testTarget)\(name: "(\w+)"(?:, path: "([^"]+)")?, dependencies: \[(.*?)\]\s*(?:,\s*path: "([^"]+)")?', pkg, re.S):
    name, path, deps = m.group(1), m.group(2) or m.group(4), m.group(3)
    declared = set(re.findall(r'(?<!package: )"(\w+)"', deps)) - set(re.findall(r'package: "([\w-]+)"', deps))
    kind = "Tests" if m.group(0).startswith(".testTarget") else "Sources"
    targets[name] = (declared, path or f"{kind}/{name}")
problems = []
for name, (declared, path) in sorted(targets.items()):
    imported = set()
    for dirpath, _, files in os.walk(os.path.join(root, path)):
        for f in files:
            if f.endswith(".swift"):
                for line in open(os.path.join(dirpath, f)):
                    m = re.match(r'\s*(?:@testable\s+|@_exported\s+)?import\s+(?:struct |enum |class |func )?(\w+)', line)
                    if m:
                        imported.add(m.group(1))
    imported -= system
    for mod in sorted(imported - declared):
        problems.append(f"{name}: imports {mod} but does not declare it in Package.swift")
    for mod in sorted(declared - imported):
        problems.append(f"{name}: declares {mod} in Package.swift but no source imports it")
for p in problems:
    print(p)
sys.exit(1 if problems else 0)
