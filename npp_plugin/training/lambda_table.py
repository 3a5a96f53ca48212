# SPDX-License-Identifier: GPL-2.0-or-later
"""``npp search lambda``: calibrate the λ table of any registered task for ``npp_refine``.

Examples::

    npp search lambda --task efficientnet_lite0              # → ~/.cache/npp_plugin/lambdas/
    npp search lambda --task mobilenet_v2+efficientnet_lite0 --out lam.json
    npp search lambda --task mytask --images photos/ --max-images 32 --qps 28,34,41

λ at each QP is the plain codec's local rate–task slope, ``−ΔR/ΔD`` over QP ± 3
(:func:`~npp_plugin.evaluation.calibrate.calibrate_lambdas`), on random crops of the
training photos: with the defaults (64 crops of 224², seed 1, of the built-in training
photos' fit split, BPG with ``fast=true``) exactly as the shipped ``blur-tuned.json`` was
calibrated, so ``npp search blur`` with the same ``--images`` would weigh J with the same λ.
The table (:mod:`npp_plugin.preprocessors.lambdas`) records its provenance: task and its
config, codec and options, QPs, photos and crops, per-QP bits, task loss and whether the slope
was measurable, package version, date and command. It is written atomically.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import InvalidArgumentError, NppError
from ..fileio import atomic_write_bytes

__all__ = ["build_parser", "calibrate_table", "main"]

DEFAULT_QPS = (28, 31, 34, 37, 41)
#: the shipped tables' codec options, per codec (``npp search blur`` ran BPG with fast=true)
DEFAULT_CODEC_OPTIONS: dict[str, dict[str, Any]] = {"bpg": {"fast": True}}


def _qps(text: str) -> list[int]:
    try:
        return [int(q) for q in text.replace(",", " ").split()]
    except ValueError as exc:
        msg = f"npp search lambda: --qps expects integers separated by commas, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from exc


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="npp search lambda", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="λ per QP: the plain codec's −ΔR/ΔD over QP ± 3 on training crops.")
    p.add_argument("--task", required=True,
                   help="a registered task (a plugin's too), or classifiers joined by '+' (an ensemble)")
    p.add_argument("--codec", default="bpg", help="the codec to calibrate with (default bpg)")
    p.add_argument("--codec-option", action="append", default=None, metavar="KEY=VALUE",
                   help="a codec option (repeatable; default for bpg: fast=true, as the shipped tables)")
    p.add_argument("--qps", type=_qps, nargs="+", default=None,
                   help="QPs, e.g. 28,31,34,37,41 (default)")
    p.add_argument("--images", default="builtin:train",
                   help="builtin:train (default: the built-in training photos' fit split, as the blur table), "
                        "corpus:train (the photo corpus' train split), or a folder (its fit split, by scene)")
    p.add_argument("--max-images", type=int, default=64, help="random crops to calibrate on (default 64)")
    p.add_argument("--crop-size", type=int, default=224, help="square crop size (default 224)")
    p.add_argument("--seed", type=int, default=1, help="seed of the crops (default 1)")
    p.add_argument("--delta", type=int, default=3, help="the slope is taken over QP ± delta (default 3)")
    p.add_argument("--batch-size", type=int, default=32, help="crops per round trip (default 32)")
    p.add_argument("--out", default=None,
                   help="the table to write (default: the user folder, ~/.cache/npp_plugin/lambdas/TASK.json)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--workers", type=int, default=None, help="codec threads (default: the codec's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _check(args: argparse.Namespace) -> None:
    for key, value, lo in (("max-images", args.max_images, 1), ("crop-size", args.crop_size, 16),
                           ("delta", args.delta, 1), ("batch-size", args.batch_size, 1), ("threads", args.threads, 1)):
        if value < lo:
            msg = f"npp search lambda: --{key} must be at least {lo}, got {value}"
            raise InvalidArgumentError(msg, argument=key, allowed=f">= {lo}")


def calibrate_table(args: argparse.Namespace, *, command: str) -> dict[str, Any]:
    """The λ table document that ``args`` (as :func:`build_parser` makes them) describe."""
    import torch

    from .. import __version__
    from ..evaluation.calibrate import calibrate_lambdas
    from ..preprocessors.lambdas import FORMAT, parse_lambdas
    from ..registry import get_codec, get_task
    from ..tasks import require_trainable
    from .common import option_value
    from .data import Batches, ImageSource, photo_split

    t0 = time.monotonic()
    torch.set_num_threads(args.threads)
    options = (dict(option_value(o, who="npp search lambda") for o in args.codec_option) if args.codec_option is not None
               else dict(DEFAULT_CODEC_OPTIONS.get(args.codec, {})))
    codec = get_codec(args.codec, **options)
    qps = sorted({codec.validate_qp(q) for group in (args.qps or [list(DEFAULT_QPS)]) for q in group})
    task = require_trainable(get_task(args.task), who="npp search lambda")
    files = photo_split(args.images, who="npp search lambda")[0]
    if not files:
        msg = (f"npp search lambda: {args.images} gives no training photos (a folder is split by scene into "
               "fit and development photos, and λ is calibrated on the fit ones); give photos of more scenes")
        raise InvalidArgumentError(msg, argument="images", allowed="a folder with photos of several scenes")
    # the same crops as npp search blur's fit crops: one batch of max-images random crops
    x = Batches(ImageSource(list(files), cache=len(files)), size=args.crop_size, batch_size=args.max_images,
                seed=args.seed)[0][0]
    pairs = []
    with torch.no_grad():
        for i in range(0, len(x), args.batch_size):
            pairs.append((x[i:i + args.batch_size], task.reference(x[i:i + args.batch_size])))
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        lo, hi = codec.qp_range
        coded = {c for q in qps for c in (max(lo, q - args.delta), q, min(hi, q + args.delta))}
        bar = tqdm(total=len(coded) * len(x), desc=f"npp search lambda {args.task}", unit="image", dynamic_ncols=True)

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.total = total
            bar.update(done - bar.n)

    try:
        calib = calibrate_lambdas(codec, task, pairs, qps, delta=args.delta, workers=args.workers, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    lambdas = parse_lambdas({q: row["lmbda"] for q, row in calib.items()}, where="the calibration")
    task_config = task.get_config() if hasattr(task, "get_config") else {"task": args.task}
    return {
        "format": FORMAT,
        "task": args.task,
        "codec": args.codec,
        "lambdas": {str(q): v for q, v in lambdas.items()},
        "provenance": {
            "command": command,
            "package": {"name": "npp_plugin", "version": __version__, "torch": torch.__version__.split("+")[0]},
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "method": ("calibrate_lambdas: the plain codec's −ΔR/ΔD over QP ± delta, R in bits per pixel, "
                       "D the task loss against its own outputs on the uncompressed crops; where the loss "
                       "does not rise with QP (slope_ok false) the paper's λ stands in"),
            "task": {"name": args.task, "config": task_config},
            "codec": codec.get_config(),
            "codec_options": options,
            "qps": qps,
            "delta": args.delta,
            "images": args.images,
            "photos": sorted({p.name for p in files}),
            "n_photos": len(files),
            "crops": len(x),
            "crop_size": args.crop_size,
            "seed": args.seed,
            "calibration": {str(q): row for q, row in calib.items()},
            "wall_s": round(time.monotonic() - t0, 1),
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[2:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        from ..preprocessors.lambdas import ENV_VAR, find_table, table_path, user_dir

        _check(args)
        if args.out is not None:
            out = Path(args.out)
        else:
            out = table_path(user_dir(), args.task)
            if out is None:
                msg = f"npp search lambda: task {args.task!r} is no safe file name; give --out FILE"
                raise InvalidArgumentError(msg, argument="out", allowed="a file path")
        doc = calibrate_table(args, command=shlex.join(["npp", "search", "lambda", *argv]))
        for q, row in doc["provenance"]["calibration"].items():
            if not row["slope_ok"]:
                print(f"npp search lambda: warning: at QP {q} the task loss does not rise with QP on these crops; "  # noqa: T201
                      f"the paper's λ stands in (give more images, --max-images)", file=sys.stderr)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out, (json.dumps(doc, indent=2, default=str) + "\n").encode())
        try:
            found = find_table(args.task)
        except NppError:
            found = None
        if found is None or found.path is None or found.path.resolve() != out.resolve():
            print(f"npp search lambda: note: npp_refine(task={args.task!r}) reads "  # noqa: T201
                  f"{found.path if found is not None else 'no table'} first; to use this one, set {ENV_VAR}={out} "
                  "or pass lambdas=", file=sys.stderr)
        print(json.dumps({"table": str(out), "lambdas": doc["lambdas"]}))  # noqa: T201
        return 0
    except NppError as exc:
        print(f"npp search lambda: error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
