"""Evaluation-only tasks on MediaPipe: person segmentation (mask IoU) and BlazePose (OKS, PCK).

Real photos with people from the built-in set (astronaut.png, grace_hopper.jpg, messi5.jpg,
person.jpg), whole. Values measured on the development machine (JPEG through Pillow):

=================  =========  ==========  =========================
photo              IoU QP 51  OKS QP 51   at QP 37: IoU / OKS
=================  =========  ==========  =========================
astronaut.png      0.98       0.85        0.995 / 0.98
grace_hopper.jpg   0.98       0 (missed)  0.994 / 0.95
messi5.jpg         0.46       0.72        0.96 / 0.99
person.jpg         0.34       0.88        0.97 / 0.98
=================  =========  ==========  =========================

The asserted bounds leave wide margins around those values.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from npp_plugin.datasets import builtin_photos, load_rgb
from npp_plugin.errors import InvalidArgumentError, TaskUnavailableError
from npp_plugin.images import uint8_to_tensor_batch
from npp_plugin.registry import available_tasks, get_task
from npp_plugin.tasks import EvaluationTask, require_trainable
from npp_plugin.tasks.mediapipe_runtime import ENV_VAR, mediapipe_unavailable_reason
from npp_plugin.tasks.pose import COCO_SIGMAS, oks, pck

PEOPLE = ("astronaut.png", "grace_hopper.jpg", "messi5.jpg", "person.jpg")
needs_mediapipe = pytest.mark.skipif(
    mediapipe_unavailable_reason() is not None,
    reason=f"MediaPipe's environment is missing: {mediapipe_unavailable_reason()}")


def _photos(names):
    paths = {p.name: p for p in builtin_photos()}
    missing = [n for n in names if n not in paths]
    if missing:
        pytest.skip(f"built-in photos {missing} not installed")
    return {n: load_rgb(paths[n]) for n in names}


def _jpeg(rgb: np.ndarray, qp: int) -> torch.Tensor:
    from npp_plugin.registry import get_codec

    codec = get_codec("jpeg")
    return uint8_to_tensor_batch(codec.decode(codec.encode(rgb, qp=qp))[None])


@pytest.fixture(scope="module")
def people():
    return _photos(PEOPLE)


@pytest.fixture(scope="module")
def segmenter():
    return get_task("selfie_segmentation")


@pytest.fixture(scope="module")
def blazepose():
    return get_task("blazepose")


# -- without MediaPipe ------------------------------------------------------------------------


def test_registered_and_listed_by_npp_plugins(capsys):
    """Assert both tasks are registered through the built-in tasks plugin and `npp plugins` lists them."""
    from npp_plugin.cli import main

    assert {"selfie_segmentation", "blazepose"} <= set(available_tasks())
    assert main(["plugins"]) == 0
    rows = {r["plugin"]: r for r in json.loads(capsys.readouterr().out)}
    assert {"selfie_segmentation", "blazepose"} <= set(rows["tasks"]["tasks"])


def test_missing_runtime_is_a_clear_error(monkeypatch, tmp_path):
    """Assert a missing MediaPipe interpreter fails at construction, naming the path and set-up."""
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "no-python"))
    for name in ("selfie_segmentation", "blazepose"):
        with pytest.raises(TaskUnavailableError, match=r"no-python.*scripts/setup\.sh"):
            get_task(name)


def test_evaluation_tasks_have_no_loss_and_are_refused_for_training():
    """Assert the contract: EvaluationTask.loss raises and require_trainable names the caller."""
    class Scorer(EvaluationTask):
        name, kind = "scorer", "segmentation"

        def reference(self, batch):
            return batch

        def score(self, batch, target):
            return torch.ones(batch.shape[0])

    task = Scorer()
    assert task.trainable is False and task.measure(torch.zeros(2, 3, 8, 8), None)["score"].tolist() == [1.0, 1.0]
    with pytest.raises(InvalidArgumentError, match="evaluation-only"):
        task.loss(torch.zeros(1, 3, 8, 8), None)
    with pytest.raises(InvalidArgumentError, match=r"^npp train: task 'scorer' \(segmentation\) is evaluation-only"):
        require_trainable(task, who="npp train")


def test_oks_and_pck_values():
    """Assert OKS/PCK on hand-made keypoints: 1 when exact, COCO's formula for a known offset."""
    target = np.stack([np.arange(17) * 10.0, np.full(17, 50.0)], axis=1)
    visible = np.ones(17, bool)
    assert oks(target, target, visible, 100.0 * 100.0) == 1.0
    assert pck(target, target, visible, 100.0) == 1.0
    moved = target + [3.0, 4.0]  # 5 px off everywhere
    expected = np.exp(-25.0 / (2 * 1e4 * (2 * COCO_SIGMAS) ** 2)).mean()
    assert oks(moved, target, visible, 1e4) == pytest.approx(expected, rel=1e-12)
    assert pck(moved, target, visible, 100.0) == 1.0  # 5 <= 0.05 * 100
    assert pck(moved, target, visible, 99.0) == 0.0
    visible[1:] = False  # only the nose counts
    assert oks(moved, target, visible, 1e4) == pytest.approx(np.exp(-25.0 / (2 * 1e4 * (2 * 0.026) ** 2)))
    with pytest.raises(InvalidArgumentError, match="no visible"):
        oks(moved, target, np.zeros(17, bool), 1e4)


