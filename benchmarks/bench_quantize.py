"""INT8 benchmark: trtforge vs ONNX Runtime's quantize_static defaults (and NVIDIA ModelOpt where installed).

On the digits example and the zoo's depthwise+concat CNN and transformer encoder: top-1 on the
validation split and ONNX Runtime CPU latency (one thread, models interleaved) at batch 1 and 32;
plus the peak memory of calibration with 1,000 and 10,000 samples. Writes
``benchmarks/results/quantize.json`` and prints a table. Not a timed test: run by hand.

    python -m benchmarks.bench_quantize --zoo DIR [--modelopt-python /path/to/venv/bin/python]

``DIR`` holds ``dwconcat.onnx`` and ``transformer.onnx`` from ``python -m benchmarks.zoo --out DIR``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import onnx

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "examples" / "digits" / "data"
RESULTS = REPO / "benchmarks" / "results" / "quantize.json"


def top1(path: Path, x: np.ndarray, labels: np.ndarray) -> float:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    logits = np.concatenate([sess.run(None, {name: x[i : i + 64]})[0] for i in range(0, len(x), 64)])
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def trtforge_quantize(src: Path, out: Path, target: str, method: str, budget: str | None) -> dict[str, Any]:
    from trtforge.pipeline.api import run_single
    from trtforge.pipeline.stages.quantize import QuantizeConfig

    cfg = QuantizeConfig(
        target=target,
        method=method,
        calibration=str(DATA / "calib.npz"),
        validation=str(DATA / "val.npz") if budget else None,
        accuracy_budget=budget,
        measure_latency=False,
        plot=False,
    )
    start = time.perf_counter()
    result = run_single("quantize", cfg, src, out)
    m = dict(result.metrics)
    return {
        "seconds": time.perf_counter() - start,
        "fell_back": m.get("fell_back", []),
        "ort_optimized": m.get("ort_optimized"),
        "groups": m.get("groups"),
    }


class _Reader:
    def __init__(self, x: np.ndarray, name: str, batch: int = 32) -> None:
        self.items = iter([{name: x[i : i + batch]} for i in range(0, len(x), batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.items, None)


def ort_static(src: Path, out: Path, calib: np.ndarray) -> dict[str, Any]:
    """ONNX Runtime's quantize_static with its defaults (QDQ, QInt8 activations and weights, MinMax)."""
    from onnxruntime.quantization import quant_pre_process, quantize_static

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre))
        start = time.perf_counter()
        name = onnx.load(str(pre)).graph.input[0].name
        quantize_static(str(pre), str(out), _Reader(calib, name))
    return {
        "seconds": time.perf_counter() - start,
        "settings": "QDQ, QInt8/QInt8, MinMax, per-tensor (defaults)",
    }


def modelopt(src: Path, out: Path, python: str | None) -> dict[str, Any]:
    if not python:
        return {"status": "not run: no --modelopt-python given"}
    with tempfile.TemporaryDirectory() as tmp:
        calib = Path(tmp) / "calib.npy"
        np.save(calib, np.load(DATA / "calib.npz")["x"])
        cmd = [
            python,
            "-m",
            "modelopt.onnx.quantization",
            "--onnx_path",
            str(src),
            "--quantize_mode",
            "int8",
            "--calibration_data",
            str(calib),
            "--calibration_eps",
            "cpu",
            "--output_path",
            str(out),
        ]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0 or not out.exists():
        return {"status": "failed", "stderr_tail": (proc.stderr or proc.stdout)[-1500:]}
    return {"status": "ok", "seconds": time.perf_counter() - start, "command": " ".join(cmd[1:])}


