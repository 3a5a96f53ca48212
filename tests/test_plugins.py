"""The pluggy registry: discovery, isolation of broken plugins, duplicates, env switches, and a
third-party plugin distribution found through entry points."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pluggy
import pytest

import npp_plugin
from npp_plugin import Codec, hookimpl
from npp_plugin.errors import PluginError, UnknownCodecError
from npp_plugin.plugins import (
    PluginHost,
    PluginWarning,
    default_host,
    load_plugins,
    plugin_infos,
    use_host,
)
from npp_plugin.registry import Registry, codec_registry, preprocessor_registry

ROOT = Path(__file__).resolve().parents[1]


class _Toy(Codec):
    name = "toy"

    def _encode(self, rgb, /, *, qp):
        return b"TOY!" + rgb.tobytes()

    def _decode(self, data, /, *, high_bit_depth):
        raise NotImplementedError

    @classmethod
    def _check(cls, data, /):
        return data[:4] == b"TOY!"


def _host(*plugins) -> PluginHost:
    """A host with only these (name, plugin) pairs: no built-ins, no entry points."""
    host = PluginHost(builtins={}, entry_points=False)
    for name, plugin in plugins:
        host.register(plugin, name=name)
    return host


class GoodPlugin:
    @hookimpl
    def npp_register_codecs(self, register):
        register(_Toy)


class RaisingPlugin:
    @hookimpl
    def npp_register_codecs(self, register):
        msg = "boom"
        raise RuntimeError(msg)


class InvalidPlugin:
    @hookimpl
    def npp_register_codecs(self, register):
        register(dict)  # not a Codec


class DuplicatePlugin:
    @hookimpl
    def npp_register_codecs(self, register):
        register(_Toy)


def test_registry_add_raises_on_duplicate_names():
    reg: Registry = Registry("codec", UnknownCodecError)
    reg.add("toy", _Toy, plugin="a")
    with pytest.raises(PluginError, match="duplicate codec name 'toy': registered by plugin 'a' and again by plugin 'b'"):
        reg.add("toy", _Toy, plugin="b")
    with pytest.raises(PluginError, match="invalid"):
        reg.add("Bad-Name", _Toy, plugin="b")


def test_broken_plugins_are_reported_and_do_not_hide_others():
    host = _host(("good", GoodPlugin()), ("raising", RaisingPlugin()), ("invalid", InvalidPlugin()),
                 ("dup", DuplicatePlugin()))
    with pytest.warns(PluginWarning):
        reg = host.codecs
    assert reg.names() == ["toy"]
    assert reg.owner("toy") == "good"
    infos = host.plugin_infos()
    assert infos["good"].codecs == ["toy"] and not infos["good"].errors
    assert "RuntimeError: boom" in infos["raising"].errors[0]
    assert "expects a Codec subclass" in infos["invalid"].errors[0]
    assert "duplicate codec name 'toy'" in infos["dup"].errors[0]


def test_plugin_failing_to_import_is_recorded():
    host = PluginHost(builtins={"ghost": "npp_plugin.no_such_module", "bpg": "npp_plugin.codecs.bpg"},
                      entry_points=False)
    with pytest.warns(PluginWarning, match="ghost.*failed to import"):
        host.load()
    infos = host.plugin_infos()
    assert "ModuleNotFoundError" in infos["ghost"].errors[0]
    assert host.codecs.names() == ["bpg"] and infos["bpg"].codecs == ["bpg"]
    # collecting the registries again (after a change of plugins) neither repeats nor loses the error
    host.register(GoodPlugin(), name="good")
    assert host.codecs.names() == ["bpg", "toy"]
    assert len(host.plugin_infos()["ghost"].errors) == 1 and host.plugin_infos()["bpg"].codecs == ["bpg"]


def test_register_after_use_rebuilds_and_unregister_removes():
    """Assert a plugin added to a host in use shows up at once, and goes with unregister."""
    host = _host()
    assert host.codecs.names() == []
    assert host.register(GoodPlugin(), name="good") == "good"
    assert host.get_codec("toy") == _Toy()
    assert host.plugin_infos()["good"].codecs == ["toy"]
    host.unregister("good")
    assert host.codecs.names() == [] and "good" not in host.plugin_infos()
    with pytest.raises(UnknownCodecError, match="unknown codec 'toy'"):
        host.get_codec("toy")


def test_reset_forgets_plugins_registries_and_cached_preprocessors():
    """Assert one reset clears everything the host holds, and the next use loads afresh."""

    class Counting:
        made = 0

        @hookimpl
        def npp_register_preprocessors(self, register):
            def factory(**config):
                Counting.made += 1
                return object()

            register("counted", factory)

    host = PluginHost(builtins={"bpg": "npp_plugin.codecs.bpg"}, entry_points=False)
    host.register(Counting(), name="counting")
    first = host.get_preprocessor("counted")
    assert host.get_preprocessor("counted") is first and Counting.made == 1  # cached per config
    old_manager = host.manager
    host.reset()
    assert host.manager is not old_manager
    assert set(host.plugin_infos()) == {"bpg"} and host.preprocessors.names() == []
    assert host.codecs.names() == ["bpg"]


def test_nothing_is_stored_on_the_pluggy_manager():
    """Assert the host keeps its records beside pluggy's manager, not as attributes on it."""
    fresh = vars(pluggy.PluginManager("npp_plugin")).keys()
    host = _host(("good", GoodPlugin()))
    host.plugin_infos()
    assert vars(host.manager).keys() == fresh


