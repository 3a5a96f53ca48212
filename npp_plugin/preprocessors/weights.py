# SPDX-License-Identifier: GPL-2.0-or-later
"""NPP weights files: the network's configuration, its tensors and how it was made, together.

File format (extension ``.npp.pt``, version 1)
----------------------------------------------
A ``torch.save`` zip archive holding one dict of plain types and tensors only, so it loads
with ``torch.load(weights_only=True)`` (no pickled code runs)::

    {
      "format": "npp_plugin.npp-weights",   # tag: refuses other checkpoints
      "format_version": 1,
      "config": {"name": "small", "widths": [10, 20, 40, 80], "qa": true,
                 "qa_hidden": 32, "description": "..."},   # NppConfig, never inferred from shapes
      "state_dict": {"pixel1.weight": Tensor, ...},       # CPU float tensors + BN buffers
      "meta": {                                            # JSON-able
        "codec":    {"codec": "bpg", ...} | "bpg",          # required: what it was trained for
        "recipe":   {"stage": 3, "steps": 4000, "lr": 1e-4, "batch": 8, "crop": 160,
                     "qps": [28, 31, 34, 37, 41], "lambda": {...}, "task": "...", ...},  # required
        "fidelity": {"kind": "mse", "beta": 0.5} | ...,     # required: the fidelity constraint
        "metrics":  {"bd_rate_kl": -0.4, ...},             # optional, default {}
        "task": "...", "dataset": "...", "notes": "...",   # optional, free
        # added by save_weights:
        "created": "2026-11-22T03:59:00+00:00", "npp_plugin_version": "0.1.0",
        "torch_version": "2.14.1", "params": 932937,
      },
    }

Where weights come from (:func:`resolve_weights`)
-------------------------------------------------
1. an explicit path to a file, or the name of a shipped file (``npp_plugin/weights/<name>.npp.pt``);
2. otherwise ``$NPP_WEIGHTS`` (a path or a shipped name);
3. otherwise the shipped ``<config>.npp.pt`` when a configuration is asked for, else the
   shipped ``default.npp.pt``;
4. otherwise :class:`~npp_plugin.errors.WeightsError` saying how to train or pass weights.

A file name ending in ``-<hex>.npp.pt`` (8 to 64 hex digits, as torchvision's hash-suffixed
names) must match the start of the file's SHA-256, or loading fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgumentError, WeightsError
from ..fileio import load_tagged

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .model import NppConfig, NppNet

__all__ = [
    "ENV_VAR",
    "FORMAT",
    "FORMAT_VERSION",
    "NppWeights",
    "REQUIRED_META",
    "SUFFIX",
    "how_to_get_weights",
    "load_weights",
    "npp_net",
    "read_weights",
    "resolve_weights",
    "save_weights",
    "shipped_weights",
]

FORMAT = "npp_plugin.npp-weights"
FORMAT_VERSION = 1
SUFFIX = ".npp.pt"
ENV_VAR = "NPP_WEIGHTS"
#: Keys every weights file's ``meta`` must have.
REQUIRED_META = ("codec", "recipe", "fidelity")
_HASH = re.compile(r"-([0-9a-f]{8,64})$")


@dataclass
class NppWeights:
    """The contents of one weights file."""

    config: NppConfig
    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any]
    path: Path | None = None
    sha256: str | None = None
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def build(self, device: str | torch.device = "cpu") -> NppNet:
        """A network in eval mode with these weights."""
        from .model import build_net

        net = build_net(self.config)
        try:
            net.load_state_dict(self.state_dict, strict=True)
        except RuntimeError as exc:
            msg = f"npp weights {self._where()}: tensors do not match configuration {self.config.name!r}: {exc}"
            raise WeightsError(msg) from exc
        return net.to(device).eval()

    def _where(self) -> str:
        return str(self.path) if self.path is not None else "<memory>"


def how_to_get_weights() -> str:
    """The instructions every "no weights" error repeats."""
    return (
        "train weights with `npp train ...` (see `npp train --help`), then pass them: "
        'get_preprocessor("npp", weights="file.npp.pt"), npp_net(weights="file.npp.pt"), '
        f"or set {ENV_VAR}=file.npp.pt"
    )


def _shipped_dir() -> Path | None:
    """``npp_plugin/weights/`` inside the installed package (may not exist)."""
    from importlib.resources import files

    try:
        root = Path(str(files("npp_plugin") / "weights"))
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - zipped installs
        return None
    return root if root.is_dir() else None


def shipped_weights() -> dict[str, Path]:
    """Weights files shipped inside the package, by name (file name without ``.npp.pt``)."""
    root = _shipped_dir()
    if root is None:
        return {}
    return {p.name[: -len(SUFFIX)]: p for p in sorted(root.glob(f"*{SUFFIX}")) if p.is_file()}


def _lookup(source: str | os.PathLike, *, origin: str) -> Path:
    path = Path(source).expanduser()
    if path.is_file():
        return path
    shipped = shipped_weights()
    if isinstance(source, str) and source in shipped:
        return shipped[source]
    names = ", ".join(shipped) or "none"
    what = (
        "is a directory, not a weights file"
        if path.is_dir()
        else "is neither a file nor a shipped weights name"
    )
    msg = f"npp weights {origin}{str(source)!r} {what} (shipped: {names}); {how_to_get_weights()}"
    raise WeightsError(msg)


def resolve_weights(source: str | os.PathLike | None = None, *, config: str | None = None) -> Path:
    """Find the weights file to use (see the module docstring for the order).

    Raises:
        WeightsError: nothing found; the message says how to train or pass weights.
    """
    if source is not None:
        if not isinstance(source, (str, os.PathLike)):
            msg = f"npp weights must be a path or a shipped name, got {type(source).__name__}"
            raise InvalidArgumentError(msg, argument="weights", allowed="str | os.PathLike")
        return _lookup(source, origin="")
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return _lookup(env, origin=f"from ${ENV_VAR}=")
    shipped = shipped_weights()
    wanted = config or "default"
    if wanted in shipped:
        return shipped[wanted]
    have = ", ".join(shipped) or "none"
    msg = (
        f"npp: no weights given and no shipped weights {wanted + SUFFIX!r} (shipped: {have}); "
        f"the preprocessor never runs an untrained network; {how_to_get_weights()}"
    )
    raise WeightsError(msg)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_weights(
    source: str | os.PathLike | None = None, *, config: str | None = None
) -> NppWeights:
    """Read and validate a weights file without building the network.

    Args:
        source: path or shipped name; None resolves as :func:`resolve_weights`.
        config: expected configuration name (also picks the shipped file when ``source`` is None).

    Raises:
        WeightsError: missing, unreadable, not an NPP weights file, unsupported version,
            hash-suffix mismatch, bad configuration, non-finite tensors, or another
            configuration than ``config``.
    """
    import torch

    from .model import config_from_dict

    path = resolve_weights(source, config=config)
    try:
        data = path.read_bytes()
    except OSError as exc:
        msg = f"npp weights {path}: cannot read: {exc}"
        raise WeightsError(msg) from exc
    digest = _sha256(data)
    stem = path.name[: -len(SUFFIX)] if path.name.endswith(SUFFIX) else path.stem
    m = _HASH.search(stem)
    if m and not digest.startswith(m.group(1)):
        msg = f"npp weights {path}: SHA-256 {digest[:16]}… does not match the name's hash {m.group(1)!r}; the file is corrupt or was altered"
        raise WeightsError(msg)
    obj = load_tagged(data, FORMAT, who="npp weights", what="an NPP weights file", label=str(path),
                      hint="; write one with save_weights()")
    version = obj.get("format_version")
    if version != FORMAT_VERSION:
        msg = f"npp weights {path}: format version {version!r} is not supported (this npp_plugin reads version {FORMAT_VERSION})"
        raise WeightsError(msg)
    for key in ("config", "meta"):
        if not (obj.get(key) is None or isinstance(obj[key], Mapping)):  # not `or {}`: a tensor has no truth value
            msg = f"npp weights {path}: {key!r} must be a dict, not {type(obj[key]).__name__}"
            raise WeightsError(msg)
    try:
        cfg = config_from_dict(dict(obj["config"]))
    except (KeyError, TypeError, ValueError, InvalidArgumentError) as exc:
        msg = f"npp weights {path}: invalid stored configuration: {exc}"
        raise WeightsError(msg) from exc
    state = obj.get("state_dict")
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        msg = f"npp weights {path}: 'state_dict' must map names to tensors"
        raise WeightsError(msg)
    bad = [
        k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]
    if bad:
        msg = f"npp weights {path}: tensor {bad[0]!r} contains NaN or infinite values ({len(bad)} tensors affected)"
        raise WeightsError(msg)
    if config is not None and cfg.name != config:
        msg = f"npp weights {path}: holds configuration {cfg.name!r}, but {config!r} was asked for"
        raise WeightsError(msg)
    extra = {
        k: v
        for k, v in obj.items()
        if k not in ("format", "format_version", "config", "state_dict", "meta")
    }
    return NppWeights(cfg, state, dict(obj.get("meta") or {}), path, digest, version, extra)


def load_weights(
    source: str | os.PathLike | None = None,
    *,
    device: str | torch.device = "cpu",
    config: Any = None,
) -> tuple[NppNet, NppWeights]:
    """Build the network a weights file describes.

    Args:
        source: path or shipped name; None resolves as :func:`resolve_weights`.
        device: where to put the network.
        config: expected configuration (a name or an ``NppConfig``); None accepts any.

    Returns:
        ``(net, weights)``: the network in eval mode and the file's contents (``weights.meta``).

    Raises:
        WeightsError: see :func:`read_weights`; also tensors not matching the configuration.
    """
    name = getattr(config, "name", config)
    w = read_weights(source, config=name)
    if config is not None and not isinstance(config, str) and config != w.config:
        msg = f"npp weights {w.path}: stored configuration {w.config} differs from the requested {config}"
        raise WeightsError(msg)
    return w.build(device), w


def _check_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(meta, Mapping):
        msg = f"save_weights: meta must be a dict, got {type(meta).__name__}"
        raise InvalidArgumentError(msg, argument="meta", allowed="dict")
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        msg = (
            f"save_weights: meta lacks {missing}; every weights file records "
            f"{', '.join(REQUIRED_META)} (e.g. codec=codec.get_config(), "
            'recipe={"stage": 3, "steps": ..., "lr": ...}, fidelity={"kind": "mse", "beta": 0.5})'
        )
        raise InvalidArgumentError(msg, argument="meta", allowed=list(REQUIRED_META))
    try:
        # a JSON round trip keeps only plain types (what weights_only loading accepts)
        return json.loads(json.dumps(dict(meta), allow_nan=False))
    except (TypeError, ValueError) as exc:
        msg = f"save_weights: meta must be JSON-serialisable (no NaN): {exc}"
        raise InvalidArgumentError(msg, argument="meta", allowed="JSON-serialisable dict") from exc


def save_weights(path: str | os.PathLike, net: NppNet, *, meta: Mapping[str, Any]) -> Path:
    """Write ``net`` and ``meta`` to ``path`` atomically (format above).

    Args:
        path: destination; the ``.npp.pt`` extension is recommended.
        net: the network (any device; tensors are stored on CPU).
        meta: must hold ``codec``, ``recipe`` and ``fidelity``; ``metrics`` defaults to {}.

    Returns:
        The path written.

    Raises:
        InvalidArgumentError: ``net`` is not an NppNet, or ``meta`` is incomplete / not JSON-able.
    """
    import torch

    from .. import __version__
    from ..fileio import save_tagged
    from .model import count_parameters, is_npp_net

    if not is_npp_net(net):
        msg = f"save_weights: expected an NppNet, got {type(net).__name__}"
        raise InvalidArgumentError(msg, argument="net", allowed="NppNet")
    info = _check_meta(meta)
    info.setdefault("metrics", {})
    info.update(
        {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "npp_plugin_version": __version__,
            "torch_version": torch.__version__.split("+")[0],
            "params": count_parameters(net),
        }
    )
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in net.state_dict().items()}
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": net.config.to_dict(),
        "state_dict": state,
        "meta": info,
    }
    return save_tagged(path, FORMAT, payload)


def npp_net(
    *,
    config: NppConfig | str | None = None,
    weights: Any = None,
    device: str | torch.device = "cpu",
    **kwargs: Any,
) -> NppNet:
    """Build an :class:`NppNet`, fresh (identity) or from a weights file.

    Args:
        config: a name in :data:`CONFIGS` or an :class:`NppConfig`. Default ``"small"`` for a
            fresh network; with ``weights`` the file's configuration is used, and a
            ``config`` given here must name the same one.
        weights: a weights file path, a shipped weights name, or None for a fresh network
            (see :func:`npp_plugin.preprocessors.weights.load_weights`).
        device: where to put the network.
        **kwargs: overrides of :class:`NppConfig` fields for a fresh network (``qa``,
            ``widths``, ``qa_hidden``).

    Returns:
        The network; in eval mode when loaded from weights, train mode when fresh.

    Raises:
        InvalidArgumentError: unknown configuration or field.
        WeightsError: unreadable weights, or weights of another configuration.
    """
    if weights is not None:
        if kwargs:
            msg = f"npp_net: {sorted(kwargs)} cannot override a weights file's stored configuration"
            raise WeightsError(msg)
        net, _ = load_weights(weights, device=device, config=config)
        return net
    from .model import NppNet, _resolve_config

    cfg = _resolve_config("small" if config is None else config)
    if kwargs:
        allowed = {"qa", "widths", "qa_hidden"}
        bad = sorted(set(kwargs) - allowed)
        if bad:
            msg = f"npp_net: unknown option {bad[0]!r}; allowed: {', '.join(sorted(allowed))}"
            raise InvalidArgumentError(msg, argument=bad[0], allowed=sorted(allowed))
        if "widths" in kwargs:
            kwargs["widths"] = tuple(kwargs["widths"])
        cfg = replace(cfg, **kwargs)
    return NppNet(cfg).to(device)
