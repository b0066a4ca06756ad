"""Parity between tiny ONNX models: pass/fail, tolerances, statistics, data errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.validation import _models as m
from trtforge.pipeline.artifact import Artifact
from trtforge.pipeline.errors import ConfigError, InputError
from trtforge.pipeline.validation.error_stats import ErrorAccumulator, Tolerance
from trtforge.pipeline.validation.feeds import data_batches, random_batches, sample_total
from trtforge.pipeline.validation.parity import (
    ParityOptions,
    Tolerances,
    compare_models,
    read_tolerances,
    tolerances_from_table,
)


@pytest.fixture
def setup(tmp_path: Path) -> dict[str, Path]:
    x = m.samples(40)
    np.savez(tmp_path / "data.npz", x=x, labels=m.reference_labels(x))
    return {
        "ref": m.classifier(tmp_path / "ref.onnx"),
        "small": m.perturbed(tmp_path / "small.onnx", 1e-3),
        "big": m.perturbed(tmp_path / "big.onnx", 0.05),
        "data": tmp_path / "data.npz",
    }


def _feeds(model: Path, data: Path, batch: int = 16):
    spec = Artifact.from_onnx_path(model).iospec
    assert spec is not None
    return data_batches(data, spec.inputs, batch)


def test_identical_model_passes_with_zero_error(setup: dict[str, Path]) -> None:
    report = compare_models(setup["ref"], setup["ref"], _feeds(setup["ref"], setup["data"]))
    assert report and report.passed
    assert report.samples == 40 and report.batches == 3
    assert [o.name for o in report.outputs] == ["logits", "probs"]
    for out in report.outputs:
        assert out.max_abs == 0.0 and out.violations == 0 and out.cosine == pytest.approx(1.0)
        assert out.count == 40 * m.CLASSES
    assert all(report.gates())


def test_perturbed_weights_fail_and_name_the_output(setup: dict[str, Path]) -> None:
    report = compare_models(setup["ref"], setup["big"], _feeds(setup["ref"], setup["data"]))
    assert not report
    logits = report.outputs[0]
    assert not logits and logits.violations > 0 and logits.max_abs > 1e-3
    assert logits.max_abs >= logits.p99_abs >= 0 and logits.max_abs >= logits.mean_abs
    assert 0.9 < logits.cosine < 1.0
    gate = report.gates()[0]
    assert gate.name == "parity" and not gate.passed and "logits" in gate.detail


def test_per_output_tolerance_overrides(setup: dict[str, Path]) -> None:
    feeds = lambda: _feeds(setup["ref"], setup["data"])  # noqa: E731
    strict = compare_models(
        setup["ref"], setup["small"], feeds(), ParityOptions(Tolerances(Tolerance(1e-7, 0.0)))
    )
    assert not strict.outputs[0] and not strict.outputs[1]
    table = {"logits": {"atol": 0.1}, "probs": {"atol": 0.1, "rtol": 0.0}}
    loose = tolerances_from_table(table, Tolerance(1e-7, 0.0), "test")
    assert loose.for_output("logits") == Tolerance(0.1, 0.0)
    report = compare_models(setup["ref"], setup["small"], feeds(), ParityOptions(loose))
    assert report and report.outputs[0].tolerance.atol == 0.1
    only_logits = tolerances_from_table({"logits": {"atol": 0.1}}, Tolerance(1e-7, 0.0), "test")
    report = compare_models(setup["ref"], setup["small"], feeds(), ParityOptions(only_logits))
    assert report.outputs[0] and not report.outputs[1] and not report


def test_tolerance_file_and_its_errors(tmp_path: Path, setup: dict[str, Path]) -> None:
    f = tmp_path / "tol.toml"
    f.write_text("[outputs.logits]\natol = 0.5\n")
    tol = read_tolerances(f, Tolerance(1e-4, 1e-3))
    assert tol.for_output("logits") == Tolerance(0.5, 1e-3)
    assert tol.for_output("probs") == Tolerance(1e-4, 1e-3)
    f.write_text("[outputs.nope]\natol = 0.5\n")
    with pytest.raises(ConfigError, match=r"unknown output 'nope'.*'logits', 'probs'"):
        compare_models(
            setup["ref"],
            setup["ref"],
            _feeds(setup["ref"], setup["data"]),
            ParityOptions(read_tolerances(f, Tolerance())),
        )
    f.write_text("[outputs.logits]\natl = 0.5\n")
    with pytest.raises(ConfigError, match="unknown key 'atl'"):
        read_tolerances(f, Tolerance())
    f.write_text("[outputs.logits]\natol = -1\n")
    with pytest.raises(ConfigError, match="atol must be"):
        read_tolerances(f, Tolerance())
    with pytest.raises(ConfigError, match="not found"):
        read_tolerances(tmp_path / "missing.toml", Tolerance())


def test_pass_rule_is_atol_plus_rtol_times_reference() -> None:
    # |diff| = 0.0015 exceeds atol (0.001) and rtol*|ref| (0.001) alone, but not their sum (0.002)
    acc = ErrorAccumulator("y", Tolerance(atol=1e-3, rtol=1e-3))
    assert acc.update(np.array([1.0, -2.0]), np.array([1.0015, -2.0025]))
    assert acc.result().passed
    acc = ErrorAccumulator("y", Tolerance(atol=1e-3, rtol=1e-3))
    assert not acc.update(np.array([1.0, 10.0]), np.array([1.0025, 10.0]))
    res = acc.result()
    assert res.violations == 1 and not res


def test_statistics_on_a_hand_built_case() -> None:
    acc = ErrorAccumulator("y", Tolerance(atol=10.0, rtol=0.0))
    ref = np.array([1.0, 2.0, 4.0, -1.0])
    cand = np.array([1.0, 2.5, 3.0, -1.0])
    acc.update(ref[:2], cand[:2])
    acc.update(ref[2:], cand[2:])  # statistics merge across batches
    res = acc.result()
    assert res.max_abs == pytest.approx(1.0) and res.mean_abs == pytest.approx(1.5 / 4)
    assert res.max_rel == pytest.approx(0.25) and res.mean_rel == pytest.approx((0.25 + 0.25) / 4)
    assert res.p99_abs == pytest.approx(np.quantile([0, 0.5, 1.0, 0], 0.99))
    cos = ref @ cand / (np.linalg.norm(ref) * np.linalg.norm(cand))
    assert res.cosine == pytest.approx(cos) and res.exact_p99


def test_nan_fails_and_shape_mismatch_is_reported() -> None:
    acc = ErrorAccumulator("y", Tolerance(1.0, 1.0))
    assert not acc.update(np.array([1.0, 2.0]), np.array([1.0, np.nan]))
    res = acc.result()
    assert res.nonfinite == 1 and res.violations == 1 and not res
    acc = ErrorAccumulator("y", Tolerance(1.0, 1.0))
    assert not acc.update(np.zeros((2, 3)), np.zeros((2, 4)))
    assert "differs from the reference" in acc.result().detail and not acc.result()


def test_p99_exact_when_small_and_sampled_when_large() -> None:
    rng = np.random.default_rng(0)
    ref = rng.standard_normal(20000)
    cand = ref + rng.standard_normal(20000) * 0.01
    exact = np.quantile(np.abs(cand - ref), 0.99)
    big = ErrorAccumulator("y", Tolerance(1.0, 0.0), reservoir_size=1 << 16)
    small = ErrorAccumulator("y", Tolerance(1.0, 0.0), reservoir_size=4000)
    for i in range(0, 20000, 1000):
        big.update(ref[i : i + 1000], cand[i : i + 1000])
        small.update(ref[i : i + 1000], cand[i : i + 1000])
    assert big.result().exact_p99 and big.result().p99_abs == pytest.approx(exact, rel=1e-5)
    approx = small.result()
    assert not approx.exact_p99 and approx.p99_abs == pytest.approx(exact, rel=0.1)
    assert (
        small.reservoir.keys.size == small.reservoir.abs.size == 4000
        and approx.max_abs == big.result().max_abs
    )


def test_precomputed_reference_outputs_match_a_reference_run(setup: dict[str, Path]) -> None:
    from trtforge.pipeline.backends.onnxruntime import OrtRunner

    ref = OrtRunner(setup["ref"]).load()
    outputs = [ref.run(f) for f in _feeds(setup["ref"], setup["data"])]
    pre = compare_models(outputs, setup["big"], _feeds(setup["ref"], setup["data"]))
    direct = compare_models(setup["ref"], setup["big"], _feeds(setup["ref"], setup["data"]))
    assert [o.to_dict() for o in pre.outputs] == [o.to_dict() for o in direct.outputs]
    with pytest.raises(InputError, match="reference outputs cover 2 batches but the data has more"):
        compare_models(outputs[:2], setup["big"], _feeds(setup["ref"], setup["data"]))
    with pytest.raises(InputError, match=r"cover more batches than the data \(3\)"):
        compare_models([*outputs, outputs[0]], setup["big"], _feeds(setup["ref"], setup["data"]))


def test_top1_and_label_accuracy_through_compare_models(setup: dict[str, Path]) -> None:
    labels = m.reference_labels(m.samples(40))
    opts = ParityOptions(metric="top1", min_top1=0.5)
    report = compare_models(
        setup["ref"], setup["big"], _feeds(setup["ref"], setup["data"]), opts, labels=labels
    )
    assert report.top1 is not None and report.accuracy is not None
    assert report.accuracy.reference == 1.0 and report.accuracy.count == 40
    assert report.top1.agreement == pytest.approx(report.accuracy.candidate)  # labels = reference argmax
    assert [g.name for g in report.gates()] == ["parity", "top1"]
    with pytest.raises(ConfigError, match="metric output 'nope'"):
        compare_models(
            setup["ref"],
            setup["ref"],
            _feeds(setup["ref"], setup["data"]),
            ParityOptions(metric="top1", metric_output="nope"),
        )


def test_random_data_is_flagged(setup: dict[str, Path]) -> None:
    spec = Artifact.from_onnx_path(setup["ref"]).iospec
    assert spec is not None
    feeds = random_batches(spec.inputs, samples=10, batch_size=4, seed=3)
    report = compare_models(setup["ref"], setup["ref"], feeds, ParityOptions(random_data=True))
    d = report.to_dict()
    assert d["random_data"] is True and "RANDOM" in d["warning"] and report.samples == 10


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda d: np.save(d / "bad.npy", np.zeros((4, 7), np.float32)), r"bad\.npy.*axis 1: 7 != 8"),
        (lambda d: np.save(d / "bad.npy", np.full((4, 8), np.nan, np.float32)), r"bad\.npy.*NaN"),
        (
            lambda d: np.savez(d / "bad.npz", y=np.zeros((4, 8), np.float32)),
            r"bad\.npz.*no array for input 'x'",
        ),
        (lambda d: (d / "empty").mkdir(), r"empty.*no \.npy or \.npz"),
    ],
)
def test_data_errors_are_input_errors_naming_the_file(
    tmp_path: Path, setup: dict[str, Path], make, match
) -> None:
    make(tmp_path)
    path = next(p for p in tmp_path.iterdir() if p.name in ("bad.npy", "bad.npz", "empty"))
    with pytest.raises(InputError, match=match):
        compare_models(setup["ref"], setup["ref"], _feeds(setup["ref"], path))


def test_models_with_different_inputs_are_refused(tmp_path: Path, setup: dict[str, Path]) -> None:
    import onnx

    model = onnx.load(str(setup["ref"]))
    model.graph.input[0].name = "other"
    model.graph.node[0].input[0] = "other"
    onnx.save(model, str(tmp_path / "other.onnx"))
    with pytest.raises(InputError, match="inputs other differ from the reference"):
        compare_models(setup["ref"], tmp_path / "other.onnx", _feeds(setup["ref"], setup["data"]))


def test_sample_total_reads_headers(tmp_path: Path, setup: dict[str, Path]) -> None:
    spec = Artifact.from_onnx_path(setup["ref"]).iospec
    assert spec is not None
    d = tmp_path / "dir"
    d.mkdir()
    np.save(d / "a.npy", m.samples(5))
    np.save(d / "b.npy", m.samples(7))
    assert sample_total(d, spec.inputs) == 12 and sample_total(d, spec.inputs, limit=10) == 10
    assert sample_total(setup["data"], spec.inputs) == 40
    assert sample_total(tmp_path / "missing", spec.inputs) == 0


def test_equal_infinities_pass_and_opposite_ones_fail() -> None:
    acc = ErrorAccumulator("y", Tolerance(1e-3, 0.0))
    assert acc.update(np.array([np.inf, -np.inf, 1.0]), np.array([np.inf, -np.inf, 1.0]))
    assert acc.result().passed and acc.result().nonfinite == 2
    assert not acc.update(np.array([np.inf]), np.array([-np.inf]))
    assert acc.result().violations == 1


def test_candidate_with_float16_inputs_gets_coerced_feeds(tmp_path: Path, setup: dict[str, Path]) -> None:
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(setup["ref"]))
    model.graph.input[0].type.tensor_type.elem_type = TensorProto.FLOAT16
    model.graph.node.insert(0, helper.make_node("Cast", ["x"], ["x32"], to=TensorProto.FLOAT))
    model.graph.node[1].input[0] = "x32"
    onnx.save(model, str(tmp_path / "fp16_in.onnx"))
    opts = ParityOptions(Tolerances(Tolerance(1e-2, 1e-2)))
    report = compare_models(
        setup["ref"], tmp_path / "fp16_in.onnx", _feeds(setup["ref"], setup["data"]), opts
    )
    assert report and 0 < report.outputs[0].max_abs < 1e-2


def test_inference_failure_is_an_input_error(tmp_path: Path, setup: dict[str, Path]) -> None:
    import onnx

    model = onnx.load(str(setup["ref"]))
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "D"  # the data check cannot catch 7 != 8
    onnx.save(model, str(tmp_path / "dyn.onnx"))
    feeds = [{"x": np.zeros((2, 7), np.float32)}]
    with pytest.raises(InputError, match="inference failed on the validation data"):
        compare_models(tmp_path / "dyn.onnx", tmp_path / "dyn.onnx", feeds)
