"""Pruning benchmark: 50% channel pruning + label-free recovery vs Torch-Pruning, and prune + INT8.

For each zoo model (``resnet`` = the digits example, ``dwconcat``, ``transformer``): train it
(seeded; cached in --work), export and fuse it, then

- trtforge: ``prune --ratio R --recover`` on the ONNX graph, distilled on the unlabeled calibration
  inputs (examples/digits/data/calib.npz) against the unpruned model;
- Torch-Pruning: ``MagnitudePruner`` at the same ratio on the PyTorch model, fine-tuned *with
  labels* for the same wall time as trtforge's recovery, exported the same way;
- trtforge prune + the quantize stage (INT8, ONNX Runtime CPU).

Reports val top-1 (examples/digits/data/val.npz), MACs, params, and latency at batch 32 on ONNX
Runtime CPU with one thread, the models timed interleaved. Also times the pruning analysis on a
~1,000-node graph. Writes ``benchmarks/results/prune_<model>.json`` with one ``--only`` model,
``benchmarks/results/prune.json`` otherwise (or ``--out``), and prints a table.

    python benchmarks/bench_prune.py [--only resnet] [--ratio 0.5] [--epochs 40]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CALIB = ROOT / "examples/digits/data/calib.npz"
VAL = ROOT / "examples/digits/data/val.npz"


def top1(path: Path) -> float:
    from trtforge.pipeline.backends.onnxruntime import OrtRunner

    with np.load(VAL) as d:
        x, y = d["x"], d["labels"]
    out = OrtRunner(path).load().run({"x": x})
    return float((next(iter(out.values())).argmax(1) == y).mean())


def trained(name: str, work: Path, seed: int) -> Any:
    import torch

    from benchmarks.zoo import EPOCHS, ZOO, train

    torch.manual_seed(seed)
    model = ZOO[name]()
    ckpt = work / f"{name}.pt"
    if ckpt.exists():
        model.load_state_dict(torch.load(ckpt))
    else:
        train(model, EPOCHS[name], seed)
        torch.save(model.state_dict(), ckpt)
    return model.eval()


def finetune_with_labels(model: Any, seconds: float, lr: float = 1e-3) -> int:
    import torch

    from benchmarks.zoo import load_digits_split

    split = load_digits_split()
    x, y = torch.from_numpy(split.x_train), torch.from_numpy(split.y_train)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    rng = np.random.default_rng(0)
    t0, epochs = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        model.train()
        order = torch.from_numpy(rng.permutation(len(x)))
        for s in range(0, len(order), 64):
            idx = order[s : s + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        epochs += 1
    model.eval()
    return epochs


def torch_pruning_baseline(model: Any, ratio: float, seconds: float, out: Path) -> dict[str, Any]:
    import torch
    import torch_pruning as tp

    from benchmarks.zoo import export_onnx

    model = copy.deepcopy(model)
    example = torch.zeros(1, 1, 8, 8)
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    pruner = tp.pruner.MagnitudePruner(
        model,
        example,
        importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=ratio,
        ignored_layers=[last],
        round_to=8,
    )
    t0 = time.perf_counter()
    pruner.step()
    prune_s = time.perf_counter() - t0
    epochs = finetune_with_labels(model, seconds)
    export_onnx(model, out)
    return {
        "prune_seconds": round(prune_s, 3),
        "finetune_epochs": epochs,
        "finetune_seconds": round(seconds, 1),
    }


def run_model(name: str, args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.zoo import export_onnx
    from trtforge.pipeline.api import run_single
    from trtforge.pipeline.graph.pruning import macs
    from trtforge.pipeline.onnx_io import load_onnx
    from trtforge.pipeline.stage import DataPaths
    from trtforge.pipeline.stages.fuse import FuseConfig
    from trtforge.pipeline.stages.prune import PruneConfig
    from trtforge.pipeline.validation.throughput import benchmark_models

    w = args.work
    model = trained(name, w, args.seed)
    export_onnx(model, w / f"{name}.onnx")
    run_single("fuse", FuseConfig(), w / f"{name}.onnx", w / f"{name}.fused.onnx")
    base = w / f"{name}.fused.onnx"
    data = DataPaths(calibration=CALIB)
    cfg = PruneConfig(
        ratio=args.ratio,
        round_to=args.round_to,
        recover=True,
        epochs=args.epochs,
        max_seconds=args.max_seconds,
        lr=args.lr,
        latency_runs=0,
        criterion=args.criterion,
    )
    res = run_single(
        "prune",
        cfg,
        base,
        w / f"{name}.pruned.onnx",
        data=data,
        extra_outputs={"plan.json": w / f"{name}.plan.json"},
    )
    norec = PruneConfig(plan=w / f"{name}.plan.json", latency_runs=0)
    run_single("prune", norec, base, w / f"{name}.pruned_norec.onnx", data=data)
    rec_s = float(res.metrics["recovery"]["seconds"])
    try:
        tp_info = torch_pruning_baseline(model, args.ratio, rec_s, w / f"{name}.tp.onnx")
    except Exception as exc:  # Torch-Pruning fails on some models; report it instead of stopping
        tp_info = {"error": f"{type(exc).__name__}: {exc}"}
    quant = _quantize(w / f"{name}.pruned.onnx", w / f"{name}.pruned_int8.onnx")
    _quantize(base, w / f"{name}.int8.onnx")
    paths = {
        "original": base,
        "pruned_recovered": w / f"{name}.pruned.onnx",
        "torch_pruning": w / f"{name}.tp.onnx",
        "int8": w / f"{name}.int8.onnx",
        "pruned_int8": w / f"{name}.pruned_int8.onnx",
    }
    if "error" in tp_info:
        del paths["torch_pruning"]
    bench = benchmark_models(
        [str(p) for p in paths.values()], batches=(32,), threads=1, warmup=20, iters=args.iters
    )
    rows = {}
    for (key, path), timing in zip(paths.items(), bench.timings):
        m = macs.count(load_onnx(path, check=False))
        rows[key] = {
            "top1": top1(path),
            "macs": m["macs"],
            "params": m["params"],
            "size_bytes": path.stat().st_size,
            "p50_ms_b32": round(timing.latency.p50_ms, 4),
            "speedup_paired": round(1.0 / timing.paired_ratio, 3),
        }
    rows["pruned_no_recovery"] = {"top1": top1(w / f"{name}.pruned_norec.onnx")}
    return {
        "model": name,
        "results": rows,
        "recovery": res.metrics["recovery"],
        "groups": [
            {k: g[k] for k in ("id", "size", "removed", "blocked", "reasons")} for g in res.metrics["groups"]
        ],
        "analysis_seconds": res.metrics["analysis"]["analysis_seconds"],
        "torch_pruning": tp_info,
        "quantize": quant,
    }


def _quantize(src: Path, dst: Path) -> dict[str, Any]:
    from trtforge.pipeline.api import run_single
    from trtforge.pipeline.stages.quantize import QuantizeConfig

    try:
        r = run_single(
            "quantize", QuantizeConfig(calibration=str(CALIB), measure_latency=False, plot=False), src, dst
        )
    except Exception as exc:  # the benchmark reports a failed quantize instead of stopping
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"ok": bool(r)}


def analysis_timing() -> dict[str, Any]:
    from tests.graph.pruning.test_plan_lossless_sparsity import _deep_chain
    from trtforge.pipeline.graph.pruning import analyze_model

    model = _deep_chain(200)
    t0 = time.perf_counter()
    az = analyze_model(model)
    return {
        "nodes": len(model.graph.node),
        "groups": len(az.groups),
        "seconds": round(time.perf_counter() - t0, 3),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", action="append", choices=["resnet", "dwconcat", "transformer"])
    p.add_argument("--ratio", type=float, default=0.5)
    p.add_argument("--round-to", type=int, default=8)
    p.add_argument("--criterion", default="l1")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--max-seconds", type=float, default=120.0)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, default=ROOT / "benchmarks/results/prune_work")
    p.add_argument("--out", type=Path, help="default: results/prune_<model>.json for one --only model")
    args = p.parse_args(argv)
    if args.out is None:
        stem = f"prune_{args.only[0]}" if args.only and len(set(args.only)) == 1 else "prune"
        args.out = ROOT / f"benchmarks/results/{stem}.json"
    args.work.mkdir(parents=True, exist_ok=True)
    report = {"ratio": args.ratio, "analysis_1000_nodes": analysis_timing(), "models": []}
    for name in args.only or ["resnet", "dwconcat", "transformer"]:
        report["models"].append(run_model(name, args))
        args.out.write_text(json.dumps(report, indent=1, default=str))
        _table(report["models"][-1])
    print(
        f"analysis of {report['analysis_1000_nodes']['nodes']} nodes: "
        f"{report['analysis_1000_nodes']['seconds']} s"
    )


def _table(entry: dict[str, Any]) -> None:
    print(
        f"\n{entry['model']}  (recovery {entry['recovery']['epochs']} epochs, "
        f"{entry['recovery']['seconds']} s)"
    )
    print(f"{'variant':20s} {'top1':>7s} {'MACs':>10s} {'params':>8s} {'p50 ms@32':>10s} {'speedup':>8s}")
    for key, r in entry["results"].items():
        if "macs" not in r:
            print(f"{key:20s} {r['top1'] * 100:6.2f}%")
            continue
        print(
            f"{key:20s} {r['top1'] * 100:6.2f}% {r['macs']:10,d} {r['params']:8,d} {r['p50_ms_b32']:10.3f} "
            f"{r['speedup_paired']:7.2f}x"
        )


if __name__ == "__main__":
    main()
