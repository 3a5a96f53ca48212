"""Pre-encode hooks: filters that run on an image before any codec's encoder.

A preprocessor takes a float batch (N, 3, H, W) in [0, 1] and the codec and QP it is about to
be encoded with, and returns a batch of the same shape in [0, 1]. The learned NPP
(:mod:`npp_plugin.preprocessors.hook`) and the classical baselines
(:mod:`npp_plugin.preprocessors.filters`) are preprocessors; plugins add more through
``npp_register_preprocessors``.

Codecs run them through one door: ``codec.roundtrip(batch, qp=..., preprocess=p)`` (a batch:
evaluation, calibration, training's validation) and ``codec.encode(image, qp=...,
preprocess=p)`` (one image) filter in float and round to 8 bits once, in the codec.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..errors import InvalidArgumentError
from ..images import (
    check_image_batch,
    dequantize_uint8,
    tensor_batch_to_uint8,
    uint8_to_tensor_batch,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ..codec import Codec

__all__ = ["Preprocessor", "resolve_preprocessor", "set_name_lookup"]

#: How a registered *name* becomes an instance. This contract sits below the plugin host, so
#: it holds the host's lookup rather than importing it: :mod:`npp_plugin.plugins` installs
#: the default host's ``get_preprocessor`` when it is imported (``import npp_plugin`` does).
_name_lookup: Callable[[str], Preprocessor] | None = None


class Preprocessor(ABC):
    """Base class of pre-encode filters.

    Subclasses set ``name`` and implement :meth:`forward`; ``__call__`` checks the batch and
    clamps the result to [0, 1].

    Attributes:
        name: the registered name (lowercase identifier).
        codec_independent: True when the output depends on the image alone, not on the
            ``codec`` and ``qp`` it is given (a fixed Gaussian blur). Callers may then filter
            an image once and code the result at every codec and QP; an evaluation does. The
            default, False, promises nothing and is always safe. Part of the contract: a
            subclass that sets it True must ignore ``codec`` and ``qp``.
    """

    name: ClassVar[str] = ""
    codec_independent: ClassVar[bool] = False

    def __call__(self, batch: torch.Tensor, *, codec: Codec, qp: int) -> torch.Tensor:
        """Filter ``batch`` (N, 3, H, W) in [0, 1] for ``codec`` at ``qp``."""
        check_image_batch(batch, who=f"preprocessor {self.name!r}")
        return self.forward(batch, codec=codec, qp=qp).clamp(0, 1)

    @abstractmethod
    def forward(self, batch: torch.Tensor, *, codec: Codec, qp: int) -> torch.Tensor:
        """The filter itself (input already validated)."""

    def filter_uint8(self, images: torch.Tensor, *, codec: Codec, qp: int) -> torch.Tensor:
        """``encode``'s route for an 8-bit image: (N, 3, H, W) uint8 → the filtered float
        batch, the same as ``self(images / 255)``. A preprocessor that needs the float
        input only at its start overrides this to let that copy go early (``npp_refine``:
        144 MB at 12 MP)."""
        return self(dequantize_uint8(images), codec=codec, qp=qp)

    def apply_uint8(self, images: np.ndarray, *, codec: Codec, qp: int) -> np.ndarray:
        """(N, H, W, 3) uint8 → filtered (N, H, W, 3) uint8 (for 8-bit images outside a codec;
        codecs filter in float through ``encode`` / ``roundtrip(..., preprocess=...)``)."""
        import torch

        with torch.inference_mode():
            batch = uint8_to_tensor_batch(images)
            out = self(batch, codec=codec, qp=qp)
        return tensor_batch_to_uint8(out, codec=codec.name)

    def get_config(self) -> dict[str, Any]:
        """JSON-able description, recorded with every result."""
        return {"preprocessor": self.name}

    def __repr__(self) -> str:
        cfg = {k: v for k, v in self.get_config().items() if k != "preprocessor"}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in cfg.items())})"


def resolve_preprocessor(preprocess: str | Preprocessor) -> Preprocessor:
    """A registered name or a ready instance → the instance."""
    if isinstance(preprocess, Preprocessor):
        return preprocess
    if isinstance(preprocess, str):
        if _name_lookup is None:  # pragma: no cover - npp_plugin/__init__ imports the host
            msg = f"preprocessor {preprocess!r}: no plugin host is loaded (import npp_plugin first)"
            raise InvalidArgumentError(msg, argument="preprocess")
        return _name_lookup(preprocess)
    msg = f"preprocess must be a registered name or a Preprocessor, got {type(preprocess).__name__}"
    raise InvalidArgumentError(msg, argument="preprocess", allowed="str | Preprocessor")


def set_name_lookup(lookup: Callable[[str], Preprocessor]) -> None:
    """Install how :func:`resolve_preprocessor` turns a name into an instance (the plugin
    host does, once; a caller never needs to)."""
    global _name_lookup
    _name_lookup = lookup
