"""The export stage: .pt2 / TorchScript / module:factory -> ONNX, parity vs torch, and every bad input."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from tests.conftest import REPO  # noqa: E402
from tests.models_torch import conv_bn  # noqa: E402
from trtforge.pipeline.api import run_single  # noqa: E402
from trtforge.pipeline.errors import ConfigError, InputError  # noqa: E402
from trtforge.pipeline.stage import DataPaths  # noqa: E402
from trtforge.pipeline.stages.export import ExportConfig, _compare, torch_artifact  # noqa: E402

DIGITS = REPO / "examples" / "digits"
CONV_BN = "tests.models_torch:conv_bn"


def export(tmp_path: Path, model: str, weights: str | None = None, data: Path | None = None, **cfg: object):
    out = tmp_path / "out.onnx"
    result = run_single(
        "export", ExportConfig(**cfg), torch_artifact(model, weights), out, data=DataPaths(calibration=data)
    )
    assert result.artifact.path == out and out.is_file()
    return result, onnx.load(str(out))


def ops(model: onnx.ModelProto) -> Counter[str]:
    return Counter(n.op_type for n in model.graph.node)


def dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def ort_run(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


def test_digits_pt2_parity_on_calibration_data_and_dynamic_batch(tmp_path: Path) -> None:
    result, model = export(
        tmp_path, str(DIGITS / "model.pt2"), data=DIGITS / "data" / "calib.npz", outputs=("logits",)
    )
    m = result.metrics
    assert m["exporter"] == "dynamo" and "exporter_fallback" not in m and m["opset"] == 18
    assert m["parity_data"] == "calibration" and m["max_abs_err"] <= 1e-4 and bool(result)
    assert result.gates[0].name == "export_parity" and result.gates[0].threshold == 1e-4
    assert dims(model.graph.input[0]) == ["batch", 1, 8, 8] and dims(model.graph.output[0]) == ["batch", 10]
    assert ops(model)["Conv"] == 9 and ops(model)["BatchNormalization"] == 0  # folded by default
    # a batch size the export never saw, against the program itself
    x = np.load(DIGITS / "data" / "val.npz")["x"][:7]
    want = torch.export.load(str(DIGITS / "model.pt2")).module()(torch.from_numpy(x)).detach().numpy()
    (got,) = ort_run(tmp_path / "out.onnx", {"x": x})
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert result.artifact.iospec is not None and result.artifact.iospec.output_names() == ["logits"]


def test_batchnorm_survives_without_constant_folding(tmp_path: Path) -> None:
    result, model = export(tmp_path, str(DIGITS / "model.pt2"), do_constant_folding=False)
    assert ops(model)["BatchNormalization"] == 9 and result.metrics["batchnorm_nodes"] == 9
    assert result.metrics["exporter"] == "torchscript" and result.metrics["max_abs_err"] <= 1e-4
    assert dims(model.graph.input[0])[0] == "batch"
    _, folded = export(tmp_path, CONV_BN, inputs=("x:1x1x6x6",))
    _, kept = export(tmp_path, CONV_BN, inputs=("x:1x1x6x6",), do_constant_folding=False)
    assert ops(folded)["BatchNormalization"] == 0 and ops(kept)["BatchNormalization"] == 1


def test_static_and_dynamic_batch(tmp_path: Path) -> None:
    res, static = export(tmp_path, CONV_BN, inputs=("x:4x1x6x6",), static=True)
    assert dims(static.graph.input[0]) == [4, 1, 6, 6] and dims(static.graph.output[0]) == [4, 3]
    assert res.metrics["parity_batch"] == 4 and res.metrics["dynamic_batch"] is False
    _, dynamic = export(tmp_path, CONV_BN, inputs=("x:4x1x6x6",))
    assert dims(dynamic.graph.input[0]) == ["batch", 1, 6, 6] and dims(dynamic.graph.output[0]) == [
        "batch",
        3,
    ]
    x = np.random.default_rng(0).standard_normal((9, 1, 6, 6)).astype(np.float32)
    (got,) = ort_run(tmp_path / "out.onnx", {"x": x})
    np.testing.assert_allclose(got, conv_bn()(torch.from_numpy(x)).detach().numpy(), atol=1e-5)


def test_module_factory_loads_the_weights(tmp_path: Path) -> None:
    weights = tmp_path / "w.pt"
    torch.save(conv_bn(seed=7).state_dict(), weights)
    result, _ = export(tmp_path, CONV_BN, str(weights), inputs=("x:1x1x6x6",), outputs=("scores",))
    assert result.metrics["max_abs_err"] <= 1e-5
    x = np.ones((2, 1, 6, 6), np.float32)
    (got,) = ort_run(tmp_path / "out.onnx", {"x": x})
    np.testing.assert_allclose(got, conv_bn(seed=7)(torch.from_numpy(x)).detach().numpy(), atol=1e-5)
    assert not np.allclose(got, conv_bn(seed=0)(torch.from_numpy(x)).detach().numpy(), atol=1e-3)


def test_torchscript_file_two_inputs_two_outputs(tmp_path: Path) -> None:
    from tests.models_torch import two_inputs

    path = tmp_path / "two.ts"
    a = torch.ones(2, 4)
    torch.jit.save(torch.jit.trace(two_inputs(), (a, a)), str(path))
    result, model = export(tmp_path, str(path), inputs=("a:2x4", "b:2x4"), exporter="torchscript", opset=17)
    assert [i.name for i in model.graph.input] == ["a", "b"]
    assert [o.name for o in model.graph.output] == ["output_0", "output_1"]
    assert result.metrics["exporter"] == "torchscript" and result.metrics["opset"] == 17
    assert result.metrics["max_abs_err"] <= 1e-5 and dims(model.graph.output[1]) == ["batch", 1]


def test_fallback_to_torchscript_exporter_is_recorded(tmp_path: Path) -> None:
    result, model = export(tmp_path, "tests.models_torch:data_dependent", inputs=("x:2x4",))
    assert result.metrics["exporter"] == "torchscript"
    assert result.metrics["exporter_fallback"].startswith("dynamo: ")
    assert result.metrics["max_abs_err"] <= 1e-5 and ops(model)["Gemm"] + ops(model)["MatMul"] == 1


def test_parity_gate_uses_atol_and_rtol() -> None:
    ref, got = [np.array([1.0, 100.0], np.float32)], [np.array([1.0, 100.01], np.float32)]
    gate, errs = _compare(ref, got, ExportConfig(atol=1e-4))
    assert not gate and errs["max_abs_err"] == pytest.approx(0.01, rel=1e-3)
    assert errs["max_rel_err"] == pytest.approx(1e-4, rel=1e-2)
    gate, _ = _compare(ref, got, ExportConfig(atol=1e-4, rtol=1e-3))
    assert gate and gate.name == "export_parity"
    gate, _ = _compare(ref, [np.zeros((3,), np.float32)], ExportConfig())
    assert not gate and "shape" in gate.detail


def test_torch_artifact_hash_follows_weights(tmp_path: Path) -> None:
    w1, w2 = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save(conv_bn(seed=1).state_dict(), w1)
    torch.save(conv_bn(seed=2).state_dict(), w2)
    a, b = torch_artifact(CONV_BN, str(w1)), torch_artifact(CONV_BN, str(w2))
    assert a.kind == "torch" and a.path == Path(CONV_BN) and a.sha256 != b.sha256
    assert a.sha256 == torch_artifact(CONV_BN, str(w1)).sha256
    assert a.provenance[0] == {"source": "torch", "model": CONV_BN, "weights": str(w1)}


@pytest.fixture
def bad_weights(tmp_path: Path) -> dict[str, Path]:
    sd = conv_bn().state_dict()
    missing, extra, shape = dict(sd), dict(sd), dict(sd)
    del missing["bn.running_var"]
    extra["head.weight"] = torch.zeros(1)
    shape["fc.weight"] = torch.zeros(5, 4)
    out = {}
    for name, state in (("missing", missing), ("extra", extra), ("shape", shape)):
        out[name] = tmp_path / f"{name}.pt"
        torch.save(state, out[name])
    return out


def test_bad_weights_name_file_and_key(tmp_path: Path, bad_weights: dict[str, Path]) -> None:
    cases = {
        "missing": "missing key 'bn.running_var'",
        "extra": "unexpected key 'head.weight'",
        "shape": "'fc.weight' has shape",
    }
    for name, message in cases.items():
        with pytest.raises(InputError, match=message) as err:
            export(tmp_path, CONV_BN, str(bad_weights[name]), inputs=("x:1x1x6x6",))
        assert str(bad_weights[name]) in str(err.value)
    assert not (tmp_path / "out.onnx").exists()


def test_bad_inputs_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "dir.pt2").mkdir()
    (tmp_path / "junk.pt2").write_bytes(b"not a zip")
    cases = [
        (str(tmp_path / "missing.pt2"), "file not found"),
        (str(tmp_path / "dir.pt2"), "is a directory"),
        (str(tmp_path / "junk.pt2"), "not a torch.export program"),
        ("tests.models_torch:nope", "tests.models_torch:nope: 'tests.models_torch' has no callable 'nope'"),
        ("tests.no_such_module:f", r"tests.no_such_module:f: cannot import 'tests.no_such_module'"),
        ("tests.models_torch:not_a_module", "not a torch.nn.Module"),
    ]
    for model, message in cases:
        with pytest.raises(InputError, match=message) as err:
            export(tmp_path, model)
        assert "\n" not in str(err.value)
    with pytest.raises(InputError, match=r"input 'y' not found; model inputs are: 'x'"):
        export(tmp_path, str(DIGITS / "model.pt2"), inputs=("y:1x1x8x8",))
    with pytest.raises(InputError, match=r"shape of input 'x' is not known; pass --input x:"):
        export(tmp_path, CONV_BN)
    with pytest.raises(InputError, match=r"cannot be exported to ONNX \(dynamo: "):
        export(tmp_path, "tests.models_torch:data_dependent", inputs=("x:2x4",), exporter="dynamo")
    with pytest.raises(InputError, match=r"a \.pt2 program carries its weights"):
        torch_artifact(str(DIGITS / "model.pt2"), str(DIGITS / "weights.pt"))
    assert not (tmp_path / "out.onnx").exists()


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="NAME:1x3x224x224"):
        ExportConfig(inputs=("x-1x2",))
    with pytest.raises(ConfigError, match="opset >= 18"):
        ExportConfig(exporter="dynamo", opset=17)
    with pytest.raises(ConfigError, match="given twice"):
        ExportConfig(inputs=("x:1x2", "x:1x3"))


def test_cli_export_json_and_errors(tmp_path: Path, cli: Callable[..., tuple[int, str, str]]) -> None:
    out = tmp_path / "digits.onnx"
    code, stdout, _ = cli(
        "export",
        "examples.digits.model:build_model",
        "--weights",
        DIGITS / "weights.pt",
        "--input",
        "x:1x1x8x8",
        "--output-name",
        "logits",
        "--no-constant-folding",
        "-o",
        out,
        "--json",
    )
    assert code == 0, stdout
    data = json.loads(stdout)
    assert data["metrics"]["batchnorm_nodes"] == 9 and data["metrics"]["max_abs_err"] <= 1e-4
    assert data["io"]["outputs"][0]["name"] == "logits" and out.is_file()
    bad = tmp_path / "bad.onnx"
    for args in (
        ["tests.models_torch:nope"],
        [str(tmp_path)],
        [str(DIGITS / "model.pt2"), "--input", "q:1x1"],
    ):
        code, _, stderr = cli("export", *args, "-o", bad)
        assert code == 2 and stderr.startswith("trtforge: error: ") and stderr.count("\n") == 1
    assert not bad.exists()


def test_program_with_fixed_batch_needs_static(tmp_path: Path) -> None:
    path = tmp_path / "fixed.pt2"
    torch.export.save(torch.export.export(conv_bn(), (torch.zeros(2, 1, 6, 6),)), str(path))
    with pytest.raises(InputError, match=r"fixed batch of 2 for input 'x'; pass --static"):
        export(tmp_path, str(path))
    result, model = export(tmp_path, str(path), static=True)
    assert dims(model.graph.input[0]) == [2, 1, 6, 6] and result.metrics["parity_batch"] == 2
    assert result.metrics["max_abs_err"] <= 1e-5
