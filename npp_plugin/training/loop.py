"""The training loop: the paper's Algorithm 1 in three stages, resumable and distributed.

Stage 1 ``proxy``: one learned proxy per QP, RD-pretrained once, then fine-tuned to imitate
the real codec at that QP; the proxies' gap to the codec is measured on held-out crops.
Stage 2 ``npp``: NPP without QA layers at one QP. Stage 3 ``npp-qa``: QA layers added, a QP
drawn per batch. Each NPP step::

    x ─NPP─► x̄ ─► codec_step (real values, proxy gradients) ─► x̂, bits ─► task loss
    L = bpp + λ(qp)·D_task + β·F(x, x̄)            only NPP's weights are updated

Next to every step's loss the log holds the plain codec's bits and task loss on the same
batch (``R/R_plain``, ``D/D_plain``) and how far the proxy is from the real codec.

Reproducibility: every random choice of step k (crops, flips, QP, the proxy's quantisation
noise) is seeded from ``(seed, k, rank)``; a checkpoint holds the networks, the optimiser and
the λ table, so a resumed run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import copy
import json
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InvalidArgumentError, WeightsError
from ..fileio import atomic_write_bytes, load_tagged, save_tagged
from ..preprocessors.hook import NppPreprocessor, npp_filter
from .config import TrainConfig
from .data import Batches, BuiltinPhotos, _seed, make_source, val_batches
from .ddp import DistInfo, init_distributed, shutdown, wrap
from .losses import calibrate_lambdas, fidelity_loss, fidelity_spec, npp_loss, paper_lambda
from .ste import codec_step
from .surrogates import surrogate_step

__all__ = ["CHECKPOINT_FORMAT", "objective", "run"]

CHECKPOINT_FORMAT = "npp-train-checkpoint/1"


class _Stopper:
    """SIGTERM/SIGINT → finish the current step, write a checkpoint, stop."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _Stopper:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class _Log:
    """Append-only JSON-lines log, written by one process; truncated to the resume step."""

    def __init__(self, path: Path, *, enabled: bool, resume_step: int | None,
                 stale: Callable[[dict], bool] | None = None) -> None:
        """``stale`` (with ``resume_step`` set) picks the records to drop instead of the
        default: steps at or after ``resume_step``."""
        self.path, self.enabled = path, enabled
        if not enabled:
            return
        if stale is None:
            def stale(rec: dict) -> bool:
                return rec.get("event") == "step" and rec["step"] >= resume_step
        lines: list[str] = []
        if resume_step is not None and path.is_file():
            for line in path.read_text().splitlines():
                if not stale(json.loads(line)):
                    lines.append(line)
        atomic_write_bytes(path, "".join(f"{line}\n" for line in lines).encode())

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a") as fh:
                fh.write(json.dumps(_finite(record), allow_nan=False, default=float) + "\n")


def _finite(obj: Any) -> Any:
    """NaN/inf → None, so logs stay strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _to(target: Any, device: torch.device) -> Any:
    if torch.is_tensor(target):
        return target.to(device)
    if isinstance(target, list):
        return [{k: v.to(device) for k, v in t.items()} for t in target]
    return target


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    from ..evaluation.metrics import psnr_from_mse

    return psnr_from_mse(float(torch.mean((a.detach().float() - b.detach().float()) ** 2)))


def _progress(cfg: TrainConfig, dist: DistInfo, total: int, initial: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, disable=not (cfg.progress and dist.is_writer),
                dynamic_ncols=True, leave=True)


def _check_target_kind(task: Any, target: Any) -> None:
    if target is None:
        return
    if task.kind == "classification" and not torch.is_tensor(target):
        msg = f"npp train: task {task.name!r} is a classifier but the data has box annotations; use a detector task"
        raise InvalidArgumentError(msg, argument="task", allowed="a detection task for COCO data")
    if task.kind == "detection" and torch.is_tensor(target):
        msg = f"npp train: task {task.name!r} is a detector but the data has class labels; use a classifier task"
        raise InvalidArgumentError(msg, argument="task", allowed="a classification task for class folders")


# =========================================================================================
# entry point
# =========================================================================================


def run(cfg: TrainConfig, *, resume: bool = False) -> dict[str, Any]:
    """Run one training stage described by ``cfg``.

    Returns:
        A summary: ``{"stage", "steps_done", "interrupted", "outputs": {...}, ...}``.

    Raises:
        NppError: bad configuration, missing proxies or weights, unknown codec or task.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dist = init_distributed()
    out = Path(cfg.out)
    if dist.is_writer:
        out.mkdir(parents=True, exist_ok=True)
    dist.barrier()
    try:
        with _Stopper() as stopper:
            if cfg.stage == "proxy":
                return _run_proxy_stage(cfg, dist, stopper, resume)
            return _run_npp_stage(cfg, dist, stopper, resume)
    finally:
        shutdown(dist)


