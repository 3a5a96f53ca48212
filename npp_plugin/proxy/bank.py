"""Saving and loading proxies: one file holds one proxy per QP of one codec.

Hyperparameters are stored next to the weights (never inferred from tensor shapes); the
file is written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import WeightsError
from ..fileio import load_tagged, save_tagged
from .model import ProxyCodec

__all__ = ["FORMAT", "load_proxies", "save_proxies"]

FORMAT = "npp-proxy/1"


def save_proxies(path: str | Path, proxies: dict[int, ProxyCodec]) -> Path:
    """Write ``{qp: proxy}`` to ``path`` (atomically)."""
    blob = {
        "proxies": {
            str(int(qp)): {"config": p.get_config(), "meta": dict(p.meta), "state": p.state_dict()}
            for qp, p in sorted(proxies.items())
        },
    }
    return save_tagged(path, FORMAT, blob)


def load_proxies(path: str | Path, *, device: str | torch.device = "cpu") -> dict[int, ProxyCodec]:
    """Read a file written by :func:`save_proxies` into ``{qp: proxy}`` (train mode, frozen).

    Raises:
        WeightsError: missing, unreadable, or not a proxy file.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"proxy: file {str(path)!r} does not exist; train proxies first with `npp train proxy`"
        raise WeightsError(msg)
    blob: Any = load_tagged(path, FORMAT, who="proxy", what="a proxy file", map_location=device)
    out: dict[int, ProxyCodec] = {}
    for qp, entry in blob["proxies"].items():
        proxy = ProxyCodec(**entry["config"], meta=entry["meta"])
        try:
            proxy.model.load_state_dict(_strip(entry["state"]))
        except RuntimeError as exc:
            msg = f"proxy: weights for qp {qp} in {str(path)!r} do not match {entry['config']}: {exc}"
            raise WeightsError(msg) from exc
        out[int(qp)] = proxy.to(device).freeze()
    return out


def _strip(state: dict) -> dict:
    return {k[len("model."):] if k.startswith("model.") else k: v for k, v in state.items()}
