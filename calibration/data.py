"""Feeds from files: ``.npy`` (one input), ``.npz`` (keyed by input name), or a directory of them.

A *feed* is ``dict[input name, np.ndarray]`` holding one batch. Files are read lazily,
one at a time, so iterating a large directory keeps memory bounded. The first axis of
every array is the sample axis; :func:`iter_batches` re-batches samples to a batch size.

``.npz`` files may carry extra arrays (e.g. ``labels``) that are not model inputs; they are
ignored by :func:`iter_feeds` and can be read with :func:`load_extra`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from trtforge.calibration.errors import DataError
from trtforge.common.tensors import TensorSpec

DATA_SUFFIXES = (".npy", ".npz")


def data_files(path: str | Path) -> list[Path]:
    """The data files behind ``path`` (a file or a directory), sorted; errors name the path."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: data path does not exist; pass a .npy, .npz or a directory of them")
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix in DATA_SUFFIXES and f.is_file())
        if not files:
            raise DataError(f"{p}: directory holds no .npy or .npz files; put data files there")
        return files
    if p.suffix not in DATA_SUFFIXES:
        raise DataError(f"{p}: unsupported data file type {p.suffix!r}; use .npy or .npz")
    return [p]


def _read_file(path: Path, specs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
    try:
        if path.suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
            if len(specs) != 1:
                names = ", ".join(repr(s.name) for s in specs)
                raise DataError(
                    f"{path}: a .npy file feeds a single input but the model has {len(specs)} ({names}); "
                    "use an .npz keyed by input name"
                )
            return {specs[0].name: arr}
        with np.load(path, allow_pickle=False) as npz:
            missing = [s.name for s in specs if s.name not in npz.files]
            if missing:
                raise DataError(
                    f"{path}: no array for input {missing[0]!r}; arrays in the file: "
                    f"{', '.join(repr(k) for k in npz.files) or 'none'}; key arrays by model input name"
                )
            return {s.name: npz[s.name] for s in specs}
    except DataError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: cannot read data file ({exc}); re-save it with numpy.save/savez") from exc


def check_feed(feed: dict[str, np.ndarray], specs: Sequence[TensorSpec], source: str) -> None:
    """Raise ``DataError`` naming ``source`` when the feed does not fit the specs or is not finite."""
    for spec in specs:
        arr = feed[spec.name]
        want_dtype = np.dtype(spec.dtype)
        if arr.dtype != want_dtype and not np.can_cast(arr.dtype, want_dtype, casting="same_kind"):
            raise DataError(
                f"{source}: input {spec.name!r} has dtype {arr.dtype}, the model wants {spec.dtype}; "
                f"convert the data with .astype('{spec.dtype}')"
            )
        if arr.ndim != len(spec.shape):
            raise DataError(
                f"{source}: input {spec.name!r} has shape {tuple(arr.shape)}, the model wants rank "
                f"{len(spec.shape)} {_fmt_shape(spec.shape)}; reshape the data"
            )
        for axis, (got, want) in enumerate(zip(arr.shape, spec.shape, strict=True)):
            if isinstance(want, int) and want > 0 and got != want and not (axis == 0 and want == 1):
                raise DataError(
                    f"{source}: input {spec.name!r} has shape {tuple(arr.shape)}, the model wants "
                    f"{_fmt_shape(spec.shape)} (axis {axis}: {got} != {want}); reshape the data"
                )
        if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
            raise DataError(f"{source}: input {spec.name!r} contains NaN or Inf; clean the data")


def _fmt_shape(shape: Sequence[int | str | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def iter_feeds(path: str | Path, specs: Sequence[TensorSpec]) -> Iterator[dict[str, np.ndarray]]:
    """Yield one checked feed per data file (all samples of that file), cast to the model dtypes."""
    for f in data_files(path):
        feed = _read_file(f, specs)
        check_feed(feed, specs, str(f))
        yield {s.name: np.ascontiguousarray(feed[s.name], dtype=np.dtype(s.dtype)) for s in specs}


def iter_batches(
    path: str | Path, specs: Sequence[TensorSpec], batch_size: int, limit: int | None = None
) -> Iterator[dict[str, np.ndarray]]:
    """Yield feeds of ``batch_size`` samples (the last may be smaller), at most ``limit`` samples.

    A static batch dimension in the model (e.g. 1) wins over ``batch_size``.
    """
    if batch_size < 1:
        raise DataError(f"batch size must be >= 1, got {batch_size}")
    static = {s.shape[0] for s in specs if s.shape and isinstance(s.shape[0], int) and s.shape[0] > 0}
    if static:
        batch_size = min(static)
    seen = 0
    for feed in iter_feeds(path, specs):
        n = _num_samples(feed, path)
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            if limit is not None:
                stop = min(stop, start + limit - seen)
            if stop <= start:
                return
            yield {k: v[start:stop] for k, v in feed.items()}
            seen += stop - start
            if limit is not None and seen >= limit:
                return


def _num_samples(feed: dict[str, np.ndarray], source: str | Path) -> int:
    counts = {int(v.shape[0]) if v.ndim else 1 for v in feed.values()}
    if len(counts) != 1:
        raise DataError(f"{source}: inputs disagree on the number of samples {sorted(counts)}; align them")
    return counts.pop()


def count_samples(path: str | Path, specs: Sequence[TensorSpec]) -> int:
    """Number of samples behind ``path`` (reads each file once)."""
    return sum(_num_samples(feed, path) for feed in iter_feeds(path, specs))


def load_extra(path: str | Path, key: str) -> np.ndarray | None:
    """Concatenate array ``key`` (e.g. ``labels``) across the data files, or None where absent."""
    parts = []
    for f in data_files(path):
        if f.suffix != ".npz":
            return None
        with np.load(f, allow_pickle=False) as npz:
            if key not in npz.files:
                return None
            parts.append(npz[key])
    return np.concatenate(parts) if parts else None
