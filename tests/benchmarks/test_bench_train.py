# SPDX-License-Identifier: GPL-2.0-or-later
"""One NPP training step, split: NPP, codec round trip, proxy, task network.

Run:
    pytest tests/benchmarks/test_bench_train.py --benchmark-only
    (or NPP_BENCH=1 pytest tests/benchmarks/test_bench_train.py -s)

Setting (CPU, ``$NPP_BENCH_THREADS`` torch threads, default 1): batch 4 of 128² built-in
photo crops, NPP "small", proxy mbt2018_mean N=96 M=128 (the CPU default), MobileNetV2, the
codec ``$NPP_BENCH_CODEC`` (default "bpg" with ``fast=True`` when available, else "jpeg") at
QP 34. Each component is timed forward+backward on its own; the full step is the training
loop's own step (with the paired plain-codec diagnostic, as it runs by default). The codec's
share of the step (target ≤ 5 %) and the step throughput against the paper's route — the
reference command-line encoder and decoder as one subprocess pair per image, serially, with
PNG files in between — are recorded in ``extra_info`` and printed as a table at the end.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from npp_plugin.registry import available_codecs, get_codec, get_task  # noqa: E402

from ._session import benchmark_session  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
QP, BATCH, SIZE = 34, 4, 128
_MEDIANS: dict[str, float] = {}


@pytest.fixture(autouse=True, scope="module")
def _only_when_benchmarking(request):
    with benchmark_session(request, "test_bench_train.py"):
        yield
    _report()


def _codec():
    name = os.environ.get("NPP_BENCH_CODEC")
    if name is None:
        name = "bpg" if "bpg" in available_codecs() and get_codec("bpg").is_available() else "jpeg"
    opts = {"fast": True} if name == "bpg" else {}
    codec = get_codec(name, **opts)
    if not codec.is_available():
        pytest.skip(f"codec {name!r} unavailable: {codec.unavailable_reason()}")
    return codec


@pytest.fixture(scope="module")
def parts():
    from npp_plugin.preprocessors.weights import npp_net
    from npp_plugin.proxy import proxy_codec
    from npp_plugin.training.data import Batches, BuiltinPhotos

    torch.manual_seed(0)
    x, _ = Batches(BuiltinPhotos("train"), size=SIZE, batch_size=BATCH, seed=0)[0]
    net = npp_net(config="small", qa=True)
    proxy = proxy_codec(arch="mbt2018_mean", N=96, M=128).freeze()
    task = get_task("mobilenet_v2")
    return {"x": x, "net": net, "proxy": proxy, "task": task, "codec": _codec(), "ref": task.reference(x)}


def _bench(benchmark, key, fn, rounds=10):
    benchmark.pedantic(fn, rounds=rounds, warmup_rounds=1, iterations=1)
    _MEDIANS[key] = benchmark.stats.stats.median
    benchmark.extra_info["median_s"] = _MEDIANS[key]


def test_bench_npp(benchmark, parts):
    x, net = parts["x"], parts["net"]
    q = torch.full((BATCH,), 34 / 51)

    def run():
        xb = x.clone().requires_grad_(True)
        net(xb, q).sum().backward()

    _bench(benchmark, "npp fwd+bwd", run)


def test_bench_codec_roundtrip(benchmark, parts):
    codec, x = parts["codec"], parts["x"]
    _bench(benchmark, f"codec roundtrip ({codec.name})", lambda: codec.roundtrip(x, qp=QP))
    benchmark.extra_info["codec"] = codec.get_config()


def test_bench_proxy(benchmark, parts):
    x, proxy = parts["x"], parts["proxy"]

    def run():
        xb = x.clone().requires_grad_(True)
        out = proxy(xb)
        (out["x_hat"].sum() + out["bits"].sum()).backward()

    _bench(benchmark, "proxy fwd+bwd (mbt2018_mean 96/128)", run)


def test_bench_task(benchmark, parts):
    x, task, ref = parts["x"], parts["task"], parts["ref"]

    def run():
        xb = x.clone().requires_grad_(True)
        task.loss(xb, ref).backward()

    _bench(benchmark, "task fwd+bwd (mobilenet_v2)", run)


def test_bench_full_step(benchmark, parts, tmp_path_factory):
    """The loop's own step; the codec time inside it is measured by wrapping roundtrip."""
    from npp_plugin.proxy import save_proxies
    from npp_plugin.training import npp_stage
    from npp_plugin.training.config import TrainConfig
    from npp_plugin.training.data import Batches, BuiltinPhotos
    from npp_plugin.training.ddp import DistInfo

    codec, net = parts["codec"], parts["net"]
    out = tmp_path_factory.mktemp("bench")
    save_proxies(out / "p.pt", {QP: parts["proxy"]})
    cfg = TrainConfig(stage="npp-qa", out=str(out), codec=codec.name, qps=[QP], size=SIZE, batch_size=BATCH,
                      progress=False, lambda_mode="paper")
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    batches = Batches(BuiltinPhotos("train"), size=SIZE, batch_size=BATCH, seed=0)
    state = npp_stage.NppTrainState(cfg=cfg, dist=DistInfo(), net=net, model=net, opt=opt, batches=batches,
                                    task=parts["task"], codec=codec, proxies={QP: parts["proxy"]},
                                    lambdas={QP: 2.0}, workers=None, device=torch.device("cpu"))
    spent: list[float] = []
    real_roundtrip = codec.roundtrip

    def timed_roundtrip(*a, **k):
        t = time.perf_counter()
        try:
            return real_roundtrip(*a, **k)
        finally:
            spent[-1] += time.perf_counter() - t

    codec.roundtrip = timed_roundtrip  # instance attribute: only this benchmark's codec
    step = [0]

    def run():
        spent.append(0.0)
        npp_stage.train_step(state, step[0], lr=1e-4)
        step[0] += 1

    try:
        _bench(benchmark, "full step", run)
    finally:
        del codec.roundtrip
    share = statistics.median(spent[1:]) / _MEDIANS["full step"]
    _MEDIANS["codec share of step (2 roundtrips: NPP + plain diagnostic)"] = share
    benchmark.extra_info.update({"codec_share": share, "steps_per_hour": 3600 / _MEDIANS["full step"]})


