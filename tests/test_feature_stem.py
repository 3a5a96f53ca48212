"""The reader-agnostic task ``mobilenet_v2_stem``: MobileNetV2's first blocks, relative feature
error; ``npp_refine`` runs it with its shipped λ table."""

from __future__ import annotations

import pytest
import torch

import npp_plugin
from npp_plugin.errors import InvalidArgumentError
from npp_plugin.preprocessors.lambdas import find_table, shipped_dir


@pytest.fixture(scope="module")
def stem():
    return npp_plugin.get_task("mobilenet_v2_stem")


@pytest.fixture(scope="module")
def crops():
    g = torch.Generator().manual_seed(0)
    # smooth random images: something a network's early layers respond to
    return torch.nn.functional.avg_pool2d(torch.rand(2, 3, 72, 72, generator=g), 9, 1)


def test_it_is_the_classifiers_first_blocks(stem, crops):
    clf = npp_plugin.get_task("mobilenet_v2")
    assert stem.kind == "features" and stem.trainable and stem.input_pixels == 224 * 224
    assert stem.get_config()["depth"] == 7 and sum(p.numel() for p in stem.net.parameters()) == 55488
    with torch.no_grad():
        want = clf.net.features[:7](clf.normalize(crops))
    torch.testing.assert_close(stem.features(crops), want)


def test_loss_is_zero_on_the_image_and_grows_with_the_change(stem, crops):
    ref = stem.reference(crops)
    assert stem.loss(crops, ref, reduction="none").abs().max() == 0
    noise = torch.randn(crops.shape, generator=torch.Generator().manual_seed(1))
    small, large = ((crops + a * noise).clamp(0, 1) for a in (0.01, 0.05))
    ls, ll = stem.loss(small, ref, reduction="none"), stem.loss(large, ref, reduction="none")
    assert ls.shape == (2,) and bool((ls > 0).all()) and bool((ll > 4 * ls).all())
    torch.testing.assert_close(stem.score(small, ref), 1 - ls)
    # differentiable in the decoded image, as npp_refine needs
    y = large.clone().requires_grad_(True)
    stem.loss(y, ref).backward()
    assert y.grad is not None and y.grad.abs().sum() > 0


def test_fused_copy_gives_the_same_loss(stem, crops):
    y = (crops + 0.03).clamp(0, 1)
    fused = stem.fused()
    assert fused is not stem
    torch.testing.assert_close(fused.loss(y, fused.reference(crops), reduction="none"),
                               stem.loss(y, stem.reference(crops), reduction="none"), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("depth", [0, 20, 2.5, True])
def test_depth_out_of_range_is_refused_by_name(depth):
    with pytest.raises(InvalidArgumentError, match=r"depth must be an integer in \[1, 19\]"):
        npp_plugin.get_task("mobilenet_v2_stem", depth=depth)


def test_refine_finds_the_shipped_table_and_never_loses_to_the_blur(crops, monkeypatch, tmp_path):
    monkeypatch.setenv("NPP_LAMBDAS", str(tmp_path))  # nothing there: the package's table is used
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    table = find_table("mobilenet_v2_stem")
    assert table is not None and table.task == "mobilenet_v2_stem" and str(shipped_dir()) in str(table.path)
    assert table.lambdas[28] > table.lambdas[34] > table.lambdas[41] > 0
    p = npp_plugin.get_preprocessor("npp_refine", task="mobilenet_v2_stem", steps=2)
    r = p.refine(crops[:, :, :64, :64], codec=npp_plugin.get_codec("bpg", fast=True), qp=34)
    assert bool((r.j <= r.j_base).all()) and float(r.lam) == pytest.approx(table.lambdas[34])
    # the kept iterate comes back as the 8-bit pixels the codec codes
    torch.testing.assert_close(r.images.mul(255).round().div(255), r.images, rtol=0, atol=0)
