"""The runner base every backend implements, and the backend registry behind :func:`open_runner`.

In the spirit of Polygraphy's ``BaseRunner``: a runner is a context manager (``activate`` /
``deactivate``), checks its feeds before it runs (names, rank, static sizes, dtypes), and records the
wall time of its last inference (``last_inference_time``, seconds); a backend that can time the device
alone (CUDA events) also answers ``device_time_s``. Subclasses implement ``_activate``, ``_inputs``,
``_output_names`` and ``_infer``.
"""

from __future__ import annotations

import importlib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import numpy as np

from trtforge.common.errors import InputError
from trtforge.common.tensors import TensorSpec
from trtforge.pipeline.artifact import Artifact, ArtifactKind, kind_of_path

Feeds = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class RunnerOptions:
    """Backend-neutral settings of :func:`open_runner`.

    ``threads``: ONNX Runtime intra-op threads (None: all cores); ``providers``: ONNX Runtime execution
    providers in order; ``graph_optimization``: ONNX Runtime's level; ``device``: the CUDA device of a
    TensorRT engine; ``name``: how reports call the runner (default: the file name).
    """

    threads: int | None = None
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    graph_optimization: str = "all"
    device: int = 0
    name: str | None = None


class Runner(ABC):
    """One loaded model of one backend; ``run(feeds) -> {output name: array}``."""

    #: feeds must carry exactly the model's dtypes (a backend that casts on upload sets False)
    strict_dtypes: bool = True

    def __init__(self, source: str, name: str | None = None) -> None:
        self.source = source
        self.name = name or Path(source).name
        self.is_active = False
        self.last_inference_time: float | None = None

    def __enter__(self: R) -> R:
        return self.activate()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.deactivate()

    def activate(self: R) -> R:
        """Load the model (idempotent); returns the runner."""
        if not self.is_active:
            self._activate()
            self.is_active = True
        return self

    def load(self: R) -> R:
        """The same as :meth:`activate`."""
        return self.activate()

    def deactivate(self) -> None:
        if self.is_active:
            self._deactivate()
            self.is_active = False

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self.activate()._inputs()

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return self.activate()._output_names()

    def run(self, feeds: Feeds, outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Check ``feeds`` against the model's inputs, run, and record the wall time."""
        self.activate()
        self.check_feeds(feeds)
        start = time.perf_counter()
        result = self._infer(feeds, outputs)
        self.last_inference_time = time.perf_counter() - start
        return result

    def device_time_s(self) -> float | None:
        """Device time of the last run where the backend measures it (CUDA events), else None."""
        return None

    def check_feeds(self, feeds: Feeds) -> None:
        """``InputError`` naming the model for a missing or unknown input, wrong rank, size or dtype."""
        specs = {s.name: s for s in self.inputs}
        names = ", ".join(repr(n) for n in specs)
        for name in specs:
            if name not in feeds:
                raise InputError(f"{self.source}: feed lacks input {name!r}; model inputs are: {names}")
        for name, value in feeds.items():
            spec = specs.get(name)
            if spec is None:
                raise InputError(f"{self.source}: feed has unknown input {name!r}; model inputs are: {names}")
            _check_value(self.source, spec, np.asarray(value), self.strict_dtypes)

    @abstractmethod
    def _activate(self) -> None: ...

    def _deactivate(self) -> None:
        return None

    @abstractmethod
    def _inputs(self) -> tuple[TensorSpec, ...]: ...

    @abstractmethod
    def _output_names(self) -> list[str]: ...

    @abstractmethod
    def _infer(self, feeds: Feeds, outputs: Sequence[str] | None) -> dict[str, np.ndarray]: ...


R = TypeVar("R", bound=Runner)


def _check_value(source: str, spec: TensorSpec, value: np.ndarray, strict_dtype: bool) -> None:
    if len(value.shape) != len(spec.shape) and spec.shape:
        raise InputError(
            f"{source}: input {spec.name!r} has shape {tuple(value.shape)}; the model expects rank "
            f"{len(spec.shape)} {tuple(spec.shape)}"
        )
    for axis, (got, want) in enumerate(zip(value.shape, spec.shape)):
        if isinstance(want, int) and want > 0 and got != want:
            raise InputError(
                f"{source}: input {spec.name!r} has size {got} on axis {axis}; the model fixes it to {want}"
            )
    if strict_dtype and value.dtype != np.dtype(spec.dtype):
        raise InputError(
            f"{source}: input {spec.name!r} is {value.dtype}; the model expects {spec.dtype} "
            "(convert the data, e.g. with numpy's astype)"
        )


RunnerFactory = Callable[[Path, ArtifactKind, RunnerOptions], Runner]

#: every module that registers a backend; a test imports each and checks the registry against it
BACKEND_MODULES: tuple[str, ...] = (
    "trtforge.pipeline.backends.onnxruntime",
    "trtforge.pipeline.backends.tensorrt",
)

_BACKENDS: dict[ArtifactKind, RunnerFactory] = {}


def register_backend(*kinds: ArtifactKind) -> Callable[[RunnerFactory], RunnerFactory]:
    """Decorator: ``factory(path, kind, options) -> Runner`` opens models of ``kinds``."""

    def deco(factory: RunnerFactory) -> RunnerFactory:
        for kind in kinds:
            if kind in _BACKENDS and _BACKENDS[kind] is not factory:
                raise ValueError(f"a backend for {kind} artifacts is registered twice")
            _BACKENDS[kind] = factory
        return factory

    return deco


def backend_kinds() -> list[ArtifactKind]:
    """The artifact kinds some backend can run."""
    for module in BACKEND_MODULES:
        importlib.import_module(module)
    return sorted(_BACKENDS, key=str)


def open_runner(model: Artifact | str | Path, options: RunnerOptions | None = None) -> Runner:
    """A (not yet activated) runner for an artifact or a model file, chosen by its kind."""
    if isinstance(model, Artifact):
        path, kind = Path(model.path), ArtifactKind(model.kind)
    else:
        path, kind = Path(model), kind_of_path(model)
    kinds = backend_kinds()
    factory = _BACKENDS.get(kind)
    if factory is None:
        raise InputError(
            f"{path}: no backend runs {kind} models; runnable kinds are: {', '.join(str(k) for k in kinds)}"
        )
    return factory(path, kind, options or RunnerOptions())
