# SPDX-License-Identifier: GPL-2.0-or-later
"""The evaluation-only tasks' subprocess calls, and mAP per bootstrap resample.

Run:
    pytest tests/benchmarks/test_bench_tasks.py --benchmark-only

What is timed, side by side in one run:

* MediaPipe selfie segmentation of 16 built-in 144² crops through the worker process: one
  call with the batch of 16 vs 16 calls of one image (the same long-lived worker). The ratio
  (per-image calls / one batch call) is stored in ``extra_info``: what batching saves in
  pipe round trips.
* COCO mAP of one resample of 200 images with detections: ``MatchTable.evaluate(weights)``
  (pycocotools' matches kept, accumulation redone) vs ``coco_map`` on the resampled list (a
  new ``COCOeval``), the ratio stored in ``extra_info``: why the bootstrap over images is
  affordable (1000 resamples × QPs × curves).
"""

from __future__ import annotations

import numpy as np
import pytest

from npp_plugin.evaluation import builtin_images, select_evenly
from npp_plugin.evaluation.coco_map import MatchTable, coco_map
from npp_plugin.images import uint8_to_tensor_batch
from npp_plugin.tasks.mediapipe_runtime import mediapipe_unavailable_reason

_MEDIANS: dict[str, float] = {}


def _ratio(benchmark, slow: str, fast: str) -> None:
    if slow in _MEDIANS and fast in _MEDIANS:
        benchmark.extra_info[f"{slow}_over_{fast}"] = _MEDIANS[slow] / _MEDIANS[fast]


@pytest.fixture(scope="module")
def segmenter():
    if mediapipe_unavailable_reason():
        pytest.skip(mediapipe_unavailable_reason())
    from npp_plugin.registry import get_task

    return get_task("selfie_segmentation")


@pytest.fixture(scope="module")
def crops():
    return uint8_to_tensor_batch(np.stack([i.load() for i in select_evenly(builtin_images(), 16)]))


@pytest.mark.parametrize("mode", ["batch", "per_image"])
def test_mediapipe_batch_vs_per_image_calls(benchmark, segmenter, crops, mode):
    segmenter.masks(crops[:1])  # the worker and its graph start outside the timing

    def run():
        if mode == "batch":
            return segmenter.masks(crops)
        return np.concatenate([segmenter.masks(crops[i : i + 1]) for i in range(len(crops))])

    out = benchmark.pedantic(run, rounds=5, warmup_rounds=1)
    assert out.shape == (len(crops), *crops.shape[-2:])
    _MEDIANS[f"mediapipe_{mode}"] = benchmark.stats.stats.median
    _ratio(benchmark, "mediapipe_per_image", "mediapipe_batch")


@pytest.fixture(scope="module")
def detections():
    rng = np.random.default_rng(0)
    gts, dets = [], []
    for _ in range(200):
        k = int(rng.integers(1, 5))
        xy = rng.uniform(0, 200, (k, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(10, 60, (k, 2))], 1)
        gts.append({"boxes": boxes.tolist(), "labels": [1] * k})
        moved = boxes + rng.normal(0, 4, boxes.shape)
        dets.append({"boxes": moved.tolist(), "labels": [1] * k, "scores": rng.uniform(0, 1, k).tolist()})
    weights = np.bincount(rng.integers(0, 200, 200), minlength=200)
    return gts, dets, weights


@pytest.mark.parametrize("mode", ["match_table", "cocoeval"])
def test_map_per_resample(benchmark, detections, mode):
    gts, dets, w = detections
    table = MatchTable(gts, dets)
    idx = [i for i in range(len(w)) for _ in range(w[i])]

    def run():
        if mode == "match_table":
            return table.evaluate(w)[0]
        return coco_map([gts[i] for i in idx], [dets[i] for i in idx])["map"]

    value = benchmark.pedantic(run, rounds=5, warmup_rounds=1)
    assert 0.0 < value <= 1.0
    _MEDIANS[f"map_{mode}"] = benchmark.stats.stats.median
    _ratio(benchmark, "map_cocoeval", "map_match_table")
