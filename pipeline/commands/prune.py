"""``trtforge prune IN.onnx -o OUT.onnx``: structural pruning on the ONNX graph."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pipeline.commands._common import console, emit, fail_on_gates, output_options, progress_bar


def _group_ratios(values: tuple[str, ...]) -> dict[str, float]:
    from pipeline.errors import ConfigError

    out = {}
    for text in values:
        key, sep, ratio = text.partition("=")
        try:
            out[key] = float(ratio)
        except ValueError:
            sep = ""
        if not sep or not key:
            raise ConfigError(
                f"--group-ratio {text!r} is not of the form GROUP=RATIO, e.g. g3=0.25 or conv1=0.25"
            )
    return out


@click.command("prune")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Pruned .onnx to write.")
@click.option(
    "--ratio",
    type=float,
    default=0.5,
    show_default=True,
    help="Fraction of each channel group to remove, in [0, 1).",
)
@click.option(
    "--scope",
    type=click.Choice(["group", "global"]),
    default="group",
    show_default=True,
    help="group: --ratio of every group; global: --ratio of all channels, ranked across groups.",
)
@click.option(
    "--criterion",
    type=click.Choice(["l1", "l2", "bn", "activation"]),
    default="l1",
    show_default=True,
    help="Importance: weight magnitude, BatchNorm scale, or mean |activation| on --calibration-data.",
)
@click.option(
    "--max-ratio-per-layer",
    type=float,
    default=0.9,
    show_default=True,
    help="Never remove more than this fraction of one group.",
)
@click.option(
    "--round-to",
    type=int,
    default=8,
    show_default=True,
    help="Keep channel counts multiples of this (tensor-core friendly); 1 to disable.",
)
@click.option(
    "--skip", multiple=True, help="Layers (node names, wildcards allowed) never to prune; repeatable."
)
@click.option(
    "--group-ratio",
    "group_ratio",
    multiple=True,
    help="Per-group ratio GROUP=RATIO (group id or layer name); repeatable.",
)
@click.option("--lossless", is_flag=True, help="Only remove channels that provably contribute nothing.")
@click.option("--plan", "plan", type=click.Path(path_type=Path), help="Apply this reviewed plan (JSON).")
@click.option("--plan-out", type=click.Path(path_type=Path), help="Write the plan (JSON) here.")
@click.option(
    "--sparsity",
    type=click.Choice(["none", "2:4"]),
    default="none",
    show_default=True,
    help="Also prune Conv/Gemm/MatMul weights to 2:4 (TensorRT SPARSE_WEIGHTS).",
)
@click.option(
    "--recover", is_flag=True, help="Fine-tune by distillation against the unpruned model (no labels)."
)
@click.option(
    "--train-data",
    type=click.Path(path_type=Path),
    help="Unlabeled inputs for --recover (.npy/.npz/dir); default: --calibration-data.",
)
@click.option(
    "--calibration-data",
    "calibration",
    type=click.Path(path_type=Path),
    help="Inputs for activation importance and the parity report.",
)
@click.option("--epochs", type=int, default=10, show_default=True, help="Recovery epochs (at most).")
@click.option("--max-seconds", type=float, default=300.0, show_default=True, help="Recovery time budget.")
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Recovery learning rate (Adam).")
@click.option("--batch-size", type=int, default=32, show_default=True, help="Batch size for data passes.")
@click.option("--dry-run", is_flag=True, help="Print the resolved stage config and exit.")
@output_options
def command(
    model: Path,
    output: Path,
    plan_out: Path | None,
    calibration: Path | None,
    dry_run: bool,
    group_ratio: tuple[str, ...],
    **flags: Any,
) -> None:
    """Remove channels from MODEL and write OUTPUT (MODEL itself is never changed).

    \b
    Channels coupled through residual adds, concats, splits, depthwise convs,
    Flatten->Gemm and attention heads are removed together; an op the pruner
    does not understand blocks the groups it touches (listed). Dead channels
    are always removed first, losslessly.

    Exit codes: 0 ok, 1 lossless parity failed, 2 bad input (or nothing prunable).
    """
    from pipeline.api import run_single
    from pipeline.config import from_dict, to_dict
    from pipeline.errors import InputError
    from pipeline.stage import DataPaths
    from pipeline.stages.prune import PruneConfig

    flags["group_ratios"] = _group_ratios(group_ratio)
    flags = {k: v for k, v in flags.items() if v is not None}
    flags["skip"] = list(flags.get("skip", ()))
    cfg = from_dict(PruneConfig, {k: str(v) if isinstance(v, Path) else v for k, v in flags.items()}, "prune")
    if dry_run:
        emit({"stage": "prune", "config": to_dict(cfg)}, lambda: console().print(to_dict(cfg)))
        return
    if output.resolve() == model.resolve():
        raise InputError(f"{output}: the output would overwrite the input model; choose another -o")
    extras = {"plan.json": plan_out} if plan_out else None
    with progress_bar() as progress:
        result = run_single(
            "prune",
            cfg,
            model,
            output,
            data=DataPaths(calibration=calibration),
            extra_outputs=extras,
            progress=progress,
        )
    payload = {
        "output": str(output),
        "plan": str(plan_out) if plan_out else None,
        "modified": result.modified,
        **dict(result.metrics),
        "gates": [g.to_dict() for g in result.gates],
    }
    emit(payload, lambda: _print_summary(payload))
    fail_on_gates(result)


def _print_summary(p: dict[str, Any]) -> None:
    from rich.table import Table

    out = console()
    table = Table(title=f"Channel groups ({p['output']})")
    for column in ("group", "layers", "channels", "removed", "dead", "status"):
        table.add_column(column)
    for g in p["groups"]:
        layers = ", ".join(g["sources"][:3]) + (f" +{len(g['sources']) - 3}" if len(g["sources"]) > 3 else "")
        status = "blocked: " + g["reasons"][0] if g["blocked"] else ""
        table.add_row(g["id"], layers, str(g["size"]), str(g["removed"]), str(g["dead"]), status)
    out.print(table)
    m, prm, sz = p["macs"], p["params"], p["size_bytes"]
    out.print(
        f"MACs {m['before']:,} -> {m['after']:,} ({m['ratio']}x fewer); params {prm['before']:,} -> "
        f"{prm['after']:,}; size {sz['before'] / 1024:.1f} -> {sz['after'] / 1024:.1f} KiB"
    )
    if "latency_ms" in p:
        out.print(
            f"Latency (batch 1, 1 thread): {p['latency_ms']['before']} -> {p['latency_ms']['after']} ms"
        )
    par = p["parity"]
    out.print(
        f"Parity vs input ({par['source']} inputs): max abs diff {par['max_abs_diff']:.3g}, "
        f"top-1 agreement {par['top1_agreement']}"
    )
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
