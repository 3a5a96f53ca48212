"""Python-side fuzzing (hypothesis, bounded examples) of what reads untrusted bytes outside
C: ``codec_for_data``, the header readers every decode starts with (JPEG, HEIF, VVC; BPG's is
C, fuzzed by native/fuzz), the HEIF and VVC decoders on damaged files, and the weights-file
reader on non-weights, truncated and altered files. Each may only answer, or raise the
library's typed error: never another exception, never a hang."""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import npp_plugin
from npp_plugin import codec_for_data
from npp_plugin.codec import DEFAULT_PIXEL_LIMIT, Codec, HeaderSize
from npp_plugin.errors import CodecError, CorruptStreamError, PixelLimitError, WeightsError

from .conftest import require_codec

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_IMG = np.random.default_rng(11).integers(0, 256, (48, 64, 3), dtype=np.uint8)
_FILES: dict[str, bytes] = {}


def _real(name: str) -> bytes:
    if name not in _FILES:
        _FILES[name] = require_codec(name).encode(_IMG, qp=32)
    return _FILES[name]


def _mutate(data: bytes, edits, cut: int, limit: int | None = None) -> bytes:
    """``data`` with bytes replaced (within the first ``limit`` bytes: the headers) and cut."""
    out = bytearray(data)
    span = min(len(out), limit or len(out))
    for pos, val in edits:
        out[pos % span] = val
    return bytes(out[: max(1, cut % (len(out) + 1))])


EDITS = st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=6)
CUTS = st.integers(0, 1 << 16)


def _header_path(codec: Codec, data: bytes) -> None:
    """What decode does before decoding: the reader, the limit, the data-length bound."""
    try:
        codec._check_claimed_size(data, DEFAULT_PIXEL_LIMIT)
    except (CorruptStreamError, PixelLimitError):
        return
    size = codec._header_size(data)
    assert size is None or (isinstance(size, HeaderSize) and size.width > 0 and size.height > 0)


# -- codec_for_data ------------------------------------------------------------------------

MAGICS = [b"BPG\xfb", b"\xff\xd8\xff", b"\x00\x00\x00\x18ftypheic", b"\x00\x00\x00\x01\x00\x79",
          b"\x00\x00\x01\x00\xa1", b""]


@FUZZ
@given(head=st.sampled_from(MAGICS), rest=st.binary(max_size=96))
def test_codec_for_data_answers_or_raises_corrupt_stream(head, rest):
    data = head + rest
    try:
        codec = codec_for_data(data)
    except CorruptStreamError as exc:
        assert "no registered codec recognises" in str(exc)
        return
    assert isinstance(codec, Codec) and type(codec).check(data)
    assert codec.name in npp_plugin.available_codecs()


# -- header readers ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["jpeg", "heif", "vvc"])
def test_header_readers_agree_with_real_files(name):
    codec = require_codec(name)
    assert codec._header_size(_real(name))[:2] == (64, 48)


@FUZZ
@given(edits=EDITS, cut=CUTS)
def test_jpeg_header_reader_on_damaged_files(edits, cut):
    _header_path(require_codec("jpeg"), _mutate(_real("jpeg"), edits, cut, limit=700))


@FUZZ
@given(rest=st.binary(max_size=300))
def test_jpeg_header_reader_on_arbitrary_markers(rest):
    _header_path(require_codec("jpeg"), b"\xff\xd8\xff" + rest)


@FUZZ
@given(edits=EDITS, cut=CUTS)
def test_heif_header_reader_on_damaged_files(edits, cut):
    _damaged_header_path("heif", edits, cut, limit=420)  # the boxes before the coded data


@FUZZ
@given(boxes=st.binary(max_size=300))
def test_heif_header_reader_on_arbitrary_boxes(boxes):
    _header_path(require_codec("heif"), b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + boxes)


@FUZZ
@given(edits=EDITS, cut=CUTS)
def test_vvc_header_reader_on_damaged_files(edits, cut):
    _damaged_header_path("vvc", edits, cut, limit=120)  # VPS, SPS, PPS come first


