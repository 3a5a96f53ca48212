"""Dataset-level detection mAP: COCO mAP@[.5:.95] and AP50 with pycocotools, resampleable.

The ground truth is COCO annotations when the run has them, otherwise pseudo ground truth:
the detector's own boxes on the uncompressed image (its ``reference``: torchvision detectors
keep scores >= ``score_thresh``, 0.5 by default; MTCNN keeps what its cascade accepts, O-Net
probability >= 0.7).

pycocotools' ``COCOeval.evaluate`` matches detections to ground truth once per image (area
range "all", at most 100 detections per image). :class:`MatchTable` keeps those matches and
redoes the accumulation step for any multiset of images (``weights[i]`` = how often image i
is drawn), so a bootstrap over images costs a cumulative sum per resample instead of a new
``COCOeval``. With all weights 1 it gives pycocotools' ``stats[0]`` (mAP) and ``stats[1]``
(AP50) exactly (tests check this against ``COCOeval.summarize``).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np

from ..errors import InvalidArgumentError

__all__ = ["MAP_METRICS", "MatchTable", "coco_map"]

#: The dataset-level metrics, as named in evaluation tables.
MAP_METRICS = ("map", "ap50")
_MAX_DETS = 100


def _xywh(b: Sequence[float]) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in b)
    return [x1, y1, x2 - x1, y2 - y1]


def _check(gts: Sequence[dict], dets: Sequence[dict]) -> None:
    if len(gts) != len(dets):
        msg = f"mAP: {len(gts)} ground-truth images but {len(dets)} detection images"
        raise InvalidArgumentError(msg, argument="detections", allowed="one entry per image in each")
    for d in (*gts, *dets):
        if not isinstance(d, dict) or "boxes" not in d or "labels" not in d:
            msg = "mAP: every image needs a dict with 'boxes' (K, 4) xyxy and 'labels' (K,)"
            raise InvalidArgumentError(msg, argument="detections", allowed="{'boxes', 'labels', 'scores'}")


def _cocoeval(gts: Sequence[dict], dets: Sequence[dict]):
    """A ``COCOeval`` (bbox) after ``evaluate()``, images numbered 1..N in order."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    _check(gts, dets)
    cats = sorted({int(c) for d in (*gts, *dets) for c in d["labels"]})
    images = [{"id": i + 1} for i in range(len(gts))]
    gt_anns, dt_anns = [], []
    for i, (g, d) in enumerate(zip(gts, dets, strict=True)):
        crowd = g.get("iscrowd", [0] * len(g["labels"]))
        for box, label, c in zip(g["boxes"], g["labels"], crowd, strict=True):
            xywh = _xywh(box)
            gt_anns.append({"id": len(gt_anns) + 1, "image_id": i + 1, "category_id": int(label), "bbox": xywh,
                            "area": xywh[2] * xywh[3], "iscrowd": int(c)})
        scores = d.get("scores", [1.0] * len(d["labels"]))
        for box, label, s in zip(d["boxes"], d["labels"], scores, strict=True):
            xywh = _xywh(box)
            dt_anns.append({"id": len(dt_anns) + 1, "image_id": i + 1, "category_id": int(label), "bbox": xywh,
                            "area": xywh[2] * xywh[3], "iscrowd": 0, "score": float(s)})
    coco_gt, coco_dt = COCO(), COCO()
    categories = [{"id": c} for c in cats]
    coco_gt.dataset = {"images": images, "categories": categories, "annotations": gt_anns}
    coco_dt.dataset = {"images": images, "categories": categories, "annotations": dt_anns}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco_gt.createIndex()
        coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.params.imgIds = [im["id"] for im in images]
        ev.params.catIds = cats
        ev.evaluate()
    return ev


