# SPDX-License-Identifier: GPL-2.0-or-later
"""Codec work of an evaluation sweep on 1 thread vs all cores, and rows per second.

Run:
    pytest tests/benchmarks/test_bench_eval.py --benchmark-only

What is timed: ``codec.roundtrip`` (encode + decode of a float batch, the route the sweep
takes) of 32 built-in 144² crops at QP 30, with ``workers=1`` and with one worker per core,
for each installed codec among bpg, heif and jpeg. The speed-up
(median 1-worker / median all-cores) is stored in ``extra_info`` and printed at the end; on a
2-core machine shared with other jobs expect well under 2.
"""

from __future__ import annotations

import numpy as np
import pytest

from npp_plugin import available_codecs, get_codec
from npp_plugin.codec import default_workers
from npp_plugin.errors import NppError
from npp_plugin.evaluation import builtin_images, select_evenly
from npp_plugin.images import uint8_to_tensor_batch

_MEDIANS: dict[tuple[str, int], float] = {}


@pytest.fixture(scope="module")
def crops():
    return uint8_to_tensor_batch(np.stack([i.load() for i in select_evenly(builtin_images(), 32)]))


def _codec(name):
    if name not in available_codecs():
        pytest.skip(f"{name} not installed")
    try:
        codec = get_codec(name)
        codec.require_available()
    except NppError as exc:
        pytest.skip(str(exc))
    return codec


@pytest.mark.parametrize("workers", [1, default_workers()], ids=["1worker", "allcores"])
@pytest.mark.parametrize("name", ["bpg", "heif", "jpeg"])
def test_codec_work(benchmark, crops, name, workers):
    codec = _codec(name)

    def run():
        return codec.roundtrip(crops, qp=30, workers=workers)

    recon, bits = benchmark.pedantic(run, rounds=5, warmup_rounds=1)
    assert recon.shape == crops.shape and len(bits) == len(crops)
    _MEDIANS[(name, workers)] = benchmark.stats.stats.median
    one = _MEDIANS.get((name, 1))
    if one is not None and workers != 1:
        benchmark.extra_info["speedup_vs_1_worker"] = one / benchmark.stats.stats.median


def teardown_module(module):
    names = sorted({n for n, _ in _MEDIANS})
    if names:
        print("\ncodec work, 32 crops 144², QP 30 (median s): codec, 1 worker, all cores, speed-up")
    for n in names:
        one, many = _MEDIANS.get((n, 1)), _MEDIANS.get((n, default_workers()))
        if one and many:
            print(f"  {n}: {one:.3f}  {many:.3f}  {one / many:.2f}x")
