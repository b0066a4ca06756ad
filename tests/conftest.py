"""Shared fixtures: tiny models built in code, a CLI invoker that returns (exit code, stdout, stderr)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parents[1]


def tiny_mlp(path: Path, seed: int = 0, perturb: float = 0.0) -> Path:
    """x[N,4] -> Gemm(4x8) -> Relu -> Gemm(8x3) -> y[N,3]; written to ``path``."""
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((8, 4)).astype(np.float32)
    w2 = rng.standard_normal((3, 8)).astype(np.float32) + np.float32(perturb)
    nodes = [
        helper.make_node("Gemm", ["x", "w1"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "w2"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def mlp(tmp_path: Path) -> Path:
    return tiny_mlp(tmp_path / "mlp.onnx")


@pytest.fixture
def cli() -> Callable[..., tuple[int, str, str]]:
    from trtforge.pipeline.cli import cli as group

    def invoke(*args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(group, [str(a) for a in args], catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr

    return invoke