def coco_map(gts: Sequence[dict], dets: Sequence[dict]) -> dict[str, float]:
    """``{"map": mAP@[.5:.95], "ap50": AP@0.5}`` of ``dets`` against ``gts`` (one dict per
    image, boxes xyxy in pixels), straight from pycocotools (NaN without ground truth)."""
    ev = _cocoeval(gts, dets)
    if not ev.params.catIds:
        return {"map": float("nan"), "ap50": float("nan")}
    with contextlib.redirect_stdout(io.StringIO()):
        ev.accumulate()
        ev.summarize()
    return {k: (float(v) if v > -1 else float("nan")) for k, v in zip(MAP_METRICS, ev.stats[:2], strict=True)}


class MatchTable:
    """pycocotools' per-image matches of one detection run, for mAP of any image multiset.

    Args:
        gts, dets: one dict per image (``boxes`` xyxy, ``labels``, ``scores``, optional
            ``iscrowd`` for the ground truth).
    """

    def __init__(self, gts: Sequence[dict], dets: Sequence[dict]) -> None:
        ev = _cocoeval(gts, dets)
        p = ev.params
        self.n_images = len(gts)
        self.iou_thresholds = np.asarray(p.iouThrs)
        self.rec_thresholds = np.asarray(p.recThrs)
        n_area, n_img = len(p.areaRng), len(p.imgIds)
        self._cats: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        for k in range(len(p.catIds)):
            per = [ev.evalImgs[k * n_area * n_img + i] for i in range(n_img)]  # area range "all"
            per = [(i, e) for i, e in enumerate(per) if e is not None]
            t = len(self.iou_thresholds)
            scores = np.concatenate([e["dtScores"][:_MAX_DETS] for _, e in per]) if per else np.zeros(0)
            owner = np.concatenate([np.full(len(e["dtScores"][:_MAX_DETS]), i) for i, e in per]) if per else np.zeros(0, int)
            matched = np.concatenate([e["dtMatches"][:, :_MAX_DETS] for _, e in per], axis=1) if per else np.zeros((t, 0))
            ignored = np.concatenate([e["dtIgnore"][:, :_MAX_DETS] for _, e in per], axis=1) if per else np.zeros((t, 0))
            npig = np.zeros(n_img)
            for i, e in per:
                npig[i] = np.count_nonzero(np.asarray(e["gtIgnore"]) == 0)
            order = np.argsort(-scores, kind="mergesort")  # as COCOeval.accumulate
            matched, ignored = matched[:, order].astype(bool), ignored[:, order].astype(bool)
            tps = matched & ~ignored
            fps = ~matched & ~ignored
            self._cats.append((tps, fps, owner[order].astype(int), npig))

    def evaluate(self, weights: np.ndarray | None = None) -> np.ndarray:
        """``[mAP@[.5:.95], AP50]`` over the images drawn ``weights[i]`` times each (all
        once by default); NaN when no drawn image has ground truth."""
        w = np.ones(self.n_images, int) if weights is None else np.asarray(weights, int)
        if w.shape != (self.n_images,) or (w < 0).any():
            msg = f"MatchTable.evaluate: weights must be {self.n_images} non-negative integers, got shape {w.shape}"
            raise InvalidArgumentError(msg, argument="weights", allowed=f"({self.n_images},) >= 0")
        t, r = len(self.iou_thresholds), len(self.rec_thresholds)
        precision = []
        for tps, fps, owner, npig in self._cats:
            n_gt = float(w @ npig)
            if n_gt == 0:
                continue  # pycocotools: category without ground truth is left out (-1)
            rep = w[owner]
            tp = np.cumsum(np.repeat(tps, rep, axis=1), axis=1, dtype=np.float64)
            fp = np.cumsum(np.repeat(fps, rep, axis=1), axis=1, dtype=np.float64)
            q = np.zeros((t, r))
            nd = tp.shape[1]
            if nd:
                rc = tp / n_gt
                pr = tp / (fp + tp + np.spacing(1))
                pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # precision envelope
                for j in range(t):
                    inds = np.searchsorted(rc[j], self.rec_thresholds, side="left")
                    ok = inds < nd
                    q[j, ok] = pr[j, inds[ok]]
            precision.append(q)
        if not precision:
            return np.array([np.nan, np.nan])
        prec = np.stack(precision)  # (K, T, R)
        return np.array([prec.mean(), prec[:, 0].mean()])
