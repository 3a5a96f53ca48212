"""What produced a result: package versions, the git revision, the machine."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["git_revision", "package_versions", "provenance"]

_PACKAGES = (
    "npp_plugin", "torch", "torchvision", "numpy", "pillow", "pillow-heif", "bjontegaard", "piq",
    "pytorch-msssim", "scipy", "matplotlib", "pycocotools", "compressai", "npp-jpeg", "npp-heif", "npp-vvc",
)


def package_versions(extra: tuple[str, ...] = ()) -> dict[str, str | None]:
    """Installed versions (None when a distribution is not installed)."""
    out: dict[str, str | None] = {}
    for name in _PACKAGES + tuple(extra):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_revision(path: str | Path | None = None) -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the repository holding ``path``
    (default: this package's source)."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    def git(*args: str) -> str | None:
        try:
            res = subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return res.stdout.strip() if res.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain")  # untracked files count: they may be the code that ran
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def provenance() -> dict[str, Any]:
    import torch

    return {
        "versions": package_versions(),
        "git": git_revision(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
    }
