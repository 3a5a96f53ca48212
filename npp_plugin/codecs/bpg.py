"""BPG, in-process: the built-in codec plugin ``"bpg"``.

BPG is one HEVC intra picture in a small container (Bellard's libbpg). Here it runs on our
own C library (``native/``, loaded with ctypes from :mod:`npp_plugin._native.binding`) over
Debian's libx265 and libde265, so no process is started per image. Decoding is bit-exact
with the reference ``bpgdec``; the encoder prepares x265's input exactly as ``bpgenc``
does (RGB -> YCbCr, chroma decimation, padding) and drives x265 as ``bpgenc`` does.

    >>> codec = get_codec("bpg")                 # bpgenc defaults: 4:2:0, 8 bit, level 8
    >>> data = codec.encode(rgb, qp=34)
    >>> fast = get_codec("bpg", fast=True)       # for training loops (x265 ultrafast, CTU 16)
    >>> recon, bits = fast.roundtrip(batch, qp=34)   # whole batch, one thread per core

``qp`` is HEVC's QP (0..51), exactly ``bpgenc -q``.
"""

from __future__ import annotations

import atexit
import ctypes
import threading
from collections import OrderedDict
from contextlib import contextmanager
from ctypes import byref, c_size_t, c_void_p
from typing import Any, ClassVar

import numpy as np

from ..codec import Codec, HeaderSize, Param, default_workers
from ..errors import InvalidArgumentError
from ..hookspecs import hookimpl

__all__ = ["BpgCodec", "npp_register_codecs"]

MAGIC = b"BPG\xfb"

_CHROMA = {"gray": 0, "420": 1, "422": 2, "444": 3, "420_video": 4, "422_video": 5}
_CHROMA_NAMES = {v: k for k, v in _CHROMA.items()}
_COLOR_SPACES = {"ycbcr": 0, "rgb": 1, "ycgco": 2, "ycbcr_bt709": 3, "ycbcr_bt2020": 4}
_COLOR_NAMES = {v: k for k, v in _COLOR_SPACES.items()}
_EXTENSION_TAGS = {1: "exif", 2: "icc", 3: "xmp", 4: "thumbnail", 5: "animation"}


def _lib():
    from .._native import binding as native

    return native


