"""The quantize and convert_fp16 stages through the CLI: outputs, exit codes, nothing half-written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx

from tests.calibration import tiny
from tests.conftest import sha
from trtforge.calibration.cache import read_trt_cache


def _files(tmp_path: Path, hostile: bool = False) -> tuple[Path, Path, Path]:
    model = tmp_path / "m.onnx"
    onnx.save(tiny.mlp(hostile="fc2" if hostile else None), str(model))
    rng = np.random.default_rng(0)
    np.save(tmp_path / "calib.npy", rng.normal(size=(64, 16)).astype(np.float32))
    x = rng.normal(size=(48, 16)).astype(np.float32)
    np.savez(tmp_path / "val.npz", x=x, labels=np.argmax(tiny.run(tiny.mlp(), {"x": x})[0], axis=1))
    return model, tmp_path / "calib.npy", tmp_path / "val.npz"


def test_quantize_cli_writes_model_table_and_cache(tmp_path, cli):
    model, calib, val = _files(tmp_path)
    before = sha(model)
    out = tmp_path / "q.onnx"
    code, stdout, _ = cli(
        "quantize",
        model,
        "-o",
        out,
        "--calibration-data",
        calib,
        "--target",
        "tensorrt",
        "--method",
        "entropy",
        "--validation-data",
        val,
        "--accuracy-budget",
        "top1:5%",
        "--json",
    )
    assert code == 0, stdout
    m = json.loads(stdout)
    assert m["target"] == "tensorrt" and m["method"] == "entropy" and m["samples"] == 64
    assert m["accuracy"]["fp32_top1"] == 1.0 and m["accuracy"]["int8_top1"] >= 0.95
    assert m["size_int8_bytes"] < m["size_fp32_bytes"] and m["latency_ratio_int8_vs_fp32"] > 0
    q = onnx.load(str(out))
    assert any(n.op_type == "QuantizeLinear" for n in q.graph.node)
    table = json.loads((tmp_path / "q.calibration_table.json").read_text())
    assert table["method"] == "entropy" and table["samples"] == 64 and "x" in table["tensors"]
    header, scales = read_trt_cache(tmp_path / "q.calibration.cache")
    assert header.startswith("TRT-100300-") and scales["x"] > 0
    assert sha(model) == before  # the input model is never modified


def test_quantize_cli_fallback_reported(tmp_path, cli):
    model, calib, val = _files(tmp_path, hostile=True)
    out = tmp_path / "q.onnx"
    code, stdout, _ = cli(
        "quantize",
        model,
        "-o",
        out,
        "--calibration-data",
        calib,
        "--target",
        "tensorrt",
        "--method",
        "minmax",
        "--validation-data",
        val,
        "--accuracy-budget",
        "cosine:0.995",
        "--json",
    )
    assert code == 0, stdout
    m = json.loads(stdout)
    assert m["fell_back"] == ["fc2"] and m["budget_final"]["cosine:0.995"]["ok"]
    assert not m["budget_initial"]["cosine:0.995"]["ok"]


def test_quantize_bad_input_exit_2_nothing_written(tmp_path, cli):
    model, calib, _ = _files(tmp_path)
    out = tmp_path / "q.onnx"
    bad = tmp_path / "bad.npy"
    np.save(bad, np.ones((4, 15), np.float32))
    code, _, err = cli("quantize", model, "-o", out, "--calibration-data", bad)
    assert code == 2 and "axis 1: 15 != 16" in err
    code, _, err = cli("quantize", model, "-o", out, "--calibration-data", calib, "--num-samples", "1000")
    assert code == 2 and "asked for 1000 samples" in err
    code, _, err = cli("quantize", model, "-o", out, "--calibration-data", "random")
    assert code == 2 and "refused" in err
    code, _, err = cli("quantize", model, "-o", out)
    assert code == 2 and "no calibration data" in err
    assert not out.exists() and not list(tmp_path.glob("q.*"))
    # a quantized model to quantize again (its speed and fidelity on this toy are beside the point)
    code, _, err = cli(
        "quantize", model, "-o", out, "--calibration-data", calib, "--accuracy-budget", "none",
        "--max-latency-ratio", "100",
    )  # fmt: skip
    assert code == 0, err
    code, _, err = cli("quantize", out, "-o", tmp_path / "qq.onnx", "--calibration-data", calib)
    assert code == 2 and "already quantized" in err


def test_convert_fp16_cli_and_precision_option(tmp_path, cli):
    model = tmp_path / "attn.onnx"
    onnx.save(tiny.attention_block(), str(model))
    out = tmp_path / "h.onnx"
    code, stdout, _ = cli("convert-fp16", model, "-o", out, "--json")
    assert code == 0, stdout
    assert "LayerNormalization" in json.loads(stdout)["fp32_ops"]
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in onnx.load(str(out)).graph.initializer)
    code, stdout, _ = cli("quantize", model, "-o", tmp_path / "h2.onnx", "--precision", "fp16", "--json")
    assert code == 0 and json.loads(stdout)["precision"] == "fp16"
