"""Optimization profiles: min/opt/max shapes per input, from ``--shapes`` or the IOSpec's dim ranges.

``--shapes`` syntax (one flag = one profile; repeat the flag for more profiles)::

    x:1x3x224x224,8x3x224x224,32x3x224x224          min, opt, max
    x:1x3x224x224                                     fixed shape (min = opt = max)
    "x:1x16,8x16,32x16 mask:1x16,8x16,32x16"           several inputs: separated by spaces or ';'

Static inputs need no entry; every dynamic input must get one in each profile, unless the IOSpec
carries a min/opt/max range for each of its named dynamic dims.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trtforge.pipeline.artifact import IOSpec, TensorSpec
from trtforge.pipeline.errors import ConfigError

Shape = tuple[int, ...]


@dataclass(frozen=True)
class ShapeRange:
    min: Shape
    opt: Shape
    max: Shape

    def contains(self, shape: Sequence[int]) -> bool:
        return len(shape) == len(self.min) and all(
            lo <= s <= hi for lo, s, hi in zip(self.min, shape, self.max)
        )

    def to_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


@dataclass(frozen=True)
class ShapeProfile:
    """One TensorRT optimization profile: a shape range for every model input."""

    shapes: Mapping[str, ShapeRange]

    def contains(self, shapes: Mapping[str, Sequence[int]]) -> bool:
        return all(name in self.shapes and self.shapes[name].contains(s) for name, s in shapes.items())

    def to_dict(self) -> dict[str, Any]:
        return {name: r.to_dict() for name, r in self.shapes.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ShapeProfile:
        return cls(
            {n: ShapeRange(tuple(r["min"]), tuple(r["opt"]), tuple(r["max"])) for n, r in data.items()}
        )


def parse_shapes(text: str) -> dict[str, tuple[Shape, ...]]:
    """Parse one ``--shapes`` value into ``{input: (shape, ...)}`` (1 or 3 shapes each)."""
    out: dict[str, tuple[Shape, ...]] = {}
    for entry in text.replace(";", " ").split():
        name, sep, dims = entry.rpartition(":")
        if not sep or not name:
            raise ConfigError(
                f"--shapes {entry!r}: expected NAME:MINxD..,OPTxD..,MAXxD.. e.g. x:1x3x8x8,4x3x8x8,16x3x8x8"
            )
        try:
            shapes = tuple(tuple(int(d) for d in s.lower().split("x")) for s in dims.split(","))
        except ValueError as exc:
            raise ConfigError(
                f"--shapes {entry!r}: dims must be integers joined by 'x', e.g. 1x3x8x8"
            ) from exc
        if len(shapes) not in (1, 3):
            raise ConfigError(f"--shapes {entry!r}: give one shape or three (min,opt,max), got {len(shapes)}")
        if name in out:
            raise ConfigError(
                f"--shapes: input {name!r} appears twice in one profile; repeat --shapes for a new one"
            )
        out[name] = shapes
    if not out:
        raise ConfigError("--shapes: empty value; expected NAME:MIN,OPT,MAX")
    return out


def _range_from_text(spec: TensorSpec, shapes: tuple[Shape, ...]) -> ShapeRange:
    lo, opt, hi = shapes if len(shapes) == 3 else (shapes[0],) * 3
    for s in (lo, opt, hi):
        if len(s) != len(spec.shape):
            raise ConfigError(
                f"--shapes {spec.name}: shape {'x'.join(map(str, s))} has rank {len(s)}, the input has "
                f"rank {len(spec.shape)} ({_show(spec)})"
            )
    for axis, dim in enumerate(spec.shape):
        if isinstance(dim, int) and dim > 0 and not lo[axis] == opt[axis] == hi[axis] == dim:
            raise ConfigError(
                f"--shapes {spec.name}: axis {axis} is fixed to {dim} in the model ({_show(spec)})"
            )
        if not 0 < lo[axis] <= opt[axis] <= hi[axis]:
            raise ConfigError(
                f"--shapes {spec.name}: axis {axis} needs 0 < min <= opt <= max, got {lo[axis]},"
                f"{opt[axis]},{hi[axis]}"
            )
    return ShapeRange(lo, opt, hi)


def _range_from_spec(spec: TensorSpec, dim_ranges: Mapping[str, tuple[int, int, int]]) -> ShapeRange:
    lo: list[int] = []
    opt: list[int] = []
    hi: list[int] = []
    for axis, dim in enumerate(spec.shape):
        if isinstance(dim, int) and dim > 0:
            rng = (dim, dim, dim)
        elif isinstance(dim, str) and dim in dim_ranges:
            rng = tuple(dim_ranges[dim])  # type: ignore[assignment]
        else:
            raise ConfigError(
                f"input {spec.name!r} axis {axis} ({dim or '?'}) is dynamic and has no range; pass "
                f"--shapes {spec.name}:{_example(spec)}"
            )
        lo.append(rng[0])
        opt.append(rng[1])
        hi.append(rng[2])
    return ShapeRange(tuple(lo), tuple(opt), tuple(hi))


def derive_profiles(iospec: IOSpec, shapes: Sequence[str] = ()) -> list[ShapeProfile]:
    """Profiles for TensorRT: one per ``--shapes`` value, or one from the IOSpec's ranges."""
    inputs = {t.name: t for t in iospec.inputs}
    texts = list(shapes) or [""]
    profiles = []
    for text in texts:
        given = parse_shapes(text) if text else {}
        unknown = sorted(set(given) - set(inputs))
        if unknown:
            raise ConfigError(
                f"--shapes: input {unknown[0]!r} not found; model inputs are: {', '.join(map(repr, inputs))}"
            )
        ranges = {
            name: _range_from_text(spec, given[name])
            if name in given
            else _range_from_spec(spec, iospec.dim_ranges)
            for name, spec in inputs.items()
        }
        profiles.append(ShapeProfile(ranges))
    return profiles


def select_profile(profiles: Sequence[ShapeProfile], shapes: Mapping[str, Sequence[int]]) -> int:
    """Index of the first profile whose ranges contain ``shapes``; ``ConfigError`` naming them otherwise."""
    for index, prof in enumerate(profiles):
        if prof.contains(shapes):
            return index
    got = ", ".join(f"{n}:{'x'.join(map(str, s))}" for n, s in shapes.items())
    have = " | ".join(
        " ".join(f"{n}:{'x'.join(map(str, r.min))}..{'x'.join(map(str, r.max))}" for n, r in p.shapes.items())
        for p in profiles
    )
    raise ConfigError(
        f"input shapes {got} fit no optimization profile of the engine ({have}); rebuild with --shapes"
    )


def is_dynamic(iospec: IOSpec) -> bool:
    return any(not (isinstance(d, int) and d > 0) for t in iospec.inputs for d in t.shape)


def _show(spec: TensorSpec) -> str:
    return f"{spec.name}: [{', '.join(str(d) if d is not None else '?' for d in spec.shape)}]"


def _example(spec: TensorSpec) -> str:
    def one(v: int) -> str:
        return "x".join(str(d) if isinstance(d, int) and d > 0 else str(v) for d in spec.shape)

    return f"{one(1)},{one(8)},{one(32)}"
