"""COCO annotations through a whole `npp eval run`: the ground truth the file gives is what
the dataset-level mAP is scored against (not the detector's own boxes)."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
import torch

from npp_plugin.datasets import builtin_photos, load_rgb
from npp_plugin.evaluation.__main__ import main as eval_main

from .conftest import require_codec

FACES = ("astronaut.png", "grace_hopper.jpg", "messi5.jpg")  # one face each


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    pytest.importorskip("facenet_pytorch", reason="the MTCNN face detector (facenet-pytorch) is not installed")
    from npp_plugin.registry import get_task

    folder = tmp_path_factory.mktemp("faces")
    by_name = {p.name: p for p in builtin_photos()}
    if not set(FACES) <= set(by_name):
        pytest.skip(f"the built-in photos {FACES} are not all installed")
    task, boxes = get_task("mtcnn"), {}
    for name in FACES:
        shutil.copy(by_name[name], folder / name)
        x = torch.from_numpy(load_rgb(folder / name).copy()).permute(2, 0, 1)[None].float().div(255)
        boxes[name] = (x.shape[-1], x.shape[-2], task.detect(x)[0]["boxes"].tolist())
    assert all(len(b[2]) == 1 for b in boxes.values())
    return folder, boxes


def _instances(path, boxes, shift=0.0):
    """COCO instances with the given xyxy boxes, each moved ``shift`` of the image right and down."""
    images, anns = [], []
    for i, (name, (w, h, bs)) in enumerate(sorted(boxes.items()), 1):
        images.append({"id": i, "file_name": name, "width": w, "height": h})
        for x0, y0, x1, y1 in bs:
            dx, dy = shift * w, shift * h
            bw, bh = min(x1 + dx, w) - (x0 + dx), min(y1 + dy, h) - (y0 + dy)
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1, "iscrowd": 0,
                         "bbox": [x0 + dx, y0 + dy, bw, bh], "area": bw * bh})
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "face"}]}))
    return path


def _map_by_qp(out):
    with open(out / "curves.csv") as fh:
        return {int(r["qp"]): float(r["map"]) for r in csv.DictReader(fh) if r["task"] == "mtcnn"}


@pytest.mark.slow
def test_annotations_are_the_ground_truth_of_the_sweeps_map(faces, tmp_path):
    require_codec("jpeg")
    folder, boxes = faces
    common = ["run", "--codecs", "jpeg", "--variants", "plain", "--tasks", "mtcnn", "--images", str(folder),
              "--crop-size", "0", "--qps", "20,51", "--no-progress", "--metrics", "psnr"]
    right = tmp_path / "right"
    assert eval_main([*common, "--annotations", str(_instances(tmp_path / "gt.json", boxes)), "--out", str(right)]) == 0
    ref = json.loads((right / "results.json").read_text())
    assert ref["boxes"] == 3 and ref["reference"]["mtcnn"]["map"] == pytest.approx(1.0)
    good = _map_by_qp(right)
    assert good[20] > 0.8 and good[51] < good[20]
    # the same photos scored against boxes beside the faces: nothing matches, so mAP is 0
    wrong = tmp_path / "wrong"
    gt = _instances(tmp_path / "moved.json", boxes, shift=0.3)
    assert eval_main([*common, "--annotations", str(gt), "--out", str(wrong)]) == 0
    assert json.loads((wrong / "results.json").read_text())["reference"]["mtcnn"]["map"] == 0.0
    assert _map_by_qp(wrong) == {20: 0.0, 51: 0.0}
