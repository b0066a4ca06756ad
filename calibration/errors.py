"""Errors of the calibration package: part of trtforge's one exception tree (``trtforge.common.errors``).

A ``CalibrationError`` is an ``InputError`` (exit code 2, one line naming the file and the fix) and,
for callers of this package alone, a ``ValueError``.
"""

from __future__ import annotations

from trtforge.common.errors import InputError, first_line

__all__ = ["CalibrationError", "DataError", "first_line"]


class CalibrationError(InputError, ValueError):
    """Calibration or quantization cannot proceed; the message names the file and the fix."""


class DataError(CalibrationError):
    """Input data (calibration or validation) is unusable; the message names the file and the fix."""
