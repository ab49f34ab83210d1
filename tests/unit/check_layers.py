#!/usr/bin/env python3
"""Each top-level folder is one layer; includes only point down.

Usage: check_layers.py SOURCE_ROOT

LAYERS below says, for every folder of C code, which other folders its
files may #include "folder/...". A file including a folder not in its
row (an upward or sideways include) fails, named by file and line; so
does a cycle between folders, in the table or in the includes found.
bench/ and tests/ sit above everything and are not checked.
Exit 0 pass, 1 fail.
"""

import os
import re
import sys

# folder -> folders it may include (its own is always allowed). Lowest first.
LAYERS = {
    "common": [],
    "proto": ["common"],
    "storage": ["common"],
    "net": ["proto", "common"],
    "catalog": ["storage", "proto", "common"],
    "upstream": ["catalog", "net", "storage", "proto", "common"],
    "replication": ["catalog", "net", "storage", "proto", "common"],
    "server": ["replication", "upstream", "catalog", "net", "storage", "proto",
               "common"],
    "cli": ["proto", "common"],
}

# Known upward includes still being removed: (file, header) -> why. Each
# one must still exist (a stale entry fails), and they are left out of the
# cycle check.
EXCEPTIONS = {
}

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def find_cycle(graph):
    """Return one cycle as a list of nodes, or None."""
    state = {}
    stack = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                c = visit(m)
                if c:
                    return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            c = visit(n)
            if c:
                return c
    return None


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    failures = []
    c = find_cycle({k: set(v) for k, v in LAYERS.items()})
    if c:
        failures.append("layer table has a cycle: " + " -> ".join(c))
    seen_exceptions = set()
    edges = {}
    for folder in sorted(LAYERS):
        top = os.path.join(root, folder)
        if not os.path.isdir(top):
            failures.append("%s/: folder in the layer table is missing" % folder)
            continue
        for dirpath, _, files in os.walk(top):
            for name in sorted(files):
                if not name.endswith((".c", ".h")):
                    continue
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, root)
                with open(path, encoding="utf-8", errors="replace") as f:
                    for lineno, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        if not m or "/" not in m.group(1):
                            continue
                        target = m.group(1).split("/", 1)[0]
                        if target == folder:
                            continue
                        if (rel, m.group(1)) in EXCEPTIONS:
                            seen_exceptions.add((rel, m.group(1)))
                            continue
                        edges.setdefault(folder, set()).add(target)
                        if target not in LAYERS:
                            failures.append("%s:%d: includes %s: %s/ is not a layer "
                                            "(add it to LAYERS in check_layers.py)"
                                            % (rel, lineno, m.group(1), target))
                        elif target not in LAYERS[folder]:
                            failures.append("%s:%d: includes %s: %s/ may include only %s"
                                            % (rel, lineno, m.group(1), folder,
                                               ", ".join(LAYERS[folder]) or "nothing"))
    for key in sorted(set(EXCEPTIONS) - seen_exceptions):
        failures.append("%s: no longer includes %s: drop it from EXCEPTIONS" % key)
    c = find_cycle(edges)
    if c:
        failures.append("folders include each other: " + " -> ".join(c))
    for f in failures:
        print("FAIL: " + f)
    if failures:
        return 1
    print("%d layers, no upward include, no cycle (%d known exception(s))"
          % (len(LAYERS), len(EXCEPTIONS)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
