"""The build stage and ``trtforge build``: the ONNX Runtime target for real, the TensorRT target's exit 3."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from trtforge.pipeline.artifact import ArtifactKind
from trtforge.pipeline.config import from_dict
from trtforge.pipeline.engine import env
from trtforge.pipeline.errors import ConfigError
from trtforge.pipeline.stages.build import BuildConfig, BuildStage

HAVE_TRT_ENV = env.probe_gpu() is not None and env.trt_installed()


def _custom(path: Path, domain: str = "trtforge", op: str = "SwishBeta") -> Path:
    nodes = [
        helper.make_node(
            op, ["x"], ["s"], domain=domain, name="act", **({"beta": 1.5} if op == "SwishBeta" else {})
        ),
        helper.make_node("Relu", ["s"], ["y"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(domain, 1)], ir_version=10
    )
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("suffix", [".onnx", ".ort"])
def test_onnxruntime_target_writes_model_and_session_record(
    cli, mlp: Path, tmp_path: Path, suffix: str
) -> None:
    out = tmp_path / f"opt{suffix}"
    before = mlp.read_bytes()
    code, stdout, stderr = cli("build", mlp, "-o", out, "--target", "onnxruntime", "--threads", "1", "--json")
    assert code == 0, stderr
    info = json.loads(stdout)
    assert info["kind"] == suffix[1:] and info["smoke_max_abs_diff"] < 1e-5
    record = json.loads((tmp_path / f"opt{suffix}.json").read_text())
    assert record["providers"] == ["CPUExecutionProvider"]
    assert record["session_options"]["graph_optimization_level"] == "extended"
    assert record["session_options"]["intra_op_num_threads"] == 1
    assert mlp.read_bytes() == before  # input untouched
    so = ort.SessionOptions()
    if suffix == ".ort":
        so.add_session_config_entry("session.load_model_format", "ORT")
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    got = ort.InferenceSession(str(out), so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    ref = ort.InferenceSession(str(mlp), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    assert not list(tmp_path.glob(".trtforge-*"))  # no staging leftovers


@pytest.mark.skipif(HAVE_TRT_ENV, reason="TensorRT and a GPU are present; exit 3 cannot occur")
def test_tensorrt_target_exits_3_with_one_line(cli, mlp: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.engine"
    code, _, stderr = cli("build", mlp, "-o", out, "--target", "tensorrt")
    assert code == 3
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert (
        "needs TensorRT and an NVIDIA GPU" in lines[0]
        and "--extra-index-url https://pypi.nvidia.com" in lines[0]
    )
    assert not out.exists() and not (tmp_path / "m.engine.json").exists()


def test_custom_op_with_plugin_runs_on_onnxruntime_target(cli, tmp_path: Path) -> None:
    from trtforge.plugins.swish_beta import swish_beta

    src = _custom(tmp_path / "c.onnx")
    code, stdout, stderr = cli(
        "build", src, "-o", tmp_path / "c.opt.onnx", "--target", "onnxruntime", "--json"
    )
    assert code == 0, stderr
    record = json.loads((tmp_path / "c.opt.onnx.json").read_text())
    assert record["custom_ops_library"] == "onnxruntime-extensions"
    assert json.loads(stdout)["smoke_max_abs_diff"] < 1e-6
    assert np.allclose(swish_beta(np.array([2.0], np.float32), 1.5), 2.0 / (1 + np.exp(-3.0)))


def test_custom_op_without_plugin_fails_naming_the_node(cli, tmp_path: Path) -> None:
    src = _custom(tmp_path / "c.onnx", domain="acme", op="Mystery")
    code, _, stderr = cli("build", src, "-o", tmp_path / "c.opt.onnx", "--target", "onnxruntime")
    assert code == 2
    assert "custom op node(s) 'act' (acme::Mystery) have no plugin" in stderr
    assert "trtforge::SwishBeta" in stderr


def test_config_rejects_trt_flags_for_ort_and_bad_levels() -> None:
    with pytest.raises(ConfigError, match="applies to --target tensorrt only"):
        BuildConfig(target="onnxruntime", sparse_weights=True)
    with pytest.raises(ConfigError, match=r"not in 0\.\.5"):
        from_dict(BuildConfig, {"opt_level": 7}, "build")
    with pytest.raises(ConfigError, match="unknown key 'fp16'"):
        from_dict(BuildConfig, {"fp16": True}, "build")
    onnx = ArtifactKind.ONNX
    assert BuildStage.produces(BuildConfig(target="onnxruntime", ort_format="ort"), onnx) == ArtifactKind.ORT
    assert BuildStage.produces(BuildConfig(target="onnxruntime"), onnx) == ArtifactKind.ONNX
    assert BuildStage.produces(BuildConfig(), onnx) == ArtifactKind.ENGINE == "engine"


def test_dry_run_prints_config(cli, mlp: Path, tmp_path: Path) -> None:
    code, stdout, _ = cli(
        "build",
        mlp,
        "-o",
        tmp_path / "m.engine",
        "--shapes",
        "x:1x4,8x4,32x4",
        "--shapes",
        "x:64x4",
        "--workspace",
        "512",
        "--dry-run",
        "--json",
    )
    assert code == 0
    cfg = json.loads(stdout)
    assert cfg["shapes"] == ["x:1x4,8x4,32x4", "x:64x4"] and cfg["workspace_mib"] == 512
    assert not (tmp_path / "m.engine").exists()
