"""The run directory: one ``NN-<stage>/`` folder per stage, written atomically.

A stage writes into a hidden staging directory; only when it finished is the staging
directory renamed to ``NN-<stage>/``. An interrupted run therefore leaves no half-written
stage folder, and the next run resumes after the last finished stage.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from trtforge.pipeline.errors import InputError

STAGE_RECORD = "stage.json"


class Workspace:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def ensure(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(
                f"{self.root}: cannot create work directory ({exc.strerror}); choose another -w"
            ) from exc
        if not os.access(self.root, os.W_OK):
            raise InputError(f"{self.root}: work directory is not writable; choose another -w")
        for stale in self.root.glob(".*.staging-*"):
            shutil.rmtree(stale, ignore_errors=True)

    def stage_dir(self, index: int, name: str) -> Path:
        return self.root / f"{index:02d}-{name}"

    def record(self, index: int, name: str) -> dict[str, Any] | None:
        return self.read_record(self.stage_dir(index, name))

    @staticmethod
    def read_record(stage_dir: Path) -> dict[str, Any] | None:
        """The ``stage.json`` of a stage folder, or None when missing or unreadable."""
        path = stage_dir / STAGE_RECORD
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    @contextmanager
    def staging(self, index: int, name: str) -> Iterator[Path]:
        """Yield a fresh staging dir; on success it replaces ``NN-<name>/``, on failure it is removed."""
        final = self.stage_dir(index, name)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.staging-", dir=self.root))
        try:
            yield tmp
            if final.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=self.root))
                os.replace(final, old / "x")
                shutil.rmtree(old, ignore_errors=True)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def is_inside(path: Path, root: Path) -> bool:
    """True when ``path`` lies under ``root`` (both resolved)."""
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def write_json_atomic(path: str | Path, data: Any) -> None:
    from trtforge.pipeline.onnx_io import write_bytes_atomic

    write_bytes_atomic(path, (json.dumps(data, indent=2, sort_keys=False, default=str) + "\n").encode())
