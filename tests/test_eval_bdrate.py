"""BD-rate and its bootstrap interval on synthetic curves with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from npp_plugin.errors import InvalidArgumentError, ShapeError
from npp_plugin.evaluation.bdrate import bd_quality, bd_rate, bd_rate_bootstrap, monotone_envelope

RATES = np.array([0.2, 0.35, 0.6, 1.0, 1.7])


def quality(rate):
    # log-linear: scaling every rate by k shifts the curve by exactly log10(k)
    return 0.3 + 0.25 * np.log10(rate)


@pytest.mark.parametrize("method", ["pchip", "akima"])
@pytest.mark.parametrize("k", [0.8, 1.0, 1.25])
def test_bd_rate_known_answer(method, k):
    """Assert rates scaled by k at equal quality give a BD-rate of exactly (k − 1)·100 %."""
    value, notes = bd_rate(RATES, quality(RATES), k * RATES, quality(RATES), method=method)
    assert value == pytest.approx((k - 1) * 100, abs=1e-9)
    assert notes == []


def test_bd_quality_known_answer():
    """Assert a constant quality offset at equal rates is recovered as BD-quality."""
    value, _ = bd_quality(RATES, quality(RATES), RATES, quality(RATES) + 0.03)
    assert value == pytest.approx(0.03, abs=1e-12)


def test_point_order_does_not_matter():
    """Assert shuffled points give the same BD-rate (sorted by rate first)."""
    perm = [3, 0, 4, 1, 2]
    a, _ = bd_rate(RATES[perm], quality(RATES)[perm], 0.8 * RATES, quality(RATES))
    assert a == pytest.approx(-20.0, abs=1e-9)


def test_non_monotonic_point_is_dropped_and_reported():
    """Assert a dip (a costlier point scoring lower) is dropped by the monotone envelope,
    the remaining curve still gives the exact answer, and the drop is reported."""
    q = quality(RATES)
    q_dip = q.copy()
    q_dip[2] = q[1] - 0.01
    r, qq, dropped = monotone_envelope(RATES, q_dip)
    assert dropped.tolist() == [2]
    assert np.all(np.diff(qq) > 0) and np.all(np.diff(r) > 0)
    value, notes = bd_rate(RATES, q_dip, 0.8 * RATES, q)
    assert value == pytest.approx(-20.0, abs=1e-9)
    assert any("anchor: dropped 1 non-monotonic" in n for n in notes)


def test_ties_keep_the_cheapest_point():
    """Assert equal quality at a higher rate is dominated (a step of top-1 agreement)."""
    _, q, dropped = monotone_envelope([0.1, 0.2, 0.3], [0.5, 0.5, 0.7])
    assert dropped.tolist() == [1] and q.tolist() == [0.5, 0.7]


def test_no_overlap_is_nan_with_warning():
    """Assert disjoint quality ranges give NaN and the package's warning."""
    value, notes = bd_rate(RATES, quality(RATES), RATES, quality(RATES) + 10)
    assert math.isnan(value)
    assert any("do not overlap" in n for n in notes)


def test_insufficient_overlap_warning_is_captured():
    """Assert bjontegaard's overlap warning is returned, not printed."""
    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("error")  # nothing may leak as a real warning
        value, notes = bd_rate(RATES, quality(RATES), RATES, quality(RATES) + 0.12)
    assert math.isfinite(value)
    assert any("Insufficient curve overlap" in n for n in notes)


def test_matches_bjontegaard_on_monotone_curves():
    """Assert our wrapper equals the package's own result on already monotone data."""
    import bjontegaard

    rng = np.random.default_rng(3)
    qa = np.sort(rng.random(5)) * 5 + 30
    qt = np.sort(rng.random(5)) * 5 + 30.5
    ref = bjontegaard.bd_rate(RATES, qa, RATES * 0.9, qt, method="pchip")
    assert bd_rate(RATES, qa, RATES * 0.9, qt)[0] == pytest.approx(ref, rel=1e-12)


