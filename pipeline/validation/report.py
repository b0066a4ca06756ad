"""``report.json`` (stable schema, for CI and nightly trends) and ``report.md`` (for people).

Built from the ``stage.json`` records of a work directory, so ``trtforge report WORKDIR``
can rebuild it without re-running anything.

Schema ``trtforge.report/1``::

    schema, trtforge_version, generated_at, workdir, passed (bool), wall_s (float|null),
    config (resolved pipeline config | null),
    stages: [{index, name, cached, duration_s, modified, input {kind, sha256},
              output {path, kind, sha256, size_bytes}, metrics {...}, gates [...]}],
    gates: [{stage, name, passed, value, threshold, detail}],
    final_artifact: {path, kind, sha256, size_bytes} | null,
    summary: {size_bytes {first_onnx, final, ratio}, latency {batch: {reference_p50_ms, p50_ms, speedup}},
              accuracy {reference, candidate, drop}, top1_agreement}   (keys present where measured)
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from trtforge.pipeline import __version__
from trtforge.pipeline.workspace import STAGE_RECORD, write_json_atomic

SCHEMA = "trtforge.report/1"


def records_from_workdir(workdir: str | Path) -> list[dict[str, Any]]:
    root = Path(workdir)
    recs = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and p.name[:2].isdigit() and "-" in p.name):
        f = d / STAGE_RECORD
        if f.is_file():
            recs.append(json.loads(f.read_text()))
    return recs


def _size(path: str | None) -> int | None:
    if not path:
        return None
    p = Path(path)
    if not p.is_file():
        return None
    size = p.stat().st_size
    data = p.with_name(p.name + ".data")
    return size + (data.stat().st_size if data.is_file() else 0)


def build_report(
    workdir: str | Path,
    records: Sequence[Mapping[str, Any]],
    cached: Mapping[int, bool] | None = None,
    config: Mapping[str, Any] | None = None,
    wall_s: float | None = None,
) -> dict[str, Any]:
    stages: list[dict[str, Any]] = []
    gates: list[dict[str, Any]] = []
    for rec in records:
        out = rec.get("output") or {}
        stage = {
            "index": rec.get("index"),
            "name": rec.get("stage"),
            "cached": bool((cached or {}).get(int(rec.get("index", 0)), False)),
            "duration_s": rec.get("duration_s"),
            "modified": rec.get("modified"),
            "input": {k: (rec.get("input") or {}).get(k) for k in ("kind", "sha256")},
            "output": {
                "path": out.get("path"),
                "kind": out.get("kind"),
                "sha256": out.get("sha256"),
                "size_bytes": _size(out.get("path")),
            },
            "metrics": rec.get("metrics", {}),
            "gates": rec.get("gates", []),
        }
        stages.append(stage)
        gates.extend({"stage": rec.get("stage"), **g} for g in rec.get("gates", []))
    final = stages[-1]["output"] if stages else None
    return {
        **_report_head(workdir, gates, wall_s, config),
        "stages": stages,
        "gates": gates,
        "final_artifact": final,
        "summary": summarize(stages),
    }


def _report_head(
    workdir: str | Path, gates: list[dict[str, Any]], wall_s: float | None, config: Mapping[str, Any] | None
) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "trtforge_version": __version__,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "workdir": str(workdir),
        "passed": all(g.get("passed") for g in gates),
        "wall_s": None if wall_s is None else round(wall_s, 3),
        "config": dict(config) if config is not None else None,
    }


def summarize(stages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Headline numbers: size (first ONNX -> final), latency vs reference, accuracy (last validate)."""
    out: dict[str, Any] = {}
    onnx_sizes = [s["output"]["size_bytes"] for s in stages if s["output"].get("kind") == "onnx"]
    final_size = stages[-1]["output"].get("size_bytes") if stages else None
    if onnx_sizes and onnx_sizes[0] and final_size:
        out["size_bytes"] = {
            "first_onnx": onnx_sizes[0],
            "final": final_size,
            "ratio": onnx_sizes[0] / final_size,
        }
    bench = [s["metrics"].get("latency") for s in stages if s["name"] == "bench"]
    if bench and isinstance(bench[-1], Mapping):
        lat = {}
        for batch, row in bench[-1].items():
            if isinstance(row, Mapping) and row.get("reference_p50_ms") and row.get("p50_ms"):
                lat[batch] = {
                    "reference_p50_ms": row["reference_p50_ms"],
                    "p50_ms": row["p50_ms"],
                    "speedup": row["reference_p50_ms"] / row["p50_ms"],
                }
        if lat:
            out["latency"] = lat
    checks = [s["metrics"] for s in stages if s["name"] == "validate"]
    if checks:
        if isinstance(checks[-1].get("accuracy"), Mapping):
            acc = checks[-1]["accuracy"]
            out["accuracy"] = {k: acc.get(k) for k in ("reference", "candidate", "drop")}
        if isinstance(checks[-1].get("top1"), Mapping):
            out["top1_agreement"] = checks[-1]["top1"].get("agreement")
    return out


