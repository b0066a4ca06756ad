"""The TensorRT name check: collection and gating on CPU; resolution against the 10.16 / 11.4 bindings."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "trt_names.py"


def _load_tool():  # tools/ is not a package; load the script as a module
    spec = importlib.util.spec_from_file_location("trt_names", TOOL)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["trt_names"] = mod
    spec.loader.exec_module(mod)
    return mod


SAMPLE = """
def f(trt, builder_config):
    sev = trt.ILogger.Severity
    x = sev.WARNING
    builder_config.set_flag(trt.BuilderFlag.SPARSE_WEIGHTS)
    if is_trt10(trt):
        builder_config.set_flag(trt.BuilderFlag.FP16)
    else:
        y = trt.OnlyIn11
    if not is_trt10(trt):
        z = trt.AlsoOnlyIn11

def _legacy_trt10(trt):
    return trt.IInt8EntropyCalibrator2
"""


def test_collects_chains_aliases_typed_vars_and_gates(tmp_path: Path) -> None:
    tool = _load_tool()
    (tmp_path / "pipeline" / "engine").mkdir(parents=True)
    (tmp_path / "plugins").mkdir()
    (tmp_path / "pipeline" / "engine" / "x.py").write_text(SAMPLE)
    uses = {(u.chain, u.versions) for u in tool.collect(tmp_path)}
    assert ("tensorrt.ILogger.Severity.WARNING", ("10", "11")) in uses
    assert ("tensorrt.IBuilderConfig.set_flag", ("10", "11")) in uses
    assert ("tensorrt.BuilderFlag.SPARSE_WEIGHTS", ("10", "11")) in uses
    assert ("tensorrt.BuilderFlag.FP16", ("10",)) in uses
    assert ("tensorrt.OnlyIn11", ("11",)) in uses
    assert ("tensorrt.AlsoOnlyIn11", ("11",)) in uses
    assert ("tensorrt.IInt8EntropyCalibrator2", ("10",)) in uses


def test_project_uses_removed_names_only_behind_gates() -> None:
    tool = _load_tool()
    from trtforge.pipeline.engine.version import REMOVED_IN_11

    uses = tool.collect(REPO)
    assert len(uses) > 40  # the builder, runner and plugin code are all walked
    for use in uses:
        short = use.chain.removeprefix("tensorrt.")
        if short in REMOVED_IN_11:
            assert use.versions == ("10",), f"{use.chain} at {use.where} is not gated to TensorRT 10"


def test_names_resolve_in_tensorrt_10_and_11() -> None:
    tool = _load_tool()
    api = tool.trt_api_dir()
    if not (api / "run.sh").is_file():
        pytest.skip(f"trt-api tool not found at {api} (CI has it at ../shared/tools/trt-api)")
    if sys.version_info[:2] != (3, 11):
        pytest.skip("the TensorRT binding wheels trt-api installs are built for Python 3.11")
    if shutil.which("cc") is None and not (Path.home() / ".cache" / "trt-api" / "v11").is_dir():
        pytest.skip("trt-api setup needs a C compiler")
    proc = subprocess.run(
        [sys.executable, str(TOOL)], capture_output=True, text=True, cwd=REPO, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "TensorRT 10.16" in proc.stdout and "TensorRT 11.4" in proc.stdout
    assert "0 missing, 0 plugin errors" in proc.stdout