# -- with MediaPipe ---------------------------------------------------------------------------


@needs_mediapipe
def test_segmentation_iou_one_uncompressed_and_falls_at_jpeg_51(people, segmenter):
    """Assert mask IoU is exactly 1 on each uncompressed photo, stays high at JPEG QP 37 and
    falls clearly at QP 51 on messi5 and person (measured 0.46 and 0.34)."""
    iou = {}
    for name, rgb in people.items():
        x = uint8_to_tensor_batch(rgb[None])
        ref = segmenter.reference(x)
        assert ref[0]["person"] and ref[0]["mask"].shape == rgb.shape[:2] and ref[0]["mask"].mean() > 0.04
        assert segmenter.score(x, ref).tolist() == [1.0]
        iou[name] = {qp: float(segmenter.score(_jpeg(rgb, qp), ref)[0]) for qp in (37, 51)}
    assert np.mean([v[37] for v in iou.values()]) > 0.9
    assert iou["messi5.jpg"][51] < 0.75 and iou["person.jpg"][51] < 0.75
    assert np.mean([v[51] for v in iou.values()]) < 0.9


@needs_mediapipe
def test_blazepose_oks_one_uncompressed_and_falls_at_jpeg_51(people, blazepose):
    """Assert OKS and PCK are exactly 1 on each uncompressed photo, OKS stays high at JPEG QP 37
    and falls at QP 51 (messi5 measured 0.72; mean of the four 0.61)."""
    oks51 = {}
    for name, rgb in people.items():
        x = uint8_to_tensor_batch(rgb[None])
        ref = blazepose.reference(x)
        assert ref[0]["person"] and ref[0]["visible"].sum() >= 5, name
        m = blazepose.measure(x, ref)
        assert m["score"].tolist() == [1.0] and m["pck"].tolist() == [1.0]
        assert float(blazepose.score(_jpeg(rgb, 37), ref)[0]) > 0.85, name
        oks51[name] = blazepose.measure(_jpeg(rgb, 51), ref)
    assert float(oks51["messi5.jpg"]["score"][0]) < 0.85 and float(oks51["messi5.jpg"]["pck"][0]) < 0.9
    assert np.mean([float(m["score"][0]) for m in oks51.values()]) < 0.9


@needs_mediapipe
def test_photos_without_people_are_not_scored(segmenter, blazepose):
    """Assert chelsea.png (a cat, which the selfie model paints 91 % foreground) scores NaN."""
    x = uint8_to_tensor_batch(_photos(["chelsea.png"])["chelsea.png"][None])
    ref = segmenter.reference(x)
    assert not ref[0]["person"] and ref[0]["mask"].mean() > 0.5
    assert torch.isnan(segmenter.score(x, ref)).all()
    pref = blazepose.reference(x)
    assert not pref[0]["person"] and torch.isnan(blazepose.measure(x, pref)["pck"]).all()


@needs_mediapipe
def test_one_worker_process_serves_whole_batches(people, segmenter):
    """Assert a batch of crops goes to MediaPipe in one call, and the worker process is reused."""
    crops = np.stack([rgb[:256, :256] for rgb in people.values()])
    x = uint8_to_tensor_batch(crops)
    masks = segmenter.masks(x)
    pid = segmenter.worker._proc.pid
    assert masks.shape == (len(crops), 256, 256) and masks.dtype == bool
    again = segmenter.masks(x)
    assert segmenter.worker._proc.pid == pid and np.array_equal(masks, again)  # same process, deterministic
    with pytest.raises(InvalidArgumentError, match="target must be the reference"):
        segmenter.score(x, [{"mask": m} for m in masks])


@needs_mediapipe
@pytest.mark.parametrize("task", ["selfie_segmentation", "blazepose"])
def test_npp_train_refuses_evaluation_tasks(tmp_path, capsys, task):
    """Assert `npp train npp --task <evaluation task>` exits 2 saying the task is evaluation-only."""
    from npp_plugin.training.__main__ import main

    rc = main(["npp", "--out", str(tmp_path), "--codec", "jpeg", "--task", task, "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "is evaluation-only" in err and task in err



def test_worker_without_mediapipe_fails_with_its_error(monkeypatch):
    """Assert an interpreter without mediapipe gives TaskUnavailableError carrying the worker's
    ImportError (a real subprocess: this test's own python has no mediapipe)."""
    import importlib.util
    import sys

    if importlib.util.find_spec("mediapipe") is not None:
        pytest.skip("this environment has mediapipe itself")
    monkeypatch.setenv(ENV_VAR, sys.executable)
    task = get_task("selfie_segmentation")
    with pytest.raises(TaskUnavailableError, match="(?s)worker.*stopped.*No module named 'mediapipe'"):
        task.masks(torch.zeros(1, 3, 32, 32))