def summary_lines(summary: Mapping[str, Any]) -> list[str]:
    """One human line per headline number."""
    lines = []
    if "size_bytes" in summary:
        s = summary["size_bytes"]
        lines.append(
            f"size: {s['first_onnx'] / 1024:.1f} KiB -> {s['final'] / 1024:.1f} KiB "
            f"({s['ratio']:.1f}x smaller)"
        )
    for batch, row in summary.get("latency", {}).items():
        lines.append(
            f"latency p50 at batch {batch}: {row['reference_p50_ms']:.3f} ms -> {row['p50_ms']:.3f} ms "
            f"({row['speedup']:.2f}x faster, models timed interleaved)"
        )
    if "accuracy" in summary:
        a = summary["accuracy"]
        lines.append(
            f"accuracy on labels: {100 * a['reference']:.2f}% -> {100 * a['candidate']:.2f}% "
            f"(drop {100 * a['drop']:.2f} pt)"
        )
    if summary.get("top1_agreement") is not None:
        lines.append(f"top-1 agreement with the reference: {100 * summary['top1_agreement']:.2f}%")
    return lines


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    if v is None:
        return "-"
    return str(v)


def _scalar_metrics(metrics: Mapping[str, Any], prefix: str = "", depth: int = 3) -> list[tuple[str, Any]]:
    """Scalar metrics, nested tables flattened to dotted keys (lists are left to report.json)."""
    rows: list[tuple[str, Any]] = []
    for k, v in metrics.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and depth > 1:
            rows.extend(_scalar_metrics(v, key + ".", depth - 1))
        elif isinstance(v, (int, float, str, bool)) or v is None:
            rows.append((key, v))
    return rows


MAX_METRIC_ROWS = 40


def render_markdown(report: Mapping[str, Any]) -> str:
    verdict = "PASSED" if report["passed"] else "FAILED"
    lines = [f"# trtforge report: {verdict}", "", f"Work directory: `{report['workdir']}`  "]
    if report.get("wall_s") is not None:
        lines.append(f"Wall time: {report['wall_s']:.2f} s  ")
    head = summary_lines(report.get("summary") or {})
    if head:
        lines += ["", "## Summary", ""] + [f"- {h}" for h in head]
    lines += [
        "",
        "## Stages",
        "",
        "| # | stage | cached | time (s) | modified | output | size (KiB) | gates |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in report["stages"]:
        out = s["output"]
        size = f"{out['size_bytes'] / 1024:.1f}" if out.get("size_bytes") else "-"
        gates = ", ".join(f"{g['name']} {'ok' if g['passed'] else 'FAIL'}" for g in s["gates"]) or "-"
        name = Path(out["path"]).name if out.get("path") else "-"
        lines.append(
            f"| {s['index']} | {s['name']} | {_fmt(s['cached'])} | {_fmt(s['duration_s'])} | "
            f"{_fmt(s['modified'])} | {name} | {size} | {gates} |"
        )
    if report["gates"]:
        lines += [
            "",
            "## Gates",
            "",
            "| stage | gate | passed | value | threshold | detail |",
            "|---|---|---|---|---|---|",
        ]
        for g in report["gates"]:
            lines.append(
                f"| {g['stage']} | {g['name']} | {'yes' if g['passed'] else '**NO**'} "
                f"| {_fmt(g.get('value'))}"
                f" | {_fmt(g.get('threshold'))} | {g.get('detail') or ''} |"
            )
    lines += ["", "## Metrics", ""]
    for s in report["stages"]:
        scalars = _scalar_metrics(s["metrics"])
        if not scalars:
            continue
        lines += [f"### {s['index']}. {s['name']}", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in scalars[:MAX_METRIC_ROWS]]
        if len(scalars) > MAX_METRIC_ROWS:
            lines.append(f"| ... | {len(scalars) - MAX_METRIC_ROWS} more in report.json |")
        lines.append("")
        lines += _record_tables(s["metrics"])
        lines += _plots(s)
    return "\n".join(lines) + "\n"


def _record_tables(metrics: Mapping[str, Any]) -> list[str]:
    """Lists of records (e.g. a per-layer sensitivity table) as markdown tables, 30 rows at most."""
    lines: list[str] = []
    for key, rows in metrics.items():
        if not (isinstance(rows, list) and rows and all(isinstance(r, Mapping) for r in rows)):
            continue
        cols = [c for c in rows[0] if isinstance(rows[0][c], (int, float, str, bool)) or rows[0][c] is None][
            :8
        ]
        if not cols:
            continue
        lines += [f"**{key}**", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows[:30]]
        if len(rows) > 30:
            lines.append(f"| {len(rows) - 30} more rows in report.json |" + " |" * (len(cols) - 1))
        lines.append("")
    return lines


def _plots(stage: Mapping[str, Any]) -> list[str]:
    """Images a stage wrote (metrics keys ending in ``_plot``), linked relative to the work directory."""
    out_path = (stage.get("output") or {}).get("path")
    if not out_path:
        return []
    stage_dir = Path(out_path).parent
    lines = []
    for key, value in stage["metrics"].items():
        if key.endswith("_plot") and isinstance(value, str) and (stage_dir / value).is_file():
            lines += [f"![{key}]({stage_dir.name}/{value})", ""]
    return lines


def write_report(workdir: str | Path, report: Mapping[str, Any]) -> tuple[Path, Path]:
    root = Path(workdir)
    jpath, mpath = root / "report.json", root / "report.md"
    write_json_atomic(jpath, report)
    from trtforge.pipeline.onnx_io import write_bytes_atomic

    write_bytes_atomic(mpath, render_markdown(report).encode())
    return jpath, mpath
