"""Fidelity metrics per output kind, streamed over batches, and the default floor's gate."""

from __future__ import annotations

import numpy as np
import pytest

from trtforge.calibration.budget import map_iou
from trtforge.pipeline.validation.fidelity import DEFAULT_BUDGET, measure, output_kind

RNG = np.random.default_rng(0)


def test_output_kinds() -> None:
    assert output_kind(RNG.normal(size=(4, 10)).astype(np.float32)) == "scores"
    assert output_kind(RNG.random((2, 1, 8, 8)).astype(np.float32)) == "map"
    assert output_kind(RNG.normal(size=(2, 3, 8, 8)).astype(np.float32)) == "tensor"  # leaves [0, 1]
    assert output_kind(RNG.normal(size=(4, 1)).astype(np.float32)) == "tensor"  # one column: no argmax
    assert output_kind(np.arange(4, dtype=np.int64)) == "labels"
    # regressions are no class scores: by name, and embeddings by their unit rows
    assert output_kind(RNG.normal(size=(4, 4)).astype(np.float32), "boxes") == "tensor"
    assert output_kind(RNG.normal(size=(4, 10)).astype(np.float32), "landmarks") == "tensor"
    rows = RNG.normal(size=(4, 256))
    assert output_kind((rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)) == "tensor"
    probs = RNG.random((4, 2))
    assert output_kind((probs / probs.sum(1, keepdims=True)).astype(np.float32), "prob_boxes") == "scores"


def test_streaming_over_batches_equals_one_pass() -> None:
    ref = RNG.normal(size=(12, 5)).astype(np.float32)
    cand = ref + RNG.normal(size=ref.shape).astype(np.float32) * 0.3
    whole = measure([({"y": ref}, {"y": cand})], "none").outputs[0]
    parts = measure([({"y": ref[:5]}, {"y": cand[:5]}), ({"y": ref[5:]}, {"y": cand[5:]})], "none").outputs[0]
    assert parts.samples == whole.samples == 12
    assert parts.cosine == pytest.approx(whole.cosine)
    assert parts.rel_l2 == pytest.approx(whole.rel_l2)
    assert parts.agreement == whole.agreement
    cos = [float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) for a, b in zip(ref, cand)]
    assert whole.cosine == pytest.approx(np.mean(cos), rel=1e-6)
    assert whole.rel_l2 == pytest.approx(np.linalg.norm(cand - ref) / np.linalg.norm(ref), rel=1e-6)
    assert whole.agreement == np.mean(ref.argmax(1) == cand.argmax(1))


def test_default_floor_fails_a_classifier_that_flips_predictions_and_passes_a_close_one() -> None:
    logits = RNG.normal(size=(200, 10)).astype(np.float32) * 3
    close = logits + RNG.normal(size=logits.shape).astype(np.float32) * 0.01
    report = measure([({"logits": logits}, {"logits": close})], None)
    assert report.budget == DEFAULT_BUDGET and report.passed
    gate = report.gate()
    assert gate.passed and gate.value is not None
    flipped = logits.copy()
    for row in flipped[:10]:  # 5% of the samples swap their top two classes: the angle barely moves
        first, second = np.argsort(row)[-1], np.argsort(row)[-2]
        row[[first, second]] = row[[second, first]]
    report = measure([({"logits": logits}, {"logits": flipped})], None)
    assert report.outputs[0].cosine > 0.99 and report.outputs[0].agreement == pytest.approx(0.95)
    gate = report.gate()
    assert not gate.passed and gate.value == pytest.approx(report.outputs[0].agreement)
    assert gate.threshold == pytest.approx(0.98) and "top1:0.02 on output 'logits'" in gate.detail
    assert "--accuracy-budget none" in gate.detail
    # the same model with the gate turned off: measured, reported, passing
    off = measure([({"logits": logits}, {"logits": flipped})], "none")
    assert off.passed and off.gate().passed and off.outputs[0].agreement == report.outputs[0].agreement


def test_map_iou_catches_a_detector_map_that_loses_its_objects() -> None:
    prob = np.zeros((2, 1, 32, 32), np.float32)
    prob[:, :, 8:16, 8:24] = 0.9  # two "text boxes"
    prob += RNG.random(prob.shape).astype(np.float32) * 0.05
    faded = prob * 0.5  # every box below 0.5 now; the angle does not move at all
    report = measure([({"map": prob}, {"map": faded})], None)
    (out,) = report.outputs
    assert out.kind == "map" and out.cosine > 0.99 and out.iou == 0.0
    assert not report.passed and "iou:0.95" in report.gate().detail
    assert map_iou(prob, faded) == 0.0 and map_iou(prob, prob) == 1.0
    assert measure([({"map": prob}, {"map": prob + 0.001})], None).passed


def test_integer_outputs_are_checked_by_agreement_not_angle() -> None:
    labels = RNG.integers(0, 10, 100).astype(np.int64)
    other = labels.copy()
    other[:5] = (other[:5] + 1) % 10
    report = measure([({"label": labels}, {"label": other})], None)
    (out,) = report.outputs
    assert out.kind == "labels" and out.agreement == pytest.approx(0.95)
    assert [c.term for c in report.checks] == ["top1:0.02"] and not report.passed


def test_a_named_output_budget_checks_only_that_output() -> None:
    a, b = RNG.normal(size=(8, 4)).astype(np.float32), RNG.normal(size=(8, 4)).astype(np.float32)
    report = measure([({"good": a, "bad": a}, {"good": a, "bad": b})], "cosine@good:0.999")
    assert report.passed and [c.output for c in report.checks] == ["good"]
    assert measure([({"good": a, "bad": a}, {"good": a, "bad": b})], "cosine:0.999").passed is False
