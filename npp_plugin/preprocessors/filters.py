"""Classical prefilters: the baselines any learned preprocessing must beat.

A low-pass filter before the encoder also saves bits (the codec has less high-frequency
energy to code) at some cost in task accuracy, so an NPP result means something only next to
these on the same images (their measured BD-rates are in docs/results.md).
They are registered as preprocessors like any other:

    ============  ==============================================================
    name          filter
    ============  ==============================================================
    ``blur05``    Gaussian, σ = 0.5 px
    ``blur10``    Gaussian, σ = 1.0 px
    ``blur15``    Gaussian, σ = 1.5 px
    ``blur20``    Gaussian, σ = 2.0 px
    ``gaussian``  Gaussian, ``sigma`` configurable (default 1.0)
    ``bilateral`` edge-preserving bilateral filter (``sigma_space``, ``sigma_color``)
    ``guided``    self-guided filter of He et al. (``radius``, ``eps``)
    ``blur_tuned`` Gaussian with σ chosen per QP (the anchor every NPP result is
                  compared with): the σ that minimised the real codec's
                  J = bpp + λ·KL on training photos (``npp search blur``); the table
                  ships as ``npp_plugin/weights/blur-tuned.json`` (``table=`` names
                  another), σ interpolated in the codec's normalised QP
    ============  ==============================================================

All but ``blur_tuned`` ignore the codec and QP (they are fixed operators); all work per
channel with reflect padding, in float, on (N, 3, H, W) batches in [0, 1].
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgumentError
from ..hookspecs import hookimpl
from .base import Preprocessor

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ..codec import Codec

__all__ = ["BilateralFilter", "GaussianBlur", "GuidedFilter", "TunedBlur"]


def _positive(component: str, key: str, value: Any, *, upper: float = 1e6) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        msg = f"preprocessor {component!r}: {key} must be a finite number in (0, {upper:g}], got {value!r}"
        raise InvalidArgumentError(msg, argument=key, allowed=f"(0, {upper:g}]")
    if not 0 < value <= upper:
        msg = f"preprocessor {component!r}: {key}={value} is out of range (0, {upper:g}]"
        raise InvalidArgumentError(msg, argument=key, allowed=f"(0, {upper:g}]")
    return float(value)


def _pad(x: torch.Tensor, r: int) -> torch.Tensor:
    import torch.nn.functional as F

    # reflect needs r < side; replicate is the fallback for tiny images
    mode = "reflect" if r < min(x.shape[-2:]) else "replicate"
    return F.pad(x, (r, r, r, r), mode=mode)


def _gaussian_kernel(sigma: float, dtype, device) -> torch.Tensor:
    import torch

    r = max(1, math.ceil(3.0 * sigma))
    t = torch.arange(-r, r + 1, dtype=dtype, device=device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


#: Above this many pixels per image a blur runs in bands of rows, so its padded copy and
#: intermediate stay small (a 12 MP float image is 144 MB per copy).
BAND_PIXELS = 1 << 21
BAND_ROWS = 256


def gaussian_blur(batch: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W) with radius ⌈3σ⌉ and reflect padding; large
    images in bands of rows with an r-row halo (the same result, bounded memory)."""
    import torch

    k = _gaussian_kernel(sigma, batch.dtype, batch.device)
    r = (k.numel() - 1) // 2
    h, w = batch.shape[-2:]
    taps = [float(v) for v in k]

    def blur(x: torch.Tensor) -> torch.Tensor:
        # sums of shifted slices: the same arithmetic as a depthwise convolution (bit for bit
        # here), about 8× faster on CPU, where torch's depthwise conv2d unfolds its input
        p = _pad(x, r)
        hh, ww = x.shape[-2:]
        t = p[..., :, :ww] * taps[0]
        for i in range(1, 2 * r + 1):
            t = t.add_(p[..., :, i : i + ww], alpha=taps[i])
        out = t[..., :hh, :] * taps[0]
        for i in range(1, 2 * r + 1):
            out = out.add_(t[..., i : i + hh, :], alpha=taps[i])
        return out

    if h * w <= BAND_PIXELS or r >= min(h, w):
        return blur(batch)
    grad = torch.is_grad_enabled() and batch.requires_grad
    out = [] if grad else torch.empty_like(batch)  # without autograd, no second copy for a cat
    for a in range(0, h, BAND_ROWS):
        b = min(a + BAND_ROWS, h)
        lo, hi = max(0, a - r), min(h, b + r)  # the halo; at the picture's edges its reflection
        band = blur(batch[..., lo:hi, :])[..., a - lo : b - lo, :]
        if grad:
            out.append(band)
        else:
            out[..., a:b, :] = band
    return torch.cat(out, dim=-2) if grad else out


