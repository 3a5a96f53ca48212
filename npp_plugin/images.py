"""Converting what users pass as an image into the one layout codecs take.

Accepted, per the codec contract:
    * a PIL image: mode RGB as is; L, LA-less grayscale, P, I;16, CMYK, YCbCr converted to RGB;
      RGBA / LA / PA refused (alpha would be dropped silently: convert it yourself);
    * a numpy array (H, W, 3) uint8; (H, W) or (H, W, 1) uint8 grayscale is replicated to RGB;
      non-contiguous arrays are copied; 4 channels (alpha) are refused;
    * a torch tensor (3, H, W) floating point with values in [0, 1] (rounded to 8 bits).
Everything else raises :class:`~npp_plugin.errors.InvalidArgumentError` (or ``ShapeError``)
naming the codec and what is allowed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import InvalidArgumentError, ShapeError

__all__ = [
    "check_image_batch",
    "is_tensor",
    "dequantize_uint8",
    "quantize_uint8",
    "tensor_batch_to_uint8",
    "to_float_batch",
    "to_uint8_rgb",
    "uint8_to_tensor_batch",
]

_EXPECTED = "(H, W, 3) uint8 array, (3, H, W) float tensor in [0, 1], or RGB PIL image"
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


def is_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def _check_size(h: int, w: int, codec: str | None, shape: tuple) -> None:
    if h <= 0 or w <= 0:
        msg = f"{codec or 'codec'}: image has zero size {shape}; expected {_EXPECTED} with H, W >= 1"
        raise ShapeError(msg, actual_shape=shape, expected_shape=_EXPECTED, codec=codec)


def _from_pil(image: Any, codec: str | None) -> np.ndarray:
    if image.mode in _ALPHA_MODES:
        msg = (
            f"{codec or 'codec'}: image mode {image.mode!r} has an alpha channel, which codecs here "
            "do not store; convert first, e.g. image.convert('RGB')"
        )
        raise InvalidArgumentError(msg, codec=codec, argument="image", allowed="RGB, L, P, I;16, CMYK")
    _check_size(image.height, image.width, codec, (image.height, image.width))
    if image.mode == "I;16" or image.mode.startswith("I"):
        arr = np.asarray(image, dtype=np.float64)
        maxv = 65535.0 if arr.max(initial=0) > 255 else 255.0
        arr = np.clip(np.rint(arr / maxv * 255.0), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(arr[:, :, None], 3, axis=2))
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


def _from_numpy(arr: np.ndarray, codec: str | None) -> np.ndarray:
    name = codec or "codec"
    if arr.dtype != np.uint8:
        msg = (
            f"{name}: numpy image has dtype {arr.dtype}; expected uint8 in [0, 255] "
            "(for floats in [0, 1] pass a torch tensor (3, H, W) or use (x * 255).round().astype(np.uint8))"
        )
        raise InvalidArgumentError(msg, codec=codec, argument="image", allowed="uint8")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        _check_size(arr.shape[0], arr.shape[1], codec, arr.shape)
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3:
        hint = " (alpha is not stored: drop it with arr[..., :3])" if arr.ndim == 3 and arr.shape[2] == 4 else ""
        msg = f"{name}: numpy image has shape {arr.shape}; expected (H, W, 3) uint8{hint}"
        raise ShapeError(msg, actual_shape=arr.shape, expected_shape="(H, W, 3)", codec=codec)
    _check_size(arr.shape[0], arr.shape[1], codec, arr.shape)
    return np.ascontiguousarray(arr)


def _check_tensor_image(t: Any, codec: str | None) -> None:
    if t.ndim != 3 or t.shape[0] != 3:
        msg = f"{codec or 'codec'}: tensor image has shape {tuple(t.shape)}; expected (3, H, W) float in [0, 1]"
        raise ShapeError(msg, actual_shape=tuple(t.shape), expected_shape="(3, H, W)", codec=codec)
    _check_size(t.shape[1], t.shape[2], codec, tuple(t.shape))


def _from_tensor(t: Any, codec: str | None) -> np.ndarray:
    _check_tensor_image(t, codec)
    return tensor_batch_to_uint8(t.unsqueeze(0), codec=codec)[0]


def to_uint8_rgb(image: Any, *, codec: str | None = None) -> np.ndarray:
    """Return ``image`` as a C-contiguous (H, W, 3) uint8 RGB array (a copy when needed)."""
    if isinstance(image, np.ndarray):
        return _from_numpy(image, codec)
    if is_tensor(image):
        return _from_tensor(image, codec)
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        return _from_pil(image, codec)
    msg = f"{codec or 'codec'}: cannot encode an object of type {type(image).__name__}; expected {_EXPECTED}"
    raise InvalidArgumentError(msg, codec=codec, argument="image", allowed=_EXPECTED)


def to_float_batch(image: Any, *, codec: str | None = None):
    """``image`` as a (1, 3, H, W) float tensor in [0, 1] for a preprocessor: a (3, H, W)
    float tensor as it is (not rounded to 8 bits; checked as :func:`to_uint8_rgb` checks
    it), anything else through :func:`to_uint8_rgb` (exact in float)."""
    if is_tensor(image):
        _check_tensor_image(image, codec)
        batch = image.detach().unsqueeze(0)
        check_image_batch(batch, who=codec or "codec", codec=codec)
        return batch
    return uint8_to_tensor_batch(to_uint8_rgb(image, codec=codec)[None])


def check_image_batch(batch: Any, *, who: str, codec: str | None = None, values: bool = True,
                      argument: str | None = None) -> None:
    """Raise unless ``batch`` is a (N, 3, H, W) floating-point torch tensor (or numpy array),
    non-empty, and (with ``values``) finite in [0, 1]. The one batch check of the project:
    codecs, preprocessors, NPP networks, the ONNX runner and training steps use it. ``who``
    names the caller in the message (a codec, preprocessor, network); ``argument`` is the
    argument the errors name (default: ``batch`` for the shape, ``image`` for the values)."""
    array = isinstance(batch, np.ndarray)
    if not array:
        import torch  # not for arrays: the ONNX runner works without torch
    kind = "array" if array else "tensor"
    ok_type = array or torch.is_tensor(batch)
    shape = tuple(batch.shape) if ok_type else ()
    if not ok_type or batch.ndim != 4 or batch.shape[1] != 3:
        msg = f"{who}: expected a (N, 3, H, W) float {kind} in [0, 1], got shape {shape}"
        raise ShapeError(msg, actual_shape=shape, expected_shape="(N, 3, H, W)", codec=codec,
                         argument=argument or "batch")
    if not (np.issubdtype(batch.dtype, np.floating) if array else torch.is_floating_point(batch)):
        msg = f"{who}: {kind} has dtype {batch.dtype}; expected a floating point {kind} in [0, 1]"
        raise InvalidArgumentError(msg, codec=codec, argument=argument or "image", allowed="float in [0, 1]")
    if min(shape) == 0:
        msg = f"{who}: batch has zero size {shape}"
        raise ShapeError(msg, actual_shape=shape, expected_shape="(N, 3, H, W)", codec=codec,
                         argument=argument or "batch")
    if not values:
        return
    # one pass for both bounds; NaN propagates into them, and inf lands on one of them
    if array:
        lo, hi = float(batch.min()), float(batch.max())
    else:
        lo, hi = (float(v) for v in torch.aminmax(batch.detach()))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        msg = f"{who}: image {kind} contains NaN or infinite values"
        raise InvalidArgumentError(msg, codec=codec, argument=argument or "image", allowed="finite values in [0, 1]")
    if lo < -1e-6 or hi > 1 + 1e-6:
        msg = f"{who}: image {kind} values span [{lo:.4g}, {hi:.4g}]; expected [0, 1]"
        raise InvalidArgumentError(msg, codec=codec, argument=argument or "image", allowed="[0, 1]")


def tensor_batch_to_uint8(batch: Any, *, codec: str | None = None, check: bool = True) -> np.ndarray:
    """(N, 3, H, W) float tensor in [0, 1] → (N, H, W, 3) uint8 numpy array (rounded half to
    even). ``check=False`` skips :func:`check_image_batch` for a batch already checked."""
    if check:
        check_image_batch(batch, who=codec or "codec", codec=codec)
    u8 = quantize_uint8(batch.detach().float())
    return np.ascontiguousarray(u8.permute(0, 2, 3, 1).cpu().numpy())


def quantize_uint8(t: Any, *, out: Any = None, rows: int = 256):
    """A float tensor in [0, 1] (clamped) as 8-bit samples, ``round(255·t)`` half to even:
    the one rounding every codec's encode applies to float input. Written into ``out``
    (uint8, same shape; new if None) ``rows`` rows at a time, so no full-size float copy is
    made of a large picture."""
    import torch

    out = torch.empty(t.shape, dtype=torch.uint8, device=t.device) if out is None else out
    for a in range(0, t.shape[-2], rows):
        out[..., a : a + rows, :] = t[..., a : a + rows, :].clamp(0, 1).mul_(255.0).round_()
    return out


def dequantize_uint8(t: Any, dtype: Any = None):
    """8-bit samples (a uint8 tensor) as the float values in [0, 1] they stand for, ``v / 255``
    (exact IEEE division, as the codecs' decoders give; default float32), contiguous."""
    import torch

    return t.to(dtype or torch.float32, memory_format=torch.contiguous_format).div_(255)


def uint8_to_tensor_batch(arrays: np.ndarray | list[np.ndarray], *, like: Any = None):
    """(N, H, W, 3) uint8 (or a list of (H, W, 3)) → (N, 3, H, W) float tensor in [0, 1]."""
    import torch

    stacked = np.stack(arrays) if isinstance(arrays, list) else arrays
    scale = 65535.0 if stacked.dtype == np.uint16 else 255.0
    t = torch.from_numpy(np.ascontiguousarray(stacked).astype(np.float32)).permute(0, 3, 1, 2) / scale
    if like is not None:
        t = t.to(device=like.device, dtype=like.dtype)
    return t.contiguous()
