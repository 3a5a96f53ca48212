"""Builds native/ (the BPG library and its two command-line tools) into npp_plugin/_native/.

Everything else about the package lives in pyproject.toml. The library is plain C loaded
with ctypes (no Python C API), so it is compiled with the system C compiler, not as a
Python extension:

    python setup.py build_native        # or: pip install -e .   /   pip wheel .

Needs a C compiler, pkg-config and the development files of x265, libde265 and libpng
(Debian: libx265-dev libde265-dev libpng-dev).

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
        lib = out / "libnpp_bpg.so"
        deps = [NATIVE / s for s in LIB_SOURCES + HEADERS] + [Path(__file__)]
        if self.force or _stale(lib, deps):
            srcs = [str(NATIVE / s) for s in LIB_SOURCES]
            self._run([*cc, *cflags, "-shared", "-o", str(lib), *srcs, *libs])
        png_cflags = _pkg_config("--cflags", "libpng")
        png_libs = _pkg_config("--libs", "libpng")
        for name, src in TOOLS.items():
            exe = out / name
            if self.force or _stale(exe, [NATIVE / src, NATIVE / "npp_bpg.h", lib]):
                # The tools link the very library the package loads ($ORIGIN rpath), so the
                # subprocess benchmark differs from the in-process route only in the route.
                self._run([*cc, *opt, "-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra",
                           f"-I{NATIVE}", *png_cflags, "-o", str(exe), str(NATIVE / src),
                           f"-L{out}", "-lnpp_bpg", "-Wl,-rpath,$ORIGIN", *png_libs])


class _BuildPy(build_py):
    def run(self) -> None:
        self.run_command("build_native")
        super().run()


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
    cmdclass={"build_native": build_native, "build_py": _BuildPy, "develop": _Develop},
)
