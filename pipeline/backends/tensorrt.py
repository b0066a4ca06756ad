"""TensorRT runner: deserialize a plan, create a context, set shapes and addresses, ``execute_async_v3``.

A :class:`~trtforge.pipeline.backends.base.Runner` (``activate``, ``inputs``, ``output_names``,
``run(feeds) -> {name: array}``), plus ``run_device`` on torch CUDA tensors and the GPU time of the
last run (CUDA events, ``device_time_s``). Buffers are torch CUDA tensors (torch is present wherever
engines run in this project).

Before anything TensorRT is touched: the engine's ``.json`` metadata is read, a CUDA GPU and TensorRT
are looked for, and an engine built for another GPU or TensorRT version is rejected with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trtforge.common.tensors import TensorSpec
from trtforge.pipeline.artifact import ENGINE_SUFFIXES, ArtifactKind
from trtforge.pipeline.backends.base import Feeds, Runner, RunnerOptions, register_backend
from trtforge.pipeline.errors import InputError, StageError

log = logging.getLogger(__name__)


def is_engine_path(path: str | Path) -> bool:
    return Path(path).suffix in ENGINE_SUFFIXES


def engine_input_specs(
    engine_path: str | Path, dtypes: Mapping[str, str] | None = None
) -> tuple[TensorSpec, ...]:
    """The engine's inputs from its ``.json`` metadata, without touching TensorRT.

    Names come from the metadata; an axis is static where every optimization profile fixes it to
    one value, else dynamic (named ``<input>.<axis>``). The metadata does not record dtypes:
    ``dtypes`` (e.g. the ONNX model's) fills them, float32 otherwise; a loaded runner knows the
    engine's own (``TrtRunner.input_dtypes``).
    """
    from trtforge.pipeline.engine.metadata import read_metadata
    from trtforge.pipeline.engine.profiles import ShapeProfile

    meta = read_metadata(engine_path)
    profiles = [ShapeProfile.from_dict(p) for p in meta.profiles]
    specs = []
    for name in meta.inputs:
        ranges = [p.shapes[name] for p in profiles if name in p.shapes]
        if not ranges:
            raise InputError(
                f"{engine_path}: its metadata records no shape for input {name!r}; "
                "rebuild it with trtforge build"
            )
        dims: list[int | str | None] = []
        for axis in range(len(ranges[0].min)):
            values = {r.min[axis] for r in ranges} | {r.max[axis] for r in ranges}
            dims.append(values.pop() if len(values) == 1 else f"{name}.{axis}")
        specs.append(TensorSpec(name, (dtypes or {}).get(name, "float32"), tuple(dims)))
    return tuple(specs)


class TrtRunner(Runner):
    """Runs a TensorRT engine built by ``trtforge build``; ``run`` takes and returns ``{name: array}``."""

    #: host arrays are converted to the engine's I/O dtypes on upload
    strict_dtypes = False

    def __init__(self, engine_path: str | Path, device: int = 0, name: str | None = None) -> None:
        super().__init__(str(engine_path), name)
        self.path = Path(engine_path)
        self.device = device
        self.last_latency_ms: float | None = None
        self._state: dict[str, Any] | None = None

    def _activate(self) -> None:
        from trtforge.pipeline.deps import require
        from trtforge.pipeline.engine.env import require_trt_env
        from trtforge.pipeline.engine.metadata import incompatibility, read_metadata
        from trtforge.pipeline.engine.profiles import ShapeProfile

        if not self.path.is_file():
            raise InputError(
                f"{self.path}: engine file not found; build it with trtforge build --target tensorrt"
            )
        meta = read_metadata(self.path)
        trt, gpu = require_trt_env("running a TensorRT engine", self.device)
        reason = incompatibility(meta, str(trt.__version__), gpu)
        if reason is not None:
            raise InputError(f"{self.path}: cannot run on this machine: {reason}")
        torch = require("torch", "TensorRT runner buffers (torch CUDA tensors)")
        self._register_plugins(meta.plugins)
        engine = self._deserialize(trt, meta.version_compatible)
        context = engine.create_execution_context()
        if context is None:
            raise StageError(
                f"{self.path}: TensorRT could not create an execution context (out of GPU memory?)"
            )
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        self._state = {
            "torch": torch,
            "engine": engine,
            "context": context,
            "inputs": inputs,
            "outputs": [n for n in names if n not in inputs],
            "dtypes": dtypes,
            "profiles": [ShapeProfile.from_dict(p) for p in meta.profiles],
            "profile": 0,
            "stream": torch.cuda.Stream(device=self.device),
            "meta": meta,
            "specs": tuple(
                TensorSpec(
                    n, dtypes[n].name, tuple(d if d >= 0 else None for d in engine.get_tensor_shape(n))
                )
                for n in inputs
            ),
        }

    def _register_plugins(self, ids: Sequence[str]) -> None:
        from trtforge.plugins.registry import list_plugins

        for plugin in list_plugins():
            if plugin.trt_id in ids:
                plugin.register_tensorrt()

    def _deserialize(self, trt: Any, version_compatible: bool) -> Any:
        from trtforge.pipeline.engine.builder import _make_logger

        trt_runtime = trt.Runtime(_make_logger(trt))
        if version_compatible:
            trt_runtime.engine_host_code_allowed = True  # version-compatible plans carry their lean runtime
        engine = trt_runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise InputError(
                f"{self.path}: TensorRT could not deserialize the engine (see -v); rebuild it here"
            )
        self._runtime = trt_runtime  # the runtime must outlive the engine
        return engine

    @property
    def state(self) -> dict[str, Any]:
        self.activate()
        assert self._state is not None
        return self._state

    def _inputs(self) -> tuple[TensorSpec, ...]:
        return tuple(self.state["specs"])

    def _output_names(self) -> list[str]:
        return list(self.state["outputs"])

    @property
    def loaded(self) -> bool:
        return self._state is not None

    def device_time_s(self) -> float | None:
        return self.last_latency_ms / 1e3 if self.last_latency_ms is not None else None

    @property
    def input_dtypes(self) -> dict[str, np.dtype]:
        """The engine's input dtypes (loads the engine)."""
        return {n: self.state["dtypes"][n] for n in self.state["inputs"]}

    def _deactivate(self) -> None:
        """Drop the context, engine and runtime (a later call loads them again)."""
        self._state = None
        self.__dict__.pop("_runtime", None)

    def close(self) -> None:
        self.deactivate()

    def _infer(self, feeds: Feeds, outputs: Sequence[str] | None) -> dict[str, np.ndarray]:
        """Host arrays in, host arrays out (copies included in wall time, not in ``last_latency_ms``)."""
        st = self.state
        torch = st["torch"]
        dev = {
            n: torch.from_numpy(np.ascontiguousarray(feeds[n], dtype=st["dtypes"][n])).to(
                f"cuda:{self.device}"
            )
            for n in st["inputs"]
        }
        out = self.run_device(dev)
        names = list(outputs) if outputs else st["outputs"]
        return {n: out[n].cpu().numpy() for n in names}

    def run_device(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        """torch CUDA tensors in and out; records the GPU time of the execution in ``last_latency_ms``."""
        st = self.state
        torch, context, stream = st["torch"], st["context"], st["stream"]
        self._select_profile({n: tuple(feeds[n].shape) for n in st["inputs"]})
        for name in st["inputs"]:
            tensor = feeds[name].contiguous()
            context.set_input_shape(name, tuple(tensor.shape))
            context.set_tensor_address(name, tensor.data_ptr())
        results = {}
        for name in st["outputs"]:
            shape = tuple(context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise StageError(
                    f"{self.path}: output {name!r} has a data-dependent shape {shape}; not supported"
                )
            dtype = torch.from_numpy(np.empty(0, dtype=st["dtypes"][name])).dtype
            results[name] = torch.empty(shape, dtype=dtype, device=f"cuda:{self.device}")
            context.set_tensor_address(name, results[name].data_ptr())
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        start.record(stream)
        if not context.execute_async_v3(stream.cuda_stream):
            raise StageError(f"{self.path}: TensorRT execution failed (see -v)")
        end.record(stream)
        stream.synchronize()
        self.last_latency_ms = float(start.elapsed_time(end))
        return results

    def _select_profile(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        from trtforge.pipeline.engine.profiles import select_profile

        st = self.state
        index = select_profile(st["profiles"], shapes) if st["profiles"] else 0
        if index != st["profile"]:
            context = st["context"]
            context.set_optimization_profile_async(index, st["stream"].cuda_stream)
            st["profile"] = index


def _spec(name: str, dtype: np.dtype, shape: Any) -> TensorSpec:
    """An engine I/O tensor; TensorRT reports dynamic dimensions as -1."""
    return TensorSpec(name, dtype.name, tuple(int(d) if d >= 0 else None for d in shape))


@register_backend(ArtifactKind.ENGINE)
def _open(path: Path, kind: ArtifactKind, options: RunnerOptions) -> Runner:
    return TrtRunner(path, options.device, options.name)
