"""JPEG as an npp_plugin codec: libjpeg-turbo through Pillow.

QP → quality. HEVC's quantiser step doubles every 6 QP; JPEG's quantisation tables are the
standard tables scaled by ``S = 5000 / quality`` (quality < 50) or ``S = 200 − 2·quality``
(percent). We give JPEG the same law, ``S(qp) = 100 % · 2^((qp − 30) / 6)``, and invert
Pillow's scaling to get the quality: QP 30 → quality 50, each 6 QP halves/doubles the step.

    qp       0   12   18   24   28   30   34   37   41   46   51
    quality 98   94   88   75   60   50   31   22   14    8    4

The mapping is monotone (never increasing with QP), clipped to quality 1..100.
"""

from __future__ import annotations

import io
from typing import NoReturn

import numpy as np

from npp_plugin import Codec, Param, hookimpl
from npp_plugin.codec import HeaderSize
from npp_plugin.errors import CorruptStreamError

__all__ = ["JpegCodec", "qp_to_quality"]


def qp_to_quality(qp: int) -> int:
    """JPEG quality (1..100) whose quantiser scale follows HEVC's step law at ``qp``."""
    scale = 100.0 * 2.0 ** ((qp - 30) / 6.0)
    quality = 5000.0 / scale if scale > 100.0 else (200.0 - scale) / 2.0
    return int(min(100, max(1, round(quality))))


# the IJG/Annex K luminance table, row-major (DC first)
_IJG_LUMA = (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
             14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
             49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)

# the IJG/Annex K chrominance table, row-major
_IJG_CHROMA = (17, 18, 24, 47, *[99] * 4, 18, 21, 26, 66, *[99] * 4, 24, 26, 56, *[99] * 5, 47, 66, *[99] * 38)


