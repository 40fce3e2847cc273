"""The package's layers: a small top level, no import cycle, moved names warn.

The library sits directly under ``connstats/``; the command line, capture
input and exporters sit below it in ``cli/``, ``capture/`` and ``export/``.
The import graph is read from the source (every ``import`` statement, those
inside functions included: a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
import importlib
import sys
import warnings
from pathlib import Path

import pytest

import connstats

PACKAGE = Path(connstats.__file__).resolve().parent
TOP_LEVEL_LIMIT = 15


def _module_name(path: Path) -> str:
    parts = ["connstats", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """connstats modules that ``name`` imports (a package import counts as
    importing its ``__init__``; ``from pkg import mod`` as importing mod)."""
    is_package = path.name == "__init__.py"
    here = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [module] + [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            # the deepest known module a dotted name refers to
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def test_top_level_holds_at_most_fifteen_modules():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= TOP_LEVEL_LIMIT, top


def test_no_import_cycle():
    graph = _graph()
    # a package imports its submodules through __init__; a submodule that
    # imports its own package's __init__ back is the usual Python shape and
    # not a cycle between concerns, so edges to an ancestor package are left out
    edges = {
        name: {t for t in targets if not name.startswith(t + ".")}
        for name, targets in graph.items()
    }
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert cycles == []


#: Exporter functions the library re-exports: leaves that import nothing of
#: connstats (checked below), under a package whose __init__ imports lazily.
LIBRARY_REEXPORTS = {("connstats", "connstats.export.community_id")}


def test_library_reexports_are_leaves():
    graph = _graph()
    for _library, target in LIBRARY_REEXPORTS:
        assert graph[target] == set(), (target, graph[target])


@pytest.mark.parametrize("layer", ["cli", "capture", "export"])
def test_the_library_does_not_import_the_layers_below_it(layer):
    graph = _graph()
    modules = _modules()
    # the top level's own files, less the deprecated alias of a moved module
    # and `python -m connstats`, which is the command line's entry point
    library = [
        n
        for n, path in modules.items()
        if path.parent == PACKAGE and n not in ("connstats.bpf", "connstats.__main__")
    ]
    offenders = {
        n: sorted(
            t
            for t in graph[n]
            if t.startswith(f"connstats.{layer}") and (n, t) not in LIBRARY_REEXPORTS
        )
        for n in library
    }
    assert {n: t for n, t in offenders.items() if t} == {}


def test_moved_bpf_module_warns_and_forwards():
    sys.modules.pop("connstats.bpf", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = importlib.import_module("connstats.bpf")
    assert any(
        issubclass(w.category, DeprecationWarning)
        and "connstats.capture.bpf" in str(w.message)
        for w in caught
    )
    from connstats.capture import bpf

    assert old.run is bpf.run
    assert old.compile_filter is bpf.compile_filter


def test_cli_entry_point_is_unchanged():
    from connstats.cli import build_parser, main

    assert callable(main)
    assert build_parser().prog
