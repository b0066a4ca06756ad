"""The latency gate of the stages that claim a speed-up: a planted rewrite that slows the model (exact
outputs, 100x the work) is not published by `fuse`; the same gate passes a result as fast as its
input, and ``--max-latency-ratio`` accepts a slower one when asked."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from trtforge.pipeline.stages._latency import check_latency

Cli = Callable[..., tuple[int, str, str]]
WIDTH = 1024


def _model(path: Path, slow: bool) -> Path:
    """x[N, 1024] -> Relu; ``slow`` adds x @ 0 (a 1024x1024 MatMul whose result is exactly 0) to it."""
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu")]
    inits = []
    if slow:
        inits.append(numpy_helper.from_array(np.zeros((WIDTH, WIDTH), np.float32), "zeros"))
        nodes += [
            helper.make_node("MatMul", ["x", "zeros"], ["z"], name="busy_work"),
            helper.make_node("Add", ["r", "z"], ["y"], name="add_zero"),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["r"], ["y"], name="out"))
    graph = helper.make_graph(
        nodes,
        path.stem,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", WIDTH])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", WIDTH])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_check_latency_fails_a_clearly_slower_result_and_passes_a_faster_one(tmp_path: Path) -> None:
    fast, slow = _model(tmp_path / "fast.onnx", False), _model(tmp_path / "slow.onnx", True)
    feed = {"x": np.random.default_rng(0).standard_normal((8, WIDTH)).astype(np.float32)}
    record, (gate,) = check_latency("fuse", fast, slow, feed, 1.0, shapes_from="test")
    assert not gate.passed and gate.value is not None and gate.value > 2
    assert record["latency_gate"]["after_ms"] > record["latency_gate"]["before_ms"]
    assert "--max-latency-ratio" in gate.detail and "x 8x1024" in gate.detail
    record, (gate,) = check_latency("fuse", slow, fast, feed, 1.0, shapes_from="test")
    assert gate.passed and gate.value is not None and gate.value < 1
    _, gates = check_latency("fuse", fast, slow, feed, None, shapes_from="test")
    assert gates == ()  # told not to gate: measured only
    record, gates = check_latency("fuse", fast, slow, None, 1.0, shapes_from="", why_not="no sizes")
    assert gates == () and record["latency_gate"] == {"measured": False, "reason": "no sizes"}


def _plant(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tied_to: str | None) -> None:
    """Make fuse return the slow twin of the model (same outputs): only while the switch ``tied_to``
    is on (a slowing rewrite of that pass), or always (``None``: no pass to blame)."""
    import trtforge.pipeline.graph.fusion as fusion
    from trtforge.pipeline.graph.fusion import PassReport

    real = fusion.fuse_model
    slow = onnx.load(str(_model(tmp_path / "twin.onnx", True)))

    def planted(model: onnx.ModelProto, options: object) -> object:
        result = real(model, options)
        if tied_to is not None and not getattr(options, tied_to):
            return result
        marker = PassReport("planted_slowdown", True, 0, 0)
        return dataclasses.replace(result, model=slow, passes=(*result.passes, marker))

    monkeypatch.setattr(fusion, "fuse_model", planted)


def _val(tmp_path: Path) -> Path:
    val = tmp_path / "val.npz"
    np.savez(val, x=np.random.default_rng(1).standard_normal((4, WIDTH)).astype(np.float32))
    return val


def test_fuse_does_not_publish_a_slower_model(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    _plant(monkeypatch, tmp_path, tied_to=None)
    src, out, val = _model(tmp_path / "m.onnx", False), tmp_path / "fused.onnx", _val(tmp_path)
    code, stdout, err = cli("fuse", src, "-o", out, "--validation-data", val, "--json")
    assert code == 1 and "gate failed: fuse_latency" in err and "Traceback" not in err
    assert not out.exists()
    payload = json.loads(stdout)
    assert payload["output"] is None and payload["parity"]["passed"]  # exact, and still refused
    rec = payload["latency_gate"]
    assert rec["ratio"] > 2 and rec["shapes"] == {"x": [1, WIDTH]} and "val.npz" in rec["shapes_from"]
    code, stdout, err = cli("fuse", src, "-o", out, "--validation-data", val, "--max-latency-ratio", "1000")
    assert code == 0, err
    assert out.exists()


def test_fuse_leaves_out_the_pass_that_slows_the_model(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    _plant(monkeypatch, tmp_path, tied_to="remove_identity")
    src, out, val = _model(tmp_path / "m.onnx", False), tmp_path / "fused.onnx", _val(tmp_path)
    code, stdout, err = cli("fuse", src, "-o", out, "--validation-data", val, "--json")
    assert code == 0, err
    payload = json.loads(stdout)
    (guard,) = [g for g in payload["guards"] if g["pass"] == "remove_identity"]
    assert "made the model slower" in guard["reason"] and "left out" in guard["reason"]
    assert all(n.op_type != "MatMul" for n in onnx.load(str(out)).graph.node)  # the slow twin is not it
