"""The derivative-free track on the real codec: the tuned blur and the CMA-ES search."""

from __future__ import annotations

import pytest
import torch

from npp_plugin.preprocessors.filters import gaussian_blur
from npp_plugin.preprocessors.saliency import SaliencyBlurConfig, SaliencyBlurNet
from npp_plugin.registry import get_task
from npp_plugin.training.data import BuiltinPhotos
from npp_plugin.training.search import (
    Crops,
    RealObjective,
    builtin_dev_split,
    search_saliency_blur,
    tune_blur,
)

from .conftest import require_codec

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup():
    codec = require_codec("jpeg")
    task = get_task("mobilenet_v2")
    fit, dev = builtin_dev_split()
    fit_c = Crops.random(fit, n=6, size=96, seed=2, task=task)
    dev_c = Crops.grid(dev, n=4, size=96, task=task)
    return codec, task, fit_c, dev_c


def test_dev_split_holds_out_the_validation_photos():
    fit, dev = builtin_dev_split()
    val = set(BuiltinPhotos("val").files)
    assert fit and dev and not set(fit) & set(dev) and not (set(fit) | set(dev)) & val


def test_objective_of_the_plain_codec_is_bits_plus_lambda_kl(setup):
    codec, task, fit_c, _ = setup
    obj = RealObjective(codec, task, fit_c, {34: 2.0}, workers=1)
    v = obj.per_image(34)
    recon, bits = codec.roundtrip(fit_c.x, qp=34, workers=1)
    kl = task.loss(recon, fit_c.ref, reduction="none").double().numpy()
    assert v["bpp"] == pytest.approx(bits.numpy() / 96**2)
    assert v["J"] == pytest.approx(v["bpp"] + 2.0 * kl, rel=1e-5)


def test_tuned_blur_is_the_best_of_its_grid(setup):
    codec, task, fit_c, dev_c = setup
    fit = RealObjective(codec, task, fit_c, {34: 2.0}, workers=1)
    seen = []
    rows = tune_blur(fit, None, [34], grid=(0.0, 0.5, 1.0, 2.0), log=seen.append)
    best = min(seen, key=lambda r: r["J"])
    assert rows[34]["sigma"] == best["sigma"] and rows[34]["J_fit"] == best["J"]
    assert rows[34]["J_fit"] <= rows[34]["J_fit_plain"]
    assert len(seen) == 5  # the grid, then one refinement between the best and a neighbour


@pytest.mark.slow
def test_search_keeps_the_best_development_j_and_resumes_exactly(setup):
    """Assert CMA-ES never returns parameters worse on the development crops than where it
    started (the tuned blur), and that stopping after one generation and resuming gives the
    same parameters as an uninterrupted search."""
    codec, task, fit_c, dev_c = setup

    def make():
        net = SaliencyBlurNet(SaliencyBlurConfig(anchors=(codec.normalized_qp(34),)))
        net.set_anchor(0, sigma_bg=0.5, sigma_fg=0.5)
        fit_c.with_saliency(net)
        dev_c.with_saliency(net)
        lam = {34: 2.0}
        return net, RealObjective(codec, task, fit_c, lam, workers=1), RealObjective(codec, task, dev_c, lam, workers=1)

    net, fit, dev = make()
    full = search_saliency_blur(net, codec, fit, dev, [34], generations=2, popsize=4)
    row = full["done"]["34"]
    start_dev = dev(34, lambda x, extra: gaussian_blur(x, 0.5))["J"]
    assert row["J_dev"] <= start_dev + 1e-9
    assert torch.allclose(net.theta[0].double(), torch.tensor(row["theta"], dtype=torch.float64))

    net2, fit2, dev2 = make()
    saved = []
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] == 2  # after the first generation

    part = search_saliency_blur(net2, codec, fit2, dev2, [34], generations=2, popsize=4,
                                save=lambda s: saved.append(s), stop=stop)
    assert part["current"] is not None and "34" not in part["done"]
    resumed = search_saliency_blur(net2, codec, fit2, dev2, [34], generations=2, popsize=4, state=part)
    assert resumed["done"]["34"]["theta"] == row["theta"]


def _photo_folder(tmp_path, names):
    import shutil

    by_name = {p.name: p for p in BuiltinPhotos("train").files}
    for n in names:
        shutil.copy(by_name[n], tmp_path / n)
    return tmp_path


def test_search_blur_reads_a_folder_of_photos_and_records_it(tmp_path):
    import json

    from npp_plugin.training.search import main

    require_codec("jpeg")
    folder = tmp_path / "photos"
    folder.mkdir()
    names = sorted(p.name for p in BuiltinPhotos("train").files)[:8]
    _photo_folder(folder, names)
    fit, dev = builtin_dev_split(files=sorted(folder.iterdir()))
    assert fit and dev and {p.name for p in fit + dev} == set(names)
    rc = main(["blur", "--out", str(tmp_path / "out"), "--codec", "jpeg", "--images", str(folder), "--qps", "34", "37",
               "--size", "64", "--fit-crops", "4", "--dev-crops", "2", "--threads", "1", "--workers", "1"])
    assert rc == 0
    doc = json.loads((tmp_path / "out" / "blur-tuned.json").read_text())
    assert doc["provenance"]["images"] == str(folder)
    assert set(doc["provenance"]["fit_photos"]) | set(doc["provenance"]["dev_photos"]) <= set(names)
    assert set(doc["sigma"]) == {"34", "37"}


def test_search_refuses_a_folder_without_development_photos(tmp_path, capsys):
    from npp_plugin.training.search import main

    require_codec("jpeg")
    (tmp_path / "one").mkdir()
    _photo_folder(tmp_path / "one", ["aloeL.jpg", "aloeR.jpg"])  # one scene: nothing left to develop on
    rc = main(["blur", "--out", str(tmp_path / "out"), "--codec", "jpeg", "--images", str(tmp_path / "one"), "--qps", "34"])
    err = capsys.readouterr().err
    assert rc == 2 and "--fit-on all" in err and "development photos" in err
    assert not (tmp_path / "out" / "blur-tuned.json").exists()
    rc = main(["blur", "--out", str(tmp_path / "out"), "--codec", "jpeg", "--images", str(tmp_path / "missing")])
    assert rc == 2 and "does not exist" in capsys.readouterr().err
