"""The plugin host: one pluggy manager, what each plugin registered, and the registries.

A :class:`PluginHost` owns everything plugin-related: the manager, a :class:`PluginInfo`
record per plugin, the codec / preprocessor / task registries built from the plugins'
register callbacks, and the cache of preprocessor instances. :meth:`PluginHost.reset`
forgets all of it at once. The process uses one default host (:func:`default_host`), loaded
lazily on first use; :mod:`npp_plugin.registry`'s functions (``get_codec`` and friends) read
it. Tests and tools that want isolation build their own host (``PluginHost()``) and, when
code under test reads the default, install it with :func:`use_host`.

Built-in plugins (``DEFAULT_PLUGINS``) are registered first under the same names as their
entry points, so pluggy-style dedup keeps them single even when the package is installed.
Third-party plugins come from the entry-point group ``npp_plugin``. A plugin that fails to
import is recorded (and warned about) instead of breaking the others; so is one whose
register hook raises or registers something invalid, and its other entries are kept.

Environment switches (read when a host loads):
    ``NPP_DISABLE_PLUGIN_AUTOLOAD=1``  load only the built-in plugins
    ``NPP_LOAD_PLUGINS=a,b``           load only these entry points (by entry-point name or
                                       distribution name); an empty value loads none
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from . import hookspecs
from ._registry import Registry
from .errors import (
    InvalidArgumentError,
    PluginError,
    UnknownCodecError,
    UnknownPreprocessorError,
    UnknownTaskError,
)
from .preprocessors.base import set_name_lookup

__all__ = [
    "DEFAULT_PLUGINS",
    "PluginHost",
    "PluginInfo",
    "PluginWarning",
    "default_host",
    "get_plugin_manager",
    "load_plugins",
    "plugin_infos",
    "reset",
    "use_host",
]

#: Built-in plugin modules, registered under these names.
DEFAULT_PLUGINS: dict[str, str] = {
    "bpg": "npp_plugin.codecs.bpg",
    "npp": "npp_plugin.preprocessors.hook",
    "filters": "npp_plugin.preprocessors.filters",
    "npp_refine": "npp_plugin.preprocessors.refine",
    "tasks": "npp_plugin.tasks.builtin",
}

#: kind → (hook name, error for an unknown name, the PluginInfo list it fills)
_KINDS: dict[str, tuple[str, type[KeyError], str]] = {
    "codec": ("npp_register_codecs", UnknownCodecError, "codecs"),
    "preprocessor": ("npp_register_preprocessors", UnknownPreprocessorError, "preprocessors"),
    "task": ("npp_register_tasks", UnknownTaskError, "tasks"),
}


class PluginWarning(UserWarning):
    """A plugin could not be loaded or registered something invalid."""


@dataclass
class PluginInfo:
    """What ``npp plugins`` reports for one plugin."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    builtin: bool = False
    codecs: list[str] = field(default_factory=list)
    preprocessors: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "plugin": self.name,
            "module": self.module,
            "distribution": self.distribution,
            "version": self.version,
            "builtin": self.builtin,
            "codecs": self.codecs,
            "preprocessors": self.preprocessors,
            "tasks": self.tasks,
            "errors": self.errors,
        }