def _box(x: torch.Tensor, r: int) -> torch.Tensor:
    import torch.nn.functional as F

    return F.avg_pool2d(_pad(x, r), kernel_size=2 * r + 1, stride=1)


class GaussianBlur(Preprocessor):
    """Gaussian low-pass filter.

    Args:
        sigma: standard deviation in pixels, in (0, 20].

    Shape:
        (N, 3, H, W) → (N, 3, H, W)
    """

    name = "gaussian"
    #: The output ignores codec and QP, so an evaluation may filter once per image.
    codec_independent = True

    def __init__(self, sigma: float = 1.0) -> None:
        self.sigma = _positive(self.name, "sigma", sigma, upper=20.0)

    def forward(self, batch: torch.Tensor, *, codec: Codec, qp: int) -> torch.Tensor:
        return gaussian_blur(batch, self.sigma)

    def get_config(self) -> dict[str, Any]:
        return {"preprocessor": self.name, "sigma": self.sigma}


class BilateralFilter(Preprocessor):
    """Edge-preserving bilateral filter (Tomasi & Manduchi 1998).

    Each output pixel is a mean over a (2r+1)² window weighted by spatial distance
    (``sigma_space``, pixels) and by RGB distance to the centre (``sigma_color``, in [0, 1]
    units), so flat regions are smoothed and edges kept. Radius r = ⌈2·sigma_space⌉.
    """

    name = "bilateral"
    codec_independent = True

    def __init__(self, sigma_space: float = 1.5, sigma_color: float = 0.1) -> None:
        self.sigma_space = _positive(self.name, "sigma_space", sigma_space, upper=10.0)
        self.sigma_color = _positive(self.name, "sigma_color", sigma_color, upper=10.0)

    def forward(self, batch: torch.Tensor, *, codec: Codec, qp: int) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        n, c, h, w = batch.shape
        r = max(1, math.ceil(2.0 * self.sigma_space))
        k = 2 * r + 1
        patches = F.unfold(_pad(batch, r), kernel_size=k).view(n, c, k * k, h, w)
        t = torch.arange(-r, r + 1, dtype=batch.dtype, device=batch.device)
        d2 = (t.view(-1, 1) ** 2 + t.view(1, -1) ** 2).reshape(1, 1, k * k, 1, 1)
        spatial = torch.exp(-d2 / (2 * self.sigma_space**2))
        diff2 = ((patches - batch.unsqueeze(2)) ** 2).sum(1, keepdim=True)
        weight = spatial * torch.exp(-diff2 / (2 * self.sigma_color**2))
        return (weight * patches).sum(2) / weight.sum(2)

    def get_config(self) -> dict[str, Any]:
        return {"preprocessor": self.name, "sigma_space": self.sigma_space, "sigma_color": self.sigma_color}


class GuidedFilter(Preprocessor):
    """Self-guided filter (He, Sun & Tang 2013), per channel.

    A local linear model q = a·I + b in each (2r+1)² window, a = var/(var + eps): smooths where
    the local variance is below ``eps`` and keeps structure above it.
    """

    name = "guided"
    codec_independent = True

    def __init__(self, radius: int = 2, eps: float = 1e-3) -> None:
        if isinstance(radius, bool) or not isinstance(radius, int) or not 1 <= radius <= 32:
            msg = f"preprocessor {self.name!r}: radius must be an integer in 1..32, got {radius!r}"
            raise InvalidArgumentError(msg, argument="radius", allowed=(1, 32))
        self.radius = radius
        self.eps = _positive(self.name, "eps", eps, upper=1.0)

    def forward(self, batch: torch.Tensor, *, codec: Codec, qp: int) -> torch.Tensor:
        r = self.radius
        mean = _box(batch, r)
        var = (_box(batch * batch, r) - mean * mean).clamp_min(0)
        a = var / (var + self.eps)
        b = mean - a * mean
        return _box(a, r) * batch + _box(b, r)

    def get_config(self) -> dict[str, Any]:
        return {"preprocessor": self.name, "radius": self.radius, "eps": self.eps}


