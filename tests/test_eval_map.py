"""Dataset-level detection mAP (pycocotools), its bootstrap, COCO annotations, the transfer table."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from npp_plugin.errors import InvalidArgumentError
from npp_plugin.evaluation.annotations import load_coco_boxes
from npp_plugin.evaluation.bdrate import bd_rate_bootstrap, bd_rate_bootstrap_weighted
from npp_plugin.evaluation.coco_map import MatchTable, coco_map
from npp_plugin.evaluation.inputs import EvalImage, folder_images
from npp_plugin.evaluation.transfer import cell, transfer_rows, transfer_table


def _random_run(rng, n_images=30, cats=3):
    """Ground truth and noisy detections (moved boxes plus false alarms) for n images."""
    def boxes(k):
        xy = rng.uniform(0, 200, (k, 2))
        return np.concatenate([xy, xy + rng.uniform(5, 80, (k, 2))], 1)

    gts, dets = [], []
    for _ in range(n_images):
        k = int(rng.integers(0, 6))
        g = {"boxes": boxes(k).tolist(), "labels": rng.integers(1, cats + 1, k).tolist()}
        extra = int(rng.integers(0, 3))
        moved = np.asarray(g["boxes"]).reshape(-1, 4) + rng.normal(0, 6, (k, 4))
        dets.append({"boxes": moved.tolist() + boxes(extra).tolist(),
                     "labels": g["labels"] + rng.integers(1, cats + 1, extra).tolist(),
                     "scores": rng.uniform(0, 1, k + extra).tolist()})
        gts.append(g)
    return gts, dets


def test_map_of_a_hand_made_case():
    """Assert COCO mAP/AP50 of one image: a false alarm above one exact hit of two objects gives
    precision 1/2 up to recall 1/2, i.e. 51 of 101 recall points at 0.5: 25.5/101."""
    gt = [{"boxes": [[10, 10, 50, 50], [100, 100, 150, 160]], "labels": [1, 1]}]
    det = [{"boxes": [[300, 300, 320, 320], [10, 10, 50, 50]], "labels": [1, 1], "scores": [0.9, 0.8]}]
    expected = 25.5 / 101
    assert coco_map(gt, det) == pytest.approx({"map": expected, "ap50": expected}, abs=1e-12)
    np.testing.assert_allclose(MatchTable(gt, det).evaluate(), [expected, expected], atol=1e-12)
    perfect = [{"boxes": gt[0]["boxes"], "labels": [1, 1], "scores": [0.5, 0.4]}]
    assert coco_map(gt, perfect) == {"map": 1.0, "ap50": 1.0}
    nothing = [{"boxes": [], "labels": []}]
    assert math.isnan(coco_map(nothing, nothing)["map"])


def test_match_table_is_pycocotools_for_any_multiset_of_images():
    """Assert MatchTable.evaluate equals COCOeval's mAP and AP50 with every image once, and
    with images drawn 0, 2 or 3 times (COCOeval on the list with those copies)."""
    rng = np.random.default_rng(7)
    for _ in range(3):
        gts, dets = _random_run(rng)
        table = MatchTable(gts, dets)
        ref = coco_map(gts, dets)
        np.testing.assert_allclose(table.evaluate(), [ref["map"], ref["ap50"]], rtol=0, atol=1e-12)
        w = rng.integers(0, 4, len(gts))
        idx = [i for i in range(len(gts)) for _ in range(w[i])]
        ref = coco_map([gts[i] for i in idx], [dets[i] for i in idx])
        np.testing.assert_allclose(table.evaluate(w), [ref["map"], ref["ap50"]], rtol=0, atol=1e-12)
    with pytest.raises(InvalidArgumentError, match="non-negative"):
        table.evaluate(-np.ones(len(gts), int))


def test_weighted_bootstrap_equals_the_mean_bootstrap_for_means():
    """Assert bd_rate_bootstrap_weighted with mean-over-images qualities reproduces
    bd_rate_bootstrap's value and interval (same draws, same seed), with and without groups."""
    rng = np.random.default_rng(3)
    n, k = 40, 4
    ra = np.sort(rng.uniform(0.2, 2.0, (n, k)), axis=1)
    qa = 0.5 + 0.1 * np.log(ra) + rng.normal(0, 0.02, (n, k))
    rt = ra * 0.9
    qt = qa + rng.normal(0, 0.02, (n, k))
    mean = lambda q: (lambda w: (w @ q) / w.sum())  # noqa: E731
    for groups in (None, [i // 4 for i in range(n)]):
        plain = bd_rate_bootstrap(ra, qa, rt, qt, n_boot=60, seed=5, groups=groups)
        (weighted,) = bd_rate_bootstrap_weighted(ra, rt, mean(qa), mean(qt), n_boot=60, seed=5, groups=groups)
        assert weighted.value == pytest.approx(plain.value, rel=1e-9)
        assert (weighted.ci_low, weighted.ci_high) == pytest.approx((plain.ci_low, plain.ci_high), rel=1e-9)
        assert weighted.n_boot_valid == plain.n_boot_valid


def _coco_file(tmp_path, images, annotations):
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 3}]}))
    return path


