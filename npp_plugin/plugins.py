"""Plugin discovery: one pluggy manager, loaded lazily and once.

Built-in plugins (``DEFAULT_PLUGINS``) are registered first under the same names as their
entry points, so pluggy-style dedup keeps them single even when the package is installed.
Third-party plugins come from the entry-point group ``npp_plugin``. A plugin that fails to
import is recorded (and warned about) instead of breaking the others.

Environment switches:
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
from dataclasses import dataclass, field
from types import ModuleType

import pluggy

from . import hookspecs

__all__ = ["DEFAULT_PLUGINS", "PluginInfo", "PluginWarning", "get_plugin_manager", "load_plugins"]

#: Built-in plugin modules, registered under these names.
DEFAULT_PLUGINS: dict[str, str] = {
    "bpg": "npp_plugin.codecs.bpg",
    "npp": "npp_plugin.preprocess.hook",
    "filters": "npp_plugin.filters",
    "tasks": "npp_plugin.tasks.builtin",
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


_lock = threading.RLock()
_pm: pluggy.PluginManager | None = None
_infos: dict[str, PluginInfo] = {}


def _new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def _record_failure(info: PluginInfo, what: str, exc: BaseException) -> None:
    msg = f"{what}: {type(exc).__name__}: {exc}"
    info.errors.append(msg)
    warnings.warn(f"npp_plugin: plugin {info.name!r} {msg}", PluginWarning, stacklevel=3)


def _register_module(pm: pluggy.PluginManager, info: PluginInfo, load) -> None:
    try:
        plugin = load()
    except Exception as exc:  # a broken plugin must not break the others
        _record_failure(info, "failed to import", exc)
        return
    if isinstance(plugin, ModuleType):
        info.module = plugin.__name__
    try:
        pm.register(plugin, name=info.name)
    except Exception as exc:  # pluggy.PluginValidationError and friends
        _record_failure(info, "failed to register", exc)


def _wanted(ep: importlib.metadata.EntryPoint) -> bool:
    if os.environ.get("NPP_DISABLE_PLUGIN_AUTOLOAD", "") not in ("", "0"):
        return False
    only = os.environ.get("NPP_LOAD_PLUGINS")
    if only is None:
        return True
    names = {n.strip() for n in only.split(",") if n.strip()}
    dist = ep.dist.name if ep.dist is not None else None
    return ep.name in names or (dist is not None and dist in names)


def load_plugins(pm: pluggy.PluginManager | None = None) -> pluggy.PluginManager:
    """Load the built-in and entry-point plugins into ``pm`` (the global one by default).

    Idempotent for the global manager. Returns the manager.
    """
    global _pm
    with _lock:
        if pm is None:
            if _pm is not None:
                return _pm
            pm = _new_manager()
            infos = _infos
        else:
            infos = {}
        for name, modname in DEFAULT_PLUGINS.items():
            if pm.get_plugin(name) is not None:
                continue
            info = infos.setdefault(name, PluginInfo(name, modname, "npp_plugin", None, True))
            info.version = _dist_version("npp_plugin")
            _register_module(pm, info, lambda m=modname: importlib.import_module(m))
        for ep in importlib.metadata.entry_points(group=hookspecs.PROJECT):
            # A name already tried (a built-in, or a duplicate entry point) is not loaded twice.
            if ep.name in infos or pm.is_blocked(ep.name) or not _wanted(ep):
                continue
            dist = ep.dist.name if ep.dist is not None else None
            version = ep.dist.version if ep.dist is not None else None
            info = infos.setdefault(ep.name, PluginInfo(ep.name, ep.value, dist, version))
            _register_module(pm, info, ep.load)
        if infos is _infos:
            _pm = pm
        pm._npp_infos = infos  # type: ignore[attr-defined]
        return pm


def _dist_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def get_plugin_manager() -> pluggy.PluginManager:
    """The global plugin manager, loading plugins on first use."""
    return load_plugins()


def plugin_infos(pm: pluggy.PluginManager | None = None) -> dict[str, PluginInfo]:
    """What each plugin registered and its errors (a manager built elsewhere starts empty)."""
    pm = pm or get_plugin_manager()
    if not hasattr(pm, "_npp_infos"):
        pm._npp_infos = {}  # type: ignore[attr-defined]
    return pm._npp_infos  # type: ignore[attr-defined]


def reset() -> None:
    """Forget the global manager and its registries (tests, or after installing a plugin)."""
    global _pm
    with _lock:
        _pm = None
        _infos.clear()
        from . import registry

        registry._reset()
