"""``trtforge validate REF.onnx CAND.{onnx,engine} --data PATH``: numerical parity and a task metric."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from trtforge.pipeline.commands._common import console, emit, fail_on_gates, gates_table, progress_bar, warn
from trtforge.pipeline.commands._options import Flag, data_option, model_argument, stage_options
from trtforge.pipeline.stages.validate import ValidateConfig

#: help and flag names of the validate stage's config fields (the options are generated in _options.py)
FLAGS: dict[str, Flag] = {
    "atol": Flag("Absolute tolerance (all outputs)."),
    "rtol": Flag("Relative tolerance (all outputs)."),
    "tolerances": Flag("TOML file with per-output tolerances: [outputs.NAME] atol = .. rtol = .."),
    "metric": Flag("Task metric: top1 = argmax agreement over the last axis (classifiers)."),
    "min_top1": Flag("Minimum top-1 agreement."),
    "metric_output": Flag("Output the metric reads (default: the first output)."),
    "random_data": Flag(
        "Without --data: use seeded random inputs (flagged in the output; says little about accuracy)."
    ),
    "max_samples": Flag("Compare at most this many samples."),
    "batch_size": Flag("Samples per run (a static batch size in the model wins)."),
    "threads": Flag("ONNX Runtime intra-op threads (default: all cores)."),
    "seed": Flag("Seed of --random-data."),
    "elementwise": Flag(
        "Gate on the element-wise tolerance; --no-elementwise reports it only (compressed models)."
    ),
    "min_cosine": Flag("Gate: every output's cosine similarity >= this."),
    "max_accuracy_drop": Flag("Gate: label accuracy drop <= this fraction (needs labels)."),
    "shapes": Flag(
        "With --random-data: size of a dynamic input, NAME:1x3x640x640 (the syntax of build --shapes).",
        metavar="NAME:SHAPE",
    ),
    "state": Flag(
        "Streaming model: state input IN fed by REFERENCE's output OUT of the previous step (the "
        "--data files are the steps of a sequence; a file holding IN starts from it).",
        metavar="IN:OUT",
    ),
}


@click.command("validate")
@model_argument("reference")
@model_argument("candidate")
@data_option(
    "--data",
    "Real inputs: .npy (one input), .npz keyed by input name (may carry 'labels'), or a directory.",
)
@stage_options("validate", ValidateConfig, FLAGS)
def command(reference: Path, candidate: Path, data: Path | None, config: ValidateConfig) -> None:
    """Compare CANDIDATE's outputs with REFERENCE's on real data.

    ONNX models run on ONNX Runtime CPU; a TensorRT engine (.engine/.plan/.trt, with the
    .json metadata trtforge build writes beside it) runs on its GPU.

    \b
    Pass rule, per output: every element satisfies
        |cand - ref| <= atol + rtol * |ref|
    (NaN fails; equal infinities pass). Reported per output: max/mean/p99 absolute
    and relative error (relative = |cand - ref| / max(|ref|, 1e-12); p99 exact up to
    2**20 elements per output, from a uniform sample beyond) and cosine similarity.
    With --metric top1 the argmax agreement must reach --min-top1; where the data
    carries 'labels', each model's accuracy is reported too.

    Exit codes: 0 passed, 1 a check failed, 2 bad input (missing data: pass --data or --random-data),
    3 an engine was given where TensorRT or a GPU is missing.
    """
    from trtforge.pipeline.api import run_stage
    from trtforge.pipeline.stage import DataPaths

    if data is None and config.random_data:
        warn(_random_warning())
    with progress_bar() as progress:
        result = run_stage(
            "validate",
            config,
            candidate,
            None,
            data=DataPaths(validation=data),
            reference=reference,
            progress=progress,
        )
    metrics = dict(result.metrics)
    emit({**metrics, "gates": gates_table(result)}, lambda: _print(metrics, candidate))
    fail_on_gates(result)


def _random_warning() -> str:
    from trtforge.pipeline.validation.feeds import RANDOM_DATA_WARNING

    return RANDOM_DATA_WARNING


def _print(m: dict[str, Any], candidate: Path) -> None:
    from rich import box
    from rich.table import Table

    con = console()
    if m.get("random_data"):
        con.print("[bold red]WARNING: RANDOM INPUTS[/] - " + str(m.get("warning", "")))
    con.print(f"{candidate} vs reference {m['reference']}: {m['samples']} samples in {m['batches']} batches")
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
    for col in (
        "output",
        "atol / rtol",
        "abs err max / mean / p99",
        "rel err max / mean / p99",
        "cosine",
        "outside",
        "result",
    ):
        table.add_column(col, overflow="fold")
    for o in m["outputs"]:
        table.add_row(
            o["name"],
            f"{o['atol']:g} / {o['rtol']:g}",
            _triple(o, "abs"),
            _triple(o, "rel"),
            f"{o['cosine']:.6f}",
            f"{o['violations']}/{o['count']}",
            "ok" if o["passed"] else f"FAIL {o['detail']}".strip(),
        )
    con.print(table)
    con.print(f"rule: {m['pass_rule']}")
    if m.get("top1"):
        t = m["top1"]
        con.print(
            f"top-1 agreement on {t['output']!r}: {t['agreement']:.4f} over {t['count']} "
            f"(min {t['min_top1']}) {'ok' if t['passed'] else 'FAIL'}"
        )
    if m.get("accuracy"):
        a = m["accuracy"]
        con.print(
            f"label accuracy: reference {a['reference']:.4f}, candidate {a['candidate']:.4f} "
            f"(drop {a['drop']:+.4f}) over {a['count']}"
        )
    con.print("parity: " + ("[green]PASSED[/]" if m["passed"] else "[red]FAILED[/]"))


def _triple(o: dict[str, Any], kind: str) -> str:
    return " / ".join(f"{o[f'{stat}_{kind}']:.3g}" for stat in ("max", "mean", "p99"))
