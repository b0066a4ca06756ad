"""The three bugs of the architecture issue, through the real CLI (a subprocess of ``trtforge``)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.conftest import REPO, sha, tiny_mlp

pytest.importorskip("onnxruntime_extensions")


def _trtforge(*args: str | Path, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trtforge", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _plugin_model(path: Path) -> Path:
    """x[N,6] -> Gemm -> trtforge::SwishBeta -> Identity -> Gemm -> y: a fuse-able model with a plugin op."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1),
        helper.make_node("SwishBeta", ["h"], ["s"], domain="trtforge", name="act", beta=1.5),
        helper.make_node("Identity", ["s"], ["t"]),
        helper.make_node("Gemm", ["t", "w2"], ["y"], transB=1),
    ]
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 6)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b1"),
        numpy_helper.from_array(rng.standard_normal((3, 8)).astype(np.float32), "w2"),
    ]
    graph = helper.make_graph(
        nodes,
        "plugin_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("trtforge", 1)], ir_version=9
    )
    onnx.save(model, str(path))
    return path


def test_fuse_runs_models_with_a_registered_plugin_op(tmp_path: Path) -> None:
    model = _plugin_model(tmp_path / "plugin.onnx")
    before = sha(model)
    np.save(tmp_path / "val.npy", np.random.default_rng(1).standard_normal((16, 6)).astype(np.float32))
    proc = _trtforge(
        "fuse", model, "-o", tmp_path / "fused.onnx", "--validation-data", tmp_path / "val.npy", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    fused = onnx.load(str(tmp_path / "fused.onnx"))
    assert [n.op_type for n in fused.graph.node].count("Identity") == 0  # fuse did its work
    assert any(n.domain == "trtforge" and n.op_type == "SwishBeta" for n in fused.graph.node)
    assert sha(model) == before
    # and the ONNX Runtime build target and validate open it through the same session factory
    built = _trtforge(
        "build", tmp_path / "fused.onnx", "-o", tmp_path / "ort.onnx", "--target", "onnxruntime"
    )
    assert built.returncode == 0, built.stderr
    val = _trtforge("validate", model, tmp_path / "fused.onnx", "--data", tmp_path / "val.npy")
    assert val.returncode == 0, val.stderr


def _ort_then_validate(tmp: Path, *, fmt: str) -> Path:
    model = tiny_mlp(tmp / "mlp.onnx")
    np.save(tmp / "val.npy", np.ones((4, 4), np.float32))
    config = tmp / "trtforge.toml"
    config.write_text(
        f'[pipeline]\nmodel = "{model.name}"\nworkdir = "work"\nvalidation_data = "val.npy"\n\n'
        '[[stage]]\ntype = "fuse"\n\n'
        f'[[stage]]\ntype = "build"\ntarget = "onnxruntime"\nort_format = "{fmt}"\n\n'
        '[[stage]]\ntype = "validate"\n'
    )
    return config


@pytest.mark.parametrize("dry_run", [True, False])
def test_impossible_chain_is_refused_at_load(tmp_path: Path, dry_run: bool) -> None:
    config = _ort_then_validate(tmp_path, fmt="ort")
    proc = _trtforge("run", config, *(["--dry-run"] if dry_run else []), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert (
        "stage 3 (validate)" in lines[0] and "stage 2 (build" in lines[0] and 'ort_format = "ort"' in lines[0]
    )
    assert not (tmp_path / "work").exists()  # nothing was built


def test_possible_chain_still_runs(tmp_path: Path) -> None:
    config = _ort_then_validate(tmp_path, fmt="onnx")
    proc = _trtforge("run", config, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert [s["name"] for s in report["stages"]] == ["fuse", "build", "validate"] and report["passed"]


def test_calibration_files_get_the_same_mode_as_every_artifact(tmp_path: Path) -> None:
    model = REPO / "examples" / "digits" / "model.onnx"
    if not model.is_file():  # the example ships model.pt2; export it once
        exported = _trtforge("export", REPO / "examples" / "digits" / "model.pt2", "-o", tmp_path / "m.onnx")
        assert exported.returncode == 0, exported.stderr
        model = tmp_path / "m.onnx"
    out = tmp_path / "q"
    out.mkdir()
    old = os.umask(0o022)
    try:
        proc = _trtforge(
            "quantize", model, "-o", out / "int8.onnx",
            "--calibration-data", REPO / "examples" / "digits" / "data" / "calib.npz",
            "--target", "tensorrt", "--no-plot", "--no-measure-latency",
        )  # fmt: skip
    finally:
        os.umask(old)
    assert proc.returncode == 0, proc.stderr
    written = sorted(p for p in out.iterdir() if p.is_file())
    assert len(written) >= 3, written  # the model and its calibration table and cache
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in written}
    assert set(modes.values()) == {0o644}, modes
