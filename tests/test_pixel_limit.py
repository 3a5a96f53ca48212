"""Hostile headers: the pixel limit, checked on the header before anything is allocated,
for every codec; files too short for the picture they claim; the limit's settings (per
call, module setting, environment variable) and its warning."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import npp_plugin.codec as codec_module
from npp_plugin.codec import DEFAULT_PIXEL_LIMIT, PIXEL_LIMIT_ENV, pixel_limit_in_force
from npp_plugin.errors import (
    CorruptStreamError,
    InvalidArgumentError,
    PixelLimitError,
    PixelLimitWarning,
)

from .conftest import CODECS, require_codec

#: A 38-byte BPG file whose header claims 16384 x 16384 (a 4:2:0 8-bit header, a real compact
#: HEVC header with 16x16 CTBs and 22 bytes of slice data): 805 MB of RGB if decoded.
BPG_BOMB = bytes.fromhex("425047fb200081800081800000025b904401c07181120000012801ad6012c7bffff3636e3ee6")
SIDE = 16384


def _small(name: str) -> bytes:
    img = np.random.default_rng(7).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    return require_codec(name).encode(img, qp=30)


def _jpeg_bomb() -> bytes:
    """A real small JPEG whose SOF0 claims SIDE x SIDE."""
    data = bytearray(_small("jpeg"))
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", SIDE, SIDE)
    return bytes(data)


def _heif_bomb() -> bytes:
    """A real small HEIF file whose primary image's ispe box claims SIDE x SIDE."""
    data = bytearray(_small("heif"))
    at = data.find(b"ispe")
    assert at > 0 and data.count(b"ispe") == 1
    data[at + 8:at + 16] = struct.pack(">II", SIDE, SIDE)
    return bytes(data)


