"""``trtforge fuse IN.onnx -o OUT.onnx``: graph optimisation, checked for parity on ONNX Runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from trtforge.pipeline.commands._common import console, emit, fail_on_gates, model_payload, progress_bar
from trtforge.pipeline.commands._options import Flag, data_option, model_and_output, stage_options
from trtforge.pipeline.stages._latency import latency_lines
from trtforge.pipeline.stages.fuse import FuseConfig

#: help and flag names of the fuse stage's config fields (the options are generated in _options.py)
FLAGS: dict[str, Flag] = {
    "fold_constants": Flag("Evaluate nodes whose inputs are all constants."),
    "fold_batchnorm": Flag("Fold BatchNormalization into the Conv/ConvTranspose/Gemm before it."),
    "matmul_add_to_gemm": Flag("Turn 2-D MatMul + constant Add into Gemm."),
    "remove_identity": Flag("Remove Identity and inference-mode Dropout."),
    "simplify_shapes": Flag("Replace Shape->Gather->Concat Reshape targets by constants."),
    "use_onnxslim": Flag(
        "Finish with onnxslim (CSE, its other fusions).", decls=("--onnxslim/--no-onnxslim",)
    ),
    "atol": Flag("Parity gate, absolute tolerance: |fused - input| <= atol + rtol * |input|."),
    "rtol": Flag("Parity gate, relative tolerance (see --atol)."),
    "parity_batches": Flag("Batches of inputs the parity check runs."),
    "seed": Flag("Seed of the random parity inputs."),
    "max_latency_ratio": Flag(
        "Largest fused/input latency ratio accepted (ONNX Runtime CPU, 1 thread, real shapes); a "
        "slower result is not written (exit 1). E.g. 1.2 accepts 20% slower; 1.0 (default) none."
    ),
    "shapes": Flag(
        "Size of a dynamic input where no data gives it (random parity inputs, the post-run check): "
        "NAME:1x3x640x640, the syntax of build --shapes.",
        metavar="NAME:SHAPE",
    ),
    "state": Flag(
        "Streaming model: state input IN fed by output OUT of the previous step (the data files "
        "are the steps of a sequence; a file holding IN starts from it).",
        metavar="IN:OUT",
    ),
}


@click.command("fuse")
@model_and_output("Fused .onnx to write.")
@data_option(
    "--validation-data",
    "Inputs for the parity check (.npy, .npz keyed by input name, or a directory); "
    "default: seeded random inputs.",
)
@stage_options("fuse", FuseConfig, FLAGS)
def command(model: Path, output: Path, validation_data: Path | None, config: FuseConfig) -> None:
    """Optimise MODEL's graph and write it to OUTPUT (MODEL itself is never changed).

    \b
    Passes, in order: dead nodes, constant folding, Identity/Dropout removal,
    Reshape-target simplification, MatMul+Add -> Gemm, BatchNormalization folding
    into Conv/ConvTranspose/Gemm, then onnxslim. Prints nodes per op type before
    and after, and the parity against MODEL on ONNX Runtime CPU.

    The fused model is timed against MODEL (interleaved, on the data's shapes); a slower one is
    not written.

    Exit codes: 0 ok, 1 parity or latency gate failed (nothing written), 2 bad input.
    """
    from trtforge.pipeline.api import run_stage
    from trtforge.pipeline.stage import DataPaths

    with progress_bar() as progress:
        result = run_stage(
            "fuse", config, model, output, data=DataPaths(validation=validation_data), progress=progress
        )
    payload = model_payload(output, result)
    emit(payload, lambda: _print_summary(payload))
    fail_on_gates(result)


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
    for guard in payload.get("guards", []):
        out.print(f"Guard ({guard['pass']}): {guard['reason']}")
    parity = payload["parity"]
    status = "ok" if parity.get("passed", True) else "FAILED"
    out.print(
        f"Parity ({parity['source']} inputs, {parity['batches']} batches): max abs err "
        f"{parity['max_abs_err']:.3g}, max rel err {parity['max_rel_err']:.3g} -> {status}"
    )
    for line in latency_lines(payload):
        out.print(line)
    if payload["output"] is None:
        out.print("Not written: a gate failed.")
    if not payload["modified"]:
        out.print("Nothing changed: no pass found anything to rewrite.")
