"""``trtforge bench MODEL.{onnx,engine} [MODEL2 ...]``: latency on ORT CPU or TensorRT, models interleaved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pipeline.commands._common import console, emit, output_options, parse_int_list, progress_bar
from pipeline.errors import ConfigError, GateFailed


@click.command("bench")
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--batch", "batch", default="1", show_default=True, help="Comma-separated batch sizes, e.g. 1,32."
)
@click.option(
    "--threads",
    type=int,
    default=1,
    show_default=True,
    help="ONNX Runtime intra-op threads (0: ONNX Runtime's default, all cores).",
)
@click.option(
    "--warmup", type=int, default=10, show_default=True, help="Untimed runs per model and batch size."
)
@click.option("--iters", type=int, default=50, show_default=True, help="Timed runs per model and batch size.")
@click.option("--duration", type=float, help="Seconds of timed runs per batch size (replaces --iters).")
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    help="Real inputs (.npy/.npz/directory); default: seeded random inputs (fine for latency).",
)
@click.option(
    "--max-latency-ratio",
    type=float,
    help="Exit 1 when a model's p50 latency exceeds this multiple of the first model's.",
)
@output_options
def command(
    models: tuple[Path, ...],
    batch: str,
    threads: int,
    warmup: int,
    iters: int,
    duration: float | None,
    data: Path | None,
    max_latency_ratio: float | None,
) -> None:
    """Time MODELS: p50/p90/p99/mean latency and throughput (samples/s).

    ONNX models run on ONNX Runtime CPU; a TensorRT engine (.engine/.plan/.trt, with the .json
    metadata trtforge build writes beside it) runs on its GPU, and its GPU time per run (CUDA
    events, without host copies) is reported beside the wall time. Exit 3 for an engine where
    TensorRT or a GPU is missing.

    Models run interleaved in one process (round-robin each iteration, so machine noise hits
    them alike); ratios are the median latency relative to the first model. Latency does not
    depend on input values, so random inputs are the default.
    """
    from pipeline.validation.throughput import benchmark_models

    if threads < 0 or warmup < 0 or iters < 1 or (duration is not None and duration <= 0):
        raise ConfigError("need --threads >= 0, --warmup >= 0, --iters >= 1 and --duration > 0")
    batches = parse_int_list(batch)
    with progress_bar() as progress:
        report = benchmark_models(
            list(models),
            batches,
            threads or None,
            warmup,
            iters,
            duration=duration,
            data=data,
            progress=progress,
        )
    out = report.to_dict()
    emit(out, lambda: _print(out))
    if max_latency_ratio is not None:
        slow = [t for t in report.timings if t.model != report.models[0] and t.p50_ratio > max_latency_ratio]
        if slow:
            worst = max(slow, key=lambda t: t.p50_ratio)
            raise GateFailed(
                f"latency: {worst.model} at batch {worst.batch} is {worst.p50_ratio:.3f}x the first "
                f"model's p50 (max {max_latency_ratio}x)"
            )


def _print(out: dict[str, Any]) -> None:
    from rich import box
    from rich.table import Table

    con = console()
    s = out["settings"]
    inputs = "random inputs (fine for latency)" if out["random_inputs"] else f"inputs from {out['inputs']}"
    backend = f"ONNX Runtime CPU, {s['threads'] or 'default'} thread(s)"
    if "tensorrt" in s:
        backend += f"; engines on TensorRT {s['tensorrt']}"
    con.print(
        f"{backend}, {inputs}; "
        f"{out['results'][0]['iters']} timed runs per model and batch after {s['warmup']} warm-up runs"
    )
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
    device = any(r["device"] for r in out["results"])
    cols = ["model", "batch", "p50 ms", "p90 ms", "p99 ms", "mean ms", "samples/s", "vs first"]
    for col in cols + (["GPU p50 ms"] if device else []):
        table.add_column(col, justify="left" if col == "model" else "right", overflow="fold")
    for r in out["results"]:
        table.add_row(
            r["model"],
            str(r["batch"]),
            *(f"{r[k]:.3f}" for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms")),
            f"{r['throughput']:,.0f}",
            f"{r['p50_ratio']:.3f}x",
            *([f"{r['device']['p50_ms']:.3f}" if r["device"] else "-"] if device else []),
        )
    con.print(table)
