# SPDX-License-Identifier: GPL-2.0-or-later
"""Screen filter families against the tuned blur on the real codec's J (an experiment, not API).

Two families that a learned preprocessor could plausibly exploit beyond a Gaussian, scored on
the same objective as ``npp search`` (J = bpp + λ·KL, BPG, MobileNetV2 at 224², λ from the
shipped blur table), paired per crop against the tuned blur's σ at that QP:

* ``shrink`` — cycle-spun 8×8 DCT shrinkage of luma (and chroma): zero the small AC
  coefficients the codec would pay sign and level bits for, keep strong edges (a codec-aligned
  denoiser), alone and after a light Gaussian.
* ``spectral`` — a radial frequency response for luma (six knots up to the corner frequency,
  symmetric extension = DCT-domain filtering) and a Gaussian σ for chroma, 7 numbers found by
  CMA-ES on fit crops and checked per generation on development crops (other photos).
* ``gauss`` — the Gaussian's own neighbours, to show how large a J difference these crops resolve.
* ``perimage`` — not a filter: per-image gradient descent on the pixels themselves (from the
  tuned blur, Adam, the analytic surrogate's gradients, real codec values), an upper bound of what
  a network that sees the task's gradients could reach, scored by the training classifier and
  by an unseen one (EfficientNet-Lite0).

Every row gives ΔJ against the tuned blur with a 95 % interval from a bootstrap over source
photos (crops of one photo are not independent). Usage::

    .venv/bin/python scripts/experiments/prefilter_families.py shrink --qp 34
    .venv/bin/python scripts/experiments/prefilter_families.py spectral --qp 34 --generations 8
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from npp_plugin.preprocessors.filters import gaussian_blur
from npp_plugin.registry import get_codec, get_task
from npp_plugin.training.search import Crops, RealObjective, builtin_dev_split
from npp_plugin.surrogates import _dct_matrix

TABLE = json.loads((Path(__file__).resolve().parents[2] / "npp_plugin" / "weights" / "blur-tuned.json").read_text())
LAMBDAS = {int(q): float(v) for q, v in TABLE["provenance"]["lambdas"].items()}
SIGMA = {int(q): float(v) for q, v in TABLE["sigma"].items()}
KNOTS = torch.tensor([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7072], dtype=torch.float64)  # cycles/pixel


def split(x):
    y = (x * torch.tensor((0.299, 0.587, 0.114)).view(1, 3, 1, 1).to(x)).sum(1, keepdim=True)
    return y, x - y


def spectral(plane, resp):
    """Filter (N, C, H, W) with the radial response H(0)=1, H(KNOTS[1:])=resp, linear between."""
    h, w = plane.shape[-2:]
    ext = torch.cat([plane, plane.flip(-1)], -1)
    ext = torch.cat([ext, ext.flip(-2)], -2).double()  # even extension: no wrap-around edges
    r = (torch.fft.fftfreq(2 * h, dtype=torch.float64).view(-1, 1) ** 2
         + torch.fft.rfftfreq(2 * w, dtype=torch.float64).view(1, -1) ** 2).sqrt()
    vals = torch.cat([torch.ones(1, dtype=torch.float64), torch.as_tensor(resp, dtype=torch.float64)])
    i = torch.searchsorted(KNOTS, r.flatten().contiguous(), right=True).clamp(1, len(KNOTS) - 1)
    t = (r.flatten() - KNOTS[i - 1]) / (KNOTS[i] - KNOTS[i - 1])
    gain = ((1 - t) * vals[i - 1] + t * vals[i]).view(r.shape)
    return torch.fft.irfft2(torch.fft.rfft2(ext) * gain, s=(2 * h, 2 * w))[..., :h, :w].to(plane.dtype)


def gauss_response(sigma: float) -> torch.Tensor:
    return torch.exp(-2 * math.pi**2 * sigma**2 * KNOTS[1:] ** 2)


def dct_shrink(plane, thr: float, hard: bool) -> torch.Tensor:
    """Cycle-spun (4 shifts) 8×8 DCT shrinkage of AC coefficients; ``thr`` on the 0–255 scale."""
    d = _dct_matrix()  # the surrogates' orthonormal 8×8 DCT
    n, c, h, w = plane.shape
    acc = torch.zeros_like(plane)
    for dy, dx in ((0, 0), (4, 4), (0, 4), (4, 0)):
        q = F.pad(plane, (dx, (8 - (w + dx) % 8) % 8, dy, (8 - (h + dy) % 8) % 8), mode="reflect") * 255
        hh, ww = q.shape[-2:]
        co = d @ q.view(n, c, hh // 8, 8, ww // 8, 8).permute(0, 1, 2, 4, 3, 5) @ d.T
        dc = co[..., :1, :1].clone()
        co = torch.where(co.abs() < thr, 0.0, co) if hard else co.sign() * (co.abs() - thr).clamp_min(0)
        co[..., :1, :1] = dc
        rec = (d.T @ co @ d).permute(0, 1, 2, 4, 3, 5).reshape(n, c, hh, ww) / 255
        acc += rec[..., dy:dy + h, dx:dx + w]
    return acc / 4


def photo_interval(delta: np.ndarray, sources: list[str], n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % interval of the mean of ``delta`` from a bootstrap over source photos."""
    ids = np.unique(sources, return_inverse=True)[1]
    groups = [np.flatnonzero(ids == g) for g in range(ids.max() + 1)]
    rng = np.random.default_rng(seed)
    means = [delta[np.concatenate([groups[g] for g in rng.integers(0, len(groups), len(groups))])].mean() for _ in range(n)]
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def row(name, v, base, sources):
    d = v["J"] - base["J"]
    lo, hi = photo_interval(d, sources)
    jb = base["J"].mean()
    print(f"{name:<34} J {v['J'].mean():.4f} ({v['J'].mean() / jb:.3f}×)  bpp {v['bpp'].mean():.4f}  KL {v['kl'].mean():.4f}"
          f"  ΔJ {d.mean() / jb:+.1%} [{lo / jb:+.1%}, {hi / jb:+.1%}]", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=("shrink", "spectral", "gauss", "perimage"))
    p.add_argument("--qp", type=int, default=34)
    p.add_argument("--crops", type=int, default=128)
    p.add_argument("--generations", type=int, default=8)
    p.add_argument("--popsize", type=int, default=10)
    a = p.parse_args()
    torch.set_num_threads(2)
    codec, task = get_codec("bpg", fast=True), get_task("mobilenet_v2")
    fit_files, dev_files = builtin_dev_split()
    s0, qp = SIGMA[a.qp], a.qp
    blur = lambda x, e: gaussian_blur(x, s0)  # noqa: E731
    if a.what == "perimage":
        return per_image(codec, task, fit_files + dev_files, qp, s0)
    if a.what in ("shrink", "gauss"):
        crops = Crops.grid(fit_files + dev_files, n=a.crops, size=224, task=task)
        sources = crops.origins
        obj = RealObjective(codec, task, crops, LAMBDAS, workers=2)
        base = obj.per_image(qp, blur)
        print(f"QP {qp}, {len(crops.x)} grid crops of {len(set(sources))} training photos; tuned blur σ {s0}: J {base['J'].mean():.4f}")
        row("plain", obj.per_image(qp), base, sources)
        if a.what == "gauss":
            for s in (s0 - 0.2, s0 - 0.1, s0 + 0.1, s0 + 0.2):
                row(f"gaussian σ {s:.2f}", obj.per_image(qp, lambda x, e, s=s: gaussian_blur(x, s)), base, sources)
            return
        for sigma, t, hard in ((0, 4, False), (0, 8, False), (0, 8, True), (0, 16, True), (0.5, 4, False), (0.5, 8, True)):
            def f(x, e, sigma=sigma, t=t, hard=hard):
                y, c = split(gaussian_blur(x, sigma) if sigma else x)
                return dct_shrink(y, t, hard) + c
            row(f"{'hard' if hard else 'soft'} shrink t {t}" + (f" after σ {sigma}" if sigma else ""),
                obj.per_image(qp, f), base, sources)
        return
    import cma

    fit, dev = (Crops.grid(f, n=n, size=224, task=task) for f, n in ((fit_files, 96), (dev_files, 40)))
    fit_src, dev_src = fit.origins, dev.origins
    of, od = RealObjective(codec, task, fit, LAMBDAS, workers=2), RealObjective(codec, task, dev, LAMBDAS, workers=2)

    def filt(v):
        ry, sc = torch.tensor(np.clip(v[:6], 0, 1.5)), float(np.clip(v[6], 0.05, 4))
        return lambda x, e: spectral(split(x)[0], ry) + spectral(split(x)[1], gauss_response(sc))
    bf, bd = of.per_image(qp, blur), od.per_image(qp, blur)
    print(f"QP {qp}: tuned blur σ {s0}: fit J {bf['J'].mean():.4f} ({len(fit.x)} crops), dev J {bd['J'].mean():.4f} ({len(dev.x)} crops)")
    es = cma.CMAEvolutionStrategy(list(gauss_response(s0).numpy()[:6]) + [s0], 0.12,
                                  {"popsize": a.popsize, "seed": qp, "verbose": -9, "bounds": [[0] * 6 + [0.05], [1.5] * 6 + [4]]})
    while es.countiter < a.generations:
        cand = es.ask()
        es.tell(cand, [of(qp, filt(c))["J"] for c in cand])
        m = np.asarray(es.mean)
        print(f"generation {es.countiter}: mean {np.round(m, 3).tolist()}", flush=True)
        row("  fit", of.per_image(qp, filt(m)), bf, fit_src)
        row("  dev", od.per_image(qp, filt(m)), bd, dev_src)


