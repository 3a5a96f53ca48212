"""The plain :class:`Registry` container: names → entries of one kind.

It knows nothing of plugins: a :class:`~npp_plugin.plugins.PluginHost` builds one per kind
from its plugins' register callbacks, and :mod:`npp_plugin.registry` reads them. Kept apart
from both so that the host and the lookups sit above it and nothing here imports upwards.
"""

from __future__ import annotations

import re
from typing import Generic, TypeVar

from .errors import PluginError

__all__ = ["Registry"]

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
