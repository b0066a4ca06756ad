"""``trtforge validate`` and ``trtforge bench`` through click: exit codes 0/1/2, JSON, warnings."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.validation import _models as m

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    x = m.samples(20)
    np.savez(tmp_path / "val.npz", x=x, labels=m.reference_labels(x))
    return {
        "ref": m.classifier(tmp_path / "ref.onnx"),
        "cand": m.perturbed(tmp_path / "cand.onnx", 0.05),
        "data": tmp_path / "val.npz",
    }


def test_validate_pass_exits_0_with_json(cli: Cli, files: dict[str, Path]) -> None:
    code, out, err = cli(
        "validate", files["ref"], files["ref"], "--data", files["data"], "--metric", "top1", "--json"
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["passed"] is True and data["random_data"] is False and data["top1"]["agreement"] == 1.0
    assert data["accuracy"]["candidate"] == 1.0 and {g["name"] for g in data["gates"]} == {"parity", "top1"}


def test_validate_fail_exits_1_and_names_the_output(cli: Cli, files: dict[str, Path]) -> None:
    code, out, err = cli("validate", files["ref"], files["cand"], "--data", files["data"])
    assert code == 1
    assert "FAILED" in out and "logits" in out
    assert (
        err.strip().startswith("trtforge: error: gate failed: parity") and len(err.strip().splitlines()) == 1
    )


def test_validate_tolerance_file_flag(cli: Cli, tmp_path: Path, files: dict[str, Path]) -> None:
    tol = tmp_path / "tol.toml"
    tol.write_text("[outputs.logits]\natol = 10.0\n[outputs.probs]\natol = 10.0\n")
    code, out, _ = cli(
        "validate", files["ref"], files["cand"], "--data", files["data"], "--tolerances", tol, "--json"
    )
    assert code == 0 and json.loads(out)["outputs"][0]["atol"] == 10.0


def test_validate_random_data_is_flagged(cli: Cli, files: dict[str, Path]) -> None:
    code, out, err = cli("validate", files["ref"], files["ref"], "--random-data", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["random_data"] is True and "RANDOM" in data["warning"]
    assert "WARNING" in err and "RANDOM" in err
    code, out, _ = cli("validate", files["ref"], files["ref"], "--random-data")
    assert code == 0 and "WARNING: RANDOM INPUTS" in out


def test_validate_missing_data_exits_2_with_one_line(cli: Cli, files: dict[str, Path]) -> None:
    code, out, err = cli("validate", files["ref"], files["ref"])
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "--data" in err and "--random-data" in err


@pytest.mark.parametrize(
    ("write", "expect"),
    [
        (lambda p: np.save(p, np.zeros((3, 5), np.float32)), "axis 1: 5 != 8"),
        (lambda p: np.save(p, np.array([[np.inf] * 8], np.float32)), "NaN or Inf"),
        (lambda p: np.save(p, np.zeros((3, 8), np.complex64)), "dtype complex64"),
    ],
)
def test_validate_bad_data_exits_2_naming_the_file(
    cli: Cli, tmp_path: Path, files: dict[str, Path], write, expect: str
) -> None:
    bad = tmp_path / "bad.npy"
    write(bad)
    code, _, err = cli("validate", files["ref"], files["ref"], "--data", bad)
    assert code == 2 and str(bad) in err and expect in err and len(err.strip().splitlines()) == 1


def test_validate_empty_data_directory_exits_2(cli: Cli, tmp_path: Path, files: dict[str, Path]) -> None:
    (tmp_path / "empty").mkdir()
    code, _, err = cli("validate", files["ref"], files["ref"], "--data", tmp_path / "empty")
    assert code == 2 and "empty" in err and "no .npy or .npz" in err and len(err.strip().splitlines()) == 1


def test_validate_missing_model_exits_2(cli: Cli, tmp_path: Path, files: dict[str, Path]) -> None:
    code, _, err = cli("validate", tmp_path / "nope.onnx", files["ref"], "--data", files["data"])
    assert code == 2 and "nope.onnx" in err and "not found" in err


def test_validate_help_states_the_pass_rule(cli: Cli) -> None:
    code, out, _ = cli("validate", "--help")
    assert code == 0 and "|cand - ref| <= atol + rtol * |ref|" in out


def test_bench_json_and_ratio_gate(cli: Cli, files: dict[str, Path]) -> None:
    code, out, err = cli(
        "bench", files["ref"], files["ref"], "--batch", "1,2", "--warmup", "1", "--iters", "5", "--json"
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["random_inputs"] is True and len(data["results"]) == 4
    assert all(r["p50_ms"] > 0 and r["throughput"] > 0 for r in data["results"])
    code, out, _ = cli("bench", files["ref"], files["cand"], "--iters", "5", "--warmup", "0")
    assert code == 0 and "vs first" in out and "cand.onnx" in out
    code, _, err = cli(
        "bench", files["ref"], files["cand"], "--iters", "5", "--max-latency-ratio", "0.000001"
    )
    assert code == 1 and "latency" in err
    code, _, err = cli("bench", files["ref"], "--batch", "1,x")
    assert code == 2 and "comma-separated" in err
