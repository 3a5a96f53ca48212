"""Unit tests of the in-process BPG codec: options, header info, round trips, the ctypes
loader, and the C pixel arithmetic against FORMAT.md's worked examples."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import npp_plugin
from npp_plugin.codecs.bpg import BpgCodec
from npp_plugin.errors import (
    CodecUnavailableError,
    CorruptStreamError,
    InvalidArgumentError,
    NativeLibraryError,
)

from .conftest import ROOT, psnr

pytestmark = pytest.mark.skipif(
    not BpgCodec.is_available(), reason=f"libnpp_bpg unavailable: {BpgCodec.unavailable_reason()}"
)


@pytest.fixture(scope="module")
def small(photo) -> np.ndarray:
    return np.ascontiguousarray(photo[40:104, 60:140])  # 64 x 80, a real texture


def test_registered_through_the_plugin_hook():
    assert "bpg" in npp_plugin.available_codecs()
    codec = npp_plugin.get_codec("bpg")
    assert isinstance(codec, BpgCodec)
    assert codec.get_config()["level"] == 8 and codec.get_config()["chroma"] == "420"
    assert "x265" in codec.version() and "libde265" in codec.version()
    assert BpgCodec.from_config(npp_plugin.get_codec("bpg", fast=True).get_config()) == BpgCodec(fast=True)


def test_default_stream_layout(small):
    data = BpgCodec().encode(small, qp=30)
    assert data[:4] == b"BPG\xfb"
    assert data[4] == 0x20 and data[5] == 0x00  # 4:2:0, 8 bit, YCbCr BT.601, full range
    assert data[6:9] == bytes([80, 64, 0])  # ue7 width, height, picture_data_length 0
    info = BpgCodec().info(data)
    assert (info["width"], info["height"], info["bytes"]) == (80, 64, len(data))
    # compact header of level 8 = bpgenc -m 8 (FORMAT.md section 8): 92 47 40
    assert data[9:13] == bytes.fromhex("03924740")
    # NAL data starts with the PPS header, its start code removed
    assert data[13:15] == bytes.fromhex("4401")


@pytest.mark.parametrize(
    ("options", "chroma", "bit_depth", "color_space"),
    [
        ({}, "420", 8, "ycbcr"),
        ({"chroma": "444"}, "444", 8, "ycbcr"),
        ({"chroma": "422"}, "422", 8, "ycbcr"),
        ({"chroma": "gray"}, "gray", 8, "ycbcr"),
        ({"chroma": "420_video"}, "420_video", 8, "ycbcr"),
        ({"bit_depth": 10}, "420", 10, "ycbcr"),
        ({"bit_depth": 12, "chroma": "444"}, "444", 12, "ycbcr"),
        ({"color_space": "rgb"}, "444", 8, "rgb"),  # -c rgb implies 4:4:4, as bpgenc
        ({"color_space": "ycgco"}, "420", 8, "ycgco"),
        ({"color_space": "ycbcr_bt709", "limited_range": True}, "420", 8, "ycbcr_bt709"),
        ({"lossless": True, "chroma": "420"}, "444", 8, "rgb"),
    ],
)
def test_options_reach_the_header_and_decode(small, options, chroma, bit_depth, color_space):
    codec = BpgCodec(**options)
    data = codec.encode(small, qp=28)
    info = codec.info(data)
    assert (info["chroma"], info["bit_depth"], info["color_space"]) == (chroma, bit_depth, color_space)
    assert info["limited_range"] == options.get("limited_range", False)
    rec = codec.decode(data)
    assert rec.shape == small.shape and rec.dtype == np.uint8
    if chroma == "gray":
        assert (rec[..., 0] == rec[..., 1]).all() and (rec[..., 1] == rec[..., 2]).all()
        luma = small.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        assert psnr(luma, rec[..., 0].astype(np.float64)) > 33
    elif options.get("lossless"):
        assert np.array_equal(rec, small)
    else:
        assert psnr(small, rec) > 33


def test_high_bit_depth_decode_returns_uint16(small):
    codec = BpgCodec(bit_depth=10)
    data = codec.encode(small, qp=30)
    wide = codec.decode(data, high_bit_depth=True)
    narrow = codec.decode(data)
    assert wide.dtype == np.uint16 and narrow.dtype == np.uint8
    # bpgdec -b 16 vs -b 8 of the same planes differ by scaling only (~x257)
    assert np.abs(wide.astype(np.float64) / 257 - narrow).max() <= 1.0
    # an 8-bit stream stays uint8 even when high_bit_depth is asked for
    assert BpgCodec().decode(BpgCodec().encode(small, qp=30), high_bit_depth=True).dtype == np.uint8


def test_lossless_is_exact_on_odd_sizes_and_noise():
    rng = np.random.default_rng(7)
    codec = BpgCodec(lossless=True, level=1)
    for h, w in [(9, 9), (17, 33), (31, 10)]:
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        assert np.array_equal(codec.decode(codec.encode(img, qp=40)), img)


def test_levels_change_effort_and_fast_is_valid_bpg(photo):
    sizes = {lv: len(BpgCodec(level=lv).encode(photo, qp=34)) for lv in (1, 8)}
    fast = BpgCodec(fast=True).encode(photo, qp=34)
    # level 8 (veryslow, RDOQ) packs better than level 1 (superfast)
    assert sizes[8] < sizes[1]
    # level 1 = superfast: CTU 32 -> compact header b9 24 as bpgenc -m 1
    assert BpgCodec(level=1).encode(photo, qp=34)[11:14] == bytes.fromhex("02b924")
    # fast = x265 ultrafast (minimum CU 16): still decodes to a good picture
    assert psnr(photo, BpgCodec().decode(fast)) > 30
    assert len(fast) < 1.5 * sizes[1]


def test_fast_codes_pictures_above_hevc_level_4_1():
    # HEVC forbids 16x16 CTBs above 2228224 luma samples (level >= 5): x265 refused the fast
    # setting's CTU 16 there; such pictures take CTU 32. 1496x1496 rounds up to 2.24 MP.
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    for h, w in [(1496, 1496), (1536, 1600)]:
        img = np.kron(base, np.ones((h // 8 + 1, w // 8 + 1, 1), dtype=np.uint8))[:h, :w]
        data = BpgCodec(fast=True).encode(img, qp=30)
        assert psnr(img, BpgCodec().decode(data)) > 30


def test_qp_option_is_hevc_qp(small):
    codec = BpgCodec(fast=True)
    sizes = [len(codec.encode(small, qp=q)) for q in (10, 25, 40, 51)]
    assert sizes == sorted(sizes, reverse=True)
    with pytest.raises(InvalidArgumentError) as err:
        codec.encode(small, qp=52)
    assert err.value.argument == "qp" and err.value.codec == "bpg"


@pytest.mark.parametrize(
    ("options", "argument"),
    [({"level": 0}, "level"), ({"level": 10}, "level"), ({"bit_depth": 9}, "bit_depth"),
     ({"chroma": "411"}, "chroma"), ({"color_space": "xyz"}, "color_space"),
     ({"fast": 1}, "fast"), ({"speed": 3}, "speed")],
)
def test_bad_options_name_the_argument(options, argument):
    with pytest.raises(InvalidArgumentError) as err:
        BpgCodec(**options)
    assert err.value.argument == argument and err.value.codec == "bpg"


@pytest.mark.parametrize(("field", "value", "argument"),
                         [("qp", 60, "qp"), ("level", 12, "level"), ("bit_depth", 9, "bit_depth"),
                          ("pixel_format", 7, "pixel_format"), ("color_space", 9, "color_space")])
def test_the_library_names_the_argument_as_data(small, field, value, argument):
    """Assert the C library's own argument errors (past the Python checks) name the argument
    through ``npp_bpg_error_argument``, not through the text of the message."""
    from npp_plugin._native import binding as native

    lib = native.get_lib()
    params = BpgCodec(fast=True)._native_params(30, BpgCodec(fast=True).get_config())
    setattr(params, field, value)
    with pytest.raises(InvalidArgumentError, match=f"{field}={value}") as err:
        BpgCodec._encode_raw(lib, small, params)
    assert err.value.argument == argument and err.value.codec == "bpg"
    # a message that names no argument gives None, not a guess
    msg, ref = native.new_errmsg()
    status = lib.npp_bpg_get_info(b"BPG\xfb", 4, ctypes.byref(native.Info()), ref)
    assert status == native.ERR_CORRUPT and native.take_error(lib, msg)[1] is None


def test_gray_with_rgb_color_space_is_refused(small):
    with pytest.raises(InvalidArgumentError, match="gray") as err:
        BpgCodec(chroma="gray", color_space="rgb").encode(small, qp=30)
    assert err.value.argument == "color_space"


def test_pictures_below_nine_pixels_are_refused_clearly():
    with pytest.raises(InvalidArgumentError, match="too small"):
        BpgCodec().encode(np.zeros((8, 40, 3), np.uint8), qp=30)


def test_info_is_header_only_and_rejects_foreign_data(small):
    data = BpgCodec().encode(small, qp=30)
    # the header alone is enough for info(), not for decode()
    head = data[:9]
    assert BpgCodec().info(head)["width"] == 80
    with pytest.raises(CorruptStreamError):
        BpgCodec().decode(head)
    with pytest.raises(CorruptStreamError, match="not a bpg"):
        BpgCodec().info(b"\x89PNG\r\n\x1a\n" + bytes(20))
    assert BpgCodec.check(data) and not BpgCodec.check(b"\xff\xd8\xff")


def test_roundtrip_batch_equals_single_calls(photo):
    codec = BpgCodec(fast=True)
    imgs = [photo[i * 32 : i * 32 + 48, :64] for i in range(5)]
    batch = torch.stack([torch.from_numpy(np.ascontiguousarray(i)).permute(2, 0, 1) / 255.0 for i in imgs])
    for workers in (1, 3):
        recon, bits = codec.roundtrip(batch, qp=33, workers=workers)
        for k, img in enumerate(imgs):
            data = codec.encode(img, qp=33)
            assert bits[k].item() == 8 * len(data)
            ref = torch.from_numpy(codec.decode(data)).permute(2, 0, 1) / 255.0
            assert torch.allclose(recon[k], ref.to(recon.dtype), atol=0)


def test_native_batch_route_equals_the_generic_route_exactly():
    """npp_bpg_roundtrip_batch converts floats in C; it must round (half to even) and scale
    back exactly as npp_plugin.images does with torch, for any dtype the caller passes."""
    from npp_plugin.codec import Codec

    codec = BpgCodec(fast=True)
    g = torch.Generator().manual_seed(3)
    x = torch.rand((5, 3, 40, 56), generator=g)
    ties = torch.tensor([0.5, 1.5, 2.5, 127.5, 254.5]) / 255.0  # k + 0.5 after * 255
    x[:, 0, 0, :5] = ties
    x[0, 1, 0, :2] = torch.tensor([1.0 + 5e-7, -5e-7])  # inside the checker's tolerance
    for batch, workers in [(x, 1), (x, 2), (x.double(), 8)]:
        ours = codec.roundtrip(batch, qp=36, workers=workers)
        generic = Codec._roundtrip_tensor(codec, batch, 36, dict(codec._config), 1)
        assert ours[0].dtype == batch.dtype and ours[0].shape == batch.shape
        assert torch.equal(ours[0], generic[0]) and torch.equal(ours[1], generic[1])


def test_native_batch_route_reads_any_layout_in_place():
    """Channels-last views (HWC images permuted), slices and expanded tensors give what the
    contiguous copy gives."""
    codec = BpgCodec(fast=True)
    g = torch.Generator().manual_seed(5)
    hwc = torch.rand((4, 40, 56, 3), generator=g)
    views = {
        "channels-last": hwc.permute(0, 3, 1, 2),
        "cropped": torch.rand((3, 3, 60, 80), generator=g)[1:, :, 7:47, 9:65],
        "strided columns": torch.rand((2, 3, 40, 112), generator=g)[..., ::2],
        "expanded": torch.rand((1, 3, 40, 56), generator=g).expand(3, 3, 40, 56),
    }
    for name, view in views.items():
        assert not view.is_contiguous(), name
        for workers in (1, 2):
            ours = codec.roundtrip(view, qp=35, workers=workers)
            ref = codec.roundtrip(view.contiguous(), qp=35, workers=workers)
            assert torch.equal(ours[0], ref[0]) and torch.equal(ours[1], ref[1]), name


@pytest.mark.parametrize("layout", ["contiguous", "channels-last"])
def test_native_batch_route_rejects_bad_values_naming_the_image(layout):
    codec = BpgCodec(fast=True)
    base = torch.full((3, 40, 56, 3), 0.5)
    cases = [((2, 5, 7, 1), float("nan"), r"image 2 of the batch contains NaN or infinite values"),
             ((1, 0, 0, 0), float("inf"), r"image 1 of the batch contains NaN"),
             ((0, 39, 55, 2), 1.25, r"image 0 of the batch: values span \[0\.5, 1\.25\]; expected \[0, 1\]"),
             ((1, 3, 3, 0), -2e-6, r"image 1 of the batch: values span \[-2e-06, 0\.5\]")]
    for index, value, message in cases:
        x = base.clone()
        x[index] = value
        batch = x.permute(0, 3, 1, 2)
        if layout == "contiguous":
            batch = batch.contiguous()
        with pytest.raises(InvalidArgumentError, match=message) as e:
            codec.roundtrip(batch, qp=30, workers=2)
        assert e.value.argument == "image" and e.value.codec == "bpg"
    x = base.clone()
    x[0, 0, 0, 0], x[1, 0, 0, 0] = 1 + 9e-7, -9e-7  # inside the tolerance: clamped, no error
    recon, _ = codec.roundtrip(x.permute(0, 3, 1, 2), qp=30, workers=1)
    assert recon.shape == (3, 3, 40, 56)


def test_native_batch_route_reports_the_first_error():
    with pytest.raises(InvalidArgumentError, match="too small"):
        BpgCodec(fast=True).roundtrip(torch.rand(3, 3, 8, 40), qp=30, workers=2)


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="needs Linux CPU affinity calls")
def test_encoding_leaves_the_callers_cpu_mask_as_it_was(small):
    """The encoder pins the caller (and x265's thread) to one CPU only while it encodes."""
    codec = BpgCodec(fast=True)
    before = os.sched_getaffinity(0)
    codec.encode(small, qp=30)
    assert os.sched_getaffinity(0) == before
    one = {min(before)}
    os.sched_setaffinity(0, one)
    try:
        codec.encode(small, qp=31)
        codec.roundtrip(torch.rand(2, 3, 32, 32), qp=31, workers=1)
        assert os.sched_getaffinity(0) == one
    finally:
        os.sched_setaffinity(0, before)


# -- the ctypes loader ---------------------------------------------------------------------


def test_loader_env_override_and_clear_errors(monkeypatch, tmp_path, small):
    from npp_plugin._native import binding as _lib

    real = _lib.library_path()
    before = BpgCodec().encode(small, qp=30)
    copy = tmp_path / "libnpp_bpg_copy.so"
    shutil.copy(real, copy)
    monkeypatch.setenv(_lib.ENV_VAR, str(copy))
    assert _lib.library_path() == copy
    # a second copy in the process shares x265's lambda tables and must not shift them again
    assert BpgCodec().encode(small, qp=30) == before
    assert BpgCodec.x265_lambda(8) == "bpgenc"
    batch = torch.from_numpy(small).permute(2, 0, 1)[None] / 255.0
    _, bits = BpgCodec().roundtrip(batch, qp=30, workers=1)  # the copy's own encoders
    assert bits.tolist() == [8.0 * len(before)]
    assert BpgCodec().decode(before).shape == small.shape

    monkeypatch.setenv(_lib.ENV_VAR, str(tmp_path / "missing.so"))
    with pytest.raises(NativeLibraryError, match="not found") as err:
        _lib.get_lib()
    assert "NPP_BPG_LIBRARY" in str(err.value) and "build_native" in str(err.value)
    assert not BpgCodec.is_available()
    with pytest.raises(CodecUnavailableError, match="unavailable"):
        BpgCodec().encode(small, qp=30)

    foreign = tmp_path / "foreign.so"  # a real shared library without the npp_bpg_* API
    libz = next((p for p in ("/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib/x86_64-linux-gnu/libz.so.1")
                 if Path(p).exists()), None)
    if libz:
        shutil.copy(libz, foreign)
        monkeypatch.setenv(_lib.ENV_VAR, str(foreign))
        with pytest.raises(NativeLibraryError, match="Likely causes") as err:
            _lib.get_lib()
        assert isinstance(err.value.__cause__, AttributeError)

    monkeypatch.delenv(_lib.ENV_VAR)
    assert BpgCodec.is_available()
    assert BpgCodec().encode(small, qp=30) == before


def test_library_errors_carry_the_native_message():
    from npp_plugin._native import binding as _lib

    lib = _lib.get_lib()
    params = _lib.EncodeParams()
    lib.npp_bpg_default_params(params)
    params.bit_depth = 9
    img = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(InvalidArgumentError, match="bit_depth=9") as err:
        BpgCodec._encode_raw(lib, img, params)
    assert err.value.argument == "bit_depth"
    params.bit_depth, params.qp = 8, 60
    with pytest.raises(InvalidArgumentError, match="qp=60"):
        BpgCodec._encode_raw(lib, img, params)
    params.qp, params.level = 30, 11
    with pytest.raises(InvalidArgumentError, match="level=11"):
        BpgCodec._encode_raw(lib, img, params)
    with pytest.raises(InvalidArgumentError, match="out_bits"):
        err, ref = _lib.new_errmsg()
        out, n = _lib.c_void_p(), _lib.c_size_t()
        data = BpgCodec().encode(img, qp=30)
        _lib.check_status(lib, lib.npp_bpg_decode(data, len(data), 12, 0, 0, _lib.byref(out),
                                                  _lib.byref(n), None, ref), err, action="decode")


# -- C pixel arithmetic vs FORMAT.md worked examples ------------------------------------------


def test_native_pixel_arithmetic_matches_format_md(tmp_path):
    """Assert the C conversion/decimation/upsampling reproduces FORMAT.md 11.9 / 12.6."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build native/tests/test_pixels.c")
    exe = tmp_path / "test_pixels"
    native = ROOT / "native"
    subprocess.run([cc, "-O1", "-ffp-contract=off", f"-I{native}", "-o", str(exe),
                    str(native / "tests" / "test_pixels.c"), str(native / "bpg_bits.c"), "-lm"],
                   check=True, capture_output=True)
    run = subprocess.run([str(exe)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout
    assert run.stdout.strip().endswith("0 failures")


def test_pooled_encoders_give_one_shot_bytes_whatever_they_encoded_before(photo):
    """Reused x265 instances (the codec's pool) must not depend on their history."""
    from npp_plugin._native import binding as _lib

    lib = _lib.get_lib()
    crops = [np.ascontiguousarray(photo[y : y + 72, x : x + 88]) for y, x in ((0, 0), (90, 40), (170, 150))]
    for options in ({"fast": True}, {"level": 4, "chroma": "444"}, {"bit_depth": 10, "level": 2}):
        codec = BpgCodec(**options)
        for qp in (0, 22, 37, 51):
            for crop in crops:
                params = codec._native_params(qp, dict(codec._config))
                ptr, n = BpgCodec._encode_raw(lib, crop, params)
                try:
                    one_shot = _lib.ctypes.string_at(ptr.value, n.value)
                finally:
                    lib.npp_bpg_free(ptr)
                assert codec.encode(crop, qp=qp) == one_shot


def test_pictures_above_2_mp_close_x265_after_each_encode_and_code_the_same(photo):
    """Above 2 MP the encoder closes its x265 instance after each picture (an idle one
    holds about 28 bytes per pixel) and opens a new one for the next: the same file each
    time, the same as a one-shot encoder's, and the batch route's decode matches."""
    from npp_plugin._native import binding as _lib

    big = np.ascontiguousarray(np.tile(photo, (6, 8, 1))[:1216, :1760])  # 2.14 MP > 2^21
    assert big.shape[0] * big.shape[1] > 1 << 21
    codec = BpgCodec(fast=True)
    first, second = codec.encode(big, qp=37), codec.encode(big, qp=37)
    params = codec._native_params(37, dict(codec._config))
    ptr, n = BpgCodec._encode_raw(_lib.get_lib(), big, params)
    try:
        assert first == second == _lib.ctypes.string_at(ptr.value, n.value)
    finally:
        _lib.get_lib().npp_bpg_free(ptr)
    samples, bits = codec.roundtrip(torch.from_numpy(big).permute(2, 0, 1)[None].float() / 255, qp=37, dtype=torch.uint8)
    assert bits.item() == 8 * len(first)
    assert np.array_equal(samples[0].permute(1, 2, 0).numpy(), codec.decode(first))


def test_hash_option_adds_a_verified_md5_sei(small):
    codec = BpgCodec(hash=True, fast=True)
    data = codec.encode(small, qp=30)
    plain = BpgCodec(fast=True).encode(small, qp=30)
    assert len(data) > len(plain) and bytes.fromhex("000001") + bytes([40 << 1]) in data  # suffix SEI
    assert np.array_equal(codec.decode(data), BpgCodec().decode(plain))
    bad = bytearray(data)
    bad[len(plain) - 8] ^= 0x10  # inside the slice data: the MD5 check catches it
    with pytest.raises(CorruptStreamError):
        codec.decode(bytes(bad))
