"""Task metrics for validation: top-1 agreement between two models, and accuracy against labels.

Both are accumulated batch by batch, so a data set of any size runs in bounded memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from trtforge.pipeline.errors import InputError

METRICS = ("none", "top1")


def top1(output: np.ndarray) -> np.ndarray:
    """Predicted class per position: argmax over the last axis (shape: the output without its last axis)."""
    if output.ndim == 0:
        raise InputError("top-1 needs an output of rank >= 1 (classes on the last axis), got a scalar")
    return np.asarray(np.argmax(output, axis=-1))


def argmax_agreement(ref: np.ndarray, cand: np.ndarray) -> tuple[int, int]:
    """(samples whose argmax agrees, samples) of a ``[batch, classes]`` output; (0, 0) for any other shape."""
    if ref.ndim != 2 or ref.shape[1] <= 1 or ref.shape != cand.shape:
        return 0, 0
    return int(np.count_nonzero(ref.argmax(1) == cand.argmax(1))), int(ref.shape[0])


@dataclass(frozen=True)
class Top1Result:
    """Fraction of positions where reference and candidate predict the same class. Truthy when it passes."""

    output: str
    agreement: float
    count: int
    min_top1: float

    @property
    def passed(self) -> bool:
        return self.count > 0 and self.agreement >= self.min_top1

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "agreement": self.agreement,
            "count": self.count,
            "min_top1": self.min_top1,
            "passed": self.passed,
        }


@dataclass(frozen=True)
class LabelAccuracy:
    """Top-1 accuracy of each model against the labels carried by the data."""

    output: str
    reference: float
    candidate: float
    count: int

    @property
    def drop(self) -> float:
        return self.reference - self.candidate

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "reference": self.reference,
            "candidate": self.candidate,
            "drop": self.drop,
            "count": self.count,
        }


class Top1Accumulator:
    """Counts top-1 agreement (and label hits, when labels are given) batch by batch."""

    def __init__(self, output: str, min_top1: float, labels: np.ndarray | None = None) -> None:
        self.output = output
        self.min_top1 = min_top1
        self.labels = labels
        self.count = 0
        self.agree = 0
        self.ref_hits = 0
        self.cand_hits = 0
        self._offset = 0  # samples consumed from ``labels``

    def update(self, ref: np.ndarray, cand: np.ndarray, samples: int) -> None:
        """Add one batch of ``samples`` samples; raises ``InputError`` when shapes do not line up."""
        if ref.shape != cand.shape:
            raise InputError(
                f"top-1 on output {self.output!r}: candidate shape {cand.shape} differs from the "
                f"reference {ref.shape}; compare models with the same outputs"
            )
        ref_pred, cand_pred = top1(ref), top1(cand)
        self.count += ref_pred.size
        self.agree += int(np.count_nonzero(ref_pred == cand_pred))
        if self.labels is not None:
            truth = self._label_batch(samples, ref_pred.shape)
            self.ref_hits += int(np.count_nonzero(ref_pred == truth))
            self.cand_hits += int(np.count_nonzero(cand_pred == truth))

    def _label_batch(self, samples: int, pred_shape: tuple[int, ...]) -> np.ndarray:
        assert self.labels is not None
        start, stop = self._offset, self._offset + samples
        if stop > len(self.labels):
            raise InputError(
                f"labels: the data carries {len(self.labels)} labels but more samples than that; "
                "give one label per sample"
            )
        self._offset = stop
        truth = self.labels[start:stop]
        if truth.shape != pred_shape and truth.ndim == len(pred_shape) + 1:
            truth = np.argmax(truth, axis=-1)  # one-hot labels
        if truth.shape != pred_shape:
            raise InputError(
                f"labels have shape {truth.shape} per batch but output {self.output!r} predicts "
                f"{pred_shape}; store class indices (or one-hot rows) per sample"
            )
        return truth

    def top1_result(self) -> Top1Result:
        agreement = self.agree / self.count if self.count else 0.0
        return Top1Result(self.output, agreement, self.count, self.min_top1)

    def label_accuracy(self) -> LabelAccuracy | None:
        if self.labels is None or not self.count:
            return None
        if self._offset != len(self.labels):
            raise InputError(
                f"labels: the data carries {len(self.labels)} labels for {self._offset} samples; "
                "give one label per sample"
            )
        return LabelAccuracy(self.output, self.ref_hits / self.count, self.cand_hits / self.count, self.count)
