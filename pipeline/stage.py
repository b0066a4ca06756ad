"""Stage base class: frozen typed config, ``requires`` -> ``_run`` -> ``ensures``.

A stage never mutates its input file; it writes into ``ctx.out_dir`` (a staging directory
that the workspace renames into place only when the stage succeeded).

Each stage declares the artifact kinds it takes (``input_kinds``) and the kind it produces for a
given config (:meth:`Stage.produces`), so a pipeline's chain is checked when its config is loaded.
A stage may run other stages as sub-steps (:meth:`StageContext.run_stage`): inside a pipeline they
share its content-hash cache, staging directories and ``stage.json`` records (kept under the parent
stage's folder, ``NN-<stage>/steps/KK-<sub-stage>/``); ``ctx.history`` holds the artifacts of the
stages that ran before.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from trtforge.pipeline.artifact import Artifact, ArtifactKind
from trtforge.pipeline.errors import ConfigError, StageError

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


@dataclass(frozen=True)
class StageOutput:
    """The artifact one earlier stage produced: its 1-based index, stage name and artifact."""

    index: int
    stage: str
    artifact: Artifact


class SubStageRunner(Protocol):
    """Runs one stage as a sub-step of another (provided by the pipeline runner: cached, staged)."""

    def __call__(self, stage: Stage[Any], artifact: Artifact, parent: StageContext) -> StageResult: ...


@dataclass
class StageContext:
    """What a stage may use besides its config and input artifact."""

    out_dir: Path
    reference: Artifact | None = None  # the pipeline's reference ONNX (first ONNX artifact)
    data: DataPaths = field(default_factory=DataPaths)
    progress: ProgressFn = _no_progress
    previous: tuple[str, ...] = ()  # names of the stages that ran before, for error messages
    history: tuple[StageOutput, ...] = ()  # artifacts of the stages that ran before, in order
    sub_runner: SubStageRunner | None = None  # set by the pipeline runner; None: uncached sub-steps
    steps: int = 0  # sub-steps started so far

    def artifact_of(self, stage: str) -> Artifact:
        """The artifact of the latest earlier stage named ``stage``; ``StageError`` when none ran."""
        for out in reversed(self.history):
            if out.stage == stage:
                return out.artifact
        ran = ", ".join(o.stage for o in self.history) or "none"
        raise StageError(f"no earlier stage {stage!r} ran; stages so far: {ran}")

    def run_stage(self, stage: str, config: Any, artifact: Artifact) -> StageResult:
        """Run stage ``stage`` (``config`` None: its defaults) on ``artifact`` as a sub-step.

        Inside a pipeline the sub-step is cached by content hash like any stage and recorded in
        ``<this stage's folder>/steps/KK-<stage>/stage.json``; standalone it runs in a fresh folder
        under ``out_dir/steps/``. A failed gate is returned in the result, not raised.
        """
        from trtforge.pipeline.registry import get_stage

        cls = get_stage(stage)
        sub = cls(config if config is not None else cls.config_cls())
        if artifact.kind not in cls.input_kinds:
            takes = " or ".join(map(str, cls.input_kinds))
            raise ConfigError(f"sub-step {stage!r} takes {takes} models, not {artifact.kind}")
        self.steps += 1
        if self.sub_runner is not None:
            return self.sub_runner(sub, artifact, self)
        out_dir = self.out_dir / "steps" / f"{self.steps:02d}-{stage}"
        out_dir.mkdir(parents=True)
        return sub.run(artifact, replace(self, out_dir=out_dir, steps=0))


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
    input_kinds: ClassVar[tuple[ArtifactKind, ...]] = (ArtifactKind.ONNX,)
    #: what the stage produces; None: its output is its input (validate, bench)
    output_kind: ClassVar[ArtifactKind | None] = ArtifactKind.ONNX
    #: graph stages get an ORT smoke run of their output in ``ensures``
    smoke_run: ClassVar[bool] = True
    #: the input model of the latest ``run`` (named by ``ensures``' errors instead of staging paths)
    _source: Path | None = None

    def __init__(self, config: C) -> None:
        self.config = config

    @classmethod
    def produces(cls, config: Any, given: ArtifactKind) -> ArtifactKind:
        """The kind of artifact this stage makes from a ``given`` kind with ``config``."""
        return given if cls.output_kind is None else cls.output_kind

    @classmethod
    def kind_options(cls, config: Any) -> str:
        """The config settings that decide the output kind, for chain errors ("" when none do)."""
        return ""

    def requires(self, artifact: Artifact, ctx: StageContext) -> None:
        """Preconditions; raise ``InputError``/``StageError``. Default: the artifact kind fits."""
        if artifact.kind not in self.input_kinds:
            raise StageError(
                f"stage {self.name!r}: takes a {' or '.join(map(str, self.input_kinds))} model, "
                f"got {artifact.kind} "
                f"{artifact.path}{self._after(ctx)}"
            )

    def ensures(self, result: StageResult, ctx: StageContext) -> None:
        """Postconditions. ONNX outputs: checker, shape inference and (optionally) an ORT smoke run on
        the user's data or shapes (``pipeline.contracts``); errors name the stage's input model."""
        if result.artifact.kind != ArtifactKind.ONNX:
            return
        from trtforge.pipeline.contracts import check_stage_output

        check_stage_output(self, result, ctx, self._source)

    def run(self, artifact: Artifact, ctx: StageContext) -> StageResult:
        self.requires(artifact, ctx)
        log.info("stage %s: %s", self.name, artifact.path)
        result = self._run(artifact, ctx)
        self._source = artifact.path
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
