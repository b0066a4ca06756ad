#!/usr/bin/env python3
"""Check every TensorRT name the project uses against the real TensorRT 10.16 and 11.4 bindings.

    python tools/trt_names.py            # collect, then resolve under trt-api run.sh 10 and 11
    python tools/trt_names.py --list     # only print what was collected (no bindings needed)

What is collected (AST walk of pipeline/engine/*.py, pipeline/stages/_build_tensorrt.py,
pipeline/backends/tensorrt.py, plugins/**/*.py):

* attribute chains on the module names ``trt`` (``import tensorrt as trt``) and ``trtp``
  (``tensorrt.plugin``), and on local aliases of them (``sev = trt.ILogger.Severity``);
* attributes used on variables whose *name* says which TensorRT class they hold (:data:`TYPED`),
  e.g. ``builder_config.set_flag`` is checked as ``trt.IBuilderConfig.set_flag``.

Version gates (the convention of :mod:`pipeline.engine.version`): names inside ``if is_trt10(...)``
are checked against 10 only, inside its ``else`` against 11 only (``is_trt11`` the other way round,
``not`` swaps); names in a function whose name ends in ``_trt10`` against 10 only. Every other name
must resolve in both. Plugin modules (``plugins/*_trt.py`` with ``register(lazy=...)``) are also
registered lazily, which makes ``tensorrt.plugin`` validate their signatures.

This proves names, not behaviour: the bindings import with stub libraries and nothing is built.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SOURCES = (
    "pipeline/engine/*.py",
    "pipeline/stages/_build_tensorrt.py",
    "pipeline/backends/tensorrt.py",
    "plugins/**/*.py",
)
MODULES = {"trt": "tensorrt", "trtp": "tensorrt.plugin"}
#: variable name -> TensorRT class it holds (a naming convention in the TensorRT code)
TYPED = {
    "builder": "Builder",
    "network": "INetworkDefinition",
    "builder_config": "IBuilderConfig",
    "parser": "OnnxParser",
    "profile": "IOptimizationProfile",
    "trt_runtime": "Runtime",
    "engine": "ICudaEngine",
    "context": "IExecutionContext",
    "err": "ParserError",
}
VERSIONS = ("10", "11")
GATES = {"is_trt10": ("10", "11"), "is_trt11": ("11", "10")}


@dataclass(frozen=True)
class Use:
    chain: str  # "tensorrt.BuilderFlag.FP16" or "tensorrt.IBuilderConfig.set_flag"
    versions: tuple[str, ...]
    where: str  # file:line

    def to_dict(self) -> dict[str, object]:
        return {"chain": self.chain, "versions": list(self.versions), "where": self.where}


def _dotted(node: ast.AST) -> list[str] | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id, *reversed(parts)]
    return None


def _gate(test: ast.AST) -> tuple[str, str] | None:
    negate = isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not)
    call = test.operand if negate and isinstance(test, ast.UnaryOp) else test
    if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in GATES:
        body, other = GATES[call.func.id]
        return (other, body) if negate else (body, other)
    return None


class Collector(ast.NodeVisitor):
    def __init__(self, rel: str) -> None:
        self.rel = rel
        self.versions: tuple[str, ...] = VERSIONS
        self.aliases: dict[str, str] = {}
        self.uses: list[Use] = []

    def _with(self, versions: tuple[str, ...], nodes: list[ast.stmt]) -> None:
        saved = self.versions
        self.versions = tuple(v for v in self.versions if v in versions)
        for n in nodes:
            self.visit(n)
        self.versions = saved

    def visit_If(self, node: ast.If) -> None:
        gate = _gate(node.test)
        if gate is None:
            self.generic_visit(node)
            return
        self.visit(node.test)
        self._with((gate[0],), node.body)
        self._with((gate[1],), node.orelse)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        if node.name.endswith("_trt10"):
            self._with(("10",), [*node.decorator_list, *node.body])  # type: ignore[list-item]
        else:
            self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        chain = self._resolve(node.value)
        if chain and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            self.aliases[node.targets[0].id] = chain
        self.generic_visit(node)

    def _resolve(self, node: ast.AST) -> str | None:
        parts = _dotted(node)
        if not parts:
            return None
        head, rest = parts[0], parts[1:]
        if head in MODULES:
            base = MODULES[head]
        elif head in self.aliases:
            base = self.aliases[head]
        elif head in TYPED and rest:
            base = f"tensorrt.{TYPED[head]}"
        else:
            return None
        return ".".join([base, *rest])

    def visit_Attribute(self, node: ast.Attribute) -> None:
        chain = self._resolve(node)
        if chain is not None and "." in chain.removeprefix("tensorrt.plugin").removeprefix("tensorrt"):
            self.uses.append(Use(chain, self.versions, f"{self.rel}:{node.lineno}"))
            return  # the longest chain covers its prefixes
        self.generic_visit(node)


def collect(root: Path = ROOT) -> list[Use]:
    uses: list[Use] = []
    for pattern in SOURCES:
        for path in sorted(root.glob(pattern)):
            rel = str(path.relative_to(root))
            collector = Collector(rel)
            collector.visit(ast.parse(path.read_text(), filename=rel))
            uses.extend(collector.uses)
    return uses


def plugin_modules(root: Path = ROOT) -> list[str]:
    return [f"trtforge.plugins.{p.stem}" for p in sorted((root / "plugins").glob("*_trt.py"))]


# ---- resolution, run under ``run.sh 10|11`` (tensorrt_bindings importable) -------------------------


def _import_bindings() -> object:
    import importlib

    trt = importlib.import_module("tensorrt_bindings")
    sys.modules.setdefault("tensorrt", trt)
    plugin = importlib.import_module("tensorrt_bindings.plugin")
    sys.modules.setdefault("tensorrt.plugin", plugin)
    return trt


def resolve(version: str, payload: dict[str, list]) -> dict[str, object]:
    trt = _import_bindings()
    modules = {"tensorrt": trt, "tensorrt.plugin": sys.modules["tensorrt.plugin"]}
    missing = []
    checked = 0
    for use in payload["uses"]:
        if version not in use["versions"]:
            continue
        checked += 1
        chain = use["chain"]
        base = "tensorrt.plugin" if chain.startswith("tensorrt.plugin.") else "tensorrt"
        obj: object = modules[base]
        for part in chain[len(base) + 1 :].split("."):
            if not hasattr(obj, part):
                missing.append({**use, "missing": part})
                break
            obj = getattr(obj, part)
    plugin_errors = []
    sys.path.insert(0, str(ROOT))
    for mod in payload["plugins"]:
        import importlib

        try:
            importlib.import_module(mod).register(lazy=True)
        except Exception as exc:
            plugin_errors.append({"module": mod, "error": f"{type(exc).__name__}: {exc}"})
    return {
        "version": getattr(trt, "__version__", "?"),
        "checked": checked,
        "missing": missing,
        "plugin_errors": plugin_errors,
    }


def trt_api_dir() -> Path:
    return Path(os.environ.get("TRT_API_DIR", ROOT.parent / "shared" / "tools" / "trt-api"))


def run_version(version: str, uses: list[Use]) -> dict[str, Any]:
    tool = trt_api_dir() / "run.sh"
    payload = json.dumps({"uses": [u.to_dict() for u in uses], "plugins": plugin_modules()})
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(
        ["bash", str(tool), version, str(Path(__file__).resolve()), "--resolve", version],
        input=payload,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"run.sh {version} failed (exit {proc.returncode}): {proc.stderr.strip()[-800:]}")
    return json.loads(lines[-1])


def main(argv: list[str]) -> int:
    if "--resolve" in argv:
        print(json.dumps(resolve(argv[argv.index("--resolve") + 1], json.loads(sys.stdin.read()))))
        return 0
    uses = collect()
    if "--list" in argv:
        for u in uses:
            print(f"{u.chain:70} {'/'.join(u.versions):6} {u.where}")
        return 0
    if not (trt_api_dir() / "run.sh").is_file():
        print(f"trt-api tool not found at {trt_api_dir()} (set TRT_API_DIR)", file=sys.stderr)
        return 2
    failed = False
    for version in VERSIONS:
        result = run_version(version, uses)
        print(
            f"TensorRT {result['version']}: {result['checked']} names checked, "
            f"{len(result['missing'])} missing, {len(result['plugin_errors'])} plugin errors"
        )
        for m in result["missing"]:
            print(f"  MISSING {m['chain']} ({m['missing']!r} not found) at {m['where']}")
        for p in result["plugin_errors"]:
            print(f"  PLUGIN {p['module']}: {p['error']}")
        failed |= bool(result["missing"] or result["plugin_errors"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