def _damaged_header_path(name, edits, cut, *, limit):
    """A real file of ``name`` damaged in its first ``limit`` bytes, through the header
    path when it still looks like that codec's file."""
    codec = require_codec(name)
    data = _mutate(_real(name), edits, cut, limit=limit)
    if codec.check(data):
        _header_path(codec, data)


@FUZZ
@given(sps=st.binary(max_size=64), more=st.binary(max_size=64))
def test_vvc_header_reader_on_arbitrary_parameter_sets(sps, more):
    _header_path(require_codec("vvc"), b"\x00\x00\x00\x01\x00\x79" + sps + b"\x00\x00\x01" + more)


# -- whole decodes of damaged HEIF and VVC files (the plugins' own paths) --------------------


@FEW
@given(edits=EDITS, cut=CUTS)
def test_heif_decode_of_damaged_files_raises_codec_errors(edits, cut):
    codec = require_codec("heif")
    data = _mutate(_real("heif"), edits, cut)
    try:
        out = codec.decode(data)
    except CodecError:
        return
    assert out.ndim == 3 and out.shape[2] == 3


@FEW
@given(edits=EDITS, cut=CUTS)
def test_vvc_decode_of_damaged_files_raises_codec_errors(edits, cut):
    codec = require_codec("vvc")
    data = _mutate(_real("vvc"), edits, cut)
    try:
        out = codec.decode(data)
    except CodecError:
        return
    assert out.ndim == 3 and out.shape[2] == 3


# -- the weights-file reader ---------------------------------------------------------------

torch = pytest.importorskip("torch")

from npp_plugin.preprocessors import weights as W  # noqa: E402
from npp_plugin.preprocessors.weights import npp_net  # noqa: E402

META = {"codec": "bpg", "recipe": {"stage": 3, "steps": 1}, "fidelity": {"kind": "mse", "beta": 0.5}}


def _weights_bytes() -> bytes:
    if "weights" not in _FILES:
        torch.manual_seed(0)
        with tempfile.TemporaryDirectory() as tmp:
            path = W.save_weights(Path(tmp) / "w.npp.pt", npp_net(config="tiny"), meta=META)
            _FILES["weights"] = path.read_bytes()
    return _FILES["weights"]


def _read(data: bytes):
    """read_weights on ``data`` as a file: the weights, or None after a WeightsError."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.npp.pt"
        path.write_bytes(data)
        try:
            return W.read_weights(path)
        except WeightsError as exc:
            assert str(path) in str(exc)
            return None


def test_valid_weights_read():
    assert _read(_weights_bytes()).config.name == "tiny"


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize("data", [
    b"", b"\x89PNG\r\n\x1a\n" + bytes(64), b'{"format": "npp_plugin.npp-weights"}', b"PK\x03\x04",
    _zip({"archive/data.pkl": b"\x80\x02}q\x00.", "archive/version": b"3\n"}),
    _zip({"x": bytes(1000)}),
], ids=["empty", "png", "json", "zip-magic", "zip-pickle-stub", "zip-other"])
def test_non_weights_files_are_refused(data):
    assert _read(data) is None


@FEW
@given(cut=st.integers(0, 1 << 20))
def test_truncated_weights_are_refused(cut):
    data = _weights_bytes()
    assert _read(data[: cut % len(data)]) is None


@FEW
@given(edits=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=4))
def test_altered_weights_are_refused_or_read(edits):
    out = _read(_mutate(_weights_bytes(), edits, cut=1 << 30))
    assert out is None or out.config.name == "tiny"


PLAIN = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=8)
    | st.builds(lambda n: torch.zeros(n), st.integers(0, 3)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


@FEW
@given(config=PLAIN, state=PLAIN, meta=PLAIN, version=st.sampled_from([1, 0, 2, "1", None]),
       tag=st.sampled_from([W.FORMAT, "npp_plugin.proxy", None]))
def test_weights_with_arbitrary_contents_are_refused(config, state, meta, version, tag):
    """A torch file with the right tag but anything inside: only WeightsError."""
    buf = io.BytesIO()
    torch.save({"format": tag, "format_version": version, "config": config, "state_dict": state,
                "meta": meta}, buf)
    assert _read(buf.getvalue()) is None
