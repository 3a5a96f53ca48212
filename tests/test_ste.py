"""The straight-through step: real codec values forward, the proxy's gradients backward."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from npp_plugin import Codec
from npp_plugin.errors import ShapeError
from npp_plugin.registry import available_codecs, get_codec
from npp_plugin.ste import codec_step, straight_through

torch.set_num_threads(1)


class Posterize(Codec):
    """Test-only codec: 4 bits per sample, raw bytes (proves any Codec subclass works)."""

    name = "posterize_test"
    qp_range = (0, 7)

    def _encode(self, rgb, /, *, qp):
        h, w = rgb.shape[:2]
        q = (rgb >> (4 + qp % 4)).astype(np.uint8)
        return b"PZ" + bytes([qp, h >> 8, h & 255, w >> 8, w & 255]) + q.tobytes()

    def _decode(self, data, /, *, high_bit_depth):
        qp, h, w = data[2], (data[3] << 8) | data[4], (data[5] << 8) | data[6]
        shift = 4 + qp % 4
        q = np.frombuffer(data[7:], dtype=np.uint8).reshape(h, w, 3)
        return ((q.astype(np.uint16) << shift) + (1 << (shift - 1))).clip(0, 255).astype(np.uint8)

    @classmethod
    def _check(cls, data):
        return data[:2] == b"PZ"


class LinearProxy(torch.nn.Module):
    """A deterministic differentiable 'proxy' with a known Jacobian."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.8), requires_grad=False)

    def forward(self, x):
        return {"x_hat": self.w * x + 0.1, "bits": 100.0 * (x**2).flatten(1).sum(dim=1)}


def _codecs():
    out = [Posterize()]
    if "jpeg" in available_codecs():
        out.append(get_codec("jpeg"))
    return out


@pytest.fixture(scope="module")
def proxy():
    from npp_plugin.proxy import proxy_codec

    torch.manual_seed(0)
    # train mode: uniform-noise quantisation, the relaxation that has gradients (eval rounds)
    return proxy_codec(arch="bmshj2018_hyperprior", N=16, M=16).freeze()


@pytest.mark.parametrize("codec", _codecs(), ids=lambda c: c.name)
def test_forward_is_the_real_codec_exactly(codec, proxy):
    """Assert x̂ and bits equal codec.roundtrip's output bit for bit."""
    x = torch.rand(2, 3, 48, 64, generator=torch.Generator().manual_seed(1))
    qp = 3 if codec.name == "posterize_test" else 34
    cs = codec_step(x.requires_grad_(True), codec=codec, qp=qp, proxy=proxy, workers=1)
    real, bits = codec.roundtrip(x.detach(), qp=qp, workers=1)
    assert torch.equal(cs.x_hat, real)
    assert torch.equal(cs.bits.double(), bits)
    assert torch.equal(cs.real_x_hat, real)
    assert cs.bpp().shape == (2,)
    assert not torch.equal(cs.proxy_x_hat, real)  # the proxy's own output differs


@pytest.mark.parametrize("codec", _codecs(), ids=lambda c: c.name)
def test_gradients_are_the_proxys(codec, proxy):
    """Assert the gradient w.r.t. x̄ equals the gradient through the proxy alone."""
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 64, 64, generator=g)
    up_img = torch.randn(2, 3, 64, 64, generator=g)
    up_bits = torch.randn(2, generator=g)
    qp = 2 if codec.name == "posterize_test" else 30

    xa = x.clone().requires_grad_(True)
    torch.manual_seed(3)  # the same quantisation noise in both passes
    cs = codec_step(xa, codec=codec, qp=qp, proxy=proxy, workers=1)
    ((cs.x_hat * up_img).sum() + (cs.bits * up_bits).sum()).backward()

    xb = x.clone().requires_grad_(True)
    torch.manual_seed(3)
    out = proxy(xb)
    ((out["x_hat"] * up_img).sum() + (out["bits"] * up_bits).sum()).backward()
    assert torch.allclose(xa.grad, xb.grad, rtol=1e-5, atol=1e-7)
    assert float(xa.grad.abs().sum()) > 0
    assert all(p.grad is None for p in proxy.parameters())


def test_known_jacobian_with_a_linear_proxy():
    """Assert d x̂/d x̄ = w and d bits/d x̄ = 200·x̄ exactly, as the linear proxy says."""
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    cs = codec_step(x, codec=Posterize(), qp=1, proxy=LinearProxy(), workers=1)
    (cs.x_hat.sum() + cs.bits.sum()).backward()
    assert torch.allclose(x.grad, 0.8 + 200.0 * x.detach(), atol=1e-5)


def test_proxy_only_ablation(proxy):
    """Assert NPP+Minnen mode uses the proxy's values and never calls the codec."""

    class Exploding(Posterize):
        def _encode(self, rgb, /, *, qp):
            msg = "codec must not run"
            raise AssertionError(msg)

    x = torch.rand(1, 3, 64, 64)
    torch.manual_seed(4)
    cs = codec_step(x, codec=Exploding(), qp=1, proxy=proxy, proxy_only=True)
    assert cs.real_x_hat is None and cs.real_bits is None
    torch.manual_seed(4)
    assert torch.equal(cs.x_hat, proxy(x)["x_hat"].clamp(0, 1))


def test_errors():
    """Assert shape mismatches and bad inputs raise ShapeError."""
    with pytest.raises(ShapeError, match="differs"):
        straight_through(torch.zeros(2, 3), torch.zeros(3, 2))
    with pytest.raises(ShapeError, match="x_bar"):
        codec_step(torch.zeros(3, 8, 8), codec=Posterize(), qp=1, proxy=LinearProxy())


def test_straight_through_values_and_grad():
    """Assert the swap returns exactly the real values and passes gradients unchanged."""
    p = torch.tensor([0.1, 0.2, 0.3], requires_grad=True)
    r = torch.tensor([0.7, 0.123456789, 0.3000001])
    y = straight_through(p, r)
    assert torch.equal(y, r)
    (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert p.grad.tolist() == [1.0, 2.0, 3.0]
