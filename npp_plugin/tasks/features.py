# SPDX-License-Identifier: GPL-2.0-or-later
"""A reader-agnostic task: keep a pretrained network's early features, not its decision.

``mobilenet_v2_stem`` is MobileNetV2's first ``depth`` feature blocks (default 7: 28×28×32
maps at 224², 55 k parameters, no classifier head). Its loss is the relative squared
error of those feature maps against the uncompressed image's,

    loss = mean((F(decoded) − F(image))²) / mean(F(image)²)        (per image),

so ``npp_refine:task=mobilenet_v2_stem`` refines for what every ImageNet network's early
layers see rather than for one classifier's output: on the held-out photos −16.1 / −13.1 /
−15.9 % KL BD-rate against ``blur_tuned`` for MobileNetV2, EfficientNet-Lite0 and
EfficientNet-Lite2, no classifier needed (docs/distillation.md, "Does the teacher need the
classifier?"; the depth was chosen there, on ``corpus:dev``).
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import InvalidArgumentError
from . import Task, check_batch, check_reduction, freeze, fused_channels_last, reduce

__all__ = ["FeatureStem", "mobilenet_v2_stem"]

#: MobileNetV2's feature stack: a stem conv, 17 inverted-residual blocks, a last 1×1 conv
MAX_DEPTH = 19


class FeatureStem(Task):
    """The first blocks of a frozen network as a task: relative feature error (module doc).

    Args:
        net: the feature blocks (made frozen here).
        name: task name.
        mean, std: per-channel normalisation of [0, 1] RGB the network expects.
        device: where the network runs.
    """

    kind = "features"
    #: what the ImageNet networks it comes from were trained on
    input_pixels = 224 * 224

    def __init__(self, net: torch.nn.Module, *, name: str, mean: tuple[float, ...], std: tuple[float, ...],
                 device: str = "cpu", config: dict[str, Any] | None = None) -> None:
        self.name = name  # type: ignore[misc]
        self.net = freeze(net).to(device)
        self.device = device
        self._mean = torch.tensor(mean).view(1, 3, 1, 1)
        self._std = torch.tensor(std).view(1, 3, 1, 1)
        self._config = dict(config or {})
        self._channels_last = False

    def modules(self) -> list[Any]:
        return [self.net]

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        """The feature maps of ``batch`` in [0, 1]; differentiable in ``batch``."""
        check_batch(batch, self.name)
        x = (batch - self._mean.to(batch)) / self._std.to(batch)
        return self.net(x.contiguous(memory_format=torch.channels_last) if self._channels_last else x)

    def fused(self) -> FeatureStem:
        """A copy with each batch norm folded into its convolution, channels-last: the same
        features up to float rounding, faster on CPU (what ``npp_refine`` runs)."""
        net = fused_channels_last(self.net)
        if net is None:
            return self
        with torch.inference_mode(False):  # its tensors must serve autograd later
            out = FeatureStem(net, name=self.name, mean=tuple(self._mean.flatten().tolist()),
                              std=tuple(self._std.flatten().tolist()), device=self.device, config=self._config)
        out._channels_last = True
        return out

    def reference(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The image's feature maps and, per image, their mean square (the loss's scale)."""
        with torch.no_grad():
            f = self.features(batch).float()
        return f, f.pow(2).mean(dim=(1, 2, 3)).clamp_min(1e-8)

    def loss(self, batch: torch.Tensor, target: Any, *, reduction: str = "mean") -> torch.Tensor:
        check_reduction(reduction, self.name)
        f, energy = target
        diff = self.features(batch).float() - f.to(batch.device)
        return reduce(diff.pow(2).mean(dim=(1, 2, 3)) / energy.to(batch.device), reduction)

    def score(self, batch: torch.Tensor, target: Any) -> torch.Tensor:
        """Feature fidelity, higher is better: 1 − relative error (1 for the image itself)."""
        with torch.no_grad():
            return 1.0 - self.loss(batch, target, reduction="none")

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self._config, "device": self.device}


def mobilenet_v2_stem(*, depth: int = 7, weights: str | None = None, device: str = "cpu") -> FeatureStem:
    """MobileNetV2's first ``depth`` feature blocks (1–19), from the same packaged weights as
    the ``mobilenet_v2`` task."""
    from .classification import _IMAGENET_MEAN, _IMAGENET_STD, mobilenet_v2

    if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= MAX_DEPTH:
        msg = f"task 'mobilenet_v2_stem': depth must be an integer in [1, {MAX_DEPTH}], got {depth!r}"
        raise InvalidArgumentError(msg, argument="depth", allowed=(1, MAX_DEPTH))
    blocks = list(mobilenet_v2(weights=weights).net.features)[:depth]
    return FeatureStem(torch.nn.Sequential(*blocks), name="mobilenet_v2_stem", mean=_IMAGENET_MEAN,
                       std=_IMAGENET_STD, device=device, config={"depth": depth, "weights": weights})
