"""The plugin registry: ``(domain, op_type) -> Plugin``; discovery by the static list ``PLUGIN_MODULES``."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

#: every module that registers plugins; a test imports each and checks the registry against it
PLUGIN_MODULES: tuple[str, ...] = ("trtforge.plugins.swish_beta",)

#: ONNX domains whose ops TensorRT's parser and ONNX Runtime know natively (no plugin needed)
STANDARD_DOMAINS = frozenset({"", "ai.onnx"})

_ATTR_TYPES = {"float": float, "int": int, "str": str}


@dataclass(frozen=True)
class AttrSpec:
    """An ONNX attribute of a custom op: name, type (``float``/``int``/``str``) and default."""

    name: str
    type: str
    default: Any

    def __post_init__(self) -> None:
        if self.type not in _ATTR_TYPES:
            raise ValueError(
                f"attribute {self.name!r}: type {self.type!r} not one of {', '.join(_ATTR_TYPES)}"
            )


@dataclass(frozen=True)
class Plugin:
    """One custom op: its ONNX signature, a NumPy reference, and a TensorRT registration hook.

    ``reference(*inputs, **attrs)`` returns the output array(s). ``register_tensorrt()`` imports
    ``tensorrt.plugin`` and registers the TensorRT implementation; it is called only where TensorRT
    and a GPU exist.
    """

    domain: str
    op_type: str
    description: str
    attributes: tuple[AttrSpec, ...]
    num_inputs: int
    num_outputs: int
    reference: Callable[..., np.ndarray]
    register_tensorrt: Callable[[], None]
    dtypes: tuple[str, ...] = ("float32",)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def trt_id(self) -> str:
        """The ``tensorrt.plugin`` id ``"<namespace>::<name>"``."""
        return f"{self.domain}::{self.op_type}"

    def attrs_of(self, node: onnx.NodeProto) -> dict[str, Any]:
        """The node's attributes with defaults filled in; unknown attributes raise ``ValueError``."""
        known = {a.name: a for a in self.attributes}
        values = {a.name: a.default for a in self.attributes}
        for attr in node.attribute:
            if attr.name not in known:
                raise ValueError(
                    f"node {node.name!r} ({self.domain}::{self.op_type}): unknown attribute {attr.name!r}; "
                    f"valid: {', '.join(known) or 'none'}"
                )
            value = onnx.helper.get_attribute_value(attr)
            values[attr.name] = (
                value.decode() if isinstance(value, bytes) else _ATTR_TYPES[known[attr.name].type](value)
            )
        return values

    def run_reference(self, node: onnx.NodeProto, *inputs: np.ndarray) -> np.ndarray:
        return self.reference(*inputs, **self.attrs_of(node))


_PLUGINS: dict[tuple[str, str], Plugin] = {}


def register_plugin(plugin: Plugin) -> Plugin:
    key = (plugin.domain, plugin.op_type)
    if key in _PLUGINS and _PLUGINS[key] is not plugin:
        raise ValueError(f"plugin {plugin.trt_id} registered twice")
    _PLUGINS[key] = plugin
    return plugin


def load_all() -> None:
    for mod in PLUGIN_MODULES:
        importlib.import_module(mod)


def get_plugin(domain: str, op_type: str) -> Plugin | None:
    load_all()
    return _PLUGINS.get((domain, op_type))


def list_plugins() -> list[Plugin]:
    load_all()
    return [_PLUGINS[k] for k in sorted(_PLUGINS)]


def custom_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Nodes outside the standard ONNX domain (main graph only; TensorRT rejects them in subgraphs)."""
    return [n for n in model.graph.node if n.domain not in STANDARD_DOMAINS]


def missing_plugins(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Custom-op nodes that no registered plugin implements."""
    return [n for n in custom_nodes(model) if get_plugin(n.domain, n.op_type) is None]


def plugins_used(model: onnx.ModelProto) -> list[Plugin]:
    found: dict[str, Plugin] = {}
    for node in custom_nodes(model):
        plugin = get_plugin(node.domain, node.op_type)
        if plugin is not None:
            found[plugin.trt_id] = plugin
    return list(found.values())


def for_tensorrt(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose plugin nodes carry ``plugin_namespace``/``plugin_version``, which TensorRT's ONNX
    parser uses to find the ``tensorrt.plugin`` registered as ``<domain>::<op_type>``."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for node in custom_nodes(out):
        if get_plugin(node.domain, node.op_type) is None:
            continue
        names = {a.name for a in node.attribute}
        if "plugin_namespace" not in names:
            node.attribute.append(onnx.helper.make_attribute("plugin_namespace", node.domain))
        if "plugin_version" not in names:
            node.attribute.append(onnx.helper.make_attribute("plugin_version", "1"))
    return out
