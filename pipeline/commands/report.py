"""``trtforge report WORKDIR``: rebuild report.json / report.md from the stage records."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.commands._common import emit, output_options
from pipeline.errors import InputError


@click.command("report")
@click.argument("workdir", type=click.Path(path_type=Path))
@output_options
def command(workdir: Path) -> None:
    """Rebuild WORKDIR/report.json and report.md from every WORKDIR/NN-<stage>/stage.json."""
    from pipeline.validation.report import build_report, records_from_workdir, render_markdown, write_report

    if not workdir.is_dir():
        raise InputError(f"{workdir}: not a work directory; pass the -w directory of a trtforge run")
    records = records_from_workdir(workdir)
    if not records:
        raise InputError(
            f"{workdir}: no finished stages (no NN-<stage>/stage.json); run `trtforge run` first"
        )
    report = build_report(workdir, records)
    write_report(workdir, report)
    emit(report, lambda: click.echo(render_markdown(report)))