def peak_memory(model: Path, samples: int, tmp: Path) -> dict[str, Any]:
    """Peak RSS of a calibration run (separate process) over ``samples`` samples streamed from .npy."""
    base = np.load(DATA / "calib.npz")["x"]
    rng = np.random.default_rng(0)
    reps = -(-samples // len(base))
    data = np.concatenate([base + rng.normal(0, 0.01, base.shape).astype(np.float32) for _ in range(reps)])
    path = tmp / f"calib_{samples}.npy"
    np.save(path, data[:samples])
    code = (
        "import resource, onnx, sys; from trtforge.calibration.quantizer import QuantizeOptions, calibrate;"
        "from trtforge.calibration.sources import open_batches;"
        "from trtforge.common.tensors import TensorSpec;"
        f"m = onnx.load({str(model)!r});"
        f"b = open_batches({str(path)!r}, [TensorSpec('x','float32',('N',1,8,8))], 32);"
        "c = calibrate(m, b, QuantizeOptions(target='onnxruntime-cpu', method='entropy'));"
        "print(c.stats.samples, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    n, rss_kb = out.stdout.split()
    return {
        "samples": int(n),
        "peak_rss_mb": int(rss_kb) / 1024,
        "data_mb": data[:samples].nbytes / 2**20,
        "seconds": time.perf_counter() - start,
    }


def bench_model(
    name: str, src: Path, work: Path, mo_python: str | None, iters: int, method: str = "mse"
) -> dict[str, Any]:
    from trtforge.pipeline.validation.throughput import benchmark_models

    val = np.load(DATA / "val.npz")
    x, labels = val["x"], val["labels"]
    calib = np.load(DATA / "calib.npz")["x"]
    variants: dict[str, dict[str, Any]] = {"fp32": {"path": src}}
    out = work / f"{name}.trtforge-ort.onnx"
    variants["trtforge onnxruntime-cpu"] = {
        "path": out,
        **trtforge_quantize(src, out, "onnxruntime-cpu", method, "top1:0.5%"),
    }
    out = work / f"{name}.trtforge-trt.onnx"
    variants["trtforge tensorrt (run on ORT CPU)"] = {
        "path": out,
        **trtforge_quantize(src, out, "tensorrt", "entropy", "top1:0.5%"),
    }
    out = work / f"{name}.ort-static.onnx"
    variants["ort quantize_static defaults"] = {"path": out, **ort_static(src, out, calib)}
    out = work / f"{name}.modelopt.onnx"
    mo = modelopt(src, out, mo_python)
    variants["modelopt int8"] = {"path": out if mo["status"] == "ok" else None, **mo}
    timed = [v["path"] for v in variants.values() if v.get("path")]
    report = benchmark_models(timed, batches=(1, 32), threads=1, warmup=20, iters=iters)
    rows = {}
    for key, v in variants.items():
        row = {k: val for k, val in v.items() if k != "path"}
        if v.get("path"):
            row["top1"] = top1(v["path"], x, labels)
            row["size_bytes"] = Path(v["path"]).stat().st_size
            for b in (1, 32):
                t = report.timing(report.models[timed.index(v["path"])], b)
                row[f"p50_ms_b{b}"] = t.latency.p50_ms
                row[f"speedup_vs_fp32_b{b}"] = 1.0 / t.paired_ratio
        rows[key] = row
    return rows


def _table(results: dict[str, Any]) -> str:
    lines = [
        "| model | variant | top-1 % | p50 ms b1 | p50 ms b32 | speedup b1 | speedup b32 | fell back |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model, rows in results["models"].items():
        for variant, r in rows.items():
            if "top1" not in r:
                lines.append(f"| {model} | {variant} | {r.get('status')} | | | | | |")
                continue
            lines.append(
                f"| {model} | {variant} | {100 * r['top1']:.2f} "
                f"| {r['p50_ms_b1']:.3f} | {r['p50_ms_b32']:.3f} "
                f"| {r['speedup_vs_fp32_b1']:.2f}x | {r['speedup_vs_fp32_b32']:.2f}x "
                f"| {len(r.get('fell_back', []))} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--zoo", type=Path, required=True, help="directory with dwconcat.onnx, transformer.onnx"
    )
    parser.add_argument(
        "--digits", type=Path, help="digits example ONNX (default: export examples/digits/model.pt2)"
    )
    parser.add_argument("--modelopt-python", help="python of a venv with nvidia-modelopt[onnx]")
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument(
        "--method",
        default="mse",
        choices=("minmax", "entropy", "percentile", "mse"),
        help="range method of the onnxruntime-cpu target",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-q-") as tmp:
        work = Path(tmp)
        digits = args.digits
        if digits is None:
            from trtforge.pipeline.api import run_single
            from trtforge.pipeline.stages.export import ExportConfig

            digits = work / "digits.onnx"
            run_single("export", ExportConfig(), REPO / "examples" / "digits" / "model.pt2", digits)
        models = {
            "digits (resnet)": digits,
            "dwconcat": args.zoo / "dwconcat.onnx",
            "transformer": args.zoo / "transformer.onnx",
        }
        results: dict[str, Any] = {
            "models": {},
            "settings": {
                "threads": 1,
                "batches": [1, 32],
                "iters": args.iters,
                "interleaved": True,
                "onnxruntime_cpu_method": args.method,
            },
        }
        for name, path in models.items():
            results["models"][name] = bench_model(
                name, path, work, args.modelopt_python, args.iters, args.method
            )
            print(f"done {name}", file=sys.stderr, flush=True)
        results["calibration_memory"] = [peak_memory(digits, n, work) for n in (1000, 10000)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(_table(results))
    for m in results["calibration_memory"]:
        print(f"calibration with {m['samples']} samples: peak RSS {m['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
