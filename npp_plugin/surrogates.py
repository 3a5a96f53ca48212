# SPDX-License-Identifier: GPL-2.0-or-later
"""Analytic codec surrogates: gradients for a real codec without training a proxy.

The forward values stay the real codec's (``codec.roundtrip``: decoded pixels and true
bits); only where the gradient comes from changes. Two independent pieces:

Rate models (on 8×8 orthonormal DCTs of Y and the codec's chroma planes, BT.601 full range,
0–255 samples, AC coefficients ``c``, the codec's quantiser step ``Δ = codec.quant_step(qp)``,
or per frequency and plane where the codec quantises with tables, ``codec.quant_table(qp)``):

    ``log``       Σ log2(1 + |c|/Δ)                  (Google's sandwiched-compression JPEG proxy)
    ``sqlog``     Σ log2(1 + (c/Δ)²)
    ``sigcount``  Σ sigmoid(8·(|c|/Δ − 0.7))         (ρ-domain: count of significant coefficients;
                                                      0.7 ≈ HEVC intra's dead zone)

Each is rescaled per image to the real bits, ``R̂ = N · sg(R_real / N)``: its value is the real
rate and its gradient ``(R_real / N)·∂N``. How well each predicts the real change of the bits
is measured, not assumed: ``npp check-surrogate`` (:mod:`npp_plugin.training.surrogate_check`;
figures in ``docs/training.md``); ``log`` under-predicts what a blur saves, so its gradients
lean towards sharpening.

Distortion Jacobians (how the decoded image moves when the codec's input moves), each used
as ``x̂ = surrogate(x̄) + sg(x̂_real − surrogate(x̄))``:

    ``identity``  x̂ ≈ x̄: straight-through
    ``soft``      x̂ ≈ IDCT(Δ·softround(DCT(x̄)/Δ)), softround(z) = round(z) + (z − round(z))³
    ``masked``    x̂ ≈ IDCT(k ⊙ DCT(x̄)), per coefficient k = clamp(ĉ·c / (c² + 0.25), 0, 1) the
                  share of it the real codec kept (ĉ from the real reconstruction, this step)

:func:`surrogate_step` returns the same :class:`~.ste.CodecStep` as the learned proxy's
:func:`~.ste.codec_step`, so the training loop takes either.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F

from .errors import InvalidArgumentError
from .images import dequantize_uint8
from .ste import CodecStep, straight_through

__all__ = ["JACOBIANS", "RATE_MODELS", "chroma_format", "codec_steps", "dct_planes", "rate_model", "surrogate_grad",
           "surrogate_grad_bands", "surrogate_step"]

RATE_MODELS = ("log", "sqlog", "sigcount")
JACOBIANS = ("identity", "soft", "masked")

# BT.601 full range, as JPEG and BPG's default colour space
_YCC = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
_YCC_INV = torch.linalg.inv(_YCC)


def chroma_format(codec: Any) -> str:
    """The codec's chroma sampling: its ``chroma`` option where it has one, else 4:2:0."""
    fmt = str(codec.get_config().get("chroma", "420"))
    return fmt[:3] if fmt[:3] in ("420", "422", "444") else ("444" if fmt == "gray" else "420")


@functools.lru_cache(maxsize=4)
def _dct_matrix(n: int = 8) -> torch.Tensor:
    k = torch.arange(n, dtype=torch.float64)
    m = torch.cos(math.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n)) * math.sqrt(2.0 / n)
    m[0] /= math.sqrt(2.0)
    return m.float()


