"""TensorRT version gates.

The gating convention (checked by ``tools/trt_names.py`` against the real 10.x and 11.x bindings):

* ``trt.X`` names used inside ``if is_trt10(trt):`` are checked against TensorRT 10 only, names in
  its ``else:`` branch against 11 only (``is_trt11`` the other way round);
* a function whose name ends in ``_trt10`` may only use names that exist in 10 and is only called
  from an ``is_trt10`` branch;
* everything else must exist in both versions;
* in these modules the variable names ``builder``, ``network``, ``builder_config``, ``parser``,
  ``profile``, ``trt_runtime``, ``engine``, ``context`` and ``err`` hold only the TensorRT objects
  of those names, so their attributes are checked too (see ``TYPED`` in ``tools/trt_names.py``).

Names removed in 11 (TENSORRT.md) are listed in :data:`REMOVED_IN_11` so error messages can say why.
"""

from __future__ import annotations

from typing import Any

from trtforge.pipeline.errors import ConfigError, MissingDependencyError

SUPPORTED_MAJORS = (10, 11)

REMOVED_IN_11 = frozenset(
    {
        "BuilderFlag.FP16",
        "BuilderFlag.INT8",
        "IInt8EntropyCalibrator2",
        "IBuilderConfig.int8_calibrator",
        "NetworkDefinitionCreationFlag.EXPLICIT_BATCH",
    }
)


def parse_version(text: str) -> tuple[int, ...]:
    """``"10.16.1.11"`` -> ``(10, 16, 1, 11)``; non-numeric tails (``"11.4.0.post1"``) are dropped."""
    parts: list[int] = []
    for piece in str(text).split("."):
        digits = "".join(ch for ch in piece if ch.isdigit()) if piece[:1].isdigit() else ""
        if not digits:
            break
        parts.append(int(digits))
    if not parts:
        raise ConfigError(f"cannot read a TensorRT version from {text!r}")
    return tuple(parts)


def trt_major(trt: Any) -> int:
    """Major version of the imported ``tensorrt`` module."""
    return parse_version(trt.__version__)[0]


def is_trt10(trt: Any) -> bool:
    return trt_major(trt) == 10


def is_trt11(trt: Any) -> bool:
    return trt_major(trt) >= 11


def check_supported(version: str) -> None:
    """Raise ``MissingDependencyError`` for a TensorRT major version this code was not written against."""
    major = parse_version(version)[0]
    if major not in SUPPORTED_MAJORS:
        raise MissingDependencyError(
            f"TensorRT {version} is not supported; trtforge builds with TensorRT "
            f"{' or '.join(str(m) for m in SUPPORTED_MAJORS)}.x"
        )


def check_legacy_allowed(version: str, legacy_fp16: bool, legacy_int8: bool) -> None:
    """Legacy (weakly typed) precision flags exist only on TensorRT 10; refuse them elsewhere."""
    if not (legacy_fp16 or legacy_int8):
        return
    major = parse_version(version)[0]
    if major == 10:
        return
    what = " and ".join(
        w for w, on in (("--legacy-fp16", legacy_fp16), ("--legacy-int8-cache", legacy_int8)) if on
    )
    raise ConfigError(
        f"{what} needs TensorRT 10; TensorRT {version} removed BuilderFlag.FP16/INT8 and implicit INT8 "
        "calibration. Put the precision in the ONNX graph instead (trtforge quantize for Q/DQ INT8, "
        "FP16 conversion for half precision) and build without the legacy flags"
    )
