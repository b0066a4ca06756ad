"""Shape-profile derivation from --shapes and from the IOSpec's dim ranges."""

from __future__ import annotations

import pytest

from trtforge.pipeline.artifact import IOSpec, TensorSpec
from trtforge.pipeline.engine.profiles import derive_profiles, is_dynamic, parse_shapes, select_profile
from trtforge.pipeline.errors import ConfigError

SPEC = IOSpec(
    inputs=(TensorSpec("x", "float32", ("batch", 3, 8, 8)), TensorSpec("mask", "float32", ("batch", 16))),
    outputs=(TensorSpec("y", "float32", ("batch", 10)),),
)


def test_parse_min_opt_max_and_fixed() -> None:
    got = parse_shapes("x:1x3x8x8,4x3x8x8,16x3x8x8; mask:2x16")
    assert got["x"] == ((1, 3, 8, 8), (4, 3, 8, 8), (16, 3, 8, 8))
    assert got["mask"] == ((2, 16),)


@pytest.mark.parametrize(
    ("text", "needle"),
    [("x1x3", "expected NAME"), ("x:1xAx8", "integers"), ("x:1x3,2x3", "three"), ("x:1x3 x:2x3", "twice")],
)
def test_parse_errors_name_the_problem(text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse_shapes(text)


def test_one_profile_per_shapes_flag_static_dims_checked() -> None:
    profiles = derive_profiles(
        SPEC, ["x:1x3x8x8,4x3x8x8,16x3x8x8 mask:1x16,4x16,16x16", "x:32x3x8x8 mask:32x16"]
    )
    assert len(profiles) == 2
    assert profiles[0].shapes["x"].max == (16, 3, 8, 8)
    assert profiles[1].shapes["mask"].min == profiles[1].shapes["mask"].max == (32, 16)


def test_ranges_from_iospec_fill_missing_inputs() -> None:
    spec = IOSpec(SPEC.inputs, SPEC.outputs, {"batch": (1, 8, 64)})
    (profile,) = derive_profiles(spec, ["x:2x3x8x8,4x3x8x8,8x3x8x8"])
    assert profile.shapes["mask"].to_dict() == {"min": [1, 16], "opt": [8, 16], "max": [64, 16]}
    assert profile.shapes["x"].opt == (4, 3, 8, 8)


@pytest.mark.parametrize(
    ("shapes", "needle"),
    [
        (["image:1x3x8x8"], "input 'image' not found; model inputs are: 'x', 'mask'"),
        (["x:1x3x8,2x3x8,4x3x8 mask:1x16"], "rank 3"),
        (["x:1x4x8x8 mask:1x16"], "axis 1 is fixed to 3"),
        (["x:4x3x8x8,2x3x8x8,8x3x8x8 mask:1x16"], "min <= opt <= max"),
        (["x:1x3x8x8"], "input 'mask' axis 0 \\(batch\\) is dynamic and has no range; pass --shapes mask:"),
    ],
)
def test_derive_errors(shapes: list[str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        derive_profiles(SPEC, shapes)


def test_static_model_needs_no_shapes() -> None:
    spec = IOSpec((TensorSpec("x", "float32", (1, 4)),), ())
    (profile,) = derive_profiles(spec)
    assert profile.shapes["x"].min == profile.shapes["x"].max == (1, 4)
    assert not is_dynamic(spec) and is_dynamic(SPEC)


def test_select_profile_picks_first_that_fits() -> None:
    profiles = derive_profiles(
        SPEC,
        ["x:1x3x8x8,2x3x8x8,4x3x8x8 mask:1x16,2x16,4x16", "x:5x3x8x8,8x3x8x8,32x3x8x8 mask:5x16,8x16,32x16"],
    )
    assert select_profile(profiles, {"x": (3, 3, 8, 8), "mask": (3, 16)}) == 0
    assert select_profile(profiles, {"x": (20, 3, 8, 8), "mask": (20, 16)}) == 1
    with pytest.raises(ConfigError, match="fit no optimization profile"):
        select_profile(profiles, {"x": (64, 3, 8, 8), "mask": (64, 16)})
