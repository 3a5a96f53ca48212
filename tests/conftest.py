"""Shared fixtures. ``../shared`` (conformance vectors, paper notes) sits beside the repo in CI
and on developer machines; tests that need it skip with a reason where it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

# Parallel test workers and the codec thread pools share two cores: keep torch to one thread.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config: pytest.Config) -> None:
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Benchmarks run only when asked for (pytest --benchmark-only, or tests/benchmarks named).
    only = config.getoption("benchmark_only", default=False)
    named = any("benchmarks" in str(a) for a in config.args)
    if only or named:
        return
    skip = pytest.mark.skip(reason="benchmark: run with pytest --benchmark-only")
    for item in items:
        if "benchmarks" in item.path.parts:
            item.add_marker(skip)


@pytest.fixture
def plugin_host():
    """A fresh plugin host (built-ins and installed plugins, loaded on first use) that is the
    default host for this test: ``get_codec`` and friends read it, and whatever the test
    registers into it, or caches through it, is gone afterwards."""
    from npp_plugin.plugins import PluginHost, use_host

    host = PluginHost()
    with use_host(host):
        yield host


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"../shared not found at {SHARED} (conformance data lives beside the repo in CI)")
    return SHARED


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A real 256x256 photo crop (skimage's astronaut, or any built-in photo)."""
    from npp_plugin.datasets import builtin_photos, load_rgb

    photos = {p.name: p for p in builtin_photos()}
    if not photos:
        pytest.skip("no built-in photos installed (scikit-image, scikit-learn or matplotlib)")
    rgb = load_rgb(photos.get("astronaut.png") or next(iter(photos.values())))
    return np.ascontiguousarray(rgb[128:384, 128:384])


#: The codecs every codec test runs on (skipped where not installed).
CODECS = ["jpeg", "heif", "vvc", "bpg"]


def require_codec(name: str):
    """A configured instance of codec ``name``, or skip the test saying why it is missing."""
    import npp_plugin

    if name not in npp_plugin.available_codecs():
        pytest.skip(f"codec {name!r} is not registered here (plugins: {npp_plugin.available_codecs()})")
    codec = npp_plugin.get_codec(name)
    if not codec.is_available():
        pytest.skip(f"codec {name!r} backend unavailable: {codec.unavailable_reason()}")
    return codec


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)
