"""The one parity rule of trtforge: error definitions, the tolerance rule, the self-check config, gates.

Every comparison of two models' outputs goes through these definitions: the ``validate`` stage and
verb (:mod:`.parity` over :mod:`.error_stats`) and the self-checks the stages run (``export``
against torch, ``fuse`` and ``prune`` against their input, the ONNX Runtime ``build`` target against
its input; see :mod:`.selfcheck`).

* absolute error: ``|cand - ref|`` (:func:`abs_error`);
* relative error: ``|cand - ref| / max(|ref|, 1e-12)``, element by element (:func:`relative_error`);
  reported, never gated on by itself;
* the tolerance rule (:func:`violations`; ``numpy.isclose`` with the reference as ``b``): an element
  passes when ``|cand - ref| <= atol + rtol * |ref|``. Equal infinities pass; NaN fails, unless the
  check allows ``equal_nan`` and both sides are NaN (a self-check on random inputs, where a model may
  produce NaN and only has to produce it in the same places); a non-numeric element (a string)
  passes only when equal.

Gates come from one builder: :func:`parity_gate` for the rule and :func:`limit_gate` for one measured
value against a bound. A parity gate's ``value`` is the absolute error of its worst element (the one
with the largest ``|cand - ref| / (atol + rtol * |ref|)``) and its ``threshold`` that element's
allowed error ``atol + rtol * |ref|``, so ``value <= threshold`` exactly when the gate passes; with no
error anywhere they are 0 and ``atol``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from trtforge.pipeline.stage import Gate

if TYPE_CHECKING:
    from trtforge.common.tensors import TensorSpec
    from trtforge.pipeline.validation.error_stats import OutputParity

#: floor of ``|ref|`` in the relative error, so a zero reference gives a large finite number
REL_FLOOR = 1e-12
#: numpy dtype kinds compared numerically (bool, int, uint, float); anything else: equal or not
NUMERIC_KINDS = "biuf"
PASS_RULE = "every element: |cand - ref| <= atol + rtol * |ref|"


@dataclass(frozen=True)
class Tolerance:
    """Absolute and relative tolerance of one output (see the module docstring for the rule)."""

    atol: float = 1e-4
    rtol: float = 1e-3

    def __post_init__(self) -> None:
        for key in ("atol", "rtol"):
            value = getattr(self, key)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value >= 0):
                raise ValueError(f"{key} must be a finite number >= 0, got {value!r}")

    def allowed(self, ref: np.ndarray) -> np.ndarray:
        """The largest error each element of ``ref`` may have: ``atol + rtol * |ref|``."""
        return np.asarray(self.atol + self.rtol * np.abs(ref))

    def describe(self) -> str:
        return f"atol={self.atol:g} + rtol={self.rtol:g}*|ref|"


def abs_error(ref: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """``|cand - ref|``, element by element, in the arrays' own dtype."""
    return np.asarray(np.abs(np.subtract(cand, ref)))


