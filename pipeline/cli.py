"""The ``trtforge`` command line: a click group whose verbs live in ``pipeline/commands/``.

Errors derived from ``TrtforgeError`` print as one line and exit with their code
(0 ok, 1 gate failed, 2 bad input/usage, 3 missing environment); anything else is a bug
and keeps its traceback. ``--debug`` shows tracebacks for every error.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

import click

from trtforge.pipeline import __version__

#: verb -> module in pipeline/commands (static list: a test imports each)
COMMANDS: dict[str, str] = {
    "run": "trtforge.pipeline.commands.run",
    "export": "trtforge.pipeline.commands.export",
    "fuse": "trtforge.pipeline.commands.fuse",
    "prune": "trtforge.pipeline.commands.prune",
    "quantize": "trtforge.pipeline.commands.quantize",
    "convert-fp16": "trtforge.pipeline.commands.convert_fp16",
    "build": "trtforge.pipeline.commands.build",
    "validate": "trtforge.pipeline.commands.validate",
    "bench": "trtforge.pipeline.commands.bench",
    "report": "trtforge.pipeline.commands.report",
    "inspect": "trtforge.pipeline.commands.inspect",
    "plugins": "trtforge.pipeline.commands.plugins",
}


class LazyGroup(click.Group):
    """Imports a verb's module only when that verb is used (keeps ``--help`` fast and light)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module = importlib.import_module(COMMANDS[cmd_name])
        cmd: click.Command = module.command
        return cmd

    def invoke(self, ctx: click.Context) -> Any:
        """Print trtforge errors as one line with their exit code (here, so CliRunner sees it too)."""
        from trtforge.pipeline.commands._common import SETTINGS
        from trtforge.pipeline.errors import TrtforgeError

        try:
            return super().invoke(ctx)
        except TrtforgeError as exc:
            if SETTINGS.debug:
                raise
            click.echo(f"trtforge: error: {exc}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, prog_name="trtforge")
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug) on stderr.")
def cli(verbose: int) -> None:
    """trtforge: export, fuse, prune, quantize, build and validate neural networks for deployment.

    \b
    Exit codes: 0 success, 1 a gate failed (parity, accuracy, throughput),
                2 bad input or usage, 3 the environment lacks what was asked for.
    """
    from trtforge.pipeline.commands._common import reset_settings

    reset_settings()
    if verbose:
        logging.basicConfig(
            level=logging.DEBUG if verbose > 1 else logging.INFO,
            stream=sys.stderr,
            format="%(levelname)s %(name)s: %(message)s",
        )


def main(argv: list[str] | None = None) -> Any:
    from trtforge.pipeline.commands._common import SETTINGS
    from trtforge.pipeline.errors import TrtforgeError

    try:
        code = cli.main(args=argv, prog_name="trtforge", standalone_mode=False)
        # with standalone_mode=False click returns ctx.exit()'s code instead of exiting
        sys.exit(code if isinstance(code, int) else 0)
    except TrtforgeError as exc:
        if SETTINGS.debug:
            raise
        click.echo(f"trtforge: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("trtforge: interrupted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("trtforge: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
