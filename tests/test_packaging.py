"""The source distribution builds: it carries native/ and a wheel made from it holds the library."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_sdist_carries_native_and_builds_a_wheel_with_the_library(tmp_path):
    if shutil.which("pkg-config") is None:
        pytest.skip("pkg-config is missing: the native library cannot be built here")
    src = tmp_path / "src"  # a copy, so the sdist's egg-info and build/ do not land in the checkout
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "runs", "build", "*.egg-info",
                                                             "__pycache__", ".pytest_cache", "*.so",
                                                             "npp-bpgenc", "npp-bpgdec"))
    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path / "dist")], cwd=src, check=True,
                   capture_output=True)
    (sdist,) = (tmp_path / "dist").glob("npp_plugin-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        tar.extractall(tmp_path / "unpacked", filter="data")
    sources = {f"native/{p.name}" for p in (ROOT / "native").glob("*.[ch]")}
    assert sources and sources <= names
    assert {"native/tools/npp-bpgenc.c", "native/tools/npp-bpgdec.c", "setup.py", "LICENSE"} <= names
    assert not any(n.endswith((".so", ".o")) for n in names)
    (unpacked,) = (tmp_path / "unpacked").iterdir()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "wheel"), "."], cwd=unpacked, check=True, capture_output=True)
    (wheel,) = (tmp_path / "wheel").glob("npp_plugin-*.whl")
    inside = set(zipfile.ZipFile(wheel).namelist())
    assert {"npp_plugin/_native/libnpp_bpg.so", "npp_plugin/weights/default.npp.pt",
            "npp_plugin/weights/blur-tuned.json"} <= inside
    shipped = {f"npp_plugin/weights/lambdas/{p.name}" for p in (ROOT / "npp_plugin/weights/lambdas").glob("*.json")}
    assert "npp_plugin/weights/lambdas/efficientnet_lite0.json" in shipped and shipped <= inside
    assert any(n.endswith("scripts/npp-bpgenc") for n in inside)
