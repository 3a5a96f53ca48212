"""Bad input, for every codec: a typed error naming the codec, the argument and what is allowed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import npp_plugin
from npp_plugin.errors import (
    CodecError,
    CorruptStreamError,
    InvalidArgumentError,
    NppError,
    ShapeError,
    UnknownCodecError,
    UnknownPreprocessorError,
)

from .conftest import CODECS, require_codec


@pytest.fixture(params=CODECS)
def codec(request):
    return require_codec(request.param)


@pytest.fixture
def img(photo):
    return np.ascontiguousarray(photo[:64, :96])


def test_wrong_dtype(codec, img):
    with pytest.raises(InvalidArgumentError, match=f"{codec.name}.*dtype float32.*uint8") as e:
        codec.encode(img.astype(np.float32), qp=30)
    assert e.value.codec == codec.name and e.value.argument == "image"


@pytest.mark.parametrize("shape", [(64, 96, 4), (3, 64, 96), (64, 96, 2), (2, 64, 96, 3)])
def test_wrong_shape(codec, shape):
    with pytest.raises(ShapeError, match=codec.name) as e:
        codec.encode(np.zeros(shape, np.uint8), qp=30)
    assert e.value.actual_shape == shape


def test_alpha_channel_is_refused_with_hint(codec, img):
    with pytest.raises(ShapeError, match=r"alpha"):
        codec.encode(np.dstack([img, np.full(img.shape[:2], 255, np.uint8)]), qp=30)
    with pytest.raises(InvalidArgumentError, match=r"RGBA.*convert\('RGB'\)"):
        codec.encode(Image.fromarray(img).convert("RGBA"), qp=30)


def test_grayscale_is_converted(codec, img):
    gray = np.ascontiguousarray(img[:, :, 1])
    data = codec.encode(gray, qp=30)
    assert data == codec.encode(np.dstack([gray] * 3), qp=30)
    assert codec.encode(Image.fromarray(gray, "L"), qp=30) == data
    assert codec.encode(gray[:, :, None], qp=30) == data


@pytest.mark.parametrize("shape", [(0, 64, 3), (64, 0, 3), (0, 0)])
def test_zero_size(codec, shape):
    with pytest.raises(ShapeError, match="zero size"):
        codec.encode(np.zeros(shape, np.uint8), qp=30)


def test_tensor_value_range_and_nan(codec, img):
    t = torch.from_numpy(img).permute(2, 0, 1).float() / 255
    with pytest.raises(InvalidArgumentError, match=r"span \[.*\]; expected \[0, 1\]"):
        codec.encode(t * 2, qp=30)
    with pytest.raises(InvalidArgumentError, match=r"span"):
        codec.encode(t - 0.5, qp=30)
    bad = t.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(InvalidArgumentError, match="NaN"):
        codec.encode(bad, qp=30)
    with pytest.raises(InvalidArgumentError, match="dtype torch.uint8"):
        codec.encode((t * 255).to(torch.uint8), qp=30)
    with pytest.raises(ShapeError, match=r"\(3, H, W\)"):
        codec.encode(t.permute(1, 2, 0), qp=30)


def test_qp_out_of_range(codec, img):
    lo, hi = codec.qp_range
    for qp in (lo - 1, hi + 1):
        with pytest.raises(InvalidArgumentError, match=rf"{codec.name}: qp={qp} is out of range {lo}\.\.{hi}") as e:
            codec.encode(img, qp=qp)
        assert e.value.argument == "qp" and e.value.allowed == (lo, hi)
    for qp in (30.5, "30", True, None):
        with pytest.raises(InvalidArgumentError, match="qp must be an integer"):
            codec.encode(img, qp=qp)


def test_unknown_and_bad_options(codec, img):
    with pytest.raises(InvalidArgumentError, match=f"{codec.name}: unknown option 'bogus'"):
        codec.encode(img, qp=30, bogus=1)
    with pytest.raises(InvalidArgumentError, match="unknown option"):
        type(codec)(bogus=1)
    choice = next((k for k, p in codec.params.items() if p.choices), None)
    if choice:
        with pytest.raises(InvalidArgumentError, match=f"{choice}='nope' is not allowed; choose"):
            codec.encode(img, qp=30, **{choice: "nope"})


def test_unknown_codec_and_preprocessor(img):
    with pytest.raises(UnknownCodecError, match="unknown codec 'nope'; available: .*jpeg"):
        npp_plugin.get_codec("nope")
    with pytest.raises(UnknownPreprocessorError, match="unknown preprocessor 'nope'"):
        npp_plugin.get_codec("jpeg").encode(img, qp=30, preprocess="nope")
    assert isinstance(UnknownCodecError("x", []), KeyError)


def test_unsupported_object(codec):
    with pytest.raises(InvalidArgumentError, match="cannot encode an object of type list"):
        codec.encode([[1, 2, 3]], qp=30)


def test_truncated_and_corrupt_streams(codec, img):
    data = codec.encode(img, qp=30)
    with pytest.raises(CorruptStreamError, match="empty"):
        codec.decode(b"")
    with pytest.raises(CorruptStreamError, match=f"not a {codec.name} bitstream"):
        codec.decode(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(InvalidArgumentError, match="data must be bytes"):
        codec.decode("abc")
    for cut in (len(data) // 2, 8, len(data) // 8):
        with pytest.raises(CodecError):
            codec.decode(data[:cut])


def test_errors_share_one_base():
    for cls in (CodecError, CorruptStreamError, InvalidArgumentError, ShapeError, UnknownCodecError):
        assert issubclass(cls, NppError)
