"""Bad input through the real CLI: exit 2 (or 3), one line naming the file, no traceback,
no output file, input byte-for-byte unchanged. One case per item of the foundation issue's list."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.conftest import REPO, sha, tiny_mlp

DIGITS = REPO / "examples" / "digits"


def _truncated(tmp: Path) -> Path:
    good = tiny_mlp(tmp / "good.onnx")
    bad = tmp / "trunc.onnx"
    bad.write_bytes(good.read_bytes()[:200])
    return bad


def _checker_fails(tmp: Path) -> Path:
    m = onnx.load(str(tiny_mlp(tmp / "good.onnx")))
    m.graph.node[2].input[0] = "undefined_tensor"
    path = tmp / "broken.onnx"
    onnx.save(m, str(path))
    return path


def _data(tmp: Path, kind: str) -> Path:
    if kind == "shape":
        np.save(tmp / "d.npy", np.ones((4, 5), np.float32))
        return tmp / "d.npy"
    if kind == "dtype":
        np.save(tmp / "d.npy", np.array([["a"] * 4] * 2))
        return tmp / "d.npy"
    if kind == "nan":
        arr = np.ones((4, 4), np.float32)
        arr[1, 2] = np.inf
        np.save(tmp / "d.npy", arr)
        return tmp / "d.npy"
    (tmp / "empty").mkdir()
    return tmp / "empty"


# case -> builder(tmp) returning (argv, the path the message must name, the input whose bytes must not change)
CASES: dict[str, Callable[[Path], tuple[list[str], Path, Path | None]]] = {
    "missing file": lambda t: (
        ["fuse", str(t / "nope.onnx"), "-o", str(t / "out.onnx")],
        t / "nope.onnx",
        None,
    ),
    "not an onnx file": lambda t: (
        ["fuse", str(_write(t / "m.onnx", b"hello, not protobuf")), "-o", str(t / "out.onnx")],
        t / "m.onnx",
        t / "m.onnx",
    ),
    "truncated onnx": lambda t: (
        ["fuse", str(_truncated(t)), "-o", str(t / "out.onnx")],
        t / "trunc.onnx",
        t / "trunc.onnx",
    ),
    "fails the checker": lambda t: (
        ["fuse", str(_checker_fails(t)), "-o", str(t / "out.onnx")],
        t / "broken.onnx",
        t / "broken.onnx",
    ),
    "model is a directory": lambda t: (["fuse", str(t), "-o", str(t / "out.onnx")], t, None),
    "unknown module:factory": lambda t: (
        ["export", "no_such_pkg.models:build", "-o", str(t / "out.onnx"), "--input", "x:1x4"],
        Path("no_such_pkg.models:build"),
        None,
    ),
    "state_dict does not match": lambda t: (
        [
            "export",
            "examples.digits.model:build_model",
            "--weights",
            str(_bad_weights(t)),
            "-o",
            str(t / "out.onnx"),
            "--input",
            "x:1x1x8x8",
        ],
        t / "w.pt",
        t / "w.pt",
    ),
    "--input names a missing input": lambda t: (
        ["export", str(DIGITS / "model.pt2"), "--input", "images:1x1x8x8", "-o", str(t / "out.onnx")],
        Path("images"),
        DIGITS / "model.pt2",
    ),
    "data shape does not fit": lambda t: _validate(t, "shape"),
    "data dtype does not fit": lambda t: _validate(t, "dtype"),
    "NaN/Inf in data": lambda t: _validate(t, "nan"),
    "empty data directory": lambda t: _validate(t, "empty"),
    "output directory missing": lambda t: (
        ["fuse", str(tiny_mlp(t / "m.onnx")), "-o", str(t / "no" / "dir" / "out.onnx")],
        t / "no" / "dir",
        t / "m.onnx",
    ),
    "output directory read-only": lambda t: (
        ["fuse", str(tiny_mlp(t / "m.onnx")), "-o", "/proc/out.onnx"],
        Path("/proc"),
        t / "m.onnx",
    ),
    "config with an unknown key": lambda t: (
        ["run", str(_config(t, 'type = "fuse"\nfold_everything = true\n'))],
        t / "trtforge.toml",
        None,
    ),
    "config with an unknown stage": lambda t: (
        ["run", str(_config(t, 'type = "optimise"\n'))],
        t / "trtforge.toml",
        None,
    ),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _bad_weights(tmp: Path) -> Path:
    import torch

    torch.save({"not_a_layer.weight": torch.zeros(3)}, tmp / "w.pt")
    return tmp / "w.pt"


def _validate(tmp: Path, kind: str) -> tuple[list[str], Path, Path | None]:
    ref = tiny_mlp(tmp / "ref.onnx")
    data = _data(tmp, kind)
    return ["validate", str(ref), str(ref), "--data", str(data)], data, ref


def _config(tmp: Path, stage: str) -> Path:
    tiny_mlp(tmp / "m.onnx")
    cfg = tmp / "trtforge.toml"
    cfg.write_text(f'[pipeline]\nmodel = "m.onnx"\nworkdir = "w"\n\n[[stage]]\n{stage}')
    return cfg


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_exit_2_one_line_no_output(tmp_path: Path, case: str) -> None:
    argv, named, unchanged = CASES[case](tmp_path)
    before = sha(unchanged) if unchanged is not None and unchanged.is_file() else None
    listing = sorted(p.name for p in tmp_path.iterdir())
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", *argv], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2, (case, proc.returncode, proc.stderr[-2000:])
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("WARNING")]
    assert len(lines) == 1 and lines[0].startswith("trtforge: error: "), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert str(named).rstrip("/") in lines[0] or named.name in lines[0], lines[0]
    assert not (tmp_path / "out.onnx").exists() and not (tmp_path / "w").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == listing, "stray files written"
    if before is not None and unchanged is not None:
        assert sha(unchanged) == before


def test_missing_environment_exit_3(tmp_path: Path) -> None:
    if shutil.which("nvidia-smi") or os.environ.get("TRTFORGE_TEST_HAS_TRT"):
        pytest.skip("this machine may have a GPU and TensorRT; the exit-3 path needs them absent")
    model = tiny_mlp(tmp_path / "m.onnx")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "build",
            str(model),
            "-o",
            str(tmp_path / "m.engine"),
            "--target",
            "tensorrt",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 3 and "TensorRT" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "m.engine").exists()
