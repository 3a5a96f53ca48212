"""Analytic codec surrogates and the surrogate fidelity check, on real photos and real codecs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from npp_plugin.errors import InvalidArgumentError
from npp_plugin.preprocessors.filters import gaussian_blur
from npp_plugin.surrogates import (
    _blocks,
    chroma_format,
    codec_steps,
    distortion_surrogate,
    rate_model,
    surrogate_step,
)

from .conftest import require_codec

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def crops():
    """Eight 128² crops of the held-out built-in photos, as a float batch."""
    from npp_plugin.datasets import fixed_crops
    from npp_plugin.training.data import BuiltinPhotos

    tiles = [c.pixels for c in fixed_crops(BuiltinPhotos("val").files, size=128)][::3][:8]
    return torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2).float().div(255)


def test_block_dct_is_orthonormal(crops):
    """Assert the 8×8 DCT keeps energy (Parseval) and its inverse gives the planes back."""
    from npp_plugin.surrogates import _unblocks

    x = crops[:, :1] * 255
    coef, size = _blocks(x)
    assert torch.allclose((coef**2).sum(), (x**2).sum(), rtol=1e-5)
    assert torch.allclose(_unblocks(coef, size), x, atol=1e-3)


@pytest.mark.parametrize("kind", ["log", "sqlog", "sigcount"])
def test_rate_models_fall_with_blur_and_with_the_step(crops, kind):
    """Assert every rate model scores a blurred image lower, and a coarser quantiser lower."""
    n0 = rate_model(crops, step=16.0, kind=kind)
    assert bool((rate_model(gaussian_blur(crops, 1.0), step=16.0, kind=kind) < n0).all())
    assert bool((rate_model(crops, step=32.0, kind=kind) < n0).all())


def test_unknown_models_are_refused(crops):
    with pytest.raises(InvalidArgumentError, match="rate model 'l1'"):
        rate_model(crops, step=8.0, kind="l1")
    with pytest.raises(InvalidArgumentError, match="Jacobian 'exact'"):
        distortion_surrogate(crops, crops, step=8.0, kind="exact")


def test_masked_jacobian_keeps_what_the_codec_kept(crops):
    """Assert the codec-masked stand-in is the identity where the 'codec' kept everything and
    removes high frequencies where it blurred them away."""
    same = distortion_surrogate(crops, crops, step=8.0, kind="masked")
    # kept coefficients pass with weight c²/(c² + 0.25): only sub-sample-level ones shrink
    assert float((same - crops).abs().mean()) < 1e-3 and float((same - crops).abs().max()) < 0.02
    blurred = distortion_surrogate(crops, gaussian_blur(crops, 1.5), step=8.0, kind="masked")
    hf = lambda t: (t - gaussian_blur(t, 1.5)).abs().mean()  # noqa: E731
    assert float(hf(blurred)) < 0.5 * float(hf(crops))


@pytest.mark.parametrize("codec_name", ["jpeg", "bpg"])
def test_surrogate_step_has_real_values_and_surrogate_gradients(crops, codec_name):
    """Assert the forward values are exactly the real codec's reconstruction and bits, and the
    rate gradient says that blurring saves bits (a negative directional derivative)."""
    codec = require_codec(codec_name)
    x = crops[:4].clone().requires_grad_(True)
    cs = surrogate_step(x, codec=codec, qp=34, rate="sqlog", jacobian="masked", workers=1)
    real, bits = codec.roundtrip(crops[:4], qp=34, workers=1)
    assert torch.equal(cs.x_hat.detach(), real) and torch.equal(cs.bits.detach().double(), bits)
    g, = torch.autograd.grad(cs.bits.sum(), x)
    d = gaussian_blur(crops[:4], 0.7) - crops[:4]
    assert float((g * d).sum()) < 0
    assert chroma_format(codec) == "420"


def test_quant_steps_follow_each_codec():
    """Assert BPG's step is HEVC's 2^((qp-4)/6) and JPEG's grows with QP like its quality."""
    bpg = require_codec("bpg")
    assert bpg.quant_step(34) == pytest.approx(32.0)
    assert bpg.quant_step(40) == pytest.approx(64.0)
    jpeg = require_codec("jpeg")
    steps = [jpeg.quant_step(q) for q in (22, 28, 34, 40)]
    assert steps == sorted(steps) and steps[0] < steps[-1] / 4
    assert bpg.quant_table(34) is None and codec_steps(bpg, 34) == (32.0, 32.0)


def test_jpeg_tables_are_the_ones_in_its_files():
    """Assert JPEG's per-frequency steps equal the quantisation tables libjpeg wrote into the
    file, luma and chroma, at every QP (read back with Pillow)."""
    import io

    from PIL import Image

    jpeg = require_codec("jpeg")
    img = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    for qp in range(52):
        written = Image.open(io.BytesIO(jpeg.encode(img, qp=qp))).quantization
        luma, chroma = jpeg.quant_table(qp)
        assert luma.flatten().tolist() == list(written[0]) and chroma.flatten().tolist() == list(written[1]), qp
    y, c = codec_steps(jpeg, 41)
    assert y.shape == c.shape == (8, 8) and float(y[7, 7]) > 4 * float(y[0, 1])


