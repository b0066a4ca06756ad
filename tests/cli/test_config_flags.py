"""Flags and files are one language: every config field of every stage is a flag of its verb,
and flags give the same config as the ``[[stage]]`` table (checked through ``--dry-run``)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pytest
import tomllib

from tests.conftest import REPO
from trtforge.pipeline import registry
from trtforge.pipeline.cli import cli as group
from trtforge.pipeline.commands._options import MISSING_HELP, Flag, config_options, parse_value
from trtforge.pipeline.config import from_dict, to_dict
from trtforge.pipeline.errors import ConfigError

Cli = Callable[..., tuple[int, str, str]]

#: (stage, field) -> why the field has no flag on the stage's verb; only pipeline-only fields belong here
PIPELINE_ONLY: dict[tuple[str, str], str] = {
    # "time on the pipeline's validation data when it has some": the bench verb takes the data
    # itself (--data), so giving it or not is that choice on the command line
    ("bench", "use_data"): "the verb's --data is the data; giving it is the switch",
}

#: per stage, [[stage]] tables that together set every field (but the pipeline-only ones) to a
#: value other than its default; a field added to a config without a value here fails the tests
TABLES: dict[str, list[dict[str, Any]]] = {
    "export": [
        {
            "inputs": ["x:1x3x8x8", "mask:1x8"],
            "outputs": ["logits", "probs"],
            "static": True,
            "opset": 17,
            "do_constant_folding": False,
            "exporter": "torchscript",
            "atol": 0.001,
            "rtol": 0.01,
            "parity_batch": 5,
        }
    ],
    "fuse": [
        {
            "fold_constants": False,
            "fold_batchnorm": False,
            "matmul_add_to_gemm": False,
            "remove_identity": False,
            "simplify_shapes": False,
            "use_onnxslim": False,
            "atol": 0.001,
            "rtol": 0.01,
            "parity_batches": 3,
            "seed": 7,
            "max_latency_ratio": 1.1,
            "shapes": ["x:1x3x64x64", "mask:1x64"],
            "state": ["h:hn"],
        }
    ],
    "prune": [
        {
            "ratio": 0.25,
            "scope": "global",
            "criterion": "activation",
            "max_ratio_per_layer": 0.75,
            "round_to": 4,
            "skip": ["stem*", "head"],
            "group_ratios": {"g3": 0.1, "layer1.conv/a": 0.2},
            "lossless": True,
            "plan": "/tmp/plan.json",
            "sparsity": "2:4",
            "recover": True,
            "train_data": "/tmp/train.npz",
            "epochs": 3,
            "max_seconds": 60.0,
            "lr": 0.01,
            "batch_size": 16,
            "stat_batches": 4,
            "lossless_atol": 1e-6,
            "latency_runs": 0,
            "shapes": ["x:1x3x64x64"],
            "state": ["h:hn", "c:cn"],
            "accuracy_budget": "cosine:0.95,top1:5%",
            "max_latency_ratio": 1.25,
        }
    ],
    "quantize": [
        {
            "precision": "fp16",
            "target": "tensorrt",
            "method": "entropy",
            "percentile": 99.9,
            "calibration": "/tmp/images",
            "preprocess": {
                "size": [224, 224],
                "layout": "NHWC",
                "color": "BGR",
                "scale": 0.5,
                "mean": [0.485, 0.456, 0.406],
                "std": [0.229, 0.224, 0.225],
            },
            "num_samples": 64,
            "batch_size": 8,
            "accuracy_budget": "top1:0.5%",
            "validation": "/tmp/val.npz",
            "validation_samples": 100,
            "sensitivity": "always",
            "mixed_range_ratio": 16.0,
            "trt_version": "10.8.0",
            "threads": 2,
            "reduce_range": True,
            "measure_latency": False,
            "max_latency_ratio": 1.5,
            "min_quantized_fraction": 0.5,
            "plot": False,
            "shapes": ["x:1x3x640x640"],
            "state": ["state:stateN"],
        }
    ],
    "convert_fp16": [
        {
            "keep_io_types": False,
            "fp32_ops": ["Softmax", "Exp"],
            "fp32_nodes": ["n1", "n2"],
            "calibration": "/tmp/calib.npz",
            "num_samples": 16,
            "batch_size": 8,
            "overflow_margin": 0.25,
            "shapes": ["x:1x3x32x32"],
            "state": ["state:stateN"],
            "accuracy_budget": "none",
        }
    ],
    "build": [
        {
            "shapes": ["x:1x4,8x4,32x4", "x:64x4"],
            "workspace_mib": 512,
            "opt_level": 5,
            "timing_cache_dir": "/tmp/timing",
            "sparse_weights": True,
            "version_compatible": True,
            "hardware_compatible": True,
            "legacy_fp16": True,
            "legacy_calibration_file": "/tmp/calib.cache",
            "device": 1,
        },
        {
            "target": "onnxruntime",
            "provider": "cuda",
            "ort_format": "ort",
            "ort_opt_level": "all",
            "threads": 2,
            "atol": 0.001,
            "rtol": 0.01,
        },
    ],
    "validate": [
        {
            "atol": 0.01,
            "rtol": 0.1,
            "tolerances": "/tmp/tolerances.toml",
            "metric": "top1",
            "min_top1": 0.9,
            "metric_output": "logits",
            "random_data": True,
            "max_samples": 100,
            "batch_size": 8,
            "threads": 2,
            "seed": 3,
            "elementwise": False,
            "min_cosine": 0.99,
            "max_accuracy_drop": 0.01,
            "shapes": ["x:1x3x64x64"],
            "state": ["state:stateN"],
        }
    ],
    "bench": [
        {
            "batches": [1, 32],
            "threads": 0,
            "warmup": 2,
            "iters": 7,
            "duration": 1.5,
            "max_latency_ratio": 1.2,
            "shapes": ["x:1x3x224x224"],
            "state": ["state:stateN"],
        }
    ],
}

#: the verb's arguments besides the flags (nothing is read: --dry-run stops before)
POSITIONAL = {
    "export": ["model.pt2", "-o", "out.onnx"],
    "validate": ["ref.onnx", "cand.onnx"],
    "bench": ["a.onnx", "b.onnx"],
}


def _stages() -> list[str]:
    return [n for n in registry.stage_names() if not n.endswith("_for_test")]


def _command(stage: str) -> click.Command:
    cmd = group.get_command(click.Context(group), stage.replace("_", "-"))
    assert cmd is not None, f"stage {stage!r} has no verb `trtforge {stage.replace('_', '-')}`"
    return cmd


def _options(stage: str) -> dict[str, click.Option]:
    return {p.name: p for p in _command(stage).params if isinstance(p, click.Option) and p.name}


def _argv(stage: str, table: dict[str, Any]) -> list[str]:
    """The flags that say what ``table`` says, built from the verb's own options."""
    options = _options(stage)
    argv: list[str] = []
    for key, value in table.items():
        opt = options[key]
        flag = opt.opts[0]
        if isinstance(value, bool):
            argv.append(flag if value else opt.secondary_opts[0])
        elif isinstance(value, dict):
            for k, v in value.items():
                argv += [flag, f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}"]
        elif isinstance(value, list) and opt.multiple:
            for item in value:
                argv += [flag, str(item)]
        elif isinstance(value, list):
            argv += [flag, ",".join(map(str, value))]
        else:
            argv += [flag, str(value)]
    return argv


