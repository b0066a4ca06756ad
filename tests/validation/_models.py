"""Tiny ONNX models and data files for the validation tests, built in code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FEATURES = 8
CLASSES = 5


def weights(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((FEATURES, CLASSES)).astype(np.float32), rng.standard_normal(CLASSES).astype(
        np.float32
    )


def classifier(
    path: Path, w: np.ndarray | None = None, b: np.ndarray | None = None, batch: int | str = "N"
) -> Path:
    """x[N, 8] -> logits = x @ w + b [N, 5], probs = softmax(logits) [N, 5]."""
    if w is None or b is None:
        w, b = weights()
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["mm"]),
            helper.make_node("Add", ["mm", "b"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
        ],
        "classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, FEATURES])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, CLASSES]),
            helper.make_tensor_value_info("probs", TensorProto.FLOAT, [batch, CLASSES]),
        ],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def perturbed(path: Path, scale: float, seed: int = 0) -> Path:
    """The classifier with its weights perturbed by ``scale`` (relative)."""
    w, b = weights(seed)
    rng = np.random.default_rng(100)
    return classifier(path, (w * (1 + scale * rng.standard_normal(w.shape))).astype(np.float32), b)


def samples(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, FEATURES)).astype(np.float32)


def reference_labels(x: np.ndarray) -> np.ndarray:
    w, b = weights()
    return np.asarray(np.argmax(x @ w + b, axis=-1))
