"""Import paths that moved, kept working for one release (each warns once).

Release 0.1.0 had the preprocessor contract, the classical filters and the NPP in three
places (``npp_plugin.preprocessor``, ``npp_plugin.filters``, ``npp_plugin.preprocess``);
they are now one package, :mod:`npp_plugin.preprocessors`. The proxies' training helpers
(``npp_plugin.proxy.train``) are :mod:`npp_plugin.training.proxy_stage`. Importing an old path gives the
module at its new path itself (the same object, so classes, ``isinstance`` and
monkeypatching are shared) and warns with a :class:`DeprecationWarning` the first time.

There are no files at the old paths: a finder at the front of ``sys.meta_path`` (installed
by ``import npp_plugin``) answers for exactly the names in :data:`MOVED`.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType

__all__ = ["MOVED", "install"]

#: old module name → the module that replaces it (removed in the next release)
MOVED: dict[str, str] = {
    "npp_plugin.preprocessor": "npp_plugin.preprocessors.base",
    "npp_plugin.filters": "npp_plugin.preprocessors.filters",
    "npp_plugin.preprocess": "npp_plugin.preprocessors",
    **{f"npp_plugin.preprocess.{m}": f"npp_plugin.preprocessors.{m}"
       for m in ("hook", "model", "onnx_export", "saliency", "weights")},
    # the proxies' training helpers joined the training package, next to the stage that uses them
    "npp_plugin.proxy.train": "npp_plugin.training.proxy_stage",
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
    finder, which would otherwise load ``npp_plugin.preprocess.<module>`` a second time
    from the new package's folder under the old name."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _FINDER)


def top_level(name: str) -> ModuleType:
    """``npp_plugin.<name>`` for a moved top-level name (``npp_plugin.filters`` used as an
    attribute without importing it first)."""
    return importlib.import_module(f"npp_plugin.{name}")