class PluginHost:
    """One plugin manager and everything its plugins registered.

    Args:
        builtins: plugin name → module of the built-in plugins (default ``DEFAULT_PLUGINS``,
            read when the host loads); ``{}`` for none.
        entry_points: also load the installed ``npp_plugin`` entry points (subject to the
            environment switches above).
        manager: wrap a pluggy manager built elsewhere (default: a new one).

    Loading happens once, on first use of a registry or of :meth:`register` (so built-ins
    always come first and a later duplicate name is the one refused). ``PluginHost(builtins={},
    entry_points=False)`` is an empty host to which a test registers only its own plugins.
    """

    def __init__(
        self,
        *,
        builtins: Mapping[str, str] | None = None,
        entry_points: bool = True,
        manager: pluggy.PluginManager | None = None,
    ) -> None:
        self._builtins = None if builtins is None else dict(builtins)
        self._entry_points = entry_points
        self._lock = threading.RLock()
        self._start(manager)

    def _start(self, manager: pluggy.PluginManager | None) -> None:
        if manager is None:
            manager = pluggy.PluginManager(hookspecs.PROJECT)
            manager.add_hookspecs(hookspecs)
        self._pm = manager
        self._infos: dict[str, PluginInfo] = {}
        self._load_errors: dict[str, list[str]] = {}
        self._loaded = False
        self._registries: dict[str, Registry] | None = None
        self._instances: dict[tuple, Any] = {}

    def __repr__(self) -> str:
        state = "loaded" if self._loaded else "not loaded"
        return f"<PluginHost {state}, plugins: {', '.join(self._infos) or 'none'}>"

    # -- plugins --------------------------------------------------------------------------

    @property
    def manager(self) -> pluggy.PluginManager:
        """The pluggy manager (loaded)."""
        return self.load()._pm

    def load(self) -> PluginHost:
        """Register the built-in and entry-point plugins (idempotent); returns the host."""
        with self._lock:
            if self._loaded:
                return self
            self._loaded = True
            builtins = DEFAULT_PLUGINS if self._builtins is None else self._builtins
            for name, modname in builtins.items():
                if self._pm.get_plugin(name) is not None:
                    continue
                info = self._infos.setdefault(
                    name, PluginInfo(name, modname, "npp_plugin", _dist_version("npp_plugin"), True)
                )
                self._register_module(info, lambda m=modname: importlib.import_module(m))
            if self._entry_points:
                for ep in importlib.metadata.entry_points(group=hookspecs.PROJECT):
                    # A name already tried (a built-in, or a duplicate entry point) is not loaded twice.
                    if ep.name in self._infos or self._pm.is_blocked(ep.name) or not _wanted(ep):
                        continue
                    dist = ep.dist.name if ep.dist is not None else None
                    version = ep.dist.version if ep.dist is not None else None
                    info = self._infos.setdefault(ep.name, PluginInfo(ep.name, ep.value, dist, version))
                    self._register_module(info, ep.load)
            self._invalidate()
            return self

    def register(self, plugin: object, name: str | None = None) -> str:
        """Add ``plugin`` (a module, class or object with ``@hookimpl`` functions) under
        ``name``, after the built-ins; returns the name. Registries are rebuilt on next use."""
        with self._lock:
            self.load()
            registered = self._pm.register(plugin, name=name)
            if registered is None:
                msg = f"plugin {name!r} is blocked in this host"
                raise PluginError(msg, plugin=name)
            module = getattr(plugin, "__module__", None) or getattr(plugin, "__name__", "?")
            if isinstance(plugin, ModuleType):
                module = plugin.__name__
            self._infos.setdefault(registered, PluginInfo(registered, module))
            self._invalidate()
            return registered

    def unregister(self, name: str) -> None:
        """Remove the plugin registered as ``name`` and what it registered."""
        with self._lock:
            self._pm.unregister(name=name)
            self._infos.pop(name, None)
            self._load_errors.pop(name, None)
            self._invalidate()

    def plugin_infos(self) -> dict[str, PluginInfo]:
        """Name → what each plugin registered and its errors (collects the registries)."""
        with self._lock:
            self._collected()
            return self._infos

    def reset(self) -> None:
        """Forget the plugins, their records, the registries and cached preprocessors; the
        next use loads again (after installing a plugin, or between tests)."""
        with self._lock:
            self._start(None)

    # -- registries -----------------------------------------------------------------------

    @property
    def codecs(self) -> Registry:
        return self.registry("codec")

    @property
    def preprocessors(self) -> Registry:
        return self.registry("preprocessor")

    @property
    def tasks(self) -> Registry:
        return self.registry("task")

    def registry(self, kind: str) -> Registry:
        """The registry of ``kind`` ("codec", "preprocessor" or "task")."""
        if kind not in _KINDS:
            msg = f"no registry of kind {kind!r}; kinds: {', '.join(_KINDS)}"
            raise KeyError(msg)
        with self._lock:
            return self._collected()[kind]

    def get_codec(self, name: str, **config: Any) -> Any:
        """A new instance of the codec registered as ``name``, configured by ``config``."""
        return self.codecs.get(name)(**config)

    def get_preprocessor(self, name: str, **config: Any) -> Any:
        """The preprocessor registered as ``name``; one instance per configuration, so
        weights load once."""
        factory: Callable[..., Any] = self.preprocessors.get(name)
        key = (name, tuple(sorted((k, repr(v)) for k, v in config.items())))
        with self._lock:
            if key not in self._instances:
                self._instances[key] = factory(**config)
            return self._instances[key]

    def get_task(self, name: str, **config: Any) -> Any:
        """A new instance of the task registered as ``name``, configured by ``config``.

        Names joined by ``+`` (``"mobilenet_v2+efficientnet_lite0"``), unless registered as
        such, make a :class:`~npp_plugin.tasks.classification.ClassifierEnsemble` of those
        classifiers (each built with ``config``; the loss is the mean of theirs), named by
        that string: a task like any other, with its own λ table."""
        tasks = self.tasks
        if name in tasks or "+" not in name:
            return tasks.get(name)(**config)
        members = name.split("+")
        for member in members:
            if member not in tasks:
                raise UnknownTaskError(member, tasks.names(), ensemble=name)
        if len(set(members)) != len(members):
            msg = f"task ensemble {name!r} names a classifier twice"
            raise InvalidArgumentError(msg, argument="task", allowed="distinct classifier names joined by '+'")
        from .tasks.classification import ClassifierEnsemble

        try:  # it refuses a member that is no classifier, by name
            ensemble = ClassifierEnsemble([tasks.get(member)(**config) for member in members])
        except InvalidArgumentError as exc:
            msg = f"task ensemble {name!r}: {exc}"
            raise InvalidArgumentError(msg, argument="task", allowed="classification tasks joined by '+'") from exc
        ensemble.name = name  # the registered names, which a task's own name need not equal
        return ensemble

    # -- internals ------------------------------------------------------------------------

    def _invalidate(self) -> None:
        self._registries = None
        self._instances.clear()

    def _record(self, info: PluginInfo, msg: str, *, at_load: bool) -> None:
        info.errors.append(msg)
        if at_load:
            self._load_errors.setdefault(info.name, []).append(msg)
        warnings.warn(f"npp_plugin: plugin {info.name!r} {msg}", PluginWarning, stacklevel=4)

    def _register_module(self, info: PluginInfo, load: Callable[[], Any]) -> None:
        try:
            plugin = load()
        except Exception as exc:  # a broken plugin must not break the others
            self._record(info, f"failed to import: {type(exc).__name__}: {exc}", at_load=True)
            return
        if isinstance(plugin, ModuleType):
            info.module = plugin.__name__
        try:
            self._pm.register(plugin, name=info.name)
        except Exception as exc:  # pluggy.PluginValidationError and friends
            self._record(info, f"failed to register: {type(exc).__name__}: {exc}", at_load=True)

    def _collected(self) -> dict[str, Registry]:
        """Build the three registries (once per change of plugins)."""
        self.load()
        if self._registries is None:
            for info in self._infos.values():  # what a plugin registered is collected afresh
                info.codecs, info.preprocessors, info.tasks = [], [], []
                info.errors = list(self._load_errors.get(info.name, []))
            self._registries = {kind: self._collect(kind) for kind in _KINDS}
        return self._registries

    def _collect(self, kind: str) -> Registry:
        """Call each plugin's register hook on its own with a callback that validates every
        entry; a failure is recorded against that plugin and never hides the others' entries."""
        hook_name, unknown, attr = _KINDS[kind]
        registry: Registry = Registry(kind, unknown)

        def make_register(info: PluginInfo) -> Callable[..., None]:
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
                    self._record(info, str(exc), at_load=False)
                    return
                getattr(info, attr).append(name)

            return register

        # In registration order (pluggy would call last-registered first): built-ins come
        # first, so a third-party duplicate is the one refused.
        caller = getattr(self._pm.hook, hook_name, None)  # None: a bare manager without our specs
        for impl in caller.get_hookimpls() if caller is not None else []:
            info = self._infos.get(impl.plugin_name) or self._infos.setdefault(
                impl.plugin_name, PluginInfo(impl.plugin_name, getattr(impl.plugin, "__name__", "?"))
            )
            try:
                impl.function(register=make_register(info))
            except Exception as exc:
                self._record(info, f"{hook_name} failed: {type(exc).__name__}: {exc}", at_load=False)
        return registry


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


