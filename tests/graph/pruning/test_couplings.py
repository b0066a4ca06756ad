"""Each coupling type pruned, checked structurally and against ONNX Runtime.

The parity reference is the unpruned model with the removed channels' consumer weights zeroed:
structured pruning must reproduce it exactly (up to float rounding).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from trtforge.pipeline.graph.pruning import analyze_model

from . import models
from .conftest import check_valid, masked_reference, prune, run


def weight_shape(model: onnx.ModelProto, node_name: str) -> tuple[int, ...]:
    node = next(n for n in model.graph.node if n.name == node_name)
    init = next(t for t in model.graph.initializer if t.name == node.input[1])
    return tuple(init.dims)


def group_of(model: onnx.ModelProto, source: str):
    az = analyze_model(model)
    return next(g for g in az.groups if source in g.sources)


@pytest.mark.parametrize(
    "build",
    [models.chain, models.residual, models.concat, models.split, models.depthwise, models.flatten_gemm],
)
def test_pruned_matches_masked_reference(build, images):
    model = build()
    plan, pruned = prune(model, ratio=0.5)
    assert plan.removed_units > 0
    check_valid(pruned)
    ref = run(masked_reference(model, plan), images)
    got = run(pruned, images)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    assert sum(t.ByteSize() for t in pruned.graph.initializer) < sum(
        t.ByteSize() for t in model.graph.initializer
    )


def test_chain_structure():
    model = models.chain()
    _, pruned = prune(model, ratio=0.5)
    assert weight_shape(pruned, "conv1") == (8, 3, 3, 3)
    assert weight_shape(pruned, "conv2") == (8, 8, 3, 3)
    assert weight_shape(pruned, "fc") == (10, 8)
    bn = next(n for n in pruned.graph.node if n.op_type == "BatchNormalization")
    assert all(
        numpy_helper.to_array(t).shape == (8,) for t in pruned.graph.initializer if t.name in bn.input[1:]
    )


def test_residual_branches_share_one_group():
    model = models.residual()
    g = group_of(model, "stem")
    assert set(g.sources) == {"stem", "c2"} and g.size == 16
    _, pruned = prune(model, ratio=0.5)
    assert weight_shape(pruned, "stem")[0] == weight_shape(pruned, "c2")[0] == 8
    assert weight_shape(pruned, "c1") == (8, 8, 3, 3)  # c1 is its own group, pruned too


def test_concat_offsets():
    model = models.concat()
    _, pruned = prune(model, ratio=0.5)
    assert weight_shape(pruned, "a")[0] == 8 and weight_shape(pruned, "b")[0] == 4
    assert weight_shape(pruned, "c")[1] == 12


def test_split_ranges_and_sizes():
    model = models.split()
    g = group_of(model, "a")
    assert g.sources == ("a",)
    _, pruned = prune(model, ratio=0.5)
    split = next(n for n in pruned.graph.node if n.op_type == "Split")
    sizes = numpy_helper.to_array(next(t for t in pruned.graph.initializer if t.name == split.input[1]))
    assert sizes.sum() == weight_shape(pruned, "a")[0] == 8
    assert weight_shape(pruned, "b1")[1] == sizes[0] and weight_shape(pruned, "b2")[1] == sizes[1]


def test_depthwise_in_equals_out():
    model = models.depthwise()
    _, pruned = prune(model, ratio=0.5)
    dw = next(n for n in pruned.graph.node if n.name == "dw")
    group = next(a.i for a in dw.attribute if a.name == "group")
    assert (
        weight_shape(pruned, "a")[0]
        == group
        == weight_shape(pruned, "dw")[0]
        == weight_shape(pruned, "pw")[1]
    )


def test_flatten_into_gemm_blocks():
    model = models.flatten_gemm()
    g = group_of(model, "a")
    assert g.size == 16
    _, pruned = prune(model, ratio=0.5)
    assert weight_shape(pruned, "fc1") == (16, 8 * 16)  # fc1 pruned to 16, 8 channels x 16 positions


def test_attention_heads(images):
    model = models.attention()
    g = group_of(model, "wq")
    assert set(g.sources) == {"wq", "wk", "wv"} and g.size == 4 and g.channels == 8
    residual = group_of(model, "wo")
    assert residual.blocked  # the residual stream is tied to the graph input and output
    plan, pruned = prune(model, ratio=0.5)
    check_valid(pruned)
    assert weight_shape(pruned, "wq") == (32, 16) and weight_shape(pruned, "wo") == (16, 32)
    assert weight_shape(pruned, "ffn1") == (32, 64)
    x = np.random.default_rng(2).standard_normal((2, 6, 32)).astype(np.float32)
    np.testing.assert_allclose(run(pruned, x), run(masked_reference(model, plan), x), rtol=1e-4, atol=1e-4)


def test_graph_outputs_and_inputs_are_never_pruned():
    model = models.attention()
    _, pruned = prune(model, ratio=0.5)
    assert [d.dim_param or d.dim_value for d in pruned.graph.input[0].type.tensor_type.shape.dim] == [
        "N",
        6,
        32,
    ]
    x = np.zeros((1, 6, 32), dtype=np.float32)
    assert run(pruned, x).shape == (1, 6, 32)


def test_unknown_op_blocks_exactly_its_groups():
    model = models.unknown_op()
    az = analyze_model(model)
    blocked = {g.sources for g in az.groups if g.blocked}
    free = {g.sources for g in az.groups if not g.blocked}
    assert blocked == {("conv1",), ("fc",)}  # fc writes the graph output
    assert ("conv2",) in free
    reasons = {g.sources: g.reasons for g in az.groups}
    assert any("LRN" in r for r in reasons[("conv1",)])
    assert not any("LRN" in r for r in reasons[("fc",)])
    _, pruned = prune(model, ratio=0.5)
    assert weight_shape(pruned, "conv1")[0] == 16 and weight_shape(pruned, "conv2")[0] == 8


def test_rounding_to_multiples():
    _, pruned = prune(models.chain(), ratio=0.3, round_to=8)
    assert weight_shape(pruned, "conv1")[0] == 16  # 16 * 0.7 = 11.2 -> rounded up to 16
    _, pruned = prune(models.chain(), ratio=0.6, round_to=8)
    assert weight_shape(pruned, "conv1")[0] == 8


def test_skip_and_global_scope():
    _, pruned = prune(models.chain(), ratio=0.5, skip=("conv1",))
    assert weight_shape(pruned, "conv1")[0] == 16 and weight_shape(pruned, "conv2")[0] == 8
    _, pruned = prune(models.chain(), ratio=0.5, scope="global", max_ratio_per_layer=0.75)
    kept = weight_shape(pruned, "conv1")[0] + weight_shape(pruned, "conv2")[0]
    assert 14 <= kept <= 18 and min(weight_shape(pruned, "conv1")[0], weight_shape(pruned, "conv2")[0]) >= 4


@pytest.mark.parametrize("criterion", ["l2", "bn"])
def test_criteria_choose_lowest(criterion):
    model = models.chain()
    plan, pruned = prune(model, ratio=0.5, criterion=criterion)
    check_valid(pruned)
    assert plan.meta["criterion"] == criterion and plan.removed_units == 16


def test_input_model_untouched():
    model = models.residual()
    before = model.SerializeToString()
    prune(model, ratio=0.5)
    assert model.SerializeToString() == before
