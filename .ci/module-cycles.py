#!/usr/bin/env python3
"""Import cycles between the dataplane's modules.

Reads every .rs file under dataplane/src (tests included), finds the paths
that start with `crate::` or `super::` (in `use` lines and inline, `{...}`
groups expanded; comments and string literals ignored), and resolves each
to a node of a graph:

- a top-level module of the crate (`config`, `tap`, `engine`, `sys`, ...);
- for `xdp`, `pipeline` and `chain`, their submodules (`xdp::socket`,
  `pipeline::chain`, `chain::control`, ...); a name the parent re-exports
  (`pub use socket::XskSocket` in xdp/mod.rs, or `pub use crate::sys`)
  resolves to the module that defines it, and the parent's own items are
  the node `xdp` (etc.).

A parent's `pub use child::...` lines are its facade, not a dependency of
the parent, so they add no edge; everything else does (a `use`, or an
inline path in code). It then reports every strongly connected component
of more than one node (a cycle), with one cycle through it, and exits 1 if
there is any.

Usage: .ci/module-cycles.py [SRC_DIR]   (default: dataplane/src)
"""

import os
import re
import sys

GROUPS = {"xdp", "pipeline", "chain"}

PATH_RE = re.compile(r"\b((?:crate|super)(?:::(?:super|self))*)((?:::[A-Za-z_][A-Za-z0-9_]*)*)(::\{)?")