def _components(cfg: TrainConfig, device: torch.device):
    from ..registry import get_codec, get_task
    from ..tasks import require_trainable

    codec = get_codec(cfg.codec, **cfg.codec_options)
    task = require_trainable(get_task(cfg.task, **cfg.task_options), who="npp train")
    task.to(device)
    return codec, task


def _val_source(cfg: TrainConfig):
    if cfg.val_data:
        return make_source(cfg.val_data)
    if cfg.data == "builtin":
        return BuiltinPhotos("val")
    return None


# =========================================================================================
# stage 1: proxies
# =========================================================================================


def _run_proxy_stage(cfg: TrainConfig, dist: DistInfo, stopper: _Stopper, resume: bool) -> dict[str, Any]:
    from ..proxy import ProxyCodec, load_proxies, proxy_codec, save_proxies
    from ..proxy.train import Resume, compare_with_codec, finetune_to_codec, pretrain_rd
    from ..registry import get_codec

    if dist.enabled:
        msg = "npp train proxy: stage 1 runs in one process (one proxy per QP); start it without torchrun"
        raise InvalidArgumentError(msg, argument="stage", allowed="single process")
    out = Path(cfg.out)
    codec = get_codec(cfg.codec, **cfg.codec_options)
    bank_path = cfg.proxies_path()
    base_path = out / f"proxy-base-{cfg.proxy_arch}.pt"
    ck_path = _checkpoint_path(cfg)
    # A phase in progress (pretraining, or fine-tuning one QP) checkpoints every
    # cfg.checkpoint_every steps and on SIGTERM; --resume continues it where it stopped.
    ck = _load_checkpoint(cfg, torch.device("cpu")) if resume else None
    done = load_proxies(bank_path) if resume and bank_path.is_file() else {}
    if ck is not None and (ck["phase"] == "pretrain" and base_path.is_file() or ck.get("qp") in done):
        ck = None  # that phase finished after the checkpoint

    def stale(rec: dict) -> bool:  # log records the checkpoint does not cover
        return ck is not None and rec.get("event") == ck["phase"] and rec.get("qp") == ck.get("qp") \
            and rec["step"] >= ck["step"]

    log = _Log(out / "log-proxy.jsonl", enabled=True, resume_step=0 if resume else None, stale=stale)
    source = make_source(cfg.data, annotations=cfg.annotations)
    batches = Batches(source, size=cfg.size, batch_size=cfg.batch_size, seed=cfg.seed)
    todo = [q for q in cfg.qps if q not in done]
    total = cfg.proxy_pretrain_steps * (not base_path.is_file()) + cfg.steps * len(todo)
    bar = _progress(cfg, dist, total, ck["step"] if ck else 0, f"proxies {cfg.codec}")

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
    val = _val_source(cfg) or source
    vb = [x for x, _ in val_batches(val, size=cfg.size, batch_size=cfg.batch_size, limit=cfg.val_images)]
    gap = compare_with_codec(done, codec, vb, workers=cfg.workers)
    for row in gap["per_qp"]:
        done[row["qp"]].meta["gap"] = row
    for p in done.values():
        p.meta["bd_rate_vs_codec"] = gap["bd_rate"]
    save_proxies(bank_path, done)
    atomic_write_bytes(out / "proxy-gap.json", json.dumps(_finite(gap), indent=2, allow_nan=False).encode())
    log.write({"event": "gap", **gap})
    summary["gap"] = gap
    return summary


