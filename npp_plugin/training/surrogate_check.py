# SPDX-License-Identifier: GPL-2.0-or-later
"""Does a gradient stand-in predict what the real codec does? Measure it before training.

On fixed crops at a QP, move the input along known directions ``d`` — Gaussian blurs,
unsharp masking, added noise, and the NPP's own current residual ``net(x) − x`` — and
compare, per crop, the change that the surrogate's gradient predicts to first order,
``⟨∇_x R̂, d⟩`` and ``⟨∇_x KL, d⟩``, with the real change of the codec's bits and of the task
loss after ``codec.roundtrip(x + d)``. Reported per (QP, direction):

    rate_ratio   Σ predicted ΔR / Σ real ΔR        (1 is right; < 1 under-predicts)
    rate_corr    correlation over crops of predicted and real ΔR
    rate_value   relative change of the rate model's own value against the real relative
                 change of the bits (the check the surrogate notes made, no linearisation)
    task_ratio, task_corr   the same for the task loss

A training run logs this at its start and every ``--check-every`` steps, and warns when a
rate ratio is off by more than :data:`RATE_TOLERANCE` (a rate stand-in that under-predicts
what smoothing saves makes every gradient say "sharpen"). ``npp check-surrogate`` prints it.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..surrogates import (
    JACOBIANS,
    RATE_MODELS,
    chroma_format,
    codec_steps,
    rate_model,
    surrogate_step,
)

__all__ = ["RATE_TOLERANCE", "SurrogateWarning", "check_surrogate", "directions", "main"]

#: |rate_ratio − 1| beyond this warns.
RATE_TOLERANCE = 0.25


class SurrogateWarning(UserWarning):
    """The rate stand-in's predictions are off by more than :data:`RATE_TOLERANCE`."""


