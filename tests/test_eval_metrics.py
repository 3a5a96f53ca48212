"""Per-image metrics: known values, edge cases and typed errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from npp_plugin.errors import InvalidArgumentError, ShapeError
from npp_plugin.evaluation.metrics import (
    bpp,
    fidelity,
    fsim,
    kl_divergence,
    ms_ssim,
    ms_ssim_window,
    psnr,
    psnr_from_mse,
)


def images(n=2, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, size // 8, size // 8, generator=g)
    return torch.nn.functional.interpolate(base, size=(size, size), mode="bilinear", align_corners=False)


def test_bpp_counts_bits_per_pixel():
    """Assert 1000 bytes on 100x80 pixels is 1 bpp."""
    assert bpp(1000, 100, 80) == pytest.approx(1.0)
    with pytest.raises(InvalidArgumentError):
        bpp(10, 0, 5)


def test_psnr_known_value_and_cap():
    """Assert a uniform error of 0.1 gives 20 dB and identical images the 100 dB cap."""
    x = torch.full((2, 3, 8, 8), 0.5)
    assert psnr(x, x + 0.1) == pytest.approx([20.0, 20.0], abs=1e-5)
    assert psnr(x, x).tolist() == [100.0, 100.0]


def test_psnr_from_mse_is_the_one_formula():
    """Assert the MSE form: a float gives a float, an array an array, 0 the cap, and psnr
    per image equals it on each image's MSE."""
    assert psnr_from_mse(0.01) == pytest.approx(20.0, abs=1e-12) and isinstance(psnr_from_mse(0.01), float)
    assert psnr_from_mse(0.0) == 100.0 and psnr_from_mse(0.0, max_db=60.0) == pytest.approx(60.0)
    assert psnr_from_mse(np.array([1e-4, 1.0])).tolist() == pytest.approx([40.0, 0.0])
    x, y = images(seed=1), images(seed=2)
    mse = ((x.double() - y.double()) ** 2).flatten(1).mean(1).numpy()
    assert psnr(x, y).tolist() == psnr_from_mse(mse).tolist()


def test_metrics_refuse_what_is_not_an_image_batch():
    """Assert the shared (N, 3, H, W) check guards the metrics: channels, dtype, emptiness."""
    with pytest.raises(ShapeError, match=r"psnr: expected a \(N, 3, H, W\)"):
        psnr(torch.zeros(1, 4, 8, 8), torch.zeros(1, 4, 8, 8))
    with pytest.raises(InvalidArgumentError, match="dtype torch.uint8"):
        psnr(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ShapeError, match="zero size"):
        ms_ssim(torch.zeros(0, 3, 8, 8), torch.zeros(0, 3, 8, 8))


def test_ms_ssim_identical_is_one_and_drops_with_noise():
    """Assert MS-SSIM is 1 for identical images and lower under noise, per image."""
    x = images(size=144)
    noisy = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    assert ms_ssim(x, x) == pytest.approx([1.0, 1.0], abs=1e-5)
    assert np.all(ms_ssim(x, noisy) < 0.99)


def test_ms_ssim_window_fits_the_image():
    """Assert the standard 11 window above 160 px, smaller ones below, None when too small."""
    assert ms_ssim_window(161, 500) == 11
    assert ms_ssim_window(144, 144) == 9
    assert ms_ssim_window(128, 128) == 7
    assert ms_ssim_window(32, 32) is None
    assert np.isnan(ms_ssim(images(size=32), images(size=32))).all()


def test_fsim_identical_is_one_and_orders_distortions():
    """Assert FSIM is 1 for identical images and falls with stronger noise."""
    x = images(size=64)
    g = torch.Generator().manual_seed(2)
    n = torch.randn(x.shape, generator=g)
    weak, strong = (x + 0.02 * n).clamp(0, 1), (x + 0.2 * n).clamp(0, 1)
    assert fsim(x, x) == pytest.approx([1.0, 1.0], abs=1e-4)
    assert np.all(fsim(x, strong) < fsim(x, weak))


def test_kl_divergence_known_value():
    """Assert KL(p || q) matches the closed form and is 0 for equal distributions."""
    p = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    q = torch.tensor([[0.9, 0.1], [0.5, 0.5]])
    expected = [0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1), math.log(2.0)]
    assert kl_divergence(p, q) == pytest.approx(expected, rel=1e-6)  # float32 inputs
    assert kl_divergence(p, p) == pytest.approx([0.0, 0.0], abs=1e-12)


def test_fidelity_selects_metrics_and_rejects_unknown():
    """Assert fidelity computes exactly the named metrics and names a bad one."""
    x = images(size=64)
    out = fidelity(x, x, ("psnr",))
    assert list(out) == ["psnr"]
    with pytest.raises(InvalidArgumentError, match="lpips"):
        fidelity(x, x, ("lpips",))


def test_shape_mismatch_raises():
    """Assert mismatched shapes raise ShapeError naming both shapes."""
    with pytest.raises(ShapeError, match=r"\(1, 3, 8, 8\)"):
        psnr(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))
    with pytest.raises(ShapeError):
        kl_divergence(torch.zeros(2, 3), torch.zeros(2, 4))
