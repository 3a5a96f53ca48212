"""npp_plugin: neural preprocessing for standard image codecs, tuned for machine vision.

    >>> import npp_plugin
    >>> codec = npp_plugin.get_codec("jpeg")
    >>> data = codec.encode(image, qp=37)                    # plain codec
    >>> data = codec.encode(image, qp=37, preprocess="npp")  # NPP before the encoder
    >>> rgb = codec.decode(data)
"""

from __future__ import annotations

from . import _moved
from .codec import Codec, Param
from .errors import NppError
from .hookspecs import hookimpl
from .preprocessors.base import Preprocessor
from .registry import (
    available_codecs,
    available_preprocessors,
    available_tasks,
    get_codec,
    get_preprocessor,
    get_task,
)

__version__ = "0.3.0"

__all__ = [
    "Codec",
    "NppError",
    "Param",
    "Preprocessor",
    "__version__",
    "available_codecs",
    "available_preprocessors",
    "available_tasks",
    "codec_for_data",
    "get_codec",
    "get_preprocessor",
    "get_task",
    "hookimpl",
    "register_bpg_opener",
]


_moved.install()  # import paths that moved (npp_plugin.training.surrogates, ...), for one release


def __getattr__(name: str):
    if f"{__name__}.{name}" in _moved.MOVED:  # a moved top-level module used as an attribute
        return _moved.top_level(name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


def codec_for_data(data: bytes, **config):
    """The registered codec whose magic bytes match ``data`` (raises CorruptStreamError)."""
    from .errors import CorruptStreamError
    from .registry import codec_registry

    reg = codec_registry()
    for name in reg.names():
        if reg.get(name).check(data):
            return reg.get(name)(**config)
    msg = f"no registered codec recognises these bytes (magic {bytes(data[:8]).hex()}); codecs: {', '.join(reg.names())}"
    raise CorruptStreamError(msg)


def register_bpg_opener() -> None:
    """Make Pillow open and save ``.bpg`` files through our native BPG codec."""
    from .codecs.bpg_pillow import register

    register()
