# SPDX-License-Identifier: GPL-2.0-or-later
"""Experiment: ``npp_refine`` against a fixed feature extractor instead of a classifier.

Question: does refining toward *low-level features* of the uncompressed image (the first
``depth`` blocks of MobileNetV2's feature stack, relative squared error) lower the KL of
classifiers after coding, in particular ones it never saw? If a stem of a few blocks keeps
the gain, an NPP that runs one unrolled step through such a stem needs no classifier at the
encoder.

    python scripts/experiments/feature_refine.py lambda --depths 2,4,7,14   # λ tables
    python scripts/experiments/feature_refine.py eval --depths 2,4 --images corpus:dev --max-images 48 --out runs/feat

Tasks are registered here as ``mnv2_feat<depth>`` (the shipped ``mobilenet_v2_stem``, depth 7,
at other depths); λ tables go to ``runs/feat-lambdas``. Results: docs/distillation.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from npp_plugin import hookimpl

LAMBDAS = Path("runs/feat-lambdas")


def feature_task(depth: int):
    """The shipped ``mobilenet_v2_stem`` task at another depth, named ``mnv2_feat<depth>``."""
    from npp_plugin.tasks.features import mobilenet_v2_stem

    task = mobilenet_v2_stem(depth=depth)
    task.name = f"mnv2_feat{depth}"
    return task


class FeaturePlugin:
    @staticmethod
    @hookimpl
    def npp_register_tasks(register):
        for d in (1, 2, 3, 4, 5, 7, 11, 14, 18):
            register(f"mnv2_feat{d}", lambda d=d, **kw: feature_task(d))


def _host():
    from npp_plugin.plugins import default_host

    host = default_host()
    host.register(FeaturePlugin, name="feature-refine-experiment")
    return host


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["lambda", "eval"])
    p.add_argument("--depths", default="4")
    p.add_argument("--images", default="corpus:dev")
    p.add_argument("--max-images", default="48")
    p.add_argument("--variant-options", default="", help="extra ':k=v' for npp_refine; several separated by ';'")
    p.add_argument("--out", default="runs/feat")
    a, rest = p.parse_known_args(argv)
    _host()
    os.environ["NPP_LAMBDAS"] = str(LAMBDAS.resolve())
    LAMBDAS.mkdir(parents=True, exist_ok=True)
    depths = [int(d) for d in a.depths.split(",")]
    if a.what == "lambda":
        from npp_plugin.cli import main as npp_main

        for d in depths:
            rc = npp_main(["search", "lambda", "--task", f"mnv2_feat{d}", "--out", str(LAMBDAS / f"mnv2_feat{d}.json"), *rest])
            if rc:
                return rc
        return 0
    from npp_plugin.evaluation.__main__ import main as eval_main

    variants = ["plain", "blur_tuned"] + [f"npp_refine:task=mnv2_feat{d}{o}" for d in depths
                                          for o in a.variant_options.split(";")]
    c = ["--qps", "28,31,34,37,41", "--crop-size", "224", "--stride", "112", "--bootstrap", "1000",
         "--bootstrap-unit", "source", "--anchor", "plain,blur_tuned"]
    return eval_main(["run", "--codecs", "bpg", "--variants", ",".join(variants),
                      "--tasks", "mobilenet_v2,efficientnet_lite0,efficientnet_lite2", "--images", a.images,
                      "--max-images", a.max_images, *c, "--out", a.out, *rest])


if __name__ == "__main__":
    sys.exit(main())