def _vvc_sps(width: int, height: int) -> bytes:
    """An Annex-B VVC SPS NAL unit (H.266 7.3.2.4) claiming width x height, no PTL."""
    bits = "0000" "0000" "000" "01" "10" "0"  # ids, sublayers, 4:2:0, CTU 128, no PTL/DPB/HRD
    bits += "0" "0"  # no GDR, no reference picture resampling

    def ue(v: int) -> str:
        code = bin(v + 1)[2:]
        return "0" * (len(code) - 1) + code

    bits += ue(width) + ue(height) + "1"
    bits += "0" * (-len(bits) % 8)
    rbsp = int(bits, 2).to_bytes(len(bits) // 8, "big")
    escaped, zeros = bytearray(), 0
    for b in rbsp:
        if zeros >= 2 and b <= 3:
            escaped.append(3)
            zeros = 0
        escaped.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return b"\x00\x00\x00\x01" + bytes([0x00, 15 << 3 | 1]) + bytes(escaped)


def _vvc_bomb() -> bytes:
    return _vvc_sps(SIDE, SIDE) + _small("vvc")


BOMBS = {"bpg": lambda: BPG_BOMB, "jpeg": _jpeg_bomb, "heif": _heif_bomb, "vvc": _vvc_bomb}


# -- refusal before allocation -------------------------------------------------------------

_CHILD = textwrap.dedent("""
    import json, resource, sys, time, tracemalloc
    import npp_plugin
    from npp_plugin.errors import PixelLimitError
    codec = npp_plugin.get_codec(sys.argv[1])
    data = sys.stdin.buffer.read()
    limit = None if sys.argv[2] == "none" else int(sys.argv[2])
    codec.check(data); codec.is_available()  # backends loaded before measuring

    def status(key):
        with open("/proc/self/status") as f:
            return int(f.read().split(key + ":")[1].split()[0])

    try:  # reset the peak RSS (VmHWM) to the current RSS (Linux >= 4.0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    rss0, hwm0 = status("VmRSS"), status("VmHWM")
    tracemalloc.start()
    t = time.perf_counter()
    try:
        codec.decode(data, pixel_limit=limit)
        error = None
    except Exception as exc:
        error = exc
    seconds = time.perf_counter() - t
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(json.dumps({
        "error": type(error).__name__, "message": str(error),
        "size": [getattr(error, "width", None), getattr(error, "height", None)],
        "limit": getattr(error, "limit", None), "seconds": seconds, "traced_peak": traced,
        "rss_peak_growth_kb": status("VmHWM") - max(rss0, hwm0),
    }))
""")


def _refuse_in_child(name: str, data: bytes, limit: str = "default") -> dict:
    arg = str(DEFAULT_PIXEL_LIMIT) if limit == "default" else limit
    proc = subprocess.run([sys.executable, "-c", _CHILD, name, arg], input=data, capture_output=True,
                          timeout=300, env={k: v for k, v in os.environ.items() if k != PIXEL_LIMIT_ENV})
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    return json.loads(proc.stdout.decode().splitlines()[-1])


@pytest.mark.parametrize("name", CODECS)
def test_bomb_is_refused_before_anything_is_allocated(name):
    """A header claiming 16384 x 16384 (805 MB of RGB) is refused with the claimed size and
    the limit, while the process allocates no more than a file's worth of memory."""
    require_codec(name)
    out = _refuse_in_child(name, BOMBS[name]())
    assert out["error"] == "PixelLimitError", out["message"]
    assert out["size"] == [SIDE, SIDE] and out["limit"] == DEFAULT_PIXEL_LIMIT
    assert "16384x16384" in out["message"] and "178,956,970" in out["message"]
    assert out["traced_peak"] < 64 * 1024, out  # Python heap: the file and an exception
    assert out["rss_peak_growth_kb"] < 4 * 1024, out  # C heap and mappings touched


@pytest.mark.parametrize("name", ["bpg", "jpeg"])
def test_data_too_short_for_the_claimed_picture_is_refused_without_limit(name):
    """With no pixel limit, a file that cannot hold the picture it claims is refused before
    decoding (BPG: one bit per CTB; Huffman JPEG: one bit per 32x32 pixels)."""
    require_codec(name)
    out = _refuse_in_child(name, BOMBS[name](), limit="none")
    assert out["error"] == "CorruptStreamError", out["message"]
    assert "cannot hold" in out["message"] and "16384x16384" in out["message"]
    assert out["traced_peak"] < 64 * 1024, out
    assert out["rss_peak_growth_kb"] < 4 * 1024, out


def test_native_decoder_applies_its_own_limit():
    """C callers (npp-bpgdec, the fuzz harnesses) get the same default limit, and the
    data-length check runs before libde265 allocates."""
    import ctypes

    from npp_plugin._native import binding as _lib

    lib = _lib.get_lib()
    out, n, info = ctypes.c_void_p(), ctypes.c_size_t(), _lib.Info()
    for max_pixels, status, text in ((0, _lib.ERR_LIMIT, "above the limit of 178956970 pixels"),
                                     (_lib.NO_PIXEL_LIMIT, _lib.ERR_CORRUPT, "cannot hold a 16384x16384")):
        err, ref = _lib.new_errmsg()
        rc = lib.npp_bpg_decode(BPG_BOMB, len(BPG_BOMB), 8, _lib.DECODE_VERIFY, max_pixels,
                                ctypes.byref(out), ctypes.byref(n), ctypes.byref(info), ref)
        assert rc == status and out.value is None
        assert text in _lib.take_message(lib, err)
    with pytest.raises(PixelLimitError) as exc:
        err, ref = _lib.new_errmsg()
        rc = lib.npp_bpg_decode(BPG_BOMB, len(BPG_BOMB), 8, 0, 1000, ctypes.byref(out), ctypes.byref(n),
                                ctypes.byref(info), ref)
        _lib.check_status(lib, rc, err, action="decode", info=info, max_pixels=1000)
    assert (exc.value.width, exc.value.height, exc.value.limit) == (SIDE, SIDE, 1000)


def test_npp_bpgdec_refuses_the_bomb(tmp_path):
    from npp_plugin._native import binding as _lib

    tool = _lib.library_path().parent / "npp-bpgdec"
    if not tool.is_file():
        pytest.skip(f"{tool} not built")
    (tmp_path / "bomb.bpg").write_bytes(BPG_BOMB)
    proc = subprocess.run([str(tool), "-o", str(tmp_path / "out.png"), str(tmp_path / "bomb.bpg")],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "above the limit" in proc.stderr
    assert not (tmp_path / "out.png").exists()


def test_real_files_pass_the_data_length_check(shared_dir):
    """The bound never refuses a real file: every conformance vector still decodes (also
    checked bit-exactly in test_bpg_conformance) and its header size is right."""
    from npp_plugin.codecs.bpg import BpgCodec

    codec = BpgCodec()
    for path in sorted((shared_dir / "conformance" / "bpg" / "bpg").glob("*.bpg")):
        data = path.read_bytes()
        w, h, _ = codec._header_size(data)
        assert codec.decode(data).shape == (h, w, 3), path.name


# -- the limit's settings ------------------------------------------------------------------


@pytest.mark.parametrize("name", CODECS)
def test_limit_per_call_names_size_and_limit(name):
    codec = require_codec(name)
    data = _small(name)
    with pytest.warns(PixelLimitWarning):
        assert codec.decode(data, pixel_limit=96 * 64).shape == (64, 96, 3)
    with pytest.raises(PixelLimitError) as exc:
        codec.decode(data, pixel_limit=96 * 64 - 1)
    err = exc.value
    assert (err.codec, err.width, err.height, err.pixels, err.limit) == (name, 96, 64, 6144, 6143)
    assert "96x64" in str(err) and "6,143" in str(err)
    assert codec.decode(data, pixel_limit=None).shape == (64, 96, 3)


@pytest.mark.parametrize("name", CODECS)
def test_warning_above_half_the_limit(name):
    codec = require_codec(name)
    data = _small(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PixelLimitWarning)
        codec.decode(data, pixel_limit=2 * 6144)  # exactly half: no warning
        with pytest.raises(PixelLimitWarning, match="96x64"):
            codec.decode(data, pixel_limit=2 * 6144 - 1)


def test_module_setting_is_the_process_wide_limit(monkeypatch):
    codec = require_codec("bpg")
    data = _small("bpg")
    monkeypatch.setattr(codec_module, "PIXEL_LIMIT", 6000)
    assert pixel_limit_in_force() == 6000
    with pytest.raises(PixelLimitError, match="6,000"):
        codec.decode(data)
    with pytest.warns(PixelLimitWarning):
        assert codec.decode(data, pixel_limit=7000).shape == (64, 96, 3)  # per call wins
    monkeypatch.setattr(codec_module, "PIXEL_LIMIT", None)
    assert pixel_limit_in_force() is None
    with pytest.raises(CorruptStreamError, match="cannot hold"):
        codec.decode(BPG_BOMB)  # no limit: the data-length check still refuses it


@pytest.mark.parametrize("bad", [0, -5, 2.5, "many", True])
def test_invalid_limits_are_refused(monkeypatch, bad):
    codec = require_codec("bpg")
    with pytest.raises(InvalidArgumentError, match="pixel_limit") as exc:
        codec.decode(_small("bpg"), pixel_limit=bad)
    assert exc.value.argument == "pixel_limit"
    monkeypatch.setattr(codec_module, "PIXEL_LIMIT", bad)
    with pytest.raises(InvalidArgumentError, match=r"PIXEL_LIMIT.*NPP_PIXEL_LIMIT"):
        codec.decode(_small("bpg"))


@pytest.mark.parametrize(("value", "expected"), [("1000", 1000), ("250_000_000", 250_000_000),
                                                 ("none", None), ("", DEFAULT_PIXEL_LIMIT)])
def test_environment_variable_sets_the_module_setting(value, expected):
    code = "import npp_plugin.codec as c; print(repr(c.pixel_limit_in_force()))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, PIXEL_LIMIT_ENV: value})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == repr(expected)


def test_invalid_environment_variable_fails_at_decode_not_at_import():
    code = textwrap.dedent("""
        import numpy as np, npp_plugin
        from npp_plugin.errors import InvalidArgumentError
        codec = npp_plugin.get_codec("bpg")
        data = codec.encode(np.zeros((16, 16, 3), np.uint8), qp=30)
        try:
            codec.decode(data)
        except InvalidArgumentError as exc:
            print("refused:", exc)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, PIXEL_LIMIT_ENV: "lots"})
    assert proc.returncode == 0, proc.stderr
    assert "refused:" in proc.stdout and "'lots'" in proc.stdout and PIXEL_LIMIT_ENV in proc.stdout


def test_cli_decode_refuses_the_bomb(tmp_path):
    from npp_plugin.cli import main

    (tmp_path / "bomb.bpg").write_bytes(BPG_BOMB)
    assert main(["decode", str(tmp_path / "bomb.bpg"), str(tmp_path / "out.png")]) == 2
    assert not (tmp_path / "out.png").exists()
    assert main(["info", str(tmp_path / "bomb.bpg")]) == 0  # the header is readable: 16384x16384
