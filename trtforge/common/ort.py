"""The one ONNX Runtime session factory of trtforge.

Every ``onnxruntime.InferenceSession`` in the project is created by :func:`create_session`, so
session options, execution providers and custom-op registration are decided in one place: a model
with nodes of a registered plugin (``trtforge.plugins``) gets a copy with those nodes moved to
onnxruntime-extensions' domain and the extensions library registered, wherever it is run (stage
post-checks, calibration, validation, benchmarks, the ONNX Runtime build target).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from trtforge.common.errors import InputError, MissingDependencyError, first_line

OPT_LEVELS = ("disable", "basic", "extended", "all")

#: domains ONNX Runtime implements itself; nodes there never need a plugin
ORT_DOMAINS = frozenset(
    {"", "ai.onnx", "ai.onnx.ml", "com.microsoft", "com.microsoft.nchwc", "com.ms.internal.nhwc"}
)

Model = str | Path | bytes | onnx.ModelProto


@dataclass(frozen=True)
class SessionConfig:
    """How to open a session.

    ``providers`` are tried in order; with ``require_providers`` a missing one is an error (exit 3),
    else unavailable providers are dropped (CPU is always kept last). ``intra_op_threads`` None is
    ONNX Runtime's default (all cores); a fixed count also sets one inter-op thread (timing).
    """

    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    require_providers: bool = True
    intra_op_threads: int | None = None
    graph_optimization: str = "all"  # disable | basic | extended | all
    optimized_model_path: Path | None = None  # where ONNX Runtime writes the graph it runs
    config_entries: Mapping[str, str] = field(default_factory=dict)  # add_session_config_entry
    #: register onnxruntime-extensions' library even when the model cannot be inspected (an .ort file
    #: whose plugin nodes ONNX Runtime already moved to the extensions' domain)
    extensions_library: bool = False

    def __post_init__(self) -> None:
        if self.graph_optimization not in OPT_LEVELS:
            raise InputError(
                f"graph optimization {self.graph_optimization!r} is not one of {', '.join(OPT_LEVELS)}"
            )


def create_session(model: Model, config: SessionConfig | None = None, *, source: str | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` for ``model`` (path, bytes or ModelProto).

    Errors are one line naming ``source`` (default: the path, or "model"): ``InputError`` when
    ONNX Runtime refuses the model, ``MissingDependencyError`` for a missing provider or package.
    """
    import onnxruntime as ort

    cfg = config or SessionConfig()
    where = source or (str(model) if isinstance(model, (str, Path)) else "model")
    if isinstance(model, (str, Path)) and not Path(model).is_file():
        raise InputError(f"{model}: model file not found; check the path")
    opts = _session_options(ort, cfg)
    data = _with_plugins(model, opts, where)
    if cfg.extensions_library and isinstance(data, str):
        _register_extensions(opts, where)
    providers = _providers(ort, cfg)
    try:
        return ort.InferenceSession(data, sess_options=opts, providers=providers)
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/NotImplemented types
        raise InputError(f"{where}: ONNX Runtime cannot load it: {first_line(exc)}") from exc


def _session_options(ort: Any, cfg: SessionConfig) -> Any:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[cfg.graph_optimization]
    if cfg.intra_op_threads:
        opts.intra_op_num_threads = cfg.intra_op_threads
        opts.inter_op_num_threads = 1
    if cfg.optimized_model_path is not None:
        opts.optimized_model_filepath = str(cfg.optimized_model_path)
    for key, value in cfg.config_entries.items():
        opts.add_session_config_entry(key, value)
    # fatal only: every error ONNX Runtime raises reaches the user once, as our one-line message
    opts.log_severity_level = 4
    return opts


def _providers(ort: Any, cfg: SessionConfig) -> list[str]:
    available = set(ort.get_available_providers())
    missing = [p for p in cfg.providers if p not in available]
    if missing and cfg.require_providers:
        raise MissingDependencyError(
            f"ONNX Runtime provider {missing[0]} is not available "
            f"(have: {', '.join(sorted(available))}); install onnxruntime-gpu for CUDA"
        )
    chosen = [p for p in cfg.providers if p in available]
    return chosen if "CPUExecutionProvider" in chosen else [*chosen, "CPUExecutionProvider"]


def _with_plugins(model: Model, opts: Any, where: str) -> str | bytes:
    """What to hand ONNX Runtime: the model as given, or a copy whose plugin nodes ORT can run."""
    if isinstance(model, onnx.ModelProto):
        proto: onnx.ModelProto | None = model
    elif isinstance(model, bytes):
        proto = onnx.ModelProto.FromString(model)
    else:
        proto = _load_header(Path(model), where)
    if proto is None or not any(_custom_domains(proto)):
        if isinstance(model, onnx.ModelProto):
            return bytes(model.SerializeToString())
        return model if isinstance(model, bytes) else str(model)
    if isinstance(model, (str, Path)):  # the copy must carry the weights, not references to them
        proto = onnx.load(str(model))
    from trtforge.plugins.ort import for_onnxruntime

    try:
        prepared = for_onnxruntime(proto)
    except MissingDependencyError as exc:  # onnxruntime-extensions is not installed
        raise MissingDependencyError(f"{where}: {first_line(exc)}") from exc
    except (InputError, ValueError) as exc:  # a node without plugin, an attribute its plugin lacks
        raise InputError(f"{where}: {first_line(exc)}") from exc
    _register_extensions(opts, where)
    return bytes(prepared.SerializeToString())


def _register_extensions(opts: Any, where: str) -> None:
    from trtforge.plugins.ort import library_path

    try:
        opts.register_custom_ops_library(library_path())
    except MissingDependencyError as exc:
        raise MissingDependencyError(f"{where}: {first_line(exc)}") from exc


def _load_header(path: Path, where: str) -> onnx.ModelProto | None:
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception:  # not a readable ONNX file (e.g. an .ort model): ONNX Runtime says why
        return None


def _custom_domains(model: onnx.ModelProto) -> set[str]:
    return {n.domain for n in model.graph.node if n.domain not in ORT_DOMAINS}