def relative_error(abs_err: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``|cand - ref| / max(|ref|, 1e-12)`` from the absolute error and the reference."""
    return np.asarray(abs_err / np.maximum(np.abs(ref), REL_FLOOR))


def is_numeric(a: np.ndarray) -> bool:
    return a.dtype.kind in NUMERIC_KINDS


class ElementErrors(NamedTuple):
    """Errors of finite elements (float64): absolute, relative, and the allowed absolute error."""

    abs: np.ndarray
    rel: np.ndarray
    allowed: np.ndarray

    @property
    def failed(self) -> np.ndarray:
        """The tolerance rule, element by element: True where ``|cand - ref| > atol + rtol * |ref|``."""
        return self.abs > self.allowed

    def worst(self) -> tuple[float, float]:
        """(error, allowed error) of the element with the largest :func:`error_ratio`; (0, 0) if empty."""
        if not self.abs.size:
            return 0.0, 0.0
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(self.allowed > 0, self.abs / self.allowed, np.where(self.abs > 0, np.inf, 0.0))
        i = int(np.argmax(ratio))
        return float(self.abs.flat[i]), float(self.allowed.flat[i])


def error_ratio(err: float, allowed: float) -> float:
    """``err / allowed``: above 1 exactly when the element breaks the rule (inf for any error where
    nothing is allowed, 0 for none)."""
    if allowed > 0:
        return err / allowed
    return float("inf") if err > 0 else 0.0


def element_errors(ref: np.ndarray, cand: np.ndarray, tol: Tolerance) -> ElementErrors:
    """The errors of finite ``cand`` against finite ``ref`` (same shapes, cast to float64)."""
    r = np.asarray(ref, dtype=np.float64)
    c = np.asarray(cand, dtype=np.float64)
    err = abs_error(r, c)
    return ElementErrors(err, relative_error(err, r), tol.allowed(r))


def nonfinite_failed(ref: np.ndarray, cand: np.ndarray, equal_nan: bool = False) -> np.ndarray:
    """The rule where ``ref`` or ``cand`` is not finite: equal infinities pass, NaN fails (both NaN
    pass with ``equal_nan``), a finite value against a non-finite one fails."""
    failed = np.asarray(ref != cand)
    if equal_nan:
        failed &= ~(np.isnan(ref) & np.isnan(cand))
    return failed


def violations(ref: np.ndarray, cand: np.ndarray, tol: Tolerance, equal_nan: bool = False) -> np.ndarray:
    """The tolerance rule on whole arrays: a bool array, True where ``cand`` breaks it against ``ref``."""
    ref, cand = np.asarray(ref), np.asarray(cand)
    if ref.shape != cand.shape:
        raise ValueError(f"candidate shape {cand.shape} differs from the reference {ref.shape}")
    if not (is_numeric(ref) and is_numeric(cand)):
        return np.asarray(ref != cand)
    r, c = ref.astype(np.float64), cand.astype(np.float64)
    finite = np.isfinite(r) & np.isfinite(c)
    out = np.empty(r.shape, dtype=bool)
    out[finite] = element_errors(r[finite], c[finite], tol).failed
    out[~finite] = nonfinite_failed(r[~finite], c[~finite], equal_nan)
    return out


def passes(ref: np.ndarray, cand: np.ndarray, tol: Tolerance, equal_nan: bool = False) -> bool:
    """Whether every element of ``cand`` keeps the rule against ``ref`` (shapes must match)."""
    if np.shape(ref) != np.shape(cand):
        return False
    return not bool(violations(ref, cand, tol, equal_nan).any())


@dataclass(frozen=True)
class ParityCheck:
    """A stage's self-check: the tolerance, where its inputs come from, and how many it compares.

    A stage keeps its flat config keys (``atol``, ``rtol``, ``parity_batches``, ``seed``...; flags and
    TOML keys stay as they were) and builds one of these from them (its ``parity_check`` property).
    ``data`` names the data sets the check may read, in order (the first one the pipeline has wins);
    with none of them, ``batches`` batches of seeded random inputs of ``random_batch`` samples (batch
    ``i`` seeded ``seed + i``).
    """

    atol: float = 1e-4
    rtol: float = 1e-3
    equal_nan: bool = True  # NaN on both sides passes: random inputs may make NaN, the same NaN is parity
    data: tuple[str, ...] = ("validation",)
    batch_size: int = 8  # samples per batch of data
    batches: int = 2  # batches compared (on data: at most this many)
    random_batch: int = 2  # samples per batch of random inputs
    seed: int = 0
    shapes: tuple[str, ...] = ()  # --shapes values: sizes of random inputs' dynamic non-batch dims
    state: tuple[str, ...] = ()  # IN:OUT pairs of a streaming model: data files are sequence steps

    def __post_init__(self) -> None:
        Tolerance(self.atol, self.rtol)  # raises ValueError naming the bad key
        if min(self.batch_size, self.batches, self.random_batch) < 1:
            raise ValueError("a parity check needs batch_size, batches and random_batch >= 1")

    @property
    def tolerance(self) -> Tolerance:
        return Tolerance(self.atol, self.rtol)

    def feeds(
        self,
        specs: Sequence[TensorSpec],
        data_sets: Mapping[str, str | Path | None],
        *,
        model: str | Path | None = None,
        source: str = "",
    ) -> tuple[str, Iterator[dict[str, np.ndarray]]]:
        """(source, feeds): the first of ``data`` set in ``data_sets`` (its name), else "random".

        ``model``: the reference model, which carries the ``state`` of streaming data from step to
        step. Random inputs take their sizes from ``shapes``; where a dynamic non-batch size is
        unknown they are refused now (``InputError`` naming ``source``, the input and the axis).
        """
        from trtforge.pipeline.validation.feeds import data_batches, explicit_shapes, feed_shapes

        for name in self.data:
            path = data_sets.get(name)
            if path is not None:
                limit = self.batch_size * self.batches
                return name, data_batches(path, specs, self.batch_size, limit, state=self.state, model=model)
        from trtforge.pipeline.backends.onnxruntime import random_feed

        shapes = explicit_shapes(self.shapes)
        feed_shapes(specs, self.random_batch, shapes, source)  # refuse unknown sizes before any run
        random = (
            random_feed(specs, batch=self.random_batch, seed=self.seed + i, shapes=shapes)
            for i in range(self.batches)
        )
        return "random", random


# ------------------------------------------------------------------------------------------- gates


def parity_gate(name: str, outputs: Sequence[OutputParity], what: str = "") -> Gate:
    """The gate of the tolerance rule over ``outputs`` (see the module docstring for value/threshold).

    ``what`` says against what, for the detail (e.g. " vs torch").
    """
    failing = [o for o in outputs if not o.passed]
    if any(o.detail for o in failing):  # not comparable (a shape differs): no error to report
        value: float | None = None
        threshold: float | None = None
    else:
        worst = max(outputs, key=lambda o: o.worst_ratio, default=None)
        value = worst.worst_abs if worst is not None else 0.0  # (an OutputParity is falsy when it failed)
        threshold = worst.worst_allowed if worst is not None else None
    if failing:
        detail = "; ".join(o.summary() for o in failing)
    else:
        n = len(outputs)
        tolerances = {o.tolerance for o in outputs}
        within = tolerances.pop().describe() if len(tolerances) == 1 else "tolerance"
        top = max((o.max_abs for o in outputs), default=0.0)
        detail = f"{n} output{'' if n == 1 else 's'} within {within}{what} (max abs err {top:.3g})"
    return Gate(name, not failing, value, threshold, detail)


def limit_gate(
    name: str,
    value: float,
    *,
    at_least: float | None = None,
    at_most: float | None = None,
    detail: str = "",
) -> Gate:
    """A gate on one measured value: ``value >= at_least`` or ``value <= at_most`` (NaN fails)."""
    if (at_least is None) == (at_most is None):
        raise ValueError("limit_gate takes exactly one of at_least and at_most")
    bound = at_least if at_least is not None else at_most
    assert bound is not None
    passed = value >= bound if at_least is not None else value <= bound
    return Gate(name, bool(passed), value, bound, detail)
