# SPDX-License-Identifier: GPL-2.0-or-later
"""Choose ``npp_refine``'s step size and base on the training photos (an experiment, not API).

32 grid crops of 22 of the 32 built-in training photos (never the held-out ``builtin:val``),
BPG at level 8 (``npp demo``'s setting), MobileNetV2, λ of the shipped blur table. For each QP:
the real J = bpp + λ·KL of the tuned blur and of the shipped NPP alone, then of ``npp_refine``
from each with 4 Adam steps of 0.002 / 0.004 / 0.008 at that QP (each passed as the QP-34
value that the step-size law turns into it), and with 8 steps of 0.004, all against the tuned
blur's J. This chose the defaults (the step size ×2 every 6 QP, the tuned blur as base; docs/results.md,
"npp_refine"; the rows are in ``npp_plugin/weights/npp-refine.json``). Usage::

    .venv/bin/python scripts/experiments/tune_refine.py --qps 28 34 41
"""

from __future__ import annotations

import argparse
import time

import torch

from npp_plugin.preprocessors.refine import TaskRefine
from npp_plugin.registry import get_codec, get_task
from npp_plugin.training.search import Crops, builtin_dev_split


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--qps", type=int, nargs="+", default=[28, 34, 41])
    p.add_argument("--crops", type=int, default=32)
    a = p.parse_args()
    torch.set_num_threads(2)
    codec, task = get_codec("bpg"), get_task("mobilenet_v2")
    fit, dev = builtin_dev_split()
    crops = Crops.grid(fit + dev, n=a.crops, size=224, task=task)
    npx = crops.x[0, 0].numel()
    for qp in a.qps:
        scale = TaskRefine(base=None, steps=1, lr=0.01).step_size(codec, qp) / 0.01  # the law's factor at this QP
        configs = [("blur_tuned", 4, lr) for lr in (0.002, 0.004, 0.008)]
        configs += [("npp", 4, lr) for lr in (0.002, 0.004, 0.008)] + [("blur_tuned", 8, 0.004)]
        ref_j = None
        for base in ("blur_tuned", "npp"):
            j = _score(codec, task, crops, qp, base, None, 0.0, npx)
            ref_j = ref_j or j[0]
            print(f"QP {qp} {base:<10} alone      J {j[0]:.4f} ({100 * (j[0] / ref_j - 1):+.1f} % vs blur_tuned)"
                  f" bpp {j[1]:.4f}", flush=True)
        for base, steps, lr in configs:
            j = _score(codec, task, crops, qp, base, steps, lr / scale, npx)
            print(f"QP {qp} {base:<10} {steps} × {lr:.3f} J {j[0]:.4f} ({100 * (j[0] / ref_j - 1):+.1f} % vs "
                  f"blur_tuned) bpp {j[1]:.4f} {j[2]:.2f} s/crop", flush=True)


def _score(codec, task, crops, qp, base, steps, lr, npx):
    prep = base if steps is None else TaskRefine(base=base, steps=steps, lr=lr)
    lam = TaskRefine(base=None, steps=1).lam(codec, qp)
    t = time.perf_counter()
    with torch.no_grad():
        rec, bits = codec.roundtrip(crops.x, qp=qp, preprocess=prep, workers=2)
    dt = (time.perf_counter() - t) / len(crops.x)
    bpp = bits.double() / npx
    j = bpp + lam * task.loss(rec, crops.ref, reduction="none").double()
    return float(j.mean()), float(bpp.mean()), dt


if __name__ == "__main__":
    main()
