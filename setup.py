"""Builds native/ (the BPG library and its two command-line tools) into npp_plugin/_native/.

Everything else about the package lives in pyproject.toml. The library is plain C loaded
with ctypes (no Python C API), so it is compiled with the system C compiler, not as a
Python extension:

    python setup.py build_native        # or: pip install -e .   /   pip wheel .

The library's objects are compiled once (in build/) and linked twice: into
libnpp_bpg.so, and into the two tools, which therefore stand alone (only system
libraries) and are installed as scripts, i.e. on PATH in the environment's bin/, by any
pip install. After changing native/ without reinstalling, the bin/ copies are older than
npp_plugin/_native/'s: run scripts/setup.sh (or pip install -e .) again.

Needs a C compiler, pkg-config and the development files of x265, libde265, libpng and
libjpeg (Debian: libx265-dev libde265-dev libpng-dev libjpeg-dev).

Environment:
    DEBUG_BUILD=1   -O0 -g -fsanitize=address; build it elsewhere and point the package at it:
                    DEBUG_BUILD=1 python setup.py build_native -f -o "$ASAN_DIR"
                    NPP_BPG_LIBRARY="$ASAN_DIR"/libnpp_bpg.so \
                    LD_PRELOAD=$(cc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 pytest ...
    CC              compiler (default: cc)
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from setuptools import Command, setup
from setuptools.command.build_py import build_py
from setuptools.command.develop import develop
from setuptools.dist import Distribution

ROOT = Path(__file__).resolve().parent
NATIVE = ROOT / "native"
OUT = ROOT / "npp_plugin" / "_native"
LIB_SOURCES = ["npp_bpg.c", "bpg_encode.c", "bpg_slice.c", "bpg_container.c", "bpg_bits.c",
               "bpg_pixels.c", "bpg_batch.c", "bpg_lambda.c"]
HEADERS = ["npp_bpg.h", "bpg_internal.h"]
TOOLS = {"npp-bpgenc": "tools/npp-bpgenc.c", "npp-bpgdec": "tools/npp-bpgdec.c"}
TOOL_SOURCES = ["tools/tool_util.c"]
TOOL_HEADERS = ["tools/tool_util.h"]


def _pkg_config(*args: str) -> list[str]:
    try:
        out = subprocess.run(["pkg-config", *args], check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        msg = f"pkg-config {' '.join(args)} failed ({detail}); install libx265-dev libde265-dev libpng-dev"
        raise SystemExit(msg) from exc
    return shlex.split(out.stdout)


def _stale(target: Path, sources: list[Path]) -> bool:
    return not target.exists() or any(s.stat().st_mtime > target.stat().st_mtime for s in sources)


class build_native(Command):
    """Compile native/ into npp_plugin/_native/libnpp_bpg.so and the npp-bpgenc/dec tools."""

    description = "build the native BPG library (libx265 + libde265) and its CLI tools"
    user_options = [
        ("force", "f", "rebuild even if up to date"),
        ("out-dir=", "o", "output directory (default: npp_plugin/_native); e.g. for an ASan build"),
    ]
    boolean_options = ["force"]

    def initialize_options(self) -> None:
        self.force = False
        self.out_dir = None

    def finalize_options(self) -> None:
        self.out_dir = Path(self.out_dir).resolve() if self.out_dir else OUT

    def _run(self, cmd: list[str]) -> None:
        print(" ".join(shlex.quote(c) for c in cmd))
        subprocess.run(cmd, check=True)

    def run(self) -> None:
        if sys.platform == "win32":  # pragma: no cover
            msg = "build_native supports POSIX toolchains only"
            raise SystemExit(msg)
        cc = shlex.split(os.environ.get("CC", "cc"))
        debug = os.environ.get("DEBUG_BUILD", "0") not in ("", "0")
        opt = ["-O0", "-g", "-fsanitize=address", "-fno-omit-frame-pointer"] if debug else ["-O3"]
        # -ffp-contract=off: the colour constants must be computed without fused multiply-add
        # (FORMAT.md, conventions) to match the reference tables bit for bit.
        cflags = [*opt, "-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-ffp-contract=off",
                  "-fPIC", "-fvisibility=hidden", *_pkg_config("--cflags", "x265", "libde265")]
        libs = [*_pkg_config("--libs", "x265", "libde265"), "-lm", "-lpthread", "-ldl"]
        out = self.out_dir
        out.mkdir(parents=True, exist_ok=True)
        # One object folder per flag set (an ASan build must not reuse -O3 objects).
        obj_dir = ROOT / "build" / ("native-obj-debug" if debug else "native-obj")
        obj_dir.mkdir(parents=True, exist_ok=True)
        headers = [NATIVE / h for h in HEADERS] + [Path(__file__)]
        objs = []
        for src in LIB_SOURCES:
            obj = obj_dir / (Path(src).stem + ".o")
            if self.force or _stale(obj, [NATIVE / src, *headers]):
                self._run([*cc, *cflags, "-c", "-o", str(obj), str(NATIVE / src)])
            objs.append(obj)
        lib = out / "libnpp_bpg.so"
        if self.force or _stale(lib, objs):
            self._run([*cc, *opt, "-shared", "-o", str(lib), *map(str, objs), *libs])
        io_cflags = _pkg_config("--cflags", "libpng", "libjpeg")
        io_libs = _pkg_config("--libs", "libpng", "libjpeg")
        tool_deps = [NATIVE / s for s in TOOL_SOURCES + TOOL_HEADERS] + objs + headers
        for name, src in TOOLS.items():
            exe = out / name
            if self.force or _stale(exe, [NATIVE / src, *tool_deps]):
                # The same objects as the library: the tools' files equal the in-process
                # codec's bytes for the same settings, and only the route differs.
                self._run([*cc, *opt, "-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra",
                           f"-I{NATIVE}", *io_cflags, "-o", str(exe), str(NATIVE / src),
                           *(str(NATIVE / s) for s in TOOL_SOURCES), *map(str, objs), *libs,
                           *io_libs])


class _BuildPy(build_py):
    def run(self) -> None:
        self.run_command("build_native")
        super().run()


class _BuildScripts(Distribution().get_command_class("build_scripts")):  # distutils' own
    """The scripts are the compiled tools: copy them as they are (distutils would read them
    as Python text, to rewrite a shebang they do not have)."""

    def run(self) -> None:
        self.run_command("build_native")
        self.mkpath(self.build_dir)
        for script in self.scripts:
            self.copy_file(script, os.path.join(self.build_dir, os.path.basename(script)))


class _Develop(develop):
    def run(self) -> None:
        self.run_command("build_native")
        super().run()


class _BinaryDistribution(Distribution):
    """The wheel carries a compiled library: mark it platform-specific (not pure)."""

    def has_ext_modules(self) -> bool:
        return True


setup(
    distclass=_BinaryDistribution,
    # npp-bpgenc / npp-bpgdec on PATH: drop-ins for bpgenc / bpgdec under their own names.
    scripts=[str((OUT / name).relative_to(ROOT)) for name in TOOLS],
    cmdclass={"build_native": build_native, "build_py": _BuildPy,
              "build_scripts": _BuildScripts, "develop": _Develop},
)
