"""Real TensorRT builds and runs: only where TensorRT and a GPU exist (skipped with a reason elsewhere)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from trtforge.pipeline.engine import env

pytestmark = [pytest.mark.tensorrt, pytest.mark.gpu]

_GPU = env.probe_gpu()
_REASON = env.missing_message(_GPU, env.trt_installed(), "this test")


@pytest.fixture(autouse=True)
def _needs_trt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if _REASON is not None:
        pytest.skip(_REASON)
    monkeypatch.setenv("TRTFORGE_CACHE_DIR", str(tmp_path / "cache"))


def _build(cli, model: Path, out: Path, *flags: str) -> dict:
    code, stdout, stderr = cli("build", model, "-o", out, "--target", "tensorrt", "--json", *flags)
    assert code == 0, stderr
    return json.loads(stdout)


def test_build_run_and_timing_cache(cli, mlp: Path, tmp_path: Path) -> None:
    from trtforge.pipeline.backends.onnxruntime import OrtRunner
    from trtforge.pipeline.backends.tensorrt import TrtRunner

    out = tmp_path / "mlp.engine"
    first = _build(cli, mlp, out, "--shapes", "x:1x4,8x4,32x4")
    meta = json.loads((tmp_path / "mlp.engine.json").read_text())
    assert meta["profiles"][0]["x"]["max"] == [32, 4] and meta["compute_capability"]
    assert first["timing_cache_hit"] is False and Path(first["timing_cache"]).is_file()
    second = _build(cli, mlp, tmp_path / "again.engine", "--shapes", "x:1x4,8x4,32x4")
    assert second["timing_cache_hit"] is True
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    got = TrtRunner(out).run({"x": x})["y"]
    ref = OrtRunner(mlp).run({"x": x})["y"]
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-3)


def test_plugin_model_builds_and_matches_reference(cli, tmp_path: Path) -> None:
    from trtforge.pipeline.backends.tensorrt import TrtRunner
    from trtforge.plugins.swish_beta import swish_beta

    node = helper.make_node("SwishBeta", ["x"], ["y"], domain="trtforge", beta=1.5, name="act")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("trtforge", 1)], ir_version=10
    )
    src = tmp_path / "swish.onnx"
    onnx.save(model, src)
    _build(cli, src, tmp_path / "swish.engine")
    x = np.linspace(-6, 6, 16, dtype=np.float32).reshape(2, 8)
    got = TrtRunner(tmp_path / "swish.engine").run({"x": x})["y"]
    np.testing.assert_allclose(got, swish_beta(x, 1.5), rtol=1e-5, atol=1e-5)
