"""The built-in sample photos: real photographs that installed packages ship.

No download: the photos come from scikit-image (``skimage/data``), scikit-learn
(``sklearn/datasets/images``), matplotlib (``mpl-data/sample_data``) and, when installed,
Debian's ``opencv-doc`` and ``darknet`` (multi-object scenes). Only colour photographs are listed (no drawings, charts, logos or
calibration targets). The train/validation split is fixed by file name, so it never changes
with the order files are found in.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["IMAGE_SUFFIXES", "Crop", "builtin_photos", "fixed_crops", "image_files", "load_rgb", "scene_name",
           "split_files"]

#: File suffixes read as images from user folders.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"})

# Colour photographs only, per source folder.
_SKIMAGE = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
            "motorcycle_right.png", "hubble_deep_field.jpg", "ihc.png", "retina.jpg", "chessboard_RGB.png")
_SKLEARN = ("china.jpg", "flower.jpg")
_MPL = ("grace_hopper.jpg",)
_OPENCV_DIR = Path("/usr/share/doc/opencv-doc/examples/data")
_OPENCV = ("aero1.jpg", "aero3.jpg", "apple.jpg", "baboon.jpg", "building.jpg", "butterfly.jpg",
           "fruits.jpg", "home.jpg", "lena.jpg", "messi5.jpg", "orange.jpg", "HappyFish.jpg",
           "leuvenA.jpg", "leuvenB.jpg", "licenseplate_motion.jpg", "graf1.png", "graf3.png",
           "squirrel_cls.jpg", "starry_night.jpg", "left.jpg", "right.jpg", "lena_tmpl.jpg",
           "stuff.jpg", "Blender_Suzanne1.jpg", "Blender_Suzanne2.jpg", "aloeL.jpg", "aloeR.jpg",
           "pic6.png", "ela_original.jpg")
_DARKNET_DIR = Path("/usr/share/darknet/data")
_DARKNET = ("dog.jpg", "eagle.jpg", "giraffe.jpg", "horses.jpg", "kite.jpg", "person.jpg")
# a few names above are drawings or targets in some package versions: excluded here
_EXCLUDE = {"chessboard_RGB.png", "ihc.png", "lena_tmpl.jpg", "Blender_Suzanne1.jpg",
            "Blender_Suzanne2.jpg", "pic6.png", "starry_night.jpg"}


def _package_dir(package: str, *parts: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)), *parts)


def builtin_photos() -> list[Path]:
    """Paths of the colour photographs found in installed packages, sorted by name."""
    sources: list[tuple[str, Path | None, Sequence[str]]] = [
        ("skimage", _package_dir("skimage", "data"), _SKIMAGE),
        ("sklearn", _package_dir("sklearn", "datasets", "images"), _SKLEARN),
        ("matplotlib", _package_dir("matplotlib", "mpl-data", "sample_data"), _MPL),
        ("opencv", _OPENCV_DIR, _OPENCV),
        ("darknet", _DARKNET_DIR, _DARKNET),
    ]
    found: dict[str, Path] = {}
    for source, folder, names in sources:
        if folder is None or not folder.is_dir():
            continue
        for name in names:
            path = folder / name
            if name not in _EXCLUDE and path.is_file():
                found.setdefault(f"{source}/{name}", path)
    return [found[k] for k in sorted(found)]


def image_files(root: str | Path, *, who: str, argument: str) -> list[Path]:
    """Every image file under ``root`` (recursive, sorted); raises naming ``who`` and the
    ``argument`` when the folder is missing or holds no images."""
    from .errors import InvalidArgumentError

    root = Path(root)
    if not root.is_dir():
        msg = f"{who}: {str(root)!r} does not exist or is not a folder"
        raise InvalidArgumentError(msg, argument=argument, allowed="an existing folder of images")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        msg = f"{who}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) under {str(root)!r}"
        raise InvalidArgumentError(msg, argument=argument, allowed="a folder with images")
    return files


def load_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB."""
    from PIL import Image

    with Image.open(path) as im:
        return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


def scene_name(p: Path) -> str:
    """The scene a photo shows (stereo pairs and series share one), for splits by scene."""
    # Stereo pairs and series (aloeL/aloeR, leuvenA/B, graf1/graf3, motorcycle_left/right)
    # show one scene: keep each scene on one side of the split.
    return re.sub(r"(_?(left|right)|[LRAB]|[0-9]+)$", "", p.stem)


def split_files(files: Sequence[Path], *, val_fraction: float = 0.25) -> tuple[list[Path], list[Path]]:
    """A fixed train/validation split by scene name (a hash, not the listing order); the
    photos of one scene (a stereo pair, a series) stay together."""

    def bucket(p: Path) -> float:
        h = hashlib.sha256(scene_name(p).encode()).digest()
        return int.from_bytes(h[:4], "big") / 2**32

    train = [p for p in files if bucket(p) >= val_fraction]
    val = [p for p in files if bucket(p) < val_fraction]
    return train, val


@dataclass(frozen=True)
class Crop:
    """A fixed square crop of a photo: where it comes from, and its pixels."""

    source: str
    y0: int
    x0: int
    size: int
    pixels: np.ndarray

    @property
    def key(self) -> str:
        return f"{self.source}@{self.y0},{self.x0},{self.size}"


def fixed_crops(files: Sequence[Path], *, size: int = 224, stride: int | None = None) -> Iterator[Crop]:
    """Deterministic grid crops of ``size``² from each photo (stride defaults to ``size``;
    photos smaller than ``size`` are skipped)."""
    stride = stride or size
    for path in files:
        rgb = load_rgb(path)
        h, w = rgb.shape[:2]
        if h < size or w < size:
            continue
        ys = range(0, h - size + 1, stride)
        xs = range(0, w - size + 1, stride)
        for y in ys:
            for x in xs:
                tile = np.ascontiguousarray(rgb[y : y + size, x : x + size])
                yield Crop(path.name, y, x, size, tile)
