"""The codec contract every plugin implements.

The public methods are concrete (a template method, as CompressAI's ``Codec.run``): they
validate the input, convert it, run the named preprocessor (the pre-encode hook), then call
the plugin's ``_encode`` / ``_decode`` / ``_check``. A plugin implements only those three and
declares its configuration in ``params``; errors then read the same for every codec.

Hostile input: before ``_decode`` runs, ``decode`` reads the size the bitstream's header
claims (``_header_size``, each codec's own header reader, nothing decoded or allocated) and
refuses a picture above the pixel limit with :class:`~npp_plugin.errors.PixelLimitError`
(warning with :class:`~npp_plugin.errors.PixelLimitWarning` above half of it), and a file
too short to hold the picture it claims with :class:`~npp_plugin.errors.CorruptStreamError`.
The limit is, in this order: ``decode(..., pixel_limit=N)`` (``None``: no limit), the module
setting ``npp_plugin.codec.PIXEL_LIMIT``, which starts as ``$NPP_PIXEL_LIMIT`` (an integer,
or ``none``) when that is set, else :data:`DEFAULT_PIXEL_LIMIT`.

The checks the base class runs are public too, so plugins and callers use the same ones:
``validate_qp``, ``validate_size`` (a plugin with its own size rule overrides it and calls
``super()``), ``validate_data`` and ``require_available``. (Their underscored spellings of
release 0.1.0 went in 0.3.0.)
"""

from __future__ import annotations

import os
import warnings
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np

