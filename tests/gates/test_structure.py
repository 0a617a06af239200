"""The Rust crates keep the shape docs/ARCHITECTURE.md promises.

- No import cycle between the modules of a crate: modules that are siblings (children of the
  same parent) never use each other both ways, directly or through other siblings.
- No source file has more than 500 lines of non-test code, unless its module comment says
  why (a line containing "longer than 500 lines").

Module references are read from `crate::a::...` and `super::a` paths outside comments, which is
how this workspace names its modules. Standard library and pytest only.
"""

import pathlib
import re

import pytest

from conftest import ROOT

CRATES = sorted(p for p in (ROOT / "rust").glob("*/src") if p.is_dir())
MAX_LINES = 500
CRATE_PATH = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")
SUPER_PATH = re.compile(r"\bsuper::([a-z_][a-z0-9_]*)")


def module_of(src: pathlib.Path, file: pathlib.Path) -> tuple[str, ...]:
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts and parts[-1] in ("mod", "lib", "main"):
        parts.pop()
    return tuple(parts)


def code_of(file: pathlib.Path) -> str:
    """The file without its `#[cfg(test)]` module and without comment lines."""
    text = file.read_text()
    cut = text.find("#[cfg(test)]")
    if cut >= 0:
        text = text[:cut]
    return "\n".join(line for line in text.splitlines() if not line.strip().startswith("//"))


def sibling_edges(src: pathlib.Path) -> set[tuple[tuple[str, ...], tuple[str, ...]]]:
    """(a, b) for sibling modules a and b where code in a (or below it) uses b (or below it)."""
    edges = set()
    for file in src.rglob("*.rs"):
        here = module_of(src, file)
        if not here:
            continue
        code = code_of(file)
        targets = {(name,) for name in CRATE_PATH.findall(code)}
        # `super::x` names a sibling of this module (for `a/mod.rs` too: its module is `a`).
        targets |= {here[:-1] + (name,) for name in SUPER_PATH.findall(code) if name != "super"}
        for target in targets:
            common = 0
            while common < min(len(here), len(target)) and here[common] == target[common]:
                common += 1
            if common < len(here) and common < len(target):
                edges.add((here[: common + 1], target[: common + 1]))
    return edges


def cycle(edges: set[tuple[tuple[str, ...], tuple[str, ...]]]) -> list[str] | None:
    graph: dict[tuple[str, ...], set[tuple[str, ...]]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    done: set[tuple[str, ...]] = set()

    def visit(node: tuple[str, ...], path: list[tuple[str, ...]]) -> list[str] | None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                loop = path[path.index(nxt) :] + [nxt]
                return ["::".join(m) for m in loop]
            if nxt not in done:
                found = visit(nxt, path + [nxt])
                if found:
                    return found
        done.add(node)
        return None

    for start in sorted(graph):
        found = visit(start, [start])
        if found:
            return found
    return None


@pytest.mark.parametrize("src", CRATES, ids=lambda p: p.parent.name)
def test_no_import_cycle_between_modules(src: pathlib.Path) -> None:
    found = cycle(sibling_edges(src))
    assert found is None, f"{src.parent.name}: modules import each other: {' -> '.join(found or [])}"


def test_the_cycle_finder_finds_a_cycle() -> None:
    a, b, c = ("a",), ("b",), ("c",)
    assert cycle({(a, b), (b, c), (c, a)}) == ["a", "b", "c", "a"]
    assert cycle({(a, b), (b, c)}) is None


@pytest.mark.parametrize("src", CRATES, ids=lambda p: p.parent.name)
def test_no_long_file_without_a_reason(src: pathlib.Path) -> None:
    long = []
    for file in sorted(src.rglob("*.rs")):
        lines = len(code_of(file).splitlines())
        if lines > MAX_LINES and "longer than 500 lines" not in file.read_text():
            long.append(f"{file.relative_to(ROOT)} ({lines} lines of non-test code)")
    assert not long, "split these, or say in the module comment why not: " + ", ".join(long)
