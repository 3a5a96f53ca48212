"""Frozen detectors as tasks: torchvision FCOS / Faster R-CNN / RetinaNet and MTCNN faces.

The torchvision detectors need a COCO weights file the user names (nothing is downloaded);
without one the factory fails at once with a :class:`~npp_plugin.errors.WeightsError` that
says which file to pass. MTCNN (facenet-pytorch) ships its weights and works offline.

Targets are lists of ``{"boxes": (K, 4) xyxy pixels, "labels": (K,) int64}``: COCO
annotations, or the detector's own detections on the uncompressed image (``reference``).
The loss is the detector's training loss against them (pseudo-labels when unlabelled), with
the backbone's batch norm kept in eval mode; the score is per-image AP at IoU 0.5.
``measure`` returns the detections too, from which evaluation computes dataset-level COCO
mAP (:mod:`npp_plugin.evaluation.coco_map`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import InvalidArgumentError, WeightsError
from . import Task, check_batch, check_reduction, freeze, reduce
from .classification import _load_into, load_state_dict

__all__ = ["Detector", "MtcnnFaces", "TorchvisionDetector", "average_precision", "torchvision_detector"]

#: task name -> (architecture -> (torchvision builder, expected weights file name))
_ARCHS: dict[str, dict[str, tuple[str, str]]] = {
    "fcos": {"resnet50_fpn": ("fcos_resnet50_fpn", "fcos_resnet50_fpn_coco-99b0d8c6.pth")},
    "fasterrcnn": {
        "resnet50_fpn": ("fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth"),
        "resnet50_fpn_v2": ("fasterrcnn_resnet50_fpn_v2", "fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth"),
        "mobilenet_v3_large_fpn": (
            "fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth"),
    },
    "retinanet": {
        "resnet50_fpn": ("retinanet_resnet50_fpn", "retinanet_resnet50_fpn_coco-eeacb38b.pth"),
        "resnet50_fpn_v2": ("retinanet_resnet50_fpn_v2", "retinanet_resnet50_fpn_v2_coco-5905b1c5.pth"),
    },
}


def _box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    from torchvision.ops import box_iou

    return box_iou(a.float(), b.float())


def average_precision(pred: dict, target: dict, *, iou: float = 0.5) -> float:
    """AP of one image's detections against its target boxes (all-point interpolation).

    Detections match the highest-IoU unmatched target of the same label, best score first.
    An image without targets scores 1 when there is no detection, else 0.
    """
    gt_boxes, gt_labels = target["boxes"].detach().cpu(), target["labels"].detach().cpu()
    boxes, labels = pred["boxes"].detach().cpu(), pred["labels"].detach().cpu()
    scores = pred.get("scores", torch.ones(len(boxes))).detach().cpu()
    if len(gt_boxes) == 0:
        return 1.0 if len(boxes) == 0 else 0.0
    if len(boxes) == 0:
        return 0.0
    order = scores.argsort(descending=True)
    boxes, labels = boxes[order], labels[order]
    ious = _box_iou(boxes, gt_boxes)
    ious[labels[:, None] != gt_labels[None, :]] = -1.0
    taken = torch.zeros(len(gt_boxes), dtype=torch.bool)
    tp = torch.zeros(len(boxes))
    for i in range(len(boxes)):
        cand = ious[i].clone()
        cand[taken] = -1.0
        j = int(cand.argmax())
        if cand[j] >= iou:
            taken[j] = True
            tp[i] = 1.0
    ctp = tp.cumsum(0)
    recall = ctp / len(gt_boxes)
    precision = ctp / torch.arange(1, len(boxes) + 1)
    # precision envelope, then the area under the step curve
    precision = torch.flip(torch.cummax(torch.flip(precision, [0]), 0).values, [0])
    prev = torch.cat([torch.zeros(1), recall[:-1]])
    return float(((recall - prev) * precision).sum())


def _non_crowd(target: dict) -> dict:
    """The target without COCO crowd regions (per-image AP counts only real objects)."""
    crowd = target.get("iscrowd")
    if crowd is None:
        return target
    keep = ~torch.as_tensor(crowd, dtype=torch.bool)
    return {"boxes": target["boxes"][keep], "labels": target["labels"][keep]}


def _measure(task: str, dets: list[dict], target: Any) -> dict[str, Any]:
    targets = _check_targets(task, target, len(dets))
    ap = torch.tensor([average_precision(d, _non_crowd(t)) for d, t in zip(dets, targets, strict=True)])
    return {"score": ap, "detections": dets}


def _check_targets(task: str, target: Any, n: int) -> list[dict]:
    ok = isinstance(target, (list, tuple)) and len(target) == n and all(
        isinstance(t, dict) and "boxes" in t and "labels" in t for t in target
    )
    if not ok:
        msg = f"task {task!r}: target must be a list of {n} dicts with 'boxes' (K, 4) and 'labels' (K,)"
        raise InvalidArgumentError(msg, argument="target", allowed="list of {'boxes', 'labels'} dicts")
    return list(target)


class Detector(Task):
    """What every detection task shares: scoring its own ``detect`` against boxes (COCO
    annotations or its reference), per image, with the detections kept for dataset mAP."""

    kind = "detection"

    def measure(self, batch: torch.Tensor, target: Any) -> dict[str, Any]:
        """Per-image AP at IoU 0.5 (``score``) and the ``detections`` it was computed from."""
        _check_targets(self.name, target, batch.shape[0])
        return _measure(self.name, self.detect(batch), target)

    def score(self, batch: torch.Tensor, target: Any) -> torch.Tensor:
        return self.measure(batch, target)["score"]


class TorchvisionDetector(Detector):
    """A frozen torchvision detector (FCOS, Faster R-CNN or RetinaNet).

    Args:
        net: the detector, weights loaded.
        name: task name.
        score_thresh: detections at or above this score form the ``reference``.
    """

    def __init__(self, net: torch.nn.Module, *, name: str, score_thresh: float = 0.5, config: dict | None = None) -> None:
        self.name = name  # type: ignore[misc]
        self.net = freeze(net)
        self.score_thresh = float(score_thresh)
        self._config = dict(config or {})

    def modules(self) -> list[Any]:
        return [self.net]

    @contextlib.contextmanager
    def _loss_mode(self) -> Iterator[None]:
        # torchvision computes losses only when these flags are set; the backbone (batch norm)
        # and the transform stay in eval mode so the network itself does not change.
        parts = [self.net] + [getattr(self.net, k) for k in ("rpn", "roi_heads") if hasattr(self.net, k)]
        for p in parts:
            p.training = True
        try:
            yield
        finally:
            for p in parts:
                p.training = False

    def detect(self, batch: torch.Tensor) -> list[dict]:
        check_batch(batch, self.name)
        with torch.no_grad():
            return self.net(list(batch))

    def reference(self, batch: torch.Tensor) -> list[dict]:
        out = []
        for det in self.detect(batch):
            keep = det["scores"] >= self.score_thresh
            out.append({k: v[keep] for k, v in det.items()})
        return out

    def loss(self, batch: torch.Tensor, target: Any, *, reduction: str = "mean") -> torch.Tensor:
        check_batch(batch, self.name)
        check_reduction(reduction, self.name)
        targets = [
            {"boxes": t["boxes"].to(batch.device, torch.float32).reshape(-1, 4),
             "labels": t["labels"].to(batch.device, torch.int64).reshape(-1)}
            for t in _check_targets(self.name, target, batch.shape[0])
        ]
        with self._loss_mode():
            if reduction == "none":
                per = [sum(self.net([img], [t]).values()) for img, t in zip(batch, targets, strict=True)]
                return torch.stack(per)
            total = sum(self.net(list(batch), targets).values())
        return total * batch.shape[0] if reduction == "sum" else total

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self._config, "score_thresh": self.score_thresh}


def torchvision_detector(
    name: str,
    *,
    weights: str | None = None,
    arch: str = "resnet50_fpn",
    min_size: int = 800,
    max_size: int = 1333,
    score_thresh: float = 0.5,
    device: str = "cpu",
) -> TorchvisionDetector:
    """Build the detector ``name`` ("fcos", "fasterrcnn", "retinanet") from a weights file.

    Raises:
        WeightsError: no ``weights`` given, the file is missing, or it does not fit ``arch``.
        InvalidArgumentError: unknown ``arch``.
    """
    archs = _ARCHS[name]
    if arch not in archs:
        msg = f"task {name!r}: arch={arch!r} is not allowed; choose {' | '.join(map(repr, archs))}"
        raise InvalidArgumentError(msg, argument="arch", allowed=tuple(archs))
    builder, filename = archs[arch]
    if weights is None:
        msg = (
            f"task {name!r} needs a COCO weights file (nothing is downloaded): pass weights=PATH, "
            f"e.g. torchvision's {filename} (npp train --task-option weights=PATH)"
        )
        raise WeightsError(msg)
    state = load_state_dict(weights, task=name)
    import torchvision.models.detection as det
    from torchvision.ops import FrozenBatchNorm2d

    net = getattr(det, builder)(weights=None, weights_backbone=None, min_size=min_size, max_size=max_size)
    # Frozen batch norm, as torchvision uses for pretrained detectors: the statistics never
    # move even while the loss flags are on (FrozenBatchNorm2d ignores num_batches_tracked).
    _freeze_batch_norm(net, FrozenBatchNorm2d)
    _load_into(net, state, task=name, path=weights)
    config = {"weights": str(weights), "arch": arch, "min_size": min_size, "max_size": max_size, "device": device}
    return TorchvisionDetector(net.to(device), name=name, score_thresh=score_thresh, config=config)


def _freeze_batch_norm(module: torch.nn.Module, frozen: type) -> None:
    for name, child in module.named_children():
        if isinstance(child, torch.nn.BatchNorm2d):
            setattr(module, name, frozen(child.num_features, eps=child.eps))
        else:
            _freeze_batch_norm(child, frozen)


class MtcnnFaces(Detector):
    """MTCNN face detection (facenet-pytorch; weights ship with the package).

    ``score`` runs the full cascade (P-, R-, O-Net with NMS). ``loss`` is differentiable:
    every target box is cut out of the batch with ``roi_align`` (24² for R-Net, 48² for O-Net)
    and scored by cross-entropy towards "face", plus O-Net's box regression towards the box
    itself (smooth L1). Images without target boxes add nothing.
    """

    name = "mtcnn"

    def __init__(self, *, min_face_size: int = 20, thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
                 device: str = "cpu") -> None:
        from facenet_pytorch import MTCNN

        self.mtcnn = freeze(MTCNN(min_face_size=min_face_size, thresholds=list(thresholds), keep_all=True,
                                  select_largest=False, device=torch.device(device)))
        self.min_face_size = min_face_size
        self.thresholds = tuple(thresholds)
        self.device = device

    def modules(self) -> list[Any]:
        return [self.mtcnn]

    def to(self, device: Any) -> MtcnnFaces:
        self.mtcnn.to(device)
        self.mtcnn.device = torch.device(device)  # the cascade allocates on this device
        self.device = str(device)
        return self

    def detect(self, batch: torch.Tensor) -> list[dict]:
        check_batch(batch, self.name)
        imgs = (batch.detach().clamp(0, 1) * 255.0).round().permute(0, 2, 3, 1).contiguous()
        boxes, probs = self.mtcnn.detect(imgs)
        out = []
        for b, p in zip(boxes, probs, strict=True):
            if b is None:
                out.append({"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
                            "scores": torch.zeros(0)})
            else:
                b = torch.as_tensor(b.astype("float32"))
                out.append({"boxes": b, "labels": torch.ones(len(b), dtype=torch.int64),
                            "scores": torch.as_tensor(p.astype("float32"))})
        return out

    def reference(self, batch: torch.Tensor) -> list[dict]:
        return self.detect(batch)

    def loss(self, batch: torch.Tensor, target: Any, *, reduction: str = "mean") -> torch.Tensor:
        from torchvision.ops import roi_align

        check_batch(batch, self.name)
        check_reduction(reduction, self.name)
        targets = _check_targets(self.name, target, batch.shape[0])
        rois = [t["boxes"].to(batch.device, batch.dtype).reshape(-1, 4) for t in targets]
        counts = torch.tensor([len(r) for r in rois], device=batch.device)
        per = torch.zeros(batch.shape[0], device=batch.device, dtype=batch.dtype)
        if int(counts.sum()) == 0:
            return reduce(per + 0.0 * batch.sum(), reduction)
        x = (batch * 255.0 - 127.5) * 0.0078125  # MTCNN's own input normalisation
        owner = torch.repeat_interleave(torch.arange(batch.shape[0], device=batch.device), counts)
        crops24 = roi_align(x, rois, output_size=(24, 24), aligned=True)
        crops48 = roi_align(x, rois, output_size=(48, 48), aligned=True)
        _, p_r = self.mtcnn.rnet(crops24)
        reg_o, _, p_o = self.mtcnn.onet(crops48)
        eps = 1e-6
        face = -(p_r[:, 1].clamp_min(eps).log() + p_o[:, 1].clamp_min(eps).log())
        box = F.smooth_l1_loss(reg_o, torch.zeros_like(reg_o), reduction="none").sum(dim=1)
        per = per.index_add(0, owner, face + box)
        per = per / counts.clamp_min(1)
        return reduce(per, reduction)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "min_face_size": self.min_face_size,
                "thresholds": list(self.thresholds), "device": self.device}
