"""The straight-through step: the real codec's values forward, the proxy's gradients back.

Algorithm 1 of the paper, steps 2–4, as one reusable piece::

    x̄ ──► codec.roundtrip(x̄, qp)  ──► x̂_real, bits_real        (no gradient, any codec)
    x̄ ──► proxy(x̄)               ──► ŷ_proxy, bits_proxy      (differentiable)
    x̂   = swap(ŷ_proxy, x̂_real)        value of x̂_real, gradient of ŷ_proxy
    bits = swap(bits_proxy, bits_real)

``swap`` is an autograd function whose forward returns the real tensor itself (bit-exact,
unlike ``proxy + (real - proxy).detach()``, which rounds) and whose backward hands the
incoming gradient to the proxy's output unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .errors import InvalidArgumentError, ShapeError
from .images import check_image_batch

__all__ = ["CodecStep", "codec_step", "straight_through"]


class _Swap(torch.autograd.Function):
    @staticmethod
    def forward(ctx, proxy: torch.Tensor, real: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return real.detach().clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return grad, None


def straight_through(proxy: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """A tensor equal to ``real`` whose gradient flows into ``proxy`` as if it were ``proxy``.

    Raises:
        ShapeError: the two tensors differ in shape.
    """
    if proxy.shape != real.shape:
        msg = f"straight_through: proxy shape {tuple(proxy.shape)} differs from real shape {tuple(real.shape)}"
        raise ShapeError(msg, actual_shape=tuple(real.shape), expected_shape=str(tuple(proxy.shape)), argument="real")
    return _Swap.apply(proxy, real.to(dtype=proxy.dtype, device=proxy.device))


@dataclass
class CodecStep:
    """What one pass through the (real or proxy) codec produced.

    Attributes:
        x_hat: (N, 3, H, W) reconstruction used downstream (values: real codec, unless the
            proxy is used in both passes).
        bits: (N,) bits per image used in the loss (same rule).
        real_x_hat, real_bits: the real codec's output (None in proxy-only mode).
        proxy_x_hat, proxy_bits: the proxy's own output (detached), for tracking.
    """

    x_hat: torch.Tensor
    bits: torch.Tensor
    real_x_hat: torch.Tensor | None
    real_bits: torch.Tensor | None
    proxy_x_hat: torch.Tensor
    proxy_bits: torch.Tensor

    def bpp(self) -> torch.Tensor:
        """(N,) bits per pixel."""
        h, w = self.x_hat.shape[-2:]
        return self.bits / (h * w)


def codec_step(
    x_bar: torch.Tensor,
    *,
    codec: Any,
    qp: int,
    proxy: torch.nn.Module,
    proxy_only: bool = False,
    workers: int | None = None,
) -> CodecStep:
    """Compress ``x_bar`` (N, 3, H, W) in [0, 1] with ``codec`` at ``qp``, differentiably.

    Args:
        codec: any registered :class:`~npp_plugin.Codec` (its ``roundtrip`` is called).
        proxy: a module returning ``{"x_hat", "bits"}`` (a :class:`~npp_plugin.proxy.ProxyCodec`).
        proxy_only: the ablation "NPP+Minnen": the proxy's values in the forward pass too.
        workers: codec threads for this process (per DDP rank).
    """
    # values are not checked: a filter may overshoot [0, 1]; the codec gets x_bar clamped
    check_image_batch(x_bar, who="codec_step: x_bar", argument="x_bar", values=False)
    out = proxy(x_bar)
    if "x_hat" not in out or "bits" not in out:
        msg = "codec_step: the proxy must return a dict with 'x_hat' and 'bits'"
        raise InvalidArgumentError(msg, argument="proxy", allowed="ProxyCodec")
    p_hat, p_bits = out["x_hat"], out["bits"]
    if proxy_only:
        return CodecStep(p_hat.clamp(0, 1), p_bits, None, None, p_hat.detach(), p_bits.detach())
    with torch.no_grad():
        real, real_bits = codec.roundtrip(x_bar.detach().clamp(0, 1), qp=qp, workers=workers)
    x_hat = straight_through(p_hat, real)
    bits = straight_through(p_bits, real_bits.to(p_bits))
    return CodecStep(x_hat, bits, real, real_bits, p_hat.detach(), p_bits.detach())
