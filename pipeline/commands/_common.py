"""Helpers shared by the CLI verbs: output options, JSON/TOML/human output, progress, gates.

Each verb lives in ``pipeline/commands/<verb>.py`` and exposes a click command named ``command``.
A verb turns flags into a typed config (options generated in ``_options.py``), calls
``pipeline.api``, and prints either a human summary (stdout, rich) or JSON (``--json``).
Progress goes to stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import click

from trtforge.pipeline.errors import GateFailed
from trtforge.pipeline.stage import Gate, ProgressFn, StageResult

F = TypeVar("F", bound=Callable[..., Any])


class HasGates(Protocol):
    """A stage result, a bench result: anything with gates."""

    @property
    def gates(self) -> Sequence[Gate]: ...


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


#: the output flags every verb takes: (declarations, setting, help), handled here, not passed on
_OUTPUT_FLAGS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("--debug",), "debug", "Show tracebacks for errors."),
    (("--quiet", "-q"), "quiet", "Print nothing but errors (and JSON with --json)."),
    (("--json", "as_json"), "json", "Print machine-readable JSON on stdout."),
)


def output_options(f: F) -> F:
    """Add ``--json``, ``--quiet`` and ``--debug`` to a command (handled here, not passed on)."""
    for decls, setting, text in _OUTPUT_FLAGS:
        f = click.option(
            *decls, is_flag=True, expose_value=False, is_eager=True, callback=_set(setting), help=text
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


def gates_table(result: HasGates) -> list[dict[str, Any]]:
    return [g.to_dict() for g in result.gates]


def model_payload(output: Path, result: StageResult) -> dict[str, Any]:
    """The JSON of a verb that writes a model: output path, whether it changed, metrics, gates."""
    return {
        "output": str(output) if all(result.gates) else None,  # a failed gate writes nothing
        "modified": result.modified,
        **dict(result.metrics),
        "gates": gates_table(result),
    }


def fail_on_gates(result: HasGates) -> None:
    """Raise GateFailed (exit 1) naming the failed gates, after the output was printed."""
    failed = [g for g in result.gates if not g.passed]
    if failed:
        names = ", ".join(f"{g.name} ({g.detail})" if g.detail else g.name for g in failed)
        raise GateFailed(f"gate failed: {names}")


def toml_text(tables: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
    """TOML for ``[(header, table), ...]``, e.g. ``("[[stage]]", {...})``; None values are left out."""
    lines: list[str] = []
    for header, table in tables:
        lines += ["", header] if lines else [header]
        lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items() if v is not None]
    return "\n".join(lines)


def _toml_key(key: Any) -> str:
    text = str(key)
    return text if text and all(c.isalnum() or c in "_-" for c in text) else json.dumps(text)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, Mapping):
        return (
            "{ "
            + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items() if x is not None)
            + " }"
        )
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(str(v))
