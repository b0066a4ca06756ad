"""Handler registries: pruning through an op registered at run time, per-analysis registrations,
and unknown ops that still pin (never guessed)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from trtforge.pipeline.graph.pruning import (
    Carry,
    Group,
    HandlerRegistry,
    OpHandler,
    analyze_model,
    builtin_registry,
    default_registry,
    macs,
    register_op_handler,
)
from trtforge.pipeline.graph.pruning.lossless import dead_units
from trtforge.pipeline.graph.pruning.registry import BUILTIN_HANDLERS

from . import models
from . import models_custom as mc
from .conftest import check_valid, masked_reference, prune, run
from .test_couplings import weight_shape

# Every op the pruner understood before handlers were grouped per op family (plus the exporter
# idioms added since): none lost, none added.
BUILTIN_OPS = frozenset(
    op
    for line in (
        "Relu LeakyRelu Sigmoid Tanh Gelu Erf Elu Selu Celu Softplus Softsign HardSigmoid HardSwish Mish",
        "Exp Log Sqrt Abs Neg Reciprocal Floor Ceil Round Sign Sin Cos Identity Dropout Cast",
        "ThresholdedRelu Silu Clip Add Sub Mul Div Pow Max Min Sum Mean PRelu Where Equal Less Greater",
        "And Or MaxPool AveragePool GlobalAveragePool GlobalMaxPool LpPool GlobalLpPool Pad Resize",
        "Upsample Transpose ReduceMean ReduceSum ReduceMax ReduceMin ReduceL1 ReduceL2 ReduceProd",
        "Softmax LogSoftmax LayerNormalization Shape Size Conv ConvTranspose Gemm MatMul",
        "BatchNormalization InstanceNormalization Concat Split Slice Reshape Flatten Squeeze Unsqueeze",
        "Gather",
        # exporters' idioms (tf2onnx/JAX/torch): test_exporter_idioms.py
        "Expand Tile LpNormalization ReduceSumSquare ReduceLogSumExp LSTM GRU RNN",
    )
    for op in line.split()
)


def _group(model: onnx.ModelProto, source: str, registry: HandlerRegistry | None = None) -> Group:
    return next(g for g in analyze_model(model, registry=registry).groups if source in g.sources)


def _with(op_type: str, handler: OpHandler) -> HandlerRegistry:
    registry = default_registry().copy()
    register_op_handler(op_type, handler, registry=registry)
    return registry


@pytest.fixture
def shrink_in_default_registry() -> Iterator[None]:
    assert "Shrink" not in default_registry()
    register_op_handler("Shrink", mc.ShrinkHandler())
    try:
        yield
    finally:
        default_registry().remove("Shrink")


def test_builtin_registry_holds_every_known_op_once() -> None:
    ops = [op for op, _ in BUILTIN_HANDLERS]
    assert len(ops) == len(set(ops))
    assert set(builtin_registry().op_types()) == BUILTIN_OPS


def test_registered_handler_prunes_through_a_new_op(images: np.ndarray) -> None:
    model = mc.shrink_chain()
    before = _group(model, "conv1")
    assert before.blocked and any("Shrink node 'shrink' is not understood" in r for r in before.reasons)
    registry = _with("Shrink", mc.ShrinkHandler())
    g = _group(model, "conv1", registry)
    assert g.sources == ("conv1",) and g.size == 16 and not g.pinned.any()
    plan, pruned = prune(model, ratio=0.5, registry=registry)
    assert ["conv1"] in [gp.sources for gp in plan.groups]
    check_valid(pruned)
    assert weight_shape(pruned, "conv1") == (8, 3, 3, 3) and weight_shape(pruned, "conv2") == (8, 8, 3, 3)
    got, ref = run(pruned, images), run(masked_reference(model, plan, registry), images)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    assert not np.allclose(got, run(model, images), atol=1e-3)  # channels really went


@pytest.mark.usefixtures("shrink_in_default_registry")
def test_register_op_handler_extends_the_default_for_later_analyses(images: np.ndarray) -> None:
    model = mc.shrink_chain()
    assert not _group(model, "conv1").blocked
    _, pruned = prune(model, ratio=0.5)
    assert weight_shape(pruned, "conv1") == (8, 3, 3, 3)
    assert run(pruned, images).shape == (2, 10)


def test_analysis_keeps_the_registry_it_started_with() -> None:
    model = mc.shrink_chain()
    az = analyze_model(model)
    assert az.registry is not default_registry() and "Shrink" not in az.registry
    register_op_handler("Shrink", mc.ShrinkHandler())
    try:
        assert _group(model, "conv1").blocked is False
        assert next(g for g in az.groups if "conv1" in g.sources).blocked
    finally:
        assert default_registry().remove("Shrink") is not None
    assert _group(model, "conv1").blocked


def test_registration_does_not_leak_into_other_analyses() -> None:
    model = mc.shrink_chain()
    mine, other = _with("Shrink", mc.ShrinkHandler()), default_registry().copy()
    assert not _group(model, "conv1", mine).blocked
    assert _group(model, "conv1", other).blocked
    assert _group(model, "conv1").blocked
    assert "Shrink" in mine and "Shrink" not in other and "Shrink" not in default_registry()
    assert "Shrink" not in builtin_registry()


def test_lossless_asks_the_registered_handler(images: np.ndarray) -> None:
    model = mc.shrink_chain(dead=(1, 4))
    registry = _with("Shrink", mc.ShrinkHandler())
    dead = dead_units(analyze_model(model, registry=registry).analysis, registry)
    assert [v.tolist() for v in dead.values()] == [[1, 4]]
    unsure = _with("Shrink", mc.ShrinkHandler(carry=Carry.NONE))  # says nothing about constants
    assert dead_units(analyze_model(model, registry=unsure).analysis, unsure) == {}
    plan, pruned = prune(model, ratio=0.0, registry=registry)
    assert plan.removed_units == 2 and weight_shape(pruned, "conv1")[0] == 14
    x = images * 3
    np.testing.assert_allclose(run(pruned, x), run(model, x), rtol=1e-5, atol=1e-5)


def test_custom_domain_op_owns_coupling_fixup_and_macs(images: np.ndarray) -> None:
    model = mc.channel_scale(16)
    assert any("ChannelScale node 'cscale'" in r for r in _group(model, "conv1").reasons)
    registry = _with("ChannelScale", mc.ChannelScaleHandler())
    plan, pruned = prune(model, ratio=0.5, registry=registry)
    removed = next(gp.remove for gp in plan.groups if gp.sources == ["conv1"])
    kept = [c for c in range(16) if c not in removed]
    onnx.checker.check_model(pruned, full_check=True)
    node = next(n for n in pruned.graph.node if n.name == "cscale")
    assert node.domain == mc.DOMAIN and next(a.i for a in node.attribute if a.name == "channels") == 8
    inits = {t.name: numpy_helper.to_array(t) for t in pruned.graph.initializer}
    original = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    np.testing.assert_array_equal(inits[node.input[1]], original[node.input[1]][kept])
    vi = next(v for v in pruned.graph.value_info if v.name == node.output[0])
    assert [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim] == ["N", 8, 8, 8]
    assert weight_shape(pruned, "conv1") == (8, 3, 3, 3) and weight_shape(pruned, "conv2") == (8, 8, 3, 3)
    before, after = macs.count(model, registry=registry), macs.count(pruned, registry=registry)
    assert before["macs_by_op"]["ChannelScale"] == 16 * 64 and after["macs_by_op"]["ChannelScale"] == 8 * 64
    assert "ChannelScale" not in macs.count(model)["macs_by_op"]
    got = run(mc.as_mul(pruned), images)  # ORT cannot run the custom op; its Mul equivalent it can
    ref = run(masked_reference(mc.as_mul(model), plan), images)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_an_op_without_a_handler_pins_its_groups_with_the_reason() -> None:
    registry = builtin_registry()
    assert registry.remove("Relu") is not None
    az = analyze_model(models.chain(), registry=registry)
    blocked = {g.sources: g.reasons for g in az.groups if g.blocked}
    assert set(blocked) >= {("conv1",), ("conv2",)}
    assert any("Relu node" in r and "is not understood by the pruner" in r for r in blocked[("conv1",)])
    plan, pruned = prune(models.chain(), ratio=0.5, registry=registry)
    assert plan.removed_units == 0 and weight_shape(pruned, "conv1") == (16, 3, 3, 3)


def test_registry_refuses_what_is_not_a_handler() -> None:
    with pytest.raises(TypeError, match="must be an OpHandler"):
        HandlerRegistry().register("Foo", object())  # type: ignore[arg-type]