# =========================================================================================
# stages 2 and 3: NPP
# =========================================================================================


def _build_npp(cfg: TrainConfig, device: torch.device):
    from ..preprocessors.model import npp_net

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
            x, target = x.to(device), _to(target, device)
            pairs.append((x, target if target is not None else task.reference(x)))
        calib = calibrate_lambdas(codec, task, pairs, qps, delta=cfg.calib_delta, workers=cfg.workers)
    calib = dist.broadcast(calib)
    table = {q: calib[q]["lmbda"] * cfg.lambda_scale for q in qps}
    return table, {"mode": "calibrated", "delta": cfg.calib_delta, "per_qp": {str(k): v for k, v in calib.items()}}


def _checkpoint_path(cfg: TrainConfig) -> Path:
    return Path(cfg.out) / f"checkpoint-{cfg.stage}.pt"


def _load_checkpoint(cfg: TrainConfig, device: torch.device) -> dict[str, Any] | None:
    path = _checkpoint_path(cfg)
    if not path.is_file():
        return None
    ck = load_tagged(path, CHECKPOINT_FORMAT, who="npp train", what="a training checkpoint", map_location=device)
    old = ck["config"]
    keys = (("stage", "codec", "codec_options", "size", "batch_size", "seed", "qps", "proxy_arch", "proxy_N",
             "proxy_M", "proxy_lambda", "proxy_init") if cfg.stage == "proxy" else
            ("stage", "codec", "task", "size", "batch_size", "seed", "qp", "qps", "npp_config", "proxy_only",
             "surrogate", "jacobian", "ema"))
    for key in keys:
        if old.get(key) != getattr(cfg, key):
            msg = (f"npp train --resume: {key}={getattr(cfg, key)!r} differs from the checkpoint's "
                   f"{old.get(key)!r} ({path}); resume with the same settings or use another --out")
            raise InvalidArgumentError(msg, argument=key, allowed=old.get(key))
    return ck


def _run_npp_stage(cfg: TrainConfig, dist: DistInfo, stopper: _Stopper, resume: bool) -> dict[str, Any]:
    from ..preprocessors.weights import save_weights
    from ..proxy import load_proxies

    device = torch.device(f"cuda:{dist.local_rank}" if cfg.device == "cuda" else cfg.device)
    out = Path(cfg.out)
    codec, task = _components(cfg, device)
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

    ck = _load_checkpoint(cfg, device) if resume else None
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

    log = _Log(out / f"log-{cfg.stage}.jsonl", enabled=dist.is_writer, resume_step=start if resume else None)
    if start == 0:
        # also when --resume found no checkpoint: the run starts over from step 0
        log.write({"event": "start", "config": cfg.to_dict(), "lambdas": {str(k): v for k, v in lambdas.items()},
                   "calibration": calibration, "world": dist.world, "data": source.describe()})
    else:
        log.write({"event": "resume", "step": start, "world": dist.world})

    val = _val_source(cfg)
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
            save_tagged(_checkpoint_path(cfg), CHECKPOINT_FORMAT, {
                "step": next_step, "config": cfg.to_dict(),
                "ema_state": ema.state_dict() if ema is not None else None,
                "npp_config": net.get_config(), "npp_state": net.state_dict(), "optimizer": opt.state_dict(),
                "lambdas": {str(k): v for k, v in lambdas.items()}, "calibration": calibration,
            })
        dist.barrier()

    bar = _progress(cfg, dist, cfg.steps, start, f"{cfg.stage} {cfg.codec}")
    drop_at = int(round(cfg.lr_drop * cfg.steps))
    step = start
    interrupted = False
    while step < cfg.steps:
        if dist.any(stopper.requested):
            interrupted = True
            break
        rec = _train_step(cfg, dist, step, model, net, opt, batches, task, codec, proxies, lambdas, workers, device,
                          lr=cfg.lr if step < drop_at else cfg.lr_final)
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
                               "outputs": {"checkpoint": str(_checkpoint_path(cfg))}, "lambdas": lambdas}
    if interrupted:
        return summary
    metrics = {}
    if ema is not None:  # what ships is the average
        net = ema
    if dist.is_writer:
        if val is not None and cfg.val_images:
            metrics = _paired_validation(cfg, net, codec, task, val, qps, lambdas, workers, device)
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


