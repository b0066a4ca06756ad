"""Models with If/Loop/Scan subgraphs through fuse, convert-fp16 and the op counts.

Every rewrite has to respect the values a subgraph reads from an enclosing graph (by name), and
every count has to look inside subgraphs. The models are built here; each test says which
library behaviour it guards against.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import trtforge
from trtforge.calibration.fp16 import Fp16Options, convert_fp16
from trtforge.common.graphs import free_names, iter_graphs, subgraphs_of
from trtforge.common.ort import SessionConfig, create_session
from trtforge.pipeline.graph.fusion import fuse_model, op_counts
from trtforge.pipeline.graph.options import FusionOptions

F32 = TensorProto.FLOAT
ONNX_OPSET = [helper.make_opsetid("", 17)]


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=ONNX_OPSET)
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def _f32(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def if_model() -> onnx.ModelProto:
    """Three Ifs on ``cond`` reading outer values.

    * ``c = Sqrt(Add(c1, c2))`` is a foldable constant chain only the branches read, ``xi`` an
      outer Identity, ``r = Relu(x)`` an outer value that is also a graph output;
    * ``if_a``: the then branch returns ``r`` through an Identity (which must stay: a branch
      output must be produced inside the branch), the else branch reads ``c`` through an
      Identity of its own (which goes);
    * ``if_b``: both branches return ``Identity(r)`` (onnx-ir's pass raised "already an output of
      a different graph" here);
    * ``if_c``: its condition folds (a static shape), and its then branch returns a constant
      (onnx-graphsurgeon's inlining dropped the If's output, an invalid model).
    """
    inits = [
        numpy_helper.from_array(np.arange(4, dtype=np.float32), "c1"),
        numpy_helper.from_array(np.ones(4, np.float32), "c2"),
        numpy_helper.from_array(np.array(1, np.int64), "one"),
        numpy_helper.from_array(np.array(4, np.int64), "four"),
    ]

    def branch(
        name: str, nodes: list[onnx.NodeProto], out: str, consts: tuple[TensorProto, ...] = ()
    ) -> onnx.GraphProto:
        return helper.make_graph(
            nodes, name, [], [helper.make_tensor_value_info(out, F32, [2, 4])], list(consts)
        )

    a_then = branch("a_then", [helper.make_node("Identity", ["r"], ["a_t"], name="a_then_id")], "a_t")
    a_else = branch(
        "a_else",
        [
            helper.make_node("Identity", ["c"], ["c_in"], name="a_else_id"),
            helper.make_node("Sub", ["xi", "c_in"], ["a_e"], name="a_else_sub"),
        ],
        "a_e",
    )
    b_then = branch("b_then", [helper.make_node("Identity", ["r"], ["b_t"], name="b_then_id")], "b_t")
    b_else = branch("b_else", [helper.make_node("Identity", ["r"], ["b_e"], name="b_else_id")], "b_e")
    c_then = branch("c_then", [], "c_t", (numpy_helper.from_array(np.full((2, 4), 2.0, np.float32), "c_t"),))
    c_else = branch("c_else", [helper.make_node("Mul", ["xi", "c"], ["c_e"], name="c_else_mul")], "c_e")
    nodes = [
        helper.make_node("Add", ["c1", "c2"], ["c0"], name="fold_add"),
        helper.make_node("Sqrt", ["c0"], ["c"], name="fold_sqrt"),
        helper.make_node("Identity", ["x"], ["xi"], name="outer_id"),
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("If", ["cond"], ["ya"], then_branch=a_then, else_branch=a_else, name="if_a"),
        helper.make_node("If", ["cond"], ["yb"], then_branch=b_then, else_branch=b_else, name="if_b"),
        helper.make_node("Shape", ["x"], ["s"], name="shape"),
        helper.make_node("Gather", ["s", "one"], ["s1"], name="gather"),
        helper.make_node("Equal", ["s1", "four"], ["static_cond"], name="equal"),
        helper.make_node("If", ["static_cond"], ["yc"], then_branch=c_then, else_branch=c_else, name="if_c"),
        helper.make_node("Add", ["yc", "ya"], ["y"], name="add"),
    ]
    graph = helper.make_graph(
        nodes,
        "ifs",
        [
            helper.make_tensor_value_info("x", F32, [2, 4]),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
        ],
        [
            helper.make_tensor_value_info("y", F32, [2, 4]),
            helper.make_tensor_value_info("yb", F32, [2, 4]),
            helper.make_tensor_value_info("r", F32, [2, 4]),
        ],
        inits,
    )
    return _model(graph)


def loop_model() -> onnx.ModelProto:
    """A Loop whose body reads ``w`` (a foldable chain behind an Identity) and ``xi`` from outside,
    with an Identity between two body outputs, and a Scan whose body reads ``w`` too."""
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"], name="body_cond"),
            helper.make_node("Mul", ["acc_in", "w"], ["m"], name="body_mul"),
            helper.make_node("Add", ["m", "xi"], ["acc_out"], name="body_add"),
            helper.make_node("Identity", ["acc_out"], ["scan_out"], name="body_id"),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_in", F32, [2, 4]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_out", F32, [2, 4]),
            helper.make_tensor_value_info("scan_out", F32, [2, 4]),
        ],
    )
    scan_body = helper.make_graph(
        [
            helper.make_node("Mul", ["row", "w"], ["scaled"], name="scan_mul"),
            helper.make_node("Add", ["sum_in", "scaled"], ["sum_out"], name="scan_add"),
            helper.make_node("Identity", ["sum_out"], ["rows_out"], name="scan_id"),
        ],
        "scan_body",
        [helper.make_tensor_value_info("sum_in", F32, [4]), helper.make_tensor_value_info("row", F32, [4])],
        [
            helper.make_tensor_value_info("sum_out", F32, [4]),
            helper.make_tensor_value_info("rows_out", F32, [4]),
        ],
    )
    nodes = [
        helper.make_node("Add", ["c1", "c2"], ["w0"], name="fold_add"),
        helper.make_node("Identity", ["w0"], ["w"], name="w_id"),
        helper.make_node("Identity", ["x"], ["xi"], name="outer_id"),
        helper.make_node("Loop", ["trip", "", "x"], ["acc", "steps"], body=body, name="loop"),
        helper.make_node(
            "Scan", ["zero", "x"], ["total", "rows"], body=scan_body, num_scan_inputs=1, name="scan"
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "loops",
        [
            helper.make_tensor_value_info("x", F32, [2, 4]),
            helper.make_tensor_value_info("trip", TensorProto.INT64, []),
        ],
        [
            helper.make_tensor_value_info("acc", F32, [2, 4]),
            helper.make_tensor_value_info("steps", F32, [None, 2, 4]),
            helper.make_tensor_value_info("total", F32, [4]),
            helper.make_tensor_value_info("rows", F32, [2, 4]),
        ],
        [
            numpy_helper.from_array(np.linspace(0.5, 1.0, 4).astype(np.float32), "c1"),
            numpy_helper.from_array(np.full(4, 0.1, np.float32), "c2"),
            numpy_helper.from_array(np.zeros(4, np.float32), "zero"),
        ],
    )
    return _model(graph)


def cross_graph_model() -> onnx.ModelProto:
    """Conv in the main graph, its BatchNormalization in a branch (no fold may pair them), MatMul in
    the main graph and its Add in a branch (no Gemm), and a Conv + BN inside one branch (folds).
    The weights are read only by the branches."""
    rng = np.random.default_rng(0)
    bn = [
        numpy_helper.from_array(np.abs(_f32(rng, 4)) + 0.5, "gamma"),
        numpy_helper.from_array(_f32(rng, 4), "beta"),
        numpy_helper.from_array(_f32(rng, 4), "mean"),
        numpy_helper.from_array(np.abs(_f32(rng, 4)) + 0.5, "var"),
    ]
    inits = [
        numpy_helper.from_array(_f32(rng, 4, 2, 3, 3), "W"),
        numpy_helper.from_array(_f32(rng, 4, 2, 3, 3), "W_in"),
        numpy_helper.from_array(_f32(rng, 8, 5), "MW"),
        numpy_helper.from_array(_f32(rng, 5), "MB"),
        *bn,
    ]

    def g(name: str, nodes: list[onnx.NodeProto], out: str, shape: list[int]) -> onnx.GraphProto:
        return helper.make_graph(nodes, name, [], [helper.make_tensor_value_info(out, F32, shape)])

    bn_then = g(
        "bn_then",
        [helper.make_node("BatchNormalization", ["c", *(t.name for t in bn)], ["bt"], name="bn_in_branch")],
        "bt",
        [1, 4, 4, 4],
    )
    bn_else = g("bn_else", [helper.make_node("Neg", ["x2"], ["be"], name="bn_else_neg")], "be", [1, 4, 4, 4])
    add_then = g(
        "add_then", [helper.make_node("Add", ["mm", "MB"], ["at"], name="add_in_branch")], "at", [2, 5]
    )
    add_else = g(
        "add_else", [helper.make_node("Sub", ["z2", "MB"], ["ae"], name="add_else_sub")], "ae", [2, 5]
    )
    fold_then = g(
        "fold_then",
        [
            helper.make_node("Conv", ["x", "W_in"], ["ic"], pads=[1, 1, 1, 1], name="inner_conv"),
            helper.make_node("BatchNormalization", ["ic", *(t.name for t in bn)], ["ft"], name="inner_bn"),
        ],
        "ft",
        [1, 4, 4, 4],
    )
    fold_else = g(
        "fold_else", [helper.make_node("Neg", ["x2"], ["fe"], name="fold_else_neg")], "fe", [1, 4, 4, 4]
    )
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1], name="outer_conv"),
        helper.make_node("If", ["cond"], ["y1"], then_branch=bn_then, else_branch=bn_else, name="if_bn"),
        helper.make_node("MatMul", ["z", "MW"], ["mm"], name="outer_matmul"),
        helper.make_node("If", ["cond"], ["y2"], then_branch=add_then, else_branch=add_else, name="if_add"),
        helper.make_node(
            "If", ["cond"], ["y3"], then_branch=fold_then, else_branch=fold_else, name="if_fold"
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "cross",
        [
            helper.make_tensor_value_info("x", F32, [1, 2, 4, 4]),
            helper.make_tensor_value_info("x2", F32, [1, 4, 4, 4]),
            helper.make_tensor_value_info("z", F32, [2, 8]),
            helper.make_tensor_value_info("z2", F32, [2, 5]),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
        ],
        [
            helper.make_tensor_value_info("y1", F32, [1, 4, 4, 4]),
            helper.make_tensor_value_info("y2", F32, [2, 5]),
            helper.make_tensor_value_info("y3", F32, [1, 4, 4, 4]),
        ],
        inits,
    )
    return _model(graph)


def _feeds(model: onnx.ModelProto) -> Iterator[dict[str, np.ndarray]]:
    """Inputs for every branch: each boolean input both ways, seeded random floats, trip count 3."""
    rng = np.random.default_rng(1)
    base: dict[str, np.ndarray] = {}
    flags = []
    for vi in model.graph.input:
        t = vi.type.tensor_type
        if t.elem_type == TensorProto.BOOL:
            flags.append(vi.name)
        elif t.elem_type == TensorProto.INT64:
            base[vi.name] = np.array(3, np.int64)
        else:
            base[vi.name] = _f32(rng, *[d.dim_value for d in t.shape.dim])
    for bits in range(2 ** len(flags)):
        yield {**base, **{f: np.array(bool(bits >> i & 1)) for i, f in enumerate(flags)}}


def _run(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = create_session(model, SessionConfig(graph_optimization="disable"))
    return list(session.run(None, feed))


def _assert_same_outputs(a: onnx.ModelProto, b: onnx.ModelProto, atol: float = 1e-5) -> None:
    for feed in _feeds(a):
        for x, y in zip(_run(a, feed), _run(b, feed), strict=True):
            np.testing.assert_allclose(y, x, atol=atol, rtol=atol)


def _nodes(model: onnx.ModelProto, graph_name: str) -> list[onnx.NodeProto]:
    return next(list(g.node) for g in iter_graphs(model.graph) if g.name == graph_name)


MODELS = {"if": if_model, "loop_scan": loop_model, "cross_graph": cross_graph_model}
OPTIONS = {"default": FusionOptions(), "no_onnxslim": FusionOptions(use_onnxslim=False)}


@pytest.mark.parametrize("options", OPTIONS.values(), ids=OPTIONS.keys())
@pytest.mark.parametrize("build", MODELS.values(), ids=MODELS.keys())
def test_fuse_keeps_subgraph_models_valid_and_equal(build, options) -> None:  # type: ignore[no-untyped-def]
    model = build()
    fused = fuse_model(model, options).model
    onnx.checker.check_model(fused, full_check=True)
    _assert_same_outputs(model, fused)
    assert [v.name for v in fused.graph.input] == [v.name for v in model.graph.input]
    assert [v.name for v in fused.graph.output] == [v.name for v in model.graph.output]


def test_identity_is_removed_in_branches_but_kept_where_it_returns_an_outer_value() -> None:
    result = fuse_model(if_model())
    fused = result.model
    assert [n.op_type for n in _nodes(fused, "a_then")] == ["Identity"]  # returns outer r
    assert [n.op_type for n in _nodes(fused, "a_else")] == ["Sub"]  # its Identity(c) went
    assert [n.op_type for n in _nodes(fused, "b_then")] == ["Identity"]
    assert [n.op_type for n in _nodes(fused, "b_else")] == ["Identity"]
    assert "Identity" not in [n.op_type for n in fused.graph.node]  # outer_id went
    kept = [r for p in result.passes for r in p.rejections if r.rule == "remove_identity"]
    assert {r.node for r in kept} == {"a_then_id", "b_then_id", "b_else_id"}
    assert all("from an outer scope" in r.reason for r in kept)


def test_constant_folding_keeps_an_if_whose_condition_folds() -> None:
    fused = fuse_model(if_model(), FusionOptions(use_onnxslim=False)).model
    ifs = {n.name: n for n in fused.graph.node if n.op_type == "If"}
    assert set(ifs) == {"if_a", "if_b", "if_c"}  # not inlined (that dropped yc)
    assert not [n for n in fused.graph.node if n.op_type in ("Shape", "Gather", "Equal")]  # condition folded
    assert ifs["if_c"].input[0] in {t.name for t in fused.graph.initializer}
    # the outer chain c = Sqrt(c1 + c2) that only branches read is folded, into the main graph
    assert {"fold_add", "fold_sqrt"}.isdisjoint(n.name for n in fused.graph.node)
    assert "c" in {t.name for t in fused.graph.initializer}
    assert all("c" not in {t.name for t in g.initializer} for g in list(iter_graphs(fused.graph))[1:])
    _assert_same_outputs(if_model(), fused)


def test_onnxslim_folding_is_guarded_on_models_with_subgraphs() -> None:
    with_subgraphs = fuse_model(if_model())
    reasons = [g["reason"] for g in with_subgraphs.guards]
    assert any(r.startswith("onnxslim's constant folding skipped") for r in reasons)
    plain = fuse_model(_plain_model())
    assert plain.guards == []


def _plain_model() -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["c"]), helper.make_node("Mul", ["x", "c"], ["y"])],
        "plain",
        [helper.make_tensor_value_info("x", F32, [4])],
        [helper.make_tensor_value_info("y", F32, [4])],
        [
            numpy_helper.from_array(np.ones(4, np.float32), "a"),
            numpy_helper.from_array(np.ones(4, np.float32), "b"),
        ],
    )
    return _model(graph)


def test_rules_never_pair_nodes_of_different_graphs() -> None:
    result = fuse_model(cross_graph_model(), FusionOptions(use_onnxslim=False))
    fused = result.model
    assert [n.op_type for n in _nodes(fused, "bn_then")] == ["BatchNormalization"]
    assert [n.op_type for n in _nodes(fused, "add_then")] == ["Add"]
    assert "MatMul" in [n.op_type for n in fused.graph.node]
    assert [n.op_type for n in _nodes(fused, "fold_then")] == ["Conv"]  # folded inside its branch
    reasons = {r.node: r.reason for p in result.passes for r in p.rejections}
    assert "inside a subgraph" in reasons["bn_in_branch"]
    assert "inside a subgraph" in reasons["add_in_branch"]
    _assert_same_outputs(cross_graph_model(), fused)


def test_weights_only_branches_read_stay_in_the_main_graph() -> None:
    fused = fuse_model(cross_graph_model()).model
    main = {t.name for t in fused.graph.initializer}
    assert {"MB", "W", "gamma"} <= main
    for graph in list(iter_graphs(fused.graph))[1:]:
        copied = {t.name for t in graph.initializer} & {"MB", "W", "gamma", "beta", "mean", "var"}
        assert not copied, f"{graph.name} holds a copy of {copied}"


def test_loop_and_scan_bodies_keep_their_outer_reads() -> None:
    model = loop_model()
    fused = fuse_model(model).model
    body = _nodes(fused, "body")
    # the Identity between two body outputs stays (removing it would list a value twice)
    assert [n.op_type for n in body].count("Identity") == 2
    assert [v.name for v in next(g for g in iter_graphs(fused.graph) if g.name == "body").output].count(
        "acc_out"
    ) == 1
    assert "Identity" not in [n.op_type for n in fused.graph.node]  # w_id and outer_id went
    _assert_same_outputs(model, fused)


def test_op_counts_include_subgraph_nodes(tmp_path: Path) -> None:
    model = if_model()
    counts = op_counts(model)
    assert counts["Identity"] == 5 and counts["If"] == 3 and counts["Sub"] == 1 and counts["Mul"] == 1
    path = tmp_path / "ifs.onnx"
    onnx.save(model, path)
    info = trtforge.inspect(path)
    assert info["ops"] == counts
    assert info["nodes"] == sum(counts.values()) == len(model.graph.node) + 6
    result = trtforge.run_stage("fuse", None, path, tmp_path / "fused.onnx")
    assert result.metrics["nodes_before"] == counts
    assert result.metrics["node_count_before"] == info["nodes"]
    assert result.metrics["nodes_after"]["If"] == 3
    assert result.metrics["guards"] and result.metrics["guards"][0]["pass"] == "onnxslim"


# --- convert-fp16 ---------------------------------------------------------------------------------


def branch_islands_model() -> onnx.ModelProto:
    """A streaming-VAD-like If: each branch runs a Conv and a ReduceMean (an FP32 island) on a value
    of the branch, reads the outer normalised input ``xn`` and the outer state ``h``."""
    rng = np.random.default_rng(2)

    def branch(tag: str, k: int) -> onnx.GraphProto:
        w = numpy_helper.from_array(_f32(rng, 4, 1, k) * 0.5, f"{tag}_w")
        return helper.make_graph(
            [
                helper.make_node("Unsqueeze", ["xn", "axis1"], [f"{tag}_u"], name=f"{tag}_unsqueeze"),
                helper.make_node("Conv", [f"{tag}_u", f"{tag}_w"], [f"{tag}_c"], name=f"{tag}_conv"),
                helper.make_node("Relu", [f"{tag}_c"], [f"{tag}_r"], name=f"{tag}_relu"),
                helper.make_node(
                    "ReduceMean", [f"{tag}_r"], [f"{tag}_m"], axes=[-1], keepdims=0, name=f"{tag}_mean"
                ),
                helper.make_node("Add", [f"{tag}_m", "h"], [f"{tag}_h"], name=f"{tag}_add"),
                helper.make_node("Tanh", [f"{tag}_h"], [f"{tag}_out"], name=f"{tag}_tanh"),
            ],
            tag,
            [],
            [helper.make_tensor_value_info(f"{tag}_out", F32, [1, 4])],
            [w],
        )

    nodes = [
        helper.make_node("Abs", ["x"], ["a"], name="abs"),
        helper.make_node("ReduceMax", ["a"], ["amax"], keepdims=1, name="amax"),
        helper.make_node("Div", ["x", "amax"], ["xn"], name="normalise"),
        helper.make_node("Equal", ["sr", "sr16k"], ["is16k"], name="is16k"),
        helper.make_node(
            "If", ["is16k"], ["hn"], then_branch=branch("b16", 4), else_branch=branch("b8", 2), name="by_rate"
        ),
        helper.make_node("Sigmoid", ["hn"], ["p"], name="prob"),
    ]
    graph = helper.make_graph(
        nodes,
        "vad",
        [
            helper.make_tensor_value_info("x", F32, [1, 32]),
            helper.make_tensor_value_info("h", F32, [1, 4]),
            helper.make_tensor_value_info("sr", TensorProto.INT64, []),
        ],
        [helper.make_tensor_value_info("p", F32, [1, 4]), helper.make_tensor_value_info("hn", F32, [1, 4])],
        [
            numpy_helper.from_array(np.array(16000, np.int64), "sr16k"),
            numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        ],
    )
    return _model(graph)


def _vad_feeds() -> Iterator[dict[str, np.ndarray]]:
    rng = np.random.default_rng(3)
    for rate in (16000, 8000):
        yield {"x": _f32(rng, 1, 32), "h": _f32(rng, 1, 4), "sr": np.array(rate, np.int64)}


def _assert_sorted_in_scope(graph: onnx.GraphProto, outer: frozenset[str] = frozenset()) -> None:
    """Every node reads only what its graph defined before it, or an enclosing scope defines."""
    seen = set(outer) | {v.name for v in graph.input} | {t.name for t in graph.initializer} | {""}
    for node in graph.node:
        for sub in subgraphs_of(node):
            _assert_sorted_in_scope(sub, frozenset(seen))
            free = free_names(sub) - seen
            assert not free, f"{node.name} runs a subgraph reading {free} before they are defined"
        missing = [i for i in node.input if i not in seen]
        assert not missing, f"{graph.name}: {node.name} reads {missing} before they are defined"
        seen.update(node.output)


def _elem_types(graph: onnx.GraphProto) -> dict[str, int]:
    infos = [*graph.input, *graph.output, *graph.value_info]
    return {v.name: v.type.tensor_type.elem_type for v in infos}


def test_fp16_of_if_branches_passes_the_checker_with_islands_inside_the_branches() -> None:
    model = branch_islands_model()
    result = convert_fp16(model)
    out = result.model
    onnx.checker.check_model(out, full_check=True)
    _assert_sorted_in_scope(out.graph)
    inferred = onnx.shape_inference.infer_shapes(out, strict_mode=True)
    for branch in ("b16", "b8"):
        graph = next(g for g in iter_graphs(inferred.graph) if g.name == branch)
        nodes = {n.name: n for n in graph.node}
        types = _elem_types(graph)
        # the ReduceMean island reads an FP32 Cast of the branch's Relu, made inside the branch
        cast = next(
            n for n in graph.node if n.op_type == "Cast" and n.output[0] == nodes[f"{branch}_mean"].input[0]
        )
        assert cast.input[0] == f"{branch}_r" and types[cast.output[0]] == F32
        assert types[f"{branch}_c"] == TensorProto.FLOAT16  # the Conv runs in FP16
        assert {t.data_type for t in graph.initializer} == {TensorProto.FLOAT16}
    assert not [n for n in out.graph.node if n.op_type == "Cast" and n.input[0].startswith(("b16_", "b8_"))]
    for feed in _vad_feeds():
        for a, b in zip(_run(model, feed), _run(out, feed), strict=True):
            assert b.dtype == np.float32
            np.testing.assert_allclose(b, a, atol=5e-3)


@pytest.mark.parametrize(
    "options",
    [Fp16Options(fp32_ops=("Softmax",)), Fp16Options(fp32_ops=("Loop",)), Fp16Options(fp32_nodes=("scan",))],
    ids=["island_in_body", "loop_kept_fp32", "scan_node_kept_fp32"],
)
def test_fp16_of_loop_and_scan_bodies_is_consistent(options: Fp16Options) -> None:
    model = _loop_with_softmax()
    out = convert_fp16(model, options).model
    onnx.checker.check_model(out, full_check=True)
    _assert_sorted_in_scope(out.graph)
    onnx.shape_inference.infer_shapes(out, strict_mode=True)  # every subgraph's types agree
    body = next(g for g in iter_graphs(out.graph) if g.name == "body")
    if options.fp32_ops == ("Loop",):  # the Loop stays FP16 at its boundary, its body computes in FP32
        mul = next(n for n in body.node if n.name == "body_mul")
        assert mul.input[0].endswith("_cast_to_fp32")
    for feed in _feeds(model):
        for a, b in zip(_run(model, feed), _run(out, feed), strict=True):
            np.testing.assert_allclose(b, a, atol=2e-2, rtol=2e-2)


def _loop_with_softmax() -> onnx.ModelProto:
    model = loop_model()
    body = next(a.g for n in model.graph.node if n.op_type == "Loop" for a in n.attribute if a.name == "body")
    add = next(n for n in body.node if n.name == "body_add")
    add.input[0] = "sm"
    body.node.insert(2, helper.make_node("Softmax", ["m"], ["sm"], axis=-1, name="body_softmax"))
    onnx.checker.check_model(model, full_check=True)
    return model


def test_fp16_counts_nodes_of_subgraphs() -> None:
    result = convert_fp16(branch_islands_model())
    assert result.summary()["fp16_nodes"] == sum(
        1 for g in iter_graphs(result.model.graph) for n in g.node if n.op_type != "Cast"
    )
    assert result.summary()["fp16_nodes"] > len([n for n in result.model.graph.node if n.op_type != "Cast"])
    assert "ReduceMean" in result.blocked_ops  # found inside the branches


def test_a_branch_ending_in_a_no_op_cast_of_an_outer_value_stays_valid() -> None:
    """onnxslim's dead-node step erases a no-op Cast at the end of a branch, which leaves the branch
    returning the outer value; the output is given back an Identity inside the branch."""
    then = helper.make_graph(
        [helper.make_node("Cast", ["r"], ["t"], to=F32, name="noop_cast")],
        "then",
        [],
        [helper.make_tensor_value_info("t", F32, [2, 4])],
    )
    other = helper.make_graph(
        [helper.make_node("Neg", ["r"], ["e"], name="neg")],
        "else",
        [],
        [helper.make_tensor_value_info("e", F32, [2, 4])],
    )
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["r"], name="relu"),
            helper.make_node("If", ["cond"], ["y"], then_branch=then, else_branch=other, name="if"),
            helper.make_node("Add", ["y", "r"], ["z"], name="add"),
        ],
        "noop",
        [
            helper.make_tensor_value_info("x", F32, [2, 4]),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("z", F32, [2, 4])],
    )
    model = _model(graph)
    fused = fuse_model(model).model
    onnx.checker.check_model(fused, full_check=True)
    then_nodes = _nodes(fused, "then")
    assert [n.op_type for n in then_nodes] in (["Cast"], ["Identity"])
    _assert_same_outputs(model, fused)


# --- stages that do not enter bodies say so --------------------------------------------------------


def _weights_in_branches() -> onnx.ModelProto:
    """x[N, 4] -> If(cond): then MatMul(x, W) (W a branch initializer), else Neg(x)."""
    w = numpy_helper.from_array(np.eye(4, dtype=np.float32) * 2.0, "w_then")
    then = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w_then"], ["t"], name="then_mm")],
        "then",
        [],
        [helper.make_tensor_value_info("t", F32, ["N", 4])],
        [w],
    )
    other = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["e"], name="else_neg")],
        "else",
        [],
        [helper.make_tensor_value_info("e", F32, ["N", 4])],
    )
    graph = helper.make_graph(
        [helper.make_node("If", ["cond"], ["y"], then_branch=then, else_branch=other, name="if")],
        "branch_weights",
        [
            helper.make_tensor_value_info("x", F32, ["N", 4]),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("y", F32, ["N", 4])],
    )
    return _model(graph)


def test_quantize_and_prune_refuse_naming_the_weights_inside_bodies(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "branches.onnx"
    onnx.save(_weights_in_branches(), path)
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=np.ones((4, 4), np.float32), cond=np.array(True))
    code, _, err = cli("quantize", path, "-o", tmp_path / "q.onnx", "--calibration-data", calib)
    assert code == 2 and "Traceback" not in err
    assert "its 1 MatMul sit inside If/Loop/Scan bodies" in err and "leave the quantize stage out" in err
    code, _, err = cli("prune", path, "-o", tmp_path / "p.onnx", "--ratio", "0.5", "--latency-runs", "2")
    assert code == 2 and "its 1 MatMul sit inside If/Loop/Scan bodies" in err, err
    assert not (tmp_path / "q.onnx").exists() and not (tmp_path / "p.onnx").exists()
