"""ctypes binding of ``libnpp_bpg`` (C sources in ``native/``, API in ``native/npp_bpg.h``).

Locating: ``$NPP_BPG_LIBRARY`` if set, else ``libnpp_bpg.so`` inside this package
(``importlib.resources``). Loading is lazy (first use), thread-safe and probed with
``npp_bpg_version``/``npp_bpg_abi``; every failure becomes one
:class:`~npp_plugin.errors.NativeLibraryError` listing the likely causes.

Calls go through :class:`ctypes.CDLL`, which releases the GIL for their duration; calls
share no state that they change, so encodes and decodes run in parallel threads. One
process-wide change is the library's: before the first encoder of a bit depth opens, it
shifts x265's lambda tables (globals of libx265) by one QP, once per process and bit
depth, so that a QP gives ``bpgenc``'s rate and quality; every x265 encoder in the process
then uses them (``NPP_BPG_X265_LAMBDA=x265`` keeps x265's own;
:meth:`~npp_plugin.codecs.bpg.BpgCodec.x265_lambda` says which are in use).
Ownership: buffers and messages the library returns are copied, then released with
``npp_bpg_free`` in a ``finally``.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from ctypes import (
    POINTER,
    Structure,
    byref,
    c_char_p,
    c_int,
    c_int64,
    c_size_t,
    c_ssize_t,
    c_uint32,
    c_uint64,
    c_void_p,
)
from importlib import resources
from pathlib import Path

from ..errors import (
    CodecError,
    CorruptStreamError,
    InvalidArgumentError,
    NativeLibraryError,
    PixelLimitError,
)

__all__ = [
    "ABI",
    "ENV_VAR",
    "EncodeParams",
    "Encoder",
    "Info",
    "check_status",
    "get_lib",
    "library_name",
    "library_path",
    "unavailable_reason",
]

#: Environment variable naming the library file to load instead of the packaged one.
ENV_VAR = "NPP_BPG_LIBRARY"
#: NPP_BPG_ABI in native/npp_bpg.h: the struct layouts and prototypes below match it.
ABI = 7

# Status codes and flags of native/npp_bpg.h.
OK, ERR_ARGUMENT, ERR_NOMEM, ERR_CORRUPT, ERR_UNSUPPORTED, ERR_ENCODER, ERR_DECODER, ERR_LIMIT = range(8)
DECODE_VERIFY = 1
DECODE_CHECK_ONLY = 2
#: max_pixels values: the library's default limit (NPP_BPG_DEFAULT_MAX_PIXELS), none at all.
DEFAULT_MAX_PIXELS, NO_PIXEL_LIMIT = 0, 2**64 - 1
LIBRARY_MAX_PIXELS = 178_956_970


class EncodeParams(Structure):
    """``npp_bpg_encode_params``."""

    _fields_ = [
        ("qp", c_int),
        ("pixel_format", c_int),
        ("bit_depth", c_int),
        ("color_space", c_int),
        ("limited_range", c_int),
        ("lossless", c_int),
        ("level", c_int),
        ("hash", c_int),
    ]


class Info(Structure):
    """``npp_bpg_info``."""

    _fields_ = [
        ("width", c_int),
        ("height", c_int),
        ("pixel_format", c_int),
        ("bit_depth", c_int),
        ("color_space", c_int),
        ("limited_range", c_int),
        ("has_alpha", c_int),
        ("alpha2", c_int),
        ("animation", c_int),
        ("has_extension", c_int),
        ("extension_tags", c_uint32),
        ("loop_count", c_int),
        ("frame_period_num", c_int),
        ("frame_period_den", c_int),
        ("header_size", c_size_t),
    ]


class _OpaqueEncoder(Structure):
    """``struct npp_bpg_encoder`` (opaque)."""


EncoderRef = POINTER(_OpaqueEncoder)


def library_name() -> str:
    if sys.platform == "darwin":
        return "libnpp_bpg.dylib"
    if sys.platform == "win32":
        return "npp_bpg.dll"
    return "libnpp_bpg.so"


def library_path() -> Path:
    """Where the library is loaded from (the environment override wins)."""
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override)
    return Path(str(resources.files("npp_plugin._native") / library_name()))


def _declare(lib: ctypes.CDLL) -> None:
    """All prototypes, in one place; the C declaration is quoted above each."""
    errmsg = POINTER(c_void_p)  # char **errmsg, allocated by the library

    # const char *npp_bpg_version(void);   -- static string, not freed
    lib.npp_bpg_version.argtypes = []
    lib.npp_bpg_version.restype = c_char_p
    # int npp_bpg_abi(void);
    lib.npp_bpg_abi.argtypes = []
    lib.npp_bpg_abi.restype = c_int
    # void npp_bpg_default_params(npp_bpg_encode_params *params);
    lib.npp_bpg_default_params.argtypes = [POINTER(EncodeParams)]
    lib.npp_bpg_default_params.restype = None
    # int npp_bpg_encode(const uint8_t *pixels, int width, int height, int channels,
    #                    ptrdiff_t stride, const npp_bpg_encode_params *params,
    #                    uint8_t **out, size_t *out_len, char **errmsg);
    lib.npp_bpg_encode.argtypes = [
        c_void_p, c_int, c_int, c_int, c_ssize_t, POINTER(EncodeParams),
        POINTER(c_void_p), POINTER(c_size_t), errmsg,
    ]
    lib.npp_bpg_encode.restype = c_int
    # int npp_bpg_encoder_new(const npp_bpg_encode_params *params, npp_bpg_encoder **enc,
    #                         char **errmsg);
    lib.npp_bpg_encoder_new.argtypes = [POINTER(EncodeParams), POINTER(EncoderRef), errmsg]
    lib.npp_bpg_encoder_new.restype = c_int
    # int npp_bpg_encoder_encode(npp_bpg_encoder *enc, const uint8_t *pixels, int width,
    #                            int height, int channels, ptrdiff_t stride, int qp,
    #                            uint8_t **out, size_t *out_len, char **errmsg);
    lib.npp_bpg_encoder_encode.argtypes = [
        EncoderRef, c_void_p, c_int, c_int, c_int, c_ssize_t, c_int, POINTER(c_void_p),
        POINTER(c_size_t), errmsg,
    ]
    lib.npp_bpg_encoder_encode.restype = c_int
    # void npp_bpg_encoder_free(npp_bpg_encoder *enc);
    lib.npp_bpg_encoder_free.argtypes = [EncoderRef]
    lib.npp_bpg_encoder_free.restype = None
    # int npp_bpg_get_info(const uint8_t *data, size_t len, npp_bpg_info *info, char **errmsg);
    lib.npp_bpg_get_info.argtypes = [c_void_p, c_size_t, POINTER(Info), errmsg]
    lib.npp_bpg_get_info.restype = c_int
    # int npp_bpg_decode(const uint8_t *data, size_t len, int out_bits, int flags,
    #                    uint64_t max_pixels, uint8_t **out, size_t *out_len,
    #                    npp_bpg_info *info, char **errmsg);
    lib.npp_bpg_decode.argtypes = [
        c_void_p, c_size_t, c_int, c_int, c_uint64, POINTER(c_void_p), POINTER(c_size_t),
        POINTER(Info), errmsg,
    ]
    lib.npp_bpg_decode.restype = c_int
    # int npp_bpg_decode_into(const uint8_t *data, size_t len, int out_bits, int flags,
    #                         uint64_t max_pixels, uint8_t *out, size_t out_size,
    #                         npp_bpg_info *info, char **errmsg);
    lib.npp_bpg_decode_into.argtypes = [
        c_void_p, c_size_t, c_int, c_int, c_uint64, c_void_p, c_size_t, POINTER(Info), errmsg,
    ]
    lib.npp_bpg_decode_into.restype = c_int
    # int npp_bpg_roundtrip_batch(npp_bpg_encoder *const *encoders, int n_encoders,
    #                             const float *in, const int64_t in_strides[4], int n,
    #                             int height, int width, int qp, float *out, uint64_t *bytes,
    #                             char **errmsg);
    lib.npp_bpg_roundtrip_batch.argtypes = [
        POINTER(EncoderRef), c_int, c_void_p, POINTER(c_int64), c_int, c_int, c_int, c_int, c_void_p,
        c_void_p, errmsg,
    ]
    lib.npp_bpg_roundtrip_batch.restype = c_int
    # int npp_bpg_roundtrip_batch_u8(... the same ..., uint8_t *out, uint64_t *bytes,
    #                                char **errmsg);
    lib.npp_bpg_roundtrip_batch_u8.argtypes = lib.npp_bpg_roundtrip_batch.argtypes
    lib.npp_bpg_roundtrip_batch_u8.restype = c_int
    # int npp_bpg_x265_lambda(int bit_depth, int *state, char **errmsg);
    lib.npp_bpg_x265_lambda.argtypes = [c_int, POINTER(c_int), errmsg]
    lib.npp_bpg_x265_lambda.restype = c_int
    # void npp_bpg_free(void *ptr);
    lib.npp_bpg_free.argtypes = [c_void_p]
    lib.npp_bpg_free.restype = None
    # const char *npp_bpg_error_argument(const char *errmsg);  -- inside errmsg, not freed
    lib.npp_bpg_error_argument.argtypes = [c_void_p]
    lib.npp_bpg_error_argument.restype = c_char_p


class _LibWrapper:
    """Loads the library on first use; remembers a failure so it is reported identically.
    Reloads only when ``$NPP_BPG_LIBRARY`` changes."""

    _UNSET = object()

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lib: ctypes.CDLL | None = None
        self._error: NativeLibraryError | None = None
        self._override: object = self._UNSET

    def get(self) -> ctypes.CDLL:
        override = os.environ.get(ENV_VAR)
        lib = self._lib
        if lib is not None and override == self._override:  # fast path, no lock
            return lib
        with self._lock:
            if override != self._override:  # first use, or NPP_BPG_LIBRARY changed
                self._lib, self._error = None, None
                try:
                    self._lib = _load(library_path())
                except NativeLibraryError as exc:
                    self._error = exc
                self._override = override
            if self._error is not None:
                raise self._error
            assert self._lib is not None
            return self._lib


def _load(path: Path) -> ctypes.CDLL:
    where = f"${ENV_VAR}={path}" if os.environ.get(ENV_VAR) else str(path)
    causes = (
        f"  - the file does not exist: build it with `python setup.py build_native` or "
        f"`pip install -e .` (needs a C compiler, pkg-config, libx265-dev, libde265-dev), or "
        f"point ${ENV_VAR} at a built libnpp_bpg;\n"
        "  - a dependency is missing at run time (libx265, libde265: `ldd` the file);\n"
        "  - the file is not readable, or built for another platform/architecture;\n"
        "  - the file is an older or foreign build without the npp_bpg_* API."
    )
    if not path.is_file():
        msg = f"bpg: native library not found at {where}. Likely causes:\n{causes}"
        raise NativeLibraryError(msg, codec="bpg")
    try:
        lib = ctypes.CDLL(str(path))
        _declare(lib)
        version = lib.npp_bpg_version()
        abi = lib.npp_bpg_abi()
    except (OSError, AttributeError) as exc:
        msg = f"bpg: cannot load the native library {where}: {exc}. Likely causes:\n{causes}"
        raise NativeLibraryError(msg, codec="bpg") from exc
    if abi != ABI or not version:
        msg = (
            f"bpg: native library {where} has ABI {abi}, this package needs {ABI}; "
            "rebuild it with `python setup.py build_native`"
        )
        raise NativeLibraryError(msg, codec="bpg")
    return lib


_wrapper = _LibWrapper()


def get_lib() -> ctypes.CDLL:
    """The loaded library (raises :class:`NativeLibraryError`)."""
    return _wrapper.get()


def unavailable_reason() -> str | None:
    """``None`` when the library loads, else the loader's error message."""
    try:
        get_lib()
    except NativeLibraryError as exc:
        return str(exc)
    return None


