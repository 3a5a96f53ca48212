"""Person segmentation: MediaPipe selfie segmentation, scored by mask IoU.

The network is MediaPipe's selfie segmentation (legacy solution of ``mediapipe==0.10.21``,
its ``.tflite`` inside the wheel), run in MediaPipe's own environment
(:mod:`.mediapipe_runtime`). The target is the mask on the uncompressed image; the score of a
decoded image is the IoU of the two masks, each thresholded at 0.5.

Only images with a person count. The selfie model paints a foreground on any photo (a cat
too; docs/evaluation.md, "Transfer to other tasks"), so an image counts when BlazePose's detector (same wheel) finds a person in the uncompressed image; on
the others the score is NaN and evaluation leaves them out.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidArgumentError
from . import EvaluationTask, check_batch
from .mediapipe_runtime import MediapipeWorker, to_uint8_images

__all__ = ["SelfieSegmentation", "mask_iou"]


def mask_iou(pred: np.ndarray, target: np.ndarray) -> float:
    """IoU of two boolean masks; 1.0 when both are empty."""
    pred, target = np.asarray(pred, bool), np.asarray(target, bool)
    if pred.shape != target.shape:
        msg = f"mask_iou: masks of different shapes {pred.shape} and {target.shape}"
        raise InvalidArgumentError(msg, argument="mask", allowed=str(target.shape))
    union = np.logical_or(pred, target).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(pred, target).sum() / union)


class SelfieSegmentation(EvaluationTask):
    """MediaPipe selfie segmentation, evaluation-only.

    Args:
        model_selection: 0 (general model, 256² input) or 1 (landscape, 144×256).
        threshold: mask probability that counts as person.
        person_confidence: BlazePose detector confidence that an uncompressed image shows a
            person (images without one score NaN).

    Targets (``reference``) are dicts ``{"mask": (H, W) bool, "person": bool}``.
    """

    name = "selfie_segmentation"
    kind = "segmentation"

    def __init__(self, *, model_selection: int = 0, threshold: float = 0.5, person_confidence: float = 0.5) -> None:
        if model_selection not in (0, 1):
            msg = f"task 'selfie_segmentation': model_selection={model_selection!r} is not allowed; choose 0 | 1"
            raise InvalidArgumentError(msg, argument="model_selection", allowed=(0, 1))
        for key, v in (("threshold", threshold), ("person_confidence", person_confidence)):
            if not 0.0 < float(v) < 1.0:
                msg = f"task 'selfie_segmentation': {key}={v!r} must lie in (0, 1)"
                raise InvalidArgumentError(msg, argument=key, allowed="(0, 1)")
        self.model_selection = int(model_selection)
        self.threshold = float(threshold)
        self.person_confidence = float(person_confidence)
        self.worker = MediapipeWorker(self.name)

    def masks(self, batch: Any) -> np.ndarray:
        """(N, H, W) bool person masks of ``batch``."""
        check_batch(batch, self.name)
        out = self.worker.call("segment", to_uint8_images(batch), model_selection=self.model_selection)
        return out["masks"] >= self.threshold

    def reference(self, batch: Any) -> list[dict]:
        check_batch(batch, self.name)
        images = to_uint8_images(batch)
        masks = self.worker.call("segment", images, model_selection=self.model_selection)["masks"] >= self.threshold
        found = self.worker.call("pose", images, min_detection_confidence=self.person_confidence)["found"]
        return [{"mask": m, "person": bool(f)} for m, f in zip(masks, found, strict=True)]

    def score(self, batch: Any, target: Any) -> Any:
        import torch

        targets = _check_targets(self.name, target, batch.shape[0])
        masks = self.masks(batch)
        return torch.tensor([mask_iou(m, t["mask"]) if t["person"] else float("nan")
                             for m, t in zip(masks, targets, strict=True)], dtype=torch.float64)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "model_selection": self.model_selection, "threshold": self.threshold,
                "person_confidence": self.person_confidence}


def _check_targets(task: str, target: Any, n: int) -> list[dict]:
    ok = isinstance(target, (list, tuple)) and len(target) == n and all(
        isinstance(t, dict) and "mask" in t and "person" in t for t in target)
    if not ok:
        msg = f"task {task!r}: target must be the reference of the batch: a list of {n} dicts with 'mask' and 'person'"
        raise InvalidArgumentError(msg, argument="target", allowed="task.reference(uncompressed batch)")
    return list(target)
