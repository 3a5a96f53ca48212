"""The exception hierarchy of npp_plugin.

Every error names what was wrong: the codec, the argument and what is allowed, so a caller can
fix the call without reading our source. Library code raises; only :mod:`npp_plugin.cli` turns
errors into exit codes.

::

    NppError
    ├── PluginError                      a plugin failed to import or registered something invalid
    ├── UnknownCodecError (KeyError)     no codec registered under that name
    ├── UnknownPreprocessorError (KeyError)
    ├── UnknownTaskError (KeyError)
    ├── CodecUnavailableError (ImportError)  the codec's backend is not installed
    ├── TaskUnavailableError (ImportError)   the task's runtime (e.g. MediaPipe) is not installed
    ├── InvalidArgumentError (ValueError)    bad image, QP, option ...
    │   └── ShapeError                       wrong image/tensor shape
    ├── CodecError                       encoding or decoding failed
    │   ├── CorruptStreamError (ValueError)  truncated, corrupt or foreign bitstream
    │   ├── PixelLimitError (ValueError)     the header claims more pixels than the limit
    │   └── NativeLibraryError (OSError)     libnpp_bpg missing or broken
    └── WeightsError                     preprocessor weights missing or invalid

    PixelLimitWarning (UserWarning)      a picture above half the pixel limit is decoded
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "CodecError",
    "CodecUnavailableError",
    "CorruptStreamError",
    "InvalidArgumentError",
    "NativeLibraryError",
    "NppError",
    "PixelLimitError",
    "PixelLimitWarning",
    "PluginError",
    "ShapeError",
    "TaskUnavailableError",
    "UnknownCodecError",
    "UnknownPreprocessorError",
    "UnknownTaskError",
    "WeightsError",
]


class NppError(Exception):
    """Base class of every error raised by npp_plugin."""


class PluginError(NppError):
    """A plugin failed to import, or registered something invalid (or a duplicate name)."""

    def __init__(self, message: str, *, plugin: str | None = None) -> None:
        super().__init__(message)
        self.plugin = plugin


class _UnknownNameError(NppError, KeyError):
    kind = "name"

    def __init__(self, name: str, available: Sequence[str], *, ensemble: str | None = None) -> None:
        super().__init__(name)
        self.name = name
        self.available = list(available)
        #: the ensemble ("a+b") that names the unknown member, if any
        self.ensemble = ensemble

    def __str__(self) -> str:  # KeyError would repr() the key
        avail = ", ".join(self.available) or "none"
        within = f" (a member of the ensemble {self.ensemble!r})" if self.ensemble else ""
        return f"unknown {self.kind} {self.name!r}{within}; available: {avail}"


class UnknownCodecError(_UnknownNameError):
    kind = "codec"


class UnknownPreprocessorError(_UnknownNameError):
    kind = "preprocessor"


class UnknownTaskError(_UnknownNameError):
    kind = "task"


class CodecUnavailableError(NppError, ImportError):
    """The codec is registered but its backend (library, executable) is missing."""


class TaskUnavailableError(NppError, ImportError):
    """The task is registered but what runs it (a separate runtime, a package) is missing."""


class InvalidArgumentError(NppError, ValueError):
    """An argument is out of its allowed range or of the wrong kind.

    Attributes name the codec (or other component), the argument and what is allowed.
    """

    def __init__(
        self,
        message: str,
        *,
        codec: str | None = None,
        argument: str | None = None,
        allowed: Any = None,
    ) -> None:
        super().__init__(message)
        self.codec = codec
        self.argument = argument
        self.allowed = allowed


class ShapeError(InvalidArgumentError):
    """An image or tensor has the wrong shape."""

    def __init__(
        self,
        message: str,
        *,
        actual_shape: tuple[int, ...],
        expected_shape: str,
        codec: str | None = None,
        argument: str = "image",
    ) -> None:
        super().__init__(message, codec=codec, argument=argument, allowed=expected_shape)
        self.actual_shape = tuple(actual_shape)
        self.expected_shape = expected_shape


class CodecError(NppError):
    """Encoding or decoding failed inside the codec."""

    def __init__(self, message: str, *, codec: str | None = None) -> None:
        super().__init__(message)
        self.codec = codec


class CorruptStreamError(CodecError, ValueError):
    """The bitstream is truncated, corrupt, or not of this codec."""


class PixelLimitError(CodecError, ValueError):
    """A bitstream's header claims a picture with more pixels than the pixel limit allows
    (see :mod:`npp_plugin.codec`); refused before anything is decoded or allocated."""

    def __init__(self, message: str, *, codec: str | None, width: int, height: int, limit: int) -> None:
        super().__init__(message, codec=codec)
        self.width = width
        self.height = height
        self.pixels = width * height
        self.limit = limit


class PixelLimitWarning(UserWarning):
    """A picture above half the pixel limit is being decoded (as Pillow's
    ``DecompressionBombWarning``): legitimate, but worth a look if the input is untrusted."""


class NativeLibraryError(CodecError, OSError):
    """The native BPG library could not be found, loaded or probed."""


class WeightsError(NppError):
    """Preprocessor weights are missing, unreadable, or do not match the network."""