def synthetic_images(n, k, *, noise=0.04, seed=0, shared=None):
    """Per-image curves: rate varies by image, quality = curve + per-image noise; the test
    spends k times the anchor's bits for the same expected quality."""
    rng = np.random.default_rng(seed)
    scale = np.exp(rng.normal(0, 0.3, (n, 1)))
    ra = scale * RATES
    qa = quality(RATES) + rng.normal(0, noise, (n, len(RATES)))
    qt = quality(RATES) + rng.normal(0, noise, (n, len(RATES)))
    if shared is not None:
        qa, qt = qa + shared, qt + shared
    return ra, qa, k * ra, qt


def test_bootstrap_interval_covers_truth_and_excludes_zero():
    """Assert a true −20 % saving lies in the 95 % interval, which excludes 0."""
    res = bd_rate_bootstrap(*synthetic_images(400, 0.8), n_boot=400, seed=1)
    assert res.ci_low < -20.0 < res.ci_high
    assert res.ci_high < 0 and res.includes_zero is False
    assert res.value == pytest.approx(-20.0, abs=3.0)
    assert res.n_images == 400 and res.n_boot_valid == 400


def test_bootstrap_interval_includes_zero_without_effect():
    """Assert equal codecs (k = 1, independent noise) give an interval containing 0."""
    res = bd_rate_bootstrap(*synthetic_images(400, 1.0, seed=5), n_boot=400, seed=2)
    assert res.includes_zero is True
    assert res.ci_high - res.ci_low < 10.0


def test_interval_shrinks_with_more_images():
    """Assert the interval narrows roughly as 1/sqrt(n)."""
    small = bd_rate_bootstrap(*synthetic_images(50, 0.8, seed=7), n_boot=300)
    large = bd_rate_bootstrap(*synthetic_images(800, 0.8, seed=7), n_boot=300)
    w_small, w_large = small.ci_high - small.ci_low, large.ci_high - large.ci_low
    assert 2.0 < w_small / w_large < 8.0


def test_group_bootstrap_widens_interval_for_correlated_images():
    """Assert resampling whole groups (crops of one photo) gives a wider interval when the
    groups share a quality offset, as it should."""
    n, g = 400, 20
    groups = np.repeat(np.arange(g), n // g)
    rng = np.random.default_rng(11)
    shared_a = rng.normal(0, 0.08, g)[groups][:, None]
    ra, qa, rt, qt = synthetic_images(n, 0.8, seed=11)
    qa = qa + shared_a
    qt = qt + rng.normal(0, 0.08, g)[groups][:, None]
    by_image = bd_rate_bootstrap(ra, qa, rt, qt, n_boot=300)
    by_group = bd_rate_bootstrap(ra, qa, rt, qt, n_boot=300, groups=groups)
    assert by_image.value == by_group.value
    assert (by_group.ci_high - by_group.ci_low) > 1.5 * (by_image.ci_high - by_image.ci_low)


def test_bootstrap_is_seeded():
    """Assert the same seed gives the same interval."""
    data = synthetic_images(60, 0.9, seed=3)
    a, b = bd_rate_bootstrap(*data, n_boot=100, seed=4), bd_rate_bootstrap(*data, n_boot=100, seed=4)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)


def test_bad_arguments_raise_typed_errors():
    """Assert shape and option errors are typed and name the argument."""
    ra, qa, rt, qt = synthetic_images(10, 0.8)
    with pytest.raises(ShapeError):
        bd_rate_bootstrap(ra, qa, rt[:5], qt[:5])
    with pytest.raises(InvalidArgumentError, match="akima"):
        bd_rate(RATES, quality(RATES), RATES, quality(RATES), method="cubic")
    with pytest.raises(InvalidArgumentError) as exc:
        bd_rate_bootstrap(ra, qa, rt, qt, n_boot=-1)
    assert exc.value.argument == "n_boot"
