"""Errors of the calibration package (mapped to ``pipeline.errors.InputError`` by the stages)."""

from __future__ import annotations


class CalibrationError(ValueError):
    """Calibration or quantization cannot proceed; the message names the file and the fix."""


class DataError(CalibrationError):
    """Input data (calibration or validation) is unusable; the message names the file and the fix."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (its type name when empty), for one-line errors.

    (``pipeline.errors.first_line`` is the same; this package may not import ``pipeline``.)
    """
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__
