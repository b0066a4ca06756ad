"""``trtforge inspect MODEL.onnx``: inputs/outputs, op counts, parameters, size."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import click

from pipeline.commands._common import console, emit, output_options


def describe(path: Path) -> dict[str, Any]:
    import numpy as np
    import onnx.numpy_helper

    from pipeline.artifact import IOSpec, sha256_model_files
    from pipeline.onnx_io import load_onnx

    model = load_onnx(path)
    spec = IOSpec.from_onnx(model)
    ops = Counter(n.op_type for n in model.graph.node)
    params = int(
        sum(np.prod(onnx.numpy_helper.to_array(t).shape, dtype=np.int64) for t in model.graph.initializer)
    )
    return {
        "path": str(path),
        "sha256": sha256_model_files(path),
        "size_bytes": path.stat().st_size,
        "opset": {o.domain or "ai.onnx": o.version for o in model.opset_import},
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "io": spec.to_dict(),
        "nodes": len(model.graph.node),
        "ops": dict(sorted(ops.items())),
        "parameters": params,
    }


@click.command("inspect")
@click.argument("model", type=click.Path(path_type=Path))
@output_options
def command(model: Path) -> None:
    """Show MODEL's inputs/outputs, op counts, parameter count and size."""
    info = describe(model)

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
