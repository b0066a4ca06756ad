"""SIGINT mid-stage: no half-written stage folder; the next run resumes after the last finished stage."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO, tiny_mlp

LAUNCH = "import sys, tests.cli._sleepy_stage; from trtforge.pipeline.cli import main; main(sys.argv[1:])"


def _config(tmp: Path, sleep_s: float) -> Path:
    tiny_mlp(tmp / "m.onnx")
    cfg = tmp / "trtforge.toml"
    cfg.write_text(
        '[pipeline]\nmodel = "m.onnx"\nworkdir = "w"\n\n[[stage]]\ntype = "fuse"\n\n'
        f'[[stage]]\ntype = "sleepy_for_test"\nsleep_s = {sleep_s}\n'
    )
    return cfg


def _run(cfg: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", LAUNCH, "run", str(cfg), *extra],
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_sigint_mid_stage_leaves_no_partial_and_resumes(tmp_path: Path) -> None:
    work = tmp_path / "w"
    proc = _run(_config(tmp_path, 60.0))
    deadline = time.monotonic() + 120
    while not list(work.glob(".02-sleepy_for_test.staging-*/ready")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "stage 2 never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
    assert sorted(p.name for p in work.iterdir()) == ["01-fuse"]  # no 02-*, no staging leftovers
    resumed = _run(_config(tmp_path, 0.0), "--json", "-q")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    report = json.loads(out)
    assert [s["cached"] for s in report["stages"]] == [True, False]
    assert (work / "02-sleepy_for_test" / "model.onnx").read_bytes() == (tmp_path / "m.onnx").read_bytes()
