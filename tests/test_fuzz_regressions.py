"""Every input the libFuzzer harnesses ever flagged (tests/data/fuzz-regressions/<target>/),
replayed through the Python API on the normal build, clang or not: container and decode
inputs must decode or raise a CodecError; encode inputs (fuzz_encode.c's layout: 11 option
bytes, then samples) must encode, unless their options are invalid, to a file that decodes
to a picture of their size."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest

from npp_plugin.codecs.bpg import BpgCodec
from npp_plugin.errors import CodecError

from .conftest import ROOT

REGRESSIONS = ROOT / "tests" / "data" / "fuzz-regressions"

pytestmark = pytest.mark.skipif(
    not BpgCodec.is_available(), reason=f"libnpp_bpg unavailable: {BpgCodec.unavailable_reason()}"
)


def _inputs(*targets: str) -> list[Path]:
    return sorted(p for t in targets if (REGRESSIONS / t).is_dir() for p in (REGRESSIONS / t).iterdir())


def _ids(paths):
    return [f"{p.parent.name}/{p.name}" for p in paths]


DECODE_INPUTS = _inputs("fuzz_container", "fuzz_decode")
ENCODE_INPUTS = _inputs("fuzz_encode")


@pytest.mark.parametrize("path", DECODE_INPUTS, ids=_ids(DECODE_INPUTS))
def test_decode_regression(path):
    data = path.read_bytes()
    codec = BpgCodec()
    try:
        out = codec.decode(data)
    except CodecError:
        return
    info = codec.info(data)
    assert out.shape == (info["height"], info["width"], 3)


def _encode_input(data: bytes):
    """fuzz_encode.c's reading of an input: (rgb-or-gray samples, EncodeParams)."""
    from npp_plugin._native import binding as _lib

    w, h = 1 + data[0] % 64, 1 + data[1] % 64
    channels = 1 if data[2] & 1 else 3
    p = _lib.EncodeParams()
    _lib.get_lib().npp_bpg_default_params(p)
    p.qp, p.pixel_format, p.bit_depth = data[3] % 52, data[4] % 6, (8, 10, 12)[data[5] % 3]
    p.color_space, p.limited_range, p.lossless = data[6] % 5, data[7] & 1, data[8] & 1
    p.level, p.hash = data[9] % 10, data[10] & 1
    rest = data[11:]
    n = w * h * channels
    samples = (np.frombuffer(rest, np.uint8)[np.arange(n) % len(rest)] if rest
               else (np.arange(n) * 37).astype(np.uint8))
    return np.ascontiguousarray(samples.reshape(h, w, channels)), p


@pytest.mark.parametrize("path", ENCODE_INPUTS, ids=_ids(ENCODE_INPUTS))
def test_encode_regression(path):
    from npp_plugin._native import binding as _lib
    from npp_plugin.errors import InvalidArgumentError

    pixels, params = _encode_input(path.read_bytes())
    h, w, channels = pixels.shape
    lib = _lib.get_lib()
    out, n = ctypes.c_void_p(), ctypes.c_size_t()
    err, err_ref = _lib.new_errmsg()
    status = lib.npp_bpg_encode(pixels.ctypes.data, w, h, channels, w * channels, ctypes.byref(params),
                                ctypes.byref(out), ctypes.byref(n), err_ref)
    try:
        _lib.check_status(lib, status, err, action="encode")
    except InvalidArgumentError:
        return  # options the library refuses (e.g. rgb without 4:4:4)
    try:
        data = ctypes.string_at(out.value, n.value)
    finally:
        lib.npp_bpg_free(out)
    assert BpgCodec().decode(data).shape == (h, w, 3)


# -- the bugs behind those inputs, on real pictures ----------------------------------------


