"""Stages 2 and 3 of training: the NPP through the real codec (the paper's Algorithm 1).

Stage 2 ``npp``: NPP without QA layers at one QP. Stage 3 ``npp-qa``: QA layers added, a QP
drawn per batch. Each step::

    x ─NPP─► x̄ ─► codec_step (real values, proxy or surrogate gradients) ─► x̂, bits ─► task loss
    L = bpp + λ(qp)·D_task + β·F(x, x̄)            only NPP's weights are updated

The NPP meets its operating point through :func:`~npp_plugin.preprocessors.hook.npp_filter`
(as the "npp" hook does); validation and :func:`objective` run the network through the hook
itself (:class:`~npp_plugin.preprocessors.hook.NppPreprocessor`) and the codec's
``roundtrip``. Next to every step's loss the log holds the plain codec's bits and task loss on
the same batch (``R/R_plain``, ``D/D_plain``) and how far the proxy is from the real codec.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import WeightsError
from ..fileio import save_tagged
from ..preprocessors.hook import NppPreprocessor, npp_filter
from ..ste import codec_step
from ..surrogates import surrogate_step
from .common import (
    CHECKPOINT_FORMAT,
    RunLog,
    Stopper,
    batch_psnr,
    check_target_kind,
    checkpoint_path,
    components,
    load_checkpoint,
    progress_bar,
    to_device,
    val_source,
)
from .config import TrainConfig
from .data import Batches, _seed, make_source, val_batches
from .ddp import DistInfo, wrap
from .losses import calibrate_lambdas, fidelity_loss, fidelity_spec, npp_loss, paper_lambda

__all__ = ["NppTrainState", "objective", "run_npp_stage", "train_step"]


@dataclass
class NppTrainState:
    """What every NPP training step works with (built once per run by :func:`run_npp_stage`).

    Attributes:
        cfg: the run's configuration; dist: the process's place in a DDP group.
        net: the NPP being trained; model: the same network, DDP-wrapped when distributed
            (the forward pass goes through it, so gradients are averaged across ranks).
        opt: the optimiser of ``net``'s parameters.
        batches: the seeded training crops; task: the task network (frozen); codec: the
            real codec.
        proxies: QP → learned proxy (empty with an analytic surrogate).
        lambdas: QP → λ of the objective.
        workers: codec threads of this process; device: where the networks run.
    """

    cfg: TrainConfig
    dist: DistInfo
    net: Any
    model: Any
    opt: torch.optim.Optimizer
    batches: Batches
    task: Any
    codec: Any
    proxies: dict[int, Any]
    lambdas: dict[int, float]
    workers: int | None
    device: torch.device


def _build_npp(cfg: TrainConfig, device: torch.device):
    from ..preprocessors.weights import npp_net

    if cfg.npp_init:
        net = npp_net(weights=cfg.npp_init, device=device)
        net.train()
        for p in net.parameters():
            p.requires_grad_(True)
        if cfg.stage == "npp-qa":
            net.enable_qa()
        elif net.config.qa:
            msg = f"npp train npp: {cfg.npp_init} has QA layers; stage 2 trains without them (use stage npp-qa)"
            raise WeightsError(msg)
        return net.to(device)
    return npp_net(config=cfg.npp_config, qa=cfg.stage == "npp-qa", device=device)


def _lambda_table(cfg, dist, codec, task, source, device) -> tuple[dict[int, float], dict[str, Any]]:
    qps = cfg.qps_used()
    if cfg.lambda_mode == "fixed":
        return {q: cfg.lambdas[str(q)] * cfg.lambda_scale for q in qps}, {"mode": "fixed"}
    if cfg.lambda_mode == "paper":
        return {q: paper_lambda(q) * cfg.lambda_scale for q in qps}, {"mode": "paper"}
    calib = None
    if dist.is_writer:
        cb = Batches(source, size=cfg.size, batch_size=cfg.batch_size, seed=cfg.seed + 7919)
        pairs = []
        for k in range(cfg.calib_batches):
            x, target = cb[k]
            x, target = x.to(device), to_device(target, device)
            pairs.append((x, target if target is not None else task.reference(x)))
        calib = calibrate_lambdas(codec, task, pairs, qps, delta=cfg.calib_delta, workers=cfg.workers)
    calib = dist.broadcast(calib)
    table = {q: calib[q]["lmbda"] * cfg.lambda_scale for q in qps}
    return table, {"mode": "calibrated", "delta": cfg.calib_delta, "per_qp": {str(k): v for k, v in calib.items()}}


def run_npp_stage(cfg: TrainConfig, dist: DistInfo, stopper: Stopper, resume: bool) -> dict[str, Any]:
    """Stage 2 or 3 (``cfg.stage`` ``npp`` / ``npp-qa``): train, checkpoint, validate and
    write the weights file; see :func:`npp_plugin.training.loop.run`."""
    from ..preprocessors.weights import save_weights
    from ..proxy import load_proxies

    device = torch.device(f"cuda:{dist.local_rank}" if cfg.device == "cuda" else cfg.device)
    out = Path(cfg.out)
    codec, task = components(cfg, device)
    qps = cfg.qps_used()
    for q in qps:
        codec.validate_qp(q)
    analytic = cfg.surrogate != "proxy"
    proxies = {} if analytic else load_proxies(cfg.proxies_path(), device=device)
    missing = [] if analytic else [q for q in qps if q not in proxies]
    if missing:
        msg = (f"npp train: {cfg.proxies_path()} has proxies for qps {sorted(proxies)}, not {missing}; "
               f"train them with `npp train proxy --qps {' '.join(map(str, missing))}`")
        raise WeightsError(msg)
    source = make_source(cfg.data, annotations=cfg.annotations)
    batches = Batches(source, size=cfg.size, batch_size=cfg.batch_size, seed=cfg.seed, rank=dist.rank,
                      world=dist.world)
    workers = cfg.workers or dist.codec_workers()

    ck = load_checkpoint(cfg, device) if resume else None
    torch.manual_seed(_seed(cfg.seed, "init"))  # the same initial weights on every rank and run
    net = _build_npp(cfg, device)
    if ck is not None:
        from ..preprocessors.model import NppNet

        net = NppNet.from_config(ck["npp_config"]).to(device)
        net.load_state_dict(ck["npp_state"])
        net.train()
    elif cfg.init_blur > 0 and not cfg.npp_init:
        _distil_to_blur(net, batches, cfg.init_blur, device=device)
    ema = copy.deepcopy(net).eval() if cfg.ema > 0 else None
    if ema is not None and ck is not None and ck.get("ema_state") is not None:
        ema.load_state_dict(ck["ema_state"])
    model = wrap(net, dist)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    if ck is not None:
        opt.load_state_dict(ck["optimizer"])
        lambdas = {int(k): float(v) for k, v in ck["lambdas"].items()}
        calibration = ck["calibration"]
        start = int(ck["step"])
    else:
        lambdas, calibration = _lambda_table(cfg, dist, codec, task, source, device)
        start = 0
    state = NppTrainState(cfg=cfg, dist=dist, net=net, model=model, opt=opt, batches=batches, task=task,
                          codec=codec, proxies=proxies, lambdas=lambdas, workers=workers, device=device)

    log = RunLog(out / f"log-{cfg.stage}.jsonl", enabled=dist.is_writer, resume_step=start if resume else None)
    if start == 0:
        # also when --resume found no checkpoint: the run starts over from step 0
        log.write({"event": "start", "config": cfg.to_dict(), "lambdas": {str(k): v for k, v in lambdas.items()},
                   "calibration": calibration, "world": dist.world, "data": source.describe()})
    else:
        log.write({"event": "resume", "step": start, "world": dist.world})

    val = val_source(cfg)
    check_x = None
    if analytic and dist.is_writer and val is not None:
        vb = val_batches(val, size=cfg.size, batch_size=max(cfg.val_images, 1), limit=cfg.val_images or 8)
        check_x = vb[0][0].to(device)

    def surrogate_check(at: int) -> None:
        from .surrogate_check import check_surrogate

        if check_x is None:
            return
        rows = check_surrogate(codec, task, check_x, task.reference(check_x), qps, rate=cfg.surrogate,
                               jacobian=cfg.jacobian, net=net.eval(), workers=workers)
        net.train()
        log.write({"event": "surrogate_check", "step": at, "rows": rows})

    if analytic and start == 0:
        surrogate_check(0)

    def save_checkpoint(next_step: int) -> None:
        if dist.is_writer:
            save_tagged(checkpoint_path(cfg), CHECKPOINT_FORMAT, {
                "step": next_step, "config": cfg.to_dict(),
                "ema_state": ema.state_dict() if ema is not None else None,
                "npp_config": net.get_config(), "npp_state": net.state_dict(), "optimizer": opt.state_dict(),
                "lambdas": {str(k): v for k, v in lambdas.items()}, "calibration": calibration,
            })
        dist.barrier()

    bar = progress_bar(cfg, dist, cfg.steps, start, f"{cfg.stage} {cfg.codec}")
    drop_at = int(round(cfg.lr_drop * cfg.steps))
    step = start
    interrupted = False
    while step < cfg.steps:
        if dist.any(stopper.requested):
            interrupted = True
            break
        rec = train_step(state, step, lr=cfg.lr if step < drop_at else cfg.lr_final)
        if ema is not None:
            with torch.no_grad():
                for pe, pn in zip(ema.state_dict().values(), net.state_dict().values(), strict=True):
                    if pe.is_floating_point():
                        pe.lerp_(pn, 1.0 - cfg.ema)
                    else:
                        pe.copy_(pn)
        log.write(rec)
        step += 1
        if analytic and cfg.check_every and step % cfg.check_every == 0:
            surrogate_check(step)
        bar.update(1)
        bar.set_postfix(_postfix(rec), refresh=False)
        if step % cfg.checkpoint_every == 0 and step < cfg.steps:
            save_checkpoint(step)
    bar.close()
    save_checkpoint(step)
    summary: dict[str, Any] = {"stage": cfg.stage, "steps_done": step, "interrupted": interrupted,
                               "outputs": {"checkpoint": str(checkpoint_path(cfg))}, "lambdas": lambdas}
    if interrupted:
        return summary
    metrics = {}
    if ema is not None:  # what ships is the average
        net = ema
    if dist.is_writer:
        if val is not None and cfg.val_images:
            metrics = _paired_validation(state, net, val, qps)
            log.write({"event": "validation", **metrics})
        weights = out / f"npp-{cfg.codec}-{cfg.stage}.npp.pt"
        save_weights(weights, net, meta={
            "codec": codec.get_config(),
            "recipe": {**cfg.to_dict(), "stage_number": {"npp": 2, "npp-qa": 3}[cfg.stage],
                       "lambdas": {str(k): v for k, v in lambdas.items()}, "calibration": calibration,
                       "world": dist.world, "proxy": {str(q): dict(proxies[q].meta, **proxies[q].get_config())
                                                      for q in qps} if not analytic else None},
            "fidelity": fidelity_spec(cfg.psnr_floor, cfg.beta),
            "metrics": metrics,
            "task": task.get_config(),
            "dataset": source.describe(),
        })
        summary["outputs"]["weights"] = str(weights)
    dist.barrier()
    summary["validation"] = metrics
    return summary


def _distil_to_blur(net, batches: Batches, sigma: float, *, device: torch.device, steps: int = 300) -> None:
    """Fit the network to a Gaussian blur of ``sigma`` (MSE, no codec) so gradient training
    starts at the classical anchor instead of the identity (seeded; the same on every rank)."""
    from ..preprocessors.filters import gaussian_blur

    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for k in range(steps):
        x = batches[10_000_000 + k][0].to(device)
        loss = torch.mean((net(x, 0.7) - gaussian_blur(x, sigma)) ** 2)  # one operating point, QA or not
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def _postfix(rec: dict[str, Any]) -> dict[str, str]:
    keys = {"loss": "loss", "bpp": "bpp", "task": "task", "fidelity": "fid", "R_ratio": "R/Rp",
            "D_ratio": "D/Dp", "proxy_psnr": "pxPSNR", "qp": "qp"}
    return {short: (f"{rec[k]:.4g}" if isinstance(rec[k], float) else str(rec[k])) for k, short in keys.items()
            if k in rec}


def train_step(state: NppTrainState, step: int, *, lr: float) -> dict[str, Any]:
    """One optimisation step ``step`` of the run ``state`` at learning rate ``lr``; returns its
    log record (loss terms, and every ``cfg.diag_every`` steps the paired plain-codec
    diagnostics). Seeded from ``(cfg.seed, step, rank)``, so a resumed run repeats it exactly."""
    cfg, dist, codec, task = state.cfg, state.dist, state.codec, state.task
    t0 = time.perf_counter()
    torch.manual_seed(_seed(cfg.seed, "step", step, dist.rank))  # proxy noise, anything else random
    rng = np.random.default_rng(_seed(cfg.seed, "qp", step, dist.rank))
    qp = cfg.qp if cfg.stage == "npp" else int(rng.choice(cfg.qps))
    lmbda = state.lambdas[qp]
    for group in state.opt.param_groups:
        group["lr"] = lr
    x, target = state.batches[step]
    x = x.to(state.device)
    check_target_kind(task, target)
    target = to_device(target, state.device) if target is not None else task.reference(x)
    x_bar = npp_filter(state.model, x, codec=codec, qp=qp)  # through the DDP wrapper: gradients sync
    if cfg.surrogate == "proxy":
        cs = codec_step(x_bar, codec=codec, qp=qp, proxy=state.proxies[qp], proxy_only=cfg.proxy_only,
                        workers=state.workers)
    else:
        cs = surrogate_step(x_bar, codec=codec, qp=qp, rate=cfg.surrogate, jacobian=cfg.jacobian,
                            workers=state.workers)
    task_loss = task.loss(cs.x_hat, target, reduction="none")
    fid = fidelity_loss(x, x_bar, psnr_floor=cfg.psnr_floor)
    terms = npp_loss(cs.bpp(), task_loss, fid, lmbda=lmbda, beta=cfg.beta)
    state.opt.zero_grad(set_to_none=True)
    terms["loss"].backward()
    state.opt.step()
    rec: dict[str, Any] = {"event": "step", "step": step, "qp": qp, "lmbda": lmbda, "lr": lr,
                           **{k: v.item() for k, v in terms.items()}, "psnr_filter": batch_psnr(x, x_bar)}
    if step % cfg.diag_every == 0:
        rec.update(_paired(state, x, x_bar, cs, target, qp, lmbda, rec))
    rec["time"] = time.perf_counter() - t0
    if dist.enabled:
        rec["loss_mean_ranks"] = dist.mean(rec["loss"])
    return rec


@torch.no_grad()
def _paired(state: NppTrainState, x, x_bar, cs, target, qp: int, lmbda: float, rec: dict) -> dict[str, float]:
    """The plain codec on the same batch, and the proxy against the real codec."""
    codec, task, workers, proxy_only = state.codec, state.task, state.workers, state.cfg.proxy_only
    n, _, h, w = x.shape
    plain, plain_bits = codec.roundtrip(x, qp=qp, workers=workers)
    bpp_plain = float(plain_bits.sum()) / (n * h * w)
    task_plain = float(task.loss(plain, target))
    if proxy_only:  # the loss used the proxy: what the real codec does with x̄ is the truth
        real, real_bits = codec.roundtrip(x_bar.detach(), qp=qp, workers=workers)
        bpp_real, task_real = float(real_bits.sum()) / (n * h * w), float(task.loss(real, target))
    else:
        real, real_bits, bpp_real, task_real = cs.real_x_hat, cs.real_bits, rec["bpp"], rec["task"]
    return {
        "bpp_plain": bpp_plain, "task_plain": task_plain,
        "bpp_real": bpp_real, "task_real": task_real,
        "R_ratio": bpp_real / max(bpp_plain, 1e-12),
        "D_ratio": task_real / max(task_plain, 1e-12),
        "loss_plain": bpp_plain + lmbda * task_plain,
        "proxy_psnr": batch_psnr(cs.proxy_x_hat.clamp(0, 1), real),
        "proxy_bits_ratio": float(cs.proxy_bits.sum()) / max(float(real_bits.sum()), 1.0),
    }


@torch.no_grad()
def _paired_validation(state: NppTrainState, net, val, qps) -> dict[str, Any]:
    """Held-out centre crops: NPP+codec against the plain codec at every trained QP, the
    network run as the "npp" hook runs it (:class:`NppPreprocessor`, an eval-mode copy)."""
    cfg, codec, task, lambdas, workers, device = (state.cfg, state.codec, state.task, state.lambdas,
                                                  state.workers, state.device)
    prep = NppPreprocessor(net, device=device)
    vb = val_batches(val, size=cfg.size, batch_size=cfg.batch_size, limit=cfg.val_images)
    rows = []
    for qp in qps:
        acc = dict.fromkeys(("bits", "bits_plain", "task", "task_plain", "score", "score_plain", "n", "px"), 0.0)
        for x, target in vb:
            x = x.to(device)
            target = to_device(target, device) if target is not None else task.reference(x)
            r, b = codec.roundtrip(x, qp=qp, preprocess=prep, workers=workers)
            p, bp = codec.roundtrip(x, qp=qp, workers=workers)
            acc["bits"] += float(b.sum())
            acc["bits_plain"] += float(bp.sum())
            acc["task"] += float(task.loss(r, target, reduction="sum"))
            acc["task_plain"] += float(task.loss(p, target, reduction="sum"))
            acc["score"] += float(task.score(r, target).sum())
            acc["score_plain"] += float(task.score(p, target).sum())
            acc["n"] += x.shape[0]
            acc["px"] += x.shape[0] * x.shape[2] * x.shape[3]
        n, px = acc["n"], acc["px"]
        row = {"qp": qp, "bpp": acc["bits"] / px, "bpp_plain": acc["bits_plain"] / px, "task": acc["task"] / n,
               "task_plain": acc["task_plain"] / n, "score": acc["score"] / n, "score_plain": acc["score_plain"] / n}
        row["R_ratio"] = row["bpp"] / max(row["bpp_plain"], 1e-12)
        row["D_ratio"] = row["task"] / max(row["task_plain"], 1e-12)
        row["loss"] = row["bpp"] + lambdas[qp] * row["task"]
        row["loss_plain"] = row["bpp_plain"] + lambdas[qp] * row["task_plain"]
        rows.append(row)
    return {"images": int(sum(x.shape[0] for x, _ in vb)), "per_qp": rows}


@torch.no_grad()
def objective(net, codec, task, batches, *, qp: int, lmbda: float, beta: float, psnr_floor: float,
              workers: int | None = None) -> float:
    """The training objective with the real codec (values only), averaged over ``batches``
    of ``(x, target)``; a fresh (identity) network gives the plain codec's value. The network
    runs as the "npp" hook runs it (:class:`NppPreprocessor`, an eval-mode copy)."""
    prep = NppPreprocessor(net, device=next(net.parameters()).device)
    total = 0.0
    for x, target in batches:
        target = target if target is not None else task.reference(x)
        xb = prep(x, codec=codec, qp=qp)
        recon, bits = codec.roundtrip(xb, qp=qp, workers=workers)
        bpp = bits.to(x.dtype) / (x.shape[2] * x.shape[3])
        terms = npp_loss(bpp, task.loss(recon, target, reduction="none"),
                         fidelity_loss(x, xb, psnr_floor=psnr_floor), lmbda=lmbda, beta=beta)
        total += terms["loss"].item()
    return total / max(len(batches), 1)