def test_stages_and_tables_cover_every_verb() -> None:
    assert sorted(TABLES) == sorted(_stages())


@pytest.mark.parametrize("stage", sorted(TABLES))
def test_every_config_field_is_a_flag_with_help(stage: str, cli: Cli) -> None:
    cls = registry.get_stage(stage).config_cls
    options = _options(stage)
    fields = [f.name for f in dataclasses.fields(cls) if f.init]
    allowed = {f for (s, f) in PIPELINE_ONLY if s == stage}
    assert allowed <= set(fields), f"stale PIPELINE_ONLY entries: {allowed - set(fields)}"
    missing = [f for f in fields if f not in options and f not in allowed]
    assert not missing, f"`trtforge {stage}` has no flag for {stage}.{missing}"
    helpless = [
        f for f in fields if f in options and (not options[f].help or options[f].help == MISSING_HELP)
    ]
    assert not helpless, f"add help for {stage}.{helpless} to the verb's FLAGS"
    code, out, _ = cli(stage.replace("_", "-"), "--help")
    assert code == 0
    for name in fields:
        if name in options:
            assert options[name].opts[0] in out, (stage, name)


@pytest.mark.parametrize("stage", sorted(TABLES))
def test_flags_give_the_config_the_table_gives(stage: str, cli: Cli) -> None:
    cls = registry.get_stage(stage).config_cls
    covered: set[str] = set()
    for table in TABLES[stage]:
        expected = {"type": stage, **to_dict(from_dict(cls, table, stage))}
        argv = [stage.replace("_", "-"), *POSITIONAL.get(stage, ["model.onnx", "-o", "out.onnx"])]
        argv += _argv(stage, table)
        code, out, err = cli(*argv, "--dry-run", "--json")
        assert code == 0, err
        assert json.loads(out) == expected
        code, out, err = cli(*argv, "--dry-run")  # the same as a [[stage]] table of a trtforge.toml
        assert code == 0, err
        printed = tomllib.loads(out)["stage"][0]
        assert printed.pop("type") == stage
        assert from_dict(cls, printed, stage) == from_dict(cls, table, stage)
        covered |= {k for k, v in table.items() if to_dict(v) != to_dict(_default(cls, k))}
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    allowed = {f for (s, f) in PIPELINE_ONLY if s == stage}
    assert fields - allowed - covered == set(), "give these fields a non-default value in TABLES"


