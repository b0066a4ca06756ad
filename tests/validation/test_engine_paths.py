"""TensorRT engines in ``validate`` and ``bench``: runner choice by path, metadata-only input specs,
and the one-line exit-3 refusal where TensorRT or a GPU is missing.

The ``.engine`` files here are placeholder bytes with a real metadata file written by
``pipeline.engine.metadata``: they exercise everything that happens *before* TensorRT is touched.
Runs of real engines are in the ``tensorrt``-marked tests at the end (skipped with a reason here).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest

from tests.validation import _models as m
from trtforge.common.tensors import TensorSpec
from trtforge.pipeline.backends.base import Runner
from trtforge.pipeline.engine import env
from trtforge.pipeline.engine.metadata import EngineMetadata, metadata_path, write_metadata
from trtforge.pipeline.errors import InputError, MissingDependencyError

Cli = Callable[..., tuple[int, str, str]]

_GPU = env.probe_gpu()
_TRT_REASON = env.missing_message(_GPU, env.trt_installed(), "this test")
RUN_PURPOSE = "running a TensorRT engine"
#: x[N, 8] with N in 1..32, as ``trtforge build --shapes x:1x8,8x8,32x8`` records it
PROFILE = {"x": {"min": [1, m.FEATURES], "opt": [8, m.FEATURES], "max": [32, m.FEATURES]}}


def fake_engine(path: Path, with_metadata: bool = True) -> Path:
    """Placeholder plan bytes plus the metadata the build stage writes (not a runnable engine)."""
    path.write_bytes(b"placeholder, not a TensorRT plan")
    if with_metadata:
        meta = EngineMetadata(
            trt_version="10.16.1",
            gpu_name="placeholder GPU",
            compute_capability="8.6",
            precision="fp32",
            profiles=(PROFILE,),
            onnx_sha256="0" * 64,
            build_time_s=0.0,
            inputs=("x",),
            outputs=("logits", "probs"),
        )
        write_metadata(path, meta)
    return path


@pytest.fixture
def needs_refusal() -> None:
    """The refusal path exists only where TensorRT or a GPU is missing."""
    if _TRT_REASON is None:
        pytest.skip("TensorRT and a GPU are present here; the missing-environment refusal cannot happen")


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    np.savez(tmp_path / "val.npz", x=m.samples(12))
    return {
        "ref": m.classifier(tmp_path / "ref.onnx"),
        "engine": fake_engine(tmp_path / "model.engine"),
        "data": tmp_path / "val.npz",
    }


def _expected_message() -> str:
    message = env.missing_message(_GPU, env.trt_installed(), RUN_PURPOSE)
    assert message is not None
    return message


def _assert_refused(cli: Cli, *args: object) -> None:
    imported_before = "tensorrt" in sys.modules
    code, out, err = cli(*args)
    assert code == 3, err
    assert err.strip() == f"trtforge: error: {_expected_message()}"
    assert "Traceback" not in err and out == ""
    assert imported_before or "tensorrt" not in sys.modules  # the refusal imports nothing of TensorRT


# --- input specs from the metadata alone ---------------------------------------------------------


def test_engine_input_specs_come_from_metadata(tmp_path: Path) -> None:
    from trtforge.pipeline.backends.tensorrt import engine_input_specs

    engine = fake_engine(tmp_path / "m.engine")
    (spec,) = engine_input_specs(engine)
    assert (spec.name, spec.dtype, spec.shape) == ("x", "float32", ("x.0", m.FEATURES))
    (half,) = engine_input_specs(engine, {"x": "float16"})
    assert half.dtype == "float16"


def test_engine_input_specs_static_across_profiles(tmp_path: Path) -> None:
    from trtforge.pipeline.backends.tensorrt import engine_input_specs

    engine = fake_engine(tmp_path / "m.plan")
    meta = json.loads(metadata_path(engine).read_text())
    fixed = {"min": [4, 8], "opt": [4, 8], "max": [4, 8]}
    meta["profiles"] = [{"x": fixed}, {"x": {"min": [4, 2], "opt": [4, 8], "max": [4, 16]}}]
    metadata_path(engine).write_text(json.dumps(meta))
    (spec,) = engine_input_specs(engine)
    assert spec.shape == (4, "x.1")  # axis 0 is 4 in every profile, axis 1 varies


def test_engine_without_metadata_is_input_error(tmp_path: Path) -> None:
    from trtforge.pipeline.backends.tensorrt import engine_input_specs

    engine = fake_engine(tmp_path / "m.engine", with_metadata=False)
    with pytest.raises(InputError, match=r"no metadata file m\.engine\.json"):
        engine_input_specs(engine)


# --- runner choice by path -----------------------------------------------------------------------


def test_parity_runner_class_by_path(files: dict[str, Path]) -> None:
    from polygraphy.backend.base import BaseRunner

    from trtforge.pipeline.backends.onnxruntime import OrtRunner
    from trtforge.pipeline.backends.tensorrt import TrtRunner
    from trtforge.pipeline.validation.parity import polygraphy_runner, polygraphy_runner_class

    onnx_runner = polygraphy_runner(files["ref"], "reference")
    assert type(onnx_runner) is polygraphy_runner_class() and onnx_runner.name == "reference"
    assert isinstance(onnx_runner.runner, OrtRunner)
    engine_runner = polygraphy_runner(files["engine"], "candidate")
    assert isinstance(engine_runner, BaseRunner) and engine_runner.name == "candidate"
    assert isinstance(engine_runner.runner, TrtRunner) and engine_runner.runner.path == files["engine"]
    assert engine_runner.runner.loaded is False  # choosing the runner touches no TensorRT
    for method in ("activate_impl", "infer_impl", "get_input_metadata_impl", "deactivate_impl"):
        assert getattr(type(engine_runner), method) is not getattr(BaseRunner, method)


class _OrtBehindTrtInterface(Runner):
    """ONNX Runtime behind a Runner that, like ``TrtRunner``, casts feeds on upload and reports a device
    time: checks the Polygraphy view's wiring (activation, input metadata, dtype coercion, outputs, timing,
    deactivation), not TensorRT. No engine is built."""

    strict_dtypes = False

    def __init__(self, onnx_path: Path, engine_path: Path) -> None:
        super().__init__(str(engine_path), "candidate")
        self.onnx_path = onnx_path
        self.closed = 0
        self.fed: list[np.dtype] = []

    def _activate(self) -> None:
        from trtforge.pipeline.backends.onnxruntime import OrtRunner

        self._ort = OrtRunner(self.onnx_path).activate()

    def _deactivate(self) -> None:
        self.closed += 1

    def _inputs(self) -> tuple[TensorSpec, ...]:
        return self._ort.inputs

    def _output_names(self) -> list[str]:
        return ["logits", "probs"]

    def _infer(self, feeds: Mapping[str, np.ndarray], outputs: Sequence[str] | None) -> dict[str, np.ndarray]:
        self.fed.append(feeds["x"].dtype)
        return self._ort.run({k: np.asarray(v, np.float32) for k, v in feeds.items()})

    def device_time_s(self) -> float | None:
        return 5e-4


def test_polygraphy_adapter_streams_like_ort(files: dict[str, Path]) -> None:
    from polygraphy.comparator import Comparator

    from trtforge.pipeline.validation.parity import polygraphy_runner, polygraphy_view

    inner = _OrtBehindTrtInterface(files["ref"], files["engine"])
    cand = polygraphy_view(inner)
    feeds = [{"x": m.samples(3).astype(np.float64)}, {"x": m.samples(5).astype(np.float64)}]
    stream = Comparator.run(
        [polygraphy_runner(files["ref"], "reference"), cand], data_loader=feeds, streaming=True
    )
    pairs = [(single[0][1][0], single[1][1][0]) for single in stream]
    assert len(pairs) == 2 and inner.fed == [np.float32, np.float32]  # coerced to the model's dtype
    for ref, got in pairs:
        assert list(got) == ["logits", "probs"] and got.runtime == pytest.approx(5e-4)
        np.testing.assert_array_equal(ref["probs"], got["probs"])
    assert inner.closed == 1 and not cand.is_active and not inner.is_active


def test_timed_runner_class_by_path(files: dict[str, Path], tmp_path: Path, needs_refusal: None) -> None:
    from trtforge.pipeline.backends.onnxruntime import OrtRunner
    from trtforge.pipeline.validation.throughput import timed_runner

    ort = timed_runner(files["ref"], threads=1)
    assert isinstance(ort, OrtRunner) and ort.name == "ref.onnx" and ort.is_active
    assert ort.device_time_s() is None
    with pytest.raises(MissingDependencyError, match=RUN_PURPOSE):
        timed_runner(files["engine"])  # the TensorRT runner: metadata read, then the environment checked
    bare = fake_engine(tmp_path / "bare.trt", with_metadata=False)
    with pytest.raises(InputError, match=r"bare\.trt\.json"):
        timed_runner(bare)  # metadata is read before the environment


def test_load_artifact_takes_engines(files: dict[str, Path], tmp_path: Path) -> None:
    from trtforge.pipeline.api import load_artifact
    from trtforge.pipeline.artifact import sha256_file

    art = load_artifact(files["engine"])
    assert (art.kind, art.iospec, art.sha256) == ("engine", None, sha256_file(files["engine"]))
    with pytest.raises(InputError, match="engine file not found"):
        load_artifact(tmp_path / "absent.engine")


# --- the CLI refuses with exit 3 where TensorRT or a GPU is missing ------------------------------


def test_validate_engine_candidate_exits_3(cli: Cli, files: dict[str, Path], needs_refusal: None) -> None:
    _assert_refused(cli, "validate", files["ref"], files["engine"], "--data", files["data"])


def test_validate_engine_reference_exits_3(cli: Cli, files: dict[str, Path], needs_refusal: None) -> None:
    _assert_refused(cli, "validate", files["engine"], files["ref"], "--data", files["data"], "--json")


def test_bench_engine_exits_3(cli: Cli, files: dict[str, Path], needs_refusal: None) -> None:
    _assert_refused(cli, "bench", files["engine"], "--iters", "1", "--warmup", "0")
    _assert_refused(cli, "bench", files["ref"], files["engine"], "--iters", "1", "--json")


def test_validate_engine_without_metadata_exits_2(cli: Cli, files: dict[str, Path]) -> None:
    metadata_path(files["engine"]).unlink()
    code, _, err = cli("validate", files["ref"], files["engine"], "--data", files["data"])
    assert code == 2 and "model.engine.json" in err and "trtforge build" in err
    assert len(err.strip().splitlines()) == 1


def test_onnx_pair_still_runs_on_ort(cli: Cli, files: dict[str, Path]) -> None:
    code, out, err = cli("validate", files["ref"], files["ref"], "--data", files["data"], "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["passed"] is True and data["backends"] == {
        "reference": "onnxruntime",
        "candidate": "onnxruntime",
    }


# --- real engines (TensorRT and a GPU) -----------------------------------------------------------


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_built_engine_validates_and_benches(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if _TRT_REASON is not None:
        pytest.skip(_TRT_REASON)
    monkeypatch.setenv("TRTFORGE_CACHE_DIR", str(tmp_path / "cache"))
    ref = m.classifier(tmp_path / "ref.onnx")
    np.savez(tmp_path / "val.npz", x=m.samples(40))
    engine = tmp_path / "model.engine"
    code, _, err = cli("build", ref, "-o", engine, "--target", "tensorrt", "--shapes", "x:1x8,16x8,32x8")
    assert code == 0, err
    code, out, err = cli(
        "validate", ref, engine, "--data", tmp_path / "val.npz", "--batch-size", "16", "--json"
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["passed"] and data["samples"] == 40 and data["backends"]["candidate"] == "tensorrt"
    code, out, err = cli("bench", ref, engine, "--batch", "1,16", "--iters", "5", "--json")
    assert code == 0, err
    results = json.loads(out)["results"]
    timed = [r for r in results if r["model"] == "model.engine"]
    assert len(timed) == 2 and all(r["device"] and 0 < r["device"]["p50_ms"] <= r["p50_ms"] for r in timed)
