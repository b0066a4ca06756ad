"""Data layouts real models need: batch axes from symbolic dims, inputs given once, directories and
lists of complete feeds with their own shapes, sequences whose state is carried from step to step."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from trtforge.calibration.data import (
    FeedLayout,
    batch_axes,
    count_samples,
    data_files,
    iter_batches,
    iter_steps,
    parse_state,
)
from trtforge.calibration.errors import DataError
from trtforge.calibration.sources import open_batches
from trtforge.common.tensors import TensorSpec
from trtforge.pipeline.errors import ConfigError
from trtforge.pipeline.validation.feeds import (
    UnknownShapeError,
    explicit_shapes,
    feed_shapes,
    random_batches,
    sample_total,
)

#: a streaming model's inputs: a frame, a recurrent state [layers, batch, hidden], a scalar rate
STREAM = [
    TensorSpec("x", "float32", ("N", 4)),
    TensorSpec("state", "float32", (2, "N", 8)),
    TensorSpec("sr", "int64", ()),
]


def test_batch_axis_comes_from_the_symbolic_batch_dim() -> None:
    assert batch_axes(STREAM) == {"x": 0, "state": 1, "sr": None}
    # sequence-first layout: the conventional name wins over the dim most inputs start with
    seq = [
        TensorSpec("tokens", "int64", ("T", "batch")),
        TensorSpec("h", "float32", ("T", "batch", 16)),
        TensorSpec("table", "float32", (10, 4)),
    ]
    assert batch_axes(seq) == {"tokens": 1, "h": 1, "table": None}
    # no symbolic dims at all (static models): axis 0, as data always had it
    assert batch_axes([TensorSpec("x", "float32", (1, 3, 8, 8))]) == {"x": 0}
    assert FeedLayout.of(STREAM).static_batch() is None  # the state's fixed 2 is not a batch size


def test_unnamed_dynamic_dims_still_find_the_state_batch_axis() -> None:
    # exports that leave every dynamic dim unnamed: input [?, ?], state [2, ?, 128], a scalar rate
    unnamed = [
        TensorSpec("input", "float32", (None, None)),
        TensorSpec("state", "float32", (2, None, 128)),
        TensorSpec("sr", "int64", ()),
    ]
    assert batch_axes(unnamed) == {"input": 0, "state": 1, "sr": None}
    assert FeedLayout.of(unnamed).static_batch() is None  # no "static batch size 2" from the state
    # a static batch with one unknown size is not a batch axis there: [1, ?] keeps its samples on 0
    assert batch_axes([TensorSpec("tokens", "int64", (1, None))]) == {"tokens": 0}
    assert batch_axes(
        [TensorSpec("a", "float32", (1, 3, None, None)), TensorSpec("b", "float32", (None, 4))]
    ) == {
        "a": 0,
        "b": 0,
    }
    with pytest.raises(UnknownShapeError, match=r"--shapes input:1x640"):
        feed_shapes(unnamed)
    assert feed_shapes(unnamed, batch=3, shapes={"input": (3, 576)}) == {
        "input": (3, 576),
        "state": (2, 3, 128),
        "sr": (),
    }


def test_samples_are_cut_on_each_inputs_batch_axis_and_inputs_given_once_go_with_every_batch(
    tmp_path: Path,
) -> None:
    n = 10
    state = np.stack([np.tile(np.arange(n, dtype=np.float32)[:, None], (1, 8))] * 2)  # [2, 10, 8]
    x = np.arange(n * 4, dtype=np.float32).reshape(n, 4)
    np.savez(tmp_path / "d.npz", x=x, state=state, sr=np.array(16000, np.int64))
    batches = list(iter_batches(tmp_path / "d.npz", STREAM, 4))
    assert [b["state"].shape for b in batches] == [(2, 4, 8), (2, 4, 8), (2, 2, 8)]
    assert [b["x"].shape[0] for b in batches] == [4, 4, 2]
    assert batches[1]["state"][0, :, 0].tolist() == [4.0, 5.0, 6.0, 7.0]  # samples 4..7 on axis 1
    assert all(b["sr"].shape == () and int(b["sr"]) == 16000 for b in batches)
    assert next(iter(batches[0])) == "x"  # counters read the first array: it has the samples on axis 0
    assert count_samples(tmp_path / "d.npz", STREAM) == n
    assert sample_total(tmp_path / "d.npz", STREAM) == n
    assert sum(b["x"].shape[0] for b in iter_batches(tmp_path / "d.npz", STREAM, 4, limit=5)) == 5


def test_a_directory_of_complete_feeds_keeps_each_files_shape(tmp_path: Path) -> None:
    spec = [TensorSpec("image", "float32", ("batch", 3, "H", "W"))]
    sizes = {"frame2.npz": (32, 32), "frame10.npz": (48, 40), "frame11.npz": (48, 40), "frame3.npz": (16, 24)}
    for name, (h, w) in sizes.items():
        np.savez(tmp_path / name, image=np.ones((1, 3, h, w), np.float32))
    assert [f.name for f in data_files(tmp_path)] == [
        "frame2.npz",
        "frame3.npz",
        "frame10.npz",
        "frame11.npz",
    ]
    batches = list(iter_batches(tmp_path, spec, 8))
    # never re-batched across different shapes; consecutive files of one shape share a batch
    assert [b["image"].shape for b in batches] == [(1, 3, 32, 32), (1, 3, 16, 24), (2, 3, 48, 40)]
    listed = tmp_path / "val.txt"
    listed.write_text("# the two big frames\nframe11.npz\n\nframe10.npz\n")
    assert [b["image"].shape for b in iter_batches(listed, spec, 1)] == [(1, 3, 48, 40)] * 2


def test_files_without_any_batch_axis_are_one_feed_each(tmp_path: Path) -> None:
    spec = [TensorSpec("gain", "float32", ()), TensorSpec("sr", "int64", ())]
    for i, gain in enumerate((0.5, 2.0, 4.0)):
        np.savez(tmp_path / f"clip{i}.npz", gain=np.float32(gain), sr=np.array(8000, np.int64))
    feeds = list(open_batches(tmp_path, spec, 32, limit=2))
    assert [float(f["gain"]) for f in feeds] == [0.5, 2.0] and all(f["sr"].shape == () for f in feeds)
    # a static-batch model takes per-sample files of their own sizes, one at a time
    frames = [TensorSpec("frame", "float32", (1, "T"))]
    for i, t in enumerate((100, 160)):
        np.savez(tmp_path / f"frame{i}.npz", frame=np.zeros((1, t), np.float32))
    listed = tmp_path / "frames.txt"
    listed.write_text("frame0.npz\nframe1.npz\n")
    assert [f["frame"].shape for f in open_batches(listed, frames, 32)] == [(1, 100), (1, 160)]


def test_steps_carry_the_state_and_a_file_holding_it_starts_afresh(tmp_path: Path) -> None:
    seq = tmp_path / "seq"
    seq.mkdir()
    for i in range(4):
        np.savez(seq / f"step{i}.npz", x=np.full((1, 4), i, np.float32), sr=np.array(16000, np.int64))
    restart = np.full((2, 1, 8), 100.0, np.float32)
    np.savez(seq / "step4.npz", x=np.ones((1, 4), np.float32), sr=np.array(16000, np.int64), state=restart)
    np.savez(seq / "step5.npz", x=np.ones((1, 4), np.float32), sr=np.array(16000, np.int64))
    ran: list[float] = []

    def step(feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        ran.append(float(feed["x"][0, 0]))
        return {"stateN": feed["state"] + 1.0}

    pairs = parse_state(["state:stateN"], STREAM)
    feeds = list(iter_steps(seq, STREAM, pairs, step))
    assert [float(f["state"][0, 0, 0]) for f in feeds] == [0.0, 1.0, 2.0, 3.0, 100.0, 101.0]
    assert ran == [0.0, 1.0, 2.0, 3.0, 1.0, 1.0]
    # two subdirectories are two sequences: the second starts from zeros again
    other = tmp_path / "seq2"
    other.mkdir()
    np.savez(other / "step0.npz", x=np.ones((1, 4), np.float32), sr=np.array(16000, np.int64))
    both = list(iter_steps(tmp_path, STREAM, pairs, step, limit=7))
    assert [float(f["state"][0, 0, 0]) for f in both][-1] == 0.0 and len(both) == 7


def test_state_errors_name_the_file_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"'hidden' is not a model input; model inputs are: 'x', 'state'"):
        parse_state(["hidden:stateN"], STREAM)
    with pytest.raises(DataError, match="expected IN:OUT"):
        parse_state(["state"], STREAM)
    assert str(parse_state(["h:0:hn:0"], [TensorSpec("h:0", "float32", (1,))])[0]) == "h:0:hn:0"
    np.savez(tmp_path / "a.npz", x=np.ones((1, 4), np.float32), sr=np.array(1, np.int64))
    with pytest.raises(DataError, match=r"a\.npz: no array for input 'state'.*--state IN:OUT"):
        list(iter_batches(tmp_path / "a.npz", STREAM, 1))
    dyn = [TensorSpec("x", "float32", ("N", 4)), TensorSpec("h", "float32", ("L", "N", 8))]
    with pytest.raises(DataError, match=r"a\.npz: no array for state input 'h' and its axis 0 \(L\)"):
        list(iter_steps(tmp_path / "a.npz", dyn, parse_state(["h:hn"], dyn), None))
    np.savez(tmp_path / "b.npz", x=np.ones((3, 4), np.float32), state=np.ones((2, 2, 8), np.float32), sr=1)
    with pytest.raises(DataError, match=r"b\.npz: inputs disagree.*'x' 3 \(axis 0\), 'state' 2 \(axis 1\)"):
        list(iter_batches(tmp_path / "b.npz", STREAM, 4))


def test_random_inputs_never_invent_a_size() -> None:
    det = [TensorSpec("x", "float32", ("batch", 3, "H", "W"))]
    with pytest.raises(UnknownShapeError) as err:
        feed_shapes(det, 1)
    text = str(err.value)
    assert "input 'x' axis 2 ('H') is dynamic" in text and "--shapes x:1x3x640x640" in text
    shapes = explicit_shapes(["x:1x3x64x48"])
    assert feed_shapes(det, 2, shapes) == {"x": (2, 3, 64, 48)}  # the batch axis takes the batch
    assert explicit_shapes(["x:1x3x8x8,4x3x16x16,8x3x32x32"]) == {"x": (4, 3, 16, 16)}  # OPT
    assert feed_shapes(STREAM, 3) == {"x": (3, 4), "state": (2, 3, 8), "sr": ()}
    with pytest.raises(ConfigError, match="axis 1 is fixed to 3"):
        feed_shapes(det, 1, explicit_shapes(["x:1x4x8x8"]))
    with pytest.raises(ConfigError, match="input 'y' not found"):
        feed_shapes(det, 1, explicit_shapes(["y:1x3x8x8"]))
    with pytest.raises(UnknownShapeError):
        random_batches(det, 4, 2)  # refused up front, not at the first batch
    feeds = list(random_batches(STREAM, 5, 2))
    assert [f["state"].shape for f in feeds] == [(2, 2, 8), (2, 2, 8), (2, 1, 8)]
