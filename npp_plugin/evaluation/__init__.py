"""Evaluation: rate–accuracy sweeps, BD-rates with bootstrap intervals, plots, GradCAM.

The command line is ``npp eval`` (:mod:`npp_plugin.evaluation.__main__`); the pieces are
importable for scripts and notebooks:

    >>> from npp_plugin.evaluation import SweepSpec, builtin_images, run_sweep, finalize
    >>> spec = SweepSpec.with_qps({"jpeg": get_codec("jpeg")}, {"plain": None},
    ...                           {"mobilenet_v2": get_task("mobilenet_v2")}, [28, 34, 41])
    >>> run_sweep(builtin_images(), spec, "runs/e1"); finalize("runs/e1")

Heavy imports (torch, piq, matplotlib, bjontegaard, pycocotools) happen inside the functions that need them.
"""

from __future__ import annotations

from .annotations import load_coco_boxes
from .bdrate import (
    BdResult,
    bd_quality,
    bd_rate,
    bd_rate_bootstrap,
    bd_rate_bootstrap_weighted,
    monotone_envelope,
)
from .calibrate import Calibration, calibrate, choose_qps
from .coco_map import MatchTable, coco_map
from .inputs import EvalImage, builtin_images, corpus_images, folder_images, select_evenly
from .merge import merge_shards
from .metrics import bpp, fidelity, fsim, kl_divergence, ms_ssim, psnr
from .results import aggregate, bd_table, finalize, format_table
from .sweep import NO_TASK, PLAIN, SweepSpec, SweepStats, run_sweep
from .transfer import transfer_rows, transfer_table

__all__ = [
    "NO_TASK",
    "PLAIN",
    "BdResult",
    "Calibration",
    "EvalImage",
    "MatchTable",
    "SweepSpec",
    "SweepStats",
    "aggregate",
    "bd_quality",
    "bd_rate",
    "bd_rate_bootstrap",
    "bd_rate_bootstrap_weighted",
    "bd_table",
    "bpp",
    "builtin_images",
    "corpus_images",
    "calibrate",
    "choose_qps",
    "coco_map",
    "fidelity",
    "finalize",
    "folder_images",
    "format_table",
    "fsim",
    "kl_divergence",
    "load_coco_boxes",
    "merge_shards",
    "monotone_envelope",
    "ms_ssim",
    "psnr",
    "run_sweep",
    "select_evenly",
    "transfer_rows",
    "transfer_table",
]
