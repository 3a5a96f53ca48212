"""Per-image metrics: rate (bpp), fidelity (PSNR, MS-SSIM, FSIM) and prediction drift (KL).

All image metrics take (N, 3, H, W) float tensors in [0, 1] and return a float64 numpy array
(N,), one value per image, so rows can be written per image and aggregated later.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import InvalidArgumentError, ShapeError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "FIDELITY_METRICS",
    "bpp",
    "fidelity",
    "fsim",
    "kl_divergence",
    "ms_ssim",
    "ms_ssim_window",
    "psnr",
    "psnr_from_mse",
]

#: Names accepted by :func:`fidelity` (and ``npp eval --metrics``).
FIDELITY_METRICS = ("psnr", "ms_ssim", "fsim")


def bpp(nbytes: int | np.ndarray, height: int, width: int) -> np.ndarray | float:
    """Bits per pixel of a bitstream of ``nbytes`` bytes for an image of ``height``×``width``."""
    if height <= 0 or width <= 0:
        msg = f"bpp: image size must be positive, got {height}x{width}"
        raise InvalidArgumentError(msg, argument="size", allowed="height, width >= 1")
    return np.asarray(nbytes, dtype=np.float64) * 8.0 / (height * width)


def _check_pair(x: torch.Tensor, y: torch.Tensor, what: str) -> None:
    from ..images import check_image_batch

    check_image_batch(x, who=what, values=False)
    check_image_batch(y, who=what, values=False)
    if x.shape != y.shape:
        msg = f"{what}: expected two (N, 3, H, W) tensors of equal shape, got {tuple(x.shape)} and {tuple(y.shape)}"
        raise ShapeError(msg, actual_shape=tuple(y.shape), expected_shape="(N, 3, H, W) twice")


def psnr_from_mse(mse: float | np.ndarray, *, max_db: float = 100.0) -> float | np.ndarray:
    """PSNR in dB, peak 1.0, of mean squared errors (a float, or an array of them, one per
    image); an MSE of 0 gives ``max_db`` (a finite cap keeps means and JSON finite). The
    one PSNR formula of the package: :func:`psnr`, training and the proxies' reports use it."""
    floor = 10.0 ** (-max_db / 10.0)
    out = -10.0 * np.log10(np.maximum(np.asarray(mse, dtype=np.float64), floor))
    return float(out) if out.ndim == 0 else out


def psnr(x: torch.Tensor, y: torch.Tensor, *, max_db: float = 100.0) -> np.ndarray:
    """PSNR in dB per image over all RGB samples, peak 1.0; identical images give ``max_db``
    (see :func:`psnr_from_mse`)."""
    _check_pair(x, y, "psnr")
    mse = ((x.double() - y.double()) ** 2).flatten(1).mean(1)
    return psnr_from_mse(mse.cpu().numpy(), max_db=max_db)


def ms_ssim_window(height: int, width: int) -> int | None:
    """Gaussian window for 5-scale MS-SSIM: the standard 11 when the image allows it
    (side > 160), else the largest odd window that fits (side > 16·(win − 1)); ``None`` when
    even 3 does not fit (side <= 32)."""
    side = min(height, width)
    for win in (11, 9, 7, 5, 3):
        if side > 16 * (win - 1):
            return win
    return None


def ms_ssim(x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """MS-SSIM (pytorch-msssim, 5 scales) per image; window per :func:`ms_ssim_window`,
    NaN for images too small for any window."""
    from pytorch_msssim import ms_ssim as _ms_ssim

    _check_pair(x, y, "ms_ssim")
    win = ms_ssim_window(x.shape[-2], x.shape[-1])
    if win is None:
        return np.full(x.shape[0], np.nan)
    out = _ms_ssim(x.float(), y.float(), data_range=1.0, size_average=False, win_size=win)
    return out.double().cpu().numpy()


def fsim(x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """FSIMc (piq, chromatic) per image."""
    import piq

    _check_pair(x, y, "fsim")
    out = piq.fsim(x.float().clamp(0, 1), y.float().clamp(0, 1), data_range=1.0, reduction="none", chromatic=True)
    return out.double().cpu().numpy()


_FUNCS = {"psnr": psnr, "ms_ssim": ms_ssim, "fsim": fsim}


def fidelity(x: torch.Tensor, y: torch.Tensor, metrics: tuple[str, ...] = FIDELITY_METRICS) -> dict[str, np.ndarray]:
    """The named human-vision metrics of ``y`` against the original ``x``."""
    unknown = [m for m in metrics if m not in _FUNCS]
    if unknown:
        msg = f"unknown fidelity metric {unknown[0]!r}; choose from {', '.join(FIDELITY_METRICS)}"
        raise InvalidArgumentError(msg, argument="metrics", allowed=FIDELITY_METRICS)
    return {m: _FUNCS[m](x, y) for m in metrics}


def kl_divergence(p_ref: torch.Tensor, p_test: torch.Tensor, *, eps: float = 1e-12) -> np.ndarray:
    """KL(p_ref ‖ p_test) in nats per row of two (N, C) probability tensors.

    Unlike top-1 agreement it moves continuously with small changes of the prediction, so it
    resolves differences that a few hundred images of agreement cannot.
    """
    import torch

    if not (torch.is_tensor(p_ref) and torch.is_tensor(p_test)) or p_ref.shape != p_test.shape or p_ref.ndim != 2:
        shape = tuple(getattr(p_test, "shape", ()))
        msg = f"kl_divergence: expected two (N, C) probability tensors of equal shape, got {tuple(getattr(p_ref, 'shape', ()))} and {shape}"
        raise ShapeError(msg, actual_shape=shape, expected_shape="(N, C) twice", argument="probabilities")
    p = p_ref.double().clamp_min(0)
    q = p_test.double().clamp_min(eps)
    terms = torch.where(p > 0, p * (torch.log(p.clamp_min(eps)) - torch.log(q)), torch.zeros_like(p))
    return terms.sum(1).clamp_min(0).cpu().numpy()
