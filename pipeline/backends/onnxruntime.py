"""ONNX Runtime runner: load, run(feeds), metadata. CPU everywhere; CUDA with onnxruntime-gpu."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import InputError, MissingDependencyError, first_line

_OPT_LEVELS = ("disable", "basic", "extended", "all")


@dataclass(frozen=True)
class OrtOptions:
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    intra_op_threads: int | None = None  # None: ONNX Runtime's default (all cores)
    graph_optimization: str = "all"  # disable | basic | extended | all
    optimized_model_path: Path | None = None  # write the graph ORT actually runs


class OrtRunner:
    """Wraps an ``onnxruntime.InferenceSession``; ``run`` takes and returns ``{name: array}``."""

    def __init__(self, model: str | Path | bytes, options: OrtOptions | None = None) -> None:
        self.model = model
        self.options = options or OrtOptions()
        self._session: Any = None

    def load(self) -> OrtRunner:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        level = self.options.graph_optimization
        if level not in _OPT_LEVELS:
            raise InputError(f"graph optimization {level!r} is not one of {', '.join(_OPT_LEVELS)}")
        opts.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[level]
        if self.options.intra_op_threads:
            opts.intra_op_num_threads = self.options.intra_op_threads
            opts.inter_op_num_threads = 1
        if self.options.optimized_model_path is not None:
            opts.optimized_model_filepath = str(self.options.optimized_model_path)
        opts.log_severity_level = 3
        available = set(ort.get_available_providers())
        missing = [p for p in self.options.providers if p not in available]
        if missing:
            raise MissingDependencyError(
                f"ONNX Runtime provider {missing[0]} is not available "
                f"(have: {', '.join(sorted(available))}); "
                "install onnxruntime-gpu for CUDA"
            )
        src = self.model if isinstance(self.model, bytes) else str(self.model)
        try:
            self._session = ort.InferenceSession(
                src, sess_options=opts, providers=list(self.options.providers)
            )
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
            where = "model" if isinstance(self.model, bytes) else str(self.model)
            first = first_line(exc)
            raise InputError(f"{where}: ONNX Runtime cannot load it: {first}") from exc
        return self

    @property
    def session(self) -> Any:
        if self._session is None:
            self.load()
        return self._session

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.session.get_inputs()]

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.session.get_outputs()]

    def run(
        self, feeds: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        names = list(outputs) if outputs else self.output_names
        values = self.session.run(names, dict(feeds))
        return dict(zip(names, values, strict=True))


def random_feed(specs: Sequence[Any], batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs for smoke runs only (never for validation): dynamic dims become ``batch``/1."""
    rng = np.random.default_rng(seed)
    feed: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = [
            d if isinstance(d, int) and d > 0 else (batch if i == 0 else 1) for i, d in enumerate(spec.shape)
        ]
        dtype = np.dtype(spec.dtype)
        if np.issubdtype(dtype, np.floating):
            feed[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype == np.bool_:
            feed[spec.name] = rng.integers(0, 2, shape).astype(dtype)
        else:
            feed[spec.name] = rng.integers(0, 4, shape).astype(dtype)
    return feed
