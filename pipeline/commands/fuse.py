"""``trtforge fuse IN.onnx -o OUT.onnx``: graph optimisation, checked for parity on ONNX Runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pipeline.commands._common import console, emit, fail_on_gates, output_options, progress_bar


@click.command("fuse")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Fused .onnx to write.")
@click.option(
    "--fold-constants/--no-fold-constants",
    default=True,
    show_default=True,
    help="Evaluate nodes whose inputs are all constants.",
)
@click.option(
    "--fold-batchnorm/--no-fold-batchnorm",
    default=True,
    show_default=True,
    help="Fold BatchNormalization into the Conv/ConvTranspose/Gemm before it.",
)
@click.option(
    "--matmul-add-to-gemm/--no-matmul-add-to-gemm",
    default=True,
    show_default=True,
    help="Turn 2-D MatMul + constant Add into Gemm.",
)
@click.option(
    "--remove-identity/--no-remove-identity",
    default=True,
    show_default=True,
    help="Remove Identity and inference-mode Dropout.",
)
@click.option(
    "--simplify-shapes/--no-simplify-shapes",
    default=True,
    show_default=True,
    help="Replace Shape->Gather->Concat Reshape targets by constants.",
)
@click.option(
    "--onnxslim/--no-onnxslim",
    "use_onnxslim",
    default=True,
    show_default=True,
    help="Finish with onnxslim (CSE, its other fusions).",
)
@click.option(
    "--atol",
    type=float,
    default=1e-4,
    show_default=True,
    help="Parity gate: largest allowed absolute difference to the input model.",
)
@click.option(
    "--validation-data",
    type=click.Path(path_type=Path),
    help="Inputs for the parity check (.npy, .npz keyed by input name, or a directory); "
    "default: seeded random inputs.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random parity inputs.")
@click.option("--dry-run", is_flag=True, help="Print the resolved stage config and exit.")
@output_options
def command(model: Path, output: Path, validation_data: Path | None, dry_run: bool, **flags: Any) -> None:
    """Optimise MODEL's graph and write it to OUTPUT (MODEL itself is never changed).

    \b
    Passes, in order: dead nodes, constant folding, Identity/Dropout removal,
    Reshape-target simplification, MatMul+Add -> Gemm, BatchNormalization folding
    into Conv/ConvTranspose/Gemm, then onnxslim. Prints nodes per op type before
    and after, and the parity against MODEL on ONNX Runtime CPU.

    Exit codes: 0 ok, 1 parity above --atol, 2 bad input.
    """
    from pipeline.api import run_single
    from pipeline.config import from_dict, to_dict
    from pipeline.errors import InputError
    from pipeline.stage import DataPaths
    from pipeline.stages.fuse import FuseConfig

    cfg = from_dict(FuseConfig, flags, "fuse")
    if dry_run:
        emit({"stage": "fuse", "config": to_dict(cfg)}, lambda: _print_config(to_dict(cfg)))
        return
    if output.resolve() == model.resolve():
        raise InputError(f"{output}: the output would overwrite the input model; choose another -o")
    with progress_bar() as progress:
        result = run_single(
            "fuse", cfg, model, output, data=DataPaths(validation=validation_data), progress=progress
        )
    payload = {
        "output": str(output),
        "modified": result.modified,
        **dict(result.metrics),
        "gates": [g.to_dict() for g in result.gates],
    }
    emit(payload, lambda: _print_summary(payload))
    fail_on_gates(result)


def _print_config(config: dict[str, Any]) -> None:
    out = console()
    out.print('[[stage]]\ntype = "fuse"', markup=False)
    for key, value in config.items():
        out.print(f"{key} = {str(value).lower() if isinstance(value, bool) else value}", markup=False)


def _print_summary(payload: dict[str, Any]) -> None:
    from rich.table import Table

    before, after = payload["nodes_before"], payload["nodes_after"]
    table = Table(title=f"Nodes per op type ({payload['output']})")
    for column in ("op type", "before", "after", "change"):
        table.add_column(column, justify="left" if column == "op type" else "right")
    for op in sorted(set(before) | set(after)):
        b, a = before.get(op, 0), after.get(op, 0)
        table.add_row(op, str(b), str(a), f"{a - b:+d}" if a != b else "")
    total_b, total_a = payload["node_count_before"], payload["node_count_after"]
    change = f"{total_a - total_b:+d}" if total_a != total_b else ""
    table.add_row("total", str(total_b), str(total_a), change, style="bold")
    out = console()
    out.print(table)
    removed = {k: v for k, v in payload["removed_by_pass"].items() if v}
    if removed:
        out.print("Removed by pass: " + ", ".join(f"{k} {v}" for k, v in removed.items()))
    if payload["rejections_total"]:
        out.print(
            f"Left alone: {payload['rejections_total']} match(es); first: "
            f"{payload['rejections'][0]['rule']} at {payload['rejections'][0]['node']}: "
            f"{payload['rejections'][0]['reason']} (all in --json)"
        )
    parity = payload["parity"]
    status = "ok" if all(g["passed"] for g in payload["gates"]) else "FAILED"
    out.print(
        f"Parity ({parity['source']} inputs, {parity['batches']} batches): max abs err "
        f"{parity['max_abs_err']:.3g}, max rel err {parity['max_rel_err']:.3g} -> {status}"
    )
    if not payload["modified"]:
        out.print("Nothing changed: no pass found anything to rewrite.")