def strip(text):
    """Removes comments, string and char literals (keeps line structure)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    if text[i] == "\n":
                        out.append("\n")
                    i += 1
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'r(#*)"', text[i:])
            end = '"' + m.group(1)
            j = text.find(end, i + len(m.group(0)))
            j = n if j < 0 else j + len(end)
            out.append('""' + "\n" * text[i:j].count("\n"))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + "\n" * text[i:j].count("\n"))
            i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:i + 4]) or re.match(r"'\\u\{[0-9a-fA-F]+\}'", text[i:i + 12]):
            j = text.find("'", i + 2)
            out.append("' '")
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def module_path(src, path):
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return rel


def split_group(body):
    """Items of a `{...}` group body, top-level commas only."""
    items, depth, cur = [], 0, ""
    for ch in body:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            items.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        items.append(cur.strip())
    return items


def group_end(text, start):
    depth = 1
    i = start
    while i < len(text) and depth:
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
        i += 1
    return i - 1


def expand(prefix, text, start):
    """Absolute paths of a `prefix::{...}` group starting at text[start]."""
    end = group_end(text, start)
    out = []
    for item in split_group(text[start:end]):
        item = re.sub(r"\s+as\s+\w+$", "", item).replace(" ", "").replace("\n", "")
        if not item or item == "self":
            out.append(prefix)
        elif "{" in item:
            head, rest = item.split("{", 1)
            head = head.rstrip(":")
            sub = [p for p in head.split("::") if p]
            for inner in split_group(rest[:-1] if rest.endswith("}") else rest):
                inner = re.sub(r"as\w+$", "", inner)
                out.append(prefix + sub + [p for p in inner.split("::") if p and p != "self"])
        else:
            out.append(prefix + [p for p in item.split("::") if p and p != "*"])
    return out


def absolute(head, segs, mod):
    base = [] if head.startswith("crate") else mod[:]
    for part in head.split("::"):
        if part == "super":
            base = base[:-1]
    return base + segs


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "dataplane/src"
    files = []
    for root, _, names in os.walk(src):
        for name in names:
            if name.endswith(".rs"):
                files.append(os.path.join(root, name))
    mods = {tuple(module_path(src, f)): f for f in files}
    tops = {m[0] for m in mods if m}

    # Re-exports of each module: name -> absolute path of the definer.
    reexports = {}
    texts = {}
    for m, f in mods.items():
        text = strip(open(f, encoding="utf-8").read())
        texts[m] = text
        table = {}
        for um in re.finditer(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]+);", text):
            body = um.group(1).replace("\n", " ")
            body = re.sub(r"\s+", "", body)
            if "{" in body:
                head, rest = body.split("{", 1)
                head = [p for p in head.split("::") if p]
                items = [head + [p for p in it.split("::") if p] for it in split_group(rest.rstrip("}"))]
            else:
                items = [[p for p in body.split("::") if p]]
            for it in items:
                if not it:
                    continue
                last = re.sub(r"as(\w+)$", "", it[-1]) if False else it[-1]
                name = last.split("as")[-1] if "as" in last and last not in ("as",) and False else last
                head = it[0]
                if head == "crate":
                    target = it[1:]
                elif head == "super":
                    target = absolute("super", it[1:], list(m))
                elif head == "self":
                    target = list(m) + it[1:]
                else:
                    target = list(m) + it
                table[name] = target
        reexports[m] = table

    def node_of(path, depth=0):
        """The graph node of an absolute path (list of segments)."""
        if not path or path[0] not in tops:
            if path and () in reexports and path[0] in reexports[()] and depth < 8:
                return node_of(reexports[()][path[0]] + path[1:], depth + 1)
            return None
        top = path[0]
        if top not in GROUPS or len(path) == 1:
            return top
        child = path[1]
        if (top, child) in mods or any(k[:2] == (top, child) for k in mods):
            return f"{top}::{child}"
        target = reexports.get((top,), {}).get(child)
        if target and depth < 8 and target[:2] != [top, child]:
            return node_of(target + path[2:], depth + 1)
        return top

    edges = {}
    where = {}
    for m, text in texts.items():
        src_node = node_of(list(m)) if m else None
        if src_node is None:
            continue
        facade = m == (m[0],) and m[0] in GROUPS
        for pm in PATH_RE.finditer(text):
            line_start = text.rfind("\n", 0, pm.start()) + 1
            line = text[line_start:text.find("\n", pm.start())]
            if facade and re.match(r"\s*pub(\([^)]*\))?\s+use\s+(self::)?\w+::", line) and not re.match(r"\s*pub(\([^)]*\))?\s+use\s+(crate|super)::", line):
                continue
            head = pm.group(1)
            segs = [p for p in pm.group(2).split("::") if p]
            prefix = absolute(head, segs, list(m))
            paths = expand(prefix, text, pm.end()) if pm.group(3) else [prefix]
            for p in paths:
                dst = node_of(p)
                if dst and dst != src_node:
                    edges.setdefault(src_node, set()).add(dst)
                    lineno = text.count("\n", 0, pm.start()) + 1
                    where.setdefault((src_node, dst), f"{os.path.relpath(mods[m])}:{lineno}")
        # A group child's `pub use` of a sibling in the parent counts too
        # (handled above: the parent is not a facade for crate:: lines).

    # Tarjan's strongly connected components.
    index, low, on, stack, comps = {}, {}, set(), [], []
    counter = [0]
    nodes = sorted(set(edges) | {d for ds in edges.values() for d in ds})

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            comps.append(comp)

    sys.setrecursionlimit(10000)
    for v in nodes:
        if v not in index:
            visit(v)

    cycles = [sorted(c) for c in comps if len(c) > 1]
    print(f"{len(nodes)} modules, {sum(len(d) for d in edges.values())} import edges under {src}")
    for comp in cycles:
        members = set(comp)
        # One cycle through the component: BFS back to the start.
        start = comp[0]
        prev = {start: None}
        queue = [start]
        found = None
        while queue and found is None:
            v = queue.pop(0)
            for w in sorted(edges.get(v, ())):
                if w not in members:
                    continue
                if w == start:
                    found = v
                    break
                if w not in prev:
                    prev[w] = v
                    queue.append(w)
        path = [start]
        v = found
        while v is not None and v != start:
            path.append(v)
            v = prev[v]
        path = [start] + path[1:][::-1] + [start]
        print(f"cycle among {', '.join(comp)}:")
        for a, b in zip(path, path[1:]):
            print(f"  {a} -> {b}  ({where[(a, b)]})")
    if cycles:
        print(f"{len(cycles)} import cycle(s)")
        return 1
    print("no import cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
