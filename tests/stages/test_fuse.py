"""The fuse stage and ``trtforge fuse``: BN removed from a torch export, parity, metrics, untouched input."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests import models_onnx as m
from tests.conftest import sha
from trtforge.pipeline.artifact import Artifact
from trtforge.pipeline.config import from_dict
from trtforge.pipeline.errors import ConfigError
from trtforge.pipeline.graph.fusion import op_counts
from trtforge.pipeline.registry import get_stage
from trtforge.pipeline.stage import DataPaths, StageContext, StageResult
from trtforge.pipeline.stages.fuse import FuseConfig, FuseStage


def residual_net_onnx(path: Path) -> Path:
    """A small Conv-BN-ReLU residual net, exported by the TorchScript exporter with BN kept."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.c1, self.b1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
            self.c2, self.b2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

        def forward(self, x):  # type: ignore[no-untyped-def]
            y = torch.relu(self.b1(self.c1(x)))
            return torch.relu(x + self.b2(self.c2(y)))

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem, self.bn = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
            self.block, self.fc = Block(8), nn.Linear(8, 4)

        def forward(self, x):  # type: ignore[no-untyped-def]
            y = self.block(torch.relu(self.bn(self.stem(x))))
            return self.fc(torch.flatten(y.mean((2, 3), keepdim=True), 1))

    torch.manual_seed(0)
    net = Net().eval()
    with torch.no_grad():  # BN statistics away from the identity, so a wrong fold shows
        for bn in (mod for mod in net.modules() if isinstance(mod, nn.BatchNorm2d)):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    torch.onnx.export(
        net,
        (torch.randn(1, 3, 16, 16),),
        str(path),
        dynamo=False,
        do_constant_folding=False,
        training=torch.onnx.TrainingMode.EVAL,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        opset_version=17,
    )
    return path


def run_stage(src: Path, out_dir: Path, data: Path | None = None, **cfg: object) -> StageResult:
    out_dir.mkdir()
    stage = FuseStage(from_dict(FuseConfig, cfg, "fuse"))
    ctx = StageContext(out_dir=out_dir, data=DataPaths(validation=data))
    return stage.run(Artifact.from_onnx_path(src), ctx)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter is asked for on purpose
def test_torch_export_loses_every_batchnorm(tmp_path: Path) -> None:
    src = residual_net_onnx(tmp_path / "net.onnx")
    before = op_counts(onnx.load(str(src)))
    assert before["BatchNormalization"] == 3, "the export must keep BN for this test to mean anything"
    digest = sha(src)
    result = run_stage(src, tmp_path / "out")
    assert sha(src) == digest, "the input model changed"
    out = result.artifact.path
    assert out == tmp_path / "out" / "model.onnx"
    after = op_counts(onnx.load(str(out)))
    assert "BatchNormalization" not in after
    assert after["Conv"] == before["Conv"] == 3
    metrics = result.metrics
    assert metrics["nodes_before"] == before and metrics["nodes_after"] == after
    assert metrics["node_count_after"] < metrics["node_count_before"]
    assert metrics["removed_by_pass"]["fold_bn_into_conv"] == 3
    assert metrics["rewrites_by_rule"]["fold_bn_into_conv"] == 3
    gate = result.gates[0]
    assert gate.name == "fuse_parity" and gate.passed and result
    assert gate.value is not None and gate.value <= 1e-4
    assert metrics["parity"]["source"] == "random" and metrics["parity"]["batches"] == 2
    assert result.modified is True
    assert result.artifact.iospec is not None and result.artifact.iospec.input_names() == ["x"]


def test_nothing_to_do_is_not_modified(tmp_path: Path) -> None:
    src = tmp_path / "relu.onnx"
    onnx.save(
        m.make([onnx.helper.make_node("Relu", ["x"], ["y"])], [m.vi("x", [2, 3])], [m.vi("y", [2, 3])]),
        str(src),
    )
    result = run_stage(src, tmp_path / "out")
    assert result.modified is False
    assert result.metrics["nodes_after"] == {"Relu": 1}
    assert result.gates[0].value == 0.0 and result


def test_parity_uses_validation_data_when_given(tmp_path: Path) -> None:
    src = tmp_path / "gemm_bn.onnx"
    onnx.save(m.gemm_bn(), str(src))
    data = tmp_path / "val.npz"
    np.savez(data, x=np.random.default_rng(1).standard_normal((20, 5)).astype(np.float32))
    result = run_stage(src, tmp_path / "out", data=data, parity_batches=2)
    parity = result.metrics["parity"]
    assert parity["source"] == "validation" and parity["batches"] == 2
    assert result.metrics["nodes_after"] == {"Gemm": 1}
    assert result.gates[0].passed


def test_config_is_strict() -> None:
    assert get_stage("fuse") is FuseStage
    with pytest.raises(ConfigError, match="valid keys are"):
        from_dict(FuseConfig, {"fold_bn": True}, "fuse")
    with pytest.raises(ConfigError, match="atol must be >= 0"):
        from_dict(FuseConfig, {"atol": -1.0}, "fuse")


def test_cli_json_and_table(tmp_path: Path, cli: Callable[..., tuple[int, str, str]]) -> None:
    src = tmp_path / "conv_bn.onnx"
    onnx.save(m.conv_bn(weight_via="Identity"), str(src))
    digest = sha(src)
    code, out, _ = cli("fuse", src, "-o", tmp_path / "fused.onnx", "--json")
    assert code == 0
    payload = json.loads(out)
    assert payload["nodes_before"]["BatchNormalization"] == 1
    assert payload["nodes_after"] == {"Conv": 1, "Relu": 1}
    assert payload["gates"][0]["name"] == "fuse_parity" and payload["gates"][0]["passed"]
    assert sha(src) == digest and (tmp_path / "fused.onnx").is_file()
    code, out, _ = cli("fuse", src, "-o", tmp_path / "fused2.onnx", "--no-fold-batchnorm")
    assert code == 0
    assert "BatchNormalization" in out and "Parity" in out
    assert op_counts(onnx.load(str(tmp_path / "fused2.onnx")))["BatchNormalization"] == 1


def test_cli_refuses_to_overwrite_its_input(tmp_path: Path, cli: Callable[..., tuple[int, str, str]]) -> None:
    src = tmp_path / "conv_bn.onnx"
    onnx.save(m.conv_bn(), str(src))
    digest = sha(src)
    code, _, err = cli("fuse", src, "-o", src)
    assert code == 2 and "overwrite the input" in err
    assert sha(src) == digest
