"""The distillation path: teacher shards (npp teacher), the student behind the tuned blur
(NppConfig base_sigma / gain) and its training judged by the real codec (npp distil)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import npp_plugin
from npp_plugin.errors import InvalidArgumentError, NppError
from npp_plugin.preprocessors.filters import gaussian_blur
from npp_plugin.preprocessors.hook import npp_filter
from npp_plugin.preprocessors.model import NppConfig, NppNet
from npp_plugin.training.distil import DistilSettings, run_distil, student_net
from npp_plugin.training.teacher import TeacherSettings, load_shards, plan_crops, run_teacher

KNOTS = ((28 / 51, 0.45), (31 / 51, 0.5), (34 / 51, 0.7), (37 / 51, 0.8), (41 / 51, 0.7))


def test_base_blur_net_starts_as_the_tuned_blur():
    codec = npp_plugin.get_codec("bpg")
    tuned = npp_plugin.get_preprocessor("blur_tuned")
    net = student_net(DistilSettings(widths=(4, 8, 16, 32)), codec).eval()
    x = torch.rand(2, 3, 50, 70)
    for qp in (20, 28, 33, 37, 41, 50):
        with torch.no_grad():
            got = npp_filter(net, x, codec=codec, qp=qp)
        want = tuned(x, codec=codec, qp=qp).clamp(0, 1)
        assert (got - want).abs().max() < 1e-5, qp


def test_gain_scales_the_change_to_the_blur():
    torch.manual_seed(0)
    net = NppNet(NppConfig("t", (4, 8), base_sigma=KNOTS)).eval()
    with torch.no_grad():
        net.out.weight.normal_(0, 0.01)
    x = torch.rand(1, 3, 32, 32) * 0.5 + 0.25
    base = gaussian_blur(x, 0.7)
    with torch.no_grad():
        c1 = net(x, 34 / 51) - base
        net.config = NppConfig("t", (4, 8), base_sigma=KNOTS, gain=3.0)
        c3 = net(x, 34 / 51) - base
    assert c1.abs().max() > 1e-4
    torch.testing.assert_close(c3, 3 * c1, atol=1e-5, rtol=1e-4)


def test_config_round_trip_and_bad_knots():
    cfg = NppConfig("t", (4, 8), base_sigma=KNOTS, gain=2.0)
    back = NppConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg
    # networks without a blur in front store what they always stored
    assert "base_sigma" not in NppConfig("t", (4, 8)).to_dict()
    with pytest.raises(InvalidArgumentError, match="base_sigma"):
        NppConfig("t", (4, 8), base_sigma=((0.5, 5.0),))
    with pytest.raises(InvalidArgumentError, match="gain"):
        NppConfig("t", (4, 8), gain=0)


def test_plan_is_deterministic_and_covers_every_photo_each_round():
    s = TeacherSettings(size=64, scales=(1.0, 0.5), crops_per_photo=3, seed=4)
    sizes = [(200, 100), (64, 64), (40, 300)]  # the last fits at no scale
    plan = plan_crops(sizes, s)
    assert plan == plan_crops(sizes, s)
    assert plan != plan_crops(sizes, TeacherSettings(size=64, scales=(1.0, 0.5), crops_per_photo=3, seed=5))
    assert len(plan) == 6
    for r in range(3):
        assert sorted(c.photo for c in plan[2 * r:2 * r + 2]) == [0, 1]
    for c in plan:
        w, h = sizes[c.photo]
        assert 0 <= c.y <= round(h * c.scale) - 64 and 0 <= c.x <= round(w * c.scale) - 64
        assert c.photo != 1 or c.scale == 1.0  # 64² fits only at full size


@pytest.fixture(scope="module")
def photo_dirs(tmp_path_factory):
    from PIL import Image

    from npp_plugin.datasets import builtin_photos

    photos = builtin_photos()
    if len(photos) < 4:
        pytest.skip("needs four built-in photos (scikit-image, scikit-learn, matplotlib)")
    dirs = []
    for k, part in enumerate((photos[:2], photos[2:4])):
        d = tmp_path_factory.mktemp(f"photos{k}")
        for p in part:
            with Image.open(p) as im:
                im.convert("RGB").resize((96, 80)).save(d / f"{p.stem}.png")
        dirs.append(d)
    return dirs


SMALL = dict(size=64, scales=(1.0,), crops_per_photo=1, shard=2, steps=2, level=1, qps=(34, 37))


@pytest.mark.slow
def test_teacher_shards_hold_what_was_coded_and_never_lose_to_the_blur(photo_dirs, tmp_path):
    s = TeacherSettings(images=str(photo_dirs[0]), **SMALL)
    summary = run_teacher(tmp_path / "t", s, progress=False)
    assert summary["shards"] == summary["of"] == 1 and summary["crops"] == 2
    d = load_shards(tmp_path / "t")
    assert d["x"].dtype == d["y"].dtype == torch.uint8 and d["x"].shape == (2, 3, 64, 64)
    assert 34 <= int(d["qp"][0]) <= 37
    assert bool((d["j"] <= d["j_base"] + 1e-12).all())  # the kept iterate is never worse
    assert bool((d["y"] != d["x"]).any())
    # the stored J is the real codec's on the stored pixels (blur J: the tuned blur coded)
    codec = npp_plugin.get_codec("bpg", level=1)
    qp = int(d["qp"][0])
    rec, bits = codec.roundtrip(d["y"].float() / 255, qp=qp)
    np.testing.assert_allclose(bits.double().numpy() / 64**2, d["bpp"].numpy(), rtol=1e-9)
    # resumable: a second run writes nothing new; without --resume it is refused
    assert run_teacher(tmp_path / "t", s, resume=True, progress=False)["new_shards"] == 0
    with pytest.raises(InvalidArgumentError, match="--resume"):
        run_teacher(tmp_path / "t", s, progress=False)
    with pytest.raises(InvalidArgumentError, match="other settings"):
        run_teacher(tmp_path / "t", TeacherSettings(images=str(photo_dirs[0]), **{**SMALL, "seed": 1}),
                    resume=True, progress=False)


@pytest.mark.slow
def test_distil_trains_judges_by_the_real_codec_and_resumes(photo_dirs, tmp_path):
    for k, d in enumerate(photo_dirs):
        run_teacher(tmp_path / f"t{k}", TeacherSettings(images=str(d), **SMALL), progress=False)
    s = DistilSettings(widths=(4, 8, 16, 32), steps=4, batch=2, crop=32, eval_every=2, gains=(1.0, 2.0))
    first = run_distil(tmp_path / "t0", tmp_path / "t1", tmp_path / "d", s, progress=False, max_steps=2)
    assert first["step"] == 2
    log = [json.loads(line) for line in (tmp_path / "d" / "log.jsonl").read_text().splitlines()]
    assert log[0]["event"] == "start" and log[1]["step"] == 2
    assert set(log[1]["gains"]) == {"1.0", "2.0"} and log[1]["J_blur"] > 0 and log[1]["J_teacher"] > 0
    with pytest.raises(InvalidArgumentError, match="--resume"):
        run_distil(tmp_path / "t0", tmp_path / "t1", tmp_path / "d", s, progress=False)
    done = run_distil(tmp_path / "t0", tmp_path / "t1", tmp_path / "d", s, progress=False, resume=True)
    assert done["step"] == 4
    # the best checkpoint is an NPP weights file the "npp" preprocessor runs, no task needed
    p = npp_plugin.get_preprocessor("npp", weights=str(tmp_path / "d" / "best.npp.pt"))
    meta = p.weights.meta
    assert meta["recipe"]["stage"] == "distil" and meta["metrics"]["dev"]["J"] == done["best"]["J"]
    y = p(torch.rand(1, 3, 40, 40), codec=npp_plugin.get_codec("bpg"), qp=34)
    assert y.shape == (1, 3, 40, 40)
    # on the real codec's J alone (an ensemble's, with its λ table) the run trains and is judged the same way
    sj = DistilSettings(widths=(4, 8, 16, 32), steps=2, batch=2, crop=32, eval_every=2, gains=(1.0,), j_weight=1.0,
                        mse_weight=0.0, j_task="mobilenet_v2+efficientnet_lite0")
    assert run_distil(tmp_path / "t0", tmp_path / "t1", tmp_path / "dj", sj, progress=False)["step"] == 2
    recipe = npp_plugin.get_preprocessor("npp", weights=str(tmp_path / "dj" / "best.npp.pt")).weights.meta["recipe"]
    assert recipe["teacher"] == "none (J alone)" and recipe["j_task"] == "mobilenet_v2+efficientnet_lite0"
    # development photos must not be training photos
    with pytest.raises(InvalidArgumentError, match="share photo groups"):
        run_distil(tmp_path / "t0", tmp_path / "t0", tmp_path / "d2", s, progress=False)


def test_missing_shards_and_cli_errors(tmp_path, capsys):
    from npp_plugin.cli import main

    with pytest.raises(NppError, match="npp teacher --out"):
        load_shards(tmp_path)
    assert main(["distil", "--teacher", str(tmp_path), "--dev", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no teacher shards" in capsys.readouterr().err
    assert main(["distil", "--teacher", str(tmp_path), "--dev", str(tmp_path), "--out", str(tmp_path / "o"),
                 "--mse-weight", "0"]) == 2
    assert "mse_weight and j_weight are both 0" in capsys.readouterr().err
    assert main(["teacher", "--out", str(tmp_path / "t"), "--size", "50"]) == 2
    assert "size must be a multiple of 16" in capsys.readouterr().err


def test_classifier_ensemble_loss_is_the_mean():
    from npp_plugin.tasks.classification import ClassifierEnsemble

    a, b = npp_plugin.get_task("mobilenet_v2"), npp_plugin.get_task("efficientnet_lite0")
    ens = ClassifierEnsemble([a, b])
    assert ens.name == "mobilenet_v2+efficientnet_lite0" and ens.kind == "classification"
    x = torch.rand(2, 3, 64, 64)
    y = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    ref = ens.reference(x)
    want = (a.loss(y, a.reference(x), reduction="none") + b.loss(y, b.reference(x), reduction="none")) / 2
    torch.testing.assert_close(ens.loss(y, ref, reduction="none"), want)
    with pytest.raises(InvalidArgumentError):
        ClassifierEnsemble([a])


@pytest.mark.slow
def test_teachers_compared_on_the_same_crops_by_unseen_classifiers(photo_dirs, tmp_path):
    from npp_plugin.training.teacher import compare_teachers

    run_teacher(tmp_path / "a", TeacherSettings(images=str(photo_dirs[0]), **SMALL), progress=False)
    run_teacher(tmp_path / "b", TeacherSettings(images=str(photo_dirs[0]), task="mobilenet_v2+efficientnet_lite0",
                                                **SMALL), progress=False)
    res = compare_teachers([tmp_path / "a", tmp_path / "b"], ["efficientnet_lite0"], n_boot=50)
    a, b = res["teachers"][str(tmp_path / "a")], res["teachers"][str(tmp_path / "b")]
    assert res["crops"] == 2 and a["task"] == "mobilenet_v2"
    assert a["unseen_efficientnet_lite0"] and not b["unseen_efficientnet_lite0"]
    # the blur row is the teachers' start coded again: the bits the shards recorded
    shard = load_shards(tmp_path / "a")
    assert res["blur"]["bpp"] == pytest.approx(float(shard["bpp_base"].mean()), rel=1e-9)
    lo, mid, hi = a["kl_change_efficientnet_lite0"][1], a["kl_change_efficientnet_lite0"][0], a["kl_change_efficientnet_lite0"][2]
    assert lo <= mid <= hi
    run_teacher(tmp_path / "c", TeacherSettings(images=str(photo_dirs[1]), **SMALL), progress=False)
    with pytest.raises(InvalidArgumentError, match="same crops"):
        compare_teachers([tmp_path / "a", tmp_path / "c"], ["efficientnet_lite0"])


def test_the_student_exports_to_onnx_with_its_blur(tmp_path):
    pytest.importorskip("onnxruntime")
    from npp_plugin.cli import main
    from npp_plugin.preprocessors.weights import save_weights

    net = student_net(DistilSettings(widths=(4, 8, 16, 32)), npp_plugin.get_codec("bpg")).eval()
    with torch.no_grad():
        net.out.weight.normal_(0, 0.01)
    save_weights(tmp_path / "s.npp.pt", net, meta={"codec": {}, "recipe": {}, "fidelity": {}})
    # export-onnx checks onnxruntime against torch and fails on a mismatch
    assert main(["export-onnx", str(tmp_path / "s.npp.pt"), str(tmp_path / "s.onnx")]) == 0
