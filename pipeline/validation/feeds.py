"""Inputs for validation, self-checks and benchmarks: real data (via ``calibration.data``), or seeded
random data of known shapes.

Data errors from ``calibration.data`` (``DataError``, already one line naming the file) become
``pipeline.errors.InputError`` here, so the CLI prints them as one line with exit code 2.

Shapes of random inputs (:func:`feed_shapes`): a dimension the model fixes keeps its size, the batch
axis (``calibration.data.batch_axes``) takes the run's batch size, and any other dynamic dimension
must come from explicit ``--shapes`` (``NAME:1x3x640x640``, the syntax of ``build --shapes``): random
inputs never invent a size, the check is refused instead (exit 2, naming the input and axis).

Streaming models: ``state`` pairs (``IN:OUT``) make the data files the steps of sequences, each
step's state the previous step's output of ``model`` (:func:`state_step`).
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trtforge.calibration.data import (
    FeedLayout,
    StepFn,
    batch_axes,
    data_sequences,
    iter_batches,
    iter_steps,
    load_extra,
    parse_state,
)
from trtforge.calibration.errors import DataError
from trtforge.common.tensors import TensorSpec
from trtforge.pipeline.errors import ConfigError, InputError, first_line

RANDOM_DATA_WARNING = (
    "inputs are RANDOM (--random-data), not real data: parity on random inputs says little about "
    "accuracy on real ones; pass --data for a meaningful check"
)

#: the size an example ``--shapes`` value gives a dynamic dimension in messages
EXAMPLE_DIM = 640

ShapeMap = Mapping[str, Sequence[int]]


class UnknownShapeError(InputError):
    """Random inputs were asked for a model input whose size no data and no ``--shapes`` gives."""


def data_batches(
    path: str | Path,
    specs: Sequence[TensorSpec],
    batch_size: int,
    limit: int | None = None,
    *,
    state: Sequence[str] = (),
    model: str | Path | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Checked feeds of ``batch_size`` samples from ``path``; data problems raise ``InputError``.

    With ``state`` pairs the files are steps fed whole, the state carried by running ``model``.
    """
    input_specs = list(specs)
    try:
        if state:
            step = state_step(model, state) if model is not None else None
            it = iter_steps(path, input_specs, parse_state(state, input_specs), step, limit)
        else:
            it = iter_batches(path, input_specs, batch_size, limit)
    except DataError as exc:
        raise InputError(str(exc)) from exc
    return _as_input_errors(it)


def _as_input_errors(it: Iterator[dict[str, np.ndarray]]) -> Iterator[dict[str, np.ndarray]]:
    while True:
        try:
            feed = next(it)
        except StopIteration:
            return
        except DataError as exc:
            raise InputError(str(exc)) from exc
        yield feed