def test_a_flat_table_is_the_single_step(crops):
    """Assert the surrogates read an 8×8 table (per plane) as they read one step: a table
    of 16 everywhere gives the scalar 16's values, and a coarser chroma table lowers the rate."""
    flat = torch.full((8, 8), 16.0)
    for kind in ("log", "sqlog", "sigcount"):
        assert torch.allclose(rate_model(crops, step=(flat, flat), kind=kind), rate_model(crops, step=16.0, kind=kind))
    assert bool((rate_model(crops, step=(flat, 4 * flat)) < rate_model(crops, step=16.0)).all())
    soft_t = distortion_surrogate(crops, crops, step=(flat, flat), kind="soft")
    assert torch.allclose(soft_t, distortion_surrogate(crops, crops, step=16.0, kind="soft"), atol=1e-5)


@pytest.mark.slow
def test_check_prefers_the_squared_log_to_the_log_model():
    """The surrogate check on held-out crops with real BPG: the squared-log rate model
    predicts what a σ 0.5 blur saves within the tolerance, the log model under-predicts it
    (a warning says so). Measured on 16 crops at QP 34 (fast): log 0.67, sqlog 0.98."""
    from npp_plugin.registry import get_task
    from npp_plugin.training.data import BuiltinPhotos
    from npp_plugin.training.search import Crops
    from npp_plugin.training.surrogate_check import (
        RATE_TOLERANCE,
        SurrogateWarning,
        check_surrogate,
    )

    codec = require_codec("bpg").__class__(fast=True)
    task = get_task("mobilenet_v2")
    c = Crops.grid(BuiltinPhotos("val").files, n=12, size=224, task=task)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = check_surrogate(codec, task, c.x, c.ref, [34], rate="log", jacobian="masked", workers=1)
    log_blur = next(r for r in rows if r["direction"] == "blur0.5")
    assert log_blur["rate_ratio"] < 1 - RATE_TOLERANCE
    assert any(issubclass(w.category, SurrogateWarning) for w in caught)
    rows = check_surrogate(codec, task, c.x, c.ref, [34], rate="sqlog", jacobian="masked", workers=1,
                           warn=False)
    sq = {r["direction"]: r for r in rows}
    assert abs(sq["blur0.5"]["rate_ratio"] - 1) < RATE_TOLERANCE
    assert sq["blur0.5"]["rate_corr"] > 0.8 and sq["unsharp"]["rate_corr"] > 0.8
    assert sq["blur0.5"]["real_dbits_rel"] < -0.1 < 0.1 < sq["unsharp"]["real_dbits_rel"]


@pytest.mark.parametrize(("codec_name", "options"), [("bpg", {}), ("bpg", {"chroma": "444"}),
                                                    ("jpeg", {"chroma": "422"}), ("jpeg", {})])
@pytest.mark.parametrize("rate", ["log", "sqlog", "sigcount"])
@pytest.mark.parametrize("jacobian", ["identity", "soft", "masked"])
def test_the_analytic_gradient_is_autograds(codec_name, options, rate, jacobian):
    """surrogate_grad computes the surrogates' gradient by their adjoints, not autograd:
    the same numbers for every rate model, Jacobian, chroma format and step table (JPEG's),
    on a picture whose sides are not multiples of 8 or 16."""
    import npp_plugin
    from npp_plugin.surrogates import surrogate_grad, surrogate_step

    codec = npp_plugin.get_codec(codec_name, **options)
    g = torch.Generator().manual_seed(1)
    x = torch.nn.functional.avg_pool2d(torch.rand(2, 3, 45, 61, generator=g), 3, 1, 1).requires_grad_(True)
    st = surrogate_step(x, codec=codec, qp=34, rate=rate, jacobian=jacobian)
    w = torch.randn(x.shape, generator=g)
    (whole,) = torch.autograd.grad((st.bits / 1000.0).sum() + (st.x_hat * w).sum(), x)
    ours = surrogate_grad(x.detach(), st.real_x_hat, st.real_bits, w, codec=codec, qp=34, bits_weight=1e-3,
                          rate=rate, jacobian=jacobian)
    torch.testing.assert_close(ours, whole, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("rows", [16, 48, 64])
def test_banded_gradient_equals_the_whole_pictures(rows):
    """surrogate_grad (bands of rows, bounded memory) gives x̄ the gradient surrogate_step's
    autograd gives it, for bits and a linear task term; also with the decoded image as uint8."""
    import npp_plugin
    from npp_plugin.surrogates import surrogate_grad, surrogate_step

    codec = npp_plugin.get_codec("bpg", fast=True)
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.avg_pool2d(torch.rand(2, 3, 74, 53, generator=g), 3, 1, 1).requires_grad_(True)
    st = surrogate_step(x, codec=codec, qp=34)
    w = torch.randn(x.shape, generator=g)
    (whole,) = torch.autograd.grad((st.bits / 1000.0).sum() + (st.x_hat * w).sum(), x)
    banded = surrogate_grad(x.detach(), st.real_x_hat, st.real_bits, w, codec=codec, qp=34, bits_weight=1e-3, rows=rows)
    torch.testing.assert_close(banded, whole, rtol=0, atol=1e-5)
    u8 = (st.real_x_hat * 255).round().to(torch.uint8)
    by_rows = surrogate_grad(x.detach(), u8, st.real_bits, lambda a, b: w[..., a:b, :], codec=codec, qp=34,
                             bits_weight=1e-3, rows=rows)
    torch.testing.assert_close(by_rows, whole, rtol=0, atol=1e-5)
    with pytest.raises(InvalidArgumentError, match="multiple of 16"):
        surrogate_grad(x.detach(), u8, st.real_bits, w, codec=codec, qp=34, rows=24)