class _EncoderPool:
    """Reusable native encoders keyed by (configuration, padded size).

    Opening x265 costs more than encoding a 256x256 picture at the fast setting (and
    x265 3.5 leaks ~1-2 kB per open), so encoders are kept between calls. A handle is
    lent to one thread at a time; at most ``max_keys`` configurations are kept (least
    recently used dropped) with up to one idle handle per worker thread each (for pictures
    above 2 MP the native encoder closes its x265 instance after each picture itself).
    """

    def __init__(self, max_keys: int = 16) -> None:
        self._lock = threading.Lock()
        self._idle: OrderedDict[tuple, list] = OrderedDict()
        self._max_keys = max_keys

    @contextmanager
    def borrow(self, params, shape: tuple[int, ...], count: int = 1):
        """Lend ``count`` encoders for ``params`` and pictures of ``shape`` (H, W, ...),
        made by the library loaded now (``$NPP_BPG_LIBRARY`` may name another one)."""
        config = tuple(getattr(params, f) for f, _ in params._fields_ if f != "qp")
        key = (id(_lib().get_lib()), config, (shape[0] + 7) // 8, (shape[1] + 7) // 8)
        with self._lock:
            idle = self._idle.get(key, [])
            encoders = [idle.pop() for _ in range(min(count, len(idle)))]
        try:
            while len(encoders) < count:
                encoders.append(_lib().Encoder(params))
            yield encoders
        finally:
            for enc in encoders:
                self._give_back(key, enc)

    def _give_back(self, key: tuple, enc) -> None:
        evicted = []
        with self._lock:
            idle = self._idle.setdefault(key, [])
            self._idle.move_to_end(key)
            if len(idle) < default_workers():
                idle.append(enc)
                enc = None
            while len(self._idle) > self._max_keys:
                evicted.extend(self._idle.popitem(last=False)[1])
        for e in [*evicted, enc]:
            if e is not None:
                e.close()

    def clear(self) -> None:
        with self._lock:
            handles = [e for idle in self._idle.values() for e in idle]
            self._idle.clear()
        for e in handles:
            e.close()


_POOL = _EncoderPool()
atexit.register(_POOL.clear)  # free the x265 instances while the library is still loaded


class BpgCodec(Codec):
    """BPG on libx265 (encoder) and libde265 (decoder), options as ``bpgenc``.

    Options (constructor or per call):
        chroma: ``"420"`` (default, JPEG siting), ``"422"``, ``"444"``, ``"gray"``
            (luma of the colour matrix only), ``"420_video"`` / ``"422_video"`` (MPEG-2 siting).
        bit_depth: 8 (default), 10 or 12 bits per coded sample.
        color_space: ``"ycbcr"`` (BT.601, default), ``"rgb"`` (implies 4:4:4, as
            ``bpgenc -c rgb``), ``"ycgco"``, ``"ycbcr_bt709"``, ``"ycbcr_bt2020"``.
        limited_range: video range (16..235) instead of full range.
        lossless: ``bpgenc -lossless``: RGB colour space, 4:4:4, 8 bit, full range and
            x265's lossless mode; decoding returns the input exactly (chroma,
            color_space, bit_depth and limited_range are then ignored, and so is the QP:
            x265 makes its lossless mode decisions at QP 4, as with ``bpgenc -lossless``).
        level: compression effort 1..9 mapped to x265 presets like ``bpgenc -m``
            (1 superfast ... 8 veryslow, the default, ... 9 placebo).
        fast: **the fast setting for training loops**: x265's ``ultrafast`` preset with a
            16x16 CTU (``level`` is ignored; every CU 16x16, no SAO, no RDOQ): a fraction of
            level 8's encoding time for a higher BD-rate (the measured figures: docs/bpg.md, "BPG
            in-process"). Still a standard BPG file that any decoder reads.
        hash: add the MD5 picture-hash SEI (``bpgenc -hash``); decoding then verifies it.
    """

    name: ClassVar[str] = "bpg"
    description: ClassVar[str] = "BPG (HEVC intra) in-process on libx265 + libde265"
    extensions: ClassVar[tuple[str, ...]] = (".bpg",)
    mime: ClassVar[str] = "image/bpg"
    qp_range: ClassVar[tuple[int, int]] = (0, 51)
    max_size: ClassVar[int] = 65535
    _checks_values_in_roundtrip: ClassVar[bool] = True  # npp_bpg_roundtrip_batch does
    params: ClassVar[dict[str, Param]] = {
        "chroma": Param("420", choices=tuple(_CHROMA), doc="chroma format"),
        "bit_depth": Param(8, choices=(8, 10, 12), doc="coded bits per sample"),
        "color_space": Param("ycbcr", choices=tuple(_COLOR_SPACES), doc="colour space"),
        "limited_range": Param(False, doc="video (limited) range"),
        "lossless": Param(False, doc="bpgenc -lossless"),
        "level": Param(8, range=(1, 9), doc="bpgenc -m: x265 preset superfast..placebo"),
        "fast": Param(False, doc="x265 ultrafast with 16x16 CTUs, for training loops"),
        "hash": Param(False, doc="MD5 picture hash SEI"),
    }

    # -- availability -----------------------------------------------------------------

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return _lib().unavailable_reason()

    def version(self) -> str:
        native = _lib()
        return native.get_lib().npp_bpg_version().decode()

    @staticmethod
    def x265_lambda(bit_depth: int = 8) -> str:
        """Which lambda tables x265 uses in this process for ``bit_depth``:

        * ``"bpgenc"`` (the default): x265 3.5's tables shifted by one QP, so that a QP
          gives the rate and quality ``bpgenc -q`` gives with libbpg's bundled x265 (how close,
          and how far apart unshifted: docs/bpg.md, "BPG in-process"; ``native/bpg_lambda.c``);
        * ``"x265"``: x265's own, because ``NPP_BPG_X265_LAMBDA=x265`` was set when the first
          encoder of that bit depth opened;
        * ``"x265 (tables not found)"``: this libx265 does not export its tables, or they
          are not the ones the shift was measured on.

        x265 keeps the tables process-wide, so the choice is made once per process and bit
        depth (this call makes it if no encoder has yet).
        """
        native = _lib()
        lib = native.get_lib()
        state = ctypes.c_int()
        err, err_ref = native.new_errmsg()
        native.check_status(lib, lib.npp_bpg_x265_lambda(bit_depth, byref(state), err_ref), err,
                            action="x265_lambda")
        return ("bpgenc", "x265", "x265 (tables not found)")[state.value]

    # -- options -> C parameters --------------------------------------------------------

    def _native_params(self, qp: int, opts: dict[str, Any]):
        native = _lib()
        p = native.EncodeParams()
        p.qp = qp
        p.pixel_format = _CHROMA[opts["chroma"]]
        p.bit_depth = opts["bit_depth"]
        p.color_space = _COLOR_SPACES[opts["color_space"]]
        p.limited_range = int(opts["limited_range"])
        p.lossless = int(opts["lossless"])
        p.level = 0 if opts["fast"] else opts["level"]
        p.hash = int(opts["hash"])
        if opts["lossless"]:
            p.pixel_format, p.color_space, p.bit_depth, p.limited_range = 3, 1, 8, 0
        elif opts["color_space"] == "rgb":
            if opts["chroma"] == "gray":
                msg = "bpg: chroma='gray' needs a YCbCr or YCgCo color_space, not 'rgb'"
                raise InvalidArgumentError(
                    msg, codec=self.name, argument="color_space",
                    allowed=tuple(c for c in _COLOR_SPACES if c != "rgb"),
                )
            p.pixel_format = 3  # as bpgenc -c rgb: RGB planes are never subsampled
        return p

    # -- the codec contract -------------------------------------------------------------

    def _encode(self, rgb: np.ndarray, /, *, qp: int, **opts: Any) -> bytes:
        lib = _lib().get_lib()
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        with _POOL.borrow(self._native_params(qp, opts), rgb.shape) as (encoder,):
            ptr, n = encoder.encode(rgb, qp)
        try:
            return ctypes.string_at(ptr.value, n.value)
        finally:
            lib.npp_bpg_free(ptr)

    @staticmethod
    def _encode_raw(lib, rgb: np.ndarray, params) -> tuple[c_void_p, c_size_t]:
        """One-shot ``npp_bpg_encode`` into a library-owned buffer; the caller frees ``ptr``.
        (The codec itself uses pooled encoders, which give the same bytes.)"""
        native = _lib()
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        h, w = rgb.shape[:2]
        out, n = c_void_p(), c_size_t()
        err, err_ref = native.new_errmsg()
        status = lib.npp_bpg_encode(
            rgb.ctypes.data, w, h, 3, rgb.strides[0], byref(params), byref(out), byref(n), err_ref
        )
        native.check_status(lib, status, err, action="encode")
        return out, n

    def _header_size(self, data: bytes, /) -> HeaderSize:
        # The file header alone. The data-length bound needs the compact HEVC header too: the
        # library checks it (NPP_BPG_DECODE_CHECK_ONLY) before the output is allocated.
        info = self._get_info(data, action="decode")
        return HeaderSize(info.width, info.height)

    def _get_info(self, data: bytes, *, action: str):
        native = _lib()
        lib = native.get_lib()
        info = native.Info()
        err, err_ref = native.new_errmsg()
        native.check_status(lib, lib.npp_bpg_get_info(data, len(data), byref(info), err_ref), err,
                            action=action)
        return info

    def _decode(self, data: bytes, /, *, high_bit_depth: bool) -> np.ndarray:
        native = _lib()
        # Outside data is verified: libde265 alone would decode a file cut inside its
        # slice data to garbage without complaint (see NPP_BPG_DECODE_VERIFY). The pixel
        # limit was applied by Codec.decode, so the library is given none of its own.
        return self._decode_ptr(native.get_lib(), data, len(data), high_bit_depth,
                                native.DECODE_VERIFY, native.NO_PIXEL_LIMIT)

    @staticmethod
    def _decode_ptr(lib, data, size: int, high_bit_depth: bool, flags: int,
                    max_pixels: int = 0) -> np.ndarray:
        """Decode from ``data`` (bytes or an address) straight into a numpy array. The file is
        checked (pixel limit ``max_pixels``, 0 = the library's default; a data length that
        can hold the picture) before the array is allocated."""
        native = _lib()
        info = native.Info()
        err, err_ref = native.new_errmsg()
        status = lib.npp_bpg_decode_into(data, size, 8, native.DECODE_CHECK_ONLY, max_pixels,
                                         None, 0, byref(info), err_ref)
        native.check_status(lib, status, err, action="decode", info=info, max_pixels=max_pixels)
        wide = high_bit_depth and info.bit_depth > 8
        out = np.empty((info.height, info.width, 3), dtype=np.uint16 if wide else np.uint8)
        err, err_ref = native.new_errmsg()
        status = lib.npp_bpg_decode_into(
            data, size, 16 if wide else 8, flags, max_pixels, out.ctypes.data, out.nbytes,
            byref(info), err_ref
        )
        native.check_status(lib, status, err, action="decode", info=info, max_pixels=max_pixels)
        return out

    @classmethod
    def _check(cls, data: bytes, /) -> bool:
        return bytes(data[:4]) == MAGIC

    def info(self, data: bytes, /) -> dict[str, Any]:
        """Header fields of a BPG file, without decoding the picture.

        Returns:
            dict with ``codec``, ``width``, ``height``, ``bytes``, ``chroma`` (a ``chroma``
            option value), ``bit_depth``, ``color_space``, ``limited_range``, ``alpha``,
            ``premultiplied_alpha``, ``animation`` and ``extensions`` (names of the
            extension records present).

        Raises:
            CorruptStreamError: not a BPG file, or a truncated/invalid header.
        """
        data = self.validate_data(data)
        self.require_available()
        info = self._get_info(data, action="info")
        tags = [
            _EXTENSION_TAGS.get(t, f"tag{t}") for t in range(32) if info.extension_tags >> t & 1
        ]
        return {
            "codec": self.name,
            "width": info.width,
            "height": info.height,
            "bytes": len(data),
            "chroma": _CHROMA_NAMES[info.pixel_format],
            "bit_depth": info.bit_depth,
            "color_space": _COLOR_NAMES[info.color_space],
            "limited_range": bool(info.limited_range),
            "alpha": bool(info.has_alpha),
            "premultiplied_alpha": bool(info.has_alpha and info.alpha2),
            "cmyk": bool(info.alpha2 and not info.has_alpha),
            "animation": bool(info.animation),
            "extensions": tags,
        }

    # -- batches ------------------------------------------------------------------------

    def _roundtrip_tensor(self, batch, qp: int, opts: dict[str, Any], workers: int | None, *, u8: bool = False):
        """The whole batch in one native call (``npp_bpg_roundtrip_batch``, or ``_u8``
        writing the decoded samples as uint8): one C thread
        per core by default, each with its own pooled encoder, the GIL released throughout.
        The batch is read in place whatever its strides (a channels-last view of HWC images
        is not copied) and its values are checked on the way. The float <-> uint8
        conversions match :mod:`npp_plugin.images` exactly, and each bitstream is decoded
        once (no verification pass: our encoder made it just now)."""
        import torch

        native = _lib()
        lib = native.get_lib()
        x = batch.detach().to(device="cpu", dtype=torch.float32)
        n, _, h, w = x.shape
        strides = (ctypes.c_int64 * 4)(*x.stride())
        out = torch.empty((n, 3, h, w), dtype=torch.uint8 if u8 else torch.float32)
        nbytes = np.zeros(n, dtype=np.uint64)
        k = max(1, min(n, workers or default_workers()))
        with _POOL.borrow(self._native_params(qp, opts), (h, w), count=k) as encoders:
            handles = (native.EncoderRef * k)(*(e.handle for e in encoders))
            err, err_ref = native.new_errmsg()
            call = lib.npp_bpg_roundtrip_batch_u8 if u8 else lib.npp_bpg_roundtrip_batch
            status = call(handles, k, x.data_ptr(), strides, n, h, w, qp, out.data_ptr(), nbytes.ctypes.data,
                          err_ref)
            # argument errors here are about the images: their values or their size
            native.check_status(lib, status, err, action="roundtrip", argument="image")
        bits = torch.from_numpy(nbytes.astype(np.float64) * 8.0)
        return out if u8 else out.to(device=batch.device, dtype=batch.dtype), bits


@hookimpl
def npp_register_codecs(register) -> None:
    register(BpgCodec)
