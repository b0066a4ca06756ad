"""The foundation issue's acceptance on the digits example, through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from tests.conftest import REPO, sha

DIGITS = REPO / "examples" / "digits"


def _cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_demo_pipeline_passes_then_hits_the_cache(tmp_path: Path) -> None:
    before = {p.name: sha(p) for p in (DIGITS / "model.pt2", DIGITS / "data" / "val.npz")}
    first = _cli("run", DIGITS / "trtforge.toml", "-w", tmp_path / "w", "--json", "-q")
    assert first.returncode == 0, first.stderr[-3000:]
    report = json.loads(first.stdout)
    names = [s["name"] for s in report["stages"]]
    assert names == ["export", "fuse", "prune", "quantize", "build", "validate", "bench"]
    assert report["passed"] and not any(s["cached"] for s in report["stages"])
    summary = report["summary"]
    assert summary["size_bytes"]["ratio"] > 4  # pruned + INT8: much smaller than the FP32 export
    assert summary["accuracy"]["drop"] <= 0.015
    assert (tmp_path / "w" / "report.md").read_text().startswith("# trtforge report: PASSED")
    second = _cli("run", DIGITS / "trtforge.toml", "-w", tmp_path / "w", "--json", "-q")
    assert second.returncode == 0, second.stderr[-3000:]
    again = json.loads(second.stdout)
    assert all(s["cached"] for s in again["stages"])
    assert again["final_artifact"]["sha256"] == report["final_artifact"]["sha256"]
    assert {p.name: sha(p) for p in (DIGITS / "model.pt2", DIGITS / "data" / "val.npz")} == before


def test_fuse_removes_every_batchnorm_of_an_unfolded_export(tmp_path: Path) -> None:
    raw = tmp_path / "raw.onnx"
    exp = _cli("export", DIGITS / "model.pt2", "-o", raw, "--no-constant-folding", "-q")
    assert exp.returncode == 0, exp.stderr[-2000:]
    n_bn = sum(n.op_type == "BatchNormalization" for n in onnx.load(str(raw)).graph.node)
    assert n_bn >= 7
    fused = tmp_path / "fused.onnx"
    res = _cli("fuse", raw, "-o", fused, "--validation-data", DIGITS / "data" / "val.npz", "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    assert not any(n.op_type == "BatchNormalization" for n in onnx.load(str(fused)).graph.node)
    val = _cli(
        "validate",
        raw,
        fused,
        "--data",
        DIGITS / "data" / "val.npz",
        "--atol",
        "1e-4",
        "--rtol",
        "0",
        "--json",
    )
    assert val.returncode == 0, val.stderr[-2000:]
    assert json.loads(val.stdout)["outputs"][0]["max_abs"] <= 1e-4


def test_validate_exits_1_on_perturbed_weights_and_0_on_the_fused_model(tmp_path: Path) -> None:
    ref = tmp_path / "ref.onnx"
    assert _cli("export", DIGITS / "model.pt2", "-o", ref, "-q").returncode == 0
    fused = tmp_path / "fused.onnx"
    assert _cli("fuse", ref, "-o", fused, "-q").returncode == 0
    model = onnx.load(str(ref))
    rng = np.random.default_rng(0)
    for init in model.graph.initializer:
        w = numpy_helper.to_array(init)
        if w.dtype == np.float32 and w.ndim == 4:  # conv weights: +-2% noise
            init.CopyFrom(
                numpy_helper.from_array(
                    w * (1 + 0.02 * rng.standard_normal(w.shape)).astype(np.float32), init.name
                )
            )
    perturbed = tmp_path / "perturbed.onnx"
    onnx.save(model, str(perturbed))
    data = DIGITS / "data" / "val.npz"
    bad = _cli("validate", ref, perturbed, "--data", data)
    assert bad.returncode == 1 and "parity" in bad.stderr
    good = _cli("validate", ref, fused, "--data", data, "--metric", "top1")
    assert good.returncode == 0, good.stderr[-2000:]
