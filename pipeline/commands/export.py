"""``trtforge export MODEL -o OUT.onnx``: PyTorch -> ONNX with a parity check against torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from trtforge.pipeline.commands._common import console, emit, fail_on_gates, gates_table, progress_bar
from trtforge.pipeline.commands._options import Flag, data_option, model_and_output, stage_options
from trtforge.pipeline.stages.export import ExportConfig

#: help and flag names of the export stage's config fields (the options are generated in _options.py)
FLAGS: dict[str, Flag] = {
    "inputs": Flag(
        "Input shape, e.g. x:1x3x224x224; needed where the model does not know it.",
        decls=("--input",),
        metavar="NAME:SHAPE",
    ),
    "outputs": Flag(
        "Output names in order (default: output, or output_0, output_1, ...).",
        decls=("--output-name",),
        metavar="NAME",
    ),
    "static": Flag("Fixed batch dim (the --input batch, else 1).", decls=("--static/--dynamic",)),
    "opset": Flag("ONNX opset; below 18 the TorchScript exporter is used (dynamo emits 18+)."),
    "do_constant_folding": Flag(
        "Fold constants while exporting; --no-constant-folding keeps the graph as written "
        "(BatchNormalization stays) and prefers the TorchScript exporter.",
        decls=("--constant-folding/--no-constant-folding",),
    ),
    "exporter": Flag("auto: dynamo first, the TorchScript exporter as a fallback."),
    "atol": Flag("Parity tolerance (absolute)."),
    "rtol": Flag("Parity tolerance (relative)."),
    "parity_batch": Flag("Samples in the parity check against torch (dynamic batch only)."),
}


@click.command("export")
@model_and_output("Where to write the ONNX model (external data beside it when over 2 GB).", model_path=False)
@click.option("--weights", help="state_dict file loaded (strictly) into a package.module:factory model.")
@data_option(
    "--calibration-data", "Real inputs for the parity check (.npy/.npz/dir); default: seeded random inputs."
)
@stage_options("export", ExportConfig, FLAGS)
def command(
    model: str, output: Path, weights: str | None, calibration_data: Path | None, config: ExportConfig
) -> None:
    """Export MODEL to ONNX and check it against torch on ONNX Runtime.

    \b
    MODEL is one of:
      model.pt2                  a torch.export program (torch.export.save)
      model.ts / model.pt        a TorchScript file (torch.jit.save)
      package.module:factory     factory() returns an nn.Module; --weights loads its state_dict

    Exit codes: 0 exported and parity held, 1 parity above --atol, 2 bad input.
    """
    from trtforge.pipeline.api import load_artifact, run_stage
    from trtforge.pipeline.stage import DataPaths

    artifact = load_artifact(model, weights)
    with progress_bar() as progress:
        result = run_stage(
            "export",
            config,
            artifact,
            output,
            data=DataPaths(calibration=calibration_data),
            progress=progress,
        )
    metrics = dict(result.metrics)
    iospec = result.artifact.iospec.to_dict() if result.artifact.iospec else {}
    data = {
        "output": str(result.artifact.path),
        "sha256": result.artifact.sha256,
        "io": iospec,
        "metrics": metrics,
        "gates": gates_table(result),
    }
    emit(data, lambda: _print(model, data, config.atol))
    fail_on_gates(result)


def _print(model: str, data: dict[str, Any], atol: float) -> None:
    m = data["metrics"]
    con = console()
    con.print(
        f"exported {model} -> {data['output']} with the {m['exporter']} exporter "
        f"(opset {m['opset']}, {m['nodes']} nodes) in {m['export_s']:.2f}s"
    )
    if m.get("exporter_fallback"):
        con.print(f"  fallback: {m['exporter_fallback']}")
    for kind in ("inputs", "outputs"):
        for t in data["io"].get(kind, []):
            con.print(f"  {kind[:-1]:6} {t['name']}: {t['dtype']} {t['shape']}")
    ok = all(g["passed"] for g in data["gates"])
    con.print(
        f"parity vs torch on {m['parity_batch']} {m['parity_data']} samples: max abs err "
        f"{m['max_abs_err']:.3g}, max rel err {m['max_rel_err']:.3g} (atol {atol:g}): "
        + ("[green]PASSED[/]" if ok else "[red]FAILED[/]")
    )