def _wanted(ep: importlib.metadata.EntryPoint) -> bool:
    if os.environ.get("NPP_DISABLE_PLUGIN_AUTOLOAD", "") not in ("", "0"):
        return False
    only = os.environ.get("NPP_LOAD_PLUGINS")
    if only is None:
        return True
    names = {n.strip() for n in only.split(",") if n.strip()}
    dist = ep.dist.name if ep.dist is not None else None
    return ep.name in names or (dist is not None and dist in names)


def _dist_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


# -- the process's default host ---------------------------------------------------------------

_lock = threading.RLock()
_default: PluginHost | None = None
# Hosts around managers passed to the module functions below (kept beside, not on, the manager).
_wrapped: weakref.WeakKeyDictionary[pluggy.PluginManager, PluginHost] = weakref.WeakKeyDictionary()


def default_host() -> PluginHost:
    """The host ``get_codec`` and friends use (created on first call, loaded on first use)."""
    global _default
    with _lock:
        if _default is None:
            _default = PluginHost()
        return _default


@contextmanager
def use_host(host: PluginHost) -> Iterator[PluginHost]:
    """Make ``host`` the default host inside the ``with`` block (tests, isolated tools)."""
    global _default
    with _lock:
        previous, _default = _default, host
    try:
        yield host
    finally:
        with _lock:
            _default = previous