def _ycc(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] → YCbCr in 0–255 samples (chroma centred on 0)."""
    return torch.einsum("ij,njhw->nihw", _YCC.to(x), x) * 255.0


def _rgb(y: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,njhw->nihw", _YCC_INV.to(y), y / 255.0)


def _blocks(plane: torch.Tensor, mode: str = "replicate") -> tuple[torch.Tensor, tuple[int, int]]:
    """(N, C, H, W) → 8×8 DCT coefficients (N, C, H/8, W/8, 8, 8), padded (``mode``)."""
    h, w = plane.shape[-2:]
    p = F.pad(plane, (0, (-w) % 8, 0, (-h) % 8), mode=mode)
    n, c, hp, wp = p.shape
    b = p.reshape(n, c, hp // 8, 8, wp // 8, 8).permute(0, 1, 2, 4, 3, 5)
    d = _dct_matrix().to(p)
    return d @ b @ d.T, (h, w)


def _unblocks(coef: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    d = _dct_matrix().to(coef)
    b = d.T @ coef @ d
    n, c, bh, bw = b.shape[:4]
    return b.permute(0, 1, 2, 4, 3, 5).reshape(n, c, bh * 8, bw * 8)[..., : size[0], : size[1]]


def dct_planes(x: torch.Tensor, chroma: str = "420") -> list[torch.Tensor]:
    """DCT coefficients of the planes the codec codes: Y at full size, CbCr subsampled as
    ``chroma`` says (``420``: 2×2 means, ``422``: horizontal pairs, ``444``: none)."""
    ycc = _ycc(x)
    y, c = ycc[:, :1], ycc[:, 1:]
    if chroma == "420":
        c = F.avg_pool2d(F.pad(c, (0, c.shape[-1] % 2, 0, c.shape[-2] % 2), mode="replicate"), 2)
    elif chroma == "422":
        c = F.avg_pool2d(F.pad(c, (0, c.shape[-1] % 2, 0, 0), mode="replicate"), (1, 2))
    return [_blocks(y)[0], _blocks(c)[0]]


Step = Any  # a float, an (8, 8) tensor of per-frequency steps, or a (luma, chroma) pair of those


def codec_steps(codec: Any, qp: int) -> tuple[Any, Any]:
    """The quantiser steps (luma, chroma) the surrogates use for ``codec`` at ``qp``: its
    tables when it has them (JPEG), else its one step for both planes."""
    table = codec.quant_table(qp)
    if table is None:
        step = float(codec.quant_step(qp))
        return step, step
    return tuple(torch.as_tensor(t, dtype=torch.float32).reshape(8, 8) for t in table)


def _pair(step: Step) -> tuple[Any, Any]:
    return tuple(step) if isinstance(step, (tuple, list)) else (step, step)


def rate_model(x: torch.Tensor, *, step: Step, kind: str = "sqlog", chroma: str = "420") -> torch.Tensor:
    """(N,) differentiable rate score N of ``x`` (module docstring), not yet rescaled to bits.
    ``step``: one quantiser step, an 8×8 table, or a (luma, chroma) pair (:func:`codec_steps`)."""
    if kind not in RATE_MODELS:
        msg = f"rate model {kind!r} is unknown; choose one of {', '.join(RATE_MODELS)}"
        raise InvalidArgumentError(msg, argument="rate", allowed=list(RATE_MODELS))
    total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    for coef, s in zip(dct_planes(x, chroma), _pair(step), strict=True):
        z = coef / (s.to(coef) if torch.is_tensor(s) else s)
        ac = torch.ones(8, 8, dtype=z.dtype, device=z.device)
        ac[0, 0] = 0.0  # DC is predicted from neighbours in every codec here: its cost barely moves
        if kind == "log":
            r = torch.log2(1 + z.abs())
        elif kind == "sqlog":
            r = torch.log2(1 + z * z)
        else:
            r = torch.sigmoid(8.0 * (z.abs() - 0.7))
        total = total + (r * ac).flatten(1).sum(1)
    return total


def _full_dct(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    return _blocks(_ycc(x))


def _softround(z: torch.Tensor) -> torch.Tensor:
    r = torch.round(z).detach()
    return r + (z - r) ** 3


def distortion_surrogate(x_bar: torch.Tensor, real: torch.Tensor, *, step: Step, kind: str) -> torch.Tensor:
    """A differentiable stand-in for the codec's reconstruction of ``x_bar`` (its value is
    replaced by ``real`` afterwards; only its Jacobian matters)."""
    if kind not in JACOBIANS:
        msg = f"distortion Jacobian {kind!r} is unknown; choose one of {', '.join(JACOBIANS)}"
        raise InvalidArgumentError(msg, argument="jacobian", allowed=list(JACOBIANS))
    if kind == "identity":
        return x_bar
    coef, size = _full_dct(x_bar)
    if kind == "soft":
        sy, sc = _pair(step)
        if torch.is_tensor(sy) or torch.is_tensor(sc):  # per plane (Y, Cb, Cr) and frequency
            s = torch.stack([torch.as_tensor(v, dtype=coef.dtype).expand(8, 8) for v in (sy, sc, sc)])
            s = s.to(coef).view(1, 3, 1, 1, 8, 8)
        else:
            s = torch.tensor([sy, sc, sc], dtype=coef.dtype, device=coef.device).view(1, 3, 1, 1, 1, 1)
        out = _softround(coef / s) * s
    else:
        with torch.no_grad():
            c_real, _ = _full_dct(real.to(x_bar))
            c = coef.detach()
            keep = (c_real * c / (c * c + 0.25)).clamp(0, 1)
        out = keep * coef
    return _rgb(_unblocks(out, size))


def _replicate_pad_adjoint(g: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The adjoint of ``F.pad(·, (0, ·, 0, ·), mode="replicate")`` from (H, W): the padded
    rows and columns' gradients summed onto the last row and column they copy."""
    out = g[..., :h, :w].clone()
    if g.shape[-1] > w:
        out[..., :, w - 1] += g[..., :h, w:].sum(-1)
    if g.shape[-2] > h:
        out[..., h - 1, :] += g[..., h:, :].sum(-2)[..., :w]
        if g.shape[-1] > w:
            out[..., h - 1, w - 1] += g[..., h:, w:].sum((-2, -1))
    return out


