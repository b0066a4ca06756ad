"""Loading PyTorch models for the export stage: ``.pt2``, TorchScript, ``package.module:factory``.

Every unusable source (missing file, directory, unknown factory, a state_dict that does not fit)
raises a one-line ``InputError`` naming the file or spec and the fix. torch is imported lazily.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from trtforge.pipeline.artifact import Artifact, ArtifactKind, sha256_file
from trtforge.pipeline.deps import require
from trtforge.pipeline.errors import InputError


@dataclass
class TorchModel:
    """A loaded model: ``module`` is an nn.Module, ScriptModule or ExportedProgram (``kind``)."""

    module: Any
    kind: Literal["exported", "script", "module"]
    names: list[str]
    dtypes: dict[str, str]
    shapes: dict[str, tuple[int | None, ...]]  # None = dynamic dim; absent = unknown shape
    source: str


def _source(model: str, weights: str | None) -> tuple[str, str | None, Path | None]:
    """(spec, weights, file): ``file`` is None for ``package.module:factory``; errors are one line."""
    p = Path(model)
    if p.is_dir():
        raise InputError(f"{p}: is a directory; pass a .pt2 or TorchScript file or package.module:factory")
    if not p.exists():
        if ":" in model and not model.endswith((".pt2", ".pt", ".pth")):
            require("torch", "exporting PyTorch models")
            _import_factory(model)
            return model, weights, None
        raise InputError(f"{p}: file not found; pass a .pt2 or TorchScript file or package.module:factory")
    if weights is not None and p.suffix == ".pt2":
        raise InputError(f"{weights}: a .pt2 program carries its weights; drop the weights")
    return model, weights, p


def torch_artifact(model: str, weights: str | None = None) -> Artifact:
    """The Artifact of a torch model (file or ``package.module:factory``); hashes content + spec."""
    spec, weights, file = _source(model, weights)
    h = hashlib.sha256()
    if file is None:
        h.update(spec.encode())
        origin = getattr(sys.modules.get(spec.split(":")[0]), "__file__", None)
        if origin:
            h.update(sha256_file(origin).encode())
    else:
        h.update(sha256_file(file).encode())
    if weights is not None:
        w = Path(weights)
        if not w.is_file():
            raise InputError(f"{w}: weights file not found; pass a state_dict saved with torch.save")
        h.update(sha256_file(w).encode())
    source = {"source": "torch", "model": spec, "weights": weights}
    return Artifact(path=Path(spec), kind=ArtifactKind.TORCH, sha256=h.hexdigest(), provenance=(source,))


@contextlib.contextmanager
def _cwd_importable() -> Iterator[None]:
    """``package.module`` resolves against the working directory, as ``python -m`` would."""
    added = "" not in sys.path and str(Path.cwd()) not in sys.path
    if added:
        sys.path.insert(0, str(Path.cwd()))
    try:
        yield
    finally:
        if added:
            sys.path.remove(str(Path.cwd()))


def _import_factory(spec: str) -> Any:
    import importlib

    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise InputError(f"{spec}: not of the form package.module:factory")
    try:
        with _cwd_importable():
            module = importlib.import_module(module_name)
    except Exception as exc:  # user code: any import failure is bad input
        raise InputError(
            f"{spec}: cannot import {module_name!r} ({type(exc).__name__}: {exc}); check "
            "package.module:factory and run from the directory holding the package"
        ) from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise InputError(f"{spec}: {module_name!r} has no callable {attr!r}; check package.module:factory")
    return factory


def load_torch_model(model: str, weights: str | None = None) -> TorchModel:
    """Load a model source in eval mode; unusable sources raise one-line ``InputError``."""
    spec, weights, file = _source(model, weights)
    require("torch", "exporting PyTorch models")
    if file is None:
        return _from_factory(spec, weights)
    if file.suffix == ".pt2":
        return _from_program(file)
    return _from_script(file, weights)


def _from_program(file: Path) -> TorchModel:
    torch = require("torch")
    try:
        program = torch.export.load(str(file))
    except Exception as exc:  # torch raises RuntimeError, KeyError, zip errors...
        raise InputError(
            f"{file}: not a torch.export program ({type(exc).__name__}); save one with "
            "torch.export.save, or pass a TorchScript file"
        ) from exc
    names = list(program.graph_signature.user_inputs)
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    shapes, dtypes = {}, {}
    for name in names:
        val = placeholders[name].meta.get("val")
        if isinstance(val, torch.Tensor):
            shapes[name] = tuple(d if isinstance(d, int) else None for d in val.shape)
            dtypes[name] = str(val.dtype).removeprefix("torch.")
    return TorchModel(program, "exported", names, dtypes, shapes, str(file))


def _from_script(file: Path, weights: str | None) -> TorchModel:
    torch = require("torch")
    try:
        module = torch.jit.load(str(file), map_location="cpu")
    except Exception as exc:  # RuntimeError for anything that is not a TorchScript archive
        if file.suffix in (".pt", ".pth"):
            hint = "a state_dict needs package.module:factory with --weights"
        else:
            hint = "save the model with torch.jit.save or torch.export.save (.pt2)"
        raise InputError(f"{file}: not a TorchScript file ({type(exc).__name__}); {hint}") from exc
    if weights is not None:
        _load_weights(module, weights)
    names = [a.name for a in module.forward.schema.arguments[1:]]
    return TorchModel(module.eval(), "script", names, {}, {}, str(file))


def _from_factory(spec: str, weights: str | None) -> TorchModel:
    import inspect

    torch = require("torch")
    factory = _import_factory(spec)
    try:
        module = factory()
    except Exception as exc:  # user code
        raise InputError(f"{spec}: calling the factory failed ({type(exc).__name__}: {exc})") from exc
    if not isinstance(module, torch.nn.Module):
        raise InputError(f"{spec}: the factory returned {type(module).__name__}, not a torch.nn.Module")
    if weights is not None:
        _load_weights(module, weights)
    params = inspect.signature(module.forward).parameters.values()
    names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return TorchModel(module.eval(), "module", names, {}, {}, spec)


def _load_weights(module: Any, weights: str) -> None:
    """Load a state_dict strictly; a mismatch names the file and the first missing/unexpected key."""
    torch = require("torch")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors of every kind
        raise InputError(
            f"{weights}: cannot read weights ({type(exc).__name__}); save a state_dict "
            "with torch.save(model.state_dict(), path)"
        ) from exc
    if isinstance(state, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), Mapping):
                state = state[key]
    if not isinstance(state, Mapping):
        raise InputError(f"{weights}: holds a {type(state).__name__}, not a state_dict")
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        what = f"missing key {missing[0]!r}" if missing else f"unexpected key {unexpected[0]!r}"
        raise InputError(
            f"{weights}: state_dict does not match the model ({what}; {len(missing)} missing, "
            f"{len(unexpected)} unexpected); pass the weights saved from this architecture"
        )
    for k, v in own.items():
        if tuple(v.shape) != tuple(state[k].shape):
            raise InputError(
                f"{weights}: {k!r} has shape {tuple(state[k].shape)}, the model wants "
                f"{tuple(v.shape)}; pass the weights saved from this architecture"
            )
    module.load_state_dict(state, strict=True)
