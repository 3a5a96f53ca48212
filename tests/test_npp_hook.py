# SPDX-License-Identifier: GPL-2.0-or-later
"""The "npp" pre-encode hook: registration, no-weights refusal, every codec, batches, devices."""

from __future__ import annotations

import struct
import subprocess
import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import npp_plugin  # noqa: E402
from npp_plugin import Codec, get_codec, get_preprocessor, registry  # noqa: E402
from npp_plugin.errors import InvalidArgumentError, ShapeError, WeightsError  # noqa: E402
from npp_plugin.preprocessors import hook  # noqa: E402
from npp_plugin.preprocessors import weights as W  # noqa: E402
from npp_plugin.preprocessors.weights import npp_net  # noqa: E402

META = {"codec": "rawtest", "recipe": {"stage": 0, "kind": "test"}, "fidelity": {"kind": "none"}}


class RawTestCodec(Codec):
    """Test-only lossless codec: a 13-byte header, then the pixels (so NPP output is visible exactly)."""

    name = "rawtest"
    qp_range = (0, 51)

    def _encode(self, rgb, /, *, qp):
        h, w, _ = rgb.shape
        return b"RAWT" + struct.pack("<IIB", h, w, qp) + rgb.tobytes()

    def _decode(self, data, /, *, high_bit_depth):
        h, w, _ = struct.unpack("<IIB", data[4:13])
        return np.frombuffer(data[13:], np.uint8).reshape(h, w, 3).copy()

    @classmethod
    def _check(cls, data, /):
        return data[:4] == b"RAWT"


def _installed_codecs() -> list[str]:
    with warnings.catch_warnings():  # a plugin still under construction only warns
        warnings.simplefilter("ignore")
        return npp_plugin.available_codecs()


def _codec(name: str) -> Codec:
    return RawTestCodec() if name == "rawtest" else get_codec(name)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path, plugin_host):
    """No $NPP_WEIGHTS, no shipped weights, and a fresh plugin host (so a fresh preprocessor
    cache) per test."""
    torch.set_num_threads(1)
    monkeypatch.delenv(W.ENV_VAR, raising=False)
    empty = tmp_path / "shipped"
    empty.mkdir()
    monkeypatch.setattr(W, "_shipped_dir", lambda: empty)


def _weights(tmp_path, *, identity=False, config="tiny", name="w.npp.pt", seed=0):
    net = npp_net(config=config)
    if not identity:
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return W.save_weights(tmp_path / name, net.eval(), meta=META)


def _image(h=48, w=64, seed=3):
    y, x = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    img = np.stack([x * 255 / max(w - 1, 1), y * 255 / max(h - 1, 1), (x + y) % 256], -1)
    return np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)


# -- registration and the no-weights path ----------------------------------------------------


def test_hook_import_is_cheap():
    """Assert importing the plugin module (plugin discovery) does not import torch."""
    code = "import sys, npp_plugin.preprocessors.hook; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_registered_as_npp():
    """Assert the built-in plugin registers the factory under "npp"."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert "npp" in npp_plugin.available_preprocessors()
        assert registry.preprocessor_registry().get("npp") is hook.npp_preprocessor
        assert registry.preprocessor_registry().owner("npp") == "npp"


def test_no_weights_is_a_clear_error():
    """Assert "npp" without weights raises WeightsError saying how to train or pass weights."""
    with pytest.raises(WeightsError) as info:
        get_preprocessor("npp")
    msg = str(info.value)
    assert "npp train" in msg and "NPP_WEIGHTS" in msg and 'weights="file.npp.pt"' in msg
    with pytest.raises(WeightsError, match="npp train"):
        RawTestCodec().encode(_image(), qp=30, preprocess="npp")


def test_env_weights_with_preprocess_name(tmp_path, monkeypatch):
    """Assert preprocess="npp" uses $NPP_WEIGHTS and equals passing the weights explicitly."""
    path = _weights(tmp_path)
    explicit = RawTestCodec().encode(
        _image(), qp=30, preprocess=get_preprocessor("npp", weights=str(path))
    )
    monkeypatch.setenv(W.ENV_VAR, str(path))
    assert RawTestCodec().encode(_image(), qp=30, preprocess="npp") == explicit


def test_factory_is_cached_and_configured(tmp_path):
    """Assert one instance per configuration, and its config records the weights."""
    path = _weights(tmp_path)
    a = get_preprocessor("npp", weights=str(path))
    assert get_preprocessor("npp", weights=str(path)) is a
    cfg = a.get_config()
    assert cfg["preprocessor"] == "npp" and cfg["weights"] == str(path) and cfg["device"] == "cpu"
    assert cfg["net"]["name"] == "tiny" and len(cfg["sha256"]) == 64
    with pytest.raises(WeightsError, match="holds configuration 'tiny', but 'paper'"):
        get_preprocessor("npp", weights=str(path), config="paper")


# -- every codec -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["rawtest", *_installed_codecs()])
def test_encode_with_npp_on_every_codec(name, tmp_path):
    """Assert codec.encode(img, qp=..., preprocess=npp) works and the filter changes the stream,
    while identity weights reproduce the plain encoding exactly."""
    codec = _codec(name)
    if not codec.is_available():
        pytest.skip(f"{name}: {codec.unavailable_reason()}")
    lo, hi = codec.qp_range
    qp = lo + (hi - lo) * 2 // 3
    img = _image()
    plain = codec.encode(img, qp=qp)
    filtered = codec.encode(
        img, qp=qp, preprocess=get_preprocessor("npp", weights=str(_weights(tmp_path)))
    )
    assert filtered != plain
    assert codec.decode(filtered).shape == img.shape
    same = codec.encode(
        img,
        qp=qp,
        preprocess=hook.npp_preprocessor(
            weights=_weights(tmp_path, identity=True, name="i.npp.pt")
        ),
    )
    assert same == plain


def test_lossless_codec_stores_exactly_the_npp_output(tmp_path):
    """Assert the encoded pixels are the network's output at codec.normalized_qp(qp)."""
    path = _weights(tmp_path)
    prep = get_preprocessor("npp", weights=str(path))
    codec = RawTestCodec()
    img = _image(37, 53)
    for qp in (10, 45):
        got = codec.decode(codec.encode(img, qp=qp, preprocess=prep))
        net, _ = W.load_weights(path)
        with torch.inference_mode():
            x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
            ref = (net(x, qp / 51) * 255).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(got, ref)
    low = codec.decode(codec.encode(img, qp=10, preprocess=prep))
    high = codec.decode(codec.encode(img, qp=45, preprocess=prep))
    assert np.abs(low.astype(int) - high.astype(int)).mean() > 0.5  # QA: the QP matters