def _rate_slope(coef: torch.Tensor, step: Any, kind: str) -> torch.Tensor:
    """∂(rate_model's per-coefficient term)/∂coef (DC: 0)."""
    s = step.to(coef) if torch.is_tensor(step) else step
    z = coef / s
    if kind == "log":
        d = torch.sign(z) / ((1 + z.abs()) * math.log(2))
    elif kind == "sqlog":
        d = 2 * z / ((1 + z * z) * math.log(2))
    else:
        sg = torch.sigmoid(8.0 * (z.abs() - 0.7))
        d = 8.0 * sg * (1 - sg) * torch.sign(z)
    d = d / s
    d[..., 0, 0] = 0.0
    return d


def _band_grad(x: torch.Tensor, real: torch.Tensor, g_hat: torch.Tensor, *, step: Step, scale: torch.Tensor,
               rate: str, jacobian: str, chroma: str) -> torch.Tensor:
    """∂/∂x of ``Σ scale·rate_model(x) + ⟨distortion_surrogate(x, real), g_hat⟩``, by the
    adjoints of the surrogates' linear maps (what autograd computes, without its graph).
    x, real: (N, 3, H, W) in [0, 1]; scale: (N,)."""
    n, _, h, w = x.shape
    d = _dct_matrix().to(x)
    m = _YCC.to(x)
    sy, sc = _pair(step)
    per_image = scale.to(x).view(n, 1, 1, 1, 1, 1)
    ycc = _ycc(x)
    coef, _ = _blocks(ycc)  # Y, Cb, Cr at full size, replicate-padded: luma's rate and the distortion's
    g_coef = torch.zeros_like(coef)
    g_coef[:, :1] = per_image * _rate_slope(coef[:, :1], sy, rate)
    if jacobian != "identity":
        # ⟨rgb(unblocks(J·coef)), g⟩: back through rgb (linear), the crop (zero padding) and the inverse DCT
        t, _ = _blocks(torch.einsum("ij,nihw->njhw", _YCC_INV.to(x), g_hat) / 255.0, mode="constant")
        if jacobian == "soft":
            steps = torch.stack([torch.as_tensor(v, dtype=x.dtype).expand(8, 8) for v in (sy, sc, sc)]).to(x)
            z = coef / steps.view(1, 3, 1, 1, 8, 8)
            g_coef += 3 * (z - torch.round(z)) ** 2 * t
        else:
            c_real, _ = _full_dct(real.to(x))
            g_coef += (c_real * coef / (coef * coef + 0.25)).clamp(0, 1) * t
    bh, bw = coef.shape[2:4]
    g_ycc = _replicate_pad_adjoint((d.T @ g_coef @ d).permute(0, 1, 2, 4, 3, 5).reshape(n, 3, bh * 8, bw * 8), h, w)
    # chroma's rate, on the codec's subsampled planes (dct_planes): back through the DCT, the means and the pads
    c = ycc[:, 1:]
    fy, fx = {"420": (2, 2), "422": (1, 2)}.get(chroma, (1, 1))
    cp = F.pad(c, (0, w % fx, 0, h % fy), mode="replicate") if fy * fx > 1 else c
    sub = F.avg_pool2d(cp, (fy, fx)) if fy * fx > 1 else cp
    c_coef, _ = _blocks(sub)
    gc = per_image * _rate_slope(c_coef, sc, rate)
    sh, sw = sub.shape[-2:]
    cbh, cbw = c_coef.shape[2:4]
    g_sub = _replicate_pad_adjoint((d.T @ gc @ d).permute(0, 1, 2, 4, 3, 5).reshape(n, 2, cbh * 8, cbw * 8), sh, sw)
    if fy * fx > 1:
        g_sub = g_sub.repeat_interleave(fy, -2).repeat_interleave(fx, -1) / (fy * fx)
        g_sub = _replicate_pad_adjoint(g_sub, h, w)
    g_ycc[:, 1:] += g_sub
    out = 255.0 * torch.einsum("ij,nihw->njhw", m, g_ycc)
    if jacobian == "identity":
        out += g_hat
    return out


def surrogate_step(
    x_bar: torch.Tensor,
    *,
    codec: Any,
    qp: int,
    rate: str = "sqlog",
    jacobian: str = "masked",
    workers: int | None = None,
) -> CodecStep:
    """The real codec's values with an analytic surrogate's gradients (module docstring).

    Returns a :class:`~.ste.CodecStep` whose ``proxy_bits`` is the rate model's raw score.
    """
    step = codec_steps(codec, qp)
    with torch.no_grad():
        real, real_bits = codec.roundtrip(x_bar.detach().clamp(0, 1), qp=qp, workers=workers)
    n_score = rate_model(x_bar, step=step, kind=rate, chroma=chroma_format(codec))
    scale = (real_bits.to(n_score) / n_score.detach().clamp_min(1e-6)).detach()
    bits = straight_through(n_score * scale, real_bits.to(n_score))
    sur = distortion_surrogate(x_bar, real, step=step, kind=jacobian)
    x_hat = straight_through(sur, real)
    return CodecStep(x_hat, bits, real, real_bits, sur.detach(), n_score.detach())


