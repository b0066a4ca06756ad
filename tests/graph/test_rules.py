"""Each rewrite rule: structure (node counts), parity on ONNX Runtime CPU, and its rejections."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from onnx import helper
from onnx_ir.passes.common import RemoveUnusedNodesPass, ShapeInferencePass

from tests import models_onnx as m
from trtforge.pipeline.graph.fusion import PASSES, fuse_model, op_counts
from trtforge.pipeline.graph.options import FusionOptions
from trtforge.pipeline.graph.rules._base import Rule, RuleStats, apply_rule
from trtforge.pipeline.graph.rules.fold_bn_into_conv import FoldBatchNormIntoConv
from trtforge.pipeline.graph.rules.fold_bn_into_conv_transpose import FoldBatchNormIntoConvTranspose
from trtforge.pipeline.graph.rules.fold_bn_into_gemm import FoldBatchNormIntoGemm
from trtforge.pipeline.graph.rules.matmul_add_to_gemm import MatMulAddToGemm
from trtforge.pipeline.graph.rules.remove_dropout import RemoveDropout
from trtforge.pipeline.graph.rules.simplify_reshape_shape import SimplifyReshapeShape

ATOL = 1e-4
NO_SLIM = FusionOptions(use_onnxslim=False)


def apply(rule: Rule, model: onnx.ModelProto) -> tuple[onnx.ModelProto, RuleStats]:
    """``rule`` alone (after shape inference, before dead-node cleanup) on a copy of ``model``.

    The result must pass the full ONNX checker.
    """
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    work = ir.serde.deserialize_model(copy)
    ShapeInferencePass()(work)
    stats = apply_rule(rule, work)
    RemoveUnusedNodesPass()(work)
    out = ir.serde.serialize_model(work)
    onnx.checker.check_model(out, full_check=True)
    return out, stats


def run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def max_err(a: onnx.ModelProto, b: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> float:
    ra, rb = run(a, feeds), run(b, feeds)
    assert ra.keys() == rb.keys(), "the outputs (names) changed"
    return max(float(np.abs(ra[k].astype(np.float64) - rb[k]).max()) for k in ra)


def feed(shape: tuple[int, ...], name: str = "x", seed: int = 0) -> dict[str, np.ndarray]:
    return {name: np.random.default_rng(seed).standard_normal(shape).astype(np.float32)}


def reasons(stats: RuleStats) -> list[str]:
    return [r.reason for r in stats.rejections]


@pytest.mark.parametrize(("bias", "group"), [(True, 1), (False, 1), (True, 2)])
def test_fold_bn_into_conv(bias: bool, group: int) -> None:
    model = m.conv_bn(bias=bias, group=group)
    out, stats = apply(FoldBatchNormIntoConv(), model)
    assert stats.applied == 1 and not stats.rejections
    assert op_counts(out) == {"Conv": 1, "Relu": 1}
    # the BN output was also a graph output: it keeps its name, now produced by the Conv
    assert [o.name for o in out.graph.output] == ["y", "n"]
    assert max_err(model, out, feed((1, 4, 8, 8))) <= ATOL


def test_fold_bn_into_conv_transpose_grouped_and_plain() -> None:
    for group in (1, 2):
        model = m.conv_transpose_bn(group=group)
        out, stats = apply(FoldBatchNormIntoConvTranspose(), model)
        assert stats.applied == 1
        assert op_counts(out) == {"ConvTranspose": 1}
        assert max_err(model, out, feed((1, 4, 5, 5))) <= ATOL


@pytest.mark.parametrize(("trans_b", "bias"), [(1, True), (0, False)])
def test_fold_bn_into_gemm_over_2d(trans_b: int, bias: bool) -> None:
    model = m.gemm_bn(trans_b=trans_b, bias=bias, beta=0.5)
    out, stats = apply(FoldBatchNormIntoGemm(), model)
    assert stats.applied == 1
    assert op_counts(out) == {"Gemm": 1}
    gemm = out.graph.node[0]
    assert helper.get_attribute_value(next(a for a in gemm.attribute if a.name == "beta")) == 1.0
    assert max_err(model, out, feed((3, 5))) <= ATOL  # dynamic batch, run at 3


def test_bn_rules_only_take_their_own_producer() -> None:
    _, stats = apply(FoldBatchNormIntoGemm(), m.conv_bn())
    assert stats.applied == 0 and not stats.rejections


def test_shared_weight_is_rejected() -> None:
    model = m.conv_bn_shared_weight()
    out, stats = apply(FoldBatchNormIntoConv(), model)
    assert stats.applied == 0
    assert op_counts(out)["BatchNormalization"] == 2
    assert len(stats.rejections) == 2
    assert all("shared with a node outside the match" in r for r in reasons(stats))


def test_conv_output_read_elsewhere_is_rejected() -> None:
    out, stats = apply(FoldBatchNormIntoConv(), m.conv_output_consumed_twice())
    assert stats.applied == 0 and op_counts(out)["BatchNormalization"] == 1
    assert reasons(stats) == ["Conv output 'c' has other consumers (relu)"]


def test_conv_output_that_is_a_graph_output_is_rejected() -> None:
    model = m.conv_bn()
    model.graph.output.append(m.vi("c", [1, 6, 8, 8]))
    _, stats = apply(FoldBatchNormIntoConv(), model)
    assert stats.applied == 0
    assert reasons(stats) == ["Conv output 'c' is also a graph output"]


def test_bn_output_consumed_twice_still_folds() -> None:
    model = m.bn_output_consumed_twice()
    out, stats = apply(FoldBatchNormIntoConv(), model)
    assert stats.applied == 1
    assert "BatchNormalization" not in op_counts(out)
    assert max_err(model, out, feed((1, 4, 5, 5))) <= ATOL


def test_training_mode_bn_is_rejected() -> None:
    model = m.conv_bn()
    bn = next(n for n in model.graph.node if n.op_type == "BatchNormalization")
    bn.attribute.append(helper.make_attribute("training_mode", 1))
    bn.output.extend(["running_mean", "running_var"])
    _, stats = apply(FoldBatchNormIntoConv(), model)
    assert stats.applied == 0 and "training mode" in reasons(stats)[0]


@pytest.mark.parametrize("bias_first", [False, True])
def test_matmul_add_to_gemm(bias_first: bool) -> None:
    model = m.matmul_add(bias_first=bias_first)
    out, stats = apply(MatMulAddToGemm(), model)
    assert stats.applied == 1
    assert op_counts(out) == {"Gemm": 1}
    assert max_err(model, out, feed((3, 5))) <= ATOL


def test_matmul_add_rejections() -> None:
    _, stats = apply(MatMulAddToGemm(), m.matmul_add(a_shape=(2, 3, 5)))
    assert reasons(stats) == ["MatMul input 'x' has rank 3; Gemm needs a 2-D input"]
    # a [2, 7] bias against a dynamic M: Add would broadcast, Gemm's C may not
    _, stats = apply(MatMulAddToGemm(), m.matmul_add(bias_shape=(2, 7)))
    assert stats.applied == 0 and "does not broadcast one way" in reasons(stats)[0]


def test_remove_dropout_and_its_rejections() -> None:
    model = m.identity_dropout_chain(training_mode=False)
    out, stats = apply(RemoveDropout(), model)
    assert stats.applied == 1 and "Dropout" not in op_counts(out)
    assert max_err(model, out, feed((2, 3))) == 0.0
    _, stats = apply(RemoveDropout(), m.identity_dropout_chain(training_mode=True))
    assert reasons(stats) == ["Dropout's training_mode input is not a constant false"]
    _, stats = apply(RemoveDropout(), m.identity_dropout_chain(mask_used=True))
    assert reasons(stats) == ["Dropout's mask output 'mask' is in use"]


def test_identity_dropout_chain_and_dead_nodes_are_removed() -> None:
    model = m.identity_dropout_chain()
    out = fuse_model(model, NO_SLIM).model
    assert op_counts(out) == {"Relu": 1}
    assert [o.name for o in out.graph.output] == ["y"]
    assert max_err(model, out, feed((2, 3))) == 0.0
    dead = fuse_model(m.dead_nodes(), NO_SLIM).model
    assert op_counts(dead) == {"Relu": 1}
    assert not dead.graph.initializer  # the unused initializer went too


def test_reshape_target_with_dynamic_batch_becomes_constant() -> None:
    model = m.shape_chain()
    out, stats = apply(SimplifyReshapeShape(), model)
    assert stats.applied == 1
    assert op_counts(out) == {"Relu": 1, "Reshape": 1}
    target = next(t for t in out.graph.initializer)
    assert onnx.numpy_helper.to_array(target).tolist() == [0, -1]
    assert max_err(model, out, feed((3, 3, 4, 4))) == 0.0


def test_reshape_target_static_and_sliced() -> None:
    out, stats = apply(SimplifyReshapeShape(), m.shape_chain(batch=2))
    assert stats.applied == 1
    assert onnx.numpy_helper.to_array(out.graph.initializer[0]).tolist() == [2, -1]
    model = m.shape_chain_two_dynamic()
    out, stats = apply(SimplifyReshapeShape(), model)
    assert stats.applied == 1 and op_counts(out) == {"Reshape": 1}
    assert onnx.numpy_helper.to_array(out.graph.initializer[0]).tolist() == [0, 0, -1]
    assert max_err(model, out, feed((2, 3, 4, 2))) == 0.0


def test_reshape_target_moving_a_dynamic_dim_is_rejected() -> None:
    out, stats = apply(SimplifyReshapeShape(), m.shape_chain_other_dim())
    assert stats.applied == 0 and op_counts(out)["Shape"] == 1
    assert reasons(stats) == ["dimension 1 of 'x' is dynamic and not copied in place"]


@pytest.mark.parametrize("via", ["Identity", "Transpose"])
@pytest.mark.parametrize("slim", [False, True])
def test_bn_folds_when_the_weight_comes_through_a_foldable_chain(via: str, slim: bool) -> None:
    model = m.conv_bn(weight_via=via)
    result = fuse_model(model, FusionOptions(use_onnxslim=slim))
    assert op_counts(result.model) == {"Conv": 1, "Relu": 1}
    assert max_err(model, result.model, feed((1, 4, 8, 8))) <= ATOL
    by_name = {p.name: p for p in result.passes}
    assert by_name["fold_bn_into_conv"].applied == 1


def test_switches_turn_passes_off() -> None:
    model = m.conv_bn()
    off = FusionOptions(fold_batchnorm=False)
    result = fuse_model(model, off)
    assert op_counts(result.model)["BatchNormalization"] == 1
    assert "fold_bn_into_conv" not in {p.name for p in result.passes}
    chain = fuse_model(
        m.conv_bn(weight_via="Identity"), FusionOptions(fold_constants=False, use_onnxslim=False)
    )
    assert op_counts(chain.model) == {"Conv": 1, "Relu": 1}  # Identity removal alone is enough here


def test_fuse_model_leaves_the_callers_model_alone() -> None:
    model = m.conv_bn(weight_via="Identity")
    before = model.SerializeToString()
    fuse_model(model)
    assert model.SerializeToString() == before


def test_rules_hold_no_state() -> None:
    rules = [
        FoldBatchNormIntoConv(),
        FoldBatchNormIntoConvTranspose(),
        FoldBatchNormIntoGemm(),
        MatMulAddToGemm(),
        RemoveDropout(),
        SimplifyReshapeShape(),
    ]
    for rule in rules:
        apply(rule, m.conv_bn())
        assert vars(rule) == {}, f"{rule.name} keeps state between matches"
    names = [p.name for p in PASSES]
    assert len(names) - names.count("infer_shapes") == len(set(names) - {"infer_shapes"})
    assert all(dataclasses.is_dataclass(p) for p in PASSES)


def test_initializers_listed_as_inputs_are_frozen_then_folded() -> None:
    model = m.conv_bn()
    for tensor in list(model.graph.initializer):
        model.graph.input.append(m.vi(tensor.name, list(tensor.dims)))
    _, stats = apply(FoldBatchNormIntoConv(), model)  # the rule alone: the weight may change at run time
    assert stats.applied == 0 and "graph input" in reasons(stats)[0]
    out = fuse_model(model, NO_SLIM).model
    assert [i.name for i in out.graph.input] == ["x"]
    assert op_counts(out) == {"Conv": 1, "Relu": 1}
    assert max_err(m.conv_bn(), out, feed((1, 4, 8, 8))) <= ATOL