def _scaled(table: tuple[int, ...], quality: int) -> list[float]:
    """libjpeg's jpeg_set_quality scaling of a table (baseline: steps clamped to 1..255)."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality  # integer arithmetic, as libjpeg
    return [float(min(255, max(1, (t * scale + 50) // 100))) for t in table]


class JpegCodec(Codec):
    """Baseline JPEG (libjpeg-turbo), 4:2:0 by default."""

    name = "jpeg"
    description = "JPEG via Pillow/libjpeg-turbo; qp mapped to quality by HEVC's step law"
    extensions = (".jpg", ".jpeg")
    mime = "image/jpeg"
    qp_range = (0, 51)
    max_size = 65535
    params = {
        "chroma": Param("420", choices=("420", "422", "444"), doc="chroma subsampling"),
        "optimize": Param(False, doc="optimised Huffman tables (smaller, slower)"),
        "progressive": Param(False, doc="progressive scan order"),
    }

    def version(self) -> str:
        from PIL import features

        return f"libjpeg-turbo {features.version('libjpeg_turbo') or features.version_codec('jpg')}"

    def quant_step(self, qp: int) -> float:
        """Mean AC step of the IJG luma table at this QP's quality (libjpeg's scaling)."""
        steps = _scaled(_IJG_LUMA, qp_to_quality(self.validate_qp(qp)))[1:]
        return float(sum(steps) / len(steps))

    def quant_table(self, qp: int) -> tuple[np.ndarray, np.ndarray]:
        """The luma and chroma tables libjpeg quantises with at this QP's quality (JPEG's
        DCT is the orthonormal one, so the steps apply to its coefficients as they are)."""
        quality = qp_to_quality(self.validate_qp(qp))
        return tuple(np.asarray(_scaled(t, quality)).reshape(8, 8) for t in (_IJG_LUMA, _IJG_CHROMA))

    def _encode(self, rgb: np.ndarray, /, *, qp: int, chroma: str, optimize: bool, progressive: bool) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(rgb, "RGB").save(
            buf,
            format="JPEG",
            quality=qp_to_quality(qp),
            subsampling={"444": 0, "422": 1, "420": 2}[chroma],
            optimize=optimize,
            progressive=progressive,
        )
        return buf.getvalue()

    def _decode(self, data: bytes, /, *, high_bit_depth: bool) -> np.ndarray:
        from PIL import JpegImagePlugin

        # The plugin class itself, not Image.open: Codec.decode has applied our pixel limit,
        # and Image.open would apply Pillow's process-wide MAX_IMAGE_PIXELS on top of it.
        with JpegImagePlugin.JpegImageFile(io.BytesIO(data)) as im:
            im.load()
            return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))

    def _header_size(self, data: bytes, /) -> HeaderSize:
        return _frame_header(data)

    @classmethod
    def _check(cls, data: bytes, /) -> bool:
        return data[:3] == b"\xff\xd8\xff"

    def info(self, data: bytes, /) -> dict:
        from PIL import JpegImagePlugin

        data = self.validate_data(data)
        try:
            with JpegImagePlugin.JpegImageFile(io.BytesIO(data)) as im:  # header only
                sub = {0: "444", 1: "422", 2: "420"}.get(_subsampling(im))
                return {"codec": self.name, "width": im.width, "height": im.height, "bytes": len(data),
                        "mode": im.mode, "chroma": sub}
        except Exception as exc:
            from npp_plugin.errors import CorruptStreamError

            msg = f"{self.name}: cannot read header: {exc}"
            raise CorruptStreamError(msg, codec=self.name) from exc


# SOFn markers (ITU T.81 B.1.1.3): C0-C3, C5-C7 Huffman-coded, C9-CB, CD-CF arithmetic-coded.
_HUFFMAN_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7}
_ARITHMETIC_SOF = {0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM, RST0-7: no length field


def _corrupt(why: str) -> NoReturn:
    msg = f"jpeg: {why}"
    raise CorruptStreamError(msg, codec="jpeg")


def _frame_header(data: bytes) -> HeaderSize:
    """The frame size of a JPEG file from its markers up to the first scan (nothing decoded),
    with the fewest bytes that can hold it: a Huffman-coded scan codes every 8x8 block of
    every component it covers with a code of at least one bit, and an MCU (at most 4x4
    blocks per component) covers at most 32x32 pixels, so at least one bit per 32x32 pixels
    follows the scan header. Arithmetic coding has no such bound."""
    if data[:2] != b"\xff\xd8":
        _corrupt("no SOI marker")
    pos, frame = 2, None
    while True:
        if pos + 2 > len(data):
            _corrupt(f"the file ends at byte {len(data)} before the first scan")
        if data[pos] != 0xFF:
            _corrupt(f"expected a marker at byte {pos}, found 0x{data[pos]:02x}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker == 0xD9:
            _corrupt("EOI before any scan")
        if pos + 4 > len(data):
            _corrupt(f"marker 0x{marker:02x} at byte {pos} is truncated")
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if length < 2 or pos + 2 + length > len(data):
            _corrupt(f"marker 0x{marker:02x} at byte {pos} has length {length}, past the end")
        if marker in _HUFFMAN_SOF or marker in _ARITHMETIC_SOF:
            if length < 8:
                _corrupt(f"frame header of {length} bytes is too short")
            height = int.from_bytes(data[pos + 5:pos + 7], "big")
            width = int.from_bytes(data[pos + 7:pos + 9], "big")
            frame = (marker, width, height)
        if marker == 0xDA:  # SOS: entropy-coded data follows
            if frame is None:
                _corrupt("scan before the frame header (SOF)")
            break
        pos += 2 + length
    marker, width, height = frame
    if width == 0 or height == 0:
        _corrupt(f"frame header claims {width}x{height} (a height defined by DNL is not supported)")
    scan_data = pos + 2 + length
    if marker in _ARITHMETIC_SOF:
        return HeaderSize(width, height)
    mcus = -(-width // 32) * -(-height // 32)
    return HeaderSize(width, height, scan_data + -(-mcus // 8))


def _subsampling(im) -> int | None:
    from PIL import JpegImagePlugin

    try:
        return JpegImagePlugin.get_sampling(im)
    except Exception:
        return None


@hookimpl
def npp_register_codecs(register) -> None:
    register(JpegCodec)
