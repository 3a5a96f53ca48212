# SPDX-License-Identifier: GPL-2.0-or-later
"""What the distilled NPP costs at the encoder, and what a distillation step costs.

Run:
    pytest tests/benchmarks/test_bench_distil.py --benchmark-only

Encode (BPG level 8, QP 34, ``codec.encode(img, preprocess=...)``, one group per size, 224² and
1 MP): the plain codec, ``blur_tuned``, and the distilled student (the NPP network of
``npp distil``'s default recipe behind the tuned blur; the time does not depend on the weight
values, so a fresh student stands in when no trained one is given). Training: one
``npp distil`` step (batch 8, 128² crops, forward + backward + Adam). The ratios to plain and
to ``blur_tuned`` are printed at the end; compare medians within one run. Torch uses
``$NPP_BENCH_THREADS`` threads (default 1).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import npp_plugin  # noqa: E402
from npp_plugin.preprocessors.hook import NppPreprocessor  # noqa: E402
from npp_plugin.training.distil import DistilSettings, student_net  # noqa: E402

from ._session import benchmark_session  # noqa: E402

SIZES = {"224": 224, "1MP": 1024}
VARIANTS = ("plain", "blur_tuned", "npp_distil")
_MEDIANS: dict[tuple[str, str], float] = {}


@pytest.fixture(autouse=True, scope="module")
def _only_when_benchmarking(request):
    with benchmark_session(request, "test_bench_distil.py"):
        yield
    rows = []
    for size in SIZES:
        m = {v: _MEDIANS.get((size, v)) for v in VARIANTS}
        if all(m.values()):
            rows.append(f"  {size:>4}: plain {m['plain'] * 1e3:7.1f} ms, blur_tuned {m['blur_tuned'] * 1e3:7.1f} ms, "
                        f"npp (distilled) {m['npp_distil'] * 1e3:7.1f} ms = {m['npp_distil'] / m['blur_tuned']:.2f}x "
                        f"blur_tuned, {m['npp_distil'] / m['plain']:.2f}x plain")
    step = _MEDIANS.get(("train", "step"))
    if step:
        rows.append(f"  distil step (batch 8, 128²): {step * 1e3:.0f} ms")
    if rows:
        print("\nencode time, BPG level 8, QP 34 (medians):\n" + "\n".join(rows))


def _image(photo, side: int):
    """The fixture's crop at 224²; a whole built-in photo resized to 1024² for 1 MP."""
    import numpy as np
    from PIL import Image

    from npp_plugin.datasets import builtin_photos, load_rgb

    if side <= photo.shape[0]:
        return np.ascontiguousarray(photo[:side, :side])
    big = max(builtin_photos(), key=lambda p: min(load_rgb(p).shape[:2]))
    return np.asarray(Image.fromarray(load_rgb(big)).resize((side, side), Image.BICUBIC))


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("variant", VARIANTS)
def test_encode(benchmark, photo, size, variant):
    codec = npp_plugin.get_codec("bpg")
    img = _image(photo, SIZES[size])
    if variant == "plain":
        prep = None
    elif variant == "npp_distil":
        prep = NppPreprocessor(student_net(DistilSettings(), codec))
    else:
        prep = npp_plugin.get_preprocessor(variant)
    codec.encode(img, qp=34, preprocess=prep)  # warm-up
    benchmark.group = f"encode-{size}-qp34-bpg"
    data = benchmark.pedantic(codec.encode, args=(img,), kwargs={"qp": 34, "preprocess": prep},
                              rounds=5 if size == "224" else 3, iterations=1)
    _MEDIANS[(size, variant)] = benchmark.stats.stats.median
    assert codec.decode(data).shape == img.shape


def test_distil_step(benchmark):
    codec = npp_plugin.get_codec("bpg")
    net = student_net(DistilSettings(), codec).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.rand(8, 3, 128, 128)
    y = (x + 0.01 * torch.randn_like(x)).clamp(0, 1)
    q = torch.full((8,), 34 / 51)

    def step():
        loss = ((net(x, q) - y) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    step()
    benchmark.group = "distil-step"
    benchmark.pedantic(step, rounds=5, iterations=1)
    _MEDIANS[("train", "step")] = benchmark.stats.stats.median
