"""HEVC still images in HEIF as an npp_plugin codec, through pillow-heif.

``qp`` is x265's constant QP (0..51), passed as the encoder parameter ``x265:qp``; it
overrides libheif's ``quality`` (checked: any quality gives the same file at a fixed QP).
pillow-heif ships its own libheif, x265 and libde265, independent of the system's.
"""

from __future__ import annotations

import io

import numpy as np

from npp_plugin import Codec, Param, hookimpl
from npp_plugin.codec import HeaderSize

__all__ = ["HeifCodec"]

_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")


class HeifCodec(Codec):
    """HEIF (HEVC intra) via pillow-heif."""

    name = "heif"
    description = "HEVC intra in HEIF via pillow-heif (libheif + x265); qp = x265 constant QP"
    extensions = (".heic", ".heif")
    mime = "image/heic"
    qp_range = (0, 51)
    max_size = 16384
    params = {
        "chroma": Param("420", choices=("420", "422", "444"), doc="chroma subsampling"),
        "preset": Param("medium", choices=_PRESETS, doc="x265 speed preset"),
    }

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            import pillow_heif  # noqa: F401
        except ImportError as exc:
            return f"pillow-heif is not importable ({exc}); pip install pillow-heif"
        return None

    def version(self) -> str:
        import pillow_heif

        info = pillow_heif.libheif_info()
        return f"pillow-heif {pillow_heif.__version__}, libheif {info.get('libheif')}"

    def _encode(self, rgb: np.ndarray, /, *, qp: int, chroma: str, preset: str) -> bytes:
        import pillow_heif

        h, w = rgb.shape[:2]
        heif = pillow_heif.from_bytes(mode="RGB", size=(w, h), data=rgb.tobytes())
        buf = io.BytesIO()
        heif.save(buf, quality=50, chroma=int(chroma), enc_params={"x265:qp": str(qp), "preset": preset})
        return buf.getvalue()

    def _decode(self, data: bytes, /, *, high_bit_depth: bool) -> np.ndarray:
        import pillow_heif

        heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=not high_bit_depth)
        img = heif[heif.primary_index] if len(heif) > 1 else heif
        mode = img.mode
        arr = np.asarray(img)
        if mode.startswith("RGBA"):
            arr = arr[..., :3]
        if arr.dtype == np.uint16 and not high_bit_depth:
            arr = (arr >> 8).astype(np.uint8)
        return np.ascontiguousarray(arr)

    def _header_size(self, data: bytes, /) -> HeaderSize:
        # libheif reads the boxes (the primary image's ispe) and decodes nothing until the
        # pixels are asked for. No data-length bound: a derived image (an iovl overlay) may
        # legitimately be a large canvas made from a small coded tile.
        import pillow_heif

        heif = pillow_heif.open_heif(io.BytesIO(data))
        w, h = heif.size
        return HeaderSize(w, h)

    @classmethod
    def _check(cls, data: bytes, /) -> bool:
        # ISO BMFF 'ftyp' box with a HEIF brand
        return data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"mif1", b"heim", b"heis", b"msf1", b"hevc")

    def info(self, data: bytes, /) -> dict:
        import pillow_heif

        data = self.validate_data(data)
        try:
            heif = pillow_heif.open_heif(io.BytesIO(data))
        except Exception as exc:
            from npp_plugin.errors import CorruptStreamError

            msg = f"{self.name}: cannot read header: {exc}"
            raise CorruptStreamError(msg, codec=self.name) from exc
        w, h = heif.size
        return {"codec": self.name, "width": w, "height": h, "bytes": len(data), "mode": heif.mode,
                "images": len(heif)}


@hookimpl
def npp_register_codecs(register) -> None:
    register(HeifCodec)
