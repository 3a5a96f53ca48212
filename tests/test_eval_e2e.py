"""End to end with the real codecs and the real MobileNetV2: 2 images, 2 QPs, 2 codecs."""

from __future__ import annotations

import json

import pytest

from npp_plugin import available_codecs, get_codec
from npp_plugin.errors import NppError
from npp_plugin.evaluation.__main__ import main


def _usable(name):
    if name not in available_codecs():
        return False
    try:
        get_codec(name).require_available()
    except NppError:
        return False
    return True


@pytest.fixture(scope="module")
def codecs():
    second = next((c for c in ("heif", "bpg") if _usable(c)), None)
    if not _usable("jpeg") or second is None:
        pytest.skip(f"needs 'jpeg' and 'heif' or 'bpg' installed; registered: {available_codecs()}")
    return ["jpeg", second]


@pytest.fixture(scope="module")
def mobilenet():
    from npp_plugin import get_task

    try:
        return get_task("mobilenet_v2")
    except NppError as exc:
        pytest.skip(f"mobilenet_v2 unavailable: {exc}")


@pytest.mark.slow
def test_real_codecs_and_mobilenet(codecs, mobilenet, tmp_path, capsys):
    """Assert `npp eval` on 2 built-in crops × 2 QPs × 2 real codecs × {plain, blur10} with
    MobileNetV2 writes results.json, the table and the plots, with sane values."""
    out = tmp_path / "e2e"
    argv = ["--codecs", ",".join(codecs), "--qps", "28,40", "--variants", "plain,blur10", "--tasks", "mobilenet_v2",
            "--images", "builtin", "--max-images", "2", "--out", str(out), "--bootstrap", "50", "--no-progress"]
    assert main(argv) == 0
    table = capsys.readouterr().out
    data = json.loads((out / "results.json").read_text())
    assert set(data["codecs"]) == set(codecs)
    assert data["codecs"]["jpeg"] == get_codec("jpeg").get_config()
    assert data["tasks"]["mobilenet_v2"]["task"] == "mobilenet_v2"
    coded = [r for r in data["rows"] if r["kind"] == "coded"]
    assert len(coded) == 2 * 2 * 2 * 2
    for c in codecs:
        bpp = {qp: sum(r["bpp"] for r in coded if r["codec"] == c and r["qp"] == qp and r["variant"] == "plain") for qp in (28, 40)}
        assert bpp[28] > bpp[40] > 0
    assert all(r["kl"] >= 0 and 20 < r["psnr"] < 60 and 0 < r["ms_ssim"] <= 1 for r in coded)
    assert (out / "rate_score_mobilenet_v2.png").exists() and (out / "rate_ms_ssim.png").exists()
    assert (out / "table.md").read_text() in table
    from npp_plugin.evaluation import builtin_images, select_evenly
    from npp_plugin.evaluation.sweep import _task_scores
    from npp_plugin.images import uint8_to_tensor_batch

    x = uint8_to_tensor_batch(__import__("numpy").stack([i.load() for i in select_evenly(builtin_images(), 4)]))
    y = x.flip(-1)
    ref = mobilenet.reference(x)
    assert _task_scores(mobilenet, y, ref, ref)[0] == mobilenet.score(y, ref).tolist()
    assert f"| mobilenet_v2 | {codecs[0]} | blur10 | {codecs[0]}/plain | kl |" in table


@pytest.mark.slow
def test_gradcam_cli_with_mobilenet(codecs, mobilenet, tmp_path, capsys):
    """Assert `npp eval gradcam` writes the original-vs-filtered GradCAM figure."""
    path = tmp_path / "cam.png"
    assert main(["gradcam", "--task", "mobilenet_v2", "--variant", "blur15", "--codec", "jpeg", "--qp", "34",
                 "--index", "3", "--out", str(path)]) == 0
    assert path.read_bytes()[:4] == b"\x89PNG"
