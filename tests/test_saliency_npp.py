"""The saliency-guided blur NPP, the tuned-blur anchor, and the weights that ship."""

from __future__ import annotations

import json

import pytest
import torch

import npp_plugin
from npp_plugin.errors import InvalidArgumentError, WeightsError
from npp_plugin.preprocessors.filters import TunedBlur, gaussian_blur
from npp_plugin.preprocessors.saliency import SaliencyBlurConfig, SaliencyBlurNet

from .conftest import require_codec

torch.set_num_threads(1)


def test_equal_sigmas_are_a_uniform_gaussian_blur():
    """Assert σ_bg = σ_fg and chroma 1 give exactly the Gaussian blur whatever the saliency,
    and that the precomputed bank gives the same output as computing it."""
    net = SaliencyBlurNet(SaliencyBlurConfig(anchors=(0.5, 0.8)))
    net.set_anchor(0, sigma_bg=0.7, sigma_fg=0.7)
    net.set_anchor(1, sigma_bg=2.0, sigma_fg=0.35, gamma=2.0, chroma=1.5)
    x, sal = torch.rand(2, 3, 40, 56), torch.rand(2, 1, 40, 56)
    assert torch.allclose(net(x, 0.5, saliency=sal), gaussian_blur(x, 0.7).clamp(0, 1), atol=1e-5)
    assert torch.equal(net(x, 0.8, saliency=sal), net(x, 0.8, saliency=sal, bank=net.bank(x)))


def test_salient_pixels_keep_more_detail():
    """Assert detail survives where the saliency is 1 and is blurred away where it is 0."""
    net = SaliencyBlurNet(SaliencyBlurConfig(anchors=(0.7,)))
    net.set_anchor(0, sigma_bg=2.8, sigma_fg=0.35)
    x = torch.rand(1, 3, 32, 64)
    sal = torch.zeros(1, 1, 32, 64)
    sal[..., :32] = 1.0
    y = net(x, 0.7, saliency=sal)
    change = (y - x).abs().mean(dim=(0, 1, 2))
    assert float(change[4:28].mean()) < 0.5 * float(change[36:60].mean())


def test_parameters_interpolate_between_anchors_and_hold_beyond():
    net = SaliencyBlurNet(SaliencyBlurConfig(anchors=(0.5, 0.8)))
    net.set_anchor(0, sigma_bg=0.5, sigma_fg=0.5, gamma=1.0, chroma=1.0)
    net.set_anchor(1, sigma_bg=2.0, sigma_fg=0.5, gamma=4.0, chroma=4.0)
    p = net.params_at(torch.tensor([0.1, 0.5, 0.65, 0.8, 1.0]))
    assert torch.allclose(p[0], p[1]) and torch.allclose(p[3], p[4])
    assert p[2, 0].item() == pytest.approx(1.0, rel=1e-5)  # geometric mean of 0.5 and 2.0


def test_saliency_map_is_normalised_per_image(photo):
    net = SaliencyBlurNet()
    x = torch.from_numpy(photo[:224, :224]).permute(2, 0, 1)[None].float().div(255).repeat(2, 1, 1, 1)
    x[1] = x[1].flip(-1)
    s = net.saliency(x)
    assert s.shape == (2, 1, 224, 224) and float(s.min()) >= 0
    assert torch.allclose(s.flatten(1).amax(1), torch.ones(2), atol=0.02)  # 1 before upsampling
    a, b = s[0].flatten(), s[1].flip(-1).flatten()
    assert float(torch.corrcoef(torch.stack([a, b]))[0, 1]) > 0.8  # the map follows the content


def test_bad_configurations_are_refused():
    with pytest.raises(InvalidArgumentError, match="anchors"):
        SaliencyBlurConfig(anchors=(0.8, 0.5))
    with pytest.raises(InvalidArgumentError, match="sigmas must start at 0"):
        SaliencyBlurConfig(sigmas=(0.5, 1.0))
    with pytest.raises(InvalidArgumentError, match="backbone 'resnet50'"):
        SaliencyBlurConfig(backbone="resnet50")
    with pytest.raises(InvalidArgumentError, match="parameters are"):
        SaliencyBlurNet().set_anchor(0, sigma=1.0)
    with pytest.raises(InvalidArgumentError, match="qp_norm is required"):
        SaliencyBlurNet()(torch.rand(1, 3, 8, 8))


def test_weights_round_trip_and_preprocessor(tmp_path, photo):
    """Assert a saved saliency-blur network loads back equal, through the 'npp' hook too."""
    from npp_plugin.preprocessors.weights import load_weights, save_weights

    net = SaliencyBlurNet()
    net.set_anchor(2, sigma_bg=1.4, sigma_fg=0.5, gamma=1.5, chroma=2.0)
    path = save_weights(tmp_path / "s.npp.pt", net, meta={"codec": "bpg", "recipe": {"track": "test"},
                                                          "fidelity": {"kind": "none"}})
    back, w = load_weights(path)
    assert isinstance(back, SaliencyBlurNet) and torch.equal(back.theta, net.theta)
    assert w.config == net.config and w.meta["params"] == 20
    codec = require_codec("jpeg")
    prep = npp_plugin.get_preprocessor("npp", weights=str(path))
    x = torch.from_numpy(photo[:64, :64]).permute(2, 0, 1)[None].float().div(255)
    assert torch.allclose(prep(x, codec=codec, qp=34), back(x, codec.normalized_qp(34)), atol=1e-6)


def test_tuned_blur_reads_its_table(tmp_path):
    bpg = require_codec("bpg")
    table = {"format": "npp_plugin.blur-tuned/1", "codec": "bpg", "task": "mobilenet_v2",
             "sigma": {"28": 0.0, "34": 0.6, "41": 1.2}}
    (tmp_path / "t.json").write_text(json.dumps(table))
    blur = TunedBlur(str(tmp_path / "t.json"))
    assert blur.sigma(bpg, 28) == 0.0 and blur.sigma(bpg, 34) == pytest.approx(0.6)
    assert blur.sigma(bpg, 20) == 0.0 and blur.sigma(bpg, 51) == pytest.approx(1.2)
    x = torch.rand(1, 3, 16, 16)
    assert torch.equal(blur(x, codec=bpg, qp=28), x)
    assert torch.allclose(blur(x, codec=bpg, qp=34), gaussian_blur(x, 0.6).clamp(0, 1))
    (tmp_path / "bad.json").write_text('{"format": "other", "sigma": {"34": 1}}')
    with pytest.raises(WeightsError, match="is not a blur-tuned table"):
        TunedBlur(str(tmp_path / "bad.json"))
    with pytest.raises(WeightsError, match="cannot read the σ table"):
        TunedBlur(str(tmp_path / "missing.json"))
