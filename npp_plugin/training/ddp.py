"""Distributed data parallel training: ``torchrun --nproc_per_node=K -m npp_plugin.training ...``.

Each rank reads its own shard of every step's samples (``Batches(rank=, world=)``), runs its
own codec workers (the cores of this machine split between the ranks), and averages NPP
gradients with DDP (gloo on CPU, NCCL on GPUs). Only rank 0 writes checkpoints, logs and
weights; the others wait at a barrier so nobody reads a half-written file. A stop request
(SIGTERM on any rank) is agreed through an all-reduce so every rank stops at the same step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["DistInfo", "init_distributed", "shutdown"]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_writer(self) -> bool:
        """The one process that writes files."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is True on any rank."""
        if not self.enabled:
            return flag
        t = torch.tensor([1.0 if flag else 0.0])
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item() > 0)

    def mean(self, value: float) -> float:
        """Mean of ``value`` over the ranks (for logging)."""
        if not self.enabled:
            return value
        t = torch.tensor([float(value)], dtype=torch.float64)
        torch.distributed.all_reduce(t)
        return float(t.item()) / self.world

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def codec_workers(self) -> int:
        """Codec threads per rank: this process's cores shared between the local ranks."""
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            cores = os.cpu_count() or 1
        local = int(os.environ.get("LOCAL_WORLD_SIZE", self.world))
        return max(1, cores // max(1, local))


def init_distributed(backend: str | None = None) -> DistInfo:
    """Join the process group torchrun describes (``RANK``/``WORLD_SIZE`` set), else single.

    Args:
        backend: ``"gloo"`` or ``"nccl"``; default NCCL when CUDA is available, else gloo.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not torch.distributed.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        torch.distributed.init_process_group(backend=backend)
    return DistInfo(rank=rank, world=world, local_rank=local_rank)


def shutdown(info: DistInfo) -> None:
    if info.enabled and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def wrap(net: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """``net`` in DDP when distributed (CPU: no device ids)."""
    if not info.enabled:
        return net
    from torch.nn.parallel import DistributedDataParallel

    if torch.cuda.is_available():
        return DistributedDataParallel(net, device_ids=[info.local_rank])
    return DistributedDataParallel(net)
