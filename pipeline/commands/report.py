"""``trtforge report WORKDIR``: rebuild report.json / report.md from the stage records."""

from __future__ import annotations

from pathlib import Path

import click

from trtforge.pipeline.commands._common import emit, output_options


@click.command("report")
@click.argument("workdir", type=click.Path(path_type=Path))
@output_options
def command(workdir: Path) -> None:
    """Rebuild WORKDIR/report.json and report.md from every WORKDIR/NN-<stage>/stage.json."""
    from trtforge.pipeline.api import report
    from trtforge.pipeline.validation.report import render_markdown

    data = report(workdir)
    emit(data, lambda: click.echo(render_markdown(data)))
