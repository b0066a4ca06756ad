"""Heads of a fused QKV projection pruned consistently across Q, K, V and the output projection.

Parity reference as in test_couplings: the unpruned model with the removed heads' rows of the
output projection zeroed (their whole contribution), run on ONNX Runtime.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from trtforge.pipeline.graph.pruning import analyze_model
from trtforge.pipeline.graph.pruning.graph import GraphIndex
from trtforge.pipeline.graph.pruning.lossless import dead_units

from . import models_attention as ma
from .conftest import check_valid, masked_reference, prune, run


def _init(model: onnx.ModelProto, name: str) -> np.ndarray:
    """An initializer or Constant-node value."""
    value = GraphIndex(model).const(name)
    assert value is not None, name
    return value


def _weights(model: onnx.ModelProto, node_name: str) -> np.ndarray:
    node = next(n for n in model.graph.node if n.name == node_name)
    return _init(model, node.input[1])


def _reshape_shapes(model: onnx.ModelProto) -> list[list[int]]:
    return [_init(model, n.input[1]).tolist() for n in model.graph.node if n.op_type == "Reshape"]


def _head_columns(heads: list[int], d: int, dh: int) -> list[int]:
    """Output channels of ``heads`` in each of the Q, K, V blocks of a [d, 3d] projection."""
    return [s * d + h * dh + e for s in range(3) for h in heads for e in range(dh)]


def _head_rows(heads: list[int], dh: int) -> list[int]:
    return [h * dh + e for h in heads for e in range(dh)]


@pytest.mark.parametrize("form", ma.FORMS)
def test_fused_qkv_heads_pruned(form):
    model = ma.fused_attention(form)
    g = next(g for g in analyze_model(model).groups if "wqkv" in g.sources)
    assert g.sources == ("wqkv",) and g.size == ma.HEADS and g.channels == 3 * ma.DH and not g.blocked
    plan, pruned = prune(model, ratio=0.5)
    check_valid(pruned)
    removed = next(gp.remove for gp in plan.groups if gp.sources == ["wqkv"])
    kept = [h for h in range(ma.HEADS) if h not in removed]
    assert len(kept) == 2
    cols = _head_columns(kept, ma.D, ma.DH)
    np.testing.assert_array_equal(_weights(pruned, "wqkv"), _weights(model, "wqkv")[:, cols])
    np.testing.assert_array_equal(_weights(pruned, "wo"), _weights(model, "wo")[_head_rows(kept, ma.DH)])
    shapes = _reshape_shapes(pruned)
    assert [0, 0, ma.D // 2] in shapes  # merge_heads: H' * Dh
    if form in ("chunk", "slice3"):
        assert shapes.count([0, 0, 2, ma.DH]) == 3
    else:
        assert [0, 0, 3, 2, ma.DH] in shapes
    x = ma.random_input()
    got, ref = run(pruned, x), run(masked_reference(model, plan), x)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    assert not np.allclose(got, run(model, x), atol=1e-3)  # heads really went


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (ma.fused_attention("gather", indices=(0, 1, 1)), "select [0, 1, 1] on axis 0, not Q, K and V"),
        (ma.unknown_reader(), "ReduceMax node"),
    ],
    ids=["v-missing", "unknown-reader"],
)
def test_other_layouts_stay_blocked(model, reason):
    g = next(g for g in analyze_model(model).groups if "wqkv" in g.sources)
    assert g.blocked
    assert any("like a fused QKV projection" in r and reason in r for r in g.reasons), g.reasons
    plan, pruned = prune(model, ratio=0.5)
    assert all("wqkv" not in gp.sources for gp in plan.groups)
    assert _weights(pruned, "wqkv").shape == (ma.D, 3 * ma.D)


def _export_tiny_transformer(path, exporter: str) -> onnx.ModelProto:
    torch = pytest.importorskip("torch")
    from benchmarks.zoo import RowTransformer

    torch.manual_seed(0)
    net = RowTransformer(dim=32, heads=4, hidden=32, layers=2).eval()
    x = torch.zeros(2, 1, 8, 8)
    kw: dict[str, object]
    if exporter == "dynamo":
        kw = {"dynamo": True, "dynamic_shapes": {"x": {0: torch.export.Dim("batch", min=1, max=64)}}}
    else:
        kw = {"dynamo": False, "opset_version": 17}  # static: dynamic axes give run-time Reshape shapes
    torch.onnx.export(net, (x,), str(path), input_names=["x"], output_names=["logits"], **kw)
    return onnx.load(str(path))


@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export")
@pytest.mark.filterwarnings("ignore:`isinstance.treespec, LeafSpec.` is deprecated:FutureWarning")
@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_tiny_zoo_transformer_export(tmp_path, exporter):
    model = _export_tiny_transformer(tmp_path / "t.onnx", exporter)
    heads = [g for g in analyze_model(model).groups if g.size == 4 and g.channels == 24]
    assert len(heads) == 2 and not any(g.blocked for g in heads)  # one fused QKV per layer
    plan, pruned = prune(model, ratio=0.5)
    check_valid(pruned)
    for g in heads:
        w = _weights(pruned, g.sources[0])
        assert w.shape == (32, 48)
    five = [s for s in _reshape_shapes(pruned) if len(s) == 5]
    assert len(five) == 2 and all(s[2:] == [3, 2, 8] for s in five)
    merged = [s for s in _reshape_shapes(pruned) if len(s) == 3 and s[-1] == 16]
    assert len(merged) == 2
    x = np.random.default_rng(3).standard_normal((2, 1, 8, 8)).astype(np.float32)
    got, ref = run(pruned, x), run(masked_reference(model, plan), x)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    assert not np.allclose(got, run(model, x), atol=1e-4)


def _zero_channels(model: onnx.ModelProto, channels: list[int]) -> onnx.ModelProto:
    """``model`` with the given output channels of ``wqkv`` (weight columns and bias) set to 0."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {t.name: t for t in out.graph.initializer}
    mm = next(n for n in out.graph.node if n.name == "wqkv")
    add = next(n for n in out.graph.node if n.op_type == "Add" and n.input[0] == mm.output[0])
    for name, axis in ((mm.input[1], 1), (add.input[1], 0)):
        value = numpy_helper.to_array(inits[name]).copy()
        np.moveaxis(value, axis, 0)[channels] = 0.0
        inits[name].CopyFrom(numpy_helper.from_array(value, name))
    return out


@pytest.mark.parametrize("form", ["gather", "chunk"])
def test_lossless_needs_the_whole_head(form):
    base = ma.fused_attention(form)
    one = _zero_channels(base, [2 * ma.D + ma.DH + ma.DH - 1])  # last V channel of head 1 only
    assert dead_units(analyze_model(one).analysis) == {}
    whole = _zero_channels(base, _head_columns([1], ma.D, ma.DH))  # head 1 in Q, K and V
    dead = dead_units(analyze_model(whole).analysis)
    assert [v.tolist() for v in dead.values()] == [[1]]
    plan, pruned = prune(whole, ratio=0.0)
    assert plan.removed_units == 1 and _weights(pruned, "wo").shape == (ma.D - ma.DH, ma.D)
    x = ma.random_input()
    np.testing.assert_allclose(run(pruned, x), run(whole, x), rtol=1e-4, atol=1e-4)
