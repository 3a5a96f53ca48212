"""Pillow bridge for BPG (Pillow's format-plugin pattern, as pillow-heif's opener).

    >>> import npp_plugin
    >>> npp_plugin.register_bpg_opener()
    >>> im = Image.open("x.bpg")                    # decoded by our native library
    >>> im.save("y.bpg", qp=30, level=5)            # any BpgCodec option as a keyword

Decoded images are mode ``RGB`` (``L`` for grayscale BPG files). Saving takes ``qp``
(default 29, bpgenc's) and the :class:`~npp_plugin.codecs.bpg.BpgCodec` options;
``L`` images are stored as grayscale BPG.
"""

from __future__ import annotations

from typing import IO, Any

from PIL import Image, ImageFile

from .bpg import BpgCodec

__all__ = ["BpgImageFile", "register"]

FORMAT = "BPG"
DEFAULT_QP = 29  # bpgenc -q default


def _codec(**options: Any) -> BpgCodec:
    return BpgCodec(**options)


class BpgImageFile(ImageFile.ImageFile):
    """A BPG file opened by Pillow; pixels are decoded on ``load()``."""

    format = FORMAT
    format_description = "Better Portable Graphics (HEVC intra)"

    def _open(self) -> None:
        self._bpg_data: bytes | None = self.fp.read()
        info = _codec().info(self._bpg_data)  # header only; raises CorruptStreamError
        self._size = (info["width"], info["height"])
        self._mode = "L" if info["chroma"] == "gray" else "RGB"
        self.info["bpg"] = info
        self.tile = []

    def load(self):
        if self._bpg_data is not None:
            rgb = _codec().decode(self._bpg_data)
            self._bpg_data = None
            pixels = rgb[:, :, 0].copy() if self.mode == "L" else rgb
            self.load_prepare()
            self.frombytes(pixels.tobytes())
        return super().load()


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    opts = {k: v for k, v in im.encoderinfo.items() if k in BpgCodec.params}
    qp = im.encoderinfo.get("qp", DEFAULT_QP)
    if im.mode == "L":
        opts.setdefault("chroma", "gray")
    # BpgCodec.encode converts other modes to RGB, or refuses alpha with a clear error.
    fp.write(_codec(**opts).encode(im, qp=qp))


def register() -> None:
    """Register BPG with Pillow: open, save, the ``.bpg`` extension and its MIME type.

    Idempotent; called by :func:`npp_plugin.register_bpg_opener`.
    """
    # magic bytes, extension and MIME type are the codec's (one place: codecs/bpg.py)
    Image.register_open(FORMAT, BpgImageFile, BpgCodec.check)
    Image.register_save(FORMAT, _save)
    Image.register_extensions(FORMAT, list(BpgCodec.extensions))
    Image.register_mime(FORMAT, BpgCodec.mime)
