"""scikit-learn's digits as float32 NCHW arrays with a fixed, seeded train/val split.

Pixels are divided by 16 (their maximum) and standardised with the training set's mean
and standard deviation (one scalar each), so every consumer of the data sees the same
inputs the model was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUM_VAL = 360
SPLIT_SEED = 0


@dataclass(frozen=True)
class DigitsSplit:
    x_train: np.ndarray  # float32 [1437, 1, 8, 8]
    y_train: np.ndarray  # int64 [1437]
    x_val: np.ndarray  # float32 [360, 1, 8, 8]
    y_val: np.ndarray  # int64 [360]
    mean: float
    std: float


def load_digits_split(seed: int = SPLIT_SEED, num_val: int = NUM_VAL) -> DigitsSplit:
    """The 1797 digits split into 1437 train / 360 val samples by a seeded permutation."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    val_idx, train_idx = order[:num_val], order[num_val:]
    mean = float(x[train_idx].mean())
    std = float(x[train_idx].std())
    x = ((x - mean) / std).astype(np.float32)
    return DigitsSplit(x[train_idx], y[train_idx], x[val_idx], y[val_idx], mean, std)
