# SPDX-License-Identifier: GPL-2.0-or-later
"""Probe (an experiment, not API): can a tiny U-Net learn ``npp_refine``'s output?

Targets: ``npp_refine`` (defaults, BPG ``fast=True`` in its loop) on 256 requested grid crops
(230 exist) of the training photos at QP 34. The NPP ``tiny`` is fitted to them by MSE (Adam
1e-3, batch 8, 1200 steps) and scored every 200 steps by the real J at BPG level 8 on grid
crops of the held-out photos, beside the tuned blur and ``npp_refine`` itself. Usage::

    .venv/bin/python scripts/experiments/distil_refine.py
"""
import time

import torch

import npp_plugin
from npp_plugin.preprocessors import npp_net
from npp_plugin.preprocessors.filters import gaussian_blur
from npp_plugin.preprocessors.refine import TaskRefine
from npp_plugin.training.data import BuiltinPhotos
from npp_plugin.training.search import Crops, builtin_dev_split

torch.set_num_threads(2)
torch.manual_seed(0)
task = npp_plugin.get_task("mobilenet_v2")
codec = npp_plugin.get_codec("bpg", fast=True)
ev = npp_plugin.get_codec("bpg")
QP = 34
p = TaskRefine()
tr = Crops.grid(sum(builtin_dev_split(), []), n=256, size=224, task=task)
va = Crops.grid(BuiltinPhotos("val").files, n=40, size=224, task=task)
t = time.time()
with torch.no_grad():
    tgt = torch.cat([p(tr.x[i:i+16], codec=codec, qp=QP) for i in range(0, len(tr.x), 16)])
print(f"targets {len(tgt)} in {time.time()-t:.0f} s", flush=True)
net = npp_net(config="tiny")
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
lam, nq = p.lam(ev, QP), ev.normalized_qp(QP)


def J(x, crops):
    with torch.no_grad():
        rec, bits = ev.roundtrip(x.clamp(0, 1), qp=QP, workers=2)
        return float((bits.double()/224**2 + lam*task.loss(rec, crops.ref, reduction="none").double()).mean())


with torch.no_grad():
    jb, jr = J(gaussian_blur(va.x, 0.7), va), J(torch.cat([p(va.x[i:i+16], codec=ev, qp=QP) for i in range(0, len(va.x), 16)]), va)
print(f"val: blur_tuned J {jb:.4f}, npp_refine J {jr:.4f}", flush=True)
for step in range(1, 1201):
    idx = torch.randint(0, len(tgt), (8,))
    out = net(tr.x[idx], nq)
    loss = torch.nn.functional.mse_loss(out, tgt[idx])
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step % 200 == 0:
        net.eval()
        with torch.no_grad():
            y = torch.cat([net(va.x[i:i+8], nq) for i in range(0, len(va.x), 8)])
        print(f"step {step} train mse {loss.item():.2e} val J {J(y, va):.4f} (blur {jb:.4f}, refine {jr:.4f})", flush=True)
        net.train()
