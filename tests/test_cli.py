"""The ``npp`` console script: JSON listings, encode/decode/info, one-line errors with exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from npp_plugin.cli import main

from .conftest import ROOT, psnr


@pytest.fixture
def png(tmp_path, photo) -> Path:
    path = tmp_path / "in.png"
    Image.fromarray(photo).save(path)
    return path


def _hook_version(name: str) -> str:
    import tomllib

    return tomllib.loads((ROOT / "hooks" / f"npp-{name}" / "pyproject.toml").read_text())["project"]["version"]


def test_plugins_json_lists_codecs_from_entry_points(capsys):
    assert main(["plugins"]) == 0
    rows = {r["plugin"]: r for r in json.loads(capsys.readouterr().out)}
    for name in ("jpeg", "heif", "vvc"):
        assert rows[name]["codecs"] == [name]
        assert rows[name]["distribution"] == f"npp-{name}"
        assert rows[name]["version"] == _hook_version(name)
        assert rows[name]["errors"] == []


def test_hook_distributions_pin_the_release_with_the_public_codec_contract():
    """Assert each plugin in hooks/ requires npp_plugin >= 0.2.0 (the release where
    validate_qp, validate_size, validate_data and HeaderSize became public; they use nothing
    0.3.0 added or removed, so the floor stays), which this npp_plugin satisfies."""
    import tomllib
    from packaging.requirements import Requirement

    import npp_plugin

    for name in ("heif", "jpeg", "vvc"):
        deps = tomllib.loads((ROOT / "hooks" / f"npp-{name}" / "pyproject.toml").read_text())["project"]["dependencies"]
        req = next(Requirement(d) for d in deps if Requirement(d).name == "npp_plugin")
        assert str(req.specifier) == ">=0.2.0", name
        assert req.specifier.contains(npp_plugin.__version__)


def test_codecs_json(capsys):
    assert main(["codecs"]) == 0
    rows = {r["codec"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["vvc"]["qp_range"] == [0, 63]
    assert rows["jpeg"]["options"]["chroma"]["default"] == "420"


def test_encode_decode_info_roundtrip(tmp_path, png, photo, capsys):
    out = tmp_path / "x.jpg"
    assert main(["encode", str(png), str(out), "--codec", "jpeg", "--qp", "30", "-o", "chroma=444"]) == 0
    assert "bpp" in capsys.readouterr().out
    assert out.read_bytes()[:3] == b"\xff\xd8\xff"
    assert main(["info", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["codec"] == "jpeg" and info["width"] == 256 and info["chroma"] == "444"
    dec = tmp_path / "x.png"
    assert main(["decode", str(out), str(dec)]) == 0
    assert 29 < psnr(photo, np.asarray(Image.open(dec))) < 40


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "npp_plugin.cli", *args], capture_output=True, text=True,
                          env=os.environ.copy(), timeout=120)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["encode", "{png}", "{out}", "--codec", "nope", "--qp", "30"], "unknown codec 'nope'"),
        (["encode", "{png}", "{out}", "--codec", "jpeg", "--qp", "99"], "jpeg: qp=99 is out of range 0..51"),
        (["encode", "{png}", "{out}", "--codec", "jpeg", "--qp", "30", "-o", "chroma=411"], "chroma=411 is not allowed"),
        (["encode", "{png}", "{out}", "--codec", "jpeg", "--qp", "30", "--preprocess", "nope"], "unknown preprocessor"),
        (["encode", "{png}", "{out}", "--codec", "jpeg", "--qp", "30", "--preprocess", "npp_refine:steps=0"],
         "npp_refine': steps must be an integer in [1, 100], got 0"),
        (["encode", "{png}", "{out}", "--codec", "jpeg", "--qp", "30", "--preprocess", "npp_refine:steps"],
         "must look like key=value"),
        (["encode", "{tmp}/missing.png", "{out}", "--codec", "jpeg", "--qp", "30"], "No such file"),
        (["decode", "{png}", "{out}"], "no registered codec recognises these bytes"),
    ],
)
def test_user_errors_are_one_line_exit_2_and_write_nothing(tmp_path, png, args, message):
    out = tmp_path / "out.bin"
    argv = [a.format(png=png, out=out, tmp=tmp_path) for a in args]
    proc = _cli(*argv)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_encode_takes_preprocessor_options(tmp_path, png, capsys):
    out = tmp_path / "o.jpg"
    assert main(["encode", str(png), str(out), "--codec", "jpeg", "--qp", "34",
                 "--preprocess", "npp_refine:base=blur_tuned:steps=1"]) == 0
    assert Image.open(out).size == Image.open(png).size
    assert "jpeg qp=34" in capsys.readouterr().out


def test_failed_encode_leaves_existing_output_untouched(tmp_path, png):
    out = tmp_path / "keep.jpg"
    out.write_bytes(b"precious")
    proc = _cli("encode", str(png), str(out), "--codec", "jpeg", "--qp", "77")
    assert proc.returncode == 2
    assert out.read_bytes() == b"precious"


def test_atomic_write_cleans_up_on_error(tmp_path, monkeypatch):
    from npp_plugin import fileio

    target = tmp_path / "f.bin"

    def boom(*a):
        msg = "disk full"
        raise OSError(msg)

    monkeypatch.setattr(fileio.os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        fileio.atomic_write_bytes(target, b"data")
    assert list(tmp_path.iterdir()) == []
