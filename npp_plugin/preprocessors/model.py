# SPDX-License-Identifier: GPL-2.0-or-later
"""The NPP network: a pixel branch and a U-Net branch, summed, with quantization adaptation.

Operating point
---------------
The network is conditioned on one scalar ``q`` in [0, 1]: the codec's
:meth:`~npp_plugin.Codec.normalized_qp`, ``(qp - lo) / (hi - lo)`` over the codec's
``qp_norm_range`` (default: its ``qp_range``), clipped to [0, 1]. Lower ``q`` means better
quality, as for HEVC's QP.

* BPG / HEIF: ``qp`` is HEVC's QP, 0..51, so ``q = qp / 51`` (QP 28 → 0.549, QP 37 → 0.725).
* JPEG (``npp-jpeg``): ``qp`` 0..51 is mapped to a JPEG quality by HEVC's step law (the
  quantiser scale doubles every 6 QP; QP 30 ↔ quality 50, QP 37 ↔ quality 22), so
  ``q = qp / 51`` there too and a JPEG quality ``Q`` corresponds to the ``qp`` whose
  ``qp_to_quality(qp)`` is ``Q``.
* VVC: ``qp`` is VVC's QP, 0..63, whose quantiser step equals HEVC's at the same QP, so the
  VVC plugin declares ``qp_norm_range = (0, 51)``: ``q = min(qp / 51, 1)`` and a BPG-trained
  network treats VVC QP 37 like BPG QP 37 (the paper's BPG-to-VVC transfer).

The paper's code feeds the MLP with ``lambda / 8`` of the sampled (QP, lambda) pair instead;
any monotone function of the QP is equivalent up to what the MLP learns, and the normalised
QP works for every codec without a per-codec lambda table.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import _moved
from ..errors import InvalidArgumentError, ShapeError
from ..images import check_image_batch

__all__ = ["CONFIGS", "NppConfig", "NppNet", "build_net", "config_from_dict", "count_parameters", "describe_configs",
           "is_npp_net"]


@dataclass(frozen=True)
class NppConfig:
    """Hyperparameters of :class:`NppNet`; stored in every weights file.

    Attributes:
        name: the named configuration this derives from (``paper``, ``small``, ``tiny``).
        widths: U-Net channels per level (full resolution first); the bottleneck has twice
            the last width. ``len(widths)`` levels → input padded to a multiple of ``2**levels``.
        qa: quantization adaptation layers present (``False`` for training stage 2).
        qa_hidden: hidden units of each QA MLP.
        base_sigma: ``((q, σ), ...)`` knots of a Gaussian blur applied first, σ interpolated
            linearly in the operating point ``q`` and held at the ends (the tuned blur's table,
            :class:`~npp_plugin.preprocessors.filters.TunedBlur`); empty: no blur. The
            branches then add their change to the blurred image, so a fresh network is
            exactly that blur.
        gain: the branches' change (pixel branch minus its input, plus the U-Net's output) is
            multiplied by this before it is added (1: the paper's sum). Distillation sets it
            on development photos: a student fitted by squared error predicts the teacher's
            change shrunk towards zero where it is unsure.
        description: one line for ``npp npp-info``.
    """

    name: str
    widths: tuple[int, ...]
    qa: bool = True
    qa_hidden: int = 64
    base_sigma: tuple[tuple[float, float], ...] = ()
    gain: float = 1.0
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        widths = tuple(self.widths)
        if not widths or any(
            isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths
        ):
            msg = f"NppNet: widths must be a non-empty sequence of positive integers, got {self.widths!r}"
            raise InvalidArgumentError(msg, argument="widths", allowed="positive integers")
        if (
            isinstance(self.qa_hidden, bool)
            or not isinstance(self.qa_hidden, int)
            or self.qa_hidden < 1
        ):
            msg = f"NppNet: qa_hidden must be a positive integer, got {self.qa_hidden!r}"
            raise InvalidArgumentError(msg, argument="qa_hidden", allowed="integers >= 1")
        if not isinstance(self.qa, bool):
            msg = f"NppNet: qa must be True or False, got {self.qa!r}"
            raise InvalidArgumentError(msg, argument="qa", allowed=(True, False))
        try:
            knots = tuple(sorted((float(q), float(sg)) for q, sg in self.base_sigma))
        except (TypeError, ValueError) as exc:
            msg = f"NppNet: base_sigma must be (q, sigma) pairs, got {self.base_sigma!r}"
            raise InvalidArgumentError(msg, argument="base_sigma", allowed="(q, sigma) pairs") from exc
        if not all(0.0 <= q <= 1.0 and 0.0 < sg <= MAX_BASE_SIGMA for q, sg in knots):
            msg = f"NppNet: base_sigma knots need q in [0, 1] and sigma in (0, {MAX_BASE_SIGMA}], got {knots!r}"
            raise InvalidArgumentError(msg, argument="base_sigma", allowed=f"q in [0, 1], sigma in (0, {MAX_BASE_SIGMA}]")
        if isinstance(self.gain, bool) or not isinstance(self.gain, (int, float)) or not 0 < self.gain <= 100:
            msg = f"NppNet: gain must be a number in (0, 100], got {self.gain!r}"
            raise InvalidArgumentError(msg, argument="gain", allowed="(0, 100]")
        object.__setattr__(self, "widths", widths)
        object.__setattr__(self, "base_sigma", knots)
        object.__setattr__(self, "gain", float(self.gain))

    @property
    def levels(self) -> int:
        return len(self.widths)

    @property
    def multiple(self) -> int:
        """Height and width are padded up to a multiple of this."""
        return 2**self.levels

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["widths"] = list(self.widths)
        # the blur in front and the gain are stored only when used: files of networks
        # without them stay as they were
        d["base_sigma"] = [list(k) for k in self.base_sigma]
        for key, default in (("base_sigma", []), ("gain", 1.0)):
            if d[key] == default:
                del d[key]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NppConfig:
        known = {"name", "widths", "qa", "qa_hidden", "base_sigma", "gain", "description"}
        unknown = sorted(set(d) - known)
        if unknown:
            msg = f"NppNet: unknown configuration key {unknown[0]!r}; known: {', '.join(sorted(known))}"
            raise InvalidArgumentError(msg, argument=unknown[0], allowed=sorted(known))
        knots = tuple(tuple(k) for k in d.get("base_sigma", ()))
        return cls(**{**d, "widths": tuple(d["widths"]), "base_sigma": knots})


#: Named configurations. ``paper`` reproduces the paper's 9.42 M parameters; the others are
#: the same architecture, narrower, for CPU training.
CONFIGS: dict[str, NppConfig] = {
    "paper": NppConfig(
        "paper",
        (32, 64, 128, 256),
        qa_hidden=16,
        description="the paper's network: 9.42 M parameters without QA, as reported; GPU training",
    ),
    "small": NppConfig(
        "small", (10, 20, 40, 80), qa_hidden=32, description="CPU training, about 1 M parameters"
    ),
    "tiny": NppConfig(
        "tiny",
        (4, 8, 16, 32),
        qa_hidden=16,
        description="CPU experiments and tests, about 0.15 M parameters",
    ),
}


#: Largest σ of the blur in front (its kernel has the fixed radius ⌈3σ⌉ so it exports to ONNX).
MAX_BASE_SIGMA = 2.0
_BASE_RADIUS = 6


def _interp_knots(q: Tensor, knots: tuple[tuple[float, float], ...]) -> Tensor:
    """Piecewise-linear σ(q) through ``knots``, held at the ends (as ``numpy.interp``)."""
    sig = torch.full_like(q, knots[0][1])
    for (q0, s0), (q1, s1) in zip(knots[:-1], knots[1:], strict=True):
        t = ((q - q0) / max(q1 - q0, 1e-12)).clamp(0.0, 1.0)
        sig = torch.where(q >= q0, s0 + t * (s1 - s0), sig)
    return sig


def _base_blur(x: Tensor, sigma: Tensor) -> Tensor:
    """Separable Gaussian blur of (N, C, H, W) with one σ per image (N,): the tuned blur's
    kernel (radius ⌈3σ⌉, normalised taps, reflect padding) inside a fixed radius, so it
    exports to ONNX."""
    r = _BASE_RADIUS
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    sig = sigma.to(x)[:, None].clamp_min(1e-3)
    # the tuned blur's taps: |t| <= max(1, ⌈3σ⌉), the rest zero
    keep = t[None, :].abs() <= torch.ceil(3.0 * sig).clamp_min(1.0)
    k = torch.exp(-0.5 * (t[None, :] / sig) ** 2) * keep
    k = (k / k.sum(dim=1, keepdim=True))[:, :, None, None, None]  # (N, taps, 1, 1, 1)
    h, w = x.shape[-2:]
    mode = "reflect" if r < min(h, w) else "replicate"
    xp = F.pad(x, (r, r, r, r), mode=mode)
    rows = sum(k[:, j] * xp[:, :, :, j:j + w] for j in range(2 * r + 1))
    return sum(k[:, j] * rows[:, :, j:j + h, :] for j in range(2 * r + 1))


def _conv(cin: int, cout: int, *, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def _up(cin: int, cout: int) -> nn.Sequential:
    # kernel 3, stride 2, output_padding 1: exactly doubles H and W
    return nn.Sequential(
        nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class QAScale(nn.Module):
    """Quantization adaptation: ``f' = f ⊙ s(q)`` with ``s = 1 + MLP(q)`` per channel.

    The MLP's last layer starts at zero, so a fresh scale is exactly 1 (no change) and the
    network learns how far to depart from it per operating point.

    Shape:
        - f: (N, C, H, W); q: (N, 1) → (N, C, H, W)
    """

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(1, hidden)
        self.fc2 = nn.Linear(hidden, channels)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def scale(self, q: Tensor) -> Tensor:
        return 1.0 + self.fc2(torch.relu(self.fc1(q)))

    def forward(self, f: Tensor, q: Tensor) -> Tensor:
        return f * self.scale(q)[:, :, None, None]


class NppNet(nn.Module):
    r"""Neural preprocessor (NPP) with quantization adaptation (QA).

    "Preprocessing Enhanced Image Compression for Machine Vision" (arXiv:2206.05650,
    IEEE TCSVT 2024), Section 3.2 and Fig. 3. The filtered image is the sum of a per-pixel
    branch (two 1×1 convolutions) and a U-Net branch; a 2-layer MLP per scaling point maps
    the codec's operating point ``q`` to channel-wise scales (``·s``), eight points in all, so
    one network serves every QP. ``L = len(widths)`` levels; here ``L = 4``.

    .. code-block:: none

        X (N,3,H,W) ──► pad right/bottom to ×2^L (replicate) ──► Xp
                                                                  │
              ┌───────────────────────────────────────────────────┴──────────────┐
              ▼ pixel branch                                     U-Net branch    ▼
        1×1 conv ·s ─ ReLU                          enc0 [3×3 BN ReLU]×2 ·s ────────────┐ skip0
        1×1 conv ·s ─ ReLU                            ↓ 3×3 stride 2                    │
              │                                     enc1 ·s ─────────────────────┐ skip1│
              │                                       ↓    …  enc3 ·s ─── skip3  │      │
              │                                     bottleneck [3×3]×2 ·s        │      │
              │                                       ↓ 3×3ᵀ stride 2, cat skip3 │      │
              │                                     dec3 [3×3]×2 ─ 3×3ᵀ ─ cat ◄──┘ …    │
              │                                     head [3×3 BN ReLU]×2 ·s ◄─ cat ◄────┘
              │                                       ↓ 1×1 conv (zero-init) → 3 ch
              └────────────────────► (+) ◄────────────┘
                                      │
                      crop to (H, W), clamp to [0, 1] ──► X̄ (N,3,H,W)

        q ∈ [0,1] (N,) ──► QA MLP_k: Linear(1,h) ─ ReLU ─ Linear(h,C_k) ─ +1 ──► s_k (N,C_k)

    At initialisation the 1×1 convolutions are the identity, every QA scale is 1 and the
    U-Net's last 1×1 convolution is zero, so a fresh network returns its input exactly
    (training starts from "no change").

    Args:
        config: an :class:`NppConfig` or the name of one in :data:`CONFIGS`.

    Shape:
        - x: (N, 3, H, W) float in [0, 1], any H, W >= 1
        - qp_norm: float, 0-d tensor, or (N,) tensor in [0, 1] (ignored when ``qa`` is off)
        - output: (N, 3, H, W) in [0, 1]

    Raises:
        ShapeError: ``x`` is not (N, 3, H, W) or ``qp_norm`` has the wrong length.
        InvalidArgumentError: NaN/inf or out-of-range values in ``x`` or ``qp_norm``.

    Example:
        >>> net = NppNet("tiny").eval()
        >>> x = torch.rand(2, 3, 37, 50)
        >>> torch.equal(net(x, 0.7), x)   # a fresh network is the identity
        True
    """

    def __init__(self, config: NppConfig | str = "small") -> None:
        super().__init__()
        cfg = _resolve_config(config)
        self.config = cfg
        w = cfg.widths
        # pixel branch: identity at start
        self.pixel1 = nn.Conv2d(3, 3, 1)
        self.pixel2 = nn.Conv2d(3, 3, 1)
        for conv in (self.pixel1, self.pixel2):
            with torch.no_grad():
                conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
                conv.bias.zero_()
        # U-Net branch
        self.enc = nn.ModuleList()
        self.down = nn.ModuleList()
        cin = 3
        for c in w:
            self.enc.append(nn.Sequential(_conv(cin, c), _conv(c, c)))
            self.down.append(_conv(c, c, stride=2))
            cin = c
        self.bottleneck = nn.Sequential(_conv(w[-1], 2 * w[-1]), _conv(2 * w[-1], 2 * w[-1]))
        self.bottleneck_up = _up(2 * w[-1], w[-1])
        # decoder level k consumes cat(up, skip_k) = 2*w[k] channels
        self.dec = nn.ModuleList()
        self.dec_up = nn.ModuleList()
        for k in range(cfg.levels - 1, 0, -1):
            self.dec.append(nn.Sequential(_conv(2 * w[k], w[k]), _conv(w[k], w[k])))
            self.dec_up.append(_up(w[k], w[k - 1]))
        self.head = nn.Sequential(_conv(2 * w[0], w[0]), _conv(w[0], w[0]))
        self.out = nn.Conv2d(w[0], 3, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.qa = nn.ModuleDict()
        if cfg.qa:
            self._add_qa()

    # -- configuration --------------------------------------------------------------------

    def _qa_channels(self) -> dict[str, int]:
        w = self.config.widths
        ch = {"pixel1": 3, "pixel2": 3}
        ch.update({f"enc{i}": c for i, c in enumerate(w)})
        ch.update({"bottleneck": 2 * w[-1], "head": w[0]})
        return ch

    def _add_qa(self) -> None:
        ref = self.out.weight
        for name, c in self._qa_channels().items():
            self.qa[name] = QAScale(c, self.config.qa_hidden).to(device=ref.device, dtype=ref.dtype)

    def enable_qa(self) -> NppNet:
        """Add identity-initialised QA layers to a network trained without them (paper stage
        2 → stage 3). The output is unchanged until the QA layers are trained. Returns self."""
        if not self.config.qa:
            self.config = replace(self.config, qa=True)
            self._add_qa()
        return self

    def get_config(self) -> dict[str, Any]:
        """JSON-able configuration (what weights files store)."""
        return self.config.to_dict()

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> NppNet:
        return cls(NppConfig.from_dict(config))

    def extra_repr(self) -> str:
        c = self.config
        return f"config={c.name!r}, widths={c.widths}, qa={c.qa}, params={count_parameters(self):,}"

    # -- forward --------------------------------------------------------------------------

    def forward(self, x: Tensor, qp_norm: Tensor | float | None = None) -> Tensor:
        """Filter ``x`` for the operating point ``qp_norm`` (see the class docstring)."""
        self._check_input(x)
        q = self._qp_tensor(qp_norm, x)
        return self.filter(x, q)

    def filter(self, x: Tensor, q: Tensor | None) -> Tensor:
        """The network without input checks (used by export and training loops).

        Args:
            x: (N, 3, H, W) float.
            q: (N, 1) float operating points, or None when ``qa`` is off.
        """
        h, w = x.shape[-2], x.shape[-1]
        m = self.config.multiple
        cfg = self.config
        # replicate, not zeros: a zero border would be a fake edge the U-Net reacts to
        pad = (0, (m - w % m) % m, 0, (m - h % m) % m)
        xp = F.pad(x, pad, mode="replicate")
        if cfg.base_sigma:
            qb = q[:, 0] if q is not None else torch.full(x.shape[:1], cfg.base_sigma[0][0], dtype=x.dtype, device=x.device)
            bp = F.pad(_base_blur(x, _interp_knots(qb, cfg.base_sigma)), pad, mode="replicate")
        else:
            bp = xp
        p = torch.relu(self._scale("pixel1", self.pixel1(bp), q))
        p = torch.relu(self._scale("pixel2", self.pixel2(p), q))
        u = self._unet(xp, q)
        out = p + u if cfg.gain == 1.0 else bp + cfg.gain * (p - bp + u)
        return out[:, :, :h, :w].clamp(0.0, 1.0)

    def _unet(self, x: Tensor, q: Tensor | None) -> Tensor:
        skips = []
        f = x
        for i, (enc, down) in enumerate(zip(self.enc, self.down, strict=True)):
            f = self._scale(f"enc{i}", enc(f), q)
            skips.append(f)
            f = down(f)
        f = self._scale("bottleneck", self.bottleneck(f), q)
        f = torch.cat([self.bottleneck_up(f), skips[-1]], dim=1)
        for j, (dec, up) in enumerate(zip(self.dec, self.dec_up, strict=True)):
            f = torch.cat([up(dec(f)), skips[-2 - j]], dim=1)
        f = self._scale("head", self.head(f), q)
        return self.out(f)

    def _scale(self, point: str, f: Tensor, q: Tensor | None) -> Tensor:
        if point not in self.qa:
            return f
        return self.qa[point](f, q)

    # -- input checks ---------------------------------------------------------------------

    def _check_input(self, x: Tensor) -> None:
        check_image_batch(x, who="NppNet", argument="x")

    def _qp_tensor(self, qp_norm: Tensor | float | None, x: Tensor) -> Tensor | None:
        n = x.shape[0]
        if qp_norm is None:
            if self.config.qa:
                msg = (
                    "NppNet: qp_norm is required when quantization adaptation is on; pass "
                    "codec.normalized_qp(qp), a float or an (N,) tensor in [0, 1]"
                )
                raise InvalidArgumentError(msg, argument="qp_norm", allowed="[0, 1]")
            return None
        if isinstance(qp_norm, bool) or not (
            torch.is_tensor(qp_norm) or isinstance(qp_norm, (int, float))
        ):
            msg = f"NppNet: qp_norm must be a float or an (N,) tensor in [0, 1], got {type(qp_norm).__name__}"
            raise InvalidArgumentError(
                msg, argument="qp_norm", allowed="float or (N,) tensor in [0, 1]"
            )
        q = torch.as_tensor(qp_norm, dtype=x.dtype, device=x.device)
        if q.ndim == 0:
            q = q.expand(n)
        if q.ndim != 1 or q.shape[0] != n:
            msg = f"NppNet: qp_norm has shape {tuple(q.shape)}; expected a scalar or ({n},), one per image"
            raise ShapeError(
                msg, actual_shape=tuple(q.shape), expected_shape=f"({n},)", argument="qp_norm"
            )
        if not bool(torch.isfinite(q).all()) or float(q.min()) < 0.0 or float(q.max()) > 1.0:
            msg = (
                f"NppNet: qp_norm values {q.tolist()[:8]} are outside [0, 1]; pass "
                "codec.normalized_qp(qp) for a qp in the codec's qp_range"
            )
            raise InvalidArgumentError(msg, argument="qp_norm", allowed="[0, 1]")
        return q.reshape(n, 1)


def _resolve_config(config: NppConfig | str) -> NppConfig:
    if isinstance(config, NppConfig):
        return config
    if isinstance(config, str) and config in CONFIGS:
        return CONFIGS[config]
    msg = f"NppNet: unknown configuration {config!r}; choose one of {', '.join(CONFIGS)}"
    raise InvalidArgumentError(msg, argument="config", allowed=list(CONFIGS))


def config_from_dict(d: dict[str, Any]) -> Any:
    """A stored configuration → :class:`NppConfig`, or the configuration of another NPP
    architecture named by its ``arch`` key (``saliency_blur``)."""
    arch = d.get("arch", "unet")
    if arch == "saliency_blur":
        from .saliency import SaliencyBlurConfig

        return SaliencyBlurConfig.from_dict(d)
    if arch != "unet":
        msg = f"NppNet: unknown architecture {arch!r}; known: unet, saliency_blur"
        raise InvalidArgumentError(msg, argument="arch", allowed=["unet", "saliency_blur"])
    return NppConfig.from_dict({k: v for k, v in d.items() if k != "arch"})


def build_net(config: Any) -> nn.Module:
    """The network a configuration describes (fresh parameters)."""
    from .saliency import SaliencyBlurConfig, SaliencyBlurNet

    if isinstance(config, SaliencyBlurConfig):
        return SaliencyBlurNet(config)
    return NppNet(config)


def is_npp_net(net: Any) -> bool:
    """True for the networks an NPP weights file can hold."""
    from .saliency import SaliencyBlurNet

    return isinstance(net, (NppNet, SaliencyBlurNet))


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters (BatchNorm running statistics excluded)."""
    return sum(p.numel() for p in net.parameters())


def describe_configs() -> list[dict[str, Any]]:
    """One row per named configuration, for ``npp models`` and the docs.

    Returns:
        dicts with ``name``, ``params`` (with QA), ``params_without_qa``, ``widths``,
        ``pad_multiple`` and ``description``.
    """
    return [dict(row, widths=list(row["widths"])) for row in _config_rows()]


@functools.lru_cache(maxsize=1)
def _config_rows() -> tuple[dict[str, Any], ...]:
    rows = []
    for name, cfg in CONFIGS.items():
        full = count_parameters(NppNet(cfg))
        bare = count_parameters(NppNet(replace(cfg, qa=False)))
        rows.append(
            {
                "name": name,
                "params": full,
                "params_without_qa": bare,
                "widths": list(cfg.widths),
                "pad_multiple": cfg.multiple,
                "description": cfg.description,
            }
        )
    return tuple(rows)


# ``npp_net`` moved to :mod:`.weights` (it loads weights files, which build these networks):
# the old path works for one release, with a DeprecationWarning.
__getattr__ = _moved.moved_attributes(__name__, {"npp_net": "npp_plugin.preprocessors.weights"})