from .errors import (
    CodecError,
    CodecUnavailableError,
    CorruptStreamError,
    InvalidArgumentError,
    NppError,
    PixelLimitError,
    PixelLimitWarning,
)
from .images import (
    check_image_batch,
    is_tensor,
    tensor_batch_to_uint8,
    to_float_batch,
    to_uint8_rgb,
    uint8_to_tensor_batch,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .preprocessors.base import Preprocessor

__all__ = [
    "DEFAULT_PIXEL_LIMIT",
    "PIXEL_LIMIT",
    "PIXEL_LIMIT_ENV",
    "Codec",
    "HeaderSize",
    "Param",
    "default_workers",
    "pixel_limit_in_force",
]

#: Pictures with more pixels are refused unless told otherwise: twice Pillow's
#: ``MAX_IMAGE_PIXELS``, the size above which Pillow refuses a file as a decompression bomb
#: (a warning comes above half of the limit in force, Pillow's own warning size).
DEFAULT_PIXEL_LIMIT = 178_956_970
#: Environment variable that sets :data:`PIXEL_LIMIT` when this module is imported.
PIXEL_LIMIT_ENV = "NPP_PIXEL_LIMIT"


def _limit_from_env() -> int | None | str:
    raw = os.environ.get(PIXEL_LIMIT_ENV, "").strip()
    if not raw:
        return DEFAULT_PIXEL_LIMIT
    if raw.lower() == "none":
        return None
    try:
        return int(raw.replace("_", ""))
    except ValueError:
        return raw  # refused with a clear error at the first decode, not at import


#: The process-wide pixel limit (a module setting): an int, or None for no limit.
PIXEL_LIMIT: int | None = _limit_from_env()  # type: ignore[assignment]


class _ProcessLimit:
    def __repr__(self) -> str:
        return "npp_plugin.codec.PIXEL_LIMIT"


_PROCESS_LIMIT: Any = _ProcessLimit()


def pixel_limit_in_force(pixel_limit: Any = _PROCESS_LIMIT) -> int | None:
    """The pixel limit a decode uses: ``pixel_limit`` when given, else :data:`PIXEL_LIMIT`.

    Raises:
        InvalidArgumentError: the limit is neither a positive integer nor None.
    """
    if pixel_limit is _PROCESS_LIMIT:
        limit, where = PIXEL_LIMIT, f"npp_plugin.codec.PIXEL_LIMIT (or ${PIXEL_LIMIT_ENV})"
    else:
        limit, where = pixel_limit, "pixel_limit"
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
        msg = f"{where}={limit!r} is not allowed; use a positive number of pixels, or None for no limit"
        raise InvalidArgumentError(msg, argument="pixel_limit", allowed="positive int | None")
    return int(limit)


class HeaderSize(NamedTuple):
    """What a bitstream's header claims, read without decoding: the picture size and the
    fewest bytes a file holding such a picture can have (None: the format gives no bound)."""

    width: int
    height: int
    min_bytes: int | None = None


@dataclass(frozen=True)
class Param:
    """One configuration value of a codec: its default and what is allowed."""

    default: Any
    choices: tuple | None = None
    range: tuple[int, int] | None = None
    doc: str = ""

    def allowed(self) -> str:
        if self.choices is not None:
            return " | ".join(repr(c) for c in self.choices)
        if self.range is not None:
            return f"integers {self.range[0]}..{self.range[1]}"
        return f"values of type {type(self.default).__name__}"

    def validate(self, codec: str, key: str, value: Any) -> Any:
        if self.choices is not None:
            if value not in self.choices and not isinstance(value, bool) and str(value) in self.choices:
                value = str(value)  # chroma=444 means "444"
            if value not in self.choices:
                msg = f"{codec}: {key}={value!r} is not allowed; choose {self.allowed()}"
                raise InvalidArgumentError(msg, codec=codec, argument=key, allowed=self.choices)
            return value
        if self.range is not None:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                msg = f"{codec}: {key} must be an integer in {self.range[0]}..{self.range[1]}, got {value!r}"
                raise InvalidArgumentError(msg, codec=codec, argument=key, allowed=self.range)
            if not self.range[0] <= value <= self.range[1]:
                msg = f"{codec}: {key}={value} is out of range {self.range[0]}..{self.range[1]}"
                raise InvalidArgumentError(msg, codec=codec, argument=key, allowed=self.range)
            return int(value)
        if isinstance(self.default, bool) and not isinstance(value, bool):
            msg = f"{codec}: {key} must be True or False, got {value!r}"
            raise InvalidArgumentError(msg, codec=codec, argument=key, allowed=(True, False))
        return value


def default_workers() -> int:
    """One worker per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class Codec(ABC):
    """A standard image codec, optionally preceded by a preprocessor.

    Subclasses set ``name``, ``qp_range``, ``params`` and implement ``_encode``, ``_decode``
    and ``_check``. ``qp`` is common to all codecs: lower means better quality, HEVC-like;
    each codec documents how it maps ``qp`` to its own knob.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    extensions: ClassVar[tuple[str, ...]] = ()
    mime: ClassVar[str] = "application/octet-stream"
    qp_range: ClassVar[tuple[int, int]] = (0, 51)
    #: QP span that ``normalized_qp`` maps to [0, 1]; codecs with a wider range than HEVC's but
    #: the same quantiser-step law (VVC) keep HEVC's span, so one NPP serves both.
    qp_norm_range: ClassVar[tuple[int, int] | None] = None
    #: Largest width/height the format can store.
    max_size: ClassVar[int] = 1 << 30
    params: ClassVar[dict[str, Param]] = {}
    #: True when ``_roundtrip_tensor`` rejects NaN and out-of-range values itself (while it
    #: converts them), so ``roundtrip`` skips its own pass over the values.
    _checks_values_in_roundtrip: ClassVar[bool] = False

    def __init__(self, **config: Any) -> None:
        self._config = self._validate_options(config, defaults=True)

    # -- configuration --------------------------------------------------------------------

    def _validate_options(self, options: dict[str, Any], *, defaults: bool) -> dict[str, Any]:
        unknown = sorted(set(options) - set(self.params))
        if unknown:
            allowed = ", ".join(sorted(self.params)) or "none"
            msg = f"{self.name}: unknown option {unknown[0]!r}; options of this codec: {allowed}"
            raise InvalidArgumentError(msg, codec=self.name, argument=unknown[0], allowed=sorted(self.params))
        base = {k: p.default for k, p in self.params.items()} if defaults else {}
        for key, value in options.items():
            base[key] = self.params[key].validate(self.name, key, value)
        return base

    def get_config(self) -> dict[str, Any]:
        """JSON-able configuration; ``from_config(get_config())`` gives an equal codec."""
        return {"codec": self.name, "version": self.version(), **self._config}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Codec:
        """The codec ``get_config`` described (its ``codec`` and ``version`` keys are ignored)."""
        cfg = {k: v for k, v in config.items() if k not in ("codec", "version")}
        return cls(**cfg)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._config == self._config  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((self.name, tuple(sorted((k, repr(v)) for k, v in self._config.items()))))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._config.items())
        return f"{type(self).__name__}({args})"

    # -- availability ---------------------------------------------------------------------

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """``None`` when the backend works, else why not and how to install it."""
        return None

    @classmethod
    def is_available(cls) -> bool:
        """True when the backend works (``unavailable_reason()`` is ``None``)."""
        return cls.unavailable_reason() is None

    def require_available(self) -> None:
        """Raise :class:`~npp_plugin.errors.CodecUnavailableError` (with the reason and how to
        install the backend) unless :meth:`is_available`."""
        reason = self.unavailable_reason()
        if reason is not None:
            msg = f"{self.name}: codec backend unavailable: {reason}"
            raise CodecUnavailableError(msg)

    def version(self) -> str:
        """Version of the backend library."""
        return "unknown"

    def normalized_qp(self, qp: int) -> float:
        """``qp`` mapped linearly to [0, 1] over ``qp_norm_range`` (default ``qp_range``) and
        clipped: the operating point preprocessors condition on."""
        qp = self.validate_qp(qp)
        lo, hi = self.qp_norm_range or self.qp_range
        return min(1.0, max(0.0, (qp - lo) / (hi - lo)))

    def quant_step(self, qp: int) -> float:
        """The quantiser step at ``qp`` in 8-bit sample units, for analytic rate and
        distortion surrogates (:mod:`npp_plugin.surrogates`). Default: HEVC's law
        2^((qp − 4) / 6), which BPG, HEIF and VVC share; a codec with another quantiser
        (JPEG's tables) overrides it."""
        qp = self.validate_qp(qp)
        return float(2.0 ** ((qp - 4) / 6.0))

    def quant_table(self, qp: int) -> tuple[Any, Any] | None:
        """Per-frequency quantiser steps at ``qp`` for a codec whose quantiser is a table:
        ``(luma, chroma)``, each 8×8 (row-major, DC first) on the orthonormal 8×8 DCT in
        8-bit sample units. None (the default) when one step per QP, :meth:`quant_step`,
        describes the codec (HEVC and VVC's flat scaling lists)."""
        self.validate_qp(qp)
        return None

    # -- checks (public: plugins and callers use the same ones) ---------------------------

    def validate_qp(self, qp: Any) -> int:
        """``qp`` as an ``int`` when it is an integer in ``qp_range``, else
        :class:`~npp_plugin.errors.InvalidArgumentError` naming the codec and the range."""
        lo, hi = self.qp_range
        if isinstance(qp, bool) or not isinstance(qp, (int, np.integer)):
            msg = f"{self.name}: qp must be an integer in {lo}..{hi}, got {qp!r}"
            raise InvalidArgumentError(msg, codec=self.name, argument="qp", allowed=(lo, hi))
        if not lo <= qp <= hi:
            msg = f"{self.name}: qp={qp} is out of range {lo}..{hi}"
            raise InvalidArgumentError(msg, codec=self.name, argument="qp", allowed=(lo, hi))
        return int(qp)

    def validate_size(self, *, width: int, height: int) -> None:
        """Raise :class:`~npp_plugin.errors.InvalidArgumentError` unless this codec can store a
        ``width`` x ``height`` image. The base rule is ``max_size`` per side; a codec with
        more rules (VVC here: even sizes of at least 32) overrides this and calls ``super()``.
        ``encode`` and ``roundtrip`` call it before any pixel is touched."""
        if height > self.max_size or width > self.max_size:
            msg = f"{self.name}: image {width}x{height} is larger than the format allows ({self.max_size} per side)"
            raise InvalidArgumentError(msg, codec=self.name, argument="image", allowed=self.max_size)

    def validate_data(self, data: Any) -> bytes:
        """``data`` as ``bytes`` when it is a non-empty bytes-like object that :meth:`check`
        accepts; else :class:`~npp_plugin.errors.InvalidArgumentError` (not bytes) or
        :class:`~npp_plugin.errors.CorruptStreamError` (empty, or not this codec's magic).
        ``decode`` calls it; a plugin's own ``info`` should too."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            msg = f"{self.name}: data must be bytes, got {type(data).__name__}"
            raise InvalidArgumentError(msg, codec=self.name, argument="data", allowed="bytes")
        data = bytes(data)
        if not data:
            msg = f"{self.name}: cannot decode an empty bitstream"
            raise CorruptStreamError(msg, codec=self.name)
        if not self._check(data):
            msg = f"{self.name}: data is not a {self.name} bitstream (magic bytes {data[:8].hex()})"
            raise CorruptStreamError(msg, codec=self.name)
        return data

    # -- encode / decode ------------------------------------------------------------------

    def encode(
        self,
        image: Any,
        /,
        *,
        qp: int,
        preprocess: str | Preprocessor | None = None,
        **options: Any,
    ) -> bytes:
        """Encode one image into a bitstream of this codec.

        Args:
            image: PIL image, numpy (H, W, 3) uint8, or torch (3, H, W) float in [0, 1].
            qp: quantisation parameter in ``qp_range`` (lower = better quality).
            preprocess: name of a registered preprocessor (e.g. ``"npp"``) or a
                :class:`~npp_plugin.Preprocessor` instance, run before encoding: the path of
                :meth:`roundtrip` for one image (the image in float, a float tensor as it
                is, filtered, then rounded to 8 bits once).
            **options: per-call overrides of this codec's ``params``.
        """
        import torch

        qp = self.validate_qp(qp)
        opts = {**self._config, **self._validate_options(options, defaults=False)}
        self.require_available()
        if preprocess is None:
            rgb = to_uint8_rgb(image, codec=self.name)
            self.validate_size(width=rgb.shape[1], height=rgb.shape[0])
        else:
            if is_tensor(image):
                batch = to_float_batch(image, codec=self.name)
            else:  # 8-bit pixels: the preprocessor makes (and may drop early) the float copy
                with warnings.catch_warnings():  # a read-only array (np.asarray of a PIL image)
                    warnings.simplefilter("ignore", UserWarning)  # is only read here
                    batch = torch.from_numpy(to_uint8_rgb(image, codec=self.name)).permute(2, 0, 1)[None]
            batch = self._filtered(batch, qp, preprocess)
            rgb = tensor_batch_to_uint8(batch, codec=self.name, check=False)[0]
        return self._run_encode(rgb, qp, opts)

    def _run_encode(self, rgb: np.ndarray, qp: int, opts: dict[str, Any]) -> bytes:
        try:
            data = self._encode(rgb, qp=qp, **opts)
        except NppError:
            raise
        except Exception as exc:
            msg = f"{self.name}: encoding failed: {type(exc).__name__}: {exc}"
            raise CodecError(msg, codec=self.name) from exc
        return bytes(data)

    def _filtered(self, batch: torch.Tensor, qp: int, preprocess: Any) -> torch.Tensor:
        """The one pre-encode step of ``encode`` and ``roundtrip``: check the size, run the
        preprocessor on the float batch (it checks its input and clamps its output) or on
        ``encode``'s 8-bit pixels (``Preprocessor.filter_uint8``), and check what it returned
        unless this codec checks values while converting."""
        import torch

        from .preprocessors.base import resolve_preprocessor

        prep = resolve_preprocessor(preprocess)
        u8 = batch.dtype == torch.uint8
        if not u8:
            check_image_batch(batch, who=self.name, codec=self.name, values=False)
        self.validate_size(width=batch.shape[3], height=batch.shape[2])
        with torch.inference_mode():
            out = prep.filter_uint8(batch, codec=self, qp=qp) if u8 else prep(batch, codec=self, qp=qp)
        check_image_batch(out, who=f"{self.name}: output of preprocessor {prep.name!r}", codec=self.name,
                          values=not self._checks_values_in_roundtrip)
        return out

    def decode(self, data: bytes, /, *, high_bit_depth: bool = False,
               pixel_limit: int | None = _PROCESS_LIMIT) -> np.ndarray:
        """Decode a bitstream to (H, W, 3) RGB, uint8 (or uint16 when ``high_bit_depth`` and
        the stream has more than 8 bits per sample).

        Args:
            pixel_limit: refuse pictures with more pixels (``None``: no limit); default
                :data:`PIXEL_LIMIT`. Checked on the header, before anything is decoded.

        Raises:
            PixelLimitError: the header claims more pixels than ``pixel_limit``.
            CorruptStreamError: not this codec's bitstream, too short for the picture its
                header claims, truncated or corrupt.
        """
        data = self.validate_data(data)
        self.require_available()
        self._check_claimed_size(data, pixel_limit_in_force(pixel_limit))
        try:
            out = self._decode(data, high_bit_depth=high_bit_depth)
        except NppError:
            raise
        except Exception as exc:
            msg = f"{self.name}: cannot decode {len(data)} bytes: {type(exc).__name__}: {exc}"
            raise CorruptStreamError(msg, codec=self.name) from exc
        return out if out.flags.writeable else out.copy()

    def _check_claimed_size(self, data: bytes, limit: int | None) -> None:
        """Refuse, from the header alone, a picture above ``limit`` pixels or a file too short
        for the picture it claims; warn above half the limit."""
        try:
            claimed = self._header_size(data)
        except NppError:
            raise
        except Exception as exc:
            msg = f"{self.name}: cannot read the header: {type(exc).__name__}: {exc}"
            raise CorruptStreamError(msg, codec=self.name) from exc
        if claimed is None:
            return
        w, h, min_bytes = claimed
        pixels = w * h
        if limit is not None and pixels > limit:
            msg = (f"{self.name}: the header claims a {w}x{h} picture ({pixels:,} pixels), above the "
                   f"pixel limit of {limit:,}; raise it with decode(..., pixel_limit=N), "
                   f"npp_plugin.codec.PIXEL_LIMIT or ${PIXEL_LIMIT_ENV} if the file is trusted")
            raise PixelLimitError(msg, codec=self.name, width=w, height=h, limit=limit)
        if min_bytes is not None and len(data) < min_bytes:
            msg = (f"{self.name}: {len(data)} bytes cannot hold the {w}x{h} picture the header "
                   f"claims (at least {min_bytes} bytes)")
            raise CorruptStreamError(msg, codec=self.name)
        if limit is not None and pixels > limit // 2:
            msg = (f"{self.name}: decoding a {w}x{h} picture ({pixels:,} pixels), above half the "
                   f"pixel limit of {limit:,}: is the file trusted?")
            warnings.warn(msg, PixelLimitWarning, stacklevel=3)

    def _header_size(self, data: bytes, /) -> HeaderSize | None:
        """The picture size ``data``'s header claims, read without decoding or allocating in
        proportion to it (codecs override this; None: no header reader, no check). Raise
        CorruptStreamError when the header cannot be read."""
        return None

    @classmethod
    def check(cls, data: bytes, /) -> bool:
        """Cheap magic-byte test: could ``data`` be a bitstream of this codec?"""
        try:
            return bool(cls._check(bytes(data[:64])))
        except Exception:
            return False

    def info(self, data: bytes, /) -> dict[str, Any]:
        """Header facts of a bitstream (codecs override this to avoid a full decode)."""
        img = self.decode(data)
        return {"codec": self.name, "width": int(img.shape[1]), "height": int(img.shape[0]), "bytes": len(data)}

    # -- batches (training loops) ---------------------------------------------------------

    def roundtrip(
        self,
        batch: torch.Tensor,
        /,
        *,
        qp: int,
        preprocess: str | Preprocessor | None = None,
        workers: int | None = None,
        dtype: torch.dtype | None = None,
        **options: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode and decode a batch through the real codec, optionally preprocessed first.

        The one door of the project: evaluation, calibration and training's validation code
        their images here. With ``preprocess`` the batch is filtered in float and rounded to
        8 bits once, inside the codec (BPG: in its native batch call).

        Args:
            batch: (N, 3, H, W) float tensor in [0, 1].
            qp: quantisation parameter.
            preprocess: a registered preprocessor's name (``"npp"``, ``"blur05"``) or a
                :class:`~npp_plugin.Preprocessor`, run on ``batch`` first; None: none.
            workers: parallel workers (default: one per core).
            dtype: of the decoded images: None, ``batch``'s; ``torch.uint8``, the decoded
                8-bit samples themselves (exact, a quarter of float32's memory, never held
                as float on the way).
            **options: per-call overrides of this codec's ``params``.

        Returns:
            ``(recon, bits)``: the decoded images (same shape and device as ``batch``, its
            dtype unless ``dtype`` says otherwise) and a float64 tensor (N,) of bitstream
            sizes in bits.
        """
        if not is_tensor(batch):
            msg = f"{self.name}: roundtrip expects a torch tensor (N, 3, H, W), got {type(batch).__name__}"
            raise InvalidArgumentError(msg, codec=self.name, argument="batch", allowed="(N, 3, H, W) tensor")
        import torch

        qp = self.validate_qp(qp)
        if dtype is not None and not (dtype == torch.uint8 or isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            msg = f"{self.name}: roundtrip dtype must be None, torch.uint8 or a float dtype, got {dtype!r}"
            raise InvalidArgumentError(msg, codec=self.name, argument="dtype", allowed="None, torch.uint8 or a float dtype")
        opts = {**self._config, **self._validate_options(options, defaults=False)}
        self.require_available()
        if preprocess is None:
            check_image_batch(batch, who=self.name, codec=self.name,
                              values=not self._checks_values_in_roundtrip)
            self.validate_size(width=batch.shape[3], height=batch.shape[2])
            coded = batch
        else:
            coded = self._filtered(batch, qp, preprocess)
        u8 = dtype == torch.uint8
        # u8 only when asked: a subclass's override without it keeps working for floats
        recon, bits = self._roundtrip_tensor(coded, qp, opts, workers, **({"u8": True} if u8 else {}))
        return recon.to(device=batch.device, dtype=torch.uint8 if u8 else dtype or batch.dtype), bits

    def _roundtrip_tensor(
        self, batch: torch.Tensor, qp: int, opts: dict[str, Any], workers: int | None, *, u8: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Round trip of a checked batch (``u8``: the decoded samples as a uint8 tensor).
        Codecs with a native batch route override this; the default converts to uint8
        arrays and maps ``_roundtrip_arrays`` over threads."""
        import torch

        arrays = tensor_batch_to_uint8(batch, codec=self.name, check=False)
        results = self._roundtrip_arrays(list(arrays), qp, opts, workers)
        if u8:
            recon = torch.from_numpy(np.stack([r for r, _ in results])).permute(0, 3, 1, 2).contiguous()
        else:
            recon = uint8_to_tensor_batch([r for r, _ in results], like=batch)
        bits = torch.tensor([8.0 * n for _, n in results], dtype=torch.float64)
        return recon, bits

    def _roundtrip_arrays(
        self, arrays: list[np.ndarray], qp: int, opts: dict[str, Any], workers: int | None
    ) -> list[tuple[np.ndarray, int]]:
        def one(rgb: np.ndarray) -> tuple[np.ndarray, int]:
            data = self._run_encode(rgb, qp, opts)
            return self._decode(data, high_bit_depth=False), len(data)

        return self._map(one, arrays, workers)

    @staticmethod
    def _map(fn, items: list, workers: int | None) -> list:
        n = min(len(items), workers or default_workers())
        if n <= 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(max_workers=n) as pool:
            return list(pool.map(fn, items))

    # -- what plugins implement -----------------------------------------------------------

    @abstractmethod
    def _encode(self, rgb: np.ndarray, /, *, qp: int, **options: Any) -> bytes:
        """Encode a C-contiguous (H, W, 3) uint8 RGB array at ``qp`` with validated options."""

    @abstractmethod
    def _decode(self, data: bytes, /, *, high_bit_depth: bool) -> np.ndarray:
        """Decode a bitstream (already checked by ``_check``) to (H, W, 3) RGB."""

    @classmethod
    @abstractmethod
    def _check(cls, data: bytes, /) -> bool:
        """True when ``data`` starts with this codec's magic bytes."""
