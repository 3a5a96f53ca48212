"""The plugin contract: hook specifications of the ``npp_plugin`` project.

A plugin is a module (or object) with functions marked ``@npp_plugin.hookimpl`` whose names
match the specifications below. Plugins are found through the entry-point group
``npp_plugin``; each hook receives a ``register`` callback, so one plugin can add several
things and the host (:class:`npp_plugin.plugins.PluginHost`) validates each one as it
arrives. Every hook here has a docstring with a ``:param:`` line per argument
(``tests/test_hookspecs.py`` checks it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

__all__ = ["PROJECT", "hookimpl", "hookspec", "npp_register_codecs", "npp_register_preprocessors", "npp_register_tasks"]

PROJECT = "npp_plugin"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# -------------------------------------------------------------------------------------------
# Codecs
# -------------------------------------------------------------------------------------------


@hookspec
def npp_register_codecs(register: Callable[[type], None]) -> None:
    """Register codec classes.

    :param register: call ``register(CodecSubclass)`` once per codec. The class must
        subclass :class:`npp_plugin.Codec` and have a unique lowercase ``name``; a duplicate
        name raises :class:`npp_plugin.errors.PluginError`.
    """


# -------------------------------------------------------------------------------------------
# Pre-encode hooks (preprocessors)
# -------------------------------------------------------------------------------------------


@hookspec
def npp_register_preprocessors(register: Callable[..., None]) -> None:
    """Register preprocessors that run before any codec's encoder.

    :param register: call ``register(name, factory)`` where ``factory(**config)`` returns a
        :class:`npp_plugin.Preprocessor`. ``codec.roundtrip(batch, qp=..., preprocess=name)``
        and ``codec.encode(img, qp=..., preprocess=name)`` then run it on the float image
        before encoding (evaluation does too). Set the class attribute ``codec_independent``
        to True only when the output ignores ``codec`` and ``qp``.
    """


# -------------------------------------------------------------------------------------------
# Task networks (training and evaluation)
# -------------------------------------------------------------------------------------------


@hookspec
def npp_register_tasks(register: Callable[..., Any]) -> None:
    """Register downstream task networks (classifiers, detectors; evaluation-only
    segmentation and pose tasks).

    :param register: call ``register(name, factory)`` where ``factory(**config)`` returns a
        task object (see :mod:`npp_plugin.tasks`).
    """