def test_the_fixture_host_is_the_default_and_isolated(plugin_host):
    """Assert the conftest host is what get_codec reads, and what a test adds stays there."""
    assert default_host() is plugin_host
    plugin_host.register(GoodPlugin(), name="good")
    assert npp_plugin.get_codec("toy") == _Toy()
    assert "jpeg" in npp_plugin.available_codecs()  # built-ins and installed plugins as usual
    with use_host(PluginHost(builtins={}, entry_points=False)):
        assert npp_plugin.available_codecs() == []
    assert default_host() is plugin_host


def test_a_bare_pluggy_manager_works_with_the_host_functions_only():
    """Assert load_plugins(pm) and plugin_infos(pm) take a pluggy manager, while the registry
    lookups, whose deprecated ``pm`` route went in 0.3.0, refuse one with a hint."""
    pm = pluggy.PluginManager("npp_plugin")
    assert load_plugins(pm) is pm
    pm.register(GoodPlugin(), name="good")  # behind the host's back: found on the next build
    assert plugin_infos(pm)["bpg"].builtin
    with pytest.raises(TypeError, match=r"PluginHost\(manager=pm\)"):
        codec_registry(pm)
    assert codec_registry(PluginHost(manager=pluggy.PluginManager("npp_plugin"))).owner("bpg") == "bpg"


def _run_python(code: str, **env) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=120)


def test_env_switches_control_autoload():
    code = "import npp_plugin, json; print(json.dumps(npp_plugin.available_codecs()))"
    base = json.loads(_run_python(code).stdout)
    assert {"jpeg", "heif", "vvc"} <= set(base)
    disabled = json.loads(_run_python(code, NPP_DISABLE_PLUGIN_AUTOLOAD="1").stdout)
    assert not {"jpeg", "heif", "vvc"} & set(disabled)
    only = json.loads(_run_python(code, NPP_LOAD_PLUGINS="jpeg").stdout)
    assert "jpeg" in only and not {"heif", "vvc"} & set(only)
    by_dist = json.loads(_run_python(code, NPP_LOAD_PLUGINS="npp-heif").stdout)
    assert "heif" in by_dist and "jpeg" not in by_dist


def test_plugins_load_lazily_and_once():
    code = textwrap.dedent("""
        import sys, npp_plugin
        assert "npp_jpeg" not in sys.modules, "plugins must not load at import time"
        npp_plugin.available_codecs()
        assert "npp_jpeg" in sys.modules
        from npp_plugin.plugins import get_plugin_manager
        assert get_plugin_manager() is get_plugin_manager()
        print("ok")
    """)
    out = _run_python(code)
    assert out.stdout.strip() == "ok", out.stderr


PLUGIN_PYPROJECT = """
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "npp-rawtest"
version = "9.8.7"
dependencies = []

[project.entry-points.npp_plugin]
rawtest = "npp_rawtest"

[tool.setuptools]
py-modules = ["npp_rawtest"]
"""

PLUGIN_MODULE = '''
import numpy as np
from npp_plugin import Codec, hookimpl

class RawCodec(Codec):
    """Uncompressed RGB behind a 12-byte header: a third party's codec."""
    name = "rawtest"
    qp_range = (0, 51)

    def _encode(self, rgb, /, *, qp):
        h, w = rgb.shape[:2]
        return b"RAWT" + h.to_bytes(4, "big") + w.to_bytes(4, "big") + rgb.tobytes()

    def _decode(self, data, /, *, high_bit_depth):
        h, w = int.from_bytes(data[4:8], "big"), int.from_bytes(data[8:12], "big")
        return np.frombuffer(data[12:], np.uint8).reshape(h, w, 3).copy()

    @classmethod
    def _check(cls, data, /):
        return data[:4] == b"RAWT"

@hookimpl
def npp_register_codecs(register):
    register(RawCodec)
'''


@pytest.mark.slow
def test_third_party_plugin_distribution_is_found_through_entry_points(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "pyproject.toml").write_text(PLUGIN_PYPROJECT)
    (src / "npp_rawtest.py").write_text(PLUGIN_MODULE)
    site = tmp_path / "site"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(site), str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert pip.returncode == 0, pip.stderr
    assert any(p.name.startswith("npp_rawtest-9.8.7") for p in site.iterdir())
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    code = textwrap.dedent("""
        import numpy as np, npp_plugin
        c = npp_plugin.get_codec("rawtest")
        img = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
        data = c.encode(img, qp=10)
        assert (npp_plugin.codec_for_data(data).decode(data) == img).all()
        print("roundtrip-ok")
    """)
    out = _run_python(code, **env)
    assert out.stdout.strip() == "roundtrip-ok", out.stderr
    cli = subprocess.run([sys.executable, "-m", "npp_plugin.cli", "plugins"], capture_output=True, text=True,
                         env={**os.environ, **env}, timeout=120)
    rows = {r["plugin"]: r for r in json.loads(cli.stdout)}
    assert rows["rawtest"]["codecs"] == ["rawtest"]
    assert rows["rawtest"]["distribution"] == "npp-rawtest" and rows["rawtest"]["version"] == "9.8.7"
    assert rows["jpeg"]["distribution"] == "npp-jpeg"


def test_global_registry_lists_the_hooks_plugins():
    names = npp_plugin.available_codecs()
    assert {"jpeg", "heif", "vvc"} <= set(names)
    reg = codec_registry()
    assert reg.owner("jpeg") == "jpeg" and reg.owner("vvc") == "vvc"
    assert isinstance(preprocessor_registry().names(), list)
