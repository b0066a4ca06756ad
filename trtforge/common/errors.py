"""One exception tree for trtforge (``trtforge.pipeline.errors`` re-exports it).

The CLI prints a ``TrtforgeError`` as one line and exits with its ``exit_code``;
any other exception is a bug and keeps its traceback.

Exit codes (DESIGN.md): 0 success, 1 a gate failed, 2 bad input or usage,
3 the environment lacks what was asked for (TensorRT, a GPU, an optional package).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_MISSING_ENV = 3


class TrtforgeError(Exception):
    """Base of every error trtforge raises on purpose."""

    exit_code: int = EXIT_BAD_INPUT


class InputError(TrtforgeError):
    """A user-supplied file or value is unusable; the message names it and the fix."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(TrtforgeError):
    """A configuration (TOML or flags) is invalid; the message names the key and the valid ones."""

    exit_code = EXIT_BAD_INPUT


class MissingDependencyError(TrtforgeError):
    """An optional package, TensorRT or a GPU is missing; the message says how to get it."""

    exit_code = EXIT_MISSING_ENV


class StageError(TrtforgeError):
    """A stage broke its contract (precondition or postcondition)."""

    exit_code = EXIT_GATE_FAILED


class GateFailed(TrtforgeError):
    """A quality gate (parity, accuracy, throughput) did not hold."""

    exit_code = EXIT_GATE_FAILED


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (its type name when empty), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__
