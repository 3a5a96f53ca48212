"""Round trips of every registered codec on a real photo: PSNR bands, bitstream format, batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import npp_plugin
from npp_plugin.errors import CodecUnavailableError

from .conftest import CODECS, psnr
from .conftest import require_codec as _codec

# (qp, lowest acceptable PSNR, highest plausible PSNR) on the astronaut crop
BANDS = {28: (30.0, 45.0), 37: (24.0, 36.0)}


@pytest.mark.parametrize("name", CODECS)
@pytest.mark.parametrize("qp", sorted(BANDS))
def test_roundtrip_psnr_band(name, qp, photo):
    codec = _codec(name)
    data = codec.encode(photo, qp=qp)
    assert codec.check(data)
    rec = codec.decode(data)
    assert rec.shape == photo.shape and rec.dtype == np.uint8
    lo, hi = BANDS[qp]
    assert lo < psnr(photo, rec) < hi


@pytest.mark.parametrize("name", CODECS)
def test_lower_qp_costs_more_bits_and_gives_higher_psnr(name, photo):
    codec = _codec(name)
    a, b = codec.encode(photo, qp=27), codec.encode(photo, qp=39)
    assert len(a) > 1.5 * len(b)
    assert psnr(photo, codec.decode(a)) > psnr(photo, codec.decode(b)) + 2


def test_bitstream_formats(photo):
    magic = {"jpeg": lambda d: d[:3] == b"\xff\xd8\xff",
             "heif": lambda d: d[4:12] == b"ftypheic",
             "vvc": lambda d: d[:4] == b"\x00\x00\x00\x01" and (d[5] >> 3) in (12, 13, 14, 15, 20),
             "bpg": lambda d: d[:4] == b"BPG\xfb"}
    seen = 0
    for name, ok in magic.items():
        if name in npp_plugin.available_codecs() and npp_plugin.get_codec(name).is_available():
            data = npp_plugin.get_codec(name).encode(photo, qp=34)
            assert ok(data), f"{name} stream starts {data[:12].hex()}"
            # exactly one codec claims each stream
            claim = [c for c in npp_plugin.available_codecs() if npp_plugin.get_codec(c).check(data)]
            assert claim == [name]
            seen += 1
    assert seen >= 3


def test_jpeg_chroma_option_changes_the_stream(photo):
    codec = _codec("jpeg")
    d420 = codec.encode(photo, qp=30)
    d444 = codec.encode(photo, qp=30, chroma="444")
    assert codec.info(d420)["chroma"] == "420"
    assert codec.info(d444)["chroma"] == "444"
    assert len(d444) > len(d420)
    assert npp_plugin.get_codec("jpeg", chroma="444").encode(photo, qp=30) == d444


def test_jpeg_qp_to_quality_is_monotone():
    from npp_jpeg import qp_to_quality

    q = [qp_to_quality(qp) for qp in range(52)]
    assert all(a >= b for a, b in zip(q, q[1:], strict=False))
    assert q[30] == 50 and q[24] == 75 and q[0] >= 95 and q[51] <= 5


def test_heif_chroma_444_is_larger(photo):
    codec = _codec("heif")
    assert len(codec.encode(photo, qp=30, chroma="444")) > len(codec.encode(photo, qp=30))


def test_vvc_uses_its_qp_range(photo):
    codec = _codec("vvc")
    assert codec.qp_range == (0, 63)
    assert len(codec.encode(photo, qp=55)) < len(codec.encode(photo, qp=40))
    assert codec.info(codec.encode(photo, qp=40))["width"] == photo.shape[1]


@pytest.mark.parametrize("name", CODECS)
def test_roundtrip_batch_matches_single_calls(name, photo):
    codec = _codec(name)
    imgs = [photo[:128, :128], photo[128:, 128:], photo[:128, 128:]]
    batch = torch.stack([torch.from_numpy(np.ascontiguousarray(i)).permute(2, 0, 1).float() / 255 for i in imgs])
    recon, bits = codec.roundtrip(batch, qp=34)
    assert recon.shape == batch.shape and recon.dtype == batch.dtype
    assert bits.dtype == torch.float64 and bits.shape == (3,)
    for k, img in enumerate(imgs):
        data = codec.encode(img, qp=34)
        assert bits[k].item() == 8 * len(data)
        ref = torch.from_numpy(codec.decode(data)).permute(2, 0, 1).float() / 255
        assert torch.equal(recon[k], ref)


@pytest.mark.parametrize("name", CODECS)
def test_input_kinds_give_the_same_stream(name, photo):
    from PIL import Image

    codec = _codec(name)
    from_np = codec.encode(photo, qp=34)
    assert codec.encode(Image.fromarray(photo), qp=34) == from_np
    t = torch.from_numpy(photo).permute(2, 0, 1).float() / 255
    assert codec.encode(t, qp=34) == from_np
    # non-contiguous views are copied, not refused
    flipped = photo[:, ::-1]
    assert not flipped.flags.c_contiguous
    assert codec.encode(flipped, qp=34) == codec.encode(np.ascontiguousarray(flipped), qp=34)
    # preprocessed: 8-bit input goes through Preprocessor.filter_uint8, a float tensor as it is
    blurred = codec.encode(t, qp=34, preprocess="blur_tuned")
    assert codec.encode(photo, qp=34, preprocess="blur_tuned") == blurred
    assert codec.encode(Image.fromarray(photo), qp=34, preprocess="blur_tuned") == blurred


def test_config_roundtrip_and_equality():
    codec = npp_plugin.get_codec("jpeg", chroma="444")
    cfg = codec.get_config()
    assert cfg["codec"] == "jpeg" and cfg["chroma"] == "444"
    import json

    again = type(codec).from_config(json.loads(json.dumps(cfg)))
    assert again == codec and hash(again) == hash(codec)
    assert again != npp_plugin.get_codec("jpeg")
    assert "chroma='444'" in repr(codec)


def test_unavailable_backend_raises_typed_error(monkeypatch, photo):
    codec = npp_plugin.get_codec("jpeg")
    monkeypatch.setattr(type(codec), "unavailable_reason", classmethod(lambda cls: "libfoo missing; pip install foo"))
    with pytest.raises(CodecUnavailableError, match="jpeg.*libfoo missing"):
        codec.encode(photo, qp=30)


@pytest.mark.parametrize("name", CODECS)
def test_roundtrip_can_return_the_decoded_8_bit_samples(name, photo):
    """``dtype=torch.uint8``: the decoded samples themselves, the float route's values × 255
    exactly, the same bits; any other non-float dtype is refused by name."""
    codec = _codec(name)
    batch = torch.from_numpy(np.ascontiguousarray(photo[:96, :128])).permute(2, 0, 1)[None].float() / 255
    recon, bits = codec.roundtrip(batch, qp=34)
    samples, bits8 = codec.roundtrip(batch, qp=34, dtype=torch.uint8)
    assert samples.dtype == torch.uint8 and samples.shape == batch.shape
    assert torch.equal(bits8, bits)
    assert torch.equal(samples.float() / 255, recon)
    with pytest.raises(npp_plugin.errors.InvalidArgumentError, match="dtype") as err:
        codec.roundtrip(batch, qp=34, dtype=torch.int16)
    assert err.value.argument == "dtype"
