"""Files follow the umask like any tool's; the CLI ends quietly when its reader goes away."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from npp_plugin.fileio import atomic_write_bytes


@pytest.fixture(params=[0o022, 0o077, 0o002], ids=lambda m: f"umask{m:03o}")
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_write_gives_the_mode_of_a_plain_open(tmp_path, umask):
    with open(tmp_path / "plain", "w") as fh:
        fh.write("x")
    atomic_write_bytes(tmp_path / "atomic", b"x")
    assert _mode(tmp_path / "atomic") == _mode(tmp_path / "plain") == 0o666 & ~umask
    atomic_write_bytes(tmp_path / "atomic", b"yy")  # replacing an existing file: same rule
    assert _mode(tmp_path / "atomic") == 0o666 & ~umask
    assert (tmp_path / "atomic").read_bytes() == b"yy"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atomic", "plain"]  # no temporary left


def test_failed_atomic_write_leaves_nothing(tmp_path):
    with pytest.raises(TypeError):
        atomic_write_bytes(tmp_path / "out", object())  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_cli_outputs_follow_the_umask(tmp_path, umask):
    from npp_plugin.cli import main

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    assert main(["encode", str(tmp_path / "in.png"), str(tmp_path / "x.jpg"), "--codec", "jpeg", "--qp", "30"]) == 0
    assert main(["decode", str(tmp_path / "x.jpg"), str(tmp_path / "back.png")]) == 0
    for name in ("x.jpg", "back.png"):
        assert _mode(tmp_path / name) == 0o666 & ~umask, name


def _npp(*args: str) -> list[str]:
    return [sys.executable, "-m", "npp_plugin.cli", *args]


@pytest.mark.parametrize("command", ["plugins", "codecs"])
def test_cli_on_a_closed_pipe_exits_0_without_traceback(command):
    """The reader closes the pipe before npp writes (as `npp plugins | head -c 1` can)."""
    proc = subprocess.Popen(_npp(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "BrokenPipeError" not in err and err == ""


def test_cli_piped_into_head():
    script = f"set -o pipefail; {' '.join(_npp('plugins'))} | head -c 5"
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "[\n  {" and proc.stderr == ""
