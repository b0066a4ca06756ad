"""Helpers for pruning tests: running models on ONNX Runtime and the masked reference."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from trtforge.pipeline.graph.pruning import (
    HandlerRegistry,
    PlanRequest,
    PlanSettings,
    PrunePlan,
    analyze_model,
    apply_plan,
    plan_model,
)
from trtforge.pipeline.graph.pruning.plan import resolve


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, {sess.get_inputs()[0].name: x})[0])


def _reduction_axis(node: onnx.NodeProto, ndim: int) -> int:
    if node.op_type == "Conv":
        return 1
    if node.op_type == "Gemm":
        return 1 if any(a.name == "transB" and a.i for a in node.attribute) else 0
    return ndim - 2


def masked_reference(
    model: onnx.ModelProto, plan: PrunePlan, registry: HandlerRegistry | None = None
) -> onnx.ModelProto:
    """The original model with the input columns of removed channels zeroed in every consumer weight:
    structurally pruning them must give exactly these outputs."""
    az = analyze_model(model, registry=registry)
    an = az.analysis
    remove = resolve(an, plan, "test")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {t.name: t for t in out.graph.initializer}
    users = {n.input[1]: n for n in an.index.nodes if len(n.input) > 1}
    for s in an.spaces:
        node = users.get(s.tensor)
        if s.kind != "param" or s.role != "weight" or node is None:
            continue
        w = numpy_helper.to_array(inits[s.tensor]).copy()
        if s.axis != _reduction_axis(node, w.ndim) % w.ndim:
            continue
        gone = np.flatnonzero(np.isin(an.labels_of(s), remove))
        idx: list[slice | np.ndarray] = [slice(None)] * w.ndim
        idx[s.axis] = gone
        w[tuple(idx)] = 0.0
        inits[s.tensor].CopyFrom(numpy_helper.from_array(w, s.tensor))
    return out


def prune(
    model: onnx.ModelProto,
    ratio: float = 0.5,
    round_to: int = 1,
    criterion: str = "l1",
    registry: HandlerRegistry | None = None,
    **kw: Any,
) -> tuple[PrunePlan, onnx.ModelProto]:
    req = PlanRequest(PlanSettings(ratio=ratio, round_to=round_to, **kw), criterion=criterion)
    plan, _ = plan_model(model, req, registry=registry)
    return plan, apply_plan(model, plan, registry=registry)


def check_valid(model: onnx.ModelProto) -> None:
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, strict_mode=True)


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
