"""Postconditions shared by graph stages: onnx checker, shape inference, ORT smoke run.

The smoke run feeds the model the user's inputs, never invented shapes (:func:`smoke_inputs`):

1. the user's data: validation data, else calibration data (the stage's own ``validation`` /
   ``calibration`` / ``train_data`` settings first, then the pipeline's), its first sample or first
   sequence step with its real shapes (``state`` pairs: the first step's state from the file or zeros);
2. else explicit shapes: the stage's ``shapes`` (``--shapes x:1x3x640x640``, the syntax of
   ``build --shapes``; ``export`` takes its ``inputs``), random values;
3. else random values, only where every size is known: fixed, or a dynamic batch axis (1). A dynamic
   non-batch dimension is refused (``InputError``, exit 2) naming the input, the axis and the fix.

Errors name the stage and the user's model (the stage's input), never the staging directory the
stage wrote into (:func:`check_stage_output`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from trtforge.pipeline.artifact import IOSpec, TensorSpec
from trtforge.pipeline.errors import ConfigError, InputError, StageError, first_line

if TYPE_CHECKING:
    from trtforge.pipeline.stage import Stage, StageContext, StageResult

#: the staging folders stages write into (``pipeline.api``, ``pipeline.workspace``)
_STAGING = re.compile(r"[^\s'\"()]*\.(?:trtforge-|[\w-]+\.staging-)[^\s/'\"()]*(?:/[^\s'\"(),;:]*)?")


@dataclass(frozen=True)
class SmokeInputs:
    """Where a smoke run takes its inputs (see the module docstring): data, else shapes, else random."""

    data: Path | None = None
    shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    state: tuple[str, ...] = ()
    #: shapes from a stage's own inputs (``export``'s ``inputs``), not ``--shapes``: names the model
    #: does not have are dropped rather than refused
    lenient: bool = False

    def feed(self, specs: Sequence[TensorSpec], source: str = "", batch: int = 1) -> dict[str, np.ndarray]:
        """The first ``batch`` samples (or first step) of the data, else random inputs of known sizes."""
        from trtforge.pipeline.validation.feeds import first_feed

        names = {s.name for s in specs}
        shapes = {k: v for k, v in self.shapes.items() if k in names} if self.lenient else self.shapes
        _, feed = first_feed(
            specs, data=self.data, shapes=shapes, state=self.state, batch=batch, source=source
        )
        return feed


def smoke_inputs(config: Any, ctx: StageContext) -> SmokeInputs:
    """The smoke inputs of a stage from its config (``validation``, ``calibration``, ``train_data``,
    ``shapes``, ``state``, where it has them) and the pipeline's data (``ctx.data``)."""
    from trtforge.pipeline.validation.feeds import explicit_shapes

    def own(key: str) -> Path | None:
        value = getattr(config, key, None)
        return Path(value) if isinstance(value, (str, Path)) and value else None

    candidates = (
        own("validation") or ctx.data.validation,
        own("calibration") or ctx.data.calibration,
        own("train_data"),
    )
    data = next((Path(c) for c in candidates if c is not None and is_array_data(c)), None)
    shapes = getattr(config, "shapes", None)
    state = getattr(config, "state", ())
    lenient = isinstance(shapes, Mapping)  # export's ``shapes`` property: its ``inputs`` parsed
    return SmokeInputs(data, explicit_shapes(shapes), tuple(state or ()), lenient)


def is_array_data(path: str | Path) -> bool:
    """Whether ``path`` is array data a smoke run can read (not images or a Python callable)."""
    from trtforge.calibration.errors import DataError
    from trtforge.calibration.sources import source_kind

    try:
        return Path(path).exists() and source_kind(path) == "arrays"
    except DataError:
        return False


def check_onnx_artifact(
    path: str | Path, *, smoke_run: bool = True, inputs: SmokeInputs | None = None, source: str = ""
) -> None:
    """Raise when the model at ``path`` is not sound: checker, shape inference, then (``smoke_run``)
    one ONNX Runtime run on ``inputs`` (default: random, where every size is known).

    ``InputError``/``ConfigError`` (no inputs can be made: bad data or shapes, unknown sizes) name
    ``source``; any other exception means the model itself is broken.
    """
    p = Path(path)
    onnx.checker.check_model(str(p), full_check=True)
    model = onnx.load(str(p), load_external_data=False)
    if not smoke_run:
        return
    from trtforge.pipeline.backends.onnxruntime import OrtRunner

    spec = IOSpec.from_onnx(model)
    feed = (inputs or SmokeInputs()).feed(spec.inputs, source)
    runner = OrtRunner(p).load()
    out = runner.run(feed)
    for name, value in out.items():
        if not isinstance(value, np.ndarray):  # sequence or map outputs (ai.onnx.ml ZipMap): no tensor check
            continue
        if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)):
            raise ValueError(f"output {name!r} is not finite on a smoke run")


def check_stage_output(
    stage: Stage[Any], result: StageResult, ctx: StageContext, source: Path | None
) -> None:
    """``Stage.ensures`` for ONNX outputs: :func:`check_onnx_artifact` on the stage's smoke inputs.

    Errors name the stage and ``source`` (the stage's input: the user's model), never the staging
    folder: input problems stay ``InputError``/``ConfigError`` (exit 2), a broken model is a
    ``StageError``.
    """
    made = result.artifact.path
    user = str(source) if source is not None else "its input model"
    first = ctx.reference.path if ctx.reference is not None else None
    if first is not None and source is not None and Path(first) != Path(source):  # inside a pipeline
        user = f"{user} (made from {first})"
    label = f"the {stage.name} output of {user}"
    after = stage._after(ctx)
    try:
        inputs = smoke_inputs(stage.config, ctx) if stage.smoke_run else None
        check_onnx_artifact(made, smoke_run=stage.smoke_run, inputs=inputs, source=user)
    except (InputError, ConfigError) as exc:
        text = scrub(first_line(exc, limit=600), made, label)
        raise type(exc)(f"{stage.name}: {text}{after}") from exc
    except Exception as exc:
        text = scrub(first_line(exc, limit=600), made, label)
        raise StageError(f"stage {stage.name!r} made an invalid model from {user}: {text}{after}") from exc


def scrub(text: str, path: Path, label: str) -> str:
    """``text`` with the staging path ``path`` (and any other staging folder) replaced by ``label``."""
    for p in (path, path.resolve(), path.parent, path.parent.resolve()):
        text = text.replace(str(p), label)
    return _STAGING.sub(label, text)
