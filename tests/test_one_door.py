"""One door: ``Codec.roundtrip`` / ``Codec.encode`` take the preprocessor, filter in float and
round to 8 bits once; evaluation and calibration code their images through ``roundtrip``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from npp_plugin import Preprocessor, get_codec
from npp_plugin.codecs.bpg import BpgCodec
from npp_plugin.errors import UnknownPreprocessorError
from npp_plugin.evaluation import SweepSpec, calibrate, folder_images, run_sweep
from npp_plugin.evaluation.store import RowStore
from npp_plugin.images import tensor_batch_to_uint8
from npp_plugin.preprocessors.filters import GaussianBlur
from tests.test_eval_fixtures import TinyClassifier, ZlibQuantCodec


class Brighten(Preprocessor):
    """Depends on the QP (adds qp/255): not codec-independent. Counts its calls."""

    name = "brighten"

    def __init__(self) -> None:
        self.calls = 0

    def forward(self, batch, *, codec, qp):
        self.calls += 1
        return batch + qp / 255.0


class CountingBlur(GaussianBlur):
    """A codec-independent filter that counts its calls."""

    def __init__(self) -> None:
        super().__init__(1.0)
        self.calls = 0

    def forward(self, batch, *, codec, qp):
        self.calls += 1
        return super().forward(batch, codec=codec, qp=qp)


class DoorOnlyCodec(ZlibQuantCodec):
    """A codec whose single-image ``encode`` / ``decode`` fail: only ``roundtrip`` works."""

    name = "zqdoor"

    def __init__(self) -> None:
        super().__init__()
        self.batches = 0

    def encode(self, image, /, **kw):
        msg = "evaluation must code through roundtrip, not encode"
        raise AssertionError(msg)

    def decode(self, data, /, **kw):
        msg = "evaluation must code through roundtrip, not decode"
        raise AssertionError(msg)

    def _roundtrip_tensor(self, batch, qp, opts, workers, **kw):
        self.batches += 1
        return super()._roundtrip_tensor(batch, qp, opts, workers, **kw)


def _codecs():
    out = [ZlibQuantCodec()]
    if BpgCodec.is_available():
        out.append(BpgCodec(fast=True))
    return out


@pytest.mark.parametrize("codec", _codecs(), ids=lambda c: c.name)
def test_roundtrip_with_a_preprocessor_is_the_preprocessor_then_the_codec(codec):
    """Assert ``roundtrip(x, preprocess=p)`` gives exactly ``roundtrip(p(x))`` (pixels and
    bits), by name or by instance, with the batch's dtype kept, and that an unknown name is
    refused before anything is coded."""
    x = torch.rand(3, 3, 40, 56, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    blur = GaussianBlur(1.0)
    with torch.inference_mode():
        xp = blur(x, codec=codec, qp=30)
    r0, b0 = codec.roundtrip(xp, qp=30, workers=2)
    for prep in (blur, "blur10"):
        r1, b1 = codec.roundtrip(x, qp=30, preprocess=prep, workers=2)
        assert torch.equal(r0, r1) and torch.equal(b0, b1)
        assert r1.dtype == torch.float64 and r1.shape == x.shape
    plain, bits = codec.roundtrip(x, qp=30, workers=2)
    assert float(bits.sum()) > float(b0.sum())  # the blur saved bits: it was applied
    with pytest.raises(UnknownPreprocessorError):
        codec.roundtrip(x, qp=30, preprocess="no_such_filter")


def test_encode_rounds_a_float_tensor_once():
    """Assert ``encode(tensor, preprocess=p)`` codes round(p(x)), not the old
    round(p(round(x))): on a lossless setting the decoded pixels are exactly the filter's
    output of the float image rounded once, and they differ from the double-rounded route."""
    codec = ZlibQuantCodec()  # qp 0: step 1, lossless on uint8
    x = torch.rand(3, 24, 32, generator=torch.Generator().manual_seed(1))
    blur = GaussianBlur(0.7)
    with torch.inference_mode():
        once = tensor_batch_to_uint8(blur(x[None], codec=codec, qp=0))[0]
        x8 = torch.from_numpy(tensor_batch_to_uint8(x[None])[0]).permute(2, 0, 1).float() / 255
        twice = tensor_batch_to_uint8(blur(x8[None], codec=codec, qp=0))[0]
    got = codec.decode(codec.encode(x, qp=0, preprocess=blur))
    assert np.array_equal(got, once)
    assert not np.array_equal(got, twice)
    # uint8 input: the same path (exact in float), so encode and roundtrip agree
    rgb = once
    data = codec.encode(rgb, qp=12, preprocess=blur)
    recon, bits = codec.roundtrip(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255, qp=12,
                                  preprocess=blur)
    assert bits.tolist() == [8.0 * len(data)]
    assert np.array_equal(tensor_batch_to_uint8(recon)[0], codec.decode(data))


def test_preprocessor_output_is_checked_before_coding():
    """Assert a preprocessor that returns NaN is refused with an error naming it, not coded."""

    class Broken(Preprocessor):
        name = "broken"

        def forward(self, batch, *, codec, qp):
            return batch * float("nan")

    with pytest.raises(Exception, match="broken"):
        ZlibQuantCodec().roundtrip(torch.rand(1, 3, 8, 8), qp=10, preprocess=Broken())


def test_codec_independence_is_part_of_the_contract():
    """Assert the base class declares ``codec_independent`` (False: promises nothing) and the
    fixed filters set it, while the QP-dependent ones do not."""
    assert Preprocessor.codec_independent is False
    assert "codec_independent" in Preprocessor.__doc__
    assert GaussianBlur.codec_independent and not Brighten.codec_independent
    from npp_plugin.preprocessors.filters import TunedBlur
    from npp_plugin.preprocessors.hook import NppPreprocessor

    assert not TunedBlur.codec_independent and not NppPreprocessor.codec_independent


def test_the_sweep_and_the_calibration_code_through_roundtrip(tmp_path):
    """Assert evaluation never calls encode/decode (only the batch door), a codec-independent
    variant is filtered once per batch and reused at every codec and QP, and a QP-dependent
    one once per unit."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(tmp_path / f"i{i}.png")
    images = folder_images(tmp_path)
    door, door2 = DoorOnlyCodec(), DoorOnlyCodec()
    blur, bright = CountingBlur(), Brighten()
    spec = SweepSpec.with_qps({"a": door, "b": door2}, {"plain": None, "blur": blur, "bright": bright},
                              {"tiny": TinyClassifier()}, [10, 20], metrics=("psnr",))
    stats = run_sweep(images, spec, tmp_path / "out", batch_size=2)
    rows = [r for r in RowStore(tmp_path / "out" / "rows.jsonl").load() if r["kind"] == "coded"]
    assert len(rows) == 4 * 2 * 2 * 3 == stats.computed - 4
    assert door.batches == door2.batches == 2 * 2 * 3  # 2 batches x 2 QPs x 3 variants
    assert blur.calls == 2  # once per batch of images, for both codecs and both QPs
    assert bright.calls == 2 * 2 * 2  # per batch, codec and QP
    cal = calibrate(images, DoorOnlyCodec(), TinyClassifier(), grid=[0, 20, 40], max_images=4, batch_size=4)
    assert cal.grid == [0, 20, 40] and len(cal.scores) == 3


def test_bpg_evaluation_takes_the_native_batch_route(tmp_path, monkeypatch):
    """Assert a BPG sweep codes each unit in one ``npp_bpg_roundtrip_batch`` call."""
    if not BpgCodec.is_available():
        pytest.skip(BpgCodec.unavailable_reason())
    from PIL import Image

    from npp_plugin._native import binding as _lib

    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray((rng.random((32, 48, 3)) * 255).astype(np.uint8)).save(tmp_path / f"i{i}.png")
    lib = _lib.get_lib()
    calls = []
    real = lib.npp_bpg_roundtrip_batch

    class Spy:
        def __call__(self, *args):
            calls.append(args[4])  # n, the batch size
            return real(*args)

    monkeypatch.setattr(lib, "npp_bpg_roundtrip_batch", Spy())
    codec = get_codec("bpg", fast=True)
    spec = SweepSpec.with_qps({"bpg": codec}, {"plain": None, "blur05": GaussianBlur(0.5)},
                              {"tiny": TinyClassifier()}, [30, 40], metrics=("psnr",))
    run_sweep(folder_images(tmp_path), spec, tmp_path / "out", batch_size=8)
    assert calls == [3, 3, 3, 3]  # 2 QPs x 2 variants, all three images per call
