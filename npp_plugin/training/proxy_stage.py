"""Stage 1 of training: the learned proxies, rate–distortion pretraining, then imitation of a
real codec at one QP (one proxy per QP, :func:`run_proxy_stage`), and the helpers it is made of.

(a) pretraining: ``L = R_p + λ_p·255²·MSE(x, ŷ_proxy)`` (CompressAI's convention);
(b) fine-tuning (the paper's stage 1): ``L_p = R_p + λ_p·255²·MSE(x̂_codec, ŷ_proxy)``, the
    distortion measured against the real codec's reconstruction of the same batch. λ_p is
    steered so the proxy's rate tracks the codec's true rate on each batch (a log-domain
    controller), which puts the proxy's operating point on the codec's, so both the pixels
    and the bits the proxy differentiates match what the codec produces.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import InvalidArgumentError
from ..evaluation.metrics import psnr_from_mse
from ..fileio import atomic_write_bytes, save_tagged
from ..proxy.model import ProxyCodec
from .common import (
    CHECKPOINT_FORMAT,
    RunLog,
    Stopper,
    checkpoint_path,
    finite,
    load_checkpoint,
    progress_bar,
    val_source,
)
from .config import TrainConfig
from .data import Batches, _seed, make_source, val_batches
from .ddp import DistInfo

__all__ = ["Resume", "compare_with_codec", "finetune_to_codec", "overhead_bits", "pretrain_rd", "rd_loss",
           "run_proxy_stage"]


def rd_loss(out: dict, target: torch.Tensor, lmbda: float) -> dict[str, torch.Tensor]:
    """``{"loss", "bpp_loss", "mse_loss"}`` of a proxy output against ``target`` (CompressAI)."""
    n, _, h, w = target.shape
    bpp = out["bits"].sum() / (n * h * w)
    mse = F.mse_loss(out["x_hat"], target)
    return {"loss": bpp + lmbda * 255.0**2 * mse, "bpp_loss": bpp, "mse_loss": mse}


def _optimizers(proxy: ProxyCodec, lr: float, aux_lr: float):
    return (torch.optim.Adam(proxy.main_parameters(), lr=lr), torch.optim.Adam(proxy.aux_parameters(), lr=aux_lr))


def _step(proxy, opt, aux_opt, loss: torch.Tensor) -> float:
    opt.zero_grad(set_to_none=True)
    aux_opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(proxy.main_parameters(), 1.0)
    opt.step()
    aux = proxy.aux_loss()
    aux.backward()
    aux_opt.step()
    return float(aux.detach())


def _check_steps(steps: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        msg = f"proxy training: steps must be a non-negative integer, got {steps!r}"
        raise InvalidArgumentError(msg, argument="steps", allowed="integers >= 0")


def pretrain_rd(
    proxy: ProxyCodec,
    batches: Iterable[torch.Tensor],
    *,
    steps: int,
    lmbda: float = 0.0130,
    lr: float = 1e-4,
    aux_lr: float = 1e-3,
    callback: Callable[[int, dict], None] | None = None,
    resume: Resume | None = None,
) -> list[dict[str, float]]:
    """Train ``proxy`` as an ordinary learned codec; returns one record per step.

    ``resume`` continues from a :class:`Resume` state (``batches`` must then start at its
    step) and hands out checkpoints; see there.
    """
    _check_steps(steps)
    proxy.train()
    for p in proxy.parameters():
        p.requires_grad_(True)
    opt, aux_opt = _optimizers(proxy, lr, aux_lr)
    start = resume.restore(opt, aux_opt) if resume else 0
    history = []
    it: Iterator[torch.Tensor] = iter(batches)
    for step in range(start, steps):
        x = next(it)
        terms = rd_loss(proxy(x), x, lmbda)
        aux = _step(proxy, opt, aux_opt, terms["loss"])
        rec = {"step": step, "loss": terms["loss"].item(), "bpp": terms["bpp_loss"].item(),
               "psnr": psnr_from_mse(terms["mse_loss"].item()), "aux": aux}
        history.append(rec)
        if callback is not None:
            callback(step, rec)
        if resume and resume.after_step(step + 1, steps, opt, aux_opt, lmbda):
            return history
    proxy.meta.update({"pretrain_steps": proxy.meta.get("pretrain_steps", 0) + steps, "pretrain_lmbda": lmbda})
    return history


class Resume:
    """Checkpoints inside a proxy training phase, and continuing from one.

    Args:
        save: called with ``(step, state)`` to store a checkpoint; ``state`` holds the
            optimiser states and λ_p (the proxy's weights are the caller's to save).
        every: checkpoint every this many steps (0: only when stopping).
        stop: polled after every step; when it returns True, a checkpoint is saved and the
            phase returns early (the caller sees ``interrupted``).
        state: a checkpoint ``(step, state)`` to continue from, or None to start at step 0.
    """

    def __init__(self, save: Callable[[int, dict], None], *, every: int = 0,
                 stop: Callable[[], bool] | None = None, state: tuple[int, dict] | None = None) -> None:
        self.save, self.every, self.stop, self.state = save, every, stop, state
        self.interrupted = False

    @property
    def start(self) -> int:
        """The step this phase continues from (0 for a fresh start)."""
        return 0 if self.state is None else int(self.state[0])

    def restore(self, opt, aux_opt) -> int:
        """Load the optimiser states; returns :attr:`start`."""
        if self.state is not None:
            opt.load_state_dict(self.state[1]["opt"])
            aux_opt.load_state_dict(self.state[1]["aux_opt"])
        return self.start

    @property
    def lmbda(self) -> float | None:
        """λ_p at the checkpoint (fine-tuning steers it), or None."""
        return None if self.state is None else self.state[1].get("lmbda")

    def after_step(self, done: int, steps: int, opt, aux_opt, lmbda: float) -> bool:
        """Save when due; True when the phase must stop now."""
        stopping = bool(self.stop and self.stop()) and done < steps
        if stopping or (self.every and done % self.every == 0 and done < steps):
            self.save(done, {"opt": opt.state_dict(), "aux_opt": aux_opt.state_dict(), "lmbda": float(lmbda)})
        self.interrupted = stopping
        return stopping


def finetune_to_codec(
    proxy: ProxyCodec,
    codec: Any,
    qp: int,
    batches: Iterable[torch.Tensor],
    *,
    steps: int,
    lmbda: float | None = None,
    lr: float = 1e-4,
    aux_lr: float = 1e-3,
    match_rate: bool = True,
    rate_gain: float = 0.05,
    workers: int | None = None,
    callback: Callable[[int, dict], None] | None = None,
    resume: Resume | None = None,
) -> list[dict[str, float]]:
    """Fine-tune ``proxy`` to imitate ``codec`` at ``qp`` (the paper's L_p).

    Args:
        lmbda: starting λ_p (default: the proxy's last one, else 0.013).
        match_rate: steer λ_p so the proxy's bpp follows the codec's true bpp.
        resume: checkpoints and continuing, as in :func:`pretrain_rd` (λ_p included).

    Returns:
        Per step: loss, bpp of proxy and codec, PSNR of the proxy against the codec's
        reconstruction (how well it imitates), λ_p.
    """
    _check_steps(steps)
    proxy.train()
    for p in proxy.parameters():
        p.requires_grad_(True)
    opt, aux_opt = _optimizers(proxy, lr, aux_lr)
    lmbda = float(lmbda if lmbda is not None else proxy.meta.get("lmbda", 0.0130))
    if resume and resume.lmbda is not None:
        lmbda = float(resume.lmbda)
    start = resume.restore(opt, aux_opt) if resume else 0
    overheads: dict[tuple[int, int], float] = {}
    history = []
    it: Iterator[torch.Tensor] = iter(batches)
    for step in range(start, steps):
        x = next(it)
        with torch.no_grad():
            real, real_bits = codec.roundtrip(x, qp=qp, workers=workers)
        out = proxy(x)
        terms = rd_loss(out, real, lmbda)
        aux = _step(proxy, opt, aux_opt, terms["loss"])
        n, _, h, w = x.shape
        bpp_real = float(real_bits.sum()) / (n * h * w)
        bpp_proxy = terms["bpp_loss"].item()
        if (h, w) not in overheads:
            overheads[(h, w)] = overhead_bits(codec, qp, h, w, workers=workers)
        # the proxy models the payload: headers cost the same whatever the pixels
        payload = bpp_real - overheads[(h, w)] / (h * w)
        if match_rate and payload > 0 and bpp_proxy > 0:
            lmbda = float(min(1.0, max(1e-4, lmbda * math.exp(-rate_gain * math.log(bpp_proxy / payload)))))
        rec = {"step": step, "loss": terms["loss"].item(), "bpp_proxy": bpp_proxy, "bpp_codec": bpp_real,
               "bpp_codec_payload": payload,
               "psnr_vs_codec": psnr_from_mse(terms["mse_loss"].item()), "lmbda": lmbda, "aux": aux}
        history.append(rec)
        if callback is not None:
            callback(step, rec)
        if resume and resume.after_step(step + 1, steps, opt, aux_opt, lmbda):
            return history
    proxy.meta.update({"codec": codec.name, "codec_config": codec.get_config(), "qp": int(qp), "lmbda": lmbda,
                       "finetune_steps": proxy.meta.get("finetune_steps", 0) + steps})
    return history


@torch.no_grad()
def overhead_bits(codec: Any, qp: int, h: int, w: int, *, workers: int | None = None) -> float:
    """Bits the codec spends on a flat grey ``h``×``w`` image: headers and side information
    that no pixel content changes (JPEG's tables: ~600 bytes, 1.2 bpp on a 64² crop)."""
    flat = torch.full((1, 3, h, w), 0.5)
    return float(codec.roundtrip(flat, qp=qp, workers=workers)[1].sum())


@torch.no_grad()
def compare_with_codec(
    proxies: dict[int, ProxyCodec], codec: Any, batches: list[torch.Tensor], *, workers: int | None = None
) -> dict[str, Any]:
    """How closely the proxies track the codec on held-out batches (eval mode, rounding).

    Returns:
        ``per_qp``: bpp and PSNR (against the original) of codec and proxy, the proxy's PSNR
        against the codec's reconstruction and its bits ratio; ``bd_rate``: the proxy's
        BD-rate (%) against the codec on PSNR (needs ≥ 4 QPs and ``bjontegaard``; else None);
        ``bd_rate_payload``: the same with the codec's fixed header bits (a flat image's)
        removed, which a learned codec has no counterpart for; ``bd_psnr``: the proxy's
        PSNR minus the codec's at equal rate (dB), defined where only the rates overlap.
    """
    rows = []
    for qp, proxy in sorted(proxies.items()):
        was_training = proxy.training
        proxy.eval()
        acc = {"bits_c": 0.0, "bits_p": 0.0, "se_c": 0.0, "se_p": 0.0, "se_pc": 0.0, "px": 0, "head": 0.0}
        for x in batches:
            acc["head"] += x.shape[0] * overhead_bits(codec, qp, x.shape[2], x.shape[3], workers=workers)
            real, bits = codec.roundtrip(x, qp=qp, workers=workers)
            out = proxy(x)
            y = out["x_hat"].clamp(0, 1)
            acc["bits_c"] += float(bits.sum())
            acc["bits_p"] += float(out["bits"].sum())
            acc["se_c"] += float(((real - x) ** 2).sum())
            acc["se_p"] += float(((y - x) ** 2).sum())
            acc["se_pc"] += float(((y - real) ** 2).sum())
            acc["px"] += x.numel()
        proxy.train(was_training)
        pixels = acc["px"] / 3

        def db(se: float, px: float = acc["px"]) -> float:
            return psnr_from_mse(se / px)

        rows.append({"qp": qp, "bpp_codec": acc["bits_c"] / pixels, "bpp_proxy": acc["bits_p"] / pixels,
                     "psnr_codec": db(acc["se_c"]), "psnr_proxy": db(acc["se_p"]),
                     "psnr_proxy_vs_codec": db(acc["se_pc"]), "bits_ratio": acc["bits_p"] / max(acc["bits_c"], 1.0),
                     "payload_bits_ratio": acc["bits_p"] / max(acc["bits_c"] - acc["head"], 1.0),
                     "bpp_codec_overhead": acc["head"] / pixels})
    for r in rows:
        r["bpp_codec_payload"] = r["bpp_codec"] - r["bpp_codec_overhead"]
    return {"per_qp": rows, "bd_rate": _bd_rate(rows, "bpp_codec"), "bd_rate_payload": _bd_rate(rows, "bpp_codec_payload"),
            "bd_psnr": _bd_psnr(rows, "bpp_codec")}


def _bd_rate(rows: list[dict], anchor: str) -> float | None:
    return _bd(rows, anchor, "bd_rate")


def _bd_psnr(rows: list[dict], anchor: str) -> float | None:
    return _bd(rows, anchor, "bd_psnr")


def _bd(rows: list[dict], anchor: str, measure: str) -> float | None:
    """BD-rate / BD-PSNR (:mod:`npp_plugin.evaluation.bdrate`, akima) of the proxy's curve
    against the codec's; None with fewer than 4 QPs, without ``bjontegaard``, or where the
    curves do not overlap (a proxy still far from the codec)."""
    if len(rows) < 4:
        return None
    try:
        import bjontegaard  # noqa: F401  (the eval extra; the gap report works without it)
    except ImportError:
        return None
    from ..evaluation.bdrate import bd_quality, bd_rate

    fn = bd_rate if measure == "bd_rate" else bd_quality
    value, _notes = fn([r[anchor] for r in rows], [r["psnr_codec"] for r in rows],
                       [r["bpp_proxy"] for r in rows], [r["psnr_proxy"] for r in rows], method="akima")
    return value if math.isfinite(value) else None


def run_proxy_stage(cfg: TrainConfig, dist: DistInfo, stopper: Stopper, resume: bool) -> dict[str, Any]:
    """Stage 1 (``cfg.stage == "proxy"``): pretrain a base proxy, fine-tune one per QP to the
    codec, measure their gap to it; see :func:`npp_plugin.training.loop.run`."""
    from ..proxy import load_proxies, proxy_codec, save_proxies
    from ..registry import get_codec

    if dist.enabled:
        msg = "npp train proxy: stage 1 runs in one process (one proxy per QP); start it without torchrun"
        raise InvalidArgumentError(msg, argument="stage", allowed="single process")
    out = Path(cfg.out)
    codec = get_codec(cfg.codec, **cfg.codec_options)
    bank_path = cfg.proxies_path()
    base_path = out / f"proxy-base-{cfg.proxy_arch}.pt"
    ck_path = checkpoint_path(cfg)
    # A phase in progress (pretraining, or fine-tuning one QP) checkpoints every
    # cfg.checkpoint_every steps and on SIGTERM; --resume continues it where it stopped.
    ck = load_checkpoint(cfg, torch.device("cpu")) if resume else None
    done = load_proxies(bank_path) if resume and bank_path.is_file() else {}
    if ck is not None and (ck["phase"] == "pretrain" and base_path.is_file() or ck.get("qp") in done):
        ck = None  # that phase finished after the checkpoint

    def stale(rec: dict) -> bool:  # log records the checkpoint does not cover
        return ck is not None and rec.get("event") == ck["phase"] and rec.get("qp") == ck.get("qp") \
            and rec["step"] >= ck["step"]

    log = RunLog(out / "log-proxy.jsonl", enabled=True, resume_step=0 if resume else None, stale=stale)
    source = make_source(cfg.data, annotations=cfg.annotations)
    batches = Batches(source, size=cfg.size, batch_size=cfg.batch_size, seed=cfg.seed)
    todo = [q for q in cfg.qps if q not in done]
    total = cfg.proxy_pretrain_steps * (not base_path.is_file()) + cfg.steps * len(todo)
    bar = progress_bar(cfg, dist, total, ck["step"] if ck else 0, f"proxies {cfg.codec}")

    def callback(kind: str, qp: int | None):
        def cb(step: int, rec: dict) -> None:
            log.write({"event": kind, "qp": qp, **rec})
            bar.update(1)
            bar.set_postfix({k: f"{v:.4g}" for k, v in rec.items() if k != "step"}, refresh=False)

        return cb

    def batch_iter(tag: str, start: int = 0) -> Iterator[torch.Tensor]:
        k = start
        while True:
            torch.manual_seed(_seed(cfg.seed, tag, k))
            yield batches[k][0]
            k += 1

    def checkpoints(phase: str, qp: int | None, proxy: ProxyCodec) -> Resume:
        state = None
        if ck is not None and ck["phase"] == phase and ck.get("qp") == qp:
            proxy.load_state_dict(ck["proxy"]["state"])
            proxy.meta = dict(ck["proxy"]["meta"])
            state = (ck["step"], ck["optim"])

        def save(step: int, optim: dict) -> None:
            save_tagged(ck_path, CHECKPOINT_FORMAT, {"config": cfg.to_dict(), "phase": phase, "qp": qp,
                                  "step": step, "optim": optim,
                                  "proxy": {"config": proxy.get_config(), "meta": dict(proxy.meta),
                                            "state": proxy.state_dict()}})

        return Resume(save, every=cfg.checkpoint_every, stop=lambda: stopper.requested, state=state)

    interrupted = False
    if cfg.proxy_init:
        inits = load_proxies(cfg.proxy_init)
        base = None
    elif base_path.is_file():
        base, inits = load_proxies(base_path)[0], {}
    else:
        # seeded: the global RNG's start state differs between processes
        base = proxy_codec(arch=cfg.proxy_arch, N=cfg.proxy_N, M=cfg.proxy_M, seed=_seed(cfg.seed, "proxy-init"))
        inits = {}
        rs = checkpoints("pretrain", None, base)
        pretrain_rd(base, batch_iter("pretrain", rs.start), steps=cfg.proxy_pretrain_steps,
                    lmbda=cfg.proxy_lambda, lr=cfg.lr, callback=callback("pretrain", None), resume=rs)
        interrupted = rs.interrupted
        if not interrupted:
            save_proxies(base_path, {0: base})
    for qp in todo:
        if interrupted:
            break
        start = base if base is not None else inits[min(inits, key=lambda q: abs(q - qp))]
        proxy = copy.deepcopy(start)
        rs = checkpoints("finetune", qp, proxy)
        finetune_to_codec(proxy, codec, qp, batch_iter(f"finetune{qp}", rs.start), steps=cfg.steps,
                          lmbda=proxy.meta.get("lmbda", cfg.proxy_lambda), lr=cfg.lr, workers=cfg.workers,
                          callback=callback("finetune", qp), resume=rs)
        interrupted = rs.interrupted
        if not interrupted:
            done[qp] = proxy.freeze()
            save_proxies(bank_path, done)
    bar.close()
    summary: dict[str, Any] = {"stage": "proxy", "interrupted": interrupted, "outputs": {"proxies": str(bank_path)},
                               "qps_done": sorted(done)}
    if interrupted:
        summary["outputs"]["checkpoint"] = str(ck_path)
    if interrupted or not done:
        return summary
    val = val_source(cfg) or source
    vb = [x for x, _ in val_batches(val, size=cfg.size, batch_size=cfg.batch_size, limit=cfg.val_images)]
    gap = compare_with_codec(done, codec, vb, workers=cfg.workers)
    for row in gap["per_qp"]:
        done[row["qp"]].meta["gap"] = row
    for p in done.values():
        p.meta["bd_rate_vs_codec"] = gap["bd_rate"]
    save_proxies(bank_path, done)
    atomic_write_bytes(out / "proxy-gap.json", json.dumps(finite(gap), indent=2, allow_nan=False).encode())
    log.write({"event": "gap", **gap})
    summary["gap"] = gap
    return summary
