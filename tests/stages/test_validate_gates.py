"""Validate gates for compressed models: elementwise off, cosine and accuracy-drop gates that can fail."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import tiny_mlp
from trtforge.pipeline.api import run_single
from trtforge.pipeline.artifact import Artifact
from trtforge.pipeline.errors import ConfigError
from trtforge.pipeline.stage import DataPaths
from trtforge.pipeline.stages.validate import ValidateConfig


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Artifact, Path, Path]:
    ref = Artifact.from_onnx_path(tiny_mlp(tmp_path / "ref.onnx"))
    cand = tiny_mlp(tmp_path / "cand.onnx", perturb=0.05)  # small, systematic logit shift
    x = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
    import onnxruntime as ort

    labels = ort.InferenceSession(str(ref.path)).run(None, {"x": x})[0].argmax(1)
    np.savez(tmp_path / "val.npz", x=x, labels=labels)
    return ref, cand, tmp_path / "val.npz"


def _gates(ref: Artifact, cand: Path, data: Path, **cfg: object) -> dict[str, bool]:
    res = run_single(
        "validate",
        ValidateConfig(**cfg),
        Artifact.from_onnx_path(cand),
        None,  # type: ignore[arg-type]
        data=DataPaths(validation=data),
        reference=ref,
    )
    return {g.name: g.passed for g in res.gates}


def test_elementwise_fails_but_cosine_and_accuracy_pass(setup: tuple[Artifact, Path, Path]) -> None:
    ref, cand, data = setup
    assert _gates(ref, cand, data, atol=1e-4)["parity"] is False
    gates = _gates(
        ref,
        cand,
        data,
        elementwise=False,
        min_cosine=0.99,
        metric="top1",
        min_top1=0.5,
        max_accuracy_drop=0.5,
    )
    assert "parity" not in gates and gates["cosine"] and gates["top1"] and gates["accuracy_drop"]


def test_cosine_and_accuracy_gates_can_fail(setup: tuple[Artifact, Path, Path], tmp_path: Path) -> None:
    ref, _, data = setup
    far = tiny_mlp(tmp_path / "far.onnx", seed=7)  # different weights: a broken model
    gates = _gates(
        ref,
        far,
        data,
        elementwise=False,
        min_cosine=0.99,
        metric="top1",
        min_top1=0.0,
        max_accuracy_drop=0.01,
    )
    assert gates["cosine"] is False and gates["accuracy_drop"] is False


def test_nothing_to_check_is_a_config_error() -> None:
    from trtforge.pipeline.config import from_dict

    with pytest.raises(ConfigError, match="leaves nothing to check"):
        from_dict(ValidateConfig, {"elementwise": False}, "validate")
    with pytest.raises(ConfigError, match="needs metric = 'top1'"):
        from_dict(ValidateConfig, {"max_accuracy_drop": 0.01}, "validate")