def state_step(model: str | Path, state: Sequence[str]) -> StepFn:
    """A step function for :func:`calibration.data.iter_steps`: runs ``model`` (opened on first use)
    and returns the state outputs named in ``state`` (``IN:OUT`` pairs)."""
    runner: Any = None
    wanted: list[str] = []

    def step(feed: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        nonlocal runner, wanted
        if runner is None:
            from trtforge.pipeline.backends.base import RunnerOptions, open_runner

            runner = open_runner(model, RunnerOptions(name="the state model")).activate()
            pairs = parse_state(state, runner.inputs)
            outputs = runner.output_names
            missing = [p for p in pairs if p.output not in outputs]
            if missing:
                raise InputError(
                    f"{model}: state {missing[0]}: the model has no output {missing[0].output!r}; "
                    f"outputs are: {', '.join(map(repr, outputs))}"
                )
            wanted = [p.output for p in pairs]
        try:
            return runner.run(feed, wanted)  # type: ignore[no-any-return]
        except ort_run_errors() as exc:
            raise InputError(
                f"{model}: cannot run a step to carry its state ({first_line(exc)}); check the step files"
            ) from exc

    return step


# --- random inputs of known shapes -----------------------------------------------------------------


def explicit_shapes(shapes: Sequence[str] | ShapeMap | None) -> dict[str, tuple[int, ...]]:
    """``--shapes`` values (``x:1x3x640x640``, several inputs per value or several values) as
    ``{input: shape}``; of ``MIN,OPT,MAX`` ranges the OPT shape, of repeated inputs the first."""
    if not shapes:
        return {}
    if isinstance(shapes, Mapping):
        return {str(k): tuple(int(d) for d in v) for k, v in shapes.items()}
    from trtforge.pipeline.engine.profiles import parse_shapes

    out: dict[str, tuple[int, ...]] = {}
    for text in shapes:
        for name, given in parse_shapes(text).items():
            out.setdefault(name, given[1] if len(given) == 3 else given[0])
    return out


def shape_example(spec: TensorSpec, batch: int = 1, axis: int | None = -1) -> str:
    """A ``--shapes`` value for ``spec``: its fixed sizes, ``batch`` on the batch axis (``axis``; by
    default the one :func:`batch_axes` finds for ``spec`` alone), 640 elsewhere."""
    if axis == -1:
        axis = batch_axes([spec]).get(spec.name)
    dims = [
        str(d) if isinstance(d, int) and d > 0 else str(batch if i == axis else EXAMPLE_DIM)
        for i, d in enumerate(spec.shape)
    ]
    return f"{spec.name}:{'x'.join(dims)}" if dims else spec.name


def feed_shapes(
    specs: Sequence[TensorSpec], batch: int = 1, shapes: ShapeMap | None = None, source: str = ""
) -> dict[str, tuple[int, ...]]:
    """The shape of each input for ``batch`` samples: fixed sizes, the batch on the batch axis, the
    rest from ``shapes`` (``--shapes``). ``UnknownShapeError`` naming the input and axis otherwise."""
    given = dict(shapes or {})
    axes = batch_axes(specs)
    names = [s.name for s in specs]
    prefix = f"{source}: " if source else ""
    unknown = [n for n in given if n not in names]
    if unknown:
        raise ConfigError(
            f"{prefix}--shapes: input {unknown[0]!r} not found; "
            f"model inputs are: {', '.join(map(repr, names))}"
        )
    out: dict[str, tuple[int, ...]] = {}
    for spec in specs:
        explicit = given.get(spec.name)
        if explicit is not None and len(explicit) != len(spec.shape):
            raise ConfigError(
                f"{prefix}--shapes {spec.name}: shape {'x'.join(map(str, explicit))} has rank "
                f"{len(explicit)}, the input has rank {len(spec.shape)}; "
                f"e.g. --shapes {shape_example(spec, axis=axes.get(spec.name))}"
            )
        dims: list[int] = []
        for i, d in enumerate(spec.shape):
            if isinstance(d, int) and d > 0:
                if explicit is not None and explicit[i] != d:
                    raise ConfigError(
                        f"{prefix}--shapes {spec.name}: axis {i} is fixed to {d} in the model; "
                        f"e.g. --shapes {shape_example(spec, axis=axes.get(spec.name))}"
                    )
                dims.append(d)
            elif i == axes.get(spec.name):
                dims.append(batch)
            elif explicit is not None:
                dims.append(int(explicit[i]))
            else:
                label = f" ({d!r})" if isinstance(d, str) and d else ""
                example = shape_example(spec, axis=axes.get(spec.name))
                raise UnknownShapeError(
                    f"{prefix}input {spec.name!r} axis {i}{label} is dynamic and no data or --shapes gives "
                    f'its size; pass --shapes {example} (in a [[stage]] table: shapes = ["{example}"]) '
                    "or real input data"
                )
        out[spec.name] = tuple(dims)
    return out


def shapes_known(specs: Sequence[TensorSpec], shapes: Sequence[str] | ShapeMap | None = None) -> bool:
    """Whether random inputs can be made for ``specs`` (every size fixed, batch, or in ``shapes``)."""
    try:
        feed_shapes(specs, 1, explicit_shapes(shapes))
    except UnknownShapeError:
        return False
    return True


def random_batches(
    specs: Sequence[TensorSpec],
    samples: int,
    batch_size: int,
    seed: int = 0,
    shapes: ShapeMap | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Seeded random feeds totalling ``samples`` samples (sizes: :func:`feed_shapes`).

    Unknown sizes are refused before the first feed (``UnknownShapeError``).
    """
    from trtforge.pipeline.backends.onnxruntime import random_feed

    feed_shapes(specs, 1, shapes)  # refuse now, not at the first batch
    static = FeedLayout.of(specs).static_batch()
    step = static or batch_size

    def batches() -> Iterator[dict[str, np.ndarray]]:
        done = 0
        index = 0
        while done < samples:
            n = step if static else min(step, samples - done)
            yield random_feed(specs, batch=n, seed=seed + index, shapes=shapes)
            done += n
            index += 1

    return batches()


def first_feed(
    specs: Sequence[TensorSpec],
    *,
    data: str | Path | None = None,
    shapes: ShapeMap | None = None,
    state: Sequence[str] = (),
    batch: int = 1,
    source: str = "",
) -> tuple[str, dict[str, np.ndarray]]:
    """One feed for a smoke run: (where from, feed). The first ``batch`` samples (or first step) of
    ``data`` with its real shapes; else random inputs of the sizes :func:`feed_shapes` knows."""
    if data is not None:
        feed = next(data_batches(data, specs, batch, state=state), None)
        if feed is None:
            raise InputError(f"{data}: holds no samples; pass a non-empty .npy/.npz, directory or list")
        return str(data), feed
    from trtforge.pipeline.backends.onnxruntime import random_feed

    return "random", random_feed(specs, batch=batch, seed=0, shapes=shapes, source=source)


# --- labels and counts -----------------------------------------------------------------------------


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
    double the I/O of a validation run, so this reads the ``.npy`` headers (also inside ``.npz``) of
    an input with a batch axis (each file is one sample where no input has one). Returns 0 when a
    header cannot be read (the data loader then reports the real problem).
    """
    if not specs:
        return 0
    axes = batch_axes(specs)
    batched = sorted((a, i, s.name) for i, s in enumerate(specs) if (a := axes[s.name]) is not None)
    total = 0
    try:
        files = [f for seq in data_sequences(path) for f in seq]
        for f in files:
            total += _batch_dim(f, batched[0][2], batched[0][0]) if batched else 1
    except (DataError, OSError, ValueError, KeyError, zipfile.BadZipFile):
        return 0
    return min(total, limit) if limit is not None else total


def _batch_dim(path: Path, name: str, axis: int) -> int:
    if path.suffix == ".npy":
        shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
    else:
        with zipfile.ZipFile(path) as zf, zf.open(f"{name}.npy") as member:
            version = np.lib.format.read_magic(member)
            fmt = np.lib.format
            reader = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _, _ = reader(member)
    return int(shape[axis]) if len(shape) > axis else 1


def ort_run_errors() -> tuple[type[BaseException], ...]:
    """ONNX Runtime's exception types for a failed run (they derive from Exception only)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    names = ("Fail", "InvalidArgument", "RuntimeException", "NotImplemented", "InvalidGraph", "EPFail")
    return tuple(getattr(state, n) for n in names if hasattr(state, n))
