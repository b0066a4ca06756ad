"""The one parity rule on hand-computed arrays: atol, rtol, zero reference, NaN/inf, and the gate builders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trtforge.common.tensors import TensorSpec
from trtforge.pipeline.validation.error_stats import ErrorAccumulator
from trtforge.pipeline.validation.rule import (
    ParityCheck,
    Tolerance,
    abs_error,
    limit_gate,
    parity_gate,
    passes,
    relative_error,
    violations,
)


def _v(ref: list[float], cand: list[float], atol: float, rtol: float, equal_nan: bool = False) -> list[bool]:
    return [bool(v) for v in violations(np.array(ref), np.array(cand), Tolerance(atol, rtol), equal_nan)]


def test_atol_alone_bounds_the_absolute_error() -> None:
    # |diff| = 5e-5 passes atol = 1e-4, 2e-4 does not; rtol = 0 gives large values no slack
    assert _v([0.0, 1.0, 1000.0], [5e-5, 1.0002, 1000.0002], atol=1e-4, rtol=0.0) == [False, True, True]


def test_rtol_scales_with_the_reference_and_adds_to_atol() -> None:
    # allowed = 0.25 + 0.125 * |ref| (exact binary numbers): at ref 2 the bound is exactly 0.5
    assert _v([2.0, 2.0, -2.0], [2.5, 2.5 + 1e-9, -1.5], atol=0.25, rtol=0.125) == [False, True, False]
    # 1000 -> 1000.5: far beyond atol = 1e-4, within atol + rtol * 1000 = 1.0001
    assert _v([1000.0], [1000.5], atol=1e-4, rtol=1e-3) == [False]
    assert _v([1000.0], [1000.5], atol=1e-4, rtol=0.0) == [True]
    # the bound is relative to the reference, not the candidate: ref 1 -> cand 3 breaks rtol = 0.9
    assert _v([1.0], [3.0], atol=0.0, rtol=0.9) == [True]
    assert _v([3.0], [1.0], atol=0.0, rtol=0.9) == [False]


def test_zero_reference_leaves_only_atol() -> None:
    assert _v([0.0, 0.0], [1e-4, 2e-4], atol=1e-4, rtol=0.5) == [False, True]
    err = abs_error(np.array([0.0, 2.0, -4.0]), np.array([1e-6, 2.5, -3.0]))
    rel = relative_error(err, np.array([0.0, 2.0, -4.0]))
    assert err.tolist() == pytest.approx([1e-6, 0.5, 1.0])
    assert rel.tolist() == pytest.approx([1e6, 0.25, 0.25])  # |ref| floored at 1e-12


def test_nan_fails_unless_both_sides_are_nan_and_allowed() -> None:
    nan, inf = float("nan"), float("inf")
    ref = [nan, nan, 1.0, inf, inf, -inf]
    cand = [nan, 1.0, nan, inf, -inf, 1e308]
    assert _v(ref, cand, atol=1.0, rtol=1.0) == [True, True, True, False, True, True]
    assert _v(ref, cand, atol=1.0, rtol=1.0, equal_nan=True) == [False, True, True, False, True, True]


def test_non_numeric_outputs_must_be_equal_and_shapes_must_match() -> None:
    tol = Tolerance()
    assert violations(np.array(["a", "b"]), np.array(["a", "c"]), tol).tolist() == [False, True]
    assert passes(np.array([1, 2]), np.array([1, 2]), tol)
    assert not passes(np.zeros((2, 3)), np.zeros((3, 2)), tol)
    with pytest.raises(ValueError, match="differs from the reference"):
        violations(np.zeros(2), np.zeros(3), tol)


def test_accumulator_counts_what_the_rule_says() -> None:
    rng = np.random.default_rng(0)
    ref = rng.standard_normal(4000) * rng.choice([1e-3, 1.0, 1e3], 4000)
    cand = ref + rng.standard_normal(4000) * 1e-3
    cand[::97] = np.nan
    ref[::89] = np.nan
    tol = Tolerance(1e-4, 1e-3)
    expected = int(violations(ref, cand, tol).sum())
    acc = ErrorAccumulator("y", tol)
    for i in range(0, 4000, 1000):
        acc.update(ref[i : i + 1000], cand[i : i + 1000])
    assert 0 < expected < 4000 and acc.result().violations == expected
    nan_acc = ErrorAccumulator("y", tol, equal_nan=True)
    nan_acc.update(ref, cand)
    assert nan_acc.result().violations == int(violations(ref, cand, tol, equal_nan=True).sum()) < expected


def test_worst_element_and_parity_gate_value_against_threshold() -> None:
    # allowed = [0.002, 0.101]; error / allowed = [0.75, 0.495]: the first element is the worst
    tol = Tolerance(1e-3, 1e-3)
    acc = ErrorAccumulator("y", tol)
    acc.update(np.array([1.0, 100.0]), np.array([1.0015, 100.0495]))
    ok = acc.result()
    assert (ok.worst_abs, ok.worst_allowed) == pytest.approx((0.0015, 0.002))
    gate = parity_gate("p", [ok])
    assert gate.passed and gate.value == pytest.approx(0.0015) and gate.threshold == pytest.approx(0.002)
    acc.update(np.array([10.0]), np.array([10.5]))  # allowed 0.011: 45x over
    bad = acc.result()
    gate = parity_gate("p", [bad], " vs torch")
    assert not gate.passed and gate.value == pytest.approx(0.5) and gate.threshold == pytest.approx(0.011)
    assert gate.value is not None and gate.threshold is not None and gate.value > gate.threshold
    assert "1 of 3 elements" in gate.detail
    exact = ErrorAccumulator("y", tol)
    exact.update(np.array([5.0]), np.array([5.0]))
    assert parity_gate("p", [exact.result()]).to_dict() | {"detail": ""} == {
        "name": "p",
        "passed": True,
        "value": 0.0,
        "threshold": 1e-3,  # no error anywhere: the bound at |ref| = 0
        "detail": "",
    }


def test_nonfinite_failure_and_shape_mismatch_in_the_gate() -> None:
    acc = ErrorAccumulator("y", Tolerance(1.0, 0.0))
    acc.update(np.array([1.0, 2.0]), np.array([1.0, np.nan]))
    gate = parity_gate("p", [acc.result()])
    assert not gate.passed and gate.value == float("inf") and gate.threshold == 1.0
    shape = ErrorAccumulator("z", Tolerance())
    shape.update(np.zeros(2), np.zeros(3))
    gate = parity_gate("p", [acc.result(), shape.result()])
    assert not gate.passed and gate.value is None and "z: candidate shape" in gate.detail


def test_limit_gate_bounds_and_nan() -> None:
    assert limit_gate("c", 0.99, at_least=0.98).passed
    assert not limit_gate("c", 0.97, at_least=0.98).passed
    gate = limit_gate("d", 0.02, at_most=0.015, detail="x")
    assert not gate.passed and (gate.value, gate.threshold, gate.detail) == (0.02, 0.015, "x")
    assert not limit_gate("n", float("nan"), at_least=0.0).passed
    assert not limit_gate("n", float("nan"), at_most=1.0).passed
    with pytest.raises(ValueError, match="exactly one"):
        limit_gate("x", 1.0)
    with pytest.raises(ValueError, match="exactly one"):
        limit_gate("x", 1.0, at_least=0.0, at_most=2.0)


def test_parity_check_config_and_its_inputs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="atol must be"):
        ParityCheck(atol=-1.0)
    with pytest.raises(ValueError, match="batches"):
        ParityCheck(batches=0)
    check = ParityCheck(atol=1e-3, rtol=0.0, data=("validation", "calibration"), batch_size=4, batches=2)
    assert check.tolerance == Tolerance(1e-3, 0.0)
    specs = [TensorSpec("x", "float32", ("N", 3))]
    source, feeds = check.feeds(specs, {"validation": None, "calibration": None})
    random = list(feeds)
    assert source == "random" and len(random) == 2 and random[0]["x"].shape == (2, 3)
    assert not np.array_equal(random[0]["x"], random[1]["x"])  # batch i is seeded seed + i
    data = tmp_path / "calib.npz"
    np.savez(data, x=np.arange(30, dtype=np.float32).reshape(10, 3))
    source, feeds = check.feeds(specs, {"validation": None, "calibration": data})
    batches = list(feeds)
    assert source == "calibration" and [b["x"].shape[0] for b in batches] == [4, 4]
    assert batches[0]["x"][0].tolist() == [0.0, 1.0, 2.0]
