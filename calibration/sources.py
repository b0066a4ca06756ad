"""Calibration data sources beyond :mod:`calibration.data`: images with declared preprocessing,
a Python callable ``package.module:function``, and memory-mapped ``.npy`` streaming.

:func:`open_batches` picks the source from its spec and yields checked feeds of at most
``batch_size`` samples, holding one batch (or one data file) at a time. There is no random
source: ranges from random data are meaningless, so ``random`` is refused.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trtforge.calibration.data import (
    FeedLayout,
    StepFn,
    check_feed,
    data_files,
    iter_batches,
    iter_steps,
    parse_state,
)
from trtforge.calibration.errors import DataError
from trtforge.common.tensors import TensorSpec

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".webp", ".tif", ".tiff")
_CALLABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class ImagePreprocess:
    """How image files become an input tensor: resize, colour, scale, mean/std, layout."""

    size: tuple[int, int] | None = None  # (height, width); None: take it from the model input
    layout: str = "NCHW"  # NCHW | NHWC
    color: str = "RGB"  # RGB | BGR | L (grayscale)
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        if self.layout not in ("NCHW", "NHWC"):
            raise ValueError(f"layout {self.layout!r} is not one of 'NCHW', 'NHWC'")
        if self.color not in ("RGB", "BGR", "L"):
            raise ValueError(f"color {self.color!r} is not one of 'RGB', 'BGR', 'L'")
        if any(s == 0 for s in self.std):
            raise ValueError("std values must be non-zero")


def source_kind(source: str | Path) -> str:
    """``arrays`` (.npy/.npz or a directory of them), ``images`` or ``callable``."""
    text = str(source)
    if text.strip().lower() in ("random", "rand", "noise"):
        raise DataError(
            "random calibration data is refused: ranges from noise do not match real inputs; "
            "pass .npy/.npz files, an image directory or a package.module:function"
        )
    p = Path(text)
    if not p.exists() and _CALLABLE.match(text):
        return "callable"
    arrays = p.is_dir() and any(f.suffix in (".npy", ".npz") for f in p.iterdir())
    if p.is_dir() and not arrays and any(f.suffix.lower() in IMAGE_SUFFIXES for f in p.iterdir()):
        return "images"
    return "arrays"


def open_batches(
    source: str | Path,
    specs: Sequence[TensorSpec],
    batch_size: int,
    limit: int | None = None,
    preprocess: ImagePreprocess | None = None,
    *,
    state: Sequence[str] = (),
    step: StepFn | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Checked feeds from ``source`` (see :func:`source_kind`), at most ``limit`` samples.

    ``state``: ``IN:OUT`` pairs of a streaming model; the data files are then the steps of sequences
    (:func:`calibration.data.iter_steps`) and ``step`` runs the model to carry the state.
    """
    kind = source_kind(source)
    if state:
        if kind != "arrays":
            raise DataError(
                f"{source}: state pairs ({', '.join(state)}) need .npy/.npz step files, not {kind} data"
            )
        return iter_steps(source, specs, parse_state(state, specs), step, limit)
    if kind == "callable":
        return _limit(_callable_batches(str(source), specs), specs, limit)
    if kind == "images":
        return _image_batches(Path(source), specs, batch_size, limit, preprocess)
    files = data_files(source)
    if (
        all(f.suffix == ".npy" for f in files)
        and len(specs) == 1
        and FeedLayout.of(specs).axes[specs[0].name] == 0
    ):
        return _npy_batches(files, specs, batch_size, limit)
    return iter_batches(source, specs, batch_size, limit)


def _limit(
    feeds: Iterator[dict[str, np.ndarray]], specs: Sequence[TensorSpec], limit: int | None
) -> Iterator[dict[str, np.ndarray]]:
    layout = FeedLayout.of(specs)
    seen = 0
    for feed in feeds:
        n = layout.samples(feed, "calibration data function")
        if limit is not None and seen + n > limit:
            feed = layout.take(feed, 0, limit - seen)
            n = limit - seen
        if n > 0:
            yield feed
        seen += n
        if limit is not None and seen >= limit:
            return


def _static_batch(specs: Sequence[TensorSpec], batch_size: int) -> int:
    return FeedLayout.of(specs).static_batch() or batch_size


