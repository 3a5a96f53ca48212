"""The Pillow bridge: Image.open / Image.save for .bpg after register_bpg_opener()."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import npp_plugin
from npp_plugin.codecs.bpg import BpgCodec
from npp_plugin.errors import CorruptStreamError, InvalidArgumentError

from .conftest import SHARED, psnr

pytestmark = pytest.mark.skipif(
    not BpgCodec.is_available(), reason=f"libnpp_bpg unavailable: {BpgCodec.unavailable_reason()}"
)


@pytest.fixture(autouse=True)
def _registered():
    npp_plugin.register_bpg_opener()
    npp_plugin.register_bpg_opener()  # idempotent


def test_save_and_open_round_trip(tmp_path, photo):
    path = tmp_path / "x.bpg"
    Image.fromarray(photo).save(path, qp=30, level=3)
    assert path.read_bytes()[:4] == b"BPG\xfb"
    assert path.read_bytes() == BpgCodec(level=3).encode(photo, qp=30)
    with Image.open(path) as im:
        assert im.format == "BPG" and im.mode == "RGB" and im.size == (256, 256)
        assert im.info["bpg"]["chroma"] == "420"
        rgb = np.asarray(im)
    assert np.array_equal(rgb, BpgCodec().decode(path.read_bytes()))
    assert psnr(photo, rgb) > 33


def test_default_qp_is_bpgencs_and_format_is_found_by_extension(photo):
    buf = io.BytesIO()
    Image.fromarray(photo[:64, :64]).save(buf, format="BPG")
    assert buf.getvalue() == BpgCodec().encode(photo[:64, :64], qp=29)
    assert Image.registered_extensions()[".bpg"] == "BPG"
    assert Image.MIME["BPG"] == "image/bpg"


def test_grayscale_images_are_stored_as_gray(tmp_path, photo):
    gray = Image.fromarray(photo).convert("L")
    gray.save(tmp_path / "g.bpg", qp=25)
    with Image.open(tmp_path / "g.bpg") as im:
        assert im.mode == "L" and im.info["bpg"]["chroma"] == "gray"
        assert psnr(np.asarray(gray), np.asarray(im)) > 35


def test_bad_options_and_files_raise_typed_errors(tmp_path, photo):
    with pytest.raises(InvalidArgumentError):
        Image.fromarray(photo).save(tmp_path / "bad.bpg", qp=99)
    (tmp_path / "trunc.bpg").write_bytes(b"BPG\xfb\x20\x00")
    with pytest.raises(CorruptStreamError):
        Image.open(tmp_path / "trunc.bpg")


@pytest.mark.skipif(not (SHARED / "conformance" / "bpg").is_dir(), reason="../shared not found")
def test_open_reference_file_matches_bpgdec():
    base = SHARED / "conformance" / "bpg"
    with Image.open(base / "bpg" / "chelsea_full_q34.bpg") as im:
        ours = np.asarray(im)
    ref = np.asarray(Image.open(base / "dec" / "chelsea_full_q34.png").convert("RGB"))
    assert np.array_equal(ours, ref)
