"""``trtforge quantize IN.onnx -o OUT.onnx --calibration-data PATH --target T``: INT8 Q/DQ (or FP16)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pipeline.commands._common import console, emit, fail_on_gates, output_options, progress_bar


@click.command("quantize")
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), required=True, help="Quantized .onnx to write."
)
@click.option(
    "--calibration-data",
    "calibration",
    help=".npy/.npz/directory, an image directory (needs --preprocess) or package.module:function.",
)
@click.option(
    "--target",
    type=click.Choice(["onnxruntime-cpu", "tensorrt"]),
    default="onnxruntime-cpu",
    show_default=True,
    help="Who runs the model: Q/DQ placement and types follow it.",
)
@click.option(
    "--method",
    type=click.Choice(["minmax", "entropy", "percentile", "mse"]),
    default="percentile",
    show_default=True,
    help="Activation range algorithm (weights: per-channel max).",
)
@click.option("--percentile", type=float, default=99.99, show_default=True, help="For --method percentile.")
@click.option("--precision", type=click.Choice(["int8", "fp16"]), default="int8", show_default=True)
@click.option(
    "--num-samples", type=int, help="Calibration samples (default: all; more than the data holds: error)."
)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--accuracy-budget", help="e.g. top1:0.5%, cosine:0.999, maxabs@OUTPUT:0.05 (comma-separated).")
@click.option(
    "--validation-data", "validation", help="Data (with 'labels' for top1) for the accuracy budget."
)
@click.option("--validation-samples", type=int, default=512, show_default=True)
@click.option(
    "--sensitivity",
    type=click.Choice(["auto", "always", "never"]),
    default="auto",
    show_default=True,
    help="Per-layer sensitivity analysis: when the budget fails (auto), always, or never.",
)
@click.option(
    "--preprocess",
    "preprocess",
    multiple=True,
    help="Image preprocessing KEY=VALUE: size=224x224, layout=NCHW, color=RGB, scale=0.00392, "
    "mean=0.485,0.456,0.406, std=0.229,0.224,0.225.",
)
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    help="Directory for calibration_table.json, calibration.cache and ranges_worst.png "
    "(default: beside the output).",
)
@click.option(
    "--trt-version", default="10.3.0", show_default=True, help="TensorRT version in the legacy cache header."
)
@click.option("--threads", type=int, help="ONNX Runtime intra-op threads.")
@output_options
def command(
    model: Path,
    output: Path,
    calibration: str | None,
    target: str,
    method: str,
    percentile: float,
    precision: str,
    num_samples: int | None,
    batch_size: int,
    accuracy_budget: str | None,
    validation: str | None,
    validation_samples: int,
    sensitivity: str,
    preprocess: tuple[str, ...],
    cache_dir: Path | None,
    trt_version: str,
    threads: int | None,
) -> None:
    """Quantize MODEL to explicit INT8 Q/DQ for --target (or FP16 with --precision fp16).

    Exit codes: 0 done, 1 the accuracy budget could not be kept, 2 bad input.
    """
    from pipeline.api import run_single
    from pipeline.config import from_dict
    from pipeline.stages.quantize import QuantizeConfig

    raw: dict[str, Any] = {
        "precision": precision,
        "target": target,
        "method": method,
        "percentile": percentile,
        "calibration": calibration,
        "num_samples": num_samples,
        "batch_size": batch_size,
        "accuracy_budget": accuracy_budget,
        "validation": validation,
        "validation_samples": validation_samples,
        "sensitivity": sensitivity,
        "trt_version": trt_version,
        "threads": threads,
    }
    if preprocess:
        raw["preprocess"] = _parse_preprocess(preprocess)
    cfg = from_dict(QuantizeConfig, raw, "quantize")
    where = cache_dir or output.parent
    stem = output.stem
    extras = {
        "calibration_table.json": where / f"{stem}.calibration_table.json",
        "calibration.cache": where / f"{stem}.calibration.cache",
        "ranges_worst.png": where / f"{stem}.ranges_worst.png",
    }
    with progress_bar() as progress:
        result = run_single("quantize", cfg, model, output, extra_outputs=extras, progress=progress)
    metrics = {**dict(result.metrics), "output": str(output)}
    emit({**metrics, "gates": [g.to_dict() for g in result.gates]}, lambda: _print(metrics))
    fail_on_gates(result)


def _parse_preprocess(items: tuple[str, ...]) -> dict[str, Any]:
    from pipeline.errors import ConfigError

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--preprocess {item!r}: expected KEY=VALUE, e.g. size=224x224")
        try:
            if key == "size":
                out[key] = [int(v) for v in value.lower().split("x")]
            elif key in ("mean", "std"):
                out[key] = [float(v) for v in value.split(",")]
            elif key == "scale":
                out[key] = float(value)
            else:
                out[key] = value
        except ValueError as exc:
            raise ConfigError(f"--preprocess {item!r}: {value!r} is not a valid {key}") from exc
    return out


def _print(m: dict[str, Any]) -> None:
    con = console()
    if m.get("precision") == "fp16":
        con.print(
            f"FP16 model written to {m['output']}; FP32 ops: {', '.join(m.get('fp32_ops', [])) or 'none'}"
        )
        return
    con.print(f"INT8 ({m['target']}, {m['method']}, {m['samples']} calibration samples) -> {m['output']}")
    for note in m.get("notes", []):
        con.print(f"[yellow]note:[/] {note}")
    if m.get("accuracy"):
        a = m["accuracy"]
        con.print(f"top-1: fp32 {a['fp32_top1']:.4f}, int8 {a['int8_top1']:.4f}")
    if m.get("fell_back"):
        con.print(f"kept in float to hold the budget: {', '.join(m['fell_back'])}")
    if "latency_ratio_int8_vs_fp32" in m:
        con.print(
            f"latency int8/fp32 (ORT CPU, 1 thread, batch {m['latency_batch']}): "
            f"{m['latency_ratio_int8_vs_fp32']:.3f}"
        )
    con.print(f"size: {m['size_fp32_bytes']} -> {m['size_int8_bytes']} bytes")