def directions(net: Any = None, codec: Any = None, qp: int | None = None) -> dict[str, Callable]:
    """Name → ``x ↦ d``: the moves the check makes (the NPP's residual when ``net`` is given)."""
    from ..preprocessors.filters import gaussian_blur
    from ..preprocessors.hook import npp_filter

    def noise(x: torch.Tensor) -> torch.Tensor:
        g = torch.Generator().manual_seed(0)
        return (x + torch.randn(x.shape, generator=g).to(x) * (2.0 / 255)).clamp(0, 1) - x

    out: dict[str, Callable] = {
        "blur0.5": lambda x: gaussian_blur(x, 0.5) - x,
        "blur1.0": lambda x: gaussian_blur(x, 1.0) - x,
        "unsharp": lambda x: (x + 0.5 * (x - gaussian_blur(x, 1.0))).clamp(0, 1) - x,
        "noise2": noise,
    }
    if net is not None:
        def residual(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return npp_filter(net, x, codec=codec, qp=qp) - x

        out["npp"] = residual
    return out


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def check_surrogate(codec: Any, task: Any, x: torch.Tensor, ref: torch.Tensor, qps: Sequence[int], *,
                    rate: str = "sqlog", jacobian: str = "masked", net: Any = None,
                    workers: int | None = None, warn: bool = True) -> list[dict[str, Any]]:
    """Rows of the check (module docstring), one per QP and direction."""
    rows = []
    chroma = chroma_format(codec)
    for qp in qps:
        xv = x.detach().clone().requires_grad_(True)
        cs = surrogate_step(xv, codec=codec, qp=qp, rate=rate, jacobian=jacobian, workers=workers)
        kl0 = task.loss(cs.x_hat, ref, reduction="none")
        g_rate, = torch.autograd.grad(cs.bits.sum(), xv, retain_graph=True)
        g_task, = torch.autograd.grad(kl0.sum(), xv)
        bits0, kl0 = cs.real_bits.double().numpy(), kl0.detach().double().numpy()
        step = codec_steps(codec, qp)
        with torch.no_grad():
            n0 = rate_model(x, step=step, kind=rate, chroma=chroma).double().numpy()
        for name, fn in directions(net, codec, qp).items():
            d = fn(x).detach()
            with torch.no_grad():
                y = (x + d).clamp(0, 1)
                recon, bits1 = codec.roundtrip(y, qp=qp, workers=workers)
                kl1 = task.loss(recon, ref, reduction="none").double().numpy()
                n1 = rate_model(y, step=step, kind=rate, chroma=chroma).double().numpy()
            real_r, real_t = bits1.double().numpy() - bits0, kl1 - kl0
            pred_r = (g_rate * d).flatten(1).sum(1).double().numpy()
            pred_t = (g_task * d).flatten(1).sum(1).double().numpy()
            real_rel = real_r.sum() / bits0.sum()
            row = {"qp": int(qp), "direction": name, "rate": rate, "jacobian": jacobian, "crops": int(x.shape[0]),
                   "real_dbits_rel": float(real_rel),
                   "rate_ratio": float(pred_r.sum() / real_r.sum()) if real_r.sum() != 0 else float("nan"),
                   "rate_corr": _corr(pred_r, real_r),
                   "rate_value": float(((n1 - n0).sum() / n0.sum()) / real_rel) if real_rel != 0 else float("nan"),
                   "real_dtask": float(real_t.mean()),
                   "task_ratio": float(pred_t.sum() / real_t.sum()) if real_t.sum() != 0 else float("nan"),
                   "task_corr": _corr(pred_t, real_t)}
            rows.append(row)
            if warn and name != "noise2" and abs(row["rate_ratio"] - 1) > RATE_TOLERANCE:
                msg = (f"surrogate {rate}/{jacobian} at {codec.name} qp {qp}: predicted bits change along "
                       f"{name} is {row['rate_ratio']:.2f}× the real one (tolerance ±{RATE_TOLERANCE:.0%})")
                warnings.warn(msg, SurrogateWarning, stacklevel=2)
    return rows


def format_rows(rows: Sequence[dict[str, Any]]) -> str:
    """A fixed-width table of :func:`check_surrogate` rows."""
    head = f"{'qp':>3} {'direction':<9} {'real dR':>8} {'R ratio':>8} {'R corr':>7} {'R value':>8} {'D ratio':>8} {'D corr':>7}"
    lines = [head]
    for r in rows:
        lines.append(f"{r['qp']:>3} {r['direction']:<9} {r['real_dbits_rel']:>+8.3f} {r['rate_ratio']:>8.2f} "
                     f"{r['rate_corr']:>7.2f} {r['rate_value']:>8.2f} {r['task_ratio']:>8.2f} {r['task_corr']:>7.2f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``npp check-surrogate``: the check on grid crops of the held-out built-in photos."""
    from ..errors import NppError
    from ..registry import get_codec, get_task
    from .data import BuiltinPhotos
    from .search import Crops, _kv

    p = argparse.ArgumentParser(prog="npp check-surrogate", description=__doc__.split("\n\n")[0])
    p.add_argument("--codec", default="bpg")
    p.add_argument("--codec-option", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--task", default="mobilenet_v2")
    p.add_argument("--qps", type=int, nargs="+", default=[28, 34, 41])
    p.add_argument("--rate", choices=RATE_MODELS, nargs="+", default=list(RATE_MODELS))
    p.add_argument("--jacobian", choices=JACOBIANS, default="masked")
    p.add_argument("--crops", type=int, default=32)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--weights", default=None, help="NPP weights: also check along its residual")
    p.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    args = p.parse_args(argv)
    try:
        codec = get_codec(args.codec, **dict(_kv(o) for o in args.codec_option))
        task = get_task(args.task)
        crops = Crops.grid(BuiltinPhotos("val").files, n=args.crops, size=args.size, task=task)
        net = None
        if args.weights:
            from ..preprocessors.weights import load_weights

            net, _ = load_weights(args.weights)
        rows = []
        for rate in args.rate:
            rows += check_surrogate(codec, task, crops.x, crops.ref, args.qps, rate=rate, jacobian=args.jacobian,
                                    net=net)
    except NppError as exc:
        print(f"npp check-surrogate: error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    if args.json:
        print(json.dumps(rows))  # noqa: T201
    else:
        for rate in args.rate:
            print(f"rate model {rate}, Jacobian {args.jacobian}, {codec.name}, {len(crops.x)} held-out crops:")  # noqa: T201
            print(format_rows([r for r in rows if r["rate"] == rate]))  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
