# SPDX-License-Identifier: GPL-2.0-or-later
"""CPU against CUDA for the distillation path (run by scripts/cuda_check.sh on a GPU machine).

1. One ``npp distil`` training step (the default student, batch 8, 128²) from the same
   weights and batch on CPU and on CUDA: the loss and the updated weights must agree
   (|Δloss| / loss ≤ 1e-4, largest weight difference ≤ 1e-5 after one Adam step).
2. ``npp_refine`` (MobileNetV2, 4 steps, BPG level 8, QP 34) on 8 real 224² crops with the
   task on CPU and on CUDA (the codec always on the CPU): the kept images may differ where
   floating-point order flips a codec decision, so what must agree is what the refinement is
   for: the real J of the kept images (mean within 1 %) and the share of pixels that moved.
Prints the step times (medians of 5) and exits 1 when a check fails.
"""
import json
import statistics
import sys
import time

import torch

import npp_plugin
from npp_plugin.preprocessors.refine import TaskRefine
from npp_plugin.training.distil import DistilSettings, student_net


def timed(fn, n=5):
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        ts.append(time.perf_counter() - t)
    return out, statistics.median(ts)


def distil_step(device):
    torch.manual_seed(0)
    codec = npp_plugin.get_codec("bpg")
    net = student_net(DistilSettings(), codec).to(device).train()
    with torch.no_grad():
        net.out.weight.normal_(0, 0.01)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(8, 3, 128, 128, generator=g).to(device)
    y = (x + 0.01 * torch.randn(x.shape, generator=g).to(device)).clamp(0, 1)
    q = torch.full((8,), 34 / 51, device=device)
    loss = ((net(x, q) - y) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}

    def one():
        ls = ((net(x, q) - y) ** 2).mean()
        opt.zero_grad()
        ls.backward()
        opt.step()

    _, t = timed(one)
    return loss.item(), state, t


def refine(device):
    from npp_plugin.datasets import builtin_photos, fixed_crops

    crops = [c.pixels for c in fixed_crops(builtin_photos()[:4], size=224)][:8]
    x = torch.from_numpy(__import__("numpy").stack(crops)).permute(0, 3, 1, 2).float() / 255
    codec = npp_plugin.get_codec("bpg")
    task = npp_plugin.get_task("mobilenet_v2", device=device)
    r, t = timed(lambda: TaskRefine(task=task).refine(x, codec=codec, qp=34), n=3)
    moved = float((((r.images - npp_plugin.get_preprocessor("blur_tuned")(x, codec=codec, qp=34)).abs() * 255) > 0.5)
                  .float().mean())
    return float(r.j.mean()), moved, t / len(x)


def main():
    if not torch.cuda.is_available():
        print("cuda_check: no CUDA device here", file=sys.stderr)
        return 2
    torch.backends.cudnn.deterministic = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    lc, sc, tc = distil_step("cpu")
    lg, sg, tg = distil_step("cuda")
    dw = max(float((sc[k].float() - sg[k].float()).abs().max()) for k in sc)
    jc, mc, rc = refine("cpu")
    jg, mg, rg = refine("cuda")
    res = {"device": torch.cuda.get_device_name(0),
           "distil_step": {"loss_cpu": lc, "loss_cuda": lg, "max_weight_diff": dw, "ms_cpu": tc * 1e3, "ms_cuda": tg * 1e3},
           "npp_refine": {"J_cpu": jc, "J_cuda": jg, "moved_cpu": mc, "moved_cuda": mg,
                          "ms_per_image_cpu": rc * 1e3, "ms_per_image_cuda": rg * 1e3}}
    ok = abs(lc - lg) / lc <= 1e-4 and dw <= 1e-5 and abs(jc - jg) / jc <= 0.01 and abs(mc - mg) <= 0.05
    res["ok"] = ok
    print(json.dumps(res, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
