# SPDX-License-Identifier: GPL-2.0-or-later
"""What encode-time refinement costs, side by side with the plain codec and the tuned blur.

Run:
    pytest tests/benchmarks/test_bench_refine.py --benchmark-only

- ``test_encode_224`` / ``test_encode_1mp``: one image encoded at QP 34 through
  ``codec.encode(img, qp=34, preprocess=...)``, one group per codec and size: the plain codec,
  ``blur_tuned``, the shipped ``npp`` (224² only) and ``npp_refine`` in the settings of the
  speed–gain table (docs/results.md): 4 steps at the codec's own setting (the default),
  1 step without selection, 1 step with BPG's fast setting inside the loop, 4 steps with it,
  4 steps (and 2 or 3 without selection) with BPG's superfast preset (``level=1``) inside it.
  Compare medians within a group; ``/ plain`` is the price of the bits saved.
- ``test_peak_rss``: peak resident memory of one encode at 1, 4 and 12 MP, each in a fresh
  child process (so one size's peak cannot hide another's), in ``extra_info`` and printed.

Torch uses ``$NPP_BENCH_THREADS`` threads (default 1).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

import npp_plugin  # noqa: E402

from ._session import benchmark_session  # noqa: E402

REFINE = {
    "npp_refine": {},
    "npp_refine-1step": {"steps": 1, "select": False},
    "npp_refine-1step-fastloop": {"steps": 1, "select": False, "inner": "fast"},
    "npp_refine-4step-fastloop": {"steps": 4, "inner": "fast"},
    "npp_refine-level1loop": {"inner": "level=1"},
    "npp_refine-2step-level1loop": {"steps": 2, "select": False, "inner": "level=1"},
    "npp_refine-3step-level1loop": {"steps": 3, "select": False, "inner": "level=1"},
    # refines for MobileNetV2's first 7 blocks, no classifier: for readers not known
    "npp_refine-stem": {"task": "mobilenet_v2_stem"},
}


@pytest.fixture(autouse=True, scope="module")
def _only_when_benchmarking(request):
    with benchmark_session(request, "test_bench_refine.py"):
        yield


def _preprocessor(variant: str):
    if variant == "plain":
        return None
    if variant in REFINE:
        return npp_plugin.get_preprocessor("npp_refine", **REFINE[variant])
    return npp_plugin.get_preprocessor(variant)


def _encode(benchmark, codec_name: str, img, variant: str, group: str, rounds: int) -> None:
    codec = npp_plugin.get_codec(codec_name)
    if not codec.is_available():
        pytest.skip(f"codec {codec_name!r} unavailable: {codec.unavailable_reason()}")
    prep = _preprocessor(variant)
    codec.encode(img, qp=34, preprocess=prep)  # warm-up: weights, task network, first x265 call
    benchmark.group = group
    data = benchmark.pedantic(codec.encode, args=(img,), kwargs={"qp": 34, "preprocess": prep},
                              rounds=rounds, iterations=1)
    assert codec.decode(data).shape == img.shape


@pytest.mark.parametrize("codec_name", ["bpg", "jpeg"])
@pytest.mark.parametrize("variant", ["plain", "blur_tuned", "npp", *REFINE])
def test_encode_224(benchmark, photo, codec_name, variant):
    _encode(benchmark, codec_name, photo[:224, :224], variant, f"encode-224-qp34-{codec_name}", rounds=5)


@pytest.mark.parametrize("codec_name", ["bpg", "jpeg"])
@pytest.mark.parametrize("variant", ["plain", "blur_tuned", "npp_refine", "npp_refine-1step", "npp_refine-level1loop",
                                     "npp_refine-2step-level1loop", "npp_refine-3step-level1loop",
                                     "npp_refine-stem"])
def test_encode_1mp(benchmark, codec_name, variant):
    _encode(benchmark, codec_name, _photo(1.0), variant, f"encode-1mp-qp34-{codec_name}", rounds=3)


def _photo(megapixels: float):
    """A built-in photo resized to ``megapixels`` at 4:3 (bilinear)."""
    import numpy as np
    from PIL import Image

    from npp_plugin.datasets import builtin_photos, load_rgb

    photos = {p.name: p for p in builtin_photos()}
    if not photos:
        pytest.skip("no built-in photos installed")
    w = round((megapixels * 1e6 * 4 / 3) ** 0.5)
    rgb = load_rgb(photos.get("astronaut.png") or next(iter(photos.values())))
    return np.asarray(Image.fromarray(rgb).resize((w, w * 3 // 4), Image.BILINEAR))


_CHILD = """
import json, resource, sys, time
import npp_plugin
from tests.benchmarks.test_bench_refine import _photo, _preprocessor
mp, variant = float(sys.argv[1]), sys.argv[2]
img, prep = _photo(mp), _preprocessor(variant)
t = time.perf_counter()
npp_plugin.get_codec("bpg").encode(img, qp=34, preprocess=prep)
print(json.dumps({"seconds": time.perf_counter() - t,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


@pytest.mark.parametrize("megapixels", [1, 4, 12])
@pytest.mark.parametrize("variant", ["plain", "blur_tuned", "npp_refine", "npp_refine-1step-fastloop"])
def test_peak_rss(benchmark, megapixels, variant):
    """Peak RSS of one BPG encode in a fresh process (target for npp_refine: < 1.5 GB at 12 MP)."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("NPP_BENCH_THREADS", "1")}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    def run():
        # through a forking shell: Linux carries a parent's peak RSS into a child exec'd from it
        cmd = ["bash", "-c", '"$@"; exit $?', "sh", sys.executable, "-c", _CHILD, str(megapixels), variant]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=root, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    benchmark.group = f"peak-rss-{megapixels}mp-bpg"
    result = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    print(f"\n{variant} {megapixels} MP: peak RSS {result['peak_rss_mb']:.0f} MB, {result['seconds']:.1f} s")
    assert result["peak_rss_mb"] > 0
