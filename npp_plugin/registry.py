"""The lookups: codecs, preprocessors and tasks by name, from the plugin host.

The registries are built and owned by a :class:`~npp_plugin.plugins.PluginHost` from its
plugins' register callbacks; the functions here read the default host
(:func:`npp_plugin.plugins.default_host`), or the host passed as ``host``. The container
itself, :class:`Registry` (re-exported here), lives in :mod:`npp_plugin._registry`, below the
host, so the layers import one way: container ← host ← lookups.
"""

from __future__ import annotations

from typing import Any

from ._registry import Registry
from .plugins import PluginHost, default_host, host_for

__all__ = [
    "Registry",
    "available_codecs",
    "available_preprocessors",
    "available_tasks",
    "codec_registry",
    "get_codec",
    "get_preprocessor",
    "get_task",
    "load_all_registries",
    "preprocessor_registry",
    "task_registry",
]


def _host(host: PluginHost | None) -> PluginHost:
    if host is not None and not isinstance(host, PluginHost):
        # a bare pluggy.PluginManager was accepted, deprecated, until 0.3.0
        msg = (f"host must be a npp_plugin.plugins.PluginHost or None, got {type(host).__name__}; "
               "wrap a pluggy manager as PluginHost(manager=pm)")
        raise TypeError(msg)
    return host_for(host)


def codec_registry(host: PluginHost | None = None) -> Registry:
    """Codec name → ``Codec`` subclass."""
    return _host(host).codecs


def preprocessor_registry(host: PluginHost | None = None) -> Registry:
    """Preprocessor name → factory."""
    return _host(host).preprocessors


def task_registry(host: PluginHost | None = None) -> Registry:
    """Task name → factory."""
    return _host(host).tasks


def load_all_registries(host: PluginHost | None = None) -> None:
    """Fill every registry (so ``npp plugins`` can report what each plugin registered)."""
    _host(host).plugin_infos()


def available_codecs() -> list[str]:
    """Names of all registered codecs, sorted (including ones whose backend is missing)."""
    return codec_registry().names()


def available_preprocessors() -> list[str]:
    """Names of all registered preprocessors, sorted."""
    return preprocessor_registry().names()


def available_tasks() -> list[str]:
    """Names of all registered task networks, sorted."""
    return task_registry().names()


def get_codec(name: str, **config: Any):
    """Return a new instance of the codec registered as ``name``, configured by ``config``.

    Raises :class:`UnknownCodecError` for an unknown name and
    :class:`InvalidArgumentError` for an unknown or out-of-range configuration value.
    """
    return default_host().get_codec(name, **config)


def get_preprocessor(name: str, **config: Any):
    """Return the preprocessor registered as ``name`` (instances are cached per config,
    so weights load once)."""
    return default_host().get_preprocessor(name, **config)


def get_task(name: str, **config: Any):
    """Return a new instance of the task network registered as ``name``."""
    return default_host().get_task(name, **config)
