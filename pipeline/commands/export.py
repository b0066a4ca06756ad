"""``trtforge export MODEL -o OUT.onnx``: PyTorch -> ONNX with a parity check against torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pipeline.commands._common import console, emit, fail_on_gates, output_options, progress_bar


@click.command("export")
@click.argument("model")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the ONNX model (external data beside it when over 2 GB).",
)
@click.option("--weights", help="state_dict file loaded (strictly) into a package.module:factory model.")
@click.option(
    "--input",
    "inputs",
    multiple=True,
    metavar="NAME:SHAPE",
    help="Input shape, e.g. x:1x3x224x224 (repeatable); needed where the model does not know it.",
)
@click.option(
    "--output-name",
    "outputs",
    multiple=True,
    metavar="NAME",
    help="Output names in order (repeatable; default: output, or output_0, output_1, ...).",
)
@click.option("--static", is_flag=True, help="Fixed batch dim (the --input batch, else 1).")
@click.option(
    "--opset",
    type=int,
    default=18,
    show_default=True,
    help="ONNX opset; below 18 the TorchScript exporter is used (dynamo emits 18+).",
)
@click.option(
    "--no-constant-folding",
    is_flag=True,
    help="Keep the graph as written (BatchNormalization stays); prefers the TorchScript exporter.",
)
@click.option(
    "--exporter",
    type=click.Choice(["auto", "dynamo", "torchscript"]),
    default="auto",
    show_default=True,
    help="auto: dynamo first, the TorchScript exporter as a fallback.",
)
@click.option("--atol", type=float, default=1e-4, show_default=True, help="Parity tolerance (absolute).")
@click.option("--rtol", type=float, default=0.0, show_default=True, help="Parity tolerance (relative).")
@click.option(
    "--calibration-data",
    type=click.Path(path_type=Path),
    help="Real inputs for the parity check (.npy/.npz/dir); default: seeded random inputs.",
)
@output_options
def command(
    model: str,
    output: Path,
    weights: str | None,
    inputs: tuple[str, ...],
    outputs: tuple[str, ...],
    static: bool,
    opset: int,
    no_constant_folding: bool,
    exporter: str,
    atol: float,
    rtol: float,
    calibration_data: Path | None,
) -> None:
    """Export MODEL to ONNX and check it against torch on ONNX Runtime.

    \b
    MODEL is one of:
      model.pt2                  a torch.export program (torch.export.save)
      model.ts / model.pt        a TorchScript file (torch.jit.save)
      package.module:factory     factory() returns an nn.Module; --weights loads its state_dict

    Exit codes: 0 exported and parity held, 1 parity above --atol, 2 bad input.
    """
    from pipeline.api import load_artifact, run_single
    from pipeline.config import from_dict
    from pipeline.stage import DataPaths
    from pipeline.stages.export import ExportConfig

    raw: dict[str, Any] = {
        "inputs": list(inputs),
        "outputs": list(outputs),
        "static": static,
        "opset": opset,
        "do_constant_folding": not no_constant_folding,
        "exporter": exporter,
        "atol": atol,
        "rtol": rtol,
    }
    cfg = from_dict(ExportConfig, raw, "export")
    artifact = load_artifact(model, weights)
    with progress_bar() as progress:
        result = run_single(
            "export", cfg, artifact, output, data=DataPaths(calibration=calibration_data), progress=progress
        )
    metrics = dict(result.metrics)
    iospec = result.artifact.iospec.to_dict() if result.artifact.iospec else {}
    data = {
        "output": str(result.artifact.path),
        "sha256": result.artifact.sha256,
        "io": iospec,
        "metrics": metrics,
        "gates": [g.to_dict() for g in result.gates],
    }
    emit(data, lambda: _print(model, data, cfg.atol))
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
