"""Import paths that moved, kept working for one release (each warns once).

Release 0.3.0 moved the codec surrogates out of training, since encode-time code
(``npp_refine``) and the surrogate check use them as much as training does:
``npp_plugin.training.surrogates`` is :mod:`npp_plugin.surrogates` and
``npp_plugin.training.ste`` is :mod:`npp_plugin.ste`; and ``npp_net`` moved from
:mod:`npp_plugin.preprocessors.model` to :mod:`npp_plugin.preprocessors.weights` (the builder
reads weights files, which build the networks). The proxies' training helpers
(``npp_plugin.proxy.train``) are :mod:`npp_plugin.training.proxy_stage` (after 0.2.0). The 0.1.0
paths (``npp_plugin.preprocessor``, ``.filters``, ``.preprocess[.<module>]``) served their
release and are gone.

Importing an old path gives the module at its new path itself (the same object, so classes,
``isinstance`` and monkeypatching are shared) and warns with a :class:`DeprecationWarning`
the first time. There are no files at the old paths: a finder at the front of
``sys.meta_path`` (installed by ``import npp_plugin``) answers for exactly the names in
:data:`MOVED`. A name that moved between modules is served by :func:`moved_attributes`, the
old module's ``__getattr__``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType

__all__ = ["MOVED", "install", "moved_attributes"]

#: old module name → the module that replaces it (removed in the next release)
MOVED: dict[str, str] = {
    # after 0.2.0: the proxies' training helpers joined the training package (goes in 0.4.0)
    "npp_plugin.proxy.train": "npp_plugin.training.proxy_stage",
    # 0.3.0: the codec surrogates are codec-side, below training and refinement (goes in 0.4.0)
    "npp_plugin.training.surrogates": "npp_plugin.surrogates",
    "npp_plugin.training.ste": "npp_plugin.ste",
}


class _Alias(importlib.abc.Loader):
    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec) -> ModuleType:
        module = importlib.import_module(self.new)
        msg = (f"{spec.name} is deprecated and goes in the next release; import {self.new} "
               f"(the same module)")
        # stacklevel 2: the importing line (warnings skips the import system's own frames)
        warnings.warn(msg, DeprecationWarning, stacklevel=2)
        self._spec = module.__spec__  # the import system overwrites __spec__; put it back below
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._spec


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path, target=None):
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _Alias(new))


_FINDER = _Finder()


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once): it must answer before the path
    finder, which could otherwise load a module a second time under its old name."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _FINDER)


def top_level(name: str) -> ModuleType:
    """``npp_plugin.<name>`` for a moved top-level name (``npp_plugin.filters`` used as an
    attribute without importing it first)."""
    return importlib.import_module(f"npp_plugin.{name}")


def moved_attributes(module: str, moved: dict[str, str]):
    """A module ``__getattr__`` for names that moved to another module: ``moved`` maps each
    name to its new module. The old spelling gives the object itself and warns with a
    :class:`DeprecationWarning`; the new module is imported only then (so the old module does
    not import it: no import circle)."""

    def __getattr__(name: str):
        new = moved.get(name)
        if new is None:
            msg = f"module {module!r} has no attribute {name!r}"
            raise AttributeError(msg)
        msg = f"{module}.{name} is deprecated and goes in the next release; import it from {new}"
        warnings.warn(msg, DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(new), name)

    return __getattr__
