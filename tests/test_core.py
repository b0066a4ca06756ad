"""Core: strict configs, atomic writes, workspace staging, ONNX loading errors, data checks."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import sha, tiny_mlp
from trtforge.calibration.data import count_samples, iter_batches, load_extra
from trtforge.calibration.errors import DataError
from trtforge.common.tensors import TensorSpec
from trtforge.pipeline.config import from_dict
from trtforge.pipeline.errors import ConfigError, InputError
from trtforge.pipeline.onnx_io import atomic_path, check_output_path, load_onnx
from trtforge.pipeline.workspace import Workspace


@dataclass(frozen=True)
class _Cfg:
    atol: float = 1e-4
    name: str = "x"
    sizes: tuple[int, ...] = ()


def test_from_dict_strict_names_key_and_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'atl'; valid keys are: atol, name, sizes"):
        from_dict(_Cfg, {"atl": 1}, "cfg")
    cfg = from_dict(_Cfg, {"atol": 1, "sizes": [1, 2]}, "cfg")
    assert cfg.atol == 1.0 and isinstance(cfg.atol, float) and cfg.sizes == (1, 2)
    with pytest.raises(ConfigError, match="expected str"):
        from_dict(_Cfg, {"name": 3}, "cfg")


def test_atomic_path_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_workspace_staging_is_atomic(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "w")
    ws.ensure()
    with pytest.raises(KeyboardInterrupt), ws.staging(1, "fuse") as d:
        (d / "model.onnx").write_bytes(b"partial")
        raise KeyboardInterrupt
    assert not ws.stage_dir(1, "fuse").exists()
    assert [p.name for p in ws.root.iterdir()] == []
    with ws.staging(1, "fuse") as d:
        (d / "model.onnx").write_bytes(b"done")
    assert (ws.stage_dir(1, "fuse") / "model.onnx").read_bytes() == b"done"


@pytest.mark.parametrize("kind", ["missing", "dir", "text", "truncated", "checker"])
def test_load_onnx_bad_inputs(tmp_path: Path, kind: str) -> None:
    good = tiny_mlp(tmp_path / "good.onnx")
    path = tmp_path / "bad.onnx"
    if kind == "dir":
        path.mkdir()
    elif kind == "text":
        path.write_text("this is not a model\n")
    elif kind == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif kind == "checker":
        import onnx

        m = onnx.load(str(good))
        m.graph.node[1].input[0] = "nowhere"
        onnx.save(m, str(path))
    before = sha(path) if path.is_file() else None
    with pytest.raises(InputError) as err:
        load_onnx(path)
    msg = str(err.value)
    assert str(path) in msg and "\n" not in msg
    if before:
        assert sha(path) == before


def test_check_output_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        check_output_path(tmp_path / "nope" / "m.onnx")
    if Path("/proc/self").is_dir():  # a directory nobody, root included, can create files in
        with pytest.raises(InputError, match="cannot write in /proc"):
            check_output_path(Path("/proc/m.onnx"))
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    try:
        if os.access(ro, os.W_OK):  # root ignores permissions
            pytest.skip("running as a user that can write read-only directories (root)")
        with pytest.raises(InputError, match="not writable"):
            check_output_path(ro / "m.onnx")
    finally:
        os.chmod(ro, 0o700)


def _specs() -> list[TensorSpec]:
    return [TensorSpec("x", "float32", ("N", 4))]


def test_data_batches_and_labels(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.ones((10, 4), np.float32), labels=np.arange(10))
    batches = list(iter_batches(tmp_path / "d.npz", _specs(), batch_size=4))
    assert [b["x"].shape[0] for b in batches] == [4, 4, 2]
    assert count_samples(tmp_path / "d.npz", _specs()) == 10
    assert list(load_extra(tmp_path / "d.npz", "labels")) == list(range(10))  # type: ignore[arg-type]
    assert sum(b["x"].shape[0] for b in iter_batches(tmp_path / "d.npz", _specs(), 4, limit=5)) == 5


@pytest.mark.parametrize(
    "case,match",
    [
        ("shape", "axis 1: 5 != 4"),
        ("nan", "NaN or Inf"),
        ("empty", "no .npy or .npz"),
        ("key", "no array for input"),
        ("dtype", "dtype"),
    ],
)
def test_data_errors_name_the_file(tmp_path: Path, case: str, match: str) -> None:
    path = tmp_path / "d.npz"
    if case == "shape":
        np.savez(path, x=np.ones((2, 5), np.float32))
    elif case == "nan":
        np.savez(path, x=np.full((2, 4), np.nan, np.float32))
    elif case == "empty":
        path = tmp_path / "empty"
        path.mkdir()
    elif case == "key":
        np.savez(path, y=np.ones((2, 4), np.float32))
    elif case == "dtype":
        np.savez(path, x=np.array([["a"] * 4], dtype=str))
    with pytest.raises(DataError, match=match) as err:
        list(iter_batches(path, _specs(), 2))
    assert str(path) in str(err.value)
