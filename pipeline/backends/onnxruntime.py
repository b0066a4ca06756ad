"""ONNX Runtime runner: CPU everywhere, CUDA with onnxruntime-gpu; ``.onnx`` and ``.ort`` models.

Sessions come from the one factory, :func:`trtforge.common.ort.create_session` (options, providers,
custom-op plugins).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from trtforge.common.ort import SessionConfig, create_session
from trtforge.common.tensors import TensorSpec
from trtforge.pipeline.artifact import ArtifactKind
from trtforge.pipeline.backends.base import Feeds, Runner, RunnerOptions, register_backend
from trtforge.pipeline.errors import InputError

#: ONNX Runtime's type strings ("tensor(float)") -> numpy dtype names
_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(int16)": "int16",
    "tensor(uint16)": "uint16",
    "tensor(int32)": "int32",
    "tensor(uint32)": "uint32",
    "tensor(int64)": "int64",
    "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
}


class OrtRunner(Runner):
    """Wraps an ``onnxruntime.InferenceSession``; ``run`` takes and returns ``{name: array}``."""

    def __init__(
        self,
        model: str | Path | bytes | onnx.ModelProto,
        config: SessionConfig | None = None,
        name: str | None = None,
    ) -> None:
        source = str(model) if isinstance(model, (str, Path)) else "model"
        super().__init__(source, name)
        self.model = model
        self.config = config or SessionConfig()
        self._session: Any = None
        self._specs: tuple[TensorSpec, ...] = ()

    def _activate(self) -> None:
        self._session = create_session(self.model, self.config, source=self.source)
        self._specs = tuple(
            TensorSpec(i.name, _ORT_TYPES.get(i.type, "float32"), _dims(i.shape))
            for i in self._session.get_inputs()
        )

    def _deactivate(self) -> None:
        self._session = None

    @property
    def session(self) -> Any:
        """The ``onnxruntime.InferenceSession`` (created on first use)."""
        self.activate()
        return self._session

    def _inputs(self) -> tuple[TensorSpec, ...]:
        return self._specs

    def _output_names(self) -> list[str]:
        return [o.name for o in self._session.get_outputs()]

    def _infer(self, feeds: Feeds, outputs: Sequence[str] | None) -> dict[str, np.ndarray]:
        names = list(outputs) if outputs else self._output_names()
        values = self._session.run(names, dict(feeds))
        return {n: tensor_view(v, n, self.source) for n, v in zip(names, values, strict=True)}


def tensor_view(value: Any, name: str, source: object) -> np.ndarray:
    """An output as an array: tensors as they are; a sequence of maps (skl2onnx's ZipMap, one
    ``{class: probability}`` per sample) as ``[samples, classes]`` in the maps' key order, so parity
    and metrics compare the probabilities themselves; a sequence of equal-shape tensors stacked.
    Anything else is refused with the output's name (comparisons work on tensors)."""
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        keys = list(value[0])
        if all(list(v) == keys for v in value):
            return np.array([[v[k] for k in keys] for v in value], dtype=np.float32)
    arrays = isinstance(value, list) and value and all(isinstance(v, np.ndarray) for v in value)
    if arrays and len({(v.shape, v.dtype) for v in value}) == 1:
        return np.stack(value)
    if isinstance(value, list) and not value:
        return np.zeros((0,), dtype=np.float32)
    kind = type(value).__name__ + (
        f" of {type(value[0]).__name__}" if isinstance(value, list) and value else ""
    )
    raise InputError(
        f"{source}: output {name!r} is a {kind}, not a tensor, and has no tensor form; "
        "export the model with tensor outputs (e.g. skl2onnx zipmap=False)"
    )


def _dims(shape: Any) -> tuple[int | str | None, ...]:
    if not shape:
        return ()
    return tuple(d if isinstance(d, (int, str)) else None for d in shape)


@register_backend(ArtifactKind.ONNX, ArtifactKind.ORT)
def _open(path: Path, kind: ArtifactKind, options: RunnerOptions) -> Runner:
    entries = {"session.load_model_format": "ORT"} if kind == ArtifactKind.ORT else {}
    config = SessionConfig(
        providers=options.providers,
        intra_op_threads=options.threads,
        graph_optimization=options.graph_optimization,
        config_entries=entries,
    )
    return OrtRunner(path, config, options.name)


def random_feed(
    specs: Sequence[TensorSpec],
    batch: int = 1,
    seed: int = 0,
    shapes: Mapping[str, Sequence[int]] | None = None,
    source: str = "",
) -> dict[str, np.ndarray]:
    """Seeded random inputs for smoke runs and self-checks (never for validation).

    Sizes come from :func:`trtforge.pipeline.validation.feeds.feed_shapes`: fixed dims keep theirs,
    the batch axis gets ``batch``, other dynamic dims come from ``shapes`` (``--shapes``); a size
    nothing gives is refused (``UnknownShapeError``, exit 2, naming ``source``, the input and axis).
    """
    from trtforge.pipeline.validation.feeds import feed_shapes

    sizes = feed_shapes(specs, batch, shapes, source)
    rng = np.random.default_rng(seed)
    feed: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = sizes[spec.name]
        dtype = np.dtype(spec.dtype)
        if np.issubdtype(dtype, np.floating):
            feed[spec.name] = np.asarray(rng.standard_normal(shape), dtype=dtype)
        elif dtype == np.bool_:
            feed[spec.name] = np.asarray(rng.integers(0, 2, shape), dtype=dtype)
        else:
            feed[spec.name] = np.asarray(rng.integers(0, 4, shape), dtype=dtype)
    return feed
