"""Robustness of the native BPG codec: truncated and corrupted files, fuzzing, threads,
and memory over 10,000 round trips. Every failure must be a CodecError, never a crash
or a wrong picture returned for a truncated file."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from npp_plugin.codecs.bpg import BpgCodec
from npp_plugin.errors import CodecError

from .conftest import SHARED

BPG_DIR = SHARED / "conformance" / "bpg" / "bpg"

pytestmark = pytest.mark.skipif(
    not BpgCodec.is_available(), reason=f"libnpp_bpg unavailable: {BpgCodec.unavailable_reason()}"
)
needs_vectors = pytest.mark.skipif(
    not BPG_DIR.is_dir(), reason=f"conformance vectors not found at {BPG_DIR} (../shared beside the repo)"
)


def _vector(name: str) -> bytes:
    return (BPG_DIR / f"{name}.bpg").read_bytes()


def _decode_or_error(codec: BpgCodec, data: bytes):
    """The decoded picture, or None when the codec raised a CodecError."""
    try:
        return codec.decode(data)
    except CodecError:
        return None


# -- truncation ----------------------------------------------------------------------------


def _assert_every_prefix_raises(codec: BpgCodec, data: bytes) -> None:
    """Every proper prefix raises. The one exception a decoder cannot see: dropping a
    final 0x80 byte that holds nothing but the slice's rbsp stop bit; that prefix must
    then decode to exactly the full picture."""
    full = codec.decode(data)
    for n in range(len(data)):
        out = _decode_or_error(codec, data[:n])
        if out is not None:
            assert n == len(data) - 1 and data[-1] == 0x80, f"prefix of {n}/{len(data)} bytes decoded"
            assert np.array_equal(out, full)


@needs_vectors
@pytest.mark.parametrize("name", ["rocket_c256_q41", "chelsea_c256_q41"])
def test_every_prefix_raises(name):
    _assert_every_prefix_raises(BpgCodec(), _vector(name))


@needs_vectors
@pytest.mark.parametrize(("name", "step"), [("astronaut_c256_q34_hash", 11), ("chelsea_full_q34_b10", 17)])
def test_prefixes_never_give_a_wrong_picture(name, step):
    """A prefix either raises, or (when it only drops the trailing hash SEI) decodes to
    exactly the full file's picture."""
    data = _vector(name)
    codec = BpgCodec()
    full = codec.decode(data)
    lengths = sorted(set(range(0, len(data), step)) | set(range(len(data) - 80, len(data))))
    for n in lengths:
        out = _decode_or_error(codec, data[:n])
        assert out is None or np.array_equal(out, full), f"prefix of {n} bytes decoded to a different picture"


def test_prefixes_of_our_own_files_raise(photo):
    codec = BpgCodec(fast=True)
    for options in ({}, {"chroma": "444", "bit_depth": 10}):
        _assert_every_prefix_raises(codec, codec.encode(photo[:48, :64], qp=30, **options))


# -- corruption ----------------------------------------------------------------------------


@needs_vectors
@pytest.mark.parametrize("name", ["astronaut_c256_q34_hash", "chelsea_full_q34_hash"])
def test_byte_flips_in_hashed_files_raise_or_change_nothing(name):
    """With the MD5 picture hash, a flipped bit in the HEVC data either raises or leaves
    the picture bit-identical (e.g. a WPP entry-point offset libde265 does not need)."""
    data = bytearray(_vector(name))
    codec = BpgCodec()
    full = codec.decode(bytes(data))
    rng = np.random.default_rng(1234)
    start = 11  # first byte after the fixed header fields of these files
    raised = 0
    for _ in range(250):
        pos, bit = int(rng.integers(start, len(data))), int(rng.integers(0, 8))
        bad = data.copy()
        bad[pos] ^= 1 << bit
        out = _decode_or_error(codec, bytes(bad))
        assert out is None or np.array_equal(out, full), f"flip at byte {pos} bit {bit}"
        raised += out is None
    assert raised >= 240


