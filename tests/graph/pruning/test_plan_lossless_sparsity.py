"""Lossless removal, plans as data, 2:4 sparsity, MAC counting and analysis speed."""

from __future__ import annotations

import time

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from trtforge.pipeline.errors import InputError
from trtforge.pipeline.graph.pruning import (
    PlanRequest,
    PlanSettings,
    PrunePlan,
    analyze_model,
    apply_plan,
    macs,
    plan_model,
    sparsity,
)

from . import models
from .conftest import check_valid, run


def test_lossless_removes_planted_dead_channels_with_parity(images):
    model = models.dead_channels((1, 4, 5, 9))
    plan, _ = plan_model(model, PlanRequest(PlanSettings(ratio=0.0, round_to=1)))
    assert plan.meta["dead_units"] == 4
    assert [g.remove for g in plan.groups] == [[1, 4, 5, 9]]
    pruned = apply_plan(model, plan)
    check_valid(pruned)
    conv1 = next(n for n in pruned.graph.node if n.name == "conv1")
    assert next(t for t in pruned.graph.initializer if t.name == conv1.input[1]).dims[0] == 12
    x = np.random.default_rng(3).standard_normal((4, 3, 8, 8)).astype(np.float32) * 3
    np.testing.assert_allclose(run(pruned, x), run(model, x), rtol=1e-5, atol=1e-5)


def test_lossless_finds_nothing_on_a_dense_model():
    plan, _ = plan_model(models.chain(), PlanRequest(PlanSettings(ratio=0.0, round_to=1)))
    assert plan.removed_units == 0 and plan.meta["dead_units"] == 0


def test_dead_channel_with_positive_bn_shift_is_kept():
    model = models.dead_channels((2,))
    bn = next(n for n in model.graph.node if n.op_type == "BatchNormalization")
    beta = next(t for t in model.graph.initializer if t.name == bn.input[2])
    value = numpy_helper.to_array(beta).copy()
    value[2] = 0.7  # relu(0.7) != 0: the channel feeds a constant into conv2, not removable
    beta.CopyFrom(numpy_helper.from_array(value, beta.name))
    plan, _ = plan_model(model, PlanRequest(PlanSettings(ratio=0.0, round_to=1)))
    assert plan.removed_units == 0


def test_saved_plan_reapplied_gives_identical_model(tmp_path):
    model = models.concat()
    plan, _ = plan_model(model, PlanRequest(PlanSettings(ratio=0.5, round_to=4)))
    first = apply_plan(model, plan).SerializeToString()
    plan.save(tmp_path / "plan.json")
    again = apply_plan(model, PrunePlan.load(tmp_path / "plan.json")).SerializeToString()
    assert first == again


def test_plan_on_other_model_names_first_mismatch(tmp_path):
    plan, _ = plan_model(models.chain(), PlanRequest(PlanSettings(ratio=0.5, round_to=1)))
    with pytest.raises(InputError, match=r"plan group g0 .*conv1"):
        apply_plan(models.residual(), plan, source="other.onnx")
    plan.groups[0].size = 99
    with pytest.raises(InputError, match="99 channels in the plan but 16"):
        apply_plan(models.chain(), plan)


def test_plan_file_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        PrunePlan.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something"}')
    with pytest.raises(InputError, match="not a trtforge pruning plan"):
        PrunePlan.load(bad)


def test_already_pruned_model_again_is_fine():
    model = models.chain()
    plan, _ = plan_model(model, PlanRequest(PlanSettings(ratio=0.5, round_to=8)))
    once = apply_plan(model, plan)
    plan2, _ = plan_model(once, PlanRequest(PlanSettings(ratio=0.1, round_to=8)))
    assert plan2.removed_units == 0  # 8 channels * 0.9 rounds back up to 8


def test_2_4_sparsity_pattern_on_every_eligible_weight(images):
    model = models.attention(heads=4, dh=8)
    sparse, _, found = sparsity.apply_2_4(model)
    eligible = [layer for layer in found if layer.eligible]
    assert {layer.node for layer in eligible} >= {"wq", "wk", "wv", "wo", "ffn1", "ffn2"}
    inits = {t.name: numpy_helper.to_array(t) for t in sparse.graph.initializer}
    for layer in eligible:
        assert sparsity.is_2_4(inits[layer.weight], layer.axis), layer.node
        assert int((inits[layer.weight] != 0).sum()) == inits[layer.weight].size // 2
    assert not sparsity.is_2_4(
        numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == eligible[0].weight)),
        eligible[0].axis,
    )
    check_valid(sparse)


def test_2_4_conv_runs_along_input_channels():
    w = np.random.default_rng(0).standard_normal((4, 8, 3, 3))
    m = sparsity.mask_2_4(w, 1)
    assert (m.reshape(4, 2, 4, 3, 3).sum(axis=2) == 2).all()
    small = models.chain()  # conv1 has 3 input channels: not eligible
    found = {layer.node: layer for layer in sparsity.layers(small)}
    assert not found["conv1"].eligible and "multiple of 4" in found["conv1"].reason
    assert found["conv2"].eligible


def test_macs_drop_after_pruning():
    model = models.chain()
    plan, _ = plan_model(model, PlanRequest(PlanSettings(ratio=0.5, round_to=1)))
    before, after = macs.count(model), macs.count(apply_plan(model, plan))
    assert before["macs"] == 16 * 27 * 64 + 16 * 144 * 64 + 160
    assert after["macs"] == 8 * 27 * 64 + 8 * 72 * 64 + 80
    assert after["params"] < before["params"]


def _deep_chain(blocks: int) -> onnx.ModelProto:
    g = models.G()
    y = g.op("Relu", [g.conv("x", 3, 16, k=1, name="stem")])
    for i in range(blocks):
        z = g.op("Relu", [g.bn(g.conv(y, 16, 16, k=1, name=f"a{i}"), 16)])
        y = g.op("Add", [y, g.conv(z, 16, 16, k=1, name=f"b{i}")])
    return g.model({"x": ["N", 3, 4, 4]}, [models.head(g, y, 16)])


def test_analysis_of_a_large_graph_takes_seconds_not_minutes():
    model = _deep_chain(200)  # ~1,000 nodes
    assert len(model.graph.node) >= 1000
    t0 = time.perf_counter()
    az = analyze_model(model)
    assert time.perf_counter() - t0 < 10
    assert len(az.groups) == 202  # the residual stream + one per block + fc
    residual = next(g for g in az.groups if "stem" in g.sources)
    assert len(residual.sources) == 201


def test_activation_criterion_uses_calibration_feeds(images):
    model = models.chain()
    feeds = [{"x": images}, {"x": images * 2}]
    req = PlanRequest(PlanSettings(ratio=0.5, round_to=1), criterion="activation")
    plan, _ = plan_model(model, req, feeds)
    assert plan.removed_units == 16
    pruned = apply_plan(model, plan)
    check_valid(pruned)
    assert run(pruned, images).shape == (2, 10)
