"""Every hook of the plugin contract is documented: a docstring with a ``:param:`` line and a
type for each argument, a mention in the plugin guide (docs/plugins.md) and in the README's
plugin section, and a spec the host knows."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from npp_plugin import hookspecs
from npp_plugin.plugins import PluginHost

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
GUIDE = ROOT / "docs" / "plugins.md"


def _hookspecs() -> list:
    marker = f"{hookspecs.PROJECT}_spec"  # what pluggy's HookspecMarker sets on a spec
    return [f for _, f in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(f, marker)]


def _plugin_section() -> str:
    text = README.read_text()
    start = text.index("## Writing a plugin")
    return text[start : text.index("\n## ", start + 1)]


def test_the_hookspecs_are_found():
    """Assert the contract is the three register hooks (a new hook must be added here too)."""
    assert sorted(f.__name__ for f in _hookspecs()) == [
        "npp_register_codecs", "npp_register_preprocessors", "npp_register_tasks"]
    assert set(hookspecs.__all__) >= {f.__name__ for f in _hookspecs()}


@pytest.mark.parametrize("spec", _hookspecs(), ids=lambda f: f.__name__)
def test_every_hookspec_is_documented(spec):
    """Assert a real docstring, a ``:param name:`` line and an annotation per parameter, the
    ``npp_`` prefix, and a mention of the hook in the plugin guide and the README's plugin
    section."""
    assert spec.__name__.startswith("npp_")
    doc = inspect.getdoc(spec) or ""
    assert len(doc.splitlines()[0]) > 10, f"{spec.__name__}: no summary line"
    params = inspect.signature(spec).parameters
    assert params, f"{spec.__name__} takes no arguments"
    for name, param in params.items():
        assert f":param {name}:" in doc, f"{spec.__name__}: parameter {name!r} is not documented"
        assert param.annotation is not inspect.Parameter.empty, f"{spec.__name__}: {name!r} has no type"
    assert spec.__name__ in _plugin_section(), f"README's plugin section does not mention {spec.__name__}"
    assert spec.__name__ in GUIDE.read_text(), f"docs/plugins.md does not mention {spec.__name__}"


def test_the_host_knows_every_hookspec():
    """Assert a host's manager carries a spec for each hook (so a plugin's typo is refused)."""
    pm = PluginHost(builtins={}, entry_points=False).manager
    for spec in _hookspecs():
        caller = getattr(pm.hook, spec.__name__)
        assert caller.spec is not None and caller.spec.argnames == tuple(inspect.signature(spec).parameters)
