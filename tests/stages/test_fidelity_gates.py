"""The default fidelity floor of the stages that change numbers (prune, quantize, convert-fp16): each
fails (exit 1, nothing written) on a planted bad result and passes on a good one, the measured
value of every budget type (cosine, top1 agreement, map IoU) is in the output, and
``--accuracy-budget none`` publishes while still reporting."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

Cli = Callable[..., tuple[int, str, str]]
RNG = np.random.default_rng(0)


def _save(nodes, inputs, outputs, inits, path: Path) -> Path:  # type: ignore[no-untyped-def]
    model = helper.make_model(
        helper.make_graph(nodes, path.stem, inputs, outputs, inits),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def classifier(path: Path, weak_half: bool) -> Path:
    """x[N,16] -> Gemm(64) -> Relu -> Gemm(10): with ``weak_half`` half the hidden units carry
    weights 1e-4 the size of the others (pruning them changes nothing that matters)."""
    w1 = RNG.standard_normal((64, 16)).astype(np.float32)
    w2 = RNG.standard_normal((10, 64)).astype(np.float32)
    if weak_half:
        w1[32:] *= 1e-4
        w2[:, 32:] *= 1e-4
    nodes = [
        helper.make_node("Gemm", ["x", "w1"], ["h"], transB=1, name="fc1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Gemm", ["r", "w2"], ["logits"], transB=1, name="fc2"),
    ]
    return _save(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
        path,
    )


def _inputs(path: Path, n: int = 128) -> Path:
    np.savez(path, x=RNG.standard_normal((n, 16)).astype(np.float32))
    return path


def test_prune_below_the_default_floor_writes_nothing_and_exits_1(tmp_path: Path, cli: Cli) -> None:
    model, val, out = (
        classifier(tmp_path / "m.onnx", weak_half=False),
        _inputs(tmp_path / "v.npz"),
        tmp_path / "p.onnx",
    )
    args = ("prune", model, "-o", out, "--ratio", "0.5", "--round-to", "1", "--validation-data", val)
    code, stdout, err = cli(*args, "--latency-runs", "2", "--json")
    assert code == 1 and "gate failed: prune_fidelity" in err and "Traceback" not in err
    assert not out.exists()
    payload = json.loads(stdout)
    assert payload["output"] is None
    (row,) = payload["fidelity"]["outputs"]
    agreement = row["agreement"]
    assert agreement < 0.98
    assert f"{agreement:.5g}" in err or f"{row['cosine']:.5g}" in err  # the failing check's value
    assert {c["term"] for c in payload["fidelity"]["checks"]} == {"cosine:0.99", "top1:0.02"}
    # told to: written, and the same numbers reported
    code, stdout, err = cli(*args, "--latency-runs", "2", "--accuracy-budget", "none", "--json")
    assert code == 0, err
    assert out.exists() and json.loads(stdout)["fidelity"]["outputs"][0]["agreement"] == agreement


def test_prune_that_keeps_the_model_passes_the_floor(tmp_path: Path, cli: Cli) -> None:
    model, val, out = (
        classifier(tmp_path / "m.onnx", weak_half=True),
        _inputs(tmp_path / "v.npz"),
        tmp_path / "p.onnx",
    )
    code, stdout, err = cli(
        "prune", model, "-o", out, "--ratio", "0.5", "--round-to", "1", "--validation-data", val,
        "--latency-runs", "2", "--json",
    )  # fmt: skip
    assert code == 0, err
    fid = json.loads(stdout)["fidelity"]
    assert fid["passed"] and fid["source"] == "validation" and fid["outputs"][0]["agreement"] >= 0.98
    assert out.exists()


def fp16_fragile_map(path: Path, twice: bool = False) -> Path:
    """x[N,1,8,8] -> (x + 1000.3) - 1000 -> *2 -> Sigmoid, i.e. sigmoid(2(x + 0.3)) in FP32. FP16 stores
    1000.3 as 1000.5, so the map moves by 0.2 before the gain: for inputs around -0.35 most pixels
    cross 0.5 while the maps' angle stays above 0.999, a map IoU failure cosine alone would miss.
    Keeping the Add in FP32 cures it. ``twice``: the Sub's constant is 999.7 (FP16: 999.5) and
    shifts the map as well, so no single op type kept in FP32 is enough."""
    shift = numpy_helper.from_array(np.array(1000.3, np.float32), "shift")
    back = numpy_helper.from_array(np.array(999.7 if twice else 1000.0, np.float32), "back")
    gain = numpy_helper.from_array(np.array(2.0, np.float32), "gain")
    nodes = [
        helper.make_node("Add", ["x", "shift"], ["a"], name="add"),
        helper.make_node("Sub", ["a", "back"], ["s"], name="sub"),
        helper.make_node("Mul", ["s", "gain"], ["m"], name="mul"),
        helper.make_node("Sigmoid", ["m"], ["prob"], name="sigmoid"),
    ]
    return _save(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [shift, back, gain],
        path,
    )


def test_convert_fp16_keeps_the_op_type_in_fp32_that_holds_the_map_iou(tmp_path: Path, cli: Cli) -> None:
    model, out = fp16_fragile_map(tmp_path / "map.onnx"), tmp_path / "h.onnx"
    val = tmp_path / "v.npz"
    np.savez(val, x=(RNG.standard_normal((16, 1, 8, 8)) * 0.1 - 0.35).astype(np.float32))
    code, stdout, err = cli("convert-fp16", model, "-o", out, "--validation-data", val, "--json")
    assert code == 0, err
    payload = json.loads(stdout)
    islands = payload["fp32_islands"]
    assert islands["kept_fp32"] == ["Add"] and "iou:0.95" in islands["reason"]  # the full FP16 IoU
    assert payload["fidelity"]["passed"] and payload["fidelity"]["outputs"][0]["iou"] >= 0.95
    assert out.exists()
    # told not to gate: the full FP16 model as it is, its IoU reported
    code, stdout, err = cli(
        "convert-fp16", model, "-o", out, "--validation-data", val, "--accuracy-budget", "none", "--json"
    )
    assert code == 0, err
    (row,) = json.loads(stdout)["fidelity"]["outputs"]
    assert row["kind"] == "map" and row["cosine"] > 0.99 and row["iou"] < 0.95


def test_convert_fp16_below_the_floor_whatever_one_op_type_does_writes_nothing(
    tmp_path: Path, cli: Cli
) -> None:
    model, out = fp16_fragile_map(tmp_path / "map2.onnx", twice=True), tmp_path / "h.onnx"
    val = tmp_path / "v.npz"
    np.savez(val, x=(RNG.standard_normal((16, 1, 8, 8)) * 0.1 - 0.65).astype(np.float32))
    code, stdout, err = cli("convert-fp16", model, "-o", out, "--validation-data", val, "--json")
    assert code == 1 and "convert_fp16_fidelity" in err and "iou:0.95" in err and not out.exists()
    payload = json.loads(stdout)
    assert payload["fp32_islands"]["kept_fp32"] == [] and {"Add", "Sub"} <= set(
        payload["fp32_islands"]["tried"]
    )
    (row,) = payload["fidelity"]["outputs"]
    assert row["iou"] < 0.95 and f"{row['iou']:.5g}" in err


def test_convert_fp16_of_a_model_fp16_represents_well_passes(tmp_path: Path, cli: Cli) -> None:
    good, calib, out = (
        classifier(tmp_path / "c.onnx", weak_half=False),
        _inputs(tmp_path / "c.npz"),
        tmp_path / "h.onnx",
    )
    code, stdout, err = cli("convert-fp16", good, "-o", out, "--calibration-data", calib, "--json")
    assert code == 0, err
    payload = json.loads(stdout)
    fid = payload["fidelity"]
    assert fid["passed"] and fid["source"] == "calibration" and out.exists()
    assert {c["term"] for c in fid["checks"]} == {"cosine:0.99", "top1:0.02"}
    assert payload["fp32_islands"] == {"kept_fp32": [], "tried": []}


def outlier_model(path: Path) -> Path:
    """x[N,8] -> Gemm(8x4): the output reads features 1..7 only, while feature 0 spans +-1000, so one
    INT8 scale for the whole input leaves the features that matter about 8 steps of resolution."""
    w = RNG.standard_normal((4, 8)).astype(np.float32)
    w[:, 0] = 0.0
    nodes = [helper.make_node("Gemm", ["x", "w"], ["y"], transB=1, name="fc")]
    return _save(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(w, "w")],
        path,
    )


def _outlier_data(path: Path, n: int = 64) -> Path:
    x = RNG.standard_normal((n, 8)).astype(np.float32)
    x[:, 0] = RNG.choice([-1000.0, 1000.0], n)
    np.savez(path, x=x)
    return path


def test_quantize_fails_the_default_floor_without_fallback_and_holds_it_with(
    tmp_path: Path, cli: Cli
) -> None:
    model, out = outlier_model(tmp_path / "o.onnx"), tmp_path / "q.onnx"
    calib, val = _outlier_data(tmp_path / "c.npz"), _outlier_data(tmp_path / "v.npz", 32)
    base = ("quantize", model, "-o", out, "--calibration-data", calib, "--method", "minmax", "--json")
    code, stdout, err = cli(*base, "--validation-data", val, "--sensitivity", "never")
    assert code == 1 and "quantize_fidelity" in err and not out.exists()
    (row,) = json.loads(stdout)["fidelity"]["outputs"]
    assert row["cosine"] < 0.99 and f"{row['cosine']:.5g}" in err
    # with the (default) fallback the sensitive layer stays float and the floor holds, but then no
    # layer is INT8: an FP32 copy is not published as a quantized model either
    code, stdout, err = cli(*base, "--validation-data", val)
    assert code == 1 and "quantize_coverage" in err and "0 of 1 layers with weights" in err, err
    payload = json.loads(stdout)
    assert payload["fell_back"] and payload["fidelity"]["passed"] and not out.exists()
    assert payload["quantized_layers"] == {"quantized": 0, "total": 1}
    code, stdout, err = cli(*base, "--validation-data", val, "--min-quantized-fraction", "0")
    assert code == 0, err
    assert json.loads(stdout)["fidelity"]["passed"] and out.exists()
    # without validation data the calibration data is the check (there is no search then)
    out.unlink()
    code, stdout, err = cli(*base, "--sensitivity", "never")
    assert code == 1 and json.loads(stdout)["fidelity"]["source"] == "calibration" and not out.exists()
