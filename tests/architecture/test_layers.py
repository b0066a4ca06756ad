"""The import graph and the one-place rules of the architecture, checked on the source files."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

#: the source folders of the three packages and the bottom module they share
PACKAGES = {
    "trtforge.pipeline": REPO / "pipeline",
    "trtforge.calibration": REPO / "calibration",
    "trtforge.plugins": REPO / "plugins",
    "trtforge.common": REPO / "trtforge" / "common",
}
UPPER = (
    "trtforge.pipeline.stages",
    "trtforge.pipeline.runner",
    "trtforge.pipeline.commands",
    "trtforge.pipeline.cli",
)


def _modules() -> dict[str, Path]:
    out = {}
    for package, root in PACKAGES.items():
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([package, *parts])] = path
    return out


def _imports(path: Path) -> set[str]:
    """Every module named by an import statement, at any depth (lazy imports count too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _offenders(prefixes: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for module, path in _modules().items():
        if not module.startswith(prefixes):
            continue
        hits = sorted(n for n in _imports(path) if n.startswith(forbidden))
        bad += [f"{module} imports {h}" for h in hits]
    return bad


def test_nothing_below_stages_imports_upwards() -> None:
    below = ("engine", "backends", "graph", "validation")
    lower = (
        *(f"trtforge.pipeline.{p}" for p in below),
        "trtforge.calibration",
        "trtforge.plugins",
        "trtforge.common",
    )
    assert _offenders(lower, UPPER) == []


def test_calibration_plugins_and_common_never_import_pipeline() -> None:
    lower = ("trtforge.calibration", "trtforge.plugins", "trtforge.common")
    assert _offenders(lower, ("trtforge.pipeline",)) == []


def test_stage_base_imports_no_backend() -> None:
    imports = _imports(REPO / "pipeline" / "stage.py")
    assert not [n for n in imports if n.startswith("trtforge.pipeline.backends")]
    assert not [n for n in imports if n.startswith(UPPER)]


def test_the_offender_check_can_fail() -> None:
    # the rule above would catch a module of pipeline/validation importing the runner
    assert _offenders(("trtforge.pipeline.api",), ("trtforge.pipeline.runner",)) != []


def test_every_import_uses_the_trtforge_namespace() -> None:
    bare = []
    roots = [*PACKAGES.values(), REPO / "tests", REPO / "benchmarks", REPO / "examples", REPO / "tools"]
    for root in roots:
        for path in root.rglob("*.py"):
            if any(part.startswith(".") for part in path.relative_to(REPO).parts):
                continue  # virtual environments and caches (e.g. benchmarks/corpus/.venv)
            for name in _imports(path):
                if name.split(".")[0] in ("pipeline", "calibration", "plugins"):
                    bare.append(f"{path.relative_to(REPO)}: {name}")
    assert bare == []


def test_one_place_creates_onnxruntime_sessions() -> None:
    places = []
    for root in PACKAGES.values():
        for path in root.rglob("*.py"):
            for i, line in enumerate(path.read_text().splitlines(), start=1):
                if "InferenceSession(" in line:
                    places.append(f"{path.relative_to(REPO)}:{i}")
    assert places == ["trtforge/common/ort.py:" + places[0].split(":")[1]] and len(places) == 1, places


def test_one_atomic_write_helper_and_one_first_line() -> None:
    defs: dict[str, list[str]] = {"atomic_path": [], "first_line": [], "TensorSpec": []}
    for root in PACKAGES.values():
        for path in root.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in defs:
                    defs[node.name].append(str(path.relative_to(REPO)))
    assert defs == {
        "atomic_path": ["trtforge/common/files.py"],
        "first_line": ["trtforge/common/errors.py"],
        "TensorSpec": ["trtforge/common/tensors.py"],
    }


def test_installed_names_and_packages_match_the_folders() -> None:
    from setuptools import find_packages

    found = set(find_packages(str(REPO), include=["trtforge", "trtforge.*"]))
    expected = {"trtforge", *PACKAGES}
    for package, root in PACKAGES.items():
        expected |= {
            package + "." + ".".join(p.relative_to(root).parts)
            for p in root.rglob("*")
            if p.is_dir() and (p / "__init__.py").is_file()
        }
    assert found == expected


def test_import_trtforge_is_light_and_exposes_the_verbs() -> None:
    code = (
        "import sys, trtforge\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('onnxruntime', 'torch', 'tensorrt')]\n"
        "assert 'trtforge.pipeline.api' not in sys.modules\n"
        "names = sorted(trtforge.__all__)\n"
        "funcs = [getattr(trtforge, n) for n in names]\n"
        "assert all(callable(f) and f.__module__ == 'trtforge.pipeline.api' for f in funcs), funcs\n"
        "print(' '.join(names))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert {"run", "run_stage", "load_artifact", "inspect", "bench", "report"} <= set(proc.stdout.split())


def test_the_wheel_installs_one_top_level_name(tmp_path: Path) -> None:
    import zipfile

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            str(REPO),
            "-w",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("trtforge-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"trtforge"}
    for module in ("pipeline/cli.py", "calibration/quantizer.py", "plugins/ort.py", "common/ort.py"):
        assert f"trtforge/{module}" in names
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "trtforge = trtforge.pipeline.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()