#: Rows per band in :func:`surrogate_grad`: a multiple of 16, so that every 8×8 block of luma
#: and of 4:2:0 chroma lies in one band and the banded sums equal the whole image's.
BAND_ROWS = 64


def _bands(height: int, rows: int) -> list[tuple[int, int]]:
    if rows <= 0 or rows % 16:
        msg = f"surrogate_grad: rows must be a positive multiple of 16, got {rows}"
        raise InvalidArgumentError(msg, argument="rows", allowed="a positive multiple of 16")
    return [(r, min(r + rows, height)) for r in range(0, height, rows)]


def surrogate_grad(
    x_bar: torch.Tensor,
    real: torch.Tensor,
    real_bits: torch.Tensor,
    grad_x_hat: torch.Tensor,
    **options: Any,
) -> torch.Tensor:
    """The gradient that :func:`surrogate_step` gives ``x_bar`` for the objective
    ``bits_weight · bits + ⟨x̂, grad_x_hat⟩`` (a task loss linearised at the real decoded
    image ``real``), computed in bands of ``rows`` rows so that memory does not grow with a
    large picture (both surrogates act on 8×8 blocks, 16×16 for 4:2:0 chroma, so the bands'
    gradients are the whole image's), and by the adjoints of the surrogates' linear maps
    rather than autograd (the same numbers, to float rounding; 1.5–1.7× faster).

    Args:
        x_bar: (N, 3, H, W) codec input in [0, 1].
        real, real_bits: the real codec's reconstruction of ``x_bar`` (float in [0, 1], or
            uint8) and its bits (N,).
        grad_x_hat: ∂(task part of the objective)/∂x̂, same shape as ``x_bar``, or a function
            of ``(first row, end row)`` that returns those rows of it (so that it need not be
            held whole).
        options: those of :func:`surrogate_grad_bands`: ``codec``, ``qp``, ``bits_weight``
            (per image (N,) or one weight for the bits, e.g. 1 / pixels), ``rate``,
            ``jacobian``, ``rows``.

    Returns:
        ∂objective/∂x_bar, a new tensor like ``x_bar``; :func:`surrogate_grad_bands` yields
        it band by band instead.
    """
    out = torch.empty_like(x_bar)
    for a, b, g in surrogate_grad_bands(x_bar, real, real_bits, grad_x_hat, **options):
        out[..., a:b, :] = g
    return out


def surrogate_grad_bands(
    x_bar: torch.Tensor,
    real: torch.Tensor,
    real_bits: torch.Tensor,
    grad_x_hat: torch.Tensor,
    *,
    codec: Any,
    qp: int,
    bits_weight: torch.Tensor | float = 1.0,
    rate: str = "sqlog",
    jacobian: str = "masked",
    rows: int = BAND_ROWS,
):
    """:func:`surrogate_grad` as ``(first row, end row, gradient of those rows)`` per band."""
    step = codec_steps(codec, qp)
    chroma = chroma_format(codec)
    bands = _bands(x_bar.shape[-2], rows)
    # The rate model runs twice per band (here without a graph, below with one): the bits'
    # scale needs every band's score before any band's gradient, and keeping the gradients
    # until then would hold a full-size plane, which banding is for.
    with torch.no_grad():
        n_score = sum(rate_model(x_bar[..., a:b, :], step=step, kind=rate, chroma=chroma) for a, b in bands)
        scale = real_bits.to(n_score) / n_score.clamp_min(1e-6) * torch.as_tensor(bits_weight).to(n_score)
    if jacobian not in JACOBIANS:
        msg = f"distortion Jacobian {jacobian!r} is unknown; choose one of {', '.join(JACOBIANS)}"
        raise InvalidArgumentError(msg, argument="jacobian", allowed=list(JACOBIANS))
    for a, b in bands:
        rb = real[..., a:b, :]
        rb = dequantize_uint8(rb, x_bar.dtype) if rb.dtype == torch.uint8 else rb
        gb = grad_x_hat(a, b) if callable(grad_x_hat) else grad_x_hat[..., a:b, :]
        with torch.no_grad():
            g = _band_grad(x_bar[..., a:b, :].detach(), rb, gb.to(x_bar), step=step, scale=scale, rate=rate,
                           jacobian=jacobian, chroma=chroma)
        yield a, b, g
