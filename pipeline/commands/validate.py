"""``trtforge validate REF.onnx CAND.{onnx,engine} --data PATH``: numerical parity and a task metric."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pipeline.commands._common import console, emit, fail_on_gates, output_options, progress_bar, warn


@click.command("validate")
@click.argument("reference", type=click.Path(path_type=Path))
@click.argument("candidate", type=click.Path(path_type=Path))
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    help="Real inputs: .npy (one input), .npz keyed by input name (may carry 'labels'), or a directory.",
)
@click.option(
    "--random-data",
    is_flag=True,
    help="Without --data: use seeded random inputs (flagged in the output; says little about accuracy).",
)
@click.option("--atol", type=float, default=1e-4, show_default=True, help="Absolute tolerance (all outputs).")
@click.option("--rtol", type=float, default=1e-3, show_default=True, help="Relative tolerance (all outputs).")
@click.option(
    "--tolerances",
    type=click.Path(path_type=Path),
    help="TOML file with per-output tolerances: [outputs.NAME] atol = .. rtol = ..",
)
@click.option(
    "--metric",
    type=click.Choice(["none", "top1"]),
    default="none",
    show_default=True,
    help="Task metric: top1 = argmax agreement over the last axis (classifiers).",
)
@click.option("--min-top1", type=float, default=0.99, show_default=True, help="Minimum top-1 agreement.")
@click.option("--metric-output", help="Output the metric reads (default: the first output).")
@click.option("--max-samples", type=int, help="Compare at most this many samples.")
@click.option(
    "--batch-size",
    type=int,
    default=32,
    show_default=True,
    help="Samples per run (a static batch size in the model wins).",
)
@click.option("--threads", type=int, help="ONNX Runtime intra-op threads (default: all cores).")
@click.option(
    "--elementwise/--no-elementwise",
    default=True,
    help="Gate on the element-wise tolerance; --no-elementwise reports it only (compressed models).",
)
@click.option("--min-cosine", type=float, help="Gate: every output's cosine similarity >= this.")
@click.option(
    "--max-accuracy-drop", type=float, help="Gate: label accuracy drop <= this fraction (needs labels)."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --random-data.")
@output_options
def command(
    reference: Path,
    candidate: Path,
    data: Path | None,
    random_data: bool,
    atol: float,
    rtol: float,
    tolerances: Path | None,
    metric: str,
    min_top1: float,
    metric_output: str | None,
    max_samples: int | None,
    batch_size: int,
    threads: int | None,
    seed: int,
    elementwise: bool,
    min_cosine: float | None,
    max_accuracy_drop: float | None,
) -> None:
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
    from pipeline.api import load_artifact, run_single
    from pipeline.artifact import Artifact
    from pipeline.backends.tensorrt import is_engine_path
    from pipeline.config import from_dict
    from pipeline.stage import DataPaths
    from pipeline.stages.validate import ValidateConfig

    raw: dict[str, Any] = {
        "atol": atol,
        "rtol": rtol,
        "tolerances": tolerances,
        "metric": metric,
        "min_top1": min_top1,
        "metric_output": metric_output,
        "random_data": random_data,
        "max_samples": max_samples,
        "batch_size": batch_size,
        "threads": threads,
        "seed": seed,
        "elementwise": elementwise,
        "min_cosine": min_cosine,
        "max_accuracy_drop": max_accuracy_drop,
    }
    cfg = from_dict(ValidateConfig, raw, "validate")
    ref = load_artifact(reference) if is_engine_path(reference) else Artifact.from_onnx_path(reference)
    if data is None and random_data:
        warn(_random_warning())
    with progress_bar() as progress:
        result = run_single(
            "validate",
            cfg,
            candidate,
            None,
            data=DataPaths(validation=data),
            reference=ref,
            progress=progress,
        )
    metrics = dict(result.metrics)
    emit({**metrics, "gates": [g.to_dict() for g in result.gates]}, lambda: _print(metrics, candidate))
    fail_on_gates(result)


def _random_warning() -> str:
    from pipeline.validation.feeds import RANDOM_DATA_WARNING

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