def per_image(codec, task, files, qp, s0, n=32, steps=12, lr=0.004):
    from npp_plugin.surrogates import surrogate_step

    x = Crops.grid(files, n=n, size=224, task=task).x
    ref, base = task.reference(x), gaussian_blur(x, s0)
    delta = torch.zeros_like(x, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=lr)
    for it in range(steps + 1):
        st = surrogate_step((base + delta).clamp(0, 1), codec=codec, qp=qp, rate="sqlog", jacobian="masked", workers=2)
        loss = st.bits / x[0, 0].numel() + LAMBDAS[qp] * task.loss(st.x_hat, ref, reduction="none")
        print(f"step {it}: real J {float(loss.mean()):.4f}", flush=True)
        if it < steps:
            opt.zero_grad()
            loss.mean().backward()
            opt.step()
    other = get_task("efficientnet_lite0")
    ref_o = other.reference(x)
    with torch.no_grad():
        for name, inp in (("plain", x), (f"tuned blur σ {s0}", base), ("per-image optimum", (base + delta).clamp(0, 1))):
            rec, bits = codec.roundtrip(inp, qp=qp, workers=2)
            bpp = (bits.double() / x[0, 0].numel()).mean()
            kl = task.loss(rec, ref, reduction="none").mean()
            kl_o = other.loss(rec, ref_o, reduction="none").mean()
            print(f"{name:<20} bpp {bpp:.4f}  KL MobileNetV2 {kl:.4f}  KL EfficientNet-Lite0 {kl_o:.4f}")


if __name__ == "__main__":
    main()
