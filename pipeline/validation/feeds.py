"""Inputs for validation and benchmarks: real data (via ``calibration.data``), or seeded random data.

Data errors from ``calibration.data`` (``DataError``, already one line naming the file) become
``pipeline.errors.InputError`` here, so the CLI prints them as one line with exit code 2.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from trtforge.calibration.data import data_files, iter_batches, load_extra
from trtforge.calibration.errors import DataError
from trtforge.common.tensors import TensorSpec
from trtforge.pipeline.errors import InputError

RANDOM_DATA_WARNING = (
    "inputs are RANDOM (--random-data), not real data: parity on random inputs says little about "
    "accuracy on real ones; pass --data for a meaningful check"
)


def data_batches(
    path: str | Path, specs: Sequence[TensorSpec], batch_size: int, limit: int | None = None
) -> Iterator[dict[str, np.ndarray]]:
    """Checked feeds of ``batch_size`` samples from ``path``; data problems raise ``InputError``."""
    input_specs = list(specs)
    it = iter_batches(path, input_specs, batch_size, limit)
    while True:
        try:
            feed = next(it)
        except StopIteration:
            return
        except DataError as exc:
            raise InputError(str(exc)) from exc
        yield feed


def random_batches(
    specs: Sequence[TensorSpec], samples: int, batch_size: int, seed: int = 0
) -> Iterator[dict[str, np.ndarray]]:
    """Seeded random feeds totalling ``samples`` samples (dynamic non-batch dims become 1)."""
    from trtforge.pipeline.backends.onnxruntime import random_feed

    static = _static_batch(specs)
    step = static or batch_size
    done = 0
    index = 0
    while done < samples:
        n = step if static else min(step, samples - done)
        yield random_feed(specs, batch=n, seed=seed + index)
        done += n
        index += 1


def _static_batch(specs: Sequence[TensorSpec]) -> int | None:
    dims = {s.shape[0] for s in specs if s.shape and isinstance(s.shape[0], int) and s.shape[0] > 0}
    return min(dims) if dims else None


def load_labels(path: str | Path, limit: int | None = None) -> np.ndarray | None:
    """The ``labels`` arrays of the data files, concatenated (first ``limit``), or None where absent."""
    try:
        labels = load_extra(path, "labels")
    except DataError as exc:
        raise InputError(str(exc)) from exc
    if labels is None:
        return None
    return labels[:limit] if limit is not None else labels


def sample_total(path: str | Path, specs: Sequence[TensorSpec], limit: int | None = None) -> int:
    """Number of samples behind ``path``, read from the array headers only (for progress bars).

    ``calibration.data.count_samples`` reads every array in full; a progress total should not
    double the I/O of a validation run, so this reads the ``.npy`` headers (also inside ``.npz``).
    Returns 0 when a header cannot be read (the data loader then reports the real problem).
    """
    if not specs:
        return 0
    name = specs[0].name
    total = 0
    try:
        for f in data_files(path):
            total += _leading_dim(f, name)
    except (DataError, OSError, ValueError, KeyError, zipfile.BadZipFile):
        return 0
    return min(total, limit) if limit is not None else total


def _leading_dim(path: Path, name: str) -> int:
    if path.suffix == ".npy":
        shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
        return int(shape[0]) if shape else 1
    with zipfile.ZipFile(path) as zf, zf.open(f"{name}.npy") as member:
        version = np.lib.format.read_magic(member)
        fmt = np.lib.format
        reader = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _, _ = reader(member)
        return int(shape[0]) if shape else 1


def ort_run_errors() -> tuple[type[BaseException], ...]:
    """ONNX Runtime's exception types for a failed run (they derive from Exception only)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    names = ("Fail", "InvalidArgument", "RuntimeException", "NotImplemented", "InvalidGraph", "EPFail")
    return tuple(getattr(state, n) for n in names if hasattr(state, n))
