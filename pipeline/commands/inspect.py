"""``trtforge inspect MODEL.onnx``: inputs/outputs, op counts, parameters, size."""

from __future__ import annotations

from pathlib import Path

import click

from trtforge.pipeline.commands._common import console, emit, output_options
from trtforge.pipeline.commands._options import model_argument


@click.command("inspect")
@model_argument("model")
@output_options
def command(model: Path) -> None:
    """Show MODEL's inputs/outputs, op counts, parameter count and size."""
    from trtforge.pipeline.api import inspect

    info = inspect(model)

    def human() -> None:
        con = console()
        con.print(
            f"{info['path']}  ({info['size_bytes'] / 1024:.1f} KiB, {info['parameters']:,} parameters, "
            f"{info['nodes']} nodes, opset {info['opset']})"
        )
        for kind in ("inputs", "outputs"):
            for t in info["io"][kind]:
                con.print(f"  {kind[:-1]:6} {t['name']}: {t['dtype']} {t['shape']}")
        con.print("  ops: " + ", ".join(f"{k}={v}" for k, v in info["ops"].items()))

    emit(info, human)
