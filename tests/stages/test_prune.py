"""The prune stage and CLI verb on tiny models: report, plan round trip, bad input."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from tests.graph.pruning import models
from trtforge.pipeline.api import run_single
from trtforge.pipeline.cli import cli
from trtforge.pipeline.config import from_dict
from trtforge.pipeline.errors import ConfigError, InputError
from trtforge.pipeline.stage import DataPaths
from trtforge.pipeline.stages.prune import PruneConfig


@pytest.fixture
def chain(tmp_path):
    path = tmp_path / "chain.onnx"
    onnx.save(models.chain(), path)
    return path


def test_stage_reports_groups_macs_and_writes_plan(chain, tmp_path):
    cfg = PruneConfig(ratio=0.5, round_to=8, latency_runs=2)
    result = run_single(
        "prune", cfg, chain, tmp_path / "out.onnx", extra_outputs={"plan.json": tmp_path / "p.json"}
    )
    m = result.metrics
    assert result.modified and m["removed_units"] == 16
    assert m["macs"]["after"] < m["macs"]["before"] / 3
    assert m["params"]["after"] < m["params"]["before"]
    assert [g["removed"] for g in m["groups"]] == [8, 8, 0]
    assert json.loads((tmp_path / "p.json").read_text())["format"] == "trtforge-prune-plan"
    again = run_single(
        "prune", PruneConfig(plan=tmp_path / "p.json", latency_runs=0), chain, tmp_path / "b.onnx"
    )
    assert (tmp_path / "b.onnx").read_bytes() == (tmp_path / "out.onnx").read_bytes()
    assert again.metrics["removed_units"] == 16


def test_lossless_stage_gate_holds(tmp_path):
    path = tmp_path / "dead.onnx"
    onnx.save(models.dead_channels(), path)
    result = run_single(
        "prune", PruneConfig(lossless=True, round_to=1, latency_runs=0), path, tmp_path / "o.onnx"
    )
    assert result and result.gates[0].name == "prune_lossless_parity"
    assert result.metrics["dead_units"] == 4 and result.metrics["parity"]["max_abs_diff"] <= 1e-5


def test_recovery_and_sparsity_in_the_stage(chain, tmp_path):
    data = tmp_path / "calib.npz"
    np.savez(data, x=np.random.default_rng(0).standard_normal((32, 3, 8, 8)).astype(np.float32))
    cfg = PruneConfig(ratio=0.5, round_to=4, recover=True, epochs=3, sparsity="2:4", latency_runs=0)
    result = run_single("prune", cfg, chain, tmp_path / "o.onnx", data=DataPaths(calibration=data))
    rec = result.metrics["recovery"]
    assert rec["epochs"] == 3 and rec["samples"] == 32
    assert rec["after"]["mean_abs_diff"] < rec["before"]["mean_abs_diff"]
    assert result.metrics["sparsity"]["eligible"] >= 1


def test_nothing_prunable_is_bad_input(tmp_path):
    g = models.G()
    y = g.conv("x", 3, 8, name="only")
    path = tmp_path / "one.onnx"
    onnx.save(g.model({"x": [1, 3, 8, 8]}, [y]), path)
    with pytest.raises(InputError, match="nothing can be pruned"):
        run_single("prune", PruneConfig(latency_runs=0), path, tmp_path / "o.onnx")


def test_bad_config_values():
    with pytest.raises(ConfigError, match="ratio"):
        from_dict(PruneConfig, {"ratio": 1.0}, "prune")
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(PruneConfig, {"ratios": 0.1}, "prune")


def test_recover_without_data_is_a_config_error(chain, tmp_path):
    with pytest.raises(ConfigError, match="--train-data"):
        run_single("prune", PruneConfig(recover=True, latency_runs=0), chain, tmp_path / "o.onnx")


def test_cli_prune_json_and_exit_codes(chain, tmp_path):
    runner = CliRunner()
    res = runner.invoke(
        cli, ["prune", str(chain), "-o", str(tmp_path / "o.onnx"), "--json", "--round-to", "1"]
    )
    assert res.exit_code == 0, res.output
    payload = json.loads(res.output)
    assert payload["removed_units"] == 16 and (tmp_path / "o.onnx").exists()
    res = runner.invoke(cli, ["prune", str(chain), "-o", str(tmp_path / "x.onnx"), "--ratio", "-0.1"])
    assert res.exit_code == 2
    res = runner.invoke(
        cli, ["prune", str(chain), "-o", str(tmp_path / "x.onnx"), "--plan", str(tmp_path / "no")]
    )
    assert res.exit_code == 2 and "plan file not found" in res.output