def _default(cls: type, name: str) -> Any:
    return getattr(cls(), name)


@pytest.mark.parametrize(
    ("argv", "flag", "expect"),
    [
        (["bench", "a.onnx", "--batch", "1,x"], "--batch", "comma-separated list of integers"),
        (["prune", "m.onnx", "-o", "o.onnx", "--group-ratio", "g1"], "--group-ratio", "GROUP=RATIO"),
        (["prune", "m.onnx", "-o", "o.onnx", "--group-ratio", "g1=big"], "--group-ratio g1", "not a number"),
        (
            ["quantize", "m.onnx", "-o", "o.onnx", "--preprocess", "sz=2"],
            "--preprocess",
            "valid keys are: size",
        ),
        (
            ["quantize", "m.onnx", "-o", "o.onnx", "--preprocess", "color=XYZ"],
            "--preprocess color",
            "RGB, BGR",
        ),
        (["fuse", "m.onnx", "-o", "o.onnx", "--parity-batches", "0"], "fuse", "parity_batches must be >= 1"),
    ],
)
def test_bad_flag_values_exit_2_with_one_line(cli: Cli, argv: list[str], flag: str, expect: str) -> None:
    code, out, err = cli(*argv, "--dry-run")
    assert code == 2 and out == ""
    assert err.startswith(f"trtforge: error: {flag}") and expect in err and err.count("\n") == 1, err


def test_help_shows_defaults_and_the_renamed_flags(cli: Cli) -> None:
    code, out, _ = cli("bench", "--help")
    assert code == 0 and "--batch" in out and "[default: 1]" in out and "--use-data" not in out
    code, out, _ = cli("convert-fp16", "--help")
    text = " ".join(out.split())  # unwrapped
    assert (
        code == 0
        and "--fp16-io" in text
        and "Op type that stays FP32. Repeatable; replaces the default" in text
    )


def test_generator_refuses_help_for_a_field_that_does_not_exist() -> None:
    @dataclasses.dataclass(frozen=True)
    class Tiny:
        size: int = 1

    with pytest.raises(TypeError, match=r"no field\(s\) \['sise'\]"):
        config_options(Tiny, {"sise": Flag("typo")})


def test_parse_value_types() -> None:
    assert parse_value("224x224", tuple[int, ...], "--x") == (224, 224)
    assert parse_value("1,32", tuple[int, ...] | None, "--x") == (1, 32)
    assert parse_value("0.5,0.25", tuple[float, ...], "--x") == (0.5, 0.25)
    assert parse_value("off", bool, "--x") is False
    with pytest.raises(ConfigError, match=r"--x: '1,,2' is not a comma-separated list of integers"):
        parse_value("1,,2", tuple[int, ...], "--x")
    with pytest.raises(ConfigError, match="--x: 'maybe' is not true or false"):
        parse_value("maybe", bool, "--x")


def test_run_dry_run_prints_a_trtforge_toml_that_loads_to_the_same_config(cli: Cli, tmp_path: Path) -> None:
    from trtforge.pipeline.api import load_config

    source = REPO / "examples" / "digits" / "trtforge.toml"
    code, out, err = cli("run", source, "--dry-run")
    assert code == 0, err
    again = tmp_path / "trtforge.toml"
    again.write_text(out)
    assert load_config(again).to_dict() == load_config(source).to_dict()