def test_coco_annotations_follow_crops(tmp_path):
    """Assert boxes are shifted into a crop and clipped; a box mostly outside becomes crowd
    (ignored), one wholly outside is dropped; whole images keep the file's boxes."""
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    Image.new("RGB", (64, 48)).save(folder / "sub" / "a.png")
    path = _coco_file(tmp_path, [{"id": 7, "file_name": "sub/a.png"}], [
        {"image_id": 7, "category_id": 3, "bbox": [10, 10, 20, 20]},       # inside the crop
        {"image_id": 7, "category_id": 3, "bbox": [28, 0, 20, 10]},        # 4 of 20 px wide inside
        {"image_id": 7, "category_id": 3, "bbox": [40, 40, 10, 5]},        # outside the crop
        {"image_id": 7, "category_id": 1, "bbox": [0, 0, 64, 48], "iscrowd": 1},
    ])
    whole = folder_images(folder)
    boxes = load_coco_boxes(path, whole)["sub/a.png"]
    assert boxes["boxes"].tolist() == [[10, 10, 30, 30], [28, 0, 48, 10], [40, 40, 50, 45], [0, 0, 64, 48]]
    assert boxes["labels"].tolist() == [3, 3, 3, 1] and boxes["iscrowd"].tolist() == [0, 0, 0, 1]
    crop = [EvalImage("sub/a.png@0,0,32", "sub/a.png", folder / "sub" / "a.png", (0, 0, 32))]
    boxes = load_coco_boxes(path, crop)["sub/a.png@0,0,32"]
    assert boxes["boxes"].tolist() == [[10, 10, 30, 30], [28, 0, 32, 10], [0, 0, 32, 32]]
    assert boxes["iscrowd"].tolist() == [0, 1, 1]


def test_coco_annotation_errors_name_the_problem(tmp_path, monkeypatch):
    """Assert a missing image entry, a bad bbox, non-JSON and an oversized file are refused
    with messages naming the file and what is wrong."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (16, 16)).save(folder / "b.png")
    items = folder_images(folder)
    with pytest.raises(InvalidArgumentError, match="no image entry for 'b.png'"):
        load_coco_boxes(_coco_file(tmp_path, [{"id": 1, "file_name": "c.png"}], []), items)
    with pytest.raises(InvalidArgumentError, match=r"bbox \[0, 0, -1, 4\]"):
        load_coco_boxes(_coco_file(tmp_path, [{"id": 1, "file_name": "b.png"}],
                                   [{"id": 5, "image_id": 1, "category_id": 3, "bbox": [0, 0, -1, 4]}]), items)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InvalidArgumentError, match="is not JSON"):
        load_coco_boxes(bad, items)
    from npp_plugin.evaluation import annotations

    monkeypatch.setattr(annotations, "MAX_FILE_BYTES", 4)
    with pytest.raises(InvalidArgumentError, match="is 9 bytes, more than the 4 allowed"):
        load_coco_boxes(bad, items)


def test_transfer_cells_say_when_there_are_too_few_images():
    """Assert a cell shows the BD-rate and interval when the interval is within ±10 %, and says
    'too few usable images' (no number) when it is wider or missing."""
    ok = {"value": -12.34, "ci_low": -18.0, "ci_high": -6.5, "n_images": 600}
    wide = {"value": -30.0, "ci_low": -60.0, "ci_high": 5.0, "n_images": 40}
    none = {"value": -3.0, "ci_low": float("nan"), "ci_high": float("nan"), "n_images": 12}
    few = {**ok, "n_images": 4}
    assert cell(ok) == "-12.3 % [-18.0, -6.5]"
    assert cell(wide) == "too few usable images (40): 95 % CI ±32.5 % > ±10 %" and "-30" not in cell(wide)
    assert cell(none) == "too few usable images (12): no interval"
    assert cell(few) == "too few usable images (4 < 10)"
    assert cell(None) == "—"
    undefined = {"value": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n_images": 5,
                 "warnings": ["fewer than 2 monotonic points: BD undefined"]}
    assert cell(undefined) == "n/a: fewer than 2 monotonic points (5 images)"
    apart = {**undefined, "warnings": ["Curves do not overlap. BD cannot be calculated."]}
    assert cell(apart) == "n/a: curves do not overlap (5 images)"
    bd = {"plain": [{"task": "pose", "metric": "score", "codec": "bpg", "variant": "npp", **wide},
                    {"task": "cls", "metric": "score", "codec": "bpg", "variant": "npp", **ok},
                    {"task": "cls", "metric": "kl", "codec": "bpg", "variant": "npp", **ok}],
          "blur05": [{"task": "cls", "metric": "score", "codec": "bpg", "variant": "npp", **ok},
                     {"task": "cls", "metric": "score", "codec": "bpg", "variant": "plain", **ok}]}
    rows = transfer_rows(bd, {"pose": "pose", "cls": "classification"})
    # plain against blur05 (an earlier anchor against a later one) is left out
    assert [(r["task"], r["measure"], r["variant"]) for r in rows] == [
        ("cls", "top-1 agreement", "npp"), ("pose", "OKS", "npp")]
    text = transfer_table(rows, ["plain", "blur05"])
    assert "| cls | top-1 agreement | bpg | npp | 600 | -12.3 % [-18.0, -6.5] | -12.3 % [-18.0, -6.5] |" in text
    assert "| pose | OKS | bpg | npp | 40 | too few usable images (40)" in text
    assert text.rstrip().endswith("fewer than 10 images.")
