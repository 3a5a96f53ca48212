# SPDX-License-Identifier: GPL-2.0-or-later
"""NPP inference time per configuration at 224² and 512², and its ratio to encoding.

Run:
    pytest tests/benchmarks/test_bench_npp.py --benchmark-only
    (or NPP_BENCH=1 pytest tests/benchmarks/test_bench_npp.py)

What is timed: the pre-encode hook exactly as ``codec.encode(..., preprocess=npp)`` runs it
(uint8 → tensor → NppNet under inference_mode → uint8), on one photo crop, CPU. References:
BPG encode of the same image at qp 37 at level 8 (bpgenc's default) and at the fast setting
(x265 ultrafast), and JPEG when installed. The ratio ``npp / encode`` is recorded in each
benchmark's ``extra_info`` and printed as a table at the end. Threads: torch uses
``$NPP_BENCH_THREADS`` (default 1); the codecs use what they use by default.
"""

from __future__ import annotations

import statistics
import time
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from npp_plugin import Codec  # noqa: E402
from npp_plugin.preprocessors.hook import NppPreprocessor  # noqa: E402
from npp_plugin.preprocessors.model import CONFIGS, count_parameters  # noqa: E402
from npp_plugin.preprocessors.weights import npp_net  # noqa: E402

from ._session import benchmark_session  # noqa: E402

SIZES = (224, 512)
QP = 37
REFERENCES = {  # label -> (codec name, options)
    "bpg_level8": ("bpg", {"level": 8}),
    "bpg_fast": ("bpg", {"fast": True}),
    "jpeg": ("jpeg", {}),
}
_NPP: dict[tuple[str, int], float] = {}
_REF: dict[tuple[str, int], float | str] = {}


@pytest.fixture(autouse=True, scope="module")
def _only_when_benchmarking(request):
    with benchmark_session(request, "test_bench_npp.py") as threads:
        yield
    _report(request.config, threads)


class _Qp51(Codec):
    """Supplies normalized_qp for HEVC-range codecs when timing NPP alone."""

    name = "qp51"
    qp_range = (0, 51)

    def _encode(self, rgb, /, *, qp):  # pragma: no cover - never encodes
        raise NotImplementedError

    def _decode(self, data, /, *, high_bit_depth):  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def _check(cls, data, /):  # pragma: no cover
        return False


def _photo(size: int) -> np.ndarray:
    """A centre crop of a real photo (content matters for encode time), else a textured synthetic."""
    from npp_plugin.datasets import builtin_photos, load_rgb

    for path in builtin_photos():
        rgb = load_rgb(path)
        h, w = rgb.shape[:2]
        if h >= size and w >= size:
            y, x = (h - size) // 2, (w - size) // 2
            return np.ascontiguousarray(rgb[y : y + size, x : x + size])
    yy, xx = np.mgrid[0:size, 0:size]
    rng = np.random.default_rng(0)
    img = np.stack([xx, yy, (xx * yy) % 256], -1) * 255.0 / size + rng.normal(
        0, 20, (size, size, 3)
    )
    return np.clip(img, 0, 255).astype(np.uint8)


def _reference_codec(label: str) -> tuple[Codec | None, str]:
    import npp_plugin

    name, opts = REFERENCES[label]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name not in npp_plugin.available_codecs():
            return (
                None,
                f"codec {name!r} is not registered (available: {', '.join(npp_plugin.available_codecs())})",
            )
        codec = npp_plugin.get_codec(name)
    if not codec.is_available():
        return None, f"codec {name!r} unavailable: {codec.unavailable_reason()}"
    unknown = sorted(set(opts) - set(codec.params))
    if unknown:
        return None, f"codec {name!r} has no option {unknown[0]!r}"
    return npp_plugin.get_codec(name, **opts), ""


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("label", list(REFERENCES))
def test_bench_encode_reference(benchmark, label, size):
    """Encode time of the reference codecs on the same image (the denominator of the ratios)."""
    codec, reason = _reference_codec(label)
    if codec is None:
        _REF[(label, size)] = reason
        pytest.skip(reason)
    img = _photo(size)
    benchmark.extra_info.update({"codec": codec.get_config(), "size": size, "qp": QP})
    benchmark.pedantic(
        codec.encode, args=(img,), kwargs={"qp": QP}, rounds=7, iterations=1, warmup_rounds=1
    )
    if benchmark.stats is not None:  # None under --benchmark-disable (a smoke run)
        _REF[(label, size)] = benchmark.stats.stats.median


def _reference_median(label: str, size: int) -> float | None:
    """Median encode time, measured here when the reference benchmark did not run first."""
    if (label, size) not in _REF:
        codec, reason = _reference_codec(label)
        if codec is None:
            _REF[(label, size)] = reason
        else:
            img = _photo(size)
            codec.encode(img, qp=QP)
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                codec.encode(img, qp=QP)
                times.append(time.perf_counter() - t0)
            _REF[(label, size)] = statistics.median(times)
    value = _REF[(label, size)]
    return value if isinstance(value, float) else None


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("config", list(CONFIGS))
def test_bench_npp_inference(benchmark, config, size):
    """NPP pre-encode hook time per configuration, and its ratio to each reference encode."""
    net = npp_net(config=config).eval()
    prep = NppPreprocessor(net)
    img = _photo(size)[None]
    codec = _Qp51()
    rounds = 3 if (config == "paper" and size == 512) else 7
    benchmark.extra_info.update(
        {
            "config": config,
            "params": count_parameters(net),
            "size": size,
            "torch_threads": torch.get_num_threads(),
        }
    )
    benchmark.pedantic(
        prep.apply_uint8,
        args=(img,),
        kwargs={"codec": codec, "qp": QP},
        rounds=rounds,
        iterations=1,
        warmup_rounds=1,
    )
    if benchmark.stats is None:  # --benchmark-disable: ran once as a smoke test
        return
    median = benchmark.stats.stats.median
    _NPP[(config, size)] = median
    for label in REFERENCES:
        ref = _reference_median(label, size)
        benchmark.extra_info[f"ratio_to_{label}"] = None if ref is None else median / ref


def _report(config, threads: int) -> None:
    tr = config.pluginmanager.get_plugin("terminalreporter")
    capman = config.pluginmanager.get_plugin("capturemanager")
    if tr is None or not _NPP:
        return
    if capman is not None:  # module teardown runs under output capture
        with capman.global_and_fixture_disabled():
            _write_table(tr, threads)
    else:
        _write_table(tr, threads)


def _write_table(tr, threads: int) -> None:
    tr.write_line("")
    tr.write_sep(
        "-",
        f"NPP inference vs encode time (medians, qp {QP}, torch threads {threads})",
    )
    for size in SIZES:
        refs = {label: _REF.get((label, size)) for label in REFERENCES}
        head = ", ".join(
            f"{label} {v * 1e3:.1f} ms"
            if isinstance(v, float)
            else f"{label} n/a ({v or 'not measured'})"
            for label, v in refs.items()
        )
        tr.write_line(f"{size}x{size}: {head}")
        for cfg in CONFIGS:
            if (cfg, size) not in _NPP:
                continue
            t = _NPP[(cfg, size)]
            ratios = "  ".join(
                f"/{label} = {t / v:.2f}" for label, v in refs.items() if isinstance(v, float)
            )
            tr.write_line(f"  npp {cfg:<6} {t * 1e3:8.1f} ms  {ratios}")
