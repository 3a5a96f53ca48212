"""``npp demo``: the main job on the built-in photos.

An evaluation (:mod:`npp_plugin.evaluation`) of every selected codec on 224² crops (stride
112) of the built-in photos that training holds out (``builtin:val``): plain, with the
Gaussian-blur baselines (``blur05`` and ``blur_tuned``, the σ per QP tuned on the training
photos), with NPP when weights are available (shipped in the package, or named with
``--weights`` / ``NPP_WEIGHTS``), and with ``npp_refine`` (the tuned blur refined per image
at encode time on the task's J; :mod:`npp_plugin.preprocessors.refine`). Every variant is
scored by the classifier the preprocessors were tuned with (``--task``, MobileNetV2) and by one
they never saw (``--unseen``, EfficientNet-Lite0).

It prints a compact summary: per codec and variant, the KL BD-rate against the plain codec
*and* against ``blur_tuned`` with 95 % bootstrap intervals over source photos, for both
classifiers, and the time per image; then where the rest is: ``table.md`` (every metric, the
per-QP points), CSV, JSON and the rate–KL plots in ``--out``. Rerunning resumes: finished rows
are not recomputed.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from .errors import WeightsError


def _npp_variant(weights: str | None) -> str | None:
    """The NPP variant spec when weights can be found, else None (the demo then runs the plain
    codecs and the baselines, as docs/evaluation.md says)."""
    from .preprocessors.weights import resolve_weights

    try:
        path = resolve_weights(weights)
    except WeightsError:
        if weights is not None:
            raise
        return None
    return "npp" if weights is None else f"npp:weights={path}"


def _refine_variant(task: str) -> str | None:
    """``npp_refine`` for ``task`` (the tuned blur refined per image on the task's J) when
    there is a λ table for it; otherwise None, with a note naming the command that makes one."""
    import sys

    from .preprocessors.lambdas import find_table, make_command

    if find_table(task) is None:
        print(f"npp demo: npp_refine left out: no λ table for {task} (`{make_command(task)}` makes one)",  # noqa: T201
              file=sys.stderr)
        return None
    return "npp_refine" if task == "mobilenet_v2" else f"npp_refine:task={task}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="npp demo", description=__doc__.splitlines()[0])
    parser.add_argument("--codecs", default="jpeg,bpg", help="comma-separated codecs (default jpeg,bpg)")
    parser.add_argument("--qps", default="28,31,34,37,41", help="QPs (default: the paper's 28,31,34,37,41)")
    parser.add_argument("--task", default="mobilenet_v2",
                        help="the classifier the preprocessors were tuned with (default mobilenet_v2)")
    parser.add_argument("--unseen", default="efficientnet_lite0",
                        help="a classifier they never saw, scored too (default efficientnet_lite0; '' for none)")
    parser.add_argument("--max-images", type=int, default=None, help="crops to evaluate (default: all 73)")
    parser.add_argument("--images", default="builtin:val",
                        help="builtin:val (held-out photos, default), builtin:all, corpus:dev (npp data build), "
                             "or a folder")
    parser.add_argument("--weights", default=None, help="NPP weights file (default: shipped, or $NPP_WEIGHTS)")
    parser.add_argument("--out", default=os.path.join("runs", "demo"), help="output folder (default runs/demo)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    args = parser.parse_args(argv)

    variants = ["plain", "blur05", "blur_tuned"]
    npp = _npp_variant(args.weights)
    if npp is not None:
        variants.append(npp)
    refine = _refine_variant(args.task)
    if refine is not None:
        variants.append(refine)
    from .evaluation.__main__ import main as eval_main

    limit = [] if args.max_images is None else ["--max-images", str(args.max_images)]
    tasks = [args.task] + ([args.unseen] if args.unseen and args.unseen != args.task else [])
    summary = ",".join([f"{args.task}=tuned with"] + [f"{t}=unseen" for t in tasks[1:]])
    return eval_main([
        "run", "--codecs", args.codecs, "--qps", args.qps, "--variants", ",".join(variants),
        "--tasks", ",".join(tasks), "--images", args.images, "--crop-size", "224", "--stride", "112", *limit,
        "--metrics", "psnr,ms_ssim", "--bootstrap", str(args.bootstrap), "--bootstrap-unit", "source",
        "--anchor", "plain,blur_tuned", "--out", args.out, "--resume", "--summary", summary,
    ])
