"""Test-only codec and task for the evaluation tests (plus checks that they behave).

``ZlibQuantCodec`` quantises pixels with a step that doubles every 6 QP and zlib-compresses
them: a real lossless-after-quantisation codec with a true bitstream, monotone in QP.
``TinyClassifier`` is a fixed random-weight CNN (seeded) implementing the real ``Task``
interface, with ``logits``/``net`` like the built-in classifiers (GradCAM uses them).
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from npp_plugin import Codec
from npp_plugin.tasks import Task


class ZlibQuantCodec(Codec):
    name = "zq"
    qp_range = (0, 51)
    params: dict = {}

    def _encode(self, rgb, /, *, qp):
        step = 2.0 ** (qp / 6.0)
        q = np.clip(np.round(rgb / step), 0, 65535).astype(np.uint16)
        h, w = rgb.shape[:2]
        return b"ZQ" + struct.pack("<HHB", h, w, qp) + zlib.compress(q.tobytes(), 6)

    def _decode(self, data, /, *, high_bit_depth):
        h, w, qp = struct.unpack("<HHB", data[2:7])
        q = np.frombuffer(zlib.decompress(data[7:]), dtype=np.uint16).reshape(h, w, 3)
        return np.clip(np.round(q * 2.0 ** (qp / 6.0)), 0, 255).astype(np.uint8)

    @classmethod
    def _check(cls, data):
        return data[:2] == b"ZQ"


class FailingCodec(ZlibQuantCodec):
    """Raises after ``fail_after`` encodes: an interrupted run."""

    name = "zq"

    def __init__(self, fail_after: int) -> None:
        super().__init__()
        self.calls = 0
        self.fail_after = fail_after

    def _encode(self, rgb, /, *, qp):
        self.calls += 1
        if self.calls > self.fail_after:
            msg = "injected failure"
            raise RuntimeError(msg)
        return super()._encode(rgb, qp=qp)


class TinyClassifier(Task):
    name = "tiny"
    kind = "classification"

    def __init__(self, classes: int = 10, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, classes),
        )
        with torch.no_grad():
            for p in self.net.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        self.net.eval().requires_grad_(False)
        self.classes = classes

    def logits(self, batch):
        return self.net((batch - 0.5) * 4.0)

    def reference(self, batch):
        with torch.no_grad():
            return self.logits(batch).softmax(1)

    def loss(self, batch, target, *, reduction="mean"):
        logp = self.logits(batch).log_softmax(1)
        per = F.nll_loss(logp, target, reduction="none") if target.dtype == torch.int64 else (
            torch.special.xlogy(target, target) - target * logp).sum(1)
        return per.mean() if reduction == "mean" else per

    def score(self, batch, target):
        with torch.no_grad():
            pred = self.logits(batch).argmax(1)
        labels = target if target.dtype == torch.int64 else target.argmax(1)
        return (pred == labels).float()


def test_zlib_codec_roundtrip_and_rate_monotone():
    """Assert the test codec is lossless at QP 0 and spends fewer bytes as QP grows."""
    rng = np.random.default_rng(0)
    img = (rng.random((32, 40, 3)) * 255).astype(np.uint8)
    c = ZlibQuantCodec()
    assert np.array_equal(c.decode(c.encode(img, qp=0)), img)
    sizes = [len(c.encode(img, qp=q)) for q in (6, 18, 30, 42)]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > sizes[-1]


def test_tiny_classifier_is_deterministic_and_self_consistent():
    """Assert the fixture task agrees with itself on uncompressed images and is seeded."""
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    a, b = TinyClassifier(), TinyClassifier()
    assert torch.equal(a.reference(x), b.reference(x))
    assert a.score(x, a.reference(x)).tolist() == [1.0] * 4
    assert a.loss(x, a.reference(x)).item() == pytest.approx(0.0, abs=1e-5)
