"""What the training stages share: the checkpoint file and its check on resume, the run log,
the SIGTERM stopper, the codec and task a run is built from, and small helpers.

The stages are :mod:`.proxy_stage` (stage 1: learned proxies, one per QP) and
:mod:`.npp_stage` (stages 2 and 3: the NPP); :func:`npp_plugin.training.loop.run` picks one.
"""

from __future__ import annotations

import json
import math
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..errors import InvalidArgumentError
from ..fileio import atomic_write_bytes, load_tagged
from .config import TrainConfig
from .data import BuiltinPhotos, make_source
from .ddp import DistInfo

__all__ = [
    "CHECKPOINT_FORMAT",
    "RunLog",
    "Stopper",
    "batch_psnr",
    "check_target_kind",
    "checkpoint_path",
    "components",
    "finite",
    "load_checkpoint",
    "option_value",
    "progress_bar",
    "to_device",
    "val_source",
]

#: Tag of every training checkpoint (``fileio.save_tagged``); the same for every stage.
CHECKPOINT_FORMAT = "npp-train-checkpoint/1"


class Stopper:
    """SIGTERM/SIGINT → finish the current step, write a checkpoint, stop."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> Stopper:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class RunLog:
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
                fh.write(json.dumps(finite(record), allow_nan=False, default=float) + "\n")


def finite(obj: Any) -> Any:
    """NaN/inf → None, so logs stay strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def to_device(target: Any, device: torch.device) -> Any:
    if torch.is_tensor(target):
        return target.to(device)
    if isinstance(target, list):
        return [{k: v.to(device) for k, v in t.items()} for t in target]
    return target


def batch_psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    from ..evaluation.metrics import psnr_from_mse

    return psnr_from_mse(float(torch.mean((a.detach().float() - b.detach().float()) ** 2)))


def progress_bar(cfg: TrainConfig, dist: DistInfo, total: int, initial: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, disable=not (cfg.progress and dist.is_writer),
                dynamic_ncols=True, leave=True)


def check_target_kind(task: Any, target: Any) -> None:
    if target is None:
        return
    if task.kind == "classification" and not torch.is_tensor(target):
        msg = f"npp train: task {task.name!r} is a classifier but the data has box annotations; use a detector task"
        raise InvalidArgumentError(msg, argument="task", allowed="a detection task for COCO data")
    if task.kind == "detection" and torch.is_tensor(target):
        msg = f"npp train: task {task.name!r} is a detector but the data has class labels; use a classifier task"
        raise InvalidArgumentError(msg, argument="task", allowed="a classification task for class folders")


def components(cfg: TrainConfig, device: torch.device):
    from ..registry import get_codec, get_task
    from ..tasks import require_trainable

    codec = get_codec(cfg.codec, **cfg.codec_options)
    task = require_trainable(get_task(cfg.task, **cfg.task_options), who="npp train")
    task.to(device)
    return codec, task


def val_source(cfg: TrainConfig):
    if cfg.val_data:
        return make_source(cfg.val_data)
    if cfg.data == "builtin":
        return BuiltinPhotos("val")
    if cfg.data in ("corpus", "corpus:train"):  # the corpus' own held-out split
        return make_source("corpus:dev")
    return None


def checkpoint_path(cfg: TrainConfig) -> Path:
    return Path(cfg.out) / f"checkpoint-{cfg.stage}.pt"


def load_checkpoint(cfg: TrainConfig, device: torch.device) -> dict[str, Any] | None:
    path = checkpoint_path(cfg)
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


def option_value(text: str, *, who: str = "npp search") -> tuple[str, Any]:
    """``KEY=VALUE`` of a ``--codec-option`` as (key, value): the value read as JSON when it
    is (numbers, true/false), else the string."""
    k, sep, v = text.partition("=")
    if not sep:
        msg = f"{who}: --codec-option expects KEY=VALUE, got {text!r}"
        raise InvalidArgumentError(msg, argument="codec-option", allowed="KEY=VALUE")
    try:
        return k, json.loads(v)
    except ValueError:
        return k, v
