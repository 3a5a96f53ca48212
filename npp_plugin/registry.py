"""Registries of codecs, preprocessors and tasks, filled through the plugins' register callbacks.

Each hook implementation is called on its own, so one plugin that raises (or registers
something invalid) is recorded against that plugin and never hides the others' entries.
"""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import pluggy

from .errors import (
    PluginError,
    UnknownCodecError,
    UnknownPreprocessorError,
    UnknownTaskError,
)

__all__ = [
    "Registry",
    "available_codecs",
    "available_preprocessors",
    "available_tasks",
    "codec_registry",
    "get_codec",
    "get_preprocessor",
    "get_task",
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


def _validate_codec(cls: Any) -> str:
    from .codec import Codec

    if not (isinstance(cls, type) and issubclass(cls, Codec)):
        msg = f"register() expects a Codec subclass, got {cls!r}"
        raise PluginError(msg)
    name = getattr(cls, "name", None)
    if not name:
        msg = f"codec class {cls.__qualname__} has no 'name'"
        raise PluginError(msg)
    return name


def _collect(pm: pluggy.PluginManager, hook_name: str, kind: str, unknown, attr: str) -> Registry:
    """Call each plugin's ``hook_name`` on its own with a register callback that validates
    every entry; failures are recorded against that plugin (and warned about)."""
    from .plugins import PluginInfo, PluginWarning, plugin_infos

    registry: Registry = Registry(kind, unknown)
    infos = plugin_infos(pm)

    def record(info: PluginInfo, msg: str) -> None:
        info.errors.append(msg)
        warnings.warn(f"npp_plugin: plugin {info.name!r}: {msg}", PluginWarning, stacklevel=3)

    def make_register(info: PluginInfo):
        def register(*args: Any, **kwargs: Any) -> None:
            try:
                if kind == "codec":
                    (entry,) = args
                    name = _validate_codec(entry)
                else:
                    name, entry = args if len(args) == 2 else (kwargs["name"], kwargs["factory"])
                    if not callable(entry):
                        msg = f"{kind} {name!r} from plugin {info.name!r} is not callable"
                        raise PluginError(msg, plugin=info.name)
                registry.add(name, entry, plugin=info.name)
            except PluginError as exc:  # keep the plugin's other entries
                record(info, str(exc))
                return
            getattr(info, attr).append(name)

        return register

    # In registration order (pluggy would call last-registered first): built-ins come first,
    # so a third-party duplicate is the one refused.
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        info = infos.get(impl.plugin_name) or infos.setdefault(
            impl.plugin_name, PluginInfo(impl.plugin_name, getattr(impl.plugin, "__name__", "?"))
        )
        try:
            impl.function(register=make_register(info))
        except Exception as exc:
            record(info, f"{hook_name} failed: {type(exc).__name__}: {exc}")
    return registry


_lock = threading.RLock()
_cache: dict[str, Registry] = {}


def _reset() -> None:
    with _lock:
        _cache.clear()
        _preprocessor_cache.clear()


def _registry(key: str, pm: pluggy.PluginManager | None) -> Registry:
    from .plugins import get_plugin_manager

    spec = {
        "codec": ("npp_register_codecs", UnknownCodecError, "codecs"),
        "preprocessor": ("npp_register_preprocessors", UnknownPreprocessorError, "preprocessors"),
        "task": ("npp_register_tasks", UnknownTaskError, "tasks"),
    }[key]
    if pm is not None:
        return _collect(pm, spec[0], key, spec[1], spec[2])
    with _lock:
        if key not in _cache:
            _cache[key] = _collect(get_plugin_manager(), spec[0], key, spec[1], spec[2])
        return _cache[key]


def codec_registry(pm: pluggy.PluginManager | None = None) -> Registry:
    return _registry("codec", pm)


def preprocessor_registry(pm: pluggy.PluginManager | None = None) -> Registry:
    return _registry("preprocessor", pm)


def task_registry(pm: pluggy.PluginManager | None = None) -> Registry:
    return _registry("task", pm)


def load_all_registries() -> None:
    """Fill every registry (so ``npp plugins`` can report what each plugin registered)."""
    codec_registry()
    preprocessor_registry()
    task_registry()


def available_codecs() -> list[str]:
    """Names of all registered codecs, sorted (including ones whose backend is missing)."""
    return codec_registry().names()


def available_preprocessors() -> list[str]:
    return preprocessor_registry().names()


def available_tasks() -> list[str]:
    return task_registry().names()


def get_codec(name: str, **config: Any):
    """Return a new instance of the codec registered as ``name``, configured by ``config``.

    Raises :class:`UnknownCodecError` for an unknown name and
    :class:`InvalidArgumentError` for an unknown or out-of-range configuration value.
    """
    cls = codec_registry().get(name)
    return cls(**config)


_preprocessor_cache: dict[tuple, Any] = {}


def get_preprocessor(name: str, **config: Any):
    """Return the preprocessor registered as ``name`` (instances are cached per config,
    so weights load once)."""
    factory: Callable[..., Any] = preprocessor_registry().get(name)
    key = (name, tuple(sorted((k, repr(v)) for k, v in config.items())))
    with _lock:
        if key not in _preprocessor_cache:
            _preprocessor_cache[key] = factory(**config)
        return _preprocessor_cache[key]


def get_task(name: str, **config: Any):
    factory = task_registry().get(name)
    return factory(**config)
