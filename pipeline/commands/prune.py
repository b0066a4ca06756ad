"""``trtforge prune IN.onnx -o OUT.onnx``: structural pruning on the ONNX graph."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from trtforge.pipeline.commands._common import console, emit, fail_on_gates, model_payload, progress_bar
from trtforge.pipeline.commands._options import Flag, data_option, model_and_output, stage_options
from trtforge.pipeline.stages._fidelity import fidelity_lines
from trtforge.pipeline.stages.prune import PruneConfig

#: help and flag names of the prune stage's config fields (the options are generated in _options.py)
FLAGS: dict[str, Flag] = {
    "ratio": Flag("Fraction of each channel group to remove, in [0, 1)."),
    "scope": Flag("group: --ratio of every group; global: --ratio of all channels, ranked across groups."),
    "criterion": Flag(
        "Importance: weight magnitude, BatchNorm scale, or mean |activation| on --calibration-data."
    ),
    "max_ratio_per_layer": Flag("Never remove more than this fraction of one group."),
    "round_to": Flag("Keep channel counts multiples of this (tensor-core friendly); 1 to disable."),
    "skip": Flag("Layers (node names, wildcards allowed) never to prune."),
    "group_ratios": Flag(
        "Per-group ratio GROUP=RATIO (group id or layer name), e.g. g3=0.25.",
        decls=("--group-ratio",),
        metavar="GROUP=RATIO",
    ),
    "lossless": Flag("Only remove channels that provably contribute nothing."),
    "plan": Flag("Apply this reviewed plan (JSON)."),
    "sparsity": Flag("Also prune Conv/Gemm/MatMul weights to 2:4 (TensorRT SPARSE_WEIGHTS)."),
    "recover": Flag("Fine-tune by distillation against the unpruned model (no labels)."),
    "train_data": Flag("Unlabeled inputs for --recover (.npy/.npz/dir); default: --calibration-data."),
    "epochs": Flag("Recovery epochs (at most)."),
    "max_seconds": Flag("Recovery time budget."),
    "lr": Flag("Recovery learning rate (Adam)."),
    "batch_size": Flag("Batch size for data passes."),
    "stat_batches": Flag("Calibration batches for activation importance and the parity report."),
    "lossless_atol": Flag("Parity tolerance of the lossless (dead-channel) check."),
    "latency_runs": Flag("Timed runs per model of the before/after latency (0: skip it and its gate)."),
    "max_latency_ratio": Flag(
        "Largest pruned/input latency ratio accepted (ONNX Runtime CPU, 1 thread, real shapes); a "
        "slower result is not written (exit 1)."
    ),
    "shapes": Flag(
        "Size of a dynamic input where no data gives it (random parity and latency inputs, the "
        "post-run check): NAME:1x3x640x640, the syntax of build --shapes.",
        metavar="NAME:SHAPE",
    ),
    "accuracy_budget": Flag(
        "Fidelity floor against MODEL on the validation (else calibration) data, e.g. cosine:0.999, "
        "top1:1%, iou:0.9; default cosine:0.99,top1:2%,iou:0.95; 'none' measures without failing.",
        metavar="SPEC",
    ),
    "state": Flag(
        "Streaming model: state input IN fed by output OUT of the previous step (the data files "
        "are the steps of a sequence; a file holding IN starts from it).",
        metavar="IN:OUT",
    ),
}


@click.command("prune")
@model_and_output("Pruned .onnx to write.")
@click.option(
    "--plan-out", type=click.Path(dir_okay=False, path_type=Path), help="Write the plan (JSON) here."
)
@data_option(
    "--calibration-data", "Inputs for activation importance and the parity report.", name="calibration"
)
@data_option(
    "--validation-data",
    "Inputs the pruned model is checked on against MODEL (fidelity); default: --calibration-data.",
)
@stage_options("prune", PruneConfig, FLAGS)
def command(
    model: Path,
    output: Path,
    plan_out: Path | None,
    calibration: Path | None,
    validation_data: Path | None,
    config: PruneConfig,
) -> None:
    """Remove channels from MODEL and write OUTPUT (MODEL itself is never changed).

    \b
    Channels coupled through residual adds, concats, splits, depthwise convs,
    Flatten->Gemm and attention heads are removed together; an op the pruner
    does not understand blocks the groups it touches (listed). Dead channels
    are always removed first, losslessly.

    The pruned model is checked against MODEL on the validation (else calibration) data: below
    --accuracy-budget (default cosine 0.99, argmax agreement 0.98) nothing is written, exit 1.

    Exit codes: 0 ok, 1 fidelity or lossless parity failed, 2 bad input (or nothing prunable).
    """
    from trtforge.pipeline.api import run_stage
    from trtforge.pipeline.stage import DataPaths

    with progress_bar() as progress:
        result = run_stage(
            "prune",
            config,
            model,
            output,
            data=DataPaths(calibration=calibration, validation=validation_data),
            extra_outputs={"plan.json": plan_out} if plan_out else None,
            progress=progress,
        )
    payload = {"plan": str(plan_out) if plan_out else None, **model_payload(output, result)}
    emit(payload, lambda: _print_summary(payload))
    fail_on_gates(result)


def _print_summary(p: dict[str, Any]) -> None:
    from rich.table import Table

    out = console()
    table = Table(title=f"Channel groups ({p['output'] or 'not written: a gate failed'})")
    for column in ("group", "layers", "channels", "removed", "dead", "status"):
        table.add_column(column)
    for g in p["groups"]:
        layers = ", ".join(g["sources"][:3]) + (f" +{len(g['sources']) - 3}" if len(g["sources"]) > 3 else "")
        status = "blocked: " + g["reasons"][0] if g["blocked"] else ""
        table.add_row(g["id"], layers, str(g["size"]), str(g["removed"]), str(g["dead"]), status)
    out.print(table)
    m, prm, sz = p["macs"], p["params"], p["size_bytes"]
    macs = (
        f"MACs {m['before']:,} -> {m['after']:,}"
        + (f" ({m['ratio']}x fewer)" if m.get("ratio") is not None else "")
        if m["before"] is not None
        else "MACs unknown"
    )
    out.print(
        f"{macs}; params {prm['before']:,} -> "
        f"{prm['after']:,}; size {sz['before'] / 1024:.1f} -> {sz['after'] / 1024:.1f} KiB"
    )
    if m.get("unknown"):
        out.print(f"MACs unknown: {m['unknown']}")
    if "latency_ms" in p:
        out.print(
            f"Latency (batch 1, 1 thread): {p['latency_ms']['before']} -> {p['latency_ms']['after']} ms"
        )
    par = p["parity"]
    out.print(f"Parity vs input ({par['source']} inputs): max abs diff {par['max_abs_diff']:.3g}")
    for line in fidelity_lines(p):
        out.print(line)
    if "recovery" in p:
        r = p["recovery"]
        out.print(
            f"Recovery: {r['epochs']} epochs in {r['seconds']} s; top-1 agreement "
            f"{r['before']['top1_agreement']} -> {r['after']['top1_agreement']}"
        )
    if "sparsity" in p:
        s = p["sparsity"]
        out.print(f"2:4 sparsity on {s['eligible']} of {len(s['layers'])} layers ({s['note']})")
    if not p["modified"]:
        out.print("Nothing to prune: no channel could be removed at these settings.")
