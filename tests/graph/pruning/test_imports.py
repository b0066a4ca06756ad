"""The pruning package has no import cycle: each handler module imports on its own, the handler
interface imports no handler, and no pruning module imports another lazily (inside a function)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import trtforge.pipeline.graph.pruning as pruning

PACKAGE = "trtforge.pipeline.graph.pruning"
ROOT = Path(pruning.__file__).parent
HANDLER_MODULES = ("ops.elementwise", "ops.reduce", "ops.linear", "ops.shape", "ops.attention")


def _modules() -> dict[str, Path]:
    """Dotted name (relative to the package, "" for its __init__) -> file."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        out[".".join(parts)] = path
    return out


def _imports(path: Path, known: dict[str, Path]) -> list[tuple[str, bool]]:
    """(module imported, whether at module level) for each import of a pruning module in ``path``."""
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body}
    found: list[tuple[str, bool]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom | ast.Import):
            continue
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        for name in names:
            if name != PACKAGE and not name.startswith(PACKAGE + "."):
                continue
            base = name[len(PACKAGE) + 1 :]
            subs = [f"{base}.{a.name}".lstrip(".") for a in node.names]
            targets = [s for s in subs if s in known and isinstance(node, ast.ImportFrom)] or [base]
            found.extend((t, id(node) in top) for t in targets)
    return found


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: {t for t, _ in _imports(path, known)} for name, path in known.items()}


def test_import_graph_is_acyclic() -> None:
    graph = _graph()
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            assert state.get(nxt) != 1, f"import cycle: {' -> '.join([*stack, node, nxt])}"
            if nxt not in state:
                visit(nxt, [*stack, node])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [])
    assert "registry" in graph and "ops.base" in graph  # the walk really saw the package


def test_layers_of_the_handler_package() -> None:
    graph = _graph()
    assert not graph["ops.base"] & {*HANDLER_MODULES, "registry"}
    assert graph["ops"] == set()
    assert {"ops.elementwise", "ops.reduce", "ops.linear", "ops.shape"} <= graph["registry"]
    for name in HANDLER_MODULES:
        assert "registry" not in graph[name] and "" not in graph[name], name


def test_no_pruning_module_imports_another_lazily() -> None:
    known = _modules()
    lazy = [(name, t) for name, path in known.items() for t, at_top in _imports(path, known) if not at_top]
    assert lazy == []


_STANDALONE = """
import importlib, pathlib, sys, types
import trtforge.pipeline.graph as parent
pkg = types.ModuleType({package!r})  # the package without its __init__: {module} is imported first
pkg.__path__ = [str(pathlib.Path(parent.__path__[0]) / "pruning")]
sys.modules[{package!r}] = pkg
mod = importlib.import_module({module!r})
loaded = sorted(m for m in sys.modules if m.startswith({package!r} + ".ops."))
print(",".join(loaded))
"""


@pytest.mark.parametrize("module", [*HANDLER_MODULES, "ops.base", "registry"])
def test_module_imports_standalone_in_a_fresh_interpreter(module: str) -> None:
    name = f"{PACKAGE}.{module}"
    code = _STANDALONE.format(package=PACKAGE, module=name)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    loaded = {m.removeprefix(PACKAGE + ".") for m in res.stdout.strip().split(",") if m}
    assert module in loaded or module == "registry"
    if module == "ops.base":
        assert not loaded & set(HANDLER_MODULES)  # the interface pulls in no handler
