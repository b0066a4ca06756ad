"""Stages on real third-party models: post-run checks on the user's data and shapes (never invented
sizes), a clear refusal where nothing gives a size, streaming models fed step by step with their
state carried, and failures that name the user's file rather than a staging folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.conftest import REPO, tiny_mlp
from trtforge.pipeline.artifact import Artifact, ArtifactKind
from trtforge.pipeline.registry import register_stage
from trtforge.pipeline.stage import Stage, StageContext, StageResult

Cli = Callable[..., tuple[int, str, str]]


def detector(path: Path) -> Path:
    """x[batch, 3, H, W] -> Conv 3x3 (no padding) -> Relu -> Conv 3x3 stride 2: any image size but 1x1."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Conv", ["r", "w2"], ["y"], strides=[2, 2]),
    ]
    graph = helper.make_graph(
        nodes,
        "detector",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, "h", "w"])],
        [
            numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w1"),
            numpy_helper.from_array(rng.standard_normal((4, 4, 3, 3)).astype(np.float32), "w2"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def streaming(path: Path) -> Path:
    """x[N, 4], state[2, N, 8], sr[] (int64) -> y[N, 8] = tanh((x W + mean(state)) * sr / 16000),
    stateN[2, N, 8] = [y, mean(state)]: the next step's state."""
    w = np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h"]),
        helper.make_node("ReduceMean", ["state"], ["s0"], axes=[0], keepdims=0),
        helper.make_node("Cast", ["sr"], ["srf"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["srf", "k"], ["scale"]),
        helper.make_node("Add", ["h", "s0"], ["pre"]),
        helper.make_node("Mul", ["pre", "scale"], ["pm"]),
        helper.make_node("Tanh", ["pm"], ["y"]),
        helper.make_node("Unsqueeze", ["y", "ax0"], ["y1"]),
        helper.make_node("Unsqueeze", ["s0", "ax0"], ["s1"]),
        helper.make_node("Concat", ["y1", "s1"], ["stateN"], axis=0),
    ]
    graph = helper.make_graph(
        nodes,
        "stream",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4]),
            helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "N", 8]),
            helper.make_tensor_value_info("sr", TensorProto.INT64, []),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8]),
            helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [2, "N", 8]),
        ],
        [
            numpy_helper.from_array(w, "W"),
            numpy_helper.from_array(np.array(16000.0, np.float32), "k"),
            numpy_helper.from_array(np.array([0], np.int64), "ax0"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def step_files(folder: Path, steps: int = 6) -> Path:
    """One .npz per step: a frame x[1, 4] and the scalar sample rate; no state (it is carried)."""
    folder.mkdir()
    rng = np.random.default_rng(2)
    for i in range(steps):
        x = rng.standard_normal((1, 4)).astype(np.float32)
        np.savez(folder / f"step{i}.npz", x=x, sr=np.array(16000, np.int64))
    return folder


def _trtforge(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real CLI, ``python -m trtforge``, in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "trtforge", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


# --- dynamic H/W: the data's shapes, explicit shapes, or a clear refusal ---------------------------


def test_post_checks_run_on_the_datas_shapes(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trtforge.pipeline.backends.onnxruntime import OrtRunner

    model = detector(tmp_path / "det.onnx")
    data = tmp_path / "images.npz"
    np.savez(data, x=np.random.default_rng(0).standard_normal((3, 3, 40, 56)).astype(np.float32))
    seen: list[tuple[str, tuple[int, ...]]] = []
    real_run = OrtRunner.run

    def spy(self: OrtRunner, feeds: Any, outputs: Any = None) -> dict[str, np.ndarray]:
        seen.append((self.source, tuple(np.asarray(feeds["x"]).shape)))
        return real_run(self, feeds, outputs)

    monkeypatch.setattr(OrtRunner, "run", spy)
    code, out, err = cli(
        "fuse", model, "-o", tmp_path / "det.fused.onnx", "--validation-data", data, "--json"
    )
    assert code == 0, err
    assert json.loads(out)["parity"]["source"] == "validation"
    smoke = [shape for source, shape in seen if ".trtforge-" in source and shape[0] == 1]
    assert smoke == [(1, 3, 40, 56)]  # the post-run check: one sample of the data, its real H and W
    seen.clear()
    code, out, err = cli("convert-fp16", model, "-o", tmp_path / "det.fp16.onnx", "--calibration-data", data)
    assert code == 0, err
    assert (tmp_path / "det.fp16.onnx").is_file()
    assert all(shape[2:] == (40, 56) for _, shape in seen) and seen
    code, _, err = cli("fuse", model, "-o", tmp_path / "det.f2.onnx", "--shapes", "x:1x3x24x32")
    assert code == 0, err


def test_dynamic_image_size_without_data_or_shapes_is_refused_in_one_line(tmp_path: Path) -> None:
    model = detector(tmp_path / "det.onnx")
    for verb in ("fuse", "convert-fp16"):
        done = _trtforge(verb, model.name, "-o", f"det.{verb}.onnx", cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        line = lines[0]
        assert line.startswith("trtforge: error: ")
        assert "det.onnx" in line and "input 'x' axis 2 ('H') is dynamic" in line
        assert "--shapes x:1x3x640x640" in line and "data" in line
        assert not (tmp_path / f"det.{verb}.onnx").exists()


def test_build_and_lossless_prune_use_data_or_refuse_instead_of_crashing(tmp_path: Path, cli: Cli) -> None:
    model = detector(tmp_path / "det.onnx")
    data = tmp_path / "val.npz"
    np.savez(data, x=np.ones((2, 3, 20, 20), np.float32))
    code, _, err = cli("build", model, "-o", tmp_path / "det.ort.onnx", "--target", "onnxruntime")
    assert code == 2 and f"build: {model}: input 'x' axis 2 ('H') is dynamic" in err
    assert "--shapes x:1x3x640x640" in err and "Traceback" not in err
    code, _, err = cli(
        "build", model, "-o", tmp_path / "det.ort.onnx", "--target", "onnxruntime", "--shapes", "x:1x3x20x24"
    )
    assert code == 0, err
    # or from real data: the build verb takes --validation-data, whose shapes size the check
    code, out, err = cli(
        "build",
        model,
        "-o",
        tmp_path / "det.data.onnx",
        "--target",
        "onnxruntime",
        "--validation-data",
        data,
        "--json",
    )
    assert code == 0, err
    parity = json.loads(out)["smoke_parity"]
    assert (
        parity["source"] == "validation" and parity["passed"] and parity["count"] == 1 * 4 * 8 * 8
    )  # one 20x20 sample: 4 channels of 8x8
    code, _, err = cli(
        "prune", model, "-o", tmp_path / "det.pruned.onnx", "--lossless", "--latency-runs", "2"
    )
    assert code == 2 and "input 'x' axis 2 ('H') is dynamic" in err


def zipmap_classifier(path: Path, scale: float = 1.0) -> Path:
    """skl2onnx's default classifier outputs: a label tensor and a ZipMap (a sequence of
    {class: probability} maps, one per sample), which is no tensor."""
    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3) * 0.1 * scale, "w")
    nodes = [
        helper.make_node("MatMul", ["X", "w"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
        helper.make_node("ArgMax", ["probs"], ["label"], axis=1, keepdims=0),
        helper.make_node(
            "ZipMap", ["probs"], ["output_probability"], domain="ai.onnx.ml", classlabels_int64s=[0, 1, 2]
        ),
    ]
    seq = helper.make_sequence_type_proto(
        helper.make_map_type_proto(TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, []))
    )
    graph = helper.make_graph(
        nodes,
        "zipmap",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 4])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
            helper.make_value_info("output_probability", seq),
        ],
        [w],
    )
    m = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("ai.onnx.ml", 1)]
    )
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def test_validate_compares_zipmap_probabilities_as_a_tensor(tmp_path: Path, cli: Cli) -> None:
    ref = zipmap_classifier(tmp_path / "ref.onnx")
    data = tmp_path / "val.npz"
    np.savez(data, X=np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32))
    code, out, err = cli("validate", ref, ref, "--data", data, "--json")
    assert code == 0, err
    rows = {o["name"]: o for o in json.loads(out)["outputs"]}
    assert rows["output_probability"]["count"] == 16 * 3 and rows["output_probability"]["passed"]
    other = zipmap_classifier(tmp_path / "other.onnx", scale=1.5)
    code, out, err = cli("validate", ref, other, "--data", data, "--json")
    assert code == 1 and "Traceback" not in err
    rows = {o["name"]: o for o in json.loads(out)["outputs"]}
    assert not rows["output_probability"]["passed"]


