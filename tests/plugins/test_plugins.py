"""Plugin registry, the SwishBeta reference, its parity in ONNX Runtime, and export from torch.library."""

from __future__ import annotations

import importlib
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from trtforge.plugins.registry import (
    PLUGIN_MODULES,
    AttrSpec,
    custom_nodes,
    get_plugin,
    list_plugins,
    missing_plugins,
)
from trtforge.plugins.swish_beta import swish_beta


def _model(beta: float | None = 1.7, domain: str = "trtforge", op: str = "SwishBeta") -> onnx.ModelProto:
    attrs = {} if beta is None else {"beta": beta}
    nodes = [
        helper.make_node(op, ["x"], ["s"], domain=domain, name="act", **attrs),
        helper.make_node("Relu", ["s"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6])],
    )
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(domain, 1)], ir_version=10
    )


def test_registry_matches_static_module_list() -> None:
    for mod in PLUGIN_MODULES:
        importlib.import_module(mod)
    ids = [p.trt_id for p in list_plugins()]
    assert "trtforge::SwishBeta" in ids
    plugin = get_plugin("trtforge", "SwishBeta")
    assert plugin is not None and plugin.attributes == (AttrSpec("beta", "float", 1.0),)
    assert get_plugin("trtforge", "Nope") is None


def test_missing_plugins_lists_unknown_custom_nodes_only() -> None:
    assert [n.name for n in custom_nodes(_model())] == ["act"]
    assert missing_plugins(_model()) == []
    assert [n.name for n in missing_plugins(_model(domain="acme", op="Mystery"))] == ["act"]


def test_reference_matches_the_formula_and_is_stable() -> None:
    x = np.linspace(-50, 50, 101, dtype=np.float32)
    with np.errstate(over="raise"):
        y = swish_beta(x, 2.0)
    expected = x.astype(np.float64) / (1.0 + np.exp(-2.0 * x.astype(np.float64)))
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)
    assert swish_beta(x.astype(np.float16), 1.0).dtype == np.float16


def test_onnxruntime_parity_through_extensions() -> None:
    from trtforge.common.ort import create_session as session

    model = _model(beta=1.7)
    before = model.SerializeToString()
    x = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32) * 4
    y = session(model).run(None, {"x": x})[0]
    np.testing.assert_allclose(y, np.maximum(swish_beta(x, 1.7), 0), rtol=1e-6, atol=1e-6)
    assert model.SerializeToString() == before  # the domain move happens on a copy
    y_default = session(_model(beta=None)).run(None, {"x": x})[0]  # attribute default (beta=1, SiLU)
    np.testing.assert_allclose(y_default, np.maximum(swish_beta(x, 1.0), 0), rtol=1e-6, atol=1e-6)


def test_unknown_attribute_and_missing_plugin_are_errors() -> None:
    from trtforge.plugins.ort import PluginRuntimeError, for_onnxruntime

    model = _model()
    model.graph.node[0].attribute.append(helper.make_attribute("gamma", 2.0))
    with pytest.raises(ValueError, match="unknown attribute 'gamma'; valid: beta"):
        for_onnxruntime(model)
    with pytest.raises(PluginRuntimeError, match="node 'act' uses custom op acme::Mystery and no plugin"):
        for_onnxruntime(_model(domain="acme", op="Mystery"))


def test_torch_library_op_exports_as_the_custom_onnx_op(tmp_path) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxscript")
    from trtforge.common.ort import create_session as session
    from trtforge.plugins.torch_ops import define_ops, onnx_translation_table

    op = define_ops()

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(4, 4)

        def forward(self, x):
            return op(self.fc(x), 1.7)

    net = Net().eval()
    x = torch.randn(3, 4)
    program = torch.onnx.export(
        net, (x,), dynamo=True, custom_translation_table=onnx_translation_table(), verbose=False
    )
    program.save(str(tmp_path / "net.onnx"))
    model = onnx.load(str(tmp_path / "net.onnx"))
    custom = [n for n in model.graph.node if n.domain == "trtforge"]
    assert [n.op_type for n in custom] == ["SwishBeta"]
    assert helper.get_attribute_value(custom[0].attribute[0]) == pytest.approx(1.7)
    got = session(model).run(None, {model.graph.input[0].name: x.numpy()})[0]
    np.testing.assert_allclose(got, net(x).detach().numpy(), rtol=1e-5, atol=1e-5)


def test_plugins_list_cli(cli) -> None:
    code, stdout, _ = cli("plugins", "list", "--json")
    assert code == 0
    (entry,) = [p for p in json.loads(stdout) if p["id"] == "trtforge::SwishBeta"]
    assert entry["attributes"] == [{"name": "beta", "type": "float", "default": 1.0}]
    code, stdout, _ = cli("plugins", "list")
    assert code == 0 and "trtforge::SwishBeta" in stdout