@pytest.mark.parametrize("hw", [(1, 1), (3, 5), (17, 255)])
def test_odd_and_tiny_images(tmp_path, hw):
    """Assert tiny and odd-sized images pass through NPP and the codec with their size kept."""
    codec = RawTestCodec()
    img = _image(*hw)
    out = codec.decode(
        codec.encode(
            img, qp=20, preprocess=get_preprocessor("npp", weights=str(_weights(tmp_path)))
        )
    )
    assert out.shape == img.shape


# -- batches, input checks, devices ----------------------------------------------------------


def test_batch_matches_single_images(tmp_path):
    """Assert a batch (N, 3, H, W) filtered at once equals each image filtered alone, in inference mode."""
    prep = hook.npp_preprocessor(weights=_weights(tmp_path))
    codec = RawTestCodec()
    batch = torch.rand(4, 3, 21, 30, generator=torch.Generator().manual_seed(0))
    out = prep(batch, codec=codec, qp=33)
    assert out.shape == batch.shape
    assert any(p.requires_grad for p in prep.net.parameters())
    assert out.grad_fn is None  # ran under inference_mode: no graph kept
    singles = torch.cat([prep(batch[i : i + 1], codec=codec, qp=33) for i in range(4)])
    torch.testing.assert_close(out, singles, atol=1e-5, rtol=0)
    u8 = prep.apply_uint8(np.stack([_image(21, 30, seed=s) for s in range(3)]), codec=codec, qp=33)
    assert u8.shape == (3, 21, 30, 3) and u8.dtype == np.uint8


def test_keeps_dtype_and_device(tmp_path):
    """Assert float64 input comes back float64 (the net runs in float32)."""
    prep = hook.npp_preprocessor(weights=_weights(tmp_path))
    x = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    assert prep(x, codec=RawTestCodec(), qp=30).dtype == torch.float64


def test_bad_inputs_refused(tmp_path):
    """Assert wrong channels, NaN, out-of-range pixels and out-of-range QPs are refused clearly."""
    prep = hook.npp_preprocessor(weights=_weights(tmp_path))
    codec = RawTestCodec()
    with pytest.raises(ShapeError, match=r"\(N, 3, H, W\)"):
        prep(torch.rand(1, 4, 8, 8), codec=codec, qp=30)
    bad = torch.rand(1, 3, 8, 8)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(InvalidArgumentError, match="NaN"):
        prep(bad, codec=codec, qp=30)
    with pytest.raises(InvalidArgumentError, match=r"\[0, 1\]"):
        prep(torch.rand(1, 3, 8, 8) + 1, codec=codec, qp=30)
    with pytest.raises(InvalidArgumentError, match="qp=60 is out of range 0..51"):
        prep(torch.rand(1, 3, 8, 8), codec=codec, qp=60)  # beyond rawtest's qp_range
    with pytest.raises(InvalidArgumentError, match="qp=60 is out of range 0..51"):
        codec.encode(_image(), qp=60, preprocess=prep)
    with pytest.raises(ShapeError):
        codec.encode(np.zeros((8, 8, 4), np.uint8), qp=30, preprocess=prep)


def test_devices(tmp_path):
    """Assert CPU is the default, bad devices are refused, and CUDA runs when available."""
    path = _weights(tmp_path)
    assert hook.npp_preprocessor(weights=path).device.type == "cpu"
    with pytest.raises(InvalidArgumentError, match="not a torch device"):
        hook.npp_preprocessor(weights=path, device="gpu0")
    with pytest.raises(InvalidArgumentError, match="not supported"):
        hook.npp_preprocessor(weights=path, device="meta")
    if not torch.cuda.is_available():
        with pytest.raises(InvalidArgumentError, match="CUDA is not available"):
            hook.npp_preprocessor(weights=path, device="cuda")
        return
    x = torch.rand(2, 3, 20, 24)
    cpu = hook.npp_preprocessor(weights=path)(x, codec=RawTestCodec(), qp=30)
    gpu = hook.npp_preprocessor(weights=path, device="cuda")(x, codec=RawTestCodec(), qp=30)
    assert gpu.device == x.device
    torch.testing.assert_close(gpu, cpu, atol=1e-4, rtol=0)


def test_wraps_a_live_network():
    """Assert NppPreprocessor accepts an in-memory network (evaluation during training)."""
    net = npp_net(config="tiny")
    prep = hook.NppPreprocessor(net)
    assert net.training  # the caller's network is left as it was (a snapshot is used)
    x = torch.rand(1, 3, 9, 9)
    assert torch.equal(prep(x, codec=RawTestCodec(), qp=30), x)
    assert prep.get_config()["weights"] is None
    with pytest.raises(InvalidArgumentError, match="expected an NppNet"):
        hook.NppPreprocessor(torch.nn.Identity())
