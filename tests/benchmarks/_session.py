"""What every benchmark module here shares: run only when benchmarking, at a set thread count."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


@contextmanager
def benchmark_session(request: pytest.FixtureRequest, module: str) -> Iterator[int]:
    """Skip ``module``'s tests unless pytest runs with ``--benchmark-only`` (or ``$NPP_BENCH``
    is set); meanwhile torch uses ``$NPP_BENCH_THREADS`` threads (default 1). Yields that count."""
    import torch

    if not (request.config.getoption("benchmark_only", False) or os.environ.get("NPP_BENCH")):
        pytest.skip(f"benchmark: run with `pytest tests/benchmarks/{module} --benchmark-only`")
    n = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("NPP_BENCH_THREADS", "1")))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(n)
