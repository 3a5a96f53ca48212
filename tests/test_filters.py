"""The classical prefilter baselines: registration, behaviour, configuration errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from npp_plugin.errors import InvalidArgumentError
from npp_plugin.preprocessors.filters import (
    BilateralFilter,
    GaussianBlur,
    GuidedFilter,
    gaussian_blur,
)
from tests.test_eval_fixtures import ZlibQuantCodec

CODEC = ZlibQuantCodec()


def noisy(seed=0, size=48):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, 3, size, size, generator=g)


def step_edge(size=32):
    x = torch.zeros(1, 3, size, size)
    x[..., size // 2 :] = 1.0
    return x


def test_filters_are_registered_as_preprocessors(plugin_host):
    """Assert the built-in 'filters' plugin registers the baselines under valid names."""
    reg = plugin_host.preprocessors
    assert {"blur05", "blur10", "blur15", "blur20", "gaussian", "bilateral", "guided"} <= set(reg.names())
    assert reg.get("blur05")().get_config() == {"preprocessor": "gaussian", "sigma": 0.5}
    assert reg.owner("guided") == "filters"


@pytest.mark.parametrize("prep", [GaussianBlur(0.5), GaussianBlur(2.0), BilateralFilter(), GuidedFilter()])
def test_constant_image_is_unchanged(prep):
    """Assert every filter leaves a constant image alone (normalised weights, reflect padding)."""
    x = torch.full((1, 3, 20, 24), 0.37)
    torch.testing.assert_close(prep(x, codec=CODEC, qp=30), x, atol=1e-6, rtol=0)


def test_gaussian_blur_lowers_high_frequencies_more_with_sigma():
    """Assert pixel variance of white noise falls as sigma grows, and the mean is kept."""
    x = noisy()
    outs = [GaussianBlur(s)(x, codec=CODEC, qp=30) for s in (0.5, 1.0, 2.0)]
    variances = [float(o.var()) for o in outs]
    assert float(x.var()) > variances[0] > variances[1] > variances[2]
    for o in outs:
        assert float(o.mean()) == pytest.approx(float(x.mean()), abs=5e-3)


def test_gaussian_kernel_matches_closed_form_on_an_impulse():
    """Assert the impulse response is the sampled, normalised Gaussian (separable)."""
    x = torch.zeros(1, 1, 21, 21)
    x[0, 0, 10, 10] = 1.0
    out = gaussian_blur(x, 1.0)[0, 0]
    t = torch.arange(-3, 4, dtype=torch.float32)
    k = torch.exp(-0.5 * t**2)
    k = k / k.sum()
    torch.testing.assert_close(out[7:14, 7:14], k[:, None] * k[None, :], atol=1e-7, rtol=0)


def test_bilateral_keeps_edges_better_than_gaussian():
    """Assert the bilateral filter smooths noise but keeps a step edge sharper than a blur."""
    x = step_edge()
    bil = BilateralFilter(sigma_space=2.0, sigma_color=0.1)(x, codec=CODEC, qp=30)
    gau = GaussianBlur(2.0)(x, codec=CODEC, qp=30)
    err_b, err_g = float((bil - x).abs().mean()), float((gau - x).abs().mean())
    assert err_b < 0.1 * err_g
    n = noisy(size=32) * 0.05 + 0.5
    assert float(BilateralFilter()(n, codec=CODEC, qp=30).var()) < float(n.var())


def test_guided_filter_smooths_flat_noise_and_keeps_edges():
    """Assert the guided filter removes low-variance noise and keeps a strong edge."""
    g = torch.Generator().manual_seed(4)
    x = step_edge() + 0.01 * torch.randn(1, 3, 32, 32, generator=g)
    x = x.clamp(0, 1)
    out = GuidedFilter(radius=2, eps=1e-2)(x, codec=CODEC, qp=30)
    flat = out[..., 4:28, 2:12]
    assert float(flat.std()) < 0.5 * float(x[..., 4:28, 2:12].std())
    assert float(out[..., 16:].mean() - out[..., :16].mean()) > 0.9


def test_blur_before_codec_saves_bits():
    """Assert the registered blur, run through codec.encode(preprocess=...), lowers the rate."""
    from npp_plugin.images import tensor_batch_to_uint8

    img = tensor_batch_to_uint8(noisy(seed=3, size=64))[0]
    plain = len(CODEC.encode(img, qp=12))
    blurred = len(CODEC.encode(img, qp=12, preprocess=GaussianBlur(1.0)))
    assert blurred < 0.8 * plain


@pytest.mark.parametrize(
    ("factory", "kwargs", "argument"),
    [
        (GaussianBlur, {"sigma": 0}, "sigma"),
        (GaussianBlur, {"sigma": float("nan")}, "sigma"),
        (GaussianBlur, {"sigma": "1"}, "sigma"),
        (BilateralFilter, {"sigma_color": -1}, "sigma_color"),
        (GuidedFilter, {"radius": 0}, "radius"),
        (GuidedFilter, {"radius": 1.5}, "radius"),
        (GuidedFilter, {"eps": 2.0}, "eps"),
    ],
)
def test_bad_configuration_raises(factory, kwargs, argument):
    """Assert bad options raise InvalidArgumentError naming the filter and the option."""
    with pytest.raises(InvalidArgumentError) as exc:
        factory(**kwargs)
    assert exc.value.argument == argument
    assert factory.name in str(exc.value)


def test_fixed_blur_refuses_options(plugin_host):
    """Assert 'blur10' takes no options and points to 'gaussian'."""
    with pytest.raises(InvalidArgumentError, match="gaussian"):
        plugin_host.preprocessors.get("blur10")(sigma=3)


def test_apply_uint8_roundtrip_shape():
    """Assert the filters work through the Preprocessor uint8 path used by codec.encode."""
    img = (np.random.default_rng(0).random((1, 17, 23, 3)) * 255).astype(np.uint8)
    out = GuidedFilter().apply_uint8(img, codec=CODEC, qp=30)
    assert out.shape == img.shape and out.dtype == np.uint8


@pytest.mark.parametrize("sigma", [0.7, 3.0, 20.0])
def test_large_images_blur_in_bands_to_the_same_result(monkeypatch, sigma):
    # bands of rows with a halo bound the memory of 12 MP photos; the result must not change
    from npp_plugin.preprocessors import filters

    x = torch.rand(2, 3, 700, 300, generator=torch.Generator().manual_seed(1))
    monkeypatch.setattr(filters, "BAND_PIXELS", 1 << 40)
    whole = filters.gaussian_blur(x, sigma)
    monkeypatch.setattr(filters, "BAND_PIXELS", 1000)
    monkeypatch.setattr(filters, "BAND_ROWS", 128)
    assert torch.equal(filters.gaussian_blur(x, sigma), whole)
