"""Stage base class: frozen typed config, ``requires`` -> ``_run`` -> ``ensures``.

A stage never mutates its input file; it writes into ``ctx.out_dir`` (a staging directory
that the workspace renames into place only when the stage succeeded).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from pipeline.artifact import Artifact
from pipeline.errors import StageError

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]


def _no_progress(what: str, done: int, total: int) -> None:
    return None


@dataclass(frozen=True)
class Gate:
    """A pass/fail check a stage made (parity, accuracy, throughput). Truthy when it passed."""

    name: str
    passed: bool
    value: float | None = None
    threshold: float | None = None
    detail: str = ""

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "value": self.value,
            "threshold": self.threshold,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class DataPaths:
    """Pipeline-level data: calibration and validation sets (paths to .npy/.npz/dirs)."""

    calibration: Path | None = None
    validation: Path | None = None


@dataclass
class StageContext:
    """What a stage may use besides its config and input artifact."""

    out_dir: Path
    reference: Artifact | None = None  # the pipeline's reference ONNX (first ONNX artifact)
    data: DataPaths = field(default_factory=DataPaths)
    progress: ProgressFn = _no_progress
    previous: tuple[str, ...] = ()  # names of the stages that ran before, for error messages


@dataclass(frozen=True)
class StageResult:
    """Output artifact, metrics (JSON-friendly), whether the model changed, gates. Truthy if all passed."""

    artifact: Artifact
    metrics: Mapping[str, Any] = field(default_factory=dict)
    modified: bool = True
    gates: tuple[Gate, ...] = ()

    def __bool__(self) -> bool:
        return all(self.gates)


C = TypeVar("C")


class Stage(ABC, Generic[C]):
    """One step of the pipeline. Subclasses set ``name`` and ``config_cls`` and implement ``_run``."""

    name: ClassVar[str]
    config_cls: ClassVar[type]
    input_kinds: ClassVar[tuple[str, ...]] = ("onnx",)
    output_kind: ClassVar[str] = "onnx"
    #: graph stages get an ORT smoke run of their output in ``ensures``
    smoke_run: ClassVar[bool] = True

    def __init__(self, config: C) -> None:
        self.config = config

    def requires(self, artifact: Artifact, ctx: StageContext) -> None:
        """Preconditions; raise ``InputError``/``StageError``. Default: the artifact kind fits."""
        if artifact.kind not in self.input_kinds:
            raise StageError(
                f"stage {self.name!r}: takes a {' or '.join(self.input_kinds)} model, got {artifact.kind} "
                f"{artifact.path}{self._after(ctx)}"
            )

    def ensures(self, result: StageResult, ctx: StageContext) -> None:
        """Postconditions. ONNX outputs: checker, shape inference and (optionally) an ORT smoke run."""
        if result.artifact.kind != "onnx":
            return
        from pipeline.contracts import check_onnx_artifact

        try:
            check_onnx_artifact(result.artifact.path, smoke_run=self.smoke_run)
        except Exception as exc:
            raise StageError(
                f"stage {self.name!r} produced an invalid model {result.artifact.path}: "
                f"{exc}{self._after(ctx)}"
            ) from exc

    def run(self, artifact: Artifact, ctx: StageContext) -> StageResult:
        self.requires(artifact, ctx)
        log.info("stage %s: %s", self.name, artifact.path)
        result = self._run(artifact, ctx)
        self.ensures(result, ctx)
        return result

    @abstractmethod
    def _run(self, artifact: Artifact, ctx: StageContext) -> StageResult: ...

    def cache_inputs(self, ctx: StageContext) -> dict[str, str]:
        """Extra content that determines the output (e.g. data file hashes), for the cache key."""
        return {}

    @staticmethod
    def _after(ctx: StageContext) -> str:
        return f" (after stages: {', '.join(ctx.previous)})" if ctx.previous else ""
