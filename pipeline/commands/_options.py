"""Click options generated from the stage config dataclasses, and the option blocks verbs share.

Flags and files are one language: every field of a stage's config (a key of its ``[[stage]]``
table in a trtforge.toml) is a flag of the stage's verb, generated here from the dataclass:

* ``field_name`` -> ``--field-name`` (:attr:`Flag.decls` may rename it, e.g. ``--batch`` for
  ``batches``); the click parameter keeps the field's name, so flags map back to keys 1:1;
* ``bool`` -> ``--name/--no-name``; ``Literal[...]`` -> a choice; ``int``, ``float``, ``str``, ``Path``;
* ``tuple[X, ...]`` -> a repeatable flag, or one comma-separated value where :attr:`Flag.comma` is set;
* ``dict[str, X]`` and nested config dataclasses -> a repeatable ``KEY=VALUE`` flag;
* ``X | None`` -> an optional flag. Defaults are the dataclass's, shown by ``--help``.

Help comes from the verb's table of :class:`Flag` (``FLAGS`` in ``pipeline/commands/<verb>.py``),
else from :data:`COMMON_FLAGS` for fields several stages share. ``--dry-run`` prints the resolved
config as the ``[[stage]]`` table a trtforge.toml takes (JSON with ``--json``).
``tests/cli/test_config_flags.py`` checks every field of every stage has a flag with real help.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from trtforge.pipeline.commands._common import emit, output_options, toml_text
from trtforge.pipeline.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

if TYPE_CHECKING:
    ParamType = click.ParamType[Any, Any]  # generic in click >= 8.2
else:
    ParamType = click.ParamType

#: ``Flag.default`` when the option's default is the dataclass field's
FIELD_DEFAULT: Any = object()

#: help of a generated option whose field has no entry in the verb's table or COMMON_FLAGS
MISSING_HELP = "(no help yet: add this field to the verb's FLAGS)"


@dataclass(frozen=True)
class Flag:
    """How one config field appears on the command line (everything but ``help`` is optional)."""

    help: str
    #: click declarations replacing ``--field-name`` (``--a/--b`` pairs for booleans)
    decls: tuple[str, ...] = ()
    metavar: str | None = None
    #: tuple fields: one comma-separated value (``--batch 1,32``) instead of a repeatable flag
    comma: bool = False
    #: a click type replacing the one derived from the field's type
    type: ParamType | None = None
    #: the option's default where it differs from the field's (None: the verb resolves it)
    default: Any = FIELD_DEFAULT


#: help for fields several stages share; a verb's own FLAGS entry wins
COMMON_FLAGS: dict[str, Flag] = {
    "threads": Flag("ONNX Runtime intra-op threads (default: ONNX Runtime's, all cores)."),
    "batch_size": Flag("Samples per ONNX Runtime run in data passes."),
    "seed": Flag("Seed of the random inputs used where no data is given."),
    "atol": Flag("Parity tolerance, absolute."),
    "rtol": Flag("Parity tolerance, relative."),
}


# --- values from text: one parser for flag values, KEY=VALUE pairs and list items ----------------


def parse_value(text: str, hint: Any, what: str) -> Any:
    """``text`` as a value of type ``hint`` (a config field's annotation); ConfigError naming ``what``."""
    base, _ = unwrap_optional(hint)
    origin, args = typing.get_origin(base), typing.get_args(base)
    if origin is typing.Literal:
        if text not in [str(a) for a in args]:
            raise ConfigError(f"{what}: {text!r} is not one of {', '.join(str(a) for a in args)}")
        return next(a for a in args if str(a) == text)
    if origin in (tuple, list):
        inner = args[0] if args else str
        # 1,32; integers also as 224x224 (sizes)
        items = text.lower().split("x") if inner is int and "," not in text else text.split(",")
        try:
            if not all(item.strip() for item in items):
                raise ConfigError(f"{what}: empty item")
            return tuple(parse_value(item.strip(), inner, what) for item in items)
        except ConfigError as exc:
            example = "1,32" if inner is int else "0.485,0.456,0.406" if inner is float else "a,b"
            raise ConfigError(
                f"{what}: {text!r} is not a comma-separated list of {_type_name(inner)}s, e.g. {example}"
            ) from exc
    if base is bool:
        lowered = text.lower()
        if lowered not in ("true", "false", "yes", "no", "1", "0", "on", "off"):
            raise ConfigError(f"{what}: {text!r} is not true or false")
        return lowered in ("true", "yes", "1", "on")
    if base in (int, float):
        try:
            return base(text)
        except ValueError as exc:
            raise ConfigError(f"{what}: {text!r} is not {_type_name(base, article=True)}") from exc
    if base is Path:
        return Path(text)
    return text


def unwrap_optional(hint: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); a union of several types keeps ``Path`` if it has one (files win)."""
    if typing.get_origin(hint) not in (typing.Union, types.UnionType):
        return hint, False
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    optional = len(args) < len(typing.get_args(hint))
    if len(args) == 1:
        return args[0], optional
    return (Path if Path in args else args[0]), optional


def _type_name(hint: Any, article: bool = False) -> str:
    name = {int: "integer", float: "number", str: "string", Path: "path", bool: "boolean"}.get(hint, "value")
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}" if article else name


class TextOf(ParamType):
    """A click type parsing text with :func:`parse_value` (lists, bools), errors as one-line ConfigErrors."""

    def __init__(self, hint: Any, metavar: str) -> None:
        self.hint = hint
        self.name = metavar

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        return parse_value(value, self.hint, _flag_name(param))


class KeyValue(ParamType):
    """``KEY=VALUE`` -> (key, value); values typed by ``hints`` (a field per key, or one type for all)."""

    name = "KEY=VALUE"

    def __init__(self, hints: Mapping[str, Any] | Any) -> None:
        self.hints = hints

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        flag = _flag_name(param)
        key, sep, text = value.partition("=")
        if not sep or not key:
            form = getattr(param, "metavar", None) or "KEY=VALUE"
            raise ConfigError(f"{flag}: {value!r} is not of the form {form}, e.g. {_example(self.hints)}")
        if isinstance(self.hints, Mapping):
            if key not in self.hints:
                raise ConfigError(f"{flag}: unknown key {key!r}; valid keys are: {', '.join(self.hints)}")
            return key, parse_value(text, self.hints[key], f"{flag} {key}")
        return key, parse_value(text, self.hints, f"{flag} {key}")


def _flag_name(param: click.Parameter | None) -> str:
    return param.opts[0] if param is not None and param.opts else "value"


def _example(hints: Mapping[str, Any] | Any) -> str:
    return f"{next(iter(hints))}=..." if isinstance(hints, Mapping) and hints else "name=0.5"


# --- the generator ------------------------------------------------------------------------------


def config_options(cls: type, flags: Mapping[str, Flag], *, skip: Collection[str] = ()) -> Callable[[F], F]:
    """Add one click option per field of config dataclass ``cls`` (in field order), except ``skip``."""
    hints = typing.get_type_hints(cls)
    unknown = set(flags) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise TypeError(f"{cls.__name__} has no field(s) {sorted(unknown)} (FLAGS out of date)")
    options = [
        _option(f, hints[f.name], flags.get(f.name) or COMMON_FLAGS.get(f.name) or Flag(MISSING_HELP))
        for f in dataclasses.fields(cls)
        if f.init and f.name not in skip
    ]

    def decorate(fn: F) -> F:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


def _field_default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _option(f: dataclasses.Field[Any], hint: Any, flag: Flag) -> Callable[[F], F]:
    base, _ = unwrap_optional(hint)
    origin, args = typing.get_origin(base), typing.get_args(base)
    default = _field_default(f) if flag.default is FIELD_DEFAULT else flag.default
    kebab = f.name.replace("_", "-")
    decls = flag.decls or ((f"--{kebab}/--no-{kebab}",) if base is bool else (f"--{kebab}",))
    kwargs: dict[str, Any] = {"help": flag.help, "show_default": True}
    if flag.metavar:
        kwargs["metavar"] = flag.metavar
    if origin in (tuple, list) and not flag.comma:  # repeatable flag, one item each
        kwargs.update(multiple=True, type=flag.type or _scalar_type(args[0] if args else str))
        kwargs["default"] = tuple(default) if default else None
        kwargs["help"] += " Repeatable" + ("; replaces the default list." if default else ".")
    elif origin in (tuple, list):  # one value, comma-separated items
        kwargs["type"] = flag.type or TextOf(base, flag.metavar or "LIST")
        kwargs["default"] = ",".join(str(v) for v in default) if default else None
    elif origin is dict or (dataclasses.is_dataclass(base) and isinstance(base, type)):
        value_hints = typing.get_type_hints(base) if origin is not dict else (args[1] if args else str)
        kwargs.update(multiple=True, type=flag.type or KeyValue(value_hints), callback=_to_table(origin))
        kwargs["help"] += " Repeatable."
    elif base is bool:  # a --name/--no-name pair
        kwargs["default"] = default
    else:
        kwargs["type"] = flag.type or _scalar_type(base)
        kwargs["default"] = default
    return click.option(*decls, f.name, **kwargs)


def _scalar_type(hint: Any) -> ParamType:
    base, _ = unwrap_optional(hint)
    if typing.get_origin(base) is typing.Literal:
        return click.Choice([str(a) for a in typing.get_args(base)])
    known: dict[Any, ParamType] = {
        int: click.INT,
        float: click.FLOAT,
        str: click.STRING,
        Path: click.Path(path_type=Path),
    }
    return known.get(base) or TextOf(base, "VALUE")


def _to_table(origin: Any) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """Collect KEY=VALUE pairs into a table; an empty nested table is None (the field's default)."""

    def collect(ctx: click.Context, param: click.Parameter, pairs: Any) -> dict[str, Any] | None:
        table = dict(pairs or ())
        return table if table or origin is dict else None

    return collect


def config_from_flags(cls: type[T], values: Mapping[str, Any], where: str) -> T:
    """The config dataclass from its generated options' values (None: the field's default)."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    raw = {
        k: list(v) if isinstance(v, tuple) else v for k, v in values.items() if k in names and v is not None
    }
    from trtforge.pipeline.config import from_dict

    return from_dict(cls, raw, where)


def show_stage_config(stage: str, config: Any) -> None:
    """``--dry-run``: the resolved config as a ``[[stage]]`` table (TOML; JSON with --json)."""
    from trtforge.pipeline.config import to_dict

    table = {"type": stage, **to_dict(config)}
    emit(table, lambda: click.echo(toml_text([("[[stage]]", table)])))


# --- option blocks shared by the verbs ----------------------------------------------------------


def stage_options(
    stage: str,
    cls: type,
    flags: Mapping[str, Flag],
    *,
    skip: Collection[str] = (),
    resolve: Callable[[dict[str, Any]], None] | None = None,
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """A single-stage verb's options: one flag per field of its config ``cls``, ``--dry-run`` and
    ``--json/--quiet/--debug``. The verb gets the config built from the flags as ``config=``;
    with ``--dry-run`` it is printed instead (the verb does not run). ``resolve(params)`` may fill
    in flags left None from the verb's other parameters first (e.g. a format from ``-o``'s suffix).
    """
    fields = {f.name for f in dataclasses.fields(cls)} - set(skip)

    def decorate(verb: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(verb)
        def run(dry_run: bool, **params: Any) -> None:
            if resolve is not None:
                resolve(params)
            config: Any = config_from_flags(cls, {k: params.pop(k) for k in fields}, stage)
            if dry_run:
                return show_stage_config(stage, config)
            return verb(config=config, **params)

        wrapped = output_options(run)
        wrapped = click.option(
            "--dry-run", is_flag=True, help="Print the resolved stage config (a [[stage]] table) and exit."
        )(wrapped)
        return config_options(cls, flags, skip=skip)(wrapped)

    return decorate


def model_and_output(output_help: str, *, model_path: bool = True) -> Callable[[F], F]:
    """``MODEL -o OUTPUT``: the input model (a path; ``model_path=False`` also takes
    ``package.module:factory``) and the required output file."""

    def decorate(fn: F) -> F:
        fn = click.option(
            "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help=output_help
        )(fn)
        return click.argument("model", type=click.Path(path_type=Path) if model_path else click.STRING)(fn)

    return decorate


def model_argument(name: str) -> Callable[[F], F]:
    """A model path argument (``validate``'s REFERENCE and CANDIDATE)."""
    return click.argument(name, type=click.Path(path_type=Path))


def data_option(flag: str, help: str, name: str | None = None) -> Callable[[F], F]:
    """A data path option (``--data``, ``--calibration-data``, ...): .npy, .npz or a directory."""
    return click.option(flag, *([name] if name else []), type=click.Path(path_type=Path), help=help)
