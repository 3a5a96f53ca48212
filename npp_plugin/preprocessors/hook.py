# SPDX-License-Identifier: GPL-2.0-or-later
"""The built-in plugin "npp": the trained neural preprocessor as a pre-encode hook.

    >>> codec = get_codec("bpg")
    >>> data = codec.encode(img, qp=37, preprocess=get_preprocessor("npp", weights="bpg.npp.pt"))
    >>> data = codec.encode(img, qp=37, preprocess="npp")   # $NPP_WEIGHTS or shipped weights

Works with every codec: the network is conditioned on ``codec.normalized_qp(qp)``. Importing
this module is cheap (torch is imported when a preprocessor is built), so plugin discovery
stays fast.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgumentError
from ..hookspecs import hookimpl
from .base import Preprocessor

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ..codec import Codec
    from .model import NppNet
    from .weights import NppWeights

__all__ = ["NppPreprocessor", "npp_filter", "npp_preprocessor", "npp_register_preprocessors"]


def npp_filter(net: Any, batch: torch.Tensor, *, codec: Codec, qp: int, **known: Any) -> torch.Tensor:
    """``net`` (an NPP network, or a DDP wrapper of one) applied to ``batch`` for ``codec``
    at ``qp``: the one place where an NPP meets the operating point it is conditioned on,
    ``codec.normalized_qp(qp)`` for every image of the batch (a network without QA layers
    ignores it). Differentiable: training calls it with gradients, :class:`NppPreprocessor`
    under inference mode, so the hook and training condition the network alike. ``known``
    passes what a network accepts precomputed for these images (the saliency blur's
    ``saliency`` and ``bank``, which a search over fixed crops computes once)."""
    return net(batch, codec.normalized_qp(qp), **known)


def _device(device: Any) -> torch.device:
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        msg = (
            f"preprocessor 'npp': device {device!r} is not a torch device; use 'cpu' or 'cuda[:N]'"
        )
        raise InvalidArgumentError(
            msg, argument="device", allowed=["cpu", "cuda", "cuda:N"]
        ) from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            msg = "preprocessor 'npp': device 'cuda' was asked for but CUDA is not available here; use device='cpu'"
            raise InvalidArgumentError(msg, argument="device", allowed=["cpu"])
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            n = torch.cuda.device_count()
            msg = f"preprocessor 'npp': device {device!r} does not exist ({n} CUDA devices)"
            raise InvalidArgumentError(
                msg, argument="device", allowed=[f"cuda:{i}" for i in range(n)]
            )
    elif dev.type != "cpu":
        msg = f"preprocessor 'npp': device type {dev.type!r} is not supported; use 'cpu' or 'cuda[:N]'"
        raise InvalidArgumentError(msg, argument="device", allowed=["cpu", "cuda", "cuda:N"])
    return dev


class NppPreprocessor(Preprocessor):
    """Run an :class:`~npp_plugin.preprocessors.model.NppNet` before a codec's encoder.

    Args:
        net: the network. The preprocessor runs its own eval-mode copy (BatchNorm uses the
            running statistics), so wrapping a network that is still training neither
            switches it to eval mode nor follows its later updates.
        weights: the weights file it came from (recorded in :meth:`get_config`).
        device: ``"cpu"`` (default) or ``"cuda[:N]"`` when available.
        copy: False to use ``net`` itself (it is then moved, set to eval mode and
            converted to channels-last in place).

    Shape:
        - batch: (N, 3, H, W) float in [0, 1] on any device → same shape, dtype and device.
    """

    name = "npp"

    def __init__(
        self,
        net: NppNet,
        *,
        weights: NppWeights | None = None,
        device: Any = "cpu",
        copy: bool = True,
    ) -> None:
        import copy as _copy

        import torch

        from .model import is_npp_net

        if not is_npp_net(net):
            msg = f"preprocessor 'npp': expected an NppNet, got {type(net).__name__}"
            raise InvalidArgumentError(msg, argument="net", allowed="NppNet")
        self.device = _device(device)
        if copy:
            net = _copy.deepcopy(net)
        # channels_last: oneDNN's CPU convolutions are faster in this layout
        self.net = net.to(self.device).eval().to(memory_format=torch.channels_last)
        self.weights = weights

    @classmethod
    def from_weights(
        cls, source: Any = None, *, device: Any = "cpu", config: str | None = None
    ) -> NppPreprocessor:
        """Load weights (see :func:`~npp_plugin.preprocessors.weights.resolve_weights`)."""
        from .weights import load_weights

        dev = _device(device)
        net, weights = load_weights(source, device=dev, config=config)
        return cls(net, weights=weights, device=dev, copy=False)

    def forward(self, batch: torch.Tensor, *, codec: Codec, qp: int) -> torch.Tensor:
        import torch

        with torch.inference_mode():
            x = batch.to(device=self.device, dtype=torch.float32).contiguous(
                memory_format=torch.channels_last
            )
            out = npp_filter(self.net, x, codec=codec, qp=qp)
        return out.to(device=batch.device, dtype=batch.dtype)

    def get_config(self) -> dict[str, Any]:
        w = self.weights
        return {
            "preprocessor": self.name,
            "weights": os.fspath(w.path) if w is not None and w.path is not None else None,
            "sha256": w.sha256 if w is not None else None,
            "net": self.net.get_config(),
            "device": str(self.device),
        }


def npp_preprocessor(
    *, weights: Any = None, device: Any = "cpu", config: str | None = None
) -> NppPreprocessor:
    """Factory registered as "npp".

    Args:
        weights: a weights file path or shipped name; None → ``$NPP_WEIGHTS``, then the
            shipped weights (``<config>.npp.pt`` or ``default.npp.pt``).
        device: ``"cpu"`` or ``"cuda[:N]"``.
        config: expected network configuration (``paper``, ``small``, ``tiny``).

    Raises:
        WeightsError: no weights found (never a random network), or invalid weights; the
            message says how to train (``npp train``) or pass them.
        InvalidArgumentError: unknown or unavailable device.
    """
    return NppPreprocessor.from_weights(weights, device=device, config=config)


@hookimpl
def npp_register_preprocessors(register) -> None:
    register("npp", npp_preprocessor)