def test_bench_surrogate(benchmark, parts):
    """The analytic stand-in's own cost (sqlog rate model + codec-masked Jacobian, forward and
    backward, the real round trip excluded): what replaces the proxy network."""
    from npp_plugin.surrogates import distortion_surrogate, rate_model

    x, codec = parts["x"], parts["codec"]
    real, _ = codec.roundtrip(x, qp=QP)
    step = codec.quant_step(QP)

    def run():
        xb = x.clone().requires_grad_(True)
        (rate_model(xb, step=step, kind="sqlog").sum()
         + distortion_surrogate(xb, real, step=step, kind="masked").sum()).backward()

    _bench(benchmark, "analytic surrogate fwd+bwd (sqlog + masked)", run)


def test_bench_full_step_analytic(benchmark, parts, tmp_path_factory):
    """The loop's own step with the analytic surrogate in place of the proxy network."""
    from npp_plugin.training import npp_stage
    from npp_plugin.training.config import TrainConfig
    from npp_plugin.training.data import Batches, BuiltinPhotos
    from npp_plugin.training.ddp import DistInfo

    codec, net = parts["codec"], parts["net"]
    cfg = TrainConfig(stage="npp-qa", out=str(tmp_path_factory.mktemp("bench-a")), codec=codec.name, qps=[QP],
                      size=SIZE, batch_size=BATCH, progress=False, lambda_mode="paper", surrogate="sqlog")
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    batches = Batches(BuiltinPhotos("train"), size=SIZE, batch_size=BATCH, seed=0)
    state = npp_stage.NppTrainState(cfg=cfg, dist=DistInfo(), net=net, model=net, opt=opt, batches=batches,
                                    task=parts["task"], codec=codec, proxies={}, lambdas={QP: 2.0}, workers=None,
                                    device=torch.device("cpu"))
    step = [0]

    def run():
        npp_stage.train_step(state, step[0], lr=1e-4)
        step[0] += 1

    _bench(benchmark, "full step, analytic surrogate", run)
    if "full step" in _MEDIANS:
        _MEDIANS["step time ratio, analytic / learned proxy"] = _MEDIANS["full step, analytic surrogate"] / \
            _MEDIANS["full step"]


