"""Downstream task networks: what the compressed images are for.

A task wraps a frozen pretrained network. Training uses ``loss`` (differentiable in the
input); evaluation uses ``reference`` and ``score`` (or ``measure``, which adds more per-image
metrics in the same pass). When the data has no labels the target is the network's own
prediction on the uncompressed image (``reference``), so accuracy means agreement with the
uncompressed prediction.

Targets, by kind:
    * classification: labels, an int64 tensor (N,) (cross-entropy), or a ``reference``,
      float probabilities (N, C) (KL divergence to it);
    * detection: a list of N dicts ``{"boxes": (K, 4) float xyxy pixels, "labels": (K,) int64}``
      (COCO annotations or a ``reference``, which also carries ``"scores"``); detection tasks
      also have ``detect(batch)``, and ``measure`` returns those detections (key
      ``"detections"``) so evaluation can compute dataset-level COCO mAP;
    * segmentation, pose: a list of N dicts, the ``reference`` on the uncompressed image.

Evaluation-only tasks (``trainable = False``, subclasses of :class:`EvaluationTask`: person
segmentation and pose, run by MediaPipe outside torch) have no gradient: ``loss`` raises,
and ``npp train`` refuses them (:func:`require_trainable`). A task may return NaN as the
score of an image it cannot judge (e.g. no person in the uncompressed image); evaluation
leaves such images out of that task's curves.

Plugins add tasks through ``npp_register_tasks(register)`` with ``register(name, factory)``;
the built-in ones are in :mod:`npp_plugin.tasks.builtin`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import InvalidArgumentError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["EvaluationTask", "Task", "check_batch", "freeze", "fused_channels_last", "require_trainable"]


class Task(ABC):
    """A frozen network and how to score it.

    Inputs are always (N, 3, H, W) float RGB in [0, 1]; the task applies its own
    normalisation and resizing. The network is in eval mode with ``requires_grad=False`` on
    every parameter, but ``loss`` is differentiable with respect to the input batch
    (evaluation-only tasks, :class:`EvaluationTask`, have no loss).
    """

    name: ClassVar[str] = ""
    #: "classification", "detection", "segmentation" or "pose"
    kind: ClassVar[str] = ""
    #: False for evaluation-only tasks: no differentiable ``loss``, refused by ``npp train``.
    trainable: ClassVar[bool] = True
    #: About how many pixels the network looks at (its input transform's output), or None
    #: (any size): ``npp_refine`` shows it larger images as block means of about this size.
    input_pixels: ClassVar[int | None] = None

    @abstractmethod
    def reference(self, batch: torch.Tensor) -> Any:
        """The target for each image, from the network's prediction on ``batch``
        (uncompressed images). For classifiers: the softmax probabilities (N, C)."""

    @abstractmethod
    def loss(self, batch: torch.Tensor, target: Any, *, reduction: str = "mean") -> torch.Tensor:
        """Differentiable task loss of ``batch`` (e.g. decoded images) against ``target``
        (labels, or a ``reference``): cross-entropy for labels, KL for soft references."""

    @abstractmethod
    def score(self, batch: torch.Tensor, target: Any) -> torch.Tensor:
        """Per-image score in [0, 1] (top-1 correct / agreement, or per-image AP), shape (N,)."""

    def measure(self, batch: torch.Tensor, target: Any) -> dict[str, Any]:
        """Per-image metrics in one pass: ``{"score": (N,), other (N,) metrics ...}``, higher
        is better; detection tasks add ``"detections"`` (their ``detect`` output). The
        default is ``{"score": self.score(batch, target)}``."""
        return {"score": self.score(batch, target)}

    def to(self, device: Any) -> Task:
        """Move the network to ``device`` (returns ``self``)."""
        for module in self.modules():
            module.to(device)
        return self

    def modules(self) -> list[Any]:
        """The ``torch.nn.Module`` objects this task runs (for ``to`` and freezing checks)."""
        return []

    def get_config(self) -> dict[str, Any]:
        return {"task": self.name, "kind": self.kind}

    def __repr__(self) -> str:
        cfg = {k: v for k, v in self.get_config().items() if k not in ("task", "kind")}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in cfg.items())})"


class EvaluationTask(Task):
    """A task that only scores (no gradient): ``loss`` raises, ``npp train`` refuses it."""

    trainable = False

    def loss(self, batch: Any, target: Any, *, reduction: str = "mean") -> Any:
        raise InvalidArgumentError(_not_trainable(self), argument="task", allowed="a trainable task")


def _not_trainable(task: Task) -> str:
    return (f"task {task.name!r} ({task.kind}) is evaluation-only: it has no differentiable loss to train "
            "against; use it with npp eval, and train on a classifier or detector")


def require_trainable(task: Task, *, who: str) -> Task:
    """Return ``task``, or raise ``InvalidArgumentError`` (naming ``who``) if it is
    evaluation-only."""
    if not getattr(task, "trainable", True):
        msg = f"{who}: {_not_trainable(task)}"
        raise InvalidArgumentError(msg, argument="task", allowed="a trainable task")
    return task


def freeze(module: Any) -> Any:
    """Eval mode and ``requires_grad=False`` on every parameter; returns ``module``."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def fused_channels_last(net: Any) -> Any:
    """A traced copy of ``net`` with each batch norm folded into its convolution, in
    channels-last memory: the same outputs up to float rounding, forward and backward faster
    on CPU. None where the network cannot be traced. Its tensors serve autograd (made
    outside inference mode), as the loops that run such copies need."""
    import torch
    from torch.fx.experimental.optimization import fuse

    with torch.inference_mode(False):
        try:
            return fuse(net).to(memory_format=torch.channels_last)
        except Exception:  # an untraceable network: the caller runs it as it is
            return None


def check_batch(batch: Any, task: str) -> None:
    """Raise ``ShapeError`` / ``InvalidArgumentError`` unless ``batch`` is (N, 3, H, W) float."""
    from ..images import check_image_batch

    check_image_batch(batch, who=f"task {task!r}", values=False)


def check_reduction(reduction: str, task: str) -> None:
    if reduction not in ("mean", "sum", "none"):
        msg = f"task {task!r}: reduction={reduction!r} is not allowed; choose 'mean' | 'sum' | 'none'"
        raise InvalidArgumentError(msg, argument="reduction", allowed=("mean", "sum", "none"))


def reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    return values