# --- streaming models: a directory of steps, the state carried ------------------------------------


def test_validate_feeds_steps_with_the_state_carried(tmp_path: Path, cli: Cli) -> None:
    model = streaming(tmp_path / "stream.onnx")
    steps = step_files(tmp_path / "steps")
    code, _, err = cli("validate", model, model, "--data", steps)
    assert code == 2 and "no array for input 'state'" in err and "--state IN:OUT" in err
    code, out, err = cli("validate", model, model, "--data", steps, "--state", "state:stateN", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["samples"] == 6 and report["batches"] == 6 and report["passed"]


def test_steps_get_the_previous_steps_output_as_state(tmp_path: Path) -> None:
    from trtforge.common.ort import SessionConfig, create_session
    from trtforge.pipeline.artifact import Artifact
    from trtforge.pipeline.validation.feeds import data_batches

    model = streaming(tmp_path / "stream.onnx")
    steps = step_files(tmp_path / "steps", steps=4)
    specs = Artifact.from_onnx_path(model).iospec.inputs  # type: ignore[union-attr]
    feeds = list(data_batches(steps, specs, 8, state=["state:stateN"], model=model))
    session = create_session(model, SessionConfig(), source=str(model))
    state = np.zeros((2, 1, 8), np.float32)
    for i, feed in enumerate(feeds):
        x = np.load(steps / f"step{i}.npz")["x"]
        np.testing.assert_array_equal(feed["x"], x)
        np.testing.assert_allclose(feed["state"], state, rtol=1e-6)
        _, state = session.run(None, {"x": x, "state": state, "sr": np.array(16000, np.int64)})
    assert float(np.abs(feeds[-1]["state"]).max()) > 0  # really carried, not zeros every step


def test_quantize_calibrates_a_streaming_model_on_its_steps(tmp_path: Path, cli: Cli) -> None:
    model = streaming(tmp_path / "stream.onnx")
    steps = step_files(tmp_path / "steps")
    out = tmp_path / "stream.int8.onnx"
    code, text, err = cli(
        "quantize",
        model,
        "-o",
        out,
        "--calibration-data",
        steps,
        "--state",
        "state:stateN",
        "--no-plot",
        "--json",
    )
    assert code == 0, err
    metrics = json.loads(text)
    assert metrics["samples"] == 6
    table = json.loads((tmp_path / "stream.int8.calibration_table.json").read_text())
    assert table["samples"] == 6
    assert table["tensors"]["state"]["amax"] > 0  # the carried state: zeros only if it were not carried


def test_bench_a_streaming_model_at_any_batch(tmp_path: Path, cli: Cli) -> None:
    model = streaming(tmp_path / "stream.onnx")
    code, out, err = cli("bench", model, "--batch", "3", "--iters", "2", "--warmup", "0", "--json")
    assert code == 0, err  # was "static batch size 2; benchmark it with --batch 2", from the state input
    assert json.loads(out)["results"][0]["batch"] == 3
    steps = step_files(tmp_path / "steps", steps=2)
    code, _, err = cli("bench", model, "--data", steps, "--batch", "3", "--iters", "1", "--warmup", "0")
    assert code == 2 and "no array for input 'state'" in err
    code, out, err = cli(
        "bench", model, "--data", steps, "--state", "state:stateN", "--batch", "3", "--iters", "1", "--json"
    )
    assert code == 0, err  # the first step, its zero state, repeated to 3 samples on the state's axis 1
    assert not json.loads(out)["random_inputs"]


# --- failures name the user's file ------------------------------------------------------------------


@dataclass(frozen=True)
class BrokenConfig:
    garbage: bool = False  # write bytes that are no ONNX model; else a model that gives NaN


@register_stage("broken_for_test")
class BrokenStage(Stage[BrokenConfig]):
    """Writes a broken model into its staging folder, as a faulty graph transform would."""

    config_cls: ClassVar[type] = BrokenConfig

    def _run(self, artifact: Artifact, ctx: StageContext) -> StageResult:
        out = ctx.out_dir / "model.onnx"
        if self.config.garbage:
            out.write_bytes(b"not an onnx model")
            return StageResult(Artifact(out, ArtifactKind.ONNX, "0" * 64, artifact.iospec))
        graph = helper.make_graph(
            [helper.make_node("Sqrt", ["x"], ["s"]), helper.make_node("Div", ["s", "zero"], ["y"])],
            "nan",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
            [numpy_helper.from_array(np.zeros(4, np.float32), "zero")],
        )
        onnx.save(
            helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(out)
        )
        return StageResult(Artifact.from_onnx_path(out))


@pytest.mark.parametrize("garbage", [False, True])
def test_a_broken_output_is_reported_against_the_users_file(tmp_path: Path, garbage: bool) -> None:
    from trtforge.pipeline.api import run_stage
    from trtforge.pipeline.errors import StageError
    from trtforge.pipeline.stage import DataPaths

    model = tiny_mlp(tmp_path / "users_model.onnx")
    data = tmp_path / "val.npz"
    np.savez(data, x=np.ones((2, 4), np.float32))
    with pytest.raises(StageError) as err:
        run_stage(
            "broken_for_test",
            {"garbage": garbage},
            model,
            tmp_path / "out.onnx",
            data=DataPaths(validation=data),
        )
    text = str(err.value)
    assert text.startswith(f"stage 'broken_for_test' made an invalid model from {model}: "), text
    assert ".trtforge-" not in text and "staging" not in text
    if garbage:  # the checker's own message named the staging file: it is replaced, not dropped
        assert ".trtforge-" in str(err.value.__cause__)
        assert f"the broken_for_test output of {model}" in text
    else:
        assert "output 'y' is not finite on a smoke run" in text
    assert not (tmp_path / "out.onnx").exists()


def test_scrub_replaces_staging_paths() -> None:
    from trtforge.pipeline.contracts import scrub

    made = Path("/work/runs/demo/.03-fuse.staging-ab12/model.onnx")
    text = f"Load model from {made} failed; also /tmp/x/.trtforge-9zq1/model.onnx: bad"
    out = scrub(text, made, "the fuse output of model.onnx")
    assert ".staging-" not in out and ".trtforge-" not in out
    assert out.count("the fuse output of model.onnx") == 2 and out.endswith(": bad")
