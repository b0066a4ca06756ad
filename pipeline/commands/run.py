"""``trtforge run``: the whole pipeline from a trtforge.toml (or from flags), cached per stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from trtforge.pipeline.commands._common import (
    SETTINGS,
    console,
    emit,
    output_options,
    progress_bar,
    toml_text,
)
from trtforge.pipeline.errors import ConfigError, GateFailed


@click.command("run")
@click.argument("config", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-w",
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Work directory (default: [pipeline].workdir of the config).",
)
@click.option(
    "--model", help="Override [pipeline].model (.onnx, .pt2, TorchScript or package.module:factory)."
)
@click.option("--weights", help="Override [pipeline].weights (state_dict for module:factory).")
@click.option("--calibration-data", help="Override [pipeline].calibration_data.")
@click.option("--validation-data", help="Override [pipeline].validation_data.")
@click.option(
    "--stages", help="Without CONFIG: comma-separated stages with default settings, e.g. export,fuse."
)
@click.option("--force", is_flag=True, help="Re-run every stage even where the cache matches.")
@click.option("--dry-run", is_flag=True, help="Print the resolved config and exit.")
@output_options
def command(
    config: Path | None,
    workdir: Path | None,
    model: str | None,
    weights: str | None,
    calibration_data: str | None,
    validation_data: str | None,
    stages: str | None,
    force: bool,
    dry_run: bool,
) -> None:
    """Run the stages of CONFIG (a trtforge.toml) in order into WORKDIR/NN-<stage>/.

    Each finished stage is cached by content hash (input model, config, data, tool versions);
    a re-run skips unchanged stages. Writes WORKDIR/report.json and report.md. Exits 1 when a
    gate (parity, accuracy, latency) fails.
    """
    from trtforge.pipeline.api import load_config

    overrides = {
        "model": model,
        "weights": weights,
        "calibration_data": calibration_data,
        "validation_data": validation_data,
    }
    if config is None and Path("trtforge.toml").is_file() and not stages:
        config = Path("trtforge.toml")
    if config is not None:
        if stages:
            raise ConfigError(
                "--stages is only for runs without a config file; edit the [[stage]] tables instead"
            )
        cfg = load_config(config, overrides)
    elif model and stages:
        tables = {"pipeline": {}, "stage": [{"type": s.strip()} for s in stages.split(",") if s.strip()]}
        cfg = load_config(tables, overrides)
    else:
        raise ConfigError(
            "no config: pass a trtforge.toml (e.g. examples/digits/trtforge.toml) "
            "or --model M --stages export,fuse"
        )
    if dry_run:
        resolved = cfg.to_dict()
        if workdir is not None:
            resolved["pipeline"]["workdir"] = str(workdir)
        emit(resolved, lambda: click.echo(toml_text(_tables(resolved))))
        return
    _run(cfg, workdir, force)


def _run(cfg: Any, workdir: Path | None, force: bool) -> None:
    from trtforge.pipeline.api import run

    with progress_bar() as progress:
        result = run(cfg, workdir, force=force, progress=progress)
    emit(result.report, lambda: _print_summary(result.report, result.report_json, result.report_md))
    if not result.passed:
        raise GateFailed(f"gate failed: {', '.join(result.failed_gates)}; see {result.report_md}")


def _tables(resolved: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [("[pipeline]", resolved["pipeline"]), *(("[[stage]]", st) for st in resolved["stage"])]


def _print_summary(report: dict[str, Any], jpath: Path, mpath: Path) -> None:
    from rich.table import Table

    table = Table(title=f"trtforge run: {'PASSED' if report['passed'] else 'FAILED'}")
    for col in ("#", "stage", "cached", "time (s)", "modified", "gates"):
        table.add_column(col)
    for s in report["stages"]:
        gates = ", ".join(f"{g['name']} {'ok' if g['passed'] else 'FAIL'}" for g in s["gates"]) or "-"
        table.add_row(
            str(s["index"]),
            s["name"],
            "yes" if s["cached"] else "no",
            f"{s['duration_s']:.2f}" if not s["cached"] else "-",
            str(s["modified"]),
            gates,
        )
    con = console()
    con.print(table)
    final = report.get("final_artifact") or {}
    from trtforge.pipeline.validation.report import summary_lines

    for line in summary_lines(report.get("summary") or {}):
        con.print(line)
    con.print(f"final artifact: {final.get('path')}")
    con.print(f"report: {mpath} (JSON: {jpath}); wall time {report['wall_s']:.2f} s")


__all__ = ["SETTINGS", "command"]