def _npy_batches(
    files: Sequence[Path], specs: Sequence[TensorSpec], batch_size: int, limit: int | None
) -> Iterator[dict[str, np.ndarray]]:
    """Memory-mapped ``.npy`` files: only the current batch is read into memory."""
    spec = specs[0]
    batch_size = _static_batch(specs, batch_size)
    seen = 0
    for f in files:
        try:
            arr = np.load(f, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"{f}: cannot read data file ({exc}); re-save it with numpy.save") from exc
        for start in range(0, arr.shape[0] if arr.ndim else 1, batch_size):
            stop = start + batch_size if limit is None else min(start + batch_size, start + limit - seen)
            feed = {spec.name: np.array(arr[start:stop])}
            check_feed(feed, specs, str(f))
            feed[spec.name] = np.ascontiguousarray(feed[spec.name], dtype=np.dtype(spec.dtype))
            seen += feed[spec.name].shape[0]
            yield feed
            if limit is not None and seen >= limit:
                return


def _callable_batches(spec_text: str, specs: Sequence[TensorSpec]) -> Iterator[dict[str, np.ndarray]]:
    mod_name, fn_name = spec_text.split(":")
    cwd = str(Path.cwd())
    added = cwd not in sys.path  # console scripts do not put the working directory on sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        fn = getattr(importlib.import_module(mod_name), fn_name)
    except (ImportError, AttributeError) as exc:
        raise DataError(
            f"{spec_text}: cannot import the calibration data function ({exc}); "
            "pass package.module:function importable from the current directory or PYTHONPATH"
        ) from exc
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)
    produced: Any = fn()
    for i, feed in enumerate(produced):
        if not isinstance(feed, dict):
            raise DataError(
                f"{spec_text}: item {i} is a {type(feed).__name__}, expected a dict of input arrays"
            )
        missing = [s.name for s in specs if s.name not in feed]
        if missing:
            raise DataError(
                f"{spec_text}: item {i} has no array for input {missing[0]!r}; keys: {sorted(feed)}"
            )
        arrays = {s.name: np.asarray(feed[s.name]) for s in specs}
        check_feed(arrays, specs, f"{spec_text} item {i}")
        cast = {s.name: np.asarray(arrays[s.name], dtype=np.dtype(s.dtype), order="C") for s in specs}
        yield FeedLayout.of(specs).ordered(cast)


def load_image(path: Path, spec: TensorSpec, pre: ImagePreprocess) -> np.ndarray:
    """One image as a float array of the input's per-sample shape (no batch axis)."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise DataError("image calibration data needs Pillow; pip install pillow") from exc
    size = pre.size or _size_from_spec(spec, pre.layout)
    try:
        with Image.open(path) as opened:
            mode = "L" if pre.color == "L" else "RGB"
            img = opened.convert(mode).resize((size[1], size[0]), Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.float32)
    except OSError as exc:
        raise DataError(f"{path}: cannot read image ({exc}); remove it or convert it to PNG/JPEG") from exc
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if pre.color == "BGR":
        arr = arr[:, :, ::-1]
    arr = arr * pre.scale
    mean = np.asarray(pre.mean, dtype=np.float32)
    std = np.asarray(pre.std, dtype=np.float32)
    arr = (arr - mean) / std
    return np.ascontiguousarray(arr.transpose(2, 0, 1) if pre.layout == "NCHW" else arr)


def _size_from_spec(spec: TensorSpec, layout: str) -> tuple[int, int]:
    dims = spec.shape[2:4] if layout == "NCHW" else spec.shape[1:3]
    if len(spec.shape) != 4 or not all(isinstance(d, int) and d > 0 for d in dims):
        raise DataError(
            f"input {spec.name!r} has shape {list(spec.shape)}; image calibration needs a rank-4 input with "
            "static height/width or an explicit preprocess size = [height, width]"
        )
    return int(dims[0]), int(dims[1])  # type: ignore[arg-type]


def _image_batches(
    folder: Path, specs: Sequence[TensorSpec], batch_size: int, limit: int | None, pre: ImagePreprocess | None
) -> Iterator[dict[str, np.ndarray]]:
    if pre is None:
        raise DataError(
            f"{folder}: image calibration data needs a declared preprocessing "
            "(resize, layout, mean/std); set [quantize.preprocess] in the config"
        )
    if len(specs) != 1:
        raise DataError(
            f"{folder}: images feed a single input but the model has {len(specs)}; use .npz files"
        )
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    if limit is not None:
        files = files[:limit]
    spec = specs[0]
    batch_size = _static_batch(specs, batch_size)
    for start in range(0, len(files), batch_size):
        batch = np.stack([load_image(f, spec, pre) for f in files[start : start + batch_size]])
        feed = {spec.name: batch.astype(np.dtype(spec.dtype))}
        check_feed(feed, specs, f"{folder} (images {start}..{start + len(batch) - 1})")
        yield feed
