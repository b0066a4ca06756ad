"""Helpers shared by the CLI verbs: output options, JSON/human output, progress, shape parsing.

Each verb lives in ``pipeline/commands/<verb>.py`` and exposes a click command named ``command``.
A verb turns flags into a typed config, calls ``pipeline.api``, and prints either a human
summary (stdout, rich) or JSON (``--json``). Progress goes to stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from pipeline.errors import ConfigError, GateFailed
from pipeline.stage import ProgressFn, StageResult

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class OutputSettings:
    json: bool = False
    quiet: bool = False
    debug: bool = False


#: set by the output options of the running command; read by ``pipeline.cli.main`` for --debug
SETTINGS = OutputSettings()


def reset_settings() -> None:
    SETTINGS.json = SETTINGS.quiet = SETTINGS.debug = False


def _set(field: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def cb(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value:
            setattr(SETTINGS, field, True)
        return value

    return cb


def output_options(f: F) -> F:
    """Add ``--json``, ``--quiet`` and ``--debug`` to a command (handled here, not passed on)."""
    f = click.option(
        "--debug",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_set("debug"),
        help="Show tracebacks for errors.",
    )(f)
    f = click.option(
        "--quiet",
        "-q",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_set("quiet"),
        help="Print nothing but errors (and JSON with --json).",
    )(f)
    f = click.option(
        "--json",
        "as_json",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_set("json"),
        help="Print machine-readable JSON on stdout.",
    )(f)
    return f


def emit(data: Any, human: Callable[[], None] | str | None = None) -> None:
    """Print ``data`` as JSON with --json, else call/print ``human`` unless --quiet."""
    if SETTINGS.json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    if SETTINGS.quiet or human is None:
        return
    if isinstance(human, str):
        click.echo(human)
    else:
        human()


def console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    if not SETTINGS.quiet:
        click.echo(f"WARNING: {message}", err=True)


@contextmanager
def progress_bar() -> Iterator[ProgressFn]:
    """A ProgressFn rendering on stderr (rich), silent with --quiet/--json or when stderr is no TTY."""
    if SETTINGS.quiet or SETTINGS.json or not sys.stderr.isatty():

        def quiet(what: str, done: int, total: int) -> None:
            return None

        yield quiet
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    tasks: dict[str, Any] = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as prog:

        def update(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = prog.add_task(what, total=max(total, 1))
            prog.update(tasks[what], completed=done, total=max(total, 1))

        yield update


def parse_shape(text: str) -> tuple[int, ...]:
    """``1x3x224x224`` -> (1, 3, 224, 224)."""
    try:
        dims = tuple(int(d) for d in text.lower().split("x"))
    except ValueError as exc:
        raise ConfigError(f"shape {text!r} is not of the form 1x3x224x224") from exc
    if not dims or any(d <= 0 for d in dims):
        raise ConfigError(f"shape {text!r}: every dimension must be a positive integer")
    return dims


def parse_named_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """``images:1x3x224x224`` -> ("images", (1, 3, 224, 224))."""
    name, sep, shape = text.rpartition(":")
    if not sep or not name:
        raise ConfigError(f"{text!r} is not of the form NAME:1x3x224x224")
    return name, parse_shape(shape)


def parse_int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise ConfigError(f"{text!r} is not a comma-separated list of integers, e.g. 1,32") from exc
    if not values or any(v <= 0 for v in values):
        raise ConfigError(f"{text!r}: give positive integers, e.g. 1,32")
    return values


def gates_table(result: StageResult) -> list[dict[str, Any]]:
    return [g.to_dict() for g in result.gates]


def fail_on_gates(result: StageResult) -> None:
    """Raise GateFailed (exit 1) naming the failed gates, after the output was printed."""
    failed = [g for g in result.gates if not g.passed]
    if failed:
        names = ", ".join(f"{g.name} ({g.detail})" if g.detail else g.name for g in failed)
        raise GateFailed(f"gate failed: {names}")
