"""Human pose: MediaPipe BlazePose, scored by OKS and PCK@0.05 against the uncompressed image.

The network is BlazePose (legacy pose solution of ``mediapipe==0.10.21``, the ``full``
landmark model, ``model_complexity=1``: the only one inside the wheel; the ``lite`` and
``heavy`` ones would be downloaded at run time) in static-image mode, run in MediaPipe's own
environment (:mod:`.mediapipe_runtime`).

Keypoints are BlazePose's 33 landmarks reduced to COCO's 17 (same joints, COCO's order). A
keypoint of the reference counts when its visibility is at least ``visibility`` and it lies
inside the image. The person's scale is the box around every counted landmark of the 33
(at least 32×32 px, COCO's small-object size):

* OKS (COCO): mean over counted keypoints of exp(−d² / (2 · area · (2σ)²)), area = the box's
  w·h, σ COCO's per-keypoint constants;
* PCK@α: the share of counted keypoints predicted within α · max(w, h) of the reference.

An image without a person in the reference (or with fewer than ``min_keypoints`` counted)
scores NaN and evaluation leaves it out; a person missed in the decoded image scores 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidArgumentError
from . import EvaluationTask, check_batch
from .mediapipe_runtime import MediapipeWorker, to_uint8_images

__all__ = ["BLAZEPOSE_TO_COCO", "COCO_SIGMAS", "BlazePose", "oks", "pck"]

#: BlazePose landmark index of each COCO keypoint (nose, eyes, ears, shoulders, elbows,
#: wrists, hips, knees, ankles; left before right).
BLAZEPOSE_TO_COCO = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
#: COCO keypoint constants (pycocotools ``COCOeval`` kpt_oks_sigmas).
COCO_SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]) / 10.0
MIN_SCALE = 32.0


def oks(pred: np.ndarray, target: np.ndarray, visible: np.ndarray, area: float,
        sigmas: np.ndarray = COCO_SIGMAS) -> float:
    """COCO object keypoint similarity of (K, 2) predicted vs reference keypoints (pixels),
    over the ``visible`` reference keypoints, with object ``area`` (px²)."""
    visible = np.asarray(visible, bool)
    if not visible.any():
        msg = "oks: no visible reference keypoint"
        raise InvalidArgumentError(msg, argument="visible", allowed="at least one True")
    d2 = ((np.asarray(pred, np.float64) - np.asarray(target, np.float64)) ** 2).sum(-1)
    e = d2 / ((2.0 * sigmas) ** 2) / (area + np.spacing(1)) / 2.0
    return float(np.exp(-e[visible]).mean())


def pck(pred: np.ndarray, target: np.ndarray, visible: np.ndarray, size: float, alpha: float = 0.05) -> float:
    """Share of ``visible`` reference keypoints predicted within ``alpha · size`` pixels."""
    visible = np.asarray(visible, bool)
    if not visible.any():
        msg = "pck: no visible reference keypoint"
        raise InvalidArgumentError(msg, argument="visible", allowed="at least one True")
    d = np.sqrt(((np.asarray(pred, np.float64) - np.asarray(target, np.float64)) ** 2).sum(-1))
    return float((d[visible] <= alpha * size).mean())


class BlazePose(EvaluationTask):
    """MediaPipe BlazePose (``full`` model), evaluation-only.

    Args:
        min_detection_confidence: BlazePose's person-detector threshold.
        visibility: landmark visibility from which a reference keypoint counts.
        min_keypoints: COCO keypoints the reference needs for the image to count.
        alpha: PCK threshold as a fraction of the person's box size.

    Targets (``reference``) are dicts ``{"keypoints": (17, 2) px, "visible": (17,) bool,
    "box": (w, h), "person": bool}``.
    """

    name = "blazepose"
    kind = "pose"

    def __init__(self, *, min_detection_confidence: float = 0.5, visibility: float = 0.5, min_keypoints: int = 3,
                 alpha: float = 0.05) -> None:
        for key, v in (("min_detection_confidence", min_detection_confidence), ("visibility", visibility),
                       ("alpha", alpha)):
            if not 0.0 < float(v) < 1.0:
                msg = f"task 'blazepose': {key}={v!r} must lie in (0, 1)"
                raise InvalidArgumentError(msg, argument=key, allowed="(0, 1)")
        if isinstance(min_keypoints, bool) or not isinstance(min_keypoints, int) or not 1 <= min_keypoints <= 17:
            msg = f"task 'blazepose': min_keypoints={min_keypoints!r} must be an integer in 1..17"
            raise InvalidArgumentError(msg, argument="min_keypoints", allowed=(1, 17))
        self.min_detection_confidence = float(min_detection_confidence)
        self.visibility = float(visibility)
        self.min_keypoints = min_keypoints
        self.alpha = float(alpha)
        self.worker = MediapipeWorker(self.name)

    def landmarks(self, batch: Any) -> tuple[np.ndarray, np.ndarray]:
        """(N, 33, 3) landmarks (x, y in pixels, visibility) and (N,) bool found."""
        check_batch(batch, self.name)
        h, w = batch.shape[-2:]
        out = self.worker.call("pose", to_uint8_images(batch), min_detection_confidence=self.min_detection_confidence)
        lm = out["landmarks"].astype(np.float64)
        xyv = np.stack([lm[..., 0] * w, lm[..., 1] * h, lm[..., 3]], axis=-1)
        return xyv, out["found"].astype(bool)

    def reference(self, batch: Any) -> list[dict]:
        h, w = batch.shape[-2:]
        xyv, found = self.landmarks(batch)
        refs = []
        for lm, f in zip(xyv, found, strict=True):
            inside = (lm[:, 0] >= 0) & (lm[:, 0] < w) & (lm[:, 1] >= 0) & (lm[:, 1] < h)
            counted = f & inside & (lm[:, 2] >= self.visibility)
            visible = counted[list(BLAZEPOSE_TO_COCO)]
            if counted.any():
                pts = lm[counted, :2]
                box = tuple(max(MIN_SCALE, float(v)) for v in pts.max(0) - pts.min(0))
            else:
                box = (MIN_SCALE, MIN_SCALE)
            refs.append({"keypoints": lm[list(BLAZEPOSE_TO_COCO), :2], "visible": visible, "box": box,
                         "person": bool(f) and int(visible.sum()) >= self.min_keypoints})
        return refs

    def measure(self, batch: Any, target: Any) -> dict[str, Any]:
        import torch

        targets = _check_targets(self.name, target, batch.shape[0])
        xyv, found = self.landmarks(batch)
        scores, pcks = [], []
        for lm, f, t in zip(xyv, found, targets, strict=True):
            if not t["person"]:
                scores.append(float("nan"))
                pcks.append(float("nan"))
            elif not f:
                scores.append(0.0)
                pcks.append(0.0)
            else:
                pred = lm[list(BLAZEPOSE_TO_COCO), :2]
                bw, bh = t["box"]
                scores.append(oks(pred, t["keypoints"], t["visible"], bw * bh))
                pcks.append(pck(pred, t["keypoints"], t["visible"], max(bw, bh), self.alpha))
        return {"score": torch.tensor(scores, dtype=torch.float64), "pck": torch.tensor(pcks, dtype=torch.float64)}

    def score(self, batch: Any, target: Any) -> Any:
        """Per-image OKS (NaN where the reference shows no person)."""
        return self.measure(batch, target)["score"]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "model": "full", "min_detection_confidence": self.min_detection_confidence,
                "visibility": self.visibility, "min_keypoints": self.min_keypoints, "alpha": self.alpha}


def _check_targets(task: str, target: Any, n: int) -> list[dict]:
    keys = ("keypoints", "visible", "box", "person")
    ok = isinstance(target, (list, tuple)) and len(target) == n and all(
        isinstance(t, dict) and all(k in t for k in keys) for t in target)
    if not ok:
        msg = f"task {task!r}: target must be the reference of the batch: a list of {n} dicts with {', '.join(keys)}"
        raise InvalidArgumentError(msg, argument="target", allowed="task.reference(uncompressed batch)")
    return list(target)
