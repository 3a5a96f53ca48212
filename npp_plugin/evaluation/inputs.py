"""The images an evaluation runs on: the built-in photos, the photo corpus or a folder, whole or as
fixed crops.

Items are described (key, file, crop box) without reading pixels, so a large folder costs
nothing until a batch needs it, and each shard reads only its own images.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InvalidArgumentError

__all__ = ["EvalImage", "builtin_images", "corpus_images", "folder_images", "select_evenly"]

#: Built-in crop size: non-overlapping 144² crops give 696 crops from the 40 photos found on the
#: development machine (575 from the 34 without the extra packages), enough to resolve a few
#: per cent; MS-SSIM then uses a 9-pixel window (see metrics.ms_ssim_window).
DEFAULT_CROP = 144


@dataclass(frozen=True)
class EvalImage:
    """One evaluation image: a file, optionally a square crop of it. ``source`` names the photo
    (the unit of bootstrap intervals); ``group`` the related shots it belongs to, when known
    (the photo corpus' groups)."""

    key: str
    source: str
    path: Path
    box: tuple[int, int, int] | None = None  # (y0, x0, size)
    group: str | None = None

    def load(self) -> np.ndarray:
        rgb = _load(str(self.path))
        if self.box is None:
            return rgb
        y, x, s = self.box
        return np.ascontiguousarray(rgb[y : y + s, x : x + s])


@functools.lru_cache(maxsize=4)
def _load(path: str) -> np.ndarray:
    from ..datasets import load_rgb

    arr = load_rgb(path)
    arr.flags.writeable = False
    return arr


def _size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        return im.size


def _items(files: Sequence[Path], names: Sequence[str], crop: int | None, stride: int | None,
           groups: Sequence[str | None] | None = None, sizes: Sequence[tuple[int, int]] | None = None,
           ) -> list[EvalImage]:
    out: list[EvalImage] = []
    groups = groups if groups is not None else [None] * len(files)
    for i, (path, name, group) in enumerate(zip(files, names, groups, strict=True)):
        if crop is None:
            out.append(EvalImage(name, name, path, group=group))
            continue
        w, h = sizes[i] if sizes is not None else _size(path)
        st = stride or crop
        for y in range(0, h - crop + 1, st):
            for x in range(0, w - crop + 1, st):
                out.append(EvalImage(f"{name}@{y},{x},{crop}", name, path, (y, x, crop), group))
    return out


def _check_crop(crop: int | None, stride: int | None) -> None:
    for key, v in (("crop_size", crop), ("stride", stride)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 16):
            msg = f"evaluation images: {key} must be an integer >= 16, got {v!r}"
            raise InvalidArgumentError(msg, argument=key, allowed=">= 16")


def builtin_images(
    *, crop_size: int = DEFAULT_CROP, stride: int | None = None, split: str = "all"
) -> list[EvalImage]:
    """Grid crops of the photos in :func:`npp_plugin.datasets.builtin_photos` (same grid as
    :func:`~npp_plugin.datasets.fixed_crops`). ``split`` "val" keeps only the photos that
    training holds out (:func:`~npp_plugin.datasets.split_files`), "train" the others."""
    from ..datasets import builtin_photos, split_files

    _check_crop(crop_size, stride)
    files = builtin_photos()
    if split not in ("all", "train", "val"):
        msg = f"evaluation images: split {split!r} is not one of all, train, val"
        raise InvalidArgumentError(msg, argument="images", allowed="builtin, builtin:train, builtin:val")
    if split != "all":
        files = dict(zip(("train", "val"), split_files(files), strict=False))[split]
    if not files:
        msg = "no built-in photos found (they come from scikit-image, scikit-learn, matplotlib, opencv-doc)"
        raise InvalidArgumentError(msg, argument="images", allowed="builtin photos or a folder")
    return _items(files, [f"{p.parent.name}/{p.name}" for p in files], crop_size, stride)


def corpus_images(
    *, split: str = "dev", crop_size: int | None = DEFAULT_CROP, stride: int | None = None,
    root: str | Path | None = None,
) -> list[EvalImage]:
    """The photo corpus' photos of ``split`` ("train", "dev" or "all"; see
    :mod:`npp_plugin.corpus`), whole (``crop_size=None``) or as grid crops; each image's
    ``source`` is the photo (``<package>/<name>.png``) and ``group`` its group.

    Raises:
        InvalidArgumentError: no corpus (the message names ``npp data build``), or a bad split.
    """
    from ..corpus import corpus_photos

    _check_crop(crop_size, stride)
    photos = corpus_photos(split, root)
    return _items([p.path for p in photos], [p.name for p in photos], crop_size, stride,
                  [p.group for p in photos], [(p.width, p.height) for p in photos])


def folder_images(folder: str | Path, *, crop_size: int | None = None, stride: int | None = None) -> list[EvalImage]:
    """Every image file under ``folder`` (sorted, recursive), whole or as grid crops."""
    from ..datasets import image_files

    _check_crop(crop_size, stride)
    root = Path(folder)
    files = image_files(root, who="evaluation images", argument="images")
    return _items(files, [p.relative_to(root).as_posix() for p in files], crop_size, stride)


def select_evenly(items: Sequence[EvalImage], n: int | None) -> list[EvalImage]:
    """``n`` items spread evenly over the list (all when ``n`` is None or larger)."""
    if n is None or n >= len(items):
        return list(items)
    if n < 1:
        msg = f"evaluation images: max_images must be >= 1, got {n}"
        raise InvalidArgumentError(msg, argument="max_images", allowed=">= 1")
    idx = np.linspace(0, len(items) - 1, n).round().astype(int)
    return [items[i] for i in dict.fromkeys(idx.tolist())]
