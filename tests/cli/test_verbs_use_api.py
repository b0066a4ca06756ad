"""The verbs parse flags, call ``trtforge.pipeline.api`` and print: none runs the pipeline, builds a
report, or times models itself (that logic lives once, behind the API)."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

from trtforge.pipeline.cli import COMMANDS

#: modules a verb reaches only through the API, and names it imports from nowhere
BEHIND_THE_API = {
    "trtforge.pipeline.runner",
    "trtforge.pipeline.validation.throughput",
    "trtforge.pipeline.stage",
}
NOT_IN_VERBS = {"run_pipeline", "build_report", "write_report", "records_from_workdir", "benchmark_models"}


def _imports(module: str) -> list[tuple[str, str]]:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None
    tree = ast.parse(Path(spec.origin).read_text())
    return [
        (n.module or "", a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names
    ]


@pytest.mark.parametrize("verb", sorted(set(COMMANDS) - {"plugins"}))
def test_verb_goes_through_the_api(verb: str) -> None:
    imported = _imports(COMMANDS[verb])
    leaks = [
        f"{m}.{n}" for m, n in imported if (m in BEHIND_THE_API and n != "DataPaths") or n in NOT_IN_VERBS
    ]
    assert not leaks, f"`trtforge {verb}` imports {leaks}; call trtforge.pipeline.api instead"
    assert any(m == "trtforge.pipeline.api" for m, _ in imported), f"`trtforge {verb}` skips the API"
