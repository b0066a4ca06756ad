"""``EngineFromOnnx``: parse an ONNX model with TensorRT's parser and build a serialized engine.

Only called after :func:`pipeline.engine.env.require_trt_env` found a CUDA GPU and TensorRT.
Precision is decided in the ONNX graph (Q/DQ INT8, FP16 tensors) and the network is strongly typed
(explicitly on 10, always on 11). The weakly typed legacy mode (``BuilderFlag.FP16``, implicit INT8
from a calibration cache) exists on TensorRT 10 only; see :mod:`pipeline.engine.version` for the
gating convention that ``tools/trt_names.py`` checks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from trtforge.pipeline.engine.cache import load_timing_cache, save_timing_cache
from trtforge.pipeline.engine.profiles import ShapeProfile
from trtforge.pipeline.engine.version import is_trt10, parse_version
from trtforge.pipeline.errors import InputError, MissingDependencyError, StageError

log = logging.getLogger(__name__)

#: ``tensorrt.plugin`` (Python plugins) appeared in TensorRT 10.6
PYTHON_PLUGINS_SINCE = (10, 6)


@dataclass(frozen=True)
class TrtBuildOptions:
    profiles: tuple[ShapeProfile, ...]
    workspace_bytes: int | None = None
    opt_level: int = 3
    timing_cache: Path | None = None
    sparse_weights: bool = False
    version_compatible: bool = False
    hardware_compatible: bool = False
    legacy_fp16: bool = False
    legacy_int8_cache: bytes | None = None
    plugins: tuple[str, ...] = field(default_factory=tuple)

    @property
    def legacy(self) -> bool:
        return self.legacy_fp16 or self.legacy_int8_cache is not None


def format_parser_errors(source: str | Path, errors: Sequence[Any]) -> str:
    """One line naming every node TensorRT's ONNX parser rejected: ``node 'n' (Op): reason``."""
    parts = []
    for err in errors:
        name = err.node_name() or "?"
        op = err.node_operator() or "?"
        desc = " ".join(str(err.desc()).split())
        parts.append(f"node {name!r} ({op}): {desc}")
    return (
        f"{source}: TensorRT's ONNX parser rejected {len(parts)} node(s): {'; '.join(parts)}; "
        "fix or replace these ops (or add a plugin) and rebuild"
    )


def _make_logger(trt: Any) -> Any:
    """A TensorRT logger that forwards to Python logging (the library never prints on its own)."""
    sev = trt.ILogger.Severity
    levels = {
        sev.INTERNAL_ERROR: logging.ERROR,
        sev.ERROR: logging.ERROR,
        sev.WARNING: logging.WARNING,
        sev.INFO: logging.INFO,
        sev.VERBOSE: logging.DEBUG,
    }

    class _Logger(trt.ILogger):  # type: ignore[misc]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity: Any, msg: str) -> None:
            log.log(levels.get(severity, logging.INFO), "TensorRT: %s", msg)

    return _Logger()


def _network_flags(trt: Any, legacy: bool) -> int:
    if is_trt10(trt):
        # strongly typed must be asked for on 10; the legacy precision flags need a weakly typed network
        return 0 if legacy else 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return 0  # TensorRT 11 networks are always strongly typed


def _register_plugins(trt: Any, names: Sequence[str]) -> None:
    if not names:
        return
    if parse_version(trt.__version__)[:2] < PYTHON_PLUGINS_SINCE:
        raise MissingDependencyError(
            f"the model uses plugins ({', '.join(names)}) which need tensorrt.plugin from TensorRT 10.6+; "
            f"this machine has TensorRT {trt.__version__}"
        )
    from trtforge.plugins.registry import list_plugins

    for plugin in list_plugins():
        if plugin.trt_id in names:
            plugin.register_tensorrt()


def _parse(trt: Any, network: Any, logger: Any, onnx_path: Path, source: Path) -> None:
    parser = trt.OnnxParser(network, logger)
    ok = parser.parse_from_file(str(onnx_path))
    errors = [parser.get_error(i) for i in range(parser.num_errors)]
    if not ok or errors:
        raise InputError(
            format_parser_errors(source, errors) if errors else f"{source}: TensorRT cannot parse it"
        )