def _cli_tools() -> tuple[str, str] | None:
    for folder in (ROOT / "npp_plugin" / "_native", ROOT / "native", ROOT / "native" / "build"):
        enc, dec = folder / "npp-bpgenc", folder / "npp-bpgdec"
        if enc.is_file() and dec.is_file() and os.access(enc, os.X_OK):
            return str(enc), str(dec)
    enc, dec = shutil.which("bpgenc"), shutil.which("bpgdec")
    return (enc, dec) if enc and dec else None


@pytest.mark.parametrize("level", ["same", "8"], ids=["same-settings", "level8"])
def test_bench_paper_route(benchmark, parts, level):
    """bpgenc + bpgdec as a subprocess pair per image, serially, PNG in and out: with the
    in-process codec's settings (x265 ultrafast: only the process/file route differs), and
    at bpgenc's default level 8 (what the paper's route runs)."""
    tools = _cli_tools()
    if tools is None:
        pytest.skip("BPG command-line tools (npp-bpgenc/npp-bpgdec from native/, or bpgenc/bpgdec) not found")
    if parts["codec"].name != "bpg":
        pytest.skip(f"the paper's route is BPG; the in-process codec here is {parts['codec'].name!r}")
    from PIL import Image

    enc, dec = tools
    flags = ["-fast"] if level == "same" else ["-m", "8"]
    arrays = (parts["x"].permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    tmp = Path(tempfile.mkdtemp(prefix="npp-bench-"))

    def run():
        for i, a in enumerate(arrays):
            png, bpg, outp = tmp / f"{i}.png", tmp / f"{i}.bpg", tmp / f"{i}.out.png"
            Image.fromarray(a).save(png)
            subprocess.run([enc, "-q", str(QP), *flags, "-o", str(bpg), str(png)], check=True, capture_output=True)
            subprocess.run([dec, "-o", str(outp), str(bpg)], check=True, capture_output=True)
            np.asarray(Image.open(outp).convert("RGB"))

    key = f"paper route: CLI bpgenc+bpgdec per image ({'-fast' if level == 'same' else 'level 8'})"
    try:
        _bench(benchmark, key, run, rounds=5)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if "full step" in _MEDIANS:
        route = _MEDIANS[key]
        in_proc = _MEDIANS[next(k for k in _MEDIANS if k.startswith("codec roundtrip"))]
        benchmark.extra_info["roundtrip_ratio_paper_route_over_ours"] = route / in_proc
        # the paper's route in place of our in-process round trips (two per step)
        step_paper = _MEDIANS["full step"] - 2 * in_proc + 2 * route
        _MEDIANS[f"step time ratio, paper route / ours ({'-fast' if level == 'same' else 'level 8'})"] = (
            step_paper / _MEDIANS["full step"])


def _report() -> None:
    if not _MEDIANS:
        return
    full = _MEDIANS.get("full step")
    print("\n\ntraining step split (medians; batch 4 × 128², 1 thread)")  # noqa: T201
    for key, value in _MEDIANS.items():
        if key.startswith(("codec share", "step time ratio")):
            print(f"  {key:62s} {value:8.3f}")  # noqa: T201
        else:
            share = f"{value / full:7.1%}" if full else ""
            print(f"  {key:62s} {value * 1000:8.1f} ms {share}")  # noqa: T201
