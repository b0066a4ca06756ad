"""Feeds from files: ``.npy`` (one input), ``.npz`` (keyed by input name), a directory or a list of them.

A *feed* is ``dict[input name, np.ndarray]`` holding one batch. Files are read lazily, one at a
time, so iterating a large directory keeps memory bounded.

Where the data may live (:func:`data_files`, :func:`data_sequences`):

* a ``.npy`` file (a one-input model) or an ``.npz`` keyed by model input name; extra arrays
  (e.g. ``labels``) are ignored by the feeds and can be read with :func:`load_extra`;
* a directory of them, in natural order (``step2`` before ``step10``), and the data files of its
  subdirectories (each subdirectory is one sequence for :func:`iter_steps`);
* a ``.txt`` list of such files, one path a line (relative to the list's folder; ``#`` comments).

How arrays map to model inputs (:class:`FeedLayout`):

* the *batch axis* of each input comes from the model's symbolic dimensions (:func:`batch_axes`):
  the axis whose ``dim_param`` is the model's batch dimension (``batch``, ``N``...), so the state
  ``[2, N, 128]`` of a recurrent model holds its samples on axis 1; samples are split and merged
  into batches along it (files merge only while every other size, and every input given once,
  agrees: files of different shapes are never re-batched together);
* an input without a batch axis (a scalar sample rate, a constant table) is *given once*: the
  array has the model input's full shape (a 0-d array for a scalar input) and goes with every
  batch cut from its file;
* a file whose inputs have no batch axis at all is one complete feed (one per sample or step).

Streaming models (:func:`iter_steps`): with state pairs declared (``IN:OUT``), each file is one
step of a sequence, and a step whose file lacks the state input ``IN`` gets the output ``OUT``
of the previous step (the first step of a sequence: zeros).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trtforge.calibration.errors import DataError
from trtforge.common.tensors import TensorSpec

DATA_SUFFIXES = (".npy", ".npz")
LIST_SUFFIXES = (".txt",)

Feed = dict[str, np.ndarray]
#: runs one step of a streaming model: a feed in, the model's outputs (at least the state outputs) out
StepFn = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]


# --- where the data is ---------------------------------------------------------------------------


def _natural(path: Path) -> list[tuple[int, int | str]]:
    return [(0, int(t)) if t.isdigit() else (1, t) for t in re.split(r"(\d+)", path.name)]


def _files_in(folder: Path) -> list[Path]:
    return sorted((f for f in folder.iterdir() if f.suffix in DATA_SUFFIXES and f.is_file()), key=_natural)


def data_sequences(path: str | Path) -> list[list[Path]]:
    """The data files behind ``path`` grouped in sequences: a directory's own files form one, each
    subdirectory holding data files another; a file or a ``.txt`` list is one. Errors name the path."""
    p = Path(path)
    if not p.exists():
        raise DataError(
            f"{p}: data path does not exist; pass a .npy, .npz, a directory or a .txt list of them"
        )
    if p.is_dir():
        top = _files_in(p)
        subdirs = sorted((d for d in p.iterdir() if d.is_dir()), key=_natural)
        sequences = ([top] if top else []) + [seq for d in subdirs if (seq := _files_in(d))]
        if not sequences:
            raise DataError(f"{p}: directory holds no .npy or .npz files; put data files there")
        return sequences
    if p.suffix in LIST_SUFFIXES:
        return [_listed(p)]
    if p.suffix not in DATA_SUFFIXES:
        raise DataError(f"{p}: unsupported data file type {p.suffix!r}; use .npy, .npz or a .txt list")
    return [[p]]


def _listed(path: Path) -> list[Path]:
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(
            f"{path}: cannot read the data list ({exc}); write one .npy/.npz path a line"
        ) from exc
    files = []
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        f = Path(text) if Path(text).is_absolute() else path.parent / text
        if f.suffix not in DATA_SUFFIXES or not f.is_file():
            raise DataError(f"{path}: line {number}: {text!r} is not a .npy or .npz file; fix the list")
        files.append(f)
    if not files:
        raise DataError(f"{path}: the data list names no files; write one .npy/.npz path a line")
    return files


def data_files(path: str | Path) -> list[Path]:
    """The data files behind ``path`` (a file, a directory or a ``.txt`` list), in order."""
    return [f for seq in data_sequences(path) for f in seq]


# --- which axis holds the samples ----------------------------------------------------------------


def _looks_like_batch(name: str) -> bool:
    low = name.lower()
    return low in ("n", "b", "bs", "nb") or "batch" in low


def batch_dim(specs: Sequence[TensorSpec]) -> str | None:
    """The model's batch dimension: a conventional name (``batch``, ``batch_size``, ``N``, ``B``)
    used by any input, else the symbolic dimension most inputs start with; None when there is none."""
    for spec in specs:
        for d in spec.shape:
            if isinstance(d, str) and d and _looks_like_batch(d):
                return d
    firsts = [s.shape[0] for s in specs if s.shape and isinstance(s.shape[0], str) and s.shape[0]]
    return max(firsts, key=firsts.count) if firsts else None


def batch_axes(specs: Sequence[TensorSpec]) -> dict[str, int | None]:
    """The batch axis of each input (None: the input has none and is given once).

    The axis whose ``dim_param`` is :func:`batch_dim` (axis 1 of a state ``[2, N, 128]``); an input
    without it has no batch axis unless its first dimension is unknown. Without any named batch
    dimension: where some input's first dimension is unknown (exports that leave dynamic dims
    unnamed, like ``input [?, ?]`` beside ``state [2, ?, 128]``), an input with a fixed first size
    and exactly one unknown dimension holds its samples there (axis 1 of that state); otherwise
    (static models) axis 0 of every input of rank >= 1, as data has always had it.
    """
    name = batch_dim(specs)
    out: dict[str, int | None] = {}
    unnamed_batch = name is None and any(s.shape and s.shape[0] is None for s in specs)
    for spec in specs:
        if name is None:
            unknown = [i for i, d in enumerate(spec.shape) if d is None or d == ""]
            if unnamed_batch and spec.shape and spec.shape[0] is not None and len(unknown) == 1:
                out[spec.name] = unknown[0]
            else:
                out[spec.name] = 0 if spec.shape else None
            continue
        axis = next((i for i, d in enumerate(spec.shape) if d == name), None)
        if axis is None and spec.shape and spec.shape[0] is None:
            axis = 0
        out[spec.name] = axis
    return out


@dataclass(frozen=True)
class FeedLayout:
    """The inputs of a model and the axis each holds its samples on (:func:`batch_axes`)."""

    specs: tuple[TensorSpec, ...]
    axes: Mapping[str, int | None]

    @classmethod
    def of(cls, specs: Sequence[TensorSpec]) -> FeedLayout:
        return cls(tuple(specs), batch_axes(specs))

    @property
    def batched(self) -> bool:
        """Whether any input has a batch axis (else every file is one complete feed)."""
        return any(a is not None for a in self.axes.values())

    def static_batch(self) -> int | None:
        """The batch size the model fixes on a batch axis (the smallest, if several), else None."""
        sizes = set()
        for s in self.specs:
            axis = self.axes.get(s.name)
            if axis is not None and axis < len(s.shape):
                d = s.shape[axis]
                if isinstance(d, int) and d > 0:
                    sizes.add(d)
        return min(sizes) if sizes else None

    def samples(self, feed: Mapping[str, np.ndarray], source: str | Path) -> int:
        """Samples in ``feed``: the size of every batch axis (they must agree); 1 when none has one."""
        counts: dict[str, tuple[int, int]] = {}
        for name, arr in feed.items():
            axis = self.axes.get(name)
            if axis is not None and arr.ndim > axis:
                counts[name] = (int(arr.shape[axis]), axis)
        if not counts:
            return 1
        sizes = {n for n, _ in counts.values()}
        if len(sizes) != 1:
            got = ", ".join(f"{k!r} {n} (axis {a})" for k, (n, a) in counts.items())
            raise DataError(
                f"{source}: inputs disagree on the number of samples along their batch axes: {got}; "
                "align them (an input given once has the model's full shape, without a sample axis)"
            )
        return sizes.pop()

    def take(self, feed: Mapping[str, np.ndarray], start: int, stop: int) -> Feed:
        """Samples ``start:stop`` of ``feed`` (inputs given once come whole)."""
        out: Feed = {}
        for name, arr in feed.items():
            axis = self.axes.get(name)
            if axis is None or arr.ndim <= axis:
                out[name] = arr
            else:
                index = [slice(None)] * arr.ndim
                index[axis] = slice(start, stop)
                out[name] = np.ascontiguousarray(arr[tuple(index)])  # a slice off axis 0 is strided
        return out

    def mergeable(self, a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> bool:
        """Whether ``b``'s samples may join ``a``'s in one batch: same sizes off the batch axes, same
        dtypes, and equal inputs given once."""
        if a.keys() != b.keys():
            return False
        for name, x in a.items():
            y = b[name]
            axis = self.axes.get(name)
            if x.dtype != y.dtype or x.ndim != y.ndim:
                return False
            if axis is None or x.ndim <= axis:
                if x.shape != y.shape or not np.array_equal(x, y):
                    return False
            elif x.shape[:axis] + x.shape[axis + 1 :] != y.shape[:axis] + y.shape[axis + 1 :]:
                return False
        return True

    def concat(self, parts: Sequence[Mapping[str, np.ndarray]]) -> Feed:
        """One feed of the samples of ``parts`` (mergeable), in order."""
        if len(parts) == 1:
            return dict(parts[0])
        out: Feed = {}
        for name, first in parts[0].items():
            axis = self.axes.get(name)
            if axis is None or first.ndim <= axis:
                out[name] = first
            else:
                out[name] = np.concatenate([p[name] for p in parts], axis=axis)
        return out

    def ordered(self, feed: Mapping[str, np.ndarray]) -> Feed:
        """``feed`` with an input whose samples are on axis 0 first (counters read the first array)."""
        first = [n for n in feed if self.axes.get(n) == 0 and feed[n].ndim > 0]
        return {**{n: feed[n] for n in first}, **{n: v for n, v in feed.items() if n not in first}}


# --- reading and checking -----------------------------------------------------------------------


def _read_file(path: Path, specs: Sequence[TensorSpec], optional: Iterable[str] = ()) -> Feed:
    """The arrays of ``specs`` in ``path``; inputs named in ``optional`` may be missing."""
    maybe = set(optional)
    needed = [s for s in specs if s.name not in maybe]
    try:
        if path.suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
            if len(needed) != 1:
                names = ", ".join(repr(s.name) for s in specs)
                raise DataError(
                    f"{path}: a .npy file feeds a single input but the model has {len(specs)} ({names}); "
                    "use an .npz keyed by input name"
                )
            return {needed[0].name: arr}
        with np.load(path, allow_pickle=False) as npz:
            missing = [s.name for s in needed if s.name not in npz.files]
            if missing:
                axis = batch_axes(specs).get(missing[0])
                state = " (a recurrent state fed by the step before? --state IN:OUT)" if axis else ""
                raise DataError(
                    f"{path}: no array for input {missing[0]!r}; arrays in the file: "
                    f"{', '.join(repr(k) for k in npz.files) or 'none'}; "
                    f"key arrays by model input name{state}"
                )
            return {s.name: npz[s.name] for s in specs if s.name in npz.files}
    except DataError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: cannot read data file ({exc}); re-save it with numpy.save/savez") from exc


def check_feed(
    feed: Mapping[str, np.ndarray],
    specs: Sequence[TensorSpec],
    source: str,
    layout: FeedLayout | None = None,
) -> None:
    """Raise ``DataError`` naming ``source`` when the feed does not fit the specs or is not finite.

    A batch axis the model fixes to 1 may hold more samples (batches are cut to the model's size).
    """
    axes = (layout or FeedLayout.of(specs)).axes
    for spec in specs:
        arr = feed[spec.name]
        want_dtype = np.dtype(spec.dtype)
        if arr.dtype != want_dtype and not np.can_cast(arr.dtype, want_dtype, casting="same_kind"):
            raise DataError(
                f"{source}: input {spec.name!r} has dtype {arr.dtype}, the model wants {spec.dtype}; "
                f"convert the data with .astype('{spec.dtype}')"
            )
        if arr.ndim != len(spec.shape):
            given_once = "" if axes.get(spec.name) is not None else " (given once: its full shape)"
            raise DataError(
                f"{source}: input {spec.name!r} has shape {tuple(arr.shape)}, the model wants rank "
                f"{len(spec.shape)} {_fmt_shape(spec.shape)}{given_once}; reshape the data"
            )
        batch = axes.get(spec.name)
        for axis, (got, want) in enumerate(zip(arr.shape, spec.shape, strict=True)):
            if isinstance(want, int) and want > 0 and got != want and not (axis == batch and want == 1):
                raise DataError(
                    f"{source}: input {spec.name!r} has shape {tuple(arr.shape)}, the model wants "
                    f"{_fmt_shape(spec.shape)} (axis {axis}: {got} != {want}); reshape the data"
                )
        if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
            raise DataError(f"{source}: input {spec.name!r} contains NaN or Inf; clean the data")


def _fmt_shape(shape: Sequence[int | str | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _cast(feed: Mapping[str, np.ndarray], specs: Sequence[TensorSpec]) -> Feed:
    return {s.name: np.asarray(feed[s.name], dtype=np.dtype(s.dtype), order="C") for s in specs}


def _file_feeds(
    path: str | Path, specs: Sequence[TensorSpec], layout: FeedLayout
) -> Iterator[tuple[Path, Feed]]:
    for f in data_files(path):
        feed = _read_file(f, specs)
        check_feed(feed, specs, str(f), layout)
        yield f, _cast(feed, specs)


def iter_feeds(path: str | Path, specs: Sequence[TensorSpec]) -> Iterator[Feed]:
    """Yield one checked feed per data file (all samples of that file), cast to the model dtypes."""
    layout = FeedLayout.of(specs)
    for _, feed in _file_feeds(path, specs, layout):
        yield layout.ordered(feed)


def iter_batches(
    path: str | Path, specs: Sequence[TensorSpec], batch_size: int, limit: int | None = None
) -> Iterator[Feed]:
    """Yield feeds of ``batch_size`` samples (the last may be smaller), at most ``limit`` samples.

    Samples are cut along each input's batch axis; consecutive files join a batch while their other
    sizes and their inputs given once agree. A static batch dimension in the model (e.g. 1) wins
    over ``batch_size``.
    """
    if batch_size < 1:
        raise DataError(f"batch size must be >= 1, got {batch_size}")
    layout = FeedLayout.of(specs)
    return rebatch(_file_feeds(path, specs, layout), layout, layout.static_batch() or batch_size, limit)


def rebatch(
    feeds: Iterable[tuple[str | Path, Mapping[str, np.ndarray]]],
    layout: FeedLayout,
    batch_size: int,
    limit: int | None = None,
) -> Iterator[Feed]:
    """Batches of ``batch_size`` samples from ``(source, feed)`` pairs (see :func:`iter_batches`)."""
    pending: list[Mapping[str, np.ndarray]] = []
    count = seen = 0
    for source, feed in feeds:
        if limit is not None and seen + count >= limit:
            break
        if not layout.batched:  # every file is one complete feed
            yield layout.ordered(feed)
            seen += 1
            continue
        n = layout.samples(feed, source)
        if pending and not layout.mergeable(pending[0], feed):
            yield layout.ordered(layout.concat(pending))
            seen, pending, count = seen + count, [], 0
        start = 0
        while start < n:
            room = batch_size - count
            if limit is not None:
                room = min(room, limit - seen - count)
            if room <= 0:
                break
            stop = min(n, start + room)
            pending.append(layout.take(feed, start, stop))
            count += stop - start
            start = stop
            if count >= batch_size or (limit is not None and seen + count >= limit):
                yield layout.ordered(layout.concat(pending))
                seen, pending, count = seen + count, [], 0
    if pending:
        yield layout.ordered(layout.concat(pending))


# --- streaming models: state carried from step to step ---------------------------------------------


@dataclass(frozen=True)
class StatePair:
    """A state input fed, from the second step of a sequence on, by a model output of the step before."""

    input: str
    output: str

    def __str__(self) -> str:
        return f"{self.input}:{self.output}"


def parse_state(texts: Sequence[str], specs: Sequence[TensorSpec]) -> tuple[StatePair, ...]:
    """``IN:OUT`` texts as pairs; ``IN`` must be a model input (names may hold ':', e.g. ``h:0:hn:0``)."""
    names = [s.name for s in specs]
    pairs: list[StatePair] = []
    for text in texts:
        cuts = [i for i, c in enumerate(text) if c == ":"]
        found = next(
            (StatePair(text[:i], text[i + 1 :]) for i in cuts if text[:i] in names and text[i + 1 :]), None
        )
        if found is None:
            left = text[: cuts[0]] if cuts else text
            why = "expected IN:OUT, e.g. state:stateN" if not cuts else f"{left!r} is not a model input"
            raise DataError(
                f"state {text!r}: {why}; model inputs are: {', '.join(map(repr, names)) or 'none'}"
            )
        if any(p.input == found.input for p in pairs):
            raise DataError(f"state {text!r}: input {found.input!r} is declared twice; declare it once")
        pairs.append(found)
    return tuple(pairs)


def _initial_state(spec: TensorSpec, axis: int | None, samples: int, source: Path) -> np.ndarray:
    shape = []
    for i, d in enumerate(spec.shape):
        if isinstance(d, int) and d > 0:
            shape.append(d)
        elif i == axis:
            shape.append(samples)
        else:
            raise DataError(
                f"{source}: no array for state input {spec.name!r} and its axis {i} ({d or '?'}) is dynamic; "
                "put the initial state in the first step file of the sequence"
            )
    return np.zeros(shape, dtype=np.dtype(spec.dtype))


def iter_steps(
    path: str | Path,
    specs: Sequence[TensorSpec],
    pairs: Sequence[StatePair],
    step: StepFn | None,
    limit: int | None = None,
) -> Iterator[Feed]:
    """Yield one checked feed per step file of each sequence (:func:`data_sequences`), in order.

    A file that holds a state input starts from it; one that lacks it gets the paired output of the
    previous step (``step(feed)`` runs the model on each step's feed) or, on a sequence's first step,
    zeros. Files are fed whole (the state ties a step's samples together); ``limit`` caps samples.
    """
    layout = FeedLayout.of(specs)
    by_name = {s.name: s for s in specs}
    optional = [p.input for p in pairs]
    seen = 0
    for sequence in data_sequences(path):
        previous: Mapping[str, np.ndarray] | None = None
        for f in sequence:
            if limit is not None and seen >= limit:
                return
            feed = _read_file(f, specs, optional)
            for pair in pairs:
                if pair.input in feed:
                    continue
                if previous is None:
                    n = layout.samples(feed, f)
                    feed[pair.input] = _initial_state(by_name[pair.input], layout.axes[pair.input], n, f)
                elif step is None:
                    raise DataError(
                        f"{f}: no array for state input {pair.input!r} and no model runs the steps to carry "
                        "it; put the state in every step file"
                    )
                elif pair.output not in previous:
                    raise DataError(
                        f"{f}: the previous step gave no output {pair.output!r} for state input "
                        f"{pair.input!r}; outputs: {', '.join(map(repr, previous)) or 'none'}"
                    )
                else:
                    feed[pair.input] = np.asarray(previous[pair.output])
            check_feed(feed, specs, str(f), layout)
            feed = _cast(feed, specs)
            n = layout.samples(feed, f)
            if limit is not None and seen + n > limit:
                feed, n = layout.take(feed, 0, limit - seen), limit - seen
            yield layout.ordered(feed)
            seen += n
            previous = step(feed) if step is not None else {}


# --- counting and extras --------------------------------------------------------------------------


def count_samples(path: str | Path, specs: Sequence[TensorSpec]) -> int:
    """Number of samples behind ``path`` (reads each file once)."""
    layout = FeedLayout.of(specs)
    return sum(layout.samples(feed, f) for f, feed in _file_feeds(path, specs, layout))


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