def _add_profiles(builder: Any, builder_config: Any, profiles: Sequence[ShapeProfile]) -> None:
    for prof in profiles:
        profile = builder.create_optimization_profile()
        for name, rng in prof.shapes.items():
            profile.set_shape(name, rng.min, rng.opt, rng.max)
        builder_config.add_optimization_profile(profile)


def _configure(trt: Any, builder: Any, builder_config: Any, opts: TrtBuildOptions) -> None:
    if opts.workspace_bytes:
        builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(opts.workspace_bytes))
    builder_config.builder_optimization_level = int(opts.opt_level)
    _add_profiles(builder, builder_config, opts.profiles)
    if opts.sparse_weights:
        builder_config.set_flag(trt.BuilderFlag.SPARSE_WEIGHTS)
    if opts.version_compatible:
        builder_config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
        builder_config.set_flag(trt.BuilderFlag.EXCLUDE_LEAN_RUNTIME)
    if opts.hardware_compatible:
        builder_config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    if opts.legacy:
        if not is_trt10(trt):
            raise StageError("legacy precision flags reached a TensorRT 11 build; this is a bug")
        _legacy_precision_trt10(trt, builder_config, opts)


def _legacy_precision_trt10(trt: Any, builder_config: Any, opts: TrtBuildOptions) -> None:
    """Weakly typed precision (TensorRT 10 only): FP16 flag and implicit INT8 from a calibration cache."""
    if opts.legacy_fp16:
        builder_config.set_flag(trt.BuilderFlag.FP16)
    if opts.legacy_int8_cache is not None:
        builder_config.set_flag(trt.BuilderFlag.INT8)
        builder_config.int8_calibrator = _cache_calibrator_trt10(trt, opts.legacy_int8_cache)


def _cache_calibrator_trt10(trt: Any, cache: bytes) -> Any:
    """A calibrator that only replays a calibration cache (no data): TensorRT reads the cache and skips
    calibration, since its header names the same algorithm (EntropyCalibration2)."""

    class _CacheCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: Sequence[str]) -> None:
            return None

        def read_calibration_cache(self) -> bytes:
            return cache

        def write_calibration_cache(self, data: Any) -> None:
            return None

    return _CacheCalibrator()


def _timing_cache(builder_config: Any, path: Path | None) -> Any:
    data = load_timing_cache(path) if path is not None else b""
    try:
        cache = builder_config.create_timing_cache(data)
    except Exception as exc:  # a corrupt or foreign cache must not block the build
        log.warning("timing cache %s rejected (%s); starting a fresh one", path, exc)
        cache = builder_config.create_timing_cache(b"")
    builder_config.set_timing_cache(cache, ignore_mismatch=False)
    return cache


def build_engine(trt: Any, onnx_path: Path, source: Path, out: Path, opts: TrtBuildOptions) -> float:
    """Build ``onnx_path`` into the plan file ``out``; return the build time in seconds.

    ``source`` is the user's model path, named in error messages (``onnx_path`` may be a copy
    prepared for plugins).
    """
    from trtforge.pipeline.onnx_io import write_bytes_atomic

    start = time.perf_counter()
    _register_plugins(trt, opts.plugins)
    logger = _make_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt, opts.legacy))
    _parse(trt, network, logger, onnx_path, source)
    builder_config = builder.create_builder_config()
    _configure(trt, builder, builder_config, opts)
    _timing_cache(builder_config, opts.timing_cache)
    plan = builder.build_serialized_network(network, builder_config)
    if plan is None:
        raise StageError(
            f"{source}: TensorRT could not build an engine (see the TensorRT messages with -v); "
            "try a larger --workspace or a lower --opt-level"
        )
    if opts.timing_cache is not None:
        save_timing_cache(opts.timing_cache, bytes(builder_config.get_timing_cache().serialize()))
    write_bytes_atomic(out, bytes(plan))
    return time.perf_counter() - start


def prepare_onnx(model: onnx.ModelProto, src: Path, work_dir: Path) -> Path:
    """The file TensorRT parses: ``src`` itself, or a copy whose plugin nodes name their namespace."""
    from trtforge.plugins.registry import custom_nodes, for_tensorrt

    if not custom_nodes(model):
        return src
    from trtforge.pipeline.onnx_io import save_onnx

    return save_onnx(for_tensorrt(model), work_dir / "for_tensorrt.onnx")
