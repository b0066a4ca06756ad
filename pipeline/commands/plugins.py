"""``trtforge plugins list``: the custom-op plugins trtforge knows (ONNX op, attributes, implementations)."""

from __future__ import annotations

from typing import Any

import click

from trtforge.pipeline.commands._common import console, emit, output_options


def describe() -> list[dict[str, Any]]:
    from trtforge.plugins.registry import list_plugins

    return [
        {
            "id": p.trt_id,
            "domain": p.domain,
            "op_type": p.op_type,
            "description": p.description,
            "attributes": [{"name": a.name, "type": a.type, "default": a.default} for a in p.attributes],
            "inputs": p.num_inputs,
            "outputs": p.num_outputs,
            "dtypes": list(p.dtypes),
            "reference": f"{p.reference.__module__}.{p.reference.__name__}",
            "onnxruntime": "onnxruntime-extensions Python op (reference)",
            "tensorrt": "tensorrt.plugin (TensorRT 10.6+), JIT",
        }
        for p in list_plugins()
    ]


@click.group("plugins")
def command() -> None:
    """Custom-op plugins: each runs in ONNX Runtime (NumPy reference) and in TensorRT (tensorrt.plugin)."""


@command.command("list")
@output_options
def list_command() -> None:
    """List the registered plugins."""
    info = describe()

    def human() -> None:
        con = console()
        for p in info:
            attrs = ", ".join(f"{a['name']}: {a['type']} = {a['default']}" for a in p["attributes"])
            con.print(f"{p['id']}  ({p['inputs']} in, {p['outputs']} out; {', '.join(p['dtypes'])})  {attrs}")
            con.print(f"    {p['description']}")
            con.print(f"    reference {p['reference']}; TensorRT: {p['tensorrt']}")

    emit(info, human)
