"""``npp train``: the command line of the three training stages.

Examples::

    npp train proxy  --codec jpeg --qps 28 31 34 37 41 --steps 2000 --out runs/jpeg
    npp train npp    --codec jpeg --qp 34 --steps 20000 --out runs/jpeg
    npp train npp-qa --codec jpeg --npp-init runs/jpeg/npp-jpeg-npp.npp.pt --steps 20000 --out runs/jpeg
    npp train --config train.toml --resume
    torchrun --standalone --nproc_per_node=2 -m npp_plugin.training npp --out runs/jpeg ...

A long run (the paper's three stages, BPG, on this 2-core CPU; days, not minutes)::

    npp train proxy --codec bpg --qps 28 31 34 37 41 --proxy-arch mbt2018_mean \
        --proxy-N 96 --proxy-M 128 --proxy-pretrain-steps 20000 --steps 4000 \
        --size 128 --batch-size 8 --threads 2 --out runs/bpg
    torchrun --standalone --nproc_per_node=2 -m npp_plugin.training npp --codec bpg --qp 34 \
        --npp-config small --steps 100000 --size 128 --batch-size 4 --threads 1 \
        --checkpoint-every 500 --out runs/bpg
    torchrun --standalone --nproc_per_node=2 -m npp_plugin.training npp-qa --codec bpg \
        --npp-init runs/bpg/npp-bpg-npp.npp.pt --steps 100000 --size 128 --batch-size 4 \
        --threads 1 --checkpoint-every 500 --out runs/bpg

(on GPUs: ``--device cuda --proxy-arch mbt2018 --proxy-N 192 --proxy-M 192 --npp-config
paper --size 256``). Stop any stage with SIGTERM or Ctrl-C; the same command with
``--resume`` continues from the last checkpoint. ``runs/bpg/log-*.jsonl`` holds every step's
loss terms, the plain codec's bits and task loss on the same batch, and the proxy's distance
from the real codec; ``proxy-gap.json`` the proxies' BD-rate and BD-PSNR against the codec.
Stage 1 checkpoints inside pretraining and inside each QP's fine-tuning too.

Library code raises; this module turns an :class:`~npp_plugin.errors.NppError` into one line
on stderr and exit status 2. A run stopped by SIGTERM/SIGINT writes its checkpoint and exits
with 143; ``--resume`` continues it.
"""

from __future__ import annotations

import argparse
import json
import sys
import typing
from dataclasses import MISSING, fields
from typing import Any

from ..errors import InvalidArgumentError, NppError
from .config import STAGES, TrainConfig

__all__ = ["main"]

_DICT_FLAGS = {"codec_options": "codec-option", "task_options": "task-option", "lambdas": "lambda"}
_HELP = {
    "out": "output folder: checkpoints, logs, proxies, weights",
    "data": "'builtin' (photos shipped by installed packages), 'corpus:train' (the photo corpus, "
            "npp data build; validated on corpus:dev), or an image folder (class sub-folders optional)",
    "annotations": "COCO instances JSON: --data is then the COCO image folder",
    "size": "square crop size (multiple of 16)",
    "qp": "stage npp: the fixed QP",
    "qps": "stage proxy: QPs to fit proxies for; stage npp-qa: QPs drawn per batch",
    "lambda_mode": "calibrated (plain codec's local rate-task slope, default) | paper | fixed",
    "beta": "weight of the fidelity term (PSNR-floor hinge + colour-mean penalty)",
    "psnr_floor": "PSNR (dB) of x̄ against x below which the fidelity term starts to cost",
    "proxy_only": "ablation 'NPP+Minnen': the proxy in the forward pass too",
    "diag_every": "paired plain-codec diagnostics every N steps (1 = every step)",
    "checkpoint_every": "write a checkpoint every N steps (and on SIGTERM)",
    "workers": "codec threads per process (default: cores / local ranks)",
    "threads": "torch threads per process",
    "surrogate": "gradient source: proxy (learned, stage 1) | log | sqlog | sigcount (analytic rate models)",
    "jacobian": "analytic distortion Jacobian: identity | soft | masked (share of each DCT coefficient kept)",
    "check_every": "analytic surrogate: re-run the surrogate check every N steps (it always runs at the start)",
    "init_blur": "distil the network to a Gaussian blur of this σ before training (0: identity start)",
    "ema": "exponential moving average of the weights (e.g. 0.99); the saved weights are the average",
}


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _pairs(flag: str, items: list[str] | None) -> dict[str, Any] | None:
    if not items:
        return None
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            msg = f"npp train: --{flag} expects KEY=VALUE, got {item!r}"
            raise InvalidArgumentError(msg, argument=flag, allowed="KEY=VALUE")
        out[key] = _parse_value(value)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="npp train",
        description="Train the neural preprocessor through a real codec (stages: proxy, npp, npp-qa).",
    )
    parser.add_argument("stage", nargs="?", choices=sorted(STAGES), help="proxy (1) | npp (2) | npp-qa (3)")
    parser.add_argument("--config", help="a JSON or TOML file of options; flags override it")
    parser.add_argument("--resume", action="store_true", help="continue from the stage's checkpoint in --out")
    hints = typing.get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        if f.name == "stage":
            continue
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        help_ = f"{_HELP.get(f.name, '')} (default: {default!r})".strip()
        kind = hints[f.name]
        if f.name in _DICT_FLAGS:
            parser.add_argument(f"--{_DICT_FLAGS[f.name]}", dest=f.name, action="append", metavar="KEY=VALUE",
                                help=help_)
        elif kind is bool:
            parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, action=argparse.BooleanOptionalAction,
                                default=None, help=help_)
        elif f.name == "qps":
            parser.add_argument("--qps", type=int, nargs="+", default=None, help=help_)
        else:
            base = {int: int, float: float}.get(kind) or {"int | None": int, "float | None": float}.get(str(kind))
            if base is None:
                args = typing.get_args(kind)
                base = int if int in args else float if float in args else str
            parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=base, default=None, help=help_)
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    overrides: dict[str, Any] = {}
    for f in fields(TrainConfig):
        if f.name == "stage":
            continue
        value = getattr(args, f.name, None)
        if f.name in _DICT_FLAGS:
            value = _pairs(_DICT_FLAGS[f.name], value)
        if value is not None:
            overrides[f.name] = value
    if args.stage is not None:
        overrides["stage"] = args.stage
    if args.config:
        return TrainConfig.from_file(args.config, **overrides)
    return TrainConfig.from_dict(overrides)


def main(argv: list[str] | None = None) -> int:
    """``npp train ...``; returns the exit status (0 done, 2 error, 143 stopped early)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
        from .loop import run

        summary = run(cfg, resume=args.resume)
    except NppError as exc:
        print(f"npp train: error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    if summary.get("interrupted"):
        print(f"npp train: stopped early; checkpoint written in {cfg.out}; continue with --resume",  # noqa: T201
              file=sys.stderr)
        return 143
    print(json.dumps(summary, default=str))  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
