"""Learned proxy codecs on CompressAI: the differentiable stand-in for a standard codec.

Only this subpackage imports ``compressai`` (about 10 s to import), and only when a proxy
is built.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InvalidArgumentError
from ..images import check_image_batch

__all__ = ["ARCHS", "ProxyCodec", "proxy_codec"]

#: proxy name -> CompressAI class (Minnen 2018 joint, Minnen 2018 mean-scale, Ballé 2018)
ARCHS: dict[str, str] = {
    "mbt2018": "JointAutoregressiveHierarchicalPriors",
    "mbt2018_mean": "MeanScaleHyperprior",
    "bmshj2018_hyperprior": "ScaleHyperprior",
}
#: y is downsampled 16×, z 64×: inputs are padded to a multiple of 64
_MULTIPLE = 64


class ProxyCodec(nn.Module):
    r"""A CompressAI model with the project's contract: any input size, bits per image.

    .. code-block:: none

        x ─ pad ×64 (replicate) ─ g_a ─ y ─ h_a ─ z ─ Q ─ h_s ─ (means, scales)
                                        │                         │
                                        └──── Q ─ ŷ ─ g_s ─ x̂ ─ crop ─► "x_hat"
          likelihoods of ŷ and ẑ over the latents that cover x ─────────► "bits"

    In training mode quantisation is additive uniform noise (CompressAI's relaxation), which
    is what gives the straight-through step its gradients; in eval mode it rounds.

    Args:
        arch: a key of :data:`ARCHS`.
        N, M: CompressAI channel counts (paper: 192, 192; CPU: smaller).
        meta: what this proxy imitates (``codec``, ``qp``, ``lmbda``, ...), saved with it.

    Shape:
        - x: (B, 3, H, W) float in [0, 1], any H, W >= 1
        - output ``x_hat``: (B, 3, H, W); ``bits``: (B,); ``likelihoods``: {"y", "z"}
    """

    def __init__(self, arch: str = "mbt2018_mean", N: int = 128, M: int = 192, *, meta: dict | None = None) -> None:
        super().__init__()
        if arch not in ARCHS:
            msg = f"proxy: arch={arch!r} is not allowed; choose {' | '.join(map(repr, ARCHS))}"
            raise InvalidArgumentError(msg, argument="arch", allowed=tuple(ARCHS))
        for key, value in (("N", N), ("M", M)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 8:
                msg = f"proxy: {key} must be an integer >= 8, got {value!r}"
                raise InvalidArgumentError(msg, argument=key, allowed="integers >= 8")
        import compressai.models as cm

        self.arch, self.N, self.M = arch, N, M
        self.meta: dict[str, Any] = dict(meta or {})
        self.model = getattr(cm, ARCHS[arch])(N, M)

    def get_config(self) -> dict[str, Any]:
        return {"arch": self.arch, "N": self.N, "M": self.M}

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, N={self.N}, M={self.M}, meta={self.meta!r}"

    def forward(self, x: Tensor) -> dict[str, Any]:
        check_image_batch(x, who="proxy", values=False)
        h, w = x.shape[-2:]
        ph, pw = (-h) % _MULTIPLE, (-w) % _MULTIPLE
        xp = F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x
        out = self.model(xp)
        lik = out["likelihoods"]
        # count only the latents whose receptive field starts inside the image
        crop = {"y": (math.ceil(h / 16), math.ceil(w / 16)), "z": (math.ceil(h / 64), math.ceil(w / 64))}
        bits = sum(
            -torch.log2(v[..., : crop[k][0], : crop[k][1]].clamp_min(1e-9)).flatten(1).sum(dim=1)
            for k, v in lik.items()
        )
        return {"x_hat": out["x_hat"][..., :h, :w], "likelihoods": lik, "bits": bits}

    def aux_loss(self) -> Tensor:
        return self.model.aux_loss()

    def main_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if not n.endswith(".quantiles")]

    def aux_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if n.endswith(".quantiles")]

    def freeze(self) -> ProxyCodec:
        """No parameter gradients; keeps train-mode (noise) quantisation for the backward pass."""
        for p in self.parameters():
            p.requires_grad_(False)
        return self


def proxy_codec(
    *, arch: str = "mbt2018_mean", N: int = 128, M: int = 192, meta: dict | None = None, seed: int | None = None
) -> ProxyCodec:
    """Build a fresh :class:`ProxyCodec` (see its docstring).

    Args:
        seed: initialise the weights from this seed, leaving the global RNG untouched; None
            draws them from the global RNG (whose start state torch does not fix, so two
            processes would then get different proxies).
    """
    if seed is None:
        return ProxyCodec(arch, N, M, meta=meta)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ProxyCodec(arch, N, M, meta=meta)
