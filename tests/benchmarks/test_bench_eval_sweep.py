# SPDX-License-Identifier: GPL-2.0-or-later
"""Evaluation throughput: a whole ``run_sweep`` in crops × QPs × variants per minute.

Run:
    nice -n 10 .venv/bin/python -m pytest tests/benchmarks/test_bench_eval_sweep.py \
        --benchmark-only -s --benchmark-columns=median,iqr,min,rounds

What is timed: one ``run_sweep`` (into a fresh folder each round) of 16 evenly chosen 224²
crops of the held-out built-in photos (``builtin:val``, stride 112, as ``npp demo``) at QPs
28 / 34 / 41 with the variants ``plain``, ``blur05`` (a filter that ignores codec and QP) and
``blur_tuned`` (one that depends on the QP), scored by MobileNetV2 with PSNR and MS-SSIM:
16 × 3 × 3 = 144 coded units per round. Codecs: ``bpg`` at ``npp demo``'s setting (level 8),
``bpg`` with ``fast=True``, and ``jpeg`` when its plugin is installed. torch gets one
intra-op thread per core, as ``npp eval`` without ``--threads``; the codec work gets the
sweep's default workers (one per core).

The figure is ``units_per_minute`` = 144 / median seconds × 60, stored in ``extra_info`` and
printed at the end. Only the public ``run_sweep`` API is used, so the same file times any
version of the sweep. The machine may be shared: quote medians, and compare two versions
by alternating their runs.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from npp_plugin import available_codecs, get_codec, get_preprocessor, get_task  # noqa: E402
from npp_plugin.codec import default_workers  # noqa: E402
from npp_plugin.errors import NppError  # noqa: E402
from npp_plugin.evaluation import SweepSpec, builtin_images, run_sweep, select_evenly  # noqa: E402

CROPS = 16
QPS = (28, 34, 41)
VARIANTS = ("plain", "blur05", "blur_tuned")
SETTINGS = {"bpg-level8": ("bpg", {}), "bpg-fast": ("bpg", {"fast": True}), "jpeg": ("jpeg", {})}
_RATES: dict[str, float] = {}
_counter = itertools.count()


@pytest.fixture(scope="module")
def crops():
    items = select_evenly(builtin_images(crop_size=224, stride=112, split="val"), CROPS)
    for item in items:  # decode the photos once, outside the timed rounds
        item.load()
    return items


@pytest.fixture(scope="module")
def task():
    try:
        return get_task("mobilenet_v2")
    except NppError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def torch_threads():
    old = torch.get_num_threads()
    torch.set_num_threads(default_workers())
    yield
    torch.set_num_threads(old)


def _codec(name, options):
    if name not in available_codecs():
        pytest.skip(f"{name} not installed")
    try:
        codec = get_codec(name, **options)
        codec.require_available()
    except NppError as exc:
        pytest.skip(str(exc))
    return codec


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_sweep_throughput(benchmark, crops, task, torch_threads, setting):
    name, options = SETTINGS[setting]
    codec = _codec(name, options)
    variants = {v: None if v == "plain" else get_preprocessor(v) for v in VARIANTS}
    spec = SweepSpec.with_qps({name: codec}, variants, {"mobilenet_v2": task}, list(QPS),
                              metrics=("psnr", "ms_ssim"))
    root = Path(tempfile.mkdtemp(prefix="bench-eval-"))

    def setup():
        return (root / f"run{next(_counter)}",), {}

    def run(out):
        return run_sweep(crops, spec, out)

    try:
        stats = benchmark.pedantic(run, setup=setup, rounds=3, warmup_rounds=1)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    units = len(crops) * len(QPS) * len(VARIANTS)
    assert stats.computed == units + len(crops)  # the coded rows and one reference row per crop
    rate = units / benchmark.stats.stats.median * 60.0
    benchmark.extra_info["units"] = units
    benchmark.extra_info["units_per_minute"] = rate
    _RATES[setting] = rate


def teardown_module(module):
    if _RATES:
        print(f"\nevaluation throughput, {CROPS} crops 224² × QPs {QPS} × variants {VARIANTS}, MobileNetV2, "
              "PSNR + MS-SSIM (crops × QPs × variants per minute, from the median round):")
    for setting, rate in _RATES.items():
        print(f"  {setting}: {rate:.0f}")
