# SPDX-License-Identifier: GPL-2.0-or-later
"""Diagnostic: how much of a teacher's change does a student predict on development crops?

    python scripts/experiments/predictability.py runs/teacher-dev runs/distil-a/best.npp.pt [...]

For each student (an ``npp distil`` weights file, applied at gain 1), the squared error of its
change to the blur's output against the teacher's change, over the squared error of
predicting no change (the blur itself), per crop weighted as ``npp distil``'s loss: below 1,
the student foretells part of the change (1 − ratio of it); at or above 1, nothing. Also the
correlation of the two changes over all pixels.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace

import torch


def main(argv: list[str]) -> int:
    from npp_plugin.preprocessors.hook import npp_filter
    from npp_plugin.preprocessors.refine import refine_step_size
    from npp_plugin.preprocessors.weights import load_weights
    from npp_plugin.registry import get_codec, get_preprocessor
    from npp_plugin.training.distil import TEACHER_LR
    from npp_plugin.training.teacher import load_shards

    dev, students = load_shards(argv[0]), argv[1:]
    codec, blur = get_codec("bpg"), get_preprocessor("blur_tuned")
    x, y = dev["x"].float() / 255, dev["y"].float() / 255
    with torch.no_grad():
        base = torch.empty_like(x)
        for qp in sorted(set(dev["qp"].tolist())):
            idx = (dev["qp"] == qp).nonzero().flatten()
            base[idx] = blur(x[idx], codec=codec, qp=qp)
        w = torch.tensor([refine_step_size(TEACHER_LR, codec, int(q)) ** -2 for q in dev["qp"].tolist()])
        zero = ((base - y) ** 2).mean(dim=(1, 2, 3)).mul(w).mean()
        out = {"dev": argv[0], "crops": int(x.shape[0]), "zero_change_loss": float(zero)}
        for path in students:
            net = load_weights(path)[0]
            net.config = replace(net.config, gain=1.0)
            pred = torch.empty_like(x)
            for qp in sorted(set(dev["qp"].tolist())):
                idx = (dev["qp"] == qp).nonzero().flatten()
                pred[idx] = npp_filter(net, x[idx], codec=codec, qp=qp)
            loss = ((pred - y) ** 2).mean(dim=(1, 2, 3)).mul(w).mean()
            a, b = (pred - base).flatten(), (y - base).flatten()
            corr = float(torch.corrcoef(torch.stack([a, b]))[0, 1]) if a.std() > 0 else 0.0
            out[path] = {"loss": float(loss), "ratio_to_zero": float(loss / zero), "correlation": corr}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
