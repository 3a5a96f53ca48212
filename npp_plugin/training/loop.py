"""The training loop: the paper's Algorithm 1 in three stages, resumable and distributed.

:func:`run` picks the stage; the stages live in :mod:`.proxy_stage` (stage 1) and
:mod:`.npp_stage` (stages 2 and 3), what they share (checkpoint, run log, stopper,
components) in :mod:`.common`.

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

from pathlib import Path
from typing import Any

import torch

from .common import CHECKPOINT_FORMAT, Stopper
from .config import TrainConfig
from .ddp import init_distributed, shutdown
from .npp_stage import objective, run_npp_stage
from .proxy_stage import run_proxy_stage

__all__ = ["CHECKPOINT_FORMAT", "objective", "run"]


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
        with Stopper() as stopper:
            if cfg.stage == "proxy":
                return run_proxy_stage(cfg, dist, stopper, resume)
            return run_npp_stage(cfg, dist, stopper, resume)
    finally:
        shutdown(dist)
