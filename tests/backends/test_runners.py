"""The runner base, the backend registry behind open_runner, and the one session factory."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.conftest import tiny_mlp
from trtforge.common.errors import InputError, MissingDependencyError
from trtforge.common.ort import SessionConfig, create_session
from trtforge.pipeline.artifact import Artifact, ArtifactKind, kind_of_path
from trtforge.pipeline.backends.base import BACKEND_MODULES, RunnerOptions, backend_kinds, open_runner
from trtforge.pipeline.backends.onnxruntime import OrtRunner
from trtforge.pipeline.backends.tensorrt import TrtRunner


def test_registry_covers_every_runnable_kind() -> None:
    for module in BACKEND_MODULES:
        importlib.import_module(module)
    assert set(backend_kinds()) == {ArtifactKind.ONNX, ArtifactKind.ORT, ArtifactKind.ENGINE}


def test_open_runner_chooses_by_kind_and_touches_nothing(tmp_path: Path) -> None:
    mlp = tiny_mlp(tmp_path / "m.onnx")
    onnx_runner = open_runner(Artifact.from_onnx_path(mlp), RunnerOptions(threads=1, name="ref"))
    assert isinstance(onnx_runner, OrtRunner) and onnx_runner.name == "ref" and not onnx_runner.is_active
    engine = open_runner(tmp_path / "m.engine")
    assert isinstance(engine, TrtRunner) and not engine.is_active and not engine.loaded
    with pytest.raises(
        InputError, match=r"no backend runs torch models; runnable kinds are: engine, onnx, ort"
    ):
        open_runner(tmp_path / "model.pt2")


def test_kind_of_path() -> None:
    assert kind_of_path("a.onnx") == ArtifactKind.ONNX and kind_of_path("a.plan") == ArtifactKind.ENGINE
    assert kind_of_path("a.ort") == ArtifactKind.ORT and kind_of_path("pkg.mod:factory") == ArtifactKind.TORCH
    assert f"{ArtifactKind.ENGINE}" == "engine" and str(ArtifactKind.ORT) == "ort"


def test_runner_is_a_context_manager_that_checks_its_feeds(tmp_path: Path) -> None:
    mlp = tiny_mlp(tmp_path / "m.onnx")
    x = np.ones((2, 4), np.float32)
    with OrtRunner(mlp) as runner:
        assert runner.is_active and runner.input_names == ["x"] and runner.output_names == ["y"]
        assert runner.inputs[0].shape == ("N", 4) and runner.inputs[0].dtype == "float32"
        assert runner.run({"x": x})["y"].shape == (2, 3)
        assert runner.last_inference_time is not None and runner.last_inference_time > 0
        bad = {
            "feed lacks input 'x'; model inputs are: 'x'": {},
            "unknown input 'z'": {"x": x, "z": x},
            "expects rank 2": {"x": np.ones((2, 4, 1), np.float32)},
            "size 5 on axis 1; the model fixes it to 4": {"x": np.ones((2, 5), np.float32)},
            "is float64; the model expects float32": {"x": x.astype(np.float64)},
        }
        for message, feeds in bad.items():
            with pytest.raises(InputError, match=str(mlp).replace(".", r"\.") + ".*" + _re(message)):
                runner.run(feeds)
    assert not runner.is_active


def _re(text: str) -> str:
    import re

    return re.escape(text)


def test_the_factory_names_the_model_and_the_missing_provider(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.onnx: model file not found"):
        create_session(tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(InputError, match=r"junk\.onnx: ONNX Runtime cannot load it"):
        create_session(junk)
    mlp = tiny_mlp(tmp_path / "m.onnx")
    with pytest.raises(MissingDependencyError, match="provider NoSuchExecutionProvider is not available"):
        create_session(mlp, SessionConfig(providers=("NoSuchExecutionProvider",)))
    # without require_providers the missing one is dropped and CPU is kept
    session = create_session(
        mlp, SessionConfig(providers=("NoSuchExecutionProvider",), require_providers=False)
    )
    assert session.get_providers() == ["CPUExecutionProvider"]


def test_the_factory_runs_plugin_ops_from_path_bytes_and_proto(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime_extensions")
    from tests.cli.test_architecture_bugs import _plugin_model

    path = _plugin_model(tmp_path / "p.onnx")
    proto = onnx.load(str(path))
    x = np.random.default_rng(0).standard_normal((3, 6)).astype(np.float32)
    outs = [create_session(m).run(None, {"x": x})[0] for m in (path, proto.SerializeToString(), proto)]
    assert all(np.array_equal(outs[0], o) for o in outs[1:]) and outs[0].shape == (3, 3)
    assert onnx.load(str(path)) == proto  # the user's model is never changed
    unknown = onnx.load(str(path))
    unknown.graph.node[1].op_type = "Mystery"
    with pytest.raises(InputError, match=r"model: node 'act' uses custom op trtforge::Mystery and no plugin"):
        create_session(unknown)
