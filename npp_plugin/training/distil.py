# SPDX-License-Identifier: GPL-2.0-or-later
"""``npp distil``: the NPP network trained on the teacher's outputs, judged by the real codec.

The student is the paper's network (pixel branch + U-Net, QA layers: one network for every
QP) behind the tuned blur (:class:`~npp_plugin.preprocessors.model.NppConfig`'s
``base_sigma``): a fresh student *is* the tuned blur, and it learns the change that
``npp_refine`` adds to the blur's output, from the image alone (no task network at encode
time)::

    npp teacher --images corpus:train --out runs/teacher
    npp teacher --images corpus:dev --crops-per-photo 2 --out runs/teacher-dev
    npp distil --teacher runs/teacher --dev runs/teacher-dev --out runs/distil   # --resume

Loss: squared error between the student's and the teacher's change to the blur's output, per
crop divided by the square of the teacher's step size at that crop's QP (the change grows
with the quantiser step; this weighs every QP alike), times ``--mse-weight``; plus
``--j-weight`` times the real codec's J of the student's output for ``--j-task`` (BPG fast,
gradients from the analytic surrogates, the task at training time only). ``--mse-weight 0
--j-weight 1`` trains end to end on J alone, the teacher's pixels unused. The teacher's
change is noise-like and only partly predictable from the image, so a squared-error fit
predicts it shrunk towards zero: the output ``gain`` (``NppConfig.gain``) scales the change back up, chosen on the
development crops by the real J.

Judged by the real codec, not by the distance to the teacher: every ``--eval-every`` steps
the student codes the development crops at their QPs, for gains ``--gains``; its real J =
bpp + λ·KL (MobileNetV2, the teacher's task) is logged beside the blur's and the teacher's
on the same crops (stored in the shards), with the unseen EfficientNet-Lite0's KL. The
checkpoint with the lowest development J (over steps and gains) is written as weights
(``best.npp.pt``); ``ckpt.pt`` continues a stopped run with ``--resume``; ``log.jsonl``
holds every evaluation.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ..errors import InvalidArgumentError, NppError
from ..fileio import atomic_write_bytes, load_tagged, save_tagged
from ..preprocessors.refine import refine_step_size

__all__ = ["DistilSettings", "main", "run_distil", "student_net"]

CKPT_FORMAT = "npp-distil-checkpoint/1"
#: npp_refine's step size at QP 34 (its default): the scale of the teacher's change
TEACHER_LR = 0.004


@dataclass(frozen=True)
class DistilSettings:
    """A distillation run's recipe (stored in its checkpoint and in the weights' metadata)."""

    widths: tuple[int, ...] = (8, 16, 32, 64)
    qa_hidden: int = 16
    steps: int = 4000
    batch: int = 8
    crop: int = 128
    lr: float = 1e-3
    lr_final: float = 1e-4
    ema: float = 0.995
    eval_every: int = 250
    gains: tuple[float, ...] = (1.0, 1.5, 2.0, 3.0)
    #: weight of the real codec's J (analytic surrogate gradients, ``j_task``, BPG fast) in
    #: the loss, relative to the squared error; 0: pure distillation
    j_weight: float = 0.0
    #: weight of the squared error to the teacher's change; 0 with j_weight > 0: J alone
    mse_weight: float = 1.0
    #: the task whose KL enters that J, with its λ table (a classifier or "a+b")
    j_task: str = "mobilenet_v2"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.crop % 32 or not 32 <= self.crop <= 1024:
            msg = f"npp distil: crop must be a multiple of 32 in [32, 1024], got {self.crop}"
            raise InvalidArgumentError(msg, argument="crop", allowed="multiple of 32")
        if self.steps < 1 or self.batch < 1 or self.eval_every < 1:
            msg = "npp distil: steps, batch and eval_every must be positive"
            raise InvalidArgumentError(msg, argument="steps", allowed=">= 1")
        if not self.gains or any(not 0 < g <= 100 for g in self.gains):
            msg = f"npp distil: gains must be in (0, 100], got {self.gains}"
            raise InvalidArgumentError(msg, argument="gains", allowed="(0, 100]")
        for name in ("j_weight", "mse_weight"):
            if not 0 <= getattr(self, name) <= 1e6:
                msg = f"npp distil: {name} must be in [0, 1e6], got {getattr(self, name)}"
                raise InvalidArgumentError(msg, argument=name, allowed="[0, 1e6]")
        if not self.j_weight and not self.mse_weight:
            msg = "npp distil: mse_weight and j_weight are both 0: the loss would be empty"
            raise InvalidArgumentError(msg, argument="mse_weight", allowed="mse_weight > 0 or j_weight > 0")
        if not 0 <= self.ema < 1:
            msg = f"npp distil: ema must be in [0, 1), got {self.ema}"
            raise InvalidArgumentError(msg, argument="ema", allowed="[0, 1)")
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "gains", tuple(float(g) for g in self.gains))


def student_net(s: DistilSettings, codec: Any) -> Any:
    """A fresh student: the NPP network behind the shipped tuned blur (its σ table as knots
    in the normalised QP of ``codec``), so it starts as exactly that blur."""
    from ..preprocessors.model import NppConfig, NppNet
    from ..registry import get_preprocessor

    blur = get_preprocessor("blur_tuned")
    lo, hi = codec.qp_norm_range or codec.qp_range
    knots = tuple((min(1.0, max(0.0, (q - lo) / (hi - lo))), s) for q, s in blur.sigmas.items())
    cfg = NppConfig("distil", s.widths, qa=True, qa_hidden=s.qa_hidden, base_sigma=knots,
                    description="NPP distilled from npp_refine, behind the tuned blur")
    return NppNet(cfg)


class DevJudge:
    """Real-codec J of a network on the development crops, beside the blur's and teacher's.
    Both are scored here, not read from the shards: the shards hold MobileNetV2's loss only,
    and the log compares the unseen EfficientNet-Lite0 too."""

    def __init__(self, dev: dict[str, Any], codec: Any) -> None:
        from ..registry import get_preprocessor, get_task

        self.dev, self.codec = dev, codec
        self.x = dev["x"].float() / 255
        self.tasks = {name: get_task(name) for name in ("mobilenet_v2", "efficientnet_lite0")}
        self.refs = {name: t.reference(self.x) for name, t in self.tasks.items()}
        self.qps = sorted(set(dev["qp"].tolist()))
        self.blur = self._score(self.x, prefilter=get_preprocessor("blur_tuned"))
        self.teacher = self._score(dev["y"].float() / 255)

    def _score(self, y: torch.Tensor, prefilter: Any = None) -> dict[str, torch.Tensor]:
        from .teacher import code_and_score

        bpp, kl = code_and_score(y, self.dev["qp"], self.codec, self.tasks, self.refs, prefilter=prefilter)
        j = bpp + self.dev["lam"] * kl["mobilenet_v2"]
        return {"J": j, "bpp": bpp, **{f"kl_{k}": v for k, v in kl.items()}}

    @torch.no_grad()
    def __call__(self, net: Any) -> dict[str, torch.Tensor]:
        from ..preprocessors.hook import npp_filter

        y = torch.empty_like(self.x)
        for qp in self.qps:
            idx = (self.dev["qp"] == qp).nonzero().flatten()
            y[idx] = npp_filter(net, self.x[idx], codec=self.codec, qp=qp)
        return self._score(y)


def _real_j(pred: torch.Tensor, x: torch.Tensor, qp: torch.Tensor, codec: Any, task: Any, lam_of: Any) -> torch.Tensor:
    """Mean real J of the student's output (values: the real codec; gradients: the analytic
    surrogates), per QP present in the batch; J = bpp + λ(QP)·KL(task(x) ‖ task(decoded))."""
    from ..surrogates import surrogate_step

    total = pred.new_zeros(())
    npx = pred.shape[-1] * pred.shape[-2]
    for q in sorted(set(qp.tolist())):
        idx = (qp == q).nonzero().flatten()
        with torch.no_grad():  # per QP group: an ensemble's reference is one per member
            ref = task.reference(x[idx])
        st = surrogate_step(pred[idx], codec=codec, qp=int(q))
        j = st.bits / npx + lam_of(int(q)) * task.loss(st.x_hat, ref, reduction="none")
        total = total + j.sum()
    return total / pred.shape[0]


def _ema_update(ema: torch.nn.Module, net: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for pe, p in zip(ema.parameters(), net.parameters(), strict=True):
            pe.mul_(decay).add_(p, alpha=1 - decay)
        for be, b in zip(ema.buffers(), net.buffers(), strict=True):
            be.copy_(b)


def _batch(data: dict[str, Any], s: DistilSettings, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(s.seed * 1_000_003 + step)
    n, size = data["x"].shape[0], data["x"].shape[-1]
    idx = torch.randint(0, n, (s.batch,), generator=g)
    # offsets on a 32-pixel grid keep the codec's block grid where the teacher saw it
    offs = torch.randint(0, (size - s.crop) // 32 + 1, (s.batch, 2), generator=g) * 32
    windows = [(slice(None), slice(oy, oy + s.crop), slice(ox, ox + s.crop)) for oy, ox in offs.tolist()]
    xs = torch.stack([data["x"][i][w] for i, w in zip(idx.tolist(), windows, strict=True)])
    ys = torch.stack([data["y"][i][w] for i, w in zip(idx.tolist(), windows, strict=True)])
    return xs.float() / 255, ys.float() / 255, data["qp"][idx]


def run_distil(teacher: str | Path, dev: str | Path, out: str | Path, s: DistilSettings, *, resume: bool = False,
               threads: int | None = None, progress: bool = True, max_steps: int | None = None) -> dict[str, Any]:
    """Train a student (module docstring); returns the best development figures."""
    from tqdm import tqdm

    from ..preprocessors.weights import save_weights
    from ..registry import get_codec
    from .teacher import load_shards

    if threads:
        torch.set_num_threads(threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    codec = get_codec("bpg")
    data, dev_data = load_shards(teacher), load_shards(dev)
    overlap = set(data["groups"]) & set(dev_data["groups"])
    if overlap:
        msg = f"npp distil: the development shards share photo groups with the training shards: {sorted(overlap)[:5]}"
        raise InvalidArgumentError(msg, argument="dev", allowed="shards of other photos (corpus:dev)")
    net = student_net(s, codec)
    ema = copy.deepcopy(net)
    opt = torch.optim.Adam(net.parameters(), lr=s.lr)
    ckpt_path, log_path, best_path = out / "ckpt.pt", out / "log.jsonl", out / "best.npp.pt"
    step, best = 0, {"J": math.inf}
    if resume and ckpt_path.is_file():
        ck = load_tagged(ckpt_path, CKPT_FORMAT, who="npp distil", what="a distillation checkpoint")
        # a checkpoint from before a setting existed ran with that setting's default
        if {**_jsonable(DistilSettings()), **ck["settings"]} != _jsonable(s):
            msg = f"npp distil: {str(ckpt_path)!r} was made with other settings; use another --out"
            raise InvalidArgumentError(msg, argument="out", allowed="a fresh folder, or the same settings")
        net.load_state_dict(ck["net"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["opt"])
        step, best = int(ck["step"]), dict(ck["best"])
    elif ckpt_path.is_file():
        msg = f"npp distil: {str(out)!r} holds a run already; add --resume to continue it"
        raise InvalidArgumentError(msg, argument="resume", allowed="--resume, or another --out")
    judge = DevJudge(dev_data, codec)
    j_codec, j_task, lam_of = None, None, None
    if s.j_weight:
        from ..preprocessors.filters import TunedBlur
        from ..preprocessors.lambdas import resolve_lambdas
        from ..registry import get_task

        j_codec, j_task = get_codec("bpg", fast=True), get_task(s.j_task)
        lambdas = resolve_lambdas(None, task=s.j_task, who="npp distil")[0]

        def lam_of(qp: int) -> float:
            return TunedBlur.by_normalized_qp(lambdas, codec, qp)
    base = {"J_blur": float(judge.blur["J"].mean()), "J_teacher": float(judge.teacher["J"].mean()),
            "kl_lite0_blur": float(judge.blur["kl_efficientnet_lite0"].mean()),
            "kl_lite0_teacher": float(judge.teacher["kl_efficientnet_lite0"].mean())}
    if step == 0:
        with open(log_path, "w") as fh:
            fh.write(json.dumps({"event": "start", "train_crops": int(data["x"].shape[0]),
                                 "dev_crops": int(dev_data["x"].shape[0]), **base, "settings": _jsonable(s)}) + "\n")
    end = s.steps if max_steps is None else min(s.steps, step + max_steps)
    bar = tqdm(total=s.steps, initial=step, desc="distil", unit="step", disable=not progress)
    t0, losses = time.time(), []
    while step < end:
        lr = s.lr * (s.lr_final / s.lr) ** (step / max(1, s.steps - 1))
        for grp in opt.param_groups:
            grp["lr"] = lr
        x, y, qp = _batch(data, s, step)
        net.train()
        pred = net(x, torch.tensor([codec.normalized_qp(int(v)) for v in qp.tolist()]))
        # per crop ÷ (the teacher's step size)²: every QP weighs alike
        w = torch.tensor([refine_step_size(TEACHER_LR, codec, int(v)) ** -2 for v in qp.tolist()])
        loss = s.mse_weight * ((pred - y) ** 2).mean(dim=(1, 2, 3)).mul(w).mean()
        if s.j_weight:
            loss = loss + s.j_weight * _real_j(pred, x, qp, j_codec, j_task, lam_of)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _ema_update(ema, net, s.ema if step > 100 else 0.0)
        losses.append(loss.item())
        step += 1
        bar.update(1)
        if step % s.eval_every == 0 or step == s.steps:
            ema.eval()
            rows = {}
            for gain in s.gains:
                ema.config = replace(ema.config, gain=gain)
                r = judge(ema)
                rows[gain] = {"J": float(r["J"].mean()), "bpp": float(r["bpp"].mean()),
                              "kl_mnv2": float(r["kl_mobilenet_v2"].mean()),
                              "kl_lite0": float(r["kl_efficientnet_lite0"].mean())}
            gbest = min(rows, key=lambda g: rows[g]["J"])
            rec = {"event": "eval", "step": step, "loss": sum(losses) / len(losses), "lr": lr,
                   "seconds": round(time.time() - t0, 1), "gains": {str(g): v for g, v in rows.items()},
                   "best_gain": gbest, **base}
            losses = []
            with open(log_path, "a") as fh:
                fh.write(json.dumps(rec) + "\n")
            bar.write(f"step {step}: dev J {rows[gbest]['J']:.4f} at gain {gbest} "
                      f"(blur {base['J_blur']:.4f}, teacher {base['J_teacher']:.4f}); "
                      f"lite0 KL {rows[gbest]['kl_lite0']:.4f} (blur {base['kl_lite0_blur']:.4f})")
            if rows[gbest]["J"] < best["J"]:
                best = {"J": rows[gbest]["J"], "step": step, "gain": gbest, **rows[gbest], **base}
                ema.config = replace(ema.config, gain=gbest)
                save_weights(best_path, ema, meta=_meta(s, codec, best, data, dev_data))
            ema.config = replace(ema.config, gain=1.0)
            save_tagged(ckpt_path, CKPT_FORMAT, {"net": net.state_dict(), "ema": ema.state_dict(),
                                                 "opt": opt.state_dict(), "step": step, "best": best,
                                                 "settings": _jsonable(s)})
    bar.close()
    summary = {"out": str(out), "step": step, "best": best}
    atomic_write_bytes(out / "summary.json", (json.dumps(summary, indent=1) + "\n").encode())
    return summary


def _jsonable(s: DistilSettings) -> dict[str, Any]:
    d = asdict(s)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _meta(s: DistilSettings, codec: Any, best: dict[str, Any], data: dict[str, Any], dev: dict[str, Any]) -> dict[str, Any]:
    return {"codec": codec.get_config(),
            "recipe": {"stage": "distil", "teacher": "npp_refine shards" if s.mse_weight else "none (J alone)", **_jsonable(s),
                       "step": best["step"], "gain": best["gain"]},
            "fidelity": {"kind": "none", "note": "the student's change is fitted to the teacher's" if s.mse_weight
                         else "trained on the real codec's J alone"},
            "metrics": {"dev": {k: v for k, v in best.items() if isinstance(v, (int, float))},
                        "train_crops": int(data["x"].shape[0]), "dev_crops": int(dev["x"].shape[0]),
                        "train_photos": len(set(data["photos"])), "dev_photos": len(set(dev["photos"]))}}


def build_parser() -> argparse.ArgumentParser:
    d = DistilSettings()
    p = argparse.ArgumentParser(prog="npp distil", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", required=True, type=Path, help="training shards (npp teacher --images corpus:train)")
    p.add_argument("--dev", required=True, type=Path, help="development shards (npp teacher --images corpus:dev)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--widths", type=int, nargs="+", default=list(d.widths), help="U-Net channels per level")
    p.add_argument("--qa-hidden", type=int, default=d.qa_hidden)
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--crop", type=int, default=d.crop, help="training sub-crop side (multiple of 32)")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--lr-final", type=float, default=d.lr_final)
    p.add_argument("--ema", type=float, default=d.ema)
    p.add_argument("--eval-every", type=int, default=d.eval_every)
    p.add_argument("--gains", type=float, nargs="+", default=list(d.gains))
    p.add_argument("--j-weight", type=float, default=d.j_weight,
                   help="weight of the real codec's J (surrogate gradients; the task at training time only)")
    p.add_argument("--mse-weight", type=float, default=d.mse_weight,
                   help="weight of the squared error to the teacher's change (0 with --j-weight: J alone)")
    p.add_argument("--j-task", default=d.j_task,
                   help="the task of that J, e.g. mobilenet_v2+efficientnet_lite0 (needs its λ table)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (resume later)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        s = DistilSettings(widths=tuple(args.widths), qa_hidden=args.qa_hidden, steps=args.steps, batch=args.batch,
                           crop=args.crop, lr=args.lr, lr_final=args.lr_final, ema=args.ema,
                           eval_every=args.eval_every, gains=tuple(args.gains), j_weight=args.j_weight,
                           mse_weight=args.mse_weight, j_task=args.j_task, seed=args.seed)
        summary = run_distil(args.teacher, args.dev, args.out, s, resume=args.resume, threads=args.threads,
                             progress=not args.no_progress, max_steps=args.max_steps)
    except NppError as exc:
        print(f"npp distil: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, default=str))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