def _train_step(cfg, dist, step, model, net, opt, batches, task, codec, proxies, lambdas, workers, device, *, lr):
    t0 = time.perf_counter()
    torch.manual_seed(_seed(cfg.seed, "step", step, dist.rank))  # proxy noise, anything else random
    rng = np.random.default_rng(_seed(cfg.seed, "qp", step, dist.rank))
    qp = cfg.qp if cfg.stage == "npp" else int(rng.choice(cfg.qps))
    lmbda = lambdas[qp]
    for group in opt.param_groups:
        group["lr"] = lr
    x, target = batches[step]
    x = x.to(device)
    _check_target_kind(task, target)
    target = _to(target, device) if target is not None else task.reference(x)
    x_bar = npp_filter(model, x, codec=codec, qp=qp)  # through the DDP wrapper: gradients sync
    if cfg.surrogate == "proxy":
        cs = codec_step(x_bar, codec=codec, qp=qp, proxy=proxies[qp], proxy_only=cfg.proxy_only, workers=workers)
    else:
        cs = surrogate_step(x_bar, codec=codec, qp=qp, rate=cfg.surrogate, jacobian=cfg.jacobian, workers=workers)
    task_loss = task.loss(cs.x_hat, target, reduction="none")
    fid = fidelity_loss(x, x_bar, psnr_floor=cfg.psnr_floor)
    terms = npp_loss(cs.bpp(), task_loss, fid, lmbda=lmbda, beta=cfg.beta)
    opt.zero_grad(set_to_none=True)
    terms["loss"].backward()
    opt.step()
    rec: dict[str, Any] = {"event": "step", "step": step, "qp": qp, "lmbda": lmbda, "lr": lr,
                           **{k: v.item() for k, v in terms.items()}, "psnr_filter": _psnr(x, x_bar)}
    if step % cfg.diag_every == 0:
        rec.update(_paired(x, x_bar, cs, target, task, codec, qp, lmbda, workers, cfg.proxy_only, rec))
    rec["time"] = time.perf_counter() - t0
    if dist.enabled:
        rec["loss_mean_ranks"] = dist.mean(rec["loss"])
    return rec


@torch.no_grad()
def _paired(x, x_bar, cs, target, task, codec, qp, lmbda, workers, proxy_only, rec) -> dict[str, float]:
    """The plain codec on the same batch, and the proxy against the real codec."""
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
        "proxy_psnr": _psnr(cs.proxy_x_hat.clamp(0, 1), real),
        "proxy_bits_ratio": float(cs.proxy_bits.sum()) / max(float(real_bits.sum()), 1.0),
    }


@torch.no_grad()
def _paired_validation(cfg, net, codec, task, val, qps, lambdas, workers, device) -> dict[str, Any]:
    """Held-out centre crops: NPP+codec against the plain codec at every trained QP, the
    network run as the "npp" hook runs it (:class:`NppPreprocessor`, an eval-mode copy)."""
    prep = NppPreprocessor(net, device=device)
    vb = val_batches(val, size=cfg.size, batch_size=cfg.batch_size, limit=cfg.val_images)
    rows = []
    for qp in qps:
        acc = dict.fromkeys(("bits", "bits_plain", "task", "task_plain", "score", "score_plain", "n", "px"), 0.0)
        for x, target in vb:
            x = x.to(device)
            target = _to(target, device) if target is not None else task.reference(x)
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