@needs_vectors
def test_byte_flips_anywhere_raise_or_decode():
    data = bytearray(_vector("rocket_c256_q34"))
    codec = BpgCodec()
    rng = np.random.default_rng(99)
    for _ in range(300):
        bad = data.copy()
        for _ in range(int(rng.integers(1, 4))):
            bad[int(rng.integers(0, len(bad)))] ^= int(rng.integers(1, 256))
        out = _decode_or_error(codec, bytes(bad))
        if out is not None:
            info = codec.info(bytes(bad))
            assert out.shape == (info["height"], info["width"], 3)


def _valid_seed() -> bytes:
    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    return BpgCodec(fast=True).encode(img, qp=35)


SEED = _valid_seed() if BpgCodec.is_available() else b"BPG\xfb"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
    cut=st.integers(0, 10_000),
    tail=st.binary(max_size=40),
)
def test_fuzz_mutated_files(edits, cut, tail):
    data = bytearray(SEED)
    for pos, val in edits:
        data[pos % len(data)] = val
    data = bytes(data[: max(4, cut % (len(data) + 1))]) + tail
    codec = BpgCodec()
    try:
        out = codec.decode(data)
    except CodecError:
        return
    assert out.ndim == 3 and out.shape[2] == 3 and out.dtype == np.uint8


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=64))
def test_fuzz_arbitrary_headers(rest):
    codec = BpgCodec()
    for data in (b"BPG\xfb" + rest, b"BPG\xfb" + rest + SEED[6:]):
        try:
            codec.info(data)
            codec.decode(data)
        except CodecError:
            pass


# -- threads -------------------------------------------------------------------------------


def test_eight_threads_give_byte_identical_output(photo):
    crops = [np.ascontiguousarray(photo[(k % 4) * 48 : (k % 4) * 48 + 96, (k // 4) * 64 : (k // 4) * 64 + 112])
             for k in range(8)]
    jobs = [(crop, opts) for opts in ({"fast": True}, {"level": 1}, {"level": 5, "chroma": "444"},
                                      {"bit_depth": 10, "level": 3}) for crop in crops]

    def encode(job):
        crop, opts = job
        return BpgCodec(**opts).encode(crop, qp=31)

    serial = [encode(j) for j in jobs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(encode, jobs))
        decoded = list(pool.map(BpgCodec().decode, parallel))
    assert parallel == serial
    for data, rgb in zip(serial, decoded, strict=False):
        assert np.array_equal(BpgCodec().decode(data), rgb)


# -- memory --------------------------------------------------------------------------------


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _heap_in_use() -> int:
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.mallinfo2.restype = _MallInfo2
    m = libc.mallinfo2()
    return m.uordblks + m.hblkhd


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs glibc mallinfo2 and /proc")
def test_ten_thousand_round_trips_do_not_grow_memory():
    rng = np.random.default_rng(3)
    imgs = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((16, 16, 3), (17, 23, 3))]
    codec = BpgCodec(fast=True)
    batch = torch.from_numpy(np.stack([imgs[0], imgs[0][::-1]])).permute(0, 3, 1, 2) / 255.0

    def cycle(i: int) -> None:
        data = codec.encode(imgs[i & 1], qp=30 + (i & 7))
        codec.info(data)
        codec.decode(data)
        _decode_or_error(codec, data[: len(data) // 2])  # the error paths too
        if i % 4 == 0:  # the batch route: C threads, pooled encoders
            codec.roundtrip(batch, qp=30 + (i & 7), workers=2)

    for i in range(500):  # warm-up: libde265 tables, x265 primitives, Python caches
        cycle(i)
    heap0, rss0 = _heap_in_use(), _rss()
    for i in range(10_000):
        cycle(i)
    heap1, rss1 = _heap_in_use(), _rss()
    # a leak of even 8 bytes per round trip would show as 80 kB
    assert heap1 - heap0 < 64 * 1024, f"C heap grew by {heap1 - heap0} bytes"
    assert rss1 - rss0 < 8 * 1024 * 1024, f"RSS grew by {(rss1 - rss0) >> 10} kB"
