"""Models with ai.onnx.ml sequence/map outputs (scikit-learn exports): fuse and convert-fp16 pass them
through with a reason instead of a traceback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from trtforge.pipeline.api import run_stage
from trtforge.pipeline.stage import DataPaths


def _zipmap_model(path: Path) -> Path:
    """x[N,3] probabilities -> label, and ZipMap -> seq(map(int64, float)) as skl2onnx writes it; no
    float tensor inside the graph (as in a tree ensemble's export)."""
    nodes = [
        helper.make_node("ArgMax", ["x"], ["label"], axis=1, keepdims=0),
        helper.make_node("ZipMap", ["x"], ["probs"], domain="ai.onnx.ml", classlabels_int64s=[0, 1, 2]),
    ]
    seq = helper.make_sequence_type_proto(
        helper.make_map_type_proto(TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, []))
    )
    graph = helper.make_graph(
        nodes,
        "ml",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
            helper.make_value_info("probs", seq),
        ],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]
    onnx.save(helper.make_model(graph, opset_imports=opsets, ir_version=9), str(path))
    return path


def test_fuse_passes_an_unreadable_model_through_with_the_reason(tmp_path: Path) -> None:
    model = _zipmap_model(tmp_path / "ml.onnx")
    np.save(tmp_path / "val.npy", np.random.default_rng(0).standard_normal((6, 3)).astype(np.float32))
    result = run_stage(
        "fuse", None, model, tmp_path / "out.onnx", data=DataPaths(validation=tmp_path / "val.npy")
    )
    assert all(result.gates)
    reasons = [g["reason"] for g in result.metrics["guards"]]
    assert any("onnx-ir cannot read this model" in r for r in reasons), reasons


def test_convert_fp16_on_a_model_without_float_intermediates(tmp_path: Path) -> None:
    model = _zipmap_model(tmp_path / "ml.onnx")
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).standard_normal((6, 3)).astype(np.float32))
    config = {"calibration": str(tmp_path / "calib.npy")}
    result = run_stage("convert_fp16", config, model, tmp_path / "out.onnx")
    assert result.artifact.path.is_file()


def test_the_onnxruntime_target_takes_onnxruntime_s_own_domains(tmp_path: Path) -> None:
    model = _zipmap_model(tmp_path / "ml.onnx")  # ai.onnx.ml::ZipMap: ONNX Runtime runs it, no plugin needed
    result = run_stage("build", {"target": "onnxruntime"}, model, tmp_path / "out.onnx")
    assert result.artifact.path.is_file() and all(result.gates)
