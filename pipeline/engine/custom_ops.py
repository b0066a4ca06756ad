"""Custom ops of a model matched to registered plugins before an engine or ONNX Runtime build."""

from __future__ import annotations

from pathlib import Path

import onnx

from trtforge.pipeline.errors import InputError


def check_custom_ops(
    model: onnx.ModelProto, source: Path, runtime_domains: frozenset[str] = frozenset()
) -> list[str]:
    """Plugin ids for the model's custom ops; ``InputError`` naming each node that has no plugin.

    ``runtime_domains``: domains the target runtime implements itself (ONNX Runtime's ``com.microsoft``
    and ``ai.onnx.ml`` for the onnxruntime target); their nodes need no plugin.
    """
    from trtforge.plugins.registry import list_plugins, missing_plugins, plugins_used

    missing = [n for n in missing_plugins(model) if n.domain not in runtime_domains]
    if missing:
        nodes = ", ".join(f"{n.name or '?'!r} ({n.domain}::{n.op_type})" for n in missing)
        have = ", ".join(p.trt_id for p in list_plugins()) or "none"
        raise InputError(
            f"{source}: custom op node(s) {nodes} have no plugin; registered plugins: {have} "
            "(see trtforge plugins list)"
        )
    return [p.trt_id for p in plugins_used(model)]
