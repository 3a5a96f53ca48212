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
from npp_plugin.plugins import PluginWarning, load_plugins, plugin_infos
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


def _manager(*plugins):
    pm = pluggy.PluginManager("npp_plugin")
    from npp_plugin import hookspecs

    pm.add_hookspecs(hookspecs)
    pm._npp_infos = {}
    from npp_plugin.plugins import PluginInfo

    for name, plugin in plugins:
        pm.register(plugin, name=name)
        pm._npp_infos[name] = PluginInfo(name, name)
    return pm


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
    pm = _manager(("good", GoodPlugin()), ("raising", RaisingPlugin()), ("invalid", InvalidPlugin()),
                  ("dup", DuplicatePlugin()))
    with pytest.warns(PluginWarning):
        reg = codec_registry(pm)
    assert reg.names() == ["toy"]
    assert reg.owner("toy") == "good"
    infos = pm._npp_infos
    assert infos["good"].codecs == ["toy"] and not infos["good"].errors
    assert "RuntimeError: boom" in infos["raising"].errors[0]
    assert "expects a Codec subclass" in infos["invalid"].errors[0]
    assert "duplicate codec name 'toy'" in infos["dup"].errors[0]


def test_plugin_failing_to_import_is_recorded(monkeypatch):
    from npp_plugin import plugins

    monkeypatch.setattr(plugins, "DEFAULT_PLUGINS", {"ghost": "npp_plugin.no_such_module"})
    monkeypatch.setenv("NPP_DISABLE_PLUGIN_AUTOLOAD", "1")
    pm = pluggy.PluginManager("npp_plugin")
    with pytest.warns(PluginWarning, match="ghost.*failed to import"):
        load_plugins(pm)
    info = plugin_infos(pm)["ghost"]
    assert "ModuleNotFoundError" in info.errors[0]


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
