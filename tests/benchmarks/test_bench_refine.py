# SPDX-License-Identifier: GPL-2.0-or-later
"""What encode-time refinement costs: one 224² crop encoded at QP 34, side by side.

Run:
    pytest tests/benchmarks/test_bench_refine.py --benchmark-only

Variants, all through ``codec.encode(img, qp=34, preprocess=...)`` in one group: the plain codec,
``blur_tuned``, the shipped ``npp`` and ``npp_refine`` (the tuned blur plus 4 Adam steps on J,
each a real encode + decode and a backward pass through MobileNetV2), for BPG at level 8
(``npp demo``'s setting) and JPEG. Compare the medians within a group; ``npp_refine / plain`` is the price of
its bit saving. Torch uses ``$NPP_BENCH_THREADS`` threads (default 1).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import npp_plugin  # noqa: E402

from ._session import benchmark_session  # noqa: E402

VARIANTS = ("plain", "blur_tuned", "npp", "npp_refine")


@pytest.fixture(autouse=True, scope="module")
def _only_when_benchmarking(request):
    with benchmark_session(request, "test_bench_refine.py"):
        yield


@pytest.mark.parametrize("codec_name", ["bpg", "jpeg"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_encode_224(benchmark, photo, codec_name, variant):
    codec = npp_plugin.get_codec(codec_name)
    if not codec.is_available():
        pytest.skip(f"codec {codec_name!r} unavailable: {codec.unavailable_reason()}")
    img = photo[:224, :224]
    prep = None if variant == "plain" else npp_plugin.get_preprocessor(variant)
    codec.encode(img, qp=34, preprocess=prep)  # warm-up: weights, task network, first x265 call
    benchmark.group = f"encode-224-qp34-{codec_name}"
    data = benchmark.pedantic(codec.encode, args=(img,), kwargs={"qp": 34, "preprocess": prep},
                              rounds=5, iterations=1)
    assert codec.decode(data).shape == img.shape
