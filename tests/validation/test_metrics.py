"""Top-1 agreement and label accuracy on hand-built outputs."""

from __future__ import annotations

import numpy as np
import pytest

from trtforge.pipeline.errors import InputError
from trtforge.pipeline.validation.metrics import Top1Accumulator, top1


def _logits(classes: list[int], n_classes: int = 4) -> np.ndarray:
    out = np.zeros((len(classes), n_classes), np.float32)
    out[np.arange(len(classes)), classes] = 1.0
    return out


def test_top1_agreement_over_batches() -> None:
    acc = Top1Accumulator("logits", min_top1=0.7)
    acc.update(_logits([0, 1, 2]), _logits([0, 1, 3]), 3)  # 2 of 3 agree
    acc.update(_logits([3]), _logits([3]), 1)  # 1 of 1
    res = acc.top1_result()
    assert res.count == 4 and res.agreement == pytest.approx(0.75)
    assert res and res.passed
    assert not Top1Accumulator("logits", 0.8).top1_result()  # nothing seen: not passed


def test_top1_below_threshold_fails() -> None:
    acc = Top1Accumulator("logits", min_top1=0.99)
    acc.update(_logits([0, 1]), _logits([1, 1]), 2)
    res = acc.top1_result()
    assert res.agreement == 0.5 and not res and res.to_dict()["passed"] is False


def test_top1_uses_the_last_axis() -> None:
    out = np.zeros((2, 3, 5))
    out[0, :, 4] = 1
    out[1, :, 2] = 1
    assert top1(out).tolist() == [[4, 4, 4], [2, 2, 2]]
    with pytest.raises(InputError, match="rank >= 1"):
        top1(np.float32(1.0) * np.ones(()))


def test_label_accuracy_of_each_model() -> None:
    labels = np.array([0, 1, 2, 3])
    acc = Top1Accumulator("logits", 0.0, labels)
    acc.update(_logits([0, 1]), _logits([0, 0]), 2)
    acc.update(_logits([2, 0]), _logits([2, 3]), 2)
    res = acc.label_accuracy()
    assert res is not None
    assert res.reference == 0.75 and res.candidate == 0.75 and res.count == 4
    assert res.drop == 0.0


def test_one_hot_labels_and_label_count_errors() -> None:
    acc = Top1Accumulator("logits", 0.0, _logits([1, 2]))
    acc.update(_logits([1, 2]), _logits([1, 0]), 2)
    res = acc.label_accuracy()
    assert res is not None and res.reference == 1.0 and res.candidate == 0.5
    short = Top1Accumulator("logits", 0.0, np.array([0]))
    with pytest.raises(InputError, match="1 labels"):
        short.update(_logits([0, 1]), _logits([0, 1]), 2)
    extra = Top1Accumulator("logits", 0.0, np.array([0, 1, 2]))
    extra.update(_logits([0, 1]), _logits([0, 1]), 2)
    with pytest.raises(InputError, match="3 labels for 2 samples"):
        extra.label_accuracy()