@pytest.mark.parametrize("bit_depth", [10, 12])
@pytest.mark.parametrize("shape", [(32, 48), (100, 120), (256, 256)])
def test_high_bit_depth_pictures_decode_faithfully(photo, bit_depth, shape):
    """10/12-bit files decoded to garbage (about 13 dB) when libde265 halved the plane
    stride; with the MD5 hash their decode failed its check. Now they are as good as 8 bit
    (39-42 dB here at qp 22) and the hash verifies."""
    from .conftest import psnr

    img = np.ascontiguousarray(photo[: shape[0], : shape[1]])
    eight = BpgCodec(level=1).encode(img, qp=22)
    codec = BpgCodec(bit_depth=bit_depth, level=1, hash=True)
    data = codec.encode(img, qp=22)
    assert psnr(codec.decode(data), img) > psnr(BpgCodec().decode(eight), img) - 1.0


@pytest.mark.parametrize("chroma", ["420", "444"])
def test_level9_encodes_pictures_smaller_than_its_ctu(chroma):
    """x265's placebo preset refused a 16x16 CTU (its TU depth 4 needs CTU 32)."""
    img = np.random.default_rng(4).integers(0, 256, (41, 10, 3), dtype=np.uint8)
    codec = BpgCodec(level=9, chroma=chroma)
    assert codec.decode(codec.encode(img, qp=35)).shape == (41, 10, 3)


EFENCE = Path("/usr/lib/libefence.so")


@pytest.mark.skipif(not EFENCE.is_file(), reason="Electric Fence not installed (apt-get install electric-fence, as scripts/setup.sh does)")
def test_x265_never_reads_past_the_planes_we_give_it(tmp_path):
    """x265's SIMD input copy read whole vectors past the last row of our planes (a SEGV in
    fuzz_encode when a plane ended at a page boundary); the planes now carry slack. Under
    Electric Fence every allocation ends at a guard page, so any such read crashes."""
    import shutil
    import subprocess

    from npp_plugin._native import binding as _lib

    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    lib_dir = _lib.library_path().parent
    exe = tmp_path / "guard_encode"
    subprocess.run([cc, "-O1", f"-I{ROOT / 'native'}", "-o", str(exe), str(ROOT / "native" / "tests" / "guard_encode.c"),
                    f"-L{lib_dir}", "-lnpp_bpg", f"-Wl,-rpath,{lib_dir}"], check=True)
    env = {"PATH": "/usr/bin:/bin", "LD_PRELOAD": str(EFENCE), "EF_ALLOW_MALLOC_0": "1"}
    proc = subprocess.run([str(exe)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, f"status {proc.returncode}: {proc.stdout[-2000:]}"
    assert proc.stdout.strip().endswith("0 failures")


def test_a_picture_the_stream_never_completes_is_refused_whatever_the_heap_holds():
    """fuzz_decode's finding of 2026-12-07: with SAO on, libde265 decodes into planes it
    allocates itself, unfilled, so CTBs a damaged stream never codes came out as whatever the
    heap held (different pixels on every call, and a file the verification passed when two
    calls' garbage agreed). With the heap made uniform (glibc's MALLOC_PERTURB_, as ASan's
    allocator does), both passes agreed and the file decoded "cleanly"; now the completeness
    scan refuses it, verified or not, at 8 and 16 bits."""
    import os
    import subprocess
    import sys

    path = REGRESSIONS / "fuzz_decode" / "incomplete-picture-in-unfilled-planes-256x256"
    child = (
        "import sys\n"
        "from npp_plugin.codecs.bpg import BpgCodec\n"
        "from npp_plugin.errors import CorruptStreamError\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "for wide in (False, True):\n"
        "    try:\n"
        "        BpgCodec().decode(data, high_bit_depth=wide)\n"
        "    except CorruptStreamError as e:\n"
        "        print('refused:', e)\n"
        "    else:\n"
        "        print('decoded')\n"
    )
    for perturb in ("0", "190"):
        env = {**os.environ, "MALLOC_PERTURB_": perturb}
        out = subprocess.run([sys.executable, "-c", child, str(path)], capture_output=True, text=True,
                             env=env, cwd=ROOT, check=True, timeout=120).stdout.splitlines()
        assert out == ["refused: bpg: HEVC data ends before the picture is complete (CTB 3,1 and later not decoded)"] * 2, out
