"""Learned proxy codecs: contract, padding, saving, RD pretraining and codec imitation."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from npp_plugin.errors import InvalidArgumentError, ShapeError, WeightsError
from npp_plugin.proxy import ARCHS, load_proxies, proxy_codec, save_proxies
from npp_plugin.registry import available_codecs, get_codec

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
needs_jpeg = pytest.mark.skipif("jpeg" not in available_codecs(), reason="the 'jpeg' codec plugin is not installed")


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_forward_contract_any_size(arch):
    """Assert forward returns x_hat of the input's size, likelihoods y/z and (B,) bits."""
    torch.manual_seed(0)
    p = proxy_codec(arch=arch, N=16, M=24)
    out = p(torch.rand(2, 3, 50, 70))
    assert out["x_hat"].shape == (2, 3, 50, 70)
    assert set(out["likelihoods"]) == {"y", "z"}
    assert out["likelihoods"]["y"].shape == (2, 24, 64 // 16, 128 // 16)  # padded to ×64
    assert out["bits"].shape == (2,) and bool((out["bits"] > 0).all())


def test_bits_count_only_latents_covering_the_image():
    """Assert bits = −Σlog2 p over all latents at a multiple of 64, and over the covering
    latents only when padded."""
    torch.manual_seed(0)
    p = proxy_codec(arch="bmshj2018_hyperprior", N=16, M=16).eval()
    x = torch.rand(1, 3, 64, 128)
    out = p(x)
    full = sum(-torch.log2(v.clamp_min(1e-9)).sum() for v in out["likelihoods"].values())
    assert torch.allclose(out["bits"][0], full, rtol=1e-5)
    small = p(x[..., :40, :40])
    y = small["likelihoods"]["y"][..., :3, :3]
    z = small["likelihoods"]["z"][..., :1, :1]
    expected = -torch.log2(y.clamp_min(1e-9)).sum() - torch.log2(z.clamp_min(1e-9)).sum()
    assert torch.allclose(small["bits"][0], expected, rtol=1e-5)


def test_bad_arguments():
    """Assert unknown arch, tiny channel counts and wrong shapes raise typed errors."""
    with pytest.raises(InvalidArgumentError, match="mbt2018"):
        proxy_codec(arch="cheng2020")
    with pytest.raises(InvalidArgumentError, match="N must be"):
        proxy_codec(arch="mbt2018_mean", N=2, M=16)
    with pytest.raises(ShapeError):
        proxy_codec(arch="bmshj2018_hyperprior", N=16, M=16)(torch.rand(3, 64, 64))


def test_save_load_roundtrip(tmp_path):
    """Assert a saved bank loads with the same config, meta and outputs (eval mode)."""
    torch.manual_seed(0)
    p = proxy_codec(arch="mbt2018_mean", N=16, M=16, meta={"codec": "jpeg", "qp": 34, "lmbda": 0.02})
    path = save_proxies(tmp_path / "p.pt", {34: p})
    (q,) = load_proxies(path).values()
    assert q.get_config() == p.get_config() and q.meta == p.meta
    assert all(not t.requires_grad for t in q.parameters())
    x = torch.rand(1, 3, 64, 64)
    a, b = p.eval()(x), q.eval()(x)
    assert torch.equal(a["x_hat"], b["x_hat"]) and torch.equal(a["bits"], b["bits"])


def test_load_errors(tmp_path):
    """Assert missing files and foreign files raise WeightsError with a hint."""
    with pytest.raises(WeightsError, match="npp train proxy"):
        load_proxies(tmp_path / "none.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"hello": 1}, bad)
    with pytest.raises(WeightsError, match="not a proxy file"):
        load_proxies(bad)


def test_only_the_proxy_package_imports_compressai():
    """Assert no module outside npp_plugin/proxy imports compressai, and importing the
    training, task and preprocess code does not load it."""
    pkg = ROOT / "npp_plugin"
    offenders = [
        str(p.relative_to(ROOT))
        for p in pkg.rglob("*.py")
        if p.relative_to(pkg).parts[0] != "proxy"
        and ("import compressai" in p.read_text() or "from compressai" in p.read_text())
    ]
    assert offenders == []
    code = ("import sys, npp_plugin.training.loop, npp_plugin.training.ste, npp_plugin.training.__main__, "
            "npp_plugin.tasks.builtin, npp_plugin.proxy.bank; print('compressai' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    # proxy.bank imports the model module, which imports compressai only when a proxy is built
    assert out.stdout.strip() == "False"


def _batches(size=64, n=4, seed=0):
    from npp_plugin.training.data import Batches, BuiltinPhotos

    b = Batches(BuiltinPhotos("train"), size=size, batch_size=n, seed=seed)

    def it():
        k = 0
        while True:
            yield b[k][0]
            k += 1

    return it()


@pytest.mark.slow
def test_rd_pretraining_lowers_the_loss():
    """Assert 60 steps of RD pretraining lower the RD loss on photo crops."""
    from npp_plugin.training.proxy_stage import pretrain_rd

    torch.manual_seed(0)
    p = proxy_codec(arch="bmshj2018_hyperprior", N=16, M=16)
    hist = pretrain_rd(p, _batches(), steps=60, lmbda=0.01, lr=3e-3)
    first = sum(h["loss"] for h in hist[:10]) / 10
    last = sum(h["loss"] for h in hist[-10:]) / 10
    assert last < 0.7 * first
    assert p.meta["pretrain_steps"] == 60


@needs_jpeg
@pytest.mark.slow
def test_finetune_imitates_the_codec_and_tracks_its_rate():
    """Assert fine-tuning raises the proxy's PSNR against JPEG's reconstruction, steers λ_p
    towards the codec's payload rate, records what it imitates, and compare_with_codec reports
    the gap fields."""
    from npp_plugin.training.proxy_stage import compare_with_codec, finetune_to_codec, pretrain_rd

    torch.manual_seed(0)
    codec = get_codec("jpeg")
    p = proxy_codec(arch="bmshj2018_hyperprior", N=16, M=16)
    pretrain_rd(p, _batches(seed=1), steps=30, lmbda=0.01, lr=3e-3)
    hist = finetune_to_codec(p, codec, 34, _batches(seed=2), steps=40, lmbda=0.01, lr=3e-3, workers=1)
    assert sum(h["psnr_vs_codec"] for h in hist[-10:]) > sum(h["psnr_vs_codec"] for h in hist[:10])
    # λ moves in the direction that closes the rate gap
    first = hist[0]
    direction = math.copysign(1, first["bpp_codec_payload"] - first["bpp_proxy"])
    assert direction * (hist[-1]["lmbda"] - first["lmbda"]) > 0
    assert p.meta["codec"] == "jpeg" and p.meta["qp"] == 34 and p.meta["finetune_steps"] == 40
    gap = compare_with_codec({34: p}, codec, [next(_batches(seed=3))], workers=1)
    (row,) = gap["per_qp"]
    assert {"bpp_codec", "bpp_proxy", "psnr_codec", "psnr_proxy", "psnr_proxy_vs_codec", "bits_ratio",
            "payload_bits_ratio", "bpp_codec_overhead"} <= set(row)
    assert 0 < row["bpp_codec_overhead"] < row["bpp_codec"]
    assert gap["bd_rate"] is None  # one QP: no curve


def test_bd_rate_of_the_proxy_curve():
    """Assert the gap is +10 % for a proxy spending 10 % more bits at equal PSNR, and None
    (not NaN) when the curves do not overlap or there are too few QPs."""
    pytest.importorskip("bjontegaard")
    from npp_plugin.training.proxy_stage import _bd_rate

    rows = [{"bpp_codec": r, "psnr_codec": d, "bpp_proxy": 1.1 * r, "psnr_proxy": d}
            for r, d in [(0.2, 27.0), (0.35, 29.0), (0.6, 31.0), (1.0, 33.0), (1.6, 35.0)]]
    assert _bd_rate(rows, "bpp_codec") == pytest.approx(10.0, abs=0.01)
    far = [{**r, "psnr_proxy": r["psnr_proxy"] - 15.0} for r in rows]
    assert _bd_rate(far, "bpp_codec") is None
    assert _bd_rate(rows[:3], "bpp_codec") is None


def test_bd_psnr_of_the_proxy_curve_where_only_rates_overlap():
    """A proxy 10 dB below the codec at every rate: BD-rate undefined (no PSNR overlap),
    BD-PSNR -10 dB; a proxy identical to the codec: 0 dB."""
    pytest.importorskip("bjontegaard")
    from npp_plugin.training.proxy_stage import _bd_psnr, _bd_rate

    rows = [{"bpp_codec": r, "psnr_codec": d, "bpp_proxy": r, "psnr_proxy": d - 10.0}
            for r, d in [(0.2, 29.0), (0.35, 31.0), (0.6, 33.0), (1.0, 35.0), (1.6, 37.0)]]
    assert _bd_rate(rows, "bpp_codec") is None
    assert _bd_psnr(rows, "bpp_codec") == pytest.approx(-10.0, abs=1e-6)
    same = [{**r, "psnr_proxy": r["psnr_codec"]} for r in rows]
    assert _bd_psnr(same, "bpp_codec") == pytest.approx(0.0, abs=1e-9)
