"""Operating-range calibration: choosing QPs from a score curve, and a measured run."""

from __future__ import annotations

import pytest

from npp_plugin.errors import InvalidArgumentError
from npp_plugin.evaluation import calibrate, choose_qps, select_evenly
from npp_plugin.evaluation.inputs import builtin_images
from tests.test_eval_fixtures import TinyClassifier, ZlibQuantCodec

GRID = [20, 24, 28, 32, 36, 40, 44]


def test_window_between_95_and_50_percent():
    """Assert the QPs span from the first QP at <= 95 % to the last at >= 50 %."""
    ratio = [1.0, 0.98, 0.93, 0.85, 0.7, 0.52, 0.3]
    qps, notes = choose_qps(GRID, ratio, lo=0.5, hi=0.95, n_qps=5)
    assert qps == [28, 31, 34, 37, 40] and notes == []


def test_noise_cannot_reopen_the_window():
    """Assert a chance rebound above 95 % at a high QP does not move the range (running min)."""
    ratio = [1.0, 0.9, 0.97, 0.8, 0.6, 0.4, 0.55]
    qps, _ = choose_qps(GRID, ratio, lo=0.5, hi=0.95, n_qps=3)
    assert qps == [24, 30, 36]


def test_robust_task_uses_highest_qps_and_says_so():
    """Assert a task that never degrades gets the top of the grid, with a note."""
    qps, notes = choose_qps(GRID, [1.0] * 7, lo=0.5, hi=0.95, n_qps=3)
    assert qps == [36, 40, 44] and "never fell" in notes[0]


def test_window_between_two_grid_points_is_interpolated():
    """Assert a jump across the whole window between adjacent grid QPs yields QPs in between."""
    ratio = [1.0, 1.0, 0.99, 0.3, 0.2, 0.1, 0.1]
    qps, notes = choose_qps(GRID, ratio, lo=0.5, hi=0.95, n_qps=5)
    assert qps == [28, 29, 30, 31, 32] and notes


def test_bad_range_raises():
    """Assert lo >= hi and n_qps < 2 raise typed errors."""
    with pytest.raises(InvalidArgumentError):
        choose_qps(GRID, [1.0] * 7, lo=0.9, hi=0.5, n_qps=3)
    with pytest.raises(InvalidArgumentError):
        choose_qps(GRID, [1.0] * 7, lo=0.5, hi=0.9, n_qps=1)


def test_calibrate_measures_a_falling_score_curve():
    """Assert calibration on real crops: ratio 1 at lossless QP 0, the chosen QPs inside the
    grid and inside the measured 50–95 % region of the monotonised curve."""
    images = select_evenly(builtin_images(crop_size=48), 8)
    cal = calibrate(images, ZlibQuantCodec(), TinyClassifier(seed=1), grid=[0, 12, 24, 30, 36, 42, 48], n_qps=4, max_images=8)
    assert cal.n_images == 8 and cal.reference == 1.0 and cal.ratio[0] == 1.0
    assert cal.ratio[-1] < cal.ratio[0]
    assert all(0 <= q <= 48 for q in cal.qps) and cal.qps == sorted(cal.qps)
    assert cal.as_dict()["codec"] == "zq" and cal.as_dict()["task"] == "tiny"
