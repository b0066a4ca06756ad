"""Stage registry: ``@register_stage("fuse")`` on a Stage class; discovery by a static module list."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TypeVar

from pipeline.errors import ConfigError
from pipeline.stage import Stage

S = TypeVar("S", bound=type[Stage])

_STAGES: dict[str, type[Stage]] = {}

#: every module that registers stages; a test imports each and checks the registry against it
STAGE_MODULES: tuple[str, ...] = (
    "pipeline.stages.export",
    "pipeline.stages.fuse",
    "pipeline.stages.prune",
    "pipeline.stages.quantize",
    "pipeline.stages.convert_fp16",
    "pipeline.stages.build",
    "pipeline.stages.validate",
    "pipeline.stages.bench",
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


def get_stage(name: str) -> type[Stage]:
    load_all()
    if name not in _STAGES:
        raise ConfigError(f"unknown stage {name!r}; valid stages are: {', '.join(sorted(_STAGES))}")
    return _STAGES[name]


def stage_names() -> list[str]:
    load_all()
    return sorted(_STAGES)