def host_for(source: PluginHost | pluggy.PluginManager | None) -> PluginHost:
    """``source`` itself, the default host for ``None``, or the host wrapping a pluggy manager
    built elsewhere (one per manager)."""
    if source is None:
        return default_host()
    if isinstance(source, PluginHost):
        return source
    with _lock:
        if source not in _wrapped:
            _wrapped[source] = PluginHost(manager=source)
        return _wrapped[source]


def load_plugins(pm: pluggy.PluginManager | None = None) -> pluggy.PluginManager:
    """Load the built-in and entry-point plugins into ``pm`` (the default host's by default);
    idempotent. Returns the manager."""
    return host_for(pm).manager


def get_plugin_manager() -> pluggy.PluginManager:
    """The default host's plugin manager, loading plugins on first use."""
    return default_host().manager


def plugin_infos(pm: PluginHost | pluggy.PluginManager | None = None) -> dict[str, PluginInfo]:
    """What each plugin registered and its errors (of the default host unless given)."""
    return host_for(pm).plugin_infos()


def reset() -> None:
    """Reset the default host: plugins, records, registries and cached preprocessors."""
    default_host().reset()


def _preprocessor_by_name(name: str) -> Any:
    return default_host().get_preprocessor(name)


# ``codec.encode(..., preprocess="npp")`` resolves names through the default host (read at
# call time, so ``use_host`` applies); the codec contract holds this lookup rather than
# importing the host, which imports the codec contract.
set_name_lookup(_preprocessor_by_name)
