"""The exception tree and exit codes, defined in :mod:`trtforge.common.errors` (shared with calibration)."""

from trtforge.common.errors import (
    EXIT_BAD_INPUT,
    EXIT_GATE_FAILED,
    EXIT_MISSING_ENV,
    EXIT_OK,
    ConfigError,
    GateFailed,
    InputError,
    MissingDependencyError,
    StageError,
    TrtforgeError,
    first_line,
)

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_GATE_FAILED",
    "EXIT_MISSING_ENV",
    "EXIT_OK",
    "ConfigError",
    "GateFailed",
    "InputError",
    "MissingDependencyError",
    "StageError",
    "TrtforgeError",
    "first_line",
]
