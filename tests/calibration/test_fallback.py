"""The accuracy budget drives a fallback that restores a model with one quantization-hostile layer."""

from __future__ import annotations

import numpy as np
import pytest

from tests.calibration import tiny
from trtforge.calibration.budget import check, parse_budget
from trtforge.calibration.errors import CalibrationError
from trtforge.calibration.quantizer import QuantizeOptions, calibrate
from trtforge.calibration.sensitivity import fit_budget, run_model


def _data(seed, n=4):
    rng = np.random.default_rng(seed)
    return [{"x": rng.normal(size=(64, 16)).astype(np.float32)} for _ in range(n)]


@pytest.mark.parametrize("target", ["tensorrt", "onnxruntime-cpu"])
def test_fallback_restores_planted_hostile_layer(target):
    model = tiny.mlp(hostile="fc2")
    cal = calibrate(model, _data(0), QuantizeOptions(target=target, method="minmax"))
    val = _data(1, 2)
    ref = run_model(model, val)
    terms = parse_budget("cosine:0.995")
    fit = fit_budget(cal, terms, val, ref)
    assert not fit.initial  # fully quantized, the planted layer breaks the budget
    assert fit.final  # ... and the fallback restores it
    assert max(fit.sensitivity, key=lambda k: fit.sensitivity[k]) in ("fc2", "fc1")
    assert "fc2" in fit.fell_back
    if target == "tensorrt":  # only fc2 reads the hostile tensor there
        assert fit.fell_back == ["fc2"]
    assert check(terms, ref, run_model(fit.model, val))


def test_no_fallback_when_the_budget_holds():
    model = tiny.mlp()
    cal = calibrate(model, _data(0), QuantizeOptions(target="tensorrt"))
    val = _data(1, 1)
    fit = fit_budget(cal, parse_budget("cosine:0.99"), val, run_model(model, val))
    assert fit.initial and fit.fell_back == [] and fit.sensitivity == {}


def test_budget_parsing():
    t = parse_budget("top1:0.5%, cosine@logits:0.999, maxabs@boxes:0.5")
    assert [(x.kind, x.output, x.value) for x in t] == [
        ("top1", None, 0.005),
        ("cosine", "logits", 0.999),
        ("maxabs", "boxes", 0.5),
    ]
    with pytest.raises(CalibrationError, match="expected one of"):
        parse_budget("acc:1")


def test_top1_budget_against_labels():
    ref = {"y": np.eye(4)[[0, 1, 2, 3]]}
    cand = {"y": np.eye(4)[[0, 1, 2, 2]]}
    labels = np.array([0, 1, 2, 3])
    res = check(parse_budget("top1:30%"), ref, cand, labels)
    assert res and res.terms[0][1] == pytest.approx(0.25)
    assert not check(parse_budget("top1:20%"), ref, cand, labels)
