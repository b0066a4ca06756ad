"""The CPU-side parts of the engine builder: parser error report, plugin preparation of the ONNX file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from trtforge.pipeline.engine.builder import format_parser_errors, prepare_onnx


@dataclass
class ParserErrorRecord:
    """Holds what TensorRT's ParserError reports (name, op, reason) for the formatting test."""

    name: str
    op: str
    reason: str

    def node_name(self) -> str:
        return self.name

    def node_operator(self) -> str:
        return self.op

    def desc(self) -> str:
        return self.reason


def test_parser_errors_one_line_per_node() -> None:
    text = format_parser_errors(
        Path("m.onnx"),
        [
            ParserErrorRecord("conv_3", "Conv", "kernel weights must be\n initializers"),
            ParserErrorRecord("", "", "no node"),
        ],
    )
    assert "\n" not in text
    assert "rejected 2 node(s)" in text
    assert "node 'conv_3' (Conv): kernel weights must be initializers" in text
    assert "node '?' (?): no node" in text


def _custom_model() -> onnx.ModelProto:
    node = helper.make_node("SwishBeta", ["x"], ["y"], domain="trtforge", beta=1.5, name="act")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
    )
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("trtforge", 1)], ir_version=10
    )


def test_prepare_onnx_names_plugin_namespace_on_a_copy(tmp_path: Path) -> None:
    src = tmp_path / "m.onnx"
    model = _custom_model()
    onnx.save(model, src)
    before = src.read_bytes()
    work = tmp_path / "work"
    work.mkdir()
    prepared = prepare_onnx(model, src, work)
    assert prepared != src and src.read_bytes() == before
    attrs = {a.name: helper.get_attribute_value(a) for a in onnx.load(prepared).graph.node[0].attribute}
    assert attrs == {"beta": 1.5, "plugin_namespace": b"trtforge", "plugin_version": b"1"}
    assert not any(a.name == "plugin_namespace" for a in model.graph.node[0].attribute)


def test_prepare_onnx_plain_model_is_parsed_in_place(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph)
    assert prepare_onnx(model, tmp_path / "m.onnx", tmp_path) == tmp_path / "m.onnx"
