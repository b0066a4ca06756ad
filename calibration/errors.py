"""Errors of the calibration package (mapped to ``pipeline.errors.InputError`` by the stages)."""

from __future__ import annotations


class CalibrationError(ValueError):
    """Calibration or quantization cannot proceed; the message names the file and the fix."""


class DataError(CalibrationError):
    """Input data (calibration or validation) is unusable; the message names the file and the fix."""