class TunedBlur(Preprocessor):
    """Gaussian blur whose σ depends on the QP, from a table made by ``npp search blur``.

    Args:
        table: path of a ``blur-tuned.json``; None → the shipped table.

    The table's σ per QP is interpolated linearly in ``codec.normalized_qp(qp)`` (held at the
    ends); σ 0 means no filtering at that QP. The table records the codec, task and photos it
    was tuned on (``get_config()["tuned_for"]``); on another codec it applies by normalised QP.
    """

    name = "blur_tuned"

    def __init__(self, table: str | None = None) -> None:
        import json
        from pathlib import Path

        from ..errors import WeightsError

        path = Path(table) if table is not None else Path(__file__).parent.parent / "weights" / "blur-tuned.json"
        try:
            doc = json.loads(path.read_text())
            sig = {int(q): float(s) for q, s in doc["sigma"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            msg = f"preprocessor 'blur_tuned': cannot read the σ table {str(path)!r}: {exc}; make one with `npp search blur`"
            raise WeightsError(msg) from exc
        if doc.get("format") != "npp_plugin.blur-tuned/1" or not sig or any(not 0 <= s <= 20 for s in sig.values()):
            msg = f"preprocessor 'blur_tuned': {str(path)!r} is not a blur-tuned table (format npp_plugin.blur-tuned/1, σ in [0, 20])"
            raise WeightsError(msg)
        self.path, self.sigmas, self.tuned_for = path, dict(sorted(sig.items())), {
            "codec": doc.get("codec"), "task": doc.get("task")}
        lam = (doc.get("provenance") or {}).get("lambdas") or {}
        #: λ per QP the σ were tuned at (the plain codec's rate–task slope), when recorded
        self.lambdas = {int(q): float(v) for q, v in sorted(lam.items(), key=lambda kv: int(kv[0]))}

    @staticmethod
    def by_normalized_qp(values: dict[int, float], codec: Codec, qp: int) -> float:
        """A per-QP table (QPs of the codec family it was made for, read in ``codec``'s own
        normalisation range) interpolated linearly at ``codec.normalized_qp(qp)``, held at
        the ends: how a table made for BPG applies to JPEG, HEIF or VVC."""
        import numpy as np

        lo, hi = codec.qp_norm_range or codec.qp_range
        keys = sorted(values)
        qs = [min(1.0, max(0.0, (q - lo) / (hi - lo))) for q in keys]
        return float(np.interp(codec.normalized_qp(qp), qs, [values[q] for q in keys]))

    def sigma(self, codec: Codec, qp: int) -> float:
        return self.by_normalized_qp(self.sigmas, codec, qp)

    def forward(self, batch: torch.Tensor, *, codec: Codec, qp: int) -> torch.Tensor:
        s = self.sigma(codec, qp)
        return batch if s <= 0 else gaussian_blur(batch, s)

    def get_config(self) -> dict[str, Any]:
        return {"preprocessor": self.name, "table": str(self.path), "sigma": {str(k): v for k, v in self.sigmas.items()},
                "tuned_for": self.tuned_for}


def _fixed_blur(sigma: float):
    def factory(**config: Any) -> GaussianBlur:
        if config:
            msg = f"preprocessor 'blur{round(sigma * 10):02d}' takes no options (got {sorted(config)}); use 'gaussian' with sigma="
            raise InvalidArgumentError(msg, argument=sorted(config)[0], allowed="no options")
        return GaussianBlur(sigma)

    return factory


@hookimpl
def npp_register_preprocessors(register) -> None:
    for sigma in (0.5, 1.0, 1.5, 2.0):
        register(f"blur{round(sigma * 10):02d}", _fixed_blur(sigma))
    register("gaussian", GaussianBlur)
    register("bilateral", BilateralFilter)
    register("guided", GuidedFilter)
    register("blur_tuned", TunedBlur)