def take_message(lib: ctypes.CDLL, ptr: c_void_p) -> str:
    """Copy and free a library-allocated ``char *``."""
    return take_error(lib, ptr)[0]


def take_error(lib: ctypes.CDLL, ptr: c_void_p) -> tuple[str, str | None]:
    """Copy and free an error message of the library: its text and the argument it is about
    (``npp_bpg_error_argument``; None when it names none)."""
    if not ptr.value:
        return "", None
    try:
        argument = lib.npp_bpg_error_argument(ptr.value)
        text = ctypes.string_at(ptr.value).decode("utf-8", "replace")
        return text, None if argument is None else argument.decode("ascii", "replace")
    finally:
        lib.npp_bpg_free(ptr)


def check_status(lib: ctypes.CDLL, status: int, errmsg: c_void_p, *, action: str,
                 argument: str | None = None, info: Info | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Raise the typed error for a non-zero status (freeing the message). An argument error
    names the argument the library says it is about (``npp_bpg_error_argument``), else
    ``argument`` (default: ``action``); a limit error the size in ``info`` and ``max_pixels``."""
    message, named = take_error(lib, errmsg)
    if status == OK:
        return
    text = message or f"bpg: {action} failed with status {status}"
    if status == ERR_LIMIT and info is not None:
        raise PixelLimitError(text, codec="bpg", width=info.width, height=info.height,
                              limit=max_pixels or LIBRARY_MAX_PIXELS)
    if status == ERR_CORRUPT:
        raise CorruptStreamError(text, codec="bpg")
    if status == ERR_ARGUMENT:
        raise InvalidArgumentError(text, codec="bpg", argument=named or argument or action)
    raise CodecError(text, codec="bpg")


def new_errmsg() -> tuple[c_void_p, object]:
    """A ``char *`` slot and the ``byref`` to pass as ``char **errmsg``."""
    slot = c_void_p()
    return slot, byref(slot)


class Encoder:
    """A reusable native encoder (``npp_bpg_encoder *``): keeps x265 open between pictures
    of one size. Use it from one thread at a time; ``close()`` (or ``with``) frees it."""

    def __init__(self, params: EncodeParams) -> None:
        self._lib = get_lib()
        handle = EncoderRef()
        err, err_ref = new_errmsg()
        check_status(self._lib, self._lib.npp_bpg_encoder_new(byref(params), byref(handle), err_ref),
                     err, action="encoder")
        if not handle:
            msg = "bpg: npp_bpg_encoder_new returned no encoder"
            raise NativeLibraryError(msg, codec="bpg")
        self._handle: object | None = handle

    @property
    def handle(self) -> object:
        """The ``npp_bpg_encoder *`` (for calls that take handles, e.g. the batch route)."""
        if self._handle is None:
            msg = "bpg: encoder is closed"
            raise CodecError(msg, codec="bpg")
        return self._handle

    def encode(self, rgb, qp: int) -> tuple[c_void_p, c_size_t]:
        """Encode a C-contiguous (H, W, 3) uint8 array; returns the library-owned buffer
        and its size (free the buffer with ``npp_bpg_free``)."""
        if self._handle is None:
            msg = "bpg: encoder is closed"
            raise CodecError(msg, codec="bpg")
        h, w = rgb.shape[:2]
        out, n = c_void_p(), c_size_t()
        err, err_ref = new_errmsg()
        status = self._lib.npp_bpg_encoder_encode(
            self._handle, rgb.ctypes.data, w, h, 3, rgb.strides[0], qp, byref(out), byref(n), err_ref
        )
        check_status(self._lib, status, err, action="encode")
        return out, n

    def close(self) -> None:
        if self._handle is not None:
            self._lib.npp_bpg_encoder_free(self._handle)
            self._handle = None

    def __enter__(self) -> Encoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self, _finalizing=sys.is_finalizing) -> None:
        # bound at definition: module globals may already be None at shutdown
        if not _finalizing():
            self.close()
