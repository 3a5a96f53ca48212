"""Registries of codecs, preprocessors and tasks, and the functions that read them.

A :class:`Registry` maps names to entries of one kind, remembering which plugin registered
each. The registries themselves are built and owned by a
:class:`~npp_plugin.plugins.PluginHost` from its plugins' register callbacks; the functions
here read the default host (:func:`npp_plugin.plugins.default_host`), or the host passed as
``host``. Passing a bare ``pluggy.PluginManager`` (``pm=``, as in release 0.1.0) still works
for one release, with a ``DeprecationWarning``.
"""

from __future__ import annotations

import re
import warnings
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .errors import PluginError

if TYPE_CHECKING:  # pragma: no cover
    import pluggy

    from .plugins import PluginHost

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

T = TypeVar("T")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class Registry(Generic[T]):
    """Names → entries of one kind, each remembering the plugin that registered it."""

    def __init__(self, kind: str, unknown_error: type[KeyError]) -> None:
        self.kind = kind
        self._unknown = unknown_error
        self._entries: dict[str, T] = {}
        self._owners: dict[str, str] = {}

    def add(self, name: str, entry: T, *, plugin: str = "<direct>") -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            msg = f"{self.kind} name {name!r} from plugin {plugin!r} is invalid: use lowercase letters, digits and '_'"
            raise PluginError(msg, plugin=plugin)
        if name in self._entries:
            msg = (
                f"duplicate {self.kind} name {name!r}: registered by plugin "
                f"{self._owners[name]!r} and again by plugin {plugin!r}"
            )
            raise PluginError(msg, plugin=plugin)
        self._entries[name] = entry
        self._owners[name] = plugin

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise self._unknown(name, sorted(self._entries)) from None

    def owner(self, name: str) -> str:
        return self._owners[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries


def _host(host: PluginHost | pluggy.PluginManager | None, pm: pluggy.PluginManager | None = None) -> PluginHost:
    from .plugins import PluginHost, host_for

    host = pm if host is None else host
    if host is not None and not isinstance(host, PluginHost):
        warnings.warn(
            "passing a pluggy.PluginManager to the registry functions is deprecated; pass a "
            "npp_plugin.plugins.PluginHost (or nothing, for the default host)",
            DeprecationWarning, stacklevel=3,
        )
    return host_for(host)


def codec_registry(host: PluginHost | None = None, *, pm: pluggy.PluginManager | None = None) -> Registry:
    """Codec name → ``Codec`` subclass."""
    return _host(host, pm).codecs


def preprocessor_registry(host: PluginHost | None = None, *, pm: pluggy.PluginManager | None = None) -> Registry:
    """Preprocessor name → factory."""
    return _host(host, pm).preprocessors


def task_registry(host: PluginHost | None = None, *, pm: pluggy.PluginManager | None = None) -> Registry:
    """Task name → factory."""
    return _host(host, pm).tasks


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
    return _host(None).get_codec(name, **config)


def get_preprocessor(name: str, **config: Any):
    """Return the preprocessor registered as ``name`` (instances are cached per config,
    so weights load once)."""
    return _host(None).get_preprocessor(name, **config)


def get_task(name: str, **config: Any):
    """Return a new instance of the task network registered as ``name``."""
    return _host(None).get_task(name, **config)
