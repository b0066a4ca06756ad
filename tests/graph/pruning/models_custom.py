"""Graphs through ops the built-in handlers do not know, and handlers for them written the way a
user would (on the public ``OpHandler`` interface), for the registry tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from trtforge.pipeline.graph.pruning import Carry, Cut, OpHandler, pass_to
from trtforge.pipeline.graph.pruning.deps import Analysis, Fixup, Space
from trtforge.pipeline.graph.pruning.graph import GraphIndex

from .models import RNG, G, head

DOMAIN = "com.example"


@dataclass(frozen=True)
class ShrinkHandler(OpHandler):
    """ONNX Shrink is element-wise: ``y = x − bias`` if ``x > λ``, ``x + bias`` if ``x < −λ``, else 0.
    Any tracked axis passes through; ``|0| ≤ λ``, so a zero channel stays zero."""

    carry: Carry = Carry.ZERO

    def propagate(self, node: onnx.NodeProto, idx: int, space: Space, an: Analysis) -> None:
        pass_to(node, an, space, node.output[0], space.axis)


@dataclass(frozen=True)
class ChannelScaleHandler(OpHandler):
    """``com.example::ChannelScale(x, s)``: ``y[n, c, ...] = s[c] · x[n, c, ...]``, with an attribute
    ``channels`` = C that must follow the kept count; one multiply per output element."""

    def propagate(self, node: onnx.NodeProto, idx: int, space: Space, an: Analysis) -> None:
        if idx != 0 or space.axis != 1:
            return super().propagate(node, idx, space, an)
        an.link(space, an.param(node.input[1], 0))
        if pass_to(node, an, space, node.output[0], 1) is not None:
            an.fixup("channels", node)
        return None

    def fix(self, node: onnx.NodeProto, fixup: Fixup, cut: Cut) -> None:
        kept = cut.kept(node.output[0], 1)
        assert kept is not None
        for a in node.attribute:
            if a.name == "channels":
                a.i = kept

    def macs(self, node: onnx.NodeProto, index: GraphIndex) -> int:
        shape = index.shape(node.input[0])  # y has x's shape (shape inference cannot see through it)
        return 0 if shape is None or None in shape else int(np.prod([int(d or 0) for d in shape]))


def shrink_chain(dead: tuple[int, ...] = ()) -> onnx.ModelProto:
    """conv1 -> Shrink -> conv2 -> ReLU -> head; ``dead`` output channels of conv1 are all zero."""
    g = G()
    a = g.op("Shrink", [g.conv("x", 3, 16, name="conv1")], name="shrink", lambd=0.1, bias=0.05)
    y = g.op("Relu", [g.conv(a, 16, 16, name="conv2")])
    m = g.model({"x": ["N", 3, 8, 8]}, [head(g, y, 16)])
    conv1 = next(n for n in m.graph.node if n.name == "conv1")
    for t in m.graph.initializer:
        if t.name in conv1.input[1:] and dead:
            value = numpy_helper.to_array(t).copy()
            value[list(dead)] = 0.0
            t.CopyFrom(numpy_helper.from_array(value, t.name))
    return m


def channel_scale(channels: int = 16) -> onnx.ModelProto:
    """conv1 -> com.example::ChannelScale -> conv2 -> ReLU -> head (ONNX Runtime cannot run it)."""
    g = G()
    scale = g.const((RNG.random(channels) + 0.5).astype(np.float32), "scale")
    conv1 = g.conv("x", 3, channels, name="conv1")
    s = g.op("ChannelScale", [conv1, scale], name="cscale", domain=DOMAIN, channels=channels)
    out = head(g, g.op("Relu", [g.conv(s, channels, channels, name="conv2")]), channels)
    graph = helper.make_graph(
        g.nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", 10])],
        g.inits,
        value_info=[helper.make_tensor_value_info(s, TensorProto.FLOAT, ["N", channels, 8, 8])],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)]
    m = helper.make_model(graph, opset_imports=opsets)
    m.ir_version = 8
    onnx.checker.check_model(m, full_check=True)
    return m


def as_mul(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with every ChannelScale written as the standard ``Mul(x, s[C, 1, 1])`` (runs on ORT)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {t.name: numpy_helper.to_array(t) for t in out.graph.initializer}
    for node in out.graph.node:
        if node.op_type == "ChannelScale":
            name, chw = f"{node.input[1]}__chw", inits[node.input[1]].reshape(-1, 1, 1)
            out.graph.initializer.append(numpy_helper.from_array(chw, name))
            node.input[1] = name
            node.domain, node.op_type = "", "Mul"
            del node.attribute[:]
    del out.opset_import[1:]
    return out
