"""The "npp_refine" preprocessor: encode-time refinement on the real codec's J."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import npp_plugin
from npp_plugin.errors import InvalidArgumentError
from npp_plugin.preprocessors.filters import TunedBlur
from npp_plugin.preprocessors.refine import TaskRefine
from npp_plugin.training.data import BuiltinPhotos
from npp_plugin.training.search import Crops

from .conftest import CODECS, require_codec


@pytest.fixture(scope="module")
def task():
    return npp_plugin.get_task("mobilenet_v2")


@pytest.fixture(scope="module")
def crops(task):
    """Two 224² crops of two held-out photos (the classifier's native size)."""
    return Crops.grid(BuiltinPhotos("val").files[:2], n=2, size=224, task=task)


def _real_j(codec, task, x, ref, qp, lam):
    rec, bits = codec.roundtrip(x, qp=qp)
    return (bits.double() / x[0, 0].numel() + lam * task.loss(rec, ref, reduction="none").double()).numpy()


def test_refinement_never_worse_than_its_base_and_much_better_on_average(task, crops):
    """Per image, the output's real J is at most the base's (the best iterate is kept, the
    base included, and the codec is deterministic); on average it is clearly lower (held-out
    crops: about half, measured; asserted: at least 10 %)."""
    codec = npp_plugin.get_codec("bpg", fast=True)
    p = TaskRefine(base="blur_tuned", task=task, steps=4)
    lam = p.lam(codec, 34)
    start = p.base(crops.x, codec=codec, qp=34)
    out = p(crops.x, codec=codec, qp=34)
    assert out.shape == crops.x.shape and out.dtype == crops.x.dtype
    assert 0 <= float(out.min()) and float(out.max()) <= 1
    j0 = _real_j(codec, task, start, crops.ref, 34, lam)
    j1 = _real_j(codec, task, out, crops.ref, 34, lam)
    assert np.all(j1 <= j0 * (1 + 1e-4)), (j0, j1)  # slack: the loop's J is the straight-through sum
    assert j1.mean() < 0.9 * j0.mean(), (j0, j1)


def test_images_are_refined_independently_of_their_batch(task, crops):
    codec = npp_plugin.get_codec("bpg", fast=True)
    p = TaskRefine(base="blur_tuned", task=task, steps=2)
    both = p(crops.x, codec=codec, qp=37)
    alone = p(crops.x[1:], codec=codec, qp=37)
    # The same up to floating-point differences of batched convolutions. Those can flip a
    # pixel's rounding or the sign of a tiny gradient (Adam's first step is ±step size), so
    # a few pixels may differ by a step; the image as a whole and its real J may not.
    d = (both[1:] - alone).abs()
    assert float((d > 1e-3).float().mean()) < 0.01 and float(d.median()) < 1e-4
    lam = p.lam(codec, 37)
    j_both = _real_j(codec, task, both[1:], crops.ref[1:], 37, lam)
    j_alone = _real_j(codec, task, alone, crops.ref[1:], 37, lam)
    assert j_alone == pytest.approx(j_both, rel=0.02)


def test_input_is_left_untouched_and_works_under_inference_mode(task, crops):
    codec = npp_plugin.get_codec("bpg", fast=True)
    x = crops.x[:1].clone()
    with torch.inference_mode():
        out = TaskRefine(base=None, task=task, steps=1)(x, codec=codec, qp=41)
    assert torch.equal(x, crops.x[:1])
    assert out.shape == x.shape and not out.requires_grad


@pytest.mark.parametrize("name", CODECS)
def test_encode_with_npp_refine_decodes_for_every_codec(name, photo):
    codec = require_codec(name)
    img = photo[:64, :64]
    data = codec.encode(img, qp=37, preprocess=npp_plugin.get_preprocessor("npp_refine", base="blur_tuned", steps=1))
    rgb = codec.decode(data)
    assert rgb.shape == img.shape and rgb.dtype == np.uint8


def test_lambda_follows_the_shipped_table_by_normalised_qp():
    codec = npp_plugin.get_codec("bpg")
    p = TaskRefine(base=None, steps=1)
    table = TunedBlur()
    assert p.lambdas == table.lambdas and set(table.lambdas) == {28, 31, 34, 37, 41}
    for qp, lam in table.lambdas.items():
        assert p.lam(codec, qp) == pytest.approx(lam)
    assert table.lambdas[31] < p.lam(codec, 30) < table.lambdas[28]  # λ falls as QP rises
    assert p.lam(codec, 51) == pytest.approx(table.lambdas[41])  # held at the ends
    assert TaskRefine(base=None, steps=1, lambdas=0.5).lam(codec, 20) == 0.5


@pytest.mark.parametrize(("kw", "argument"), [
    ({"steps": 0}, "steps"), ({"steps": 101}, "steps"), ({"steps": 2.5}, "steps"), ({"steps": True}, "steps"),
    ({"lr": 0.5}, "lr"), ({"lr": float("nan")}, "lr"), ({"rate": "bits"}, "rate"), ({"jacobian": "exact"}, "jacobian"),
    ({"max_pixels": 0}, "max_pixels"), ({"lambdas": {34: -1.0}}, "lambdas"), ({"lambdas": {"x": 1}}, "lambdas"), ({"lambdas": {}}, "lambdas"),
    ({"lambdas": "/nonexistent/lambdas.json"}, "lambdas"), ({"inner": "slow"}, "inner"), ({"inner": "level="}, "inner"), ({"inner": 3}, "inner"), ({"select": "yes"}, "select"),
    ({"task_pixels": 10}, "task_pixels"),
])
def test_bad_options_are_refused_with_the_argument_named(kw, argument):
    with pytest.raises(InvalidArgumentError) as e:
        TaskRefine(base=None, **kw)
    assert e.value.argument == argument and "npp_refine" in str(e.value)


def test_a_task_without_a_lambda_table_is_refused_with_the_command_that_makes_one(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # no user table
    monkeypatch.delenv("NPP_LAMBDAS", raising=False)
    with pytest.raises(InvalidArgumentError, match="`npp search lambda --task efficientnet_lite2`") as e:
        TaskRefine(base=None, task="efficientnet_lite2")
    assert e.value.argument == "lambdas"
    assert TaskRefine(base=None, task="efficientnet_lite2", lambdas={34: 1.0}).task.name == "efficientnet_lite2"


def test_registered_and_described():
    p = npp_plugin.get_preprocessor("npp_refine", base="blur_tuned")
    cfg = p.get_config()
    assert cfg["preprocessor"] == "npp_refine" and cfg["base"]["preprocessor"] == "blur_tuned"
    assert npp_plugin.get_preprocessor("npp_refine", base="npp").base.name == "npp"
    assert cfg["task"] == "mobilenet_v2" and cfg["steps"] == 4
    assert not p.codec_independent


def test_weights_option_builds_the_npp_base_and_only_that(tmp_path):
    from npp_plugin.preprocessors.weights import read_weights

    p = TaskRefine(weights=str(read_weights().path), steps=1)
    assert p.base.name == "npp" and p.base.get_config()["sha256"] == read_weights().sha256
    with pytest.raises(InvalidArgumentError) as e:
        TaskRefine(base="blur05", weights=str(read_weights().path))
    assert e.value.argument == "weights"


def test_step_size_follows_the_quantiser_step():
    codec = npp_plugin.get_codec("bpg")
    p = TaskRefine(base=None, steps=1, lr=0.004)
    assert p.step_size(codec, 34) == pytest.approx(0.004)
    assert p.step_size(codec, 28) == pytest.approx(0.002)
    assert p.step_size(codec, 40) == pytest.approx(0.008)


def test_demo_adds_the_refined_variant_when_the_task_has_a_lambda_table(capsys, tmp_path, monkeypatch):
    from npp_plugin.demo import _refine_variant

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # no user table
    monkeypatch.delenv("NPP_LAMBDAS", raising=False)
    assert _refine_variant("mobilenet_v2") == "npp_refine"
    assert _refine_variant("efficientnet_lite0") == "npp_refine:task=efficientnet_lite0"
    assert _refine_variant("efficientnet_lite2") is None
    assert "`npp search lambda --task efficientnet_lite2` makes one" in capsys.readouterr().err


def test_too_large_images_are_refused_before_any_work():
    codec = npp_plugin.get_codec("bpg", fast=True)
    p = TaskRefine(base=None, steps=1, max_pixels=64 * 64)
    with pytest.raises(InvalidArgumentError, match="more than max_pixels=4096") as e:
        p(torch.zeros(1, 3, 65, 64), codec=codec, qp=34)
    assert e.value.argument == "max_pixels"
    assert p(torch.zeros(1, 3, 64, 64), codec=codec, qp=34).shape == (1, 3, 64, 64)


def test_shipped_recipe_matches_the_defaults_and_was_tuned_without_the_held_out_photos():
    import json
    from pathlib import Path

    doc = json.loads((Path(npp_plugin.__file__).parent / "weights" / "npp-refine.json").read_text())
    assert doc["format"] == "npp_plugin.npp-refine/1"
    cfg = TaskRefine().get_config()
    assert doc["defaults"] == {k: cfg[k] for k in ("task", "steps", "lr", "rate", "jacobian")} | {"base": "blur_tuned"}
    assert cfg["base"]["preprocessor"] == "blur_tuned"
    val = {p.name for p in BuiltinPhotos("val").files}
    assert doc["tuning"]["photos"] and not set(doc["tuning"]["photos"]) & val
    best = {}
    for r in doc["tuning"]["rows"]:  # the default step size law picks each QP's best of the three sizes
        if r["steps"] == 4 and r["base"] == "blur_tuned":
            best.setdefault(r["qp"], []).append((r["J"], r["step_size"]))
    codec = npp_plugin.get_codec("bpg")
    for qp, rows in best.items():
        assert min(rows)[1] == pytest.approx(TaskRefine(base=None).step_size(codec, qp), rel=0.15), qp
    measured = {(r["task"], r["anchor"]) for r in doc["held_out"]["bd_rates"] if r["metric"] == "kl"}
    assert {("mobilenet_v2", "bpg/blur_tuned"), ("efficientnet_lite0", "bpg/plain")} <= measured


def test_fast_inner_codec_and_no_selection(task, crops):
    """inner="fast" runs the loop's round trips at BPG's fast setting (JPEG has none); with
    select=False the last iterate is returned unscored, one step from the base."""
    bpg, jpeg = npp_plugin.get_codec("bpg"), npp_plugin.get_codec("jpeg")
    p = TaskRefine(base="blur_tuned", task=task, steps=1, inner="fast", select=False)
    assert p.inner_options(bpg) == {"fast": True} and p.inner_options(jpeg) == {}
    assert TaskRefine(base=None, inner="level=1").inner_options(bpg) == {"level": 1}
    assert TaskRefine(base=None, inner="level=1").inner_options(jpeg) == {}  # no such option: as given
    with pytest.raises(InvalidArgumentError, match="level"):  # the codec checks the value
        TaskRefine(base=None, steps=1, inner="level=12")(torch.rand(1, 3, 32, 32), codec=bpg, qp=34)
    r = p.refine(crops.x, codec=bpg, qp=34)
    start = p.base(crops.x, codec=bpg, qp=34)
    assert torch.isnan(r.j).all() and torch.isfinite(r.j_base).all()
    # j_base is the fast codec's J of the base's output, as the loop saw it
    fast = npp_plugin.get_codec("bpg", fast=True)
    np.testing.assert_allclose(r.j_base.numpy(), _real_j(fast, task, start, crops.ref, 34, r.lam), rtol=1e-5)
    # one Adam step from the base: every pixel moves by at most the step size (or to a bound)
    step = p.step_size(bpg, 34)
    d = (r.images - start).abs()
    assert 0 < float(d.mean()) and float(d.max()) <= step * (1 + 1e-4)
    selected = TaskRefine(base="blur_tuned", task=task, steps=2, inner="fast").refine(crops.x, codec=bpg, qp=34)
    assert torch.all(selected.j <= selected.j_base)


def test_large_images_are_shown_to_the_task_at_its_input_size(task):
    """A photo larger than the task's input is seen as k×k block means (k = 3 here): J uses
    that view, the output keeps the photo's size, and the task's gradient reaches every
    block it saw."""
    assert task.input_pixels == 224 * 224
    from npp_plugin.tasks.centernet import CenterNet

    assert CenterNet.input_pixels == 512 * 512
    rng = np.random.default_rng(0)
    img = np.kron(rng.random((3, 30, 40)), np.ones((1, 23, 23)))  # blocks of 23 px, 690 × 920
    x = torch.from_numpy(img).float()[None]
    p = TaskRefine(base=None, task=task, steps=1, select=False, task_pixels=200 * 200)
    assert p._task_view(x).shape[-2:] == (230, 306)  # k = 3
    codec = npp_plugin.get_codec("bpg", fast=True)
    r = p.refine(x, codec=codec, qp=37)
    assert r.images.shape == x.shape
    rec, bits = codec.roundtrip(x, qp=37)
    view = torch.nn.functional.avg_pool2d
    want = bits.double() / (690 * 920) + r.lam * task.loss(view(rec, 3), task.reference(view(x, 3)), reduction="none").double()
    np.testing.assert_allclose(r.j_base.numpy(), want.numpy(), rtol=1e-5)


def test_8_bit_input_refines_as_its_float_copy(task, crops):
    """``encode`` hands an 8-bit image to the refinement as uint8 (so it can drop the float
    copy after the base's pass): the same pixels, the same J, the same file."""
    codec = npp_plugin.get_codec("bpg", fast=True)
    p = TaskRefine(base="blur_tuned", task=task, steps=2)
    u8 = crops.x[:1].mul(255).round().to(torch.uint8)
    a = p.refine(u8, codec=codec, qp=34)
    b = p.refine(u8.float() / 255, codec=codec, qp=34)
    assert a.images.dtype == torch.float32 and torch.equal(a.images, b.images)
    assert torch.equal(a.j, b.j) and torch.equal(a.j_base, b.j_base)
    rgb = u8[0].permute(1, 2, 0).numpy()
    assert codec.encode(rgb, qp=34, preprocess=p) == codec.encode(u8[0].float() / 255, qp=34, preprocess=p)
