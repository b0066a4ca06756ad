"""Stage registry: ``@register_stage("fuse")`` on a Stage class; discovery by a static module list."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

from trtforge.pipeline.errors import ConfigError
from trtforge.pipeline.stage import Stage

S = TypeVar("S", bound=type[Stage[Any]])

_STAGES: dict[str, type[Stage[Any]]] = {}

#: every module that registers stages; a test imports each and checks the registry against it
STAGE_MODULES: tuple[str, ...] = (
    "trtforge.pipeline.stages.export",
    "trtforge.pipeline.stages.fuse",
    "trtforge.pipeline.stages.prune",
    "trtforge.pipeline.stages.quantize",
    "trtforge.pipeline.stages.convert_fp16",
    "trtforge.pipeline.stages.build",
    "trtforge.pipeline.stages.validate",
    "trtforge.pipeline.stages.bench",
)


def register_stage(name: str) -> Callable[[S], S]:
    def deco(cls: S) -> S:
        if name in _STAGES and _STAGES[name] is not cls:
            raise ValueError(f"stage {name!r} registered twice")
        cls.name = name
        _STAGES[name] = cls
        return cls

    return deco


def load_all() -> None:
    for mod in STAGE_MODULES:
        importlib.import_module(mod)


def get_stage(name: str) -> type[Stage[Any]]:
    load_all()
    if name not in _STAGES:
        raise ConfigError(f"unknown stage {name!r}; valid stages are: {', '.join(sorted(_STAGES))}")
    return _STAGES[name]


def stage_names() -> list[str]:
    load_all()
    return sorted(_STAGES)
