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

import numpy as np

from npp_plugin import Codec, Param, hookimpl

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
        quality = qp_to_quality(self.validate_qp(qp))
        scale = 5000.0 / quality if quality < 50 else 200.0 - 2.0 * quality
        steps = [min(255.0, max(1.0, (t * scale + 50.0) // 100.0)) for t in _IJG_LUMA[1:]]
        return float(sum(steps) / len(steps))

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
        from PIL import Image

        with Image.open(io.BytesIO(data), formats=["JPEG"]) as im:
            im.load()
            return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))

    @classmethod
    def _check(cls, data: bytes, /) -> bool:
        return data[:3] == b"\xff\xd8\xff"

    def info(self, data: bytes, /) -> dict:
        from PIL import Image

        data = self.validate_data(data)
        try:
            with Image.open(io.BytesIO(data), formats=["JPEG"]) as im:
                sub = {0: "444", 1: "422", 2: "420"}.get(_subsampling(im))
                return {"codec": self.name, "width": im.width, "height": im.height, "bytes": len(data),
                        "mode": im.mode, "chroma": sub}
        except Exception as exc:
            from npp_plugin.errors import CorruptStreamError

            msg = f"{self.name}: cannot read header: {exc}"
            raise CorruptStreamError(msg, codec=self.name) from exc


def _subsampling(im) -> int | None:
    from PIL import JpegImagePlugin

    try:
        return JpegImagePlugin.get_sampling(im)
    except Exception:
        return None


@hookimpl
def npp_register_codecs(register) -> None:
    register(JpegCodec)
