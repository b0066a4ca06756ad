"""Range methods against hand-computed values on small tensors."""

from __future__ import annotations

import numpy as np
import pytest

from trtforge.calibration.ranges import (
    AbsHistogram,
    compute_amax,
    entropy_amax,
    entropy_candidate,
    kl_divergence,
    mse_amax,
    percentile_amax,
    symmetric_scale,
    weight_amax,
)


def test_minmax_is_the_largest_magnitude():
    h = AbsHistogram(bins=16)
    h.update(np.array([-3.0, 1.0, 2.0]))
    h.update(np.array([0.5, 2.5]))
    assert compute_amax(h, "minmax") == 3.0
    assert (h.lo, h.hi) == (-3.0, 2.5)


def test_histogram_growth_rebins_exactly():
    h = AbsHistogram(bins=4)
    h.update(np.array([0.1, 0.6, 0.9, 1.0]))  # width 0.25: bins [0.1],[],[0.6],[0.9,1.0]
    assert h.counts.tolist() == [1, 0, 1, 2]
    h.update(np.array([1.9]))  # hmax 1 -> 2 (k=2): old bins pairwise merged, 1.9 in the last bin
    assert h.hmax == 2.0
    assert h.counts.tolist() == [1, 3, 0, 1]
    assert h.counts.sum() == 5


def test_percentile_hand_computed():
    # 100 values 1..100; |x| histogram of 100 bins over [0, 100]: value v lands in bin v-1 (v=100 in bin 99)
    h = AbsHistogram(bins=100)
    h.update(np.arange(1, 101, dtype=np.float32))
    # 90% of the values are <= 90 -> the 90th bin (index 89, after value 90 moves to bin 90 by flooring)
    amax = compute_amax(h, "percentile", 90.0)
    assert amax == pytest.approx(90.0, abs=1.0)
    assert percentile_amax(np.array([1, 1, 1, 1]), 1.0, 50.0) == 2.0  # half the mass in the first 2 bins


def test_kl_candidate_matches_tensorrt_construction():
    counts = np.array([4, 2, 0, 2, 1, 1], dtype=np.int64)
    p, q = entropy_candidate(counts, 4, levels=2)
    # P: first 4 bins, outliers (1+1) folded into bin 3 -> [4, 2, 0, 4]
    assert p.tolist() == [4, 2, 0, 4]
    # Q: groups {0,1} sum 6 over 2 non-empty bins -> 3,3; group {2,3} sum 2 over 1 non-empty bin -> 0, 2
    assert q.tolist() == [3, 3, 0, 2]
    expected = sum(pi * np.log(pi / qi) for pi, qi in zip([0.4, 0.2, 0.4], [3 / 8, 3 / 8, 2 / 8]))
    assert kl_divergence(p, q) == pytest.approx(expected, rel=1e-3)


def test_entropy_clips_outliers_but_not_a_clean_range():
    rng = np.random.default_rng(0)
    clean = AbsHistogram()
    clean.update(rng.uniform(-1, 1, 100_000))
    assert compute_amax(clean, "entropy") > 0.9  # nothing to clip: close to the max

    tailed = AbsHistogram()
    tailed.update(np.concatenate([rng.normal(0, 1, 200_000), [60.0, -55.0, 58.0]]))
    amax = compute_amax(tailed, "entropy")
    assert 60.0 / 16 <= amax < 20.0  # at least 128 of 2048 bins, far below the outliers


def test_entropy_picks_the_least_divergent_threshold():
    counts = np.zeros(512, dtype=np.int64)
    counts[:200] = 1000
    counts[511] = 1
    width = 0.01
    best = entropy_amax(counts, width, levels=128)
    kls = {i: kl_divergence(*entropy_candidate(counts, i)) for i in range(128, 513)}
    assert best == pytest.approx(min(kls, key=lambda k: kls[k]) * width)


def test_mse_hand_computed_and_vs_brute_force():
    # all mass in one bin centre 0.5 (width 1, 4 bins): amax=1 -> scale 1/127, 0.5 -> 63.5 -> 64/127: err tiny
    counts = np.array([10, 0, 0, 0])
    assert mse_amax(counts, 1.0, candidates=4) == 1.0
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.laplace(0, 1, 50_000), [80.0]])
    h = AbsHistogram(bins=512)
    h.update(x)
    amax = compute_amax(h, "mse")

    def err(a):
        s = a / 127
        return float(np.sum((x - np.clip(np.round(x / s), -127, 127) * s) ** 2))

    grid = np.linspace(1, 80, 400)
    assert err(amax) <= 1.05 * min(err(a) for a in grid)
    assert amax <= 80.0


def test_weight_per_channel_and_scale():
    w = np.array([[[1.0, -4.0]], [[0.5, 0.25]]])  # [K=2, C=1, 2]
    assert weight_amax(w, 0).tolist() == [4.0, 0.5]
    assert weight_amax(np.array([[1.0, -3.0], [2.0, 0.5]]), 1).tolist() == [2.0, 3.0]
    assert symmetric_scale(127.0) == pytest.approx(1.0)
    assert symmetric_scale(0.0) > 0


def test_unknown_method_names_the_valid_ones():
    with pytest.raises(ValueError, match="minmax, entropy, percentile, mse"):
        compute_amax(AbsHistogram(), "kl")
