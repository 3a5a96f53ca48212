"""Training data: image folders, COCO, the built-in photos and the photo corpus; random crops and
flips.

Every batch is a pure function of ``(seed, step, rank)``: which images (a per-epoch
permutation, sharded across DDP ranks) and where they are cropped/flipped. Resuming at step
k therefore continues with exactly the batches an uninterrupted run would have seen, with no
sampler state to save.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..datasets import builtin_photos, image_files, load_rgb, scene_name, split_files
from ..errors import InvalidArgumentError

__all__ = ["Batches", "BuiltinPhotos", "CocoImages", "CorpusPhotos", "ImageFolder", "ImageSource", "builtin_dev_split",
           "make_source", "photo_split", "val_batches"]



def _seed(*parts: Any) -> int:
    h = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


class ImageSource:
    """A list of images with optional class labels or box annotations."""

    #: "labels" (classification), "boxes" (detection) or None (no annotations)
    annotation: str | None = None

    def __init__(self, files: list[Path], *, cache: int = 256) -> None:
        self.files = files
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_size = cache

    def __len__(self) -> int:
        return len(self.files)

    def image(self, i: int) -> np.ndarray:
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        rgb = load_rgb(self.files[i])
        if self._cache_size:
            self._cache[i] = rgb
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return rgb

    def label(self, i: int) -> int | None:
        return None

    def boxes(self, i: int) -> tuple[np.ndarray, np.ndarray] | None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"source": type(self).__name__, "images": len(self)}


class ImageFolder(ImageSource):
    """Images under ``root``; when they sit in sub-folders, each sub-folder is a class
    (sorted names → labels 0..C-1), like torchvision's ``ImageFolder``."""

    def __init__(self, root: str | Path, *, cache: int = 256) -> None:
        root = Path(root)
        files = image_files(root, who="training data", argument="data")
        super().__init__(files, cache=cache)
        self.root = root
        in_subdirs = all(p.parent != root for p in files)
        self.classes = sorted({p.relative_to(root).parts[0] for p in files}) if in_subdirs else []
        self.annotation = "labels" if self.classes else None
        self._labels = [self.classes.index(p.relative_to(root).parts[0]) for p in files] if self.classes else []

    def label(self, i: int) -> int | None:
        return self._labels[i] if self._labels else None

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "root": str(self.root), "classes": len(self.classes)}


class CocoImages(ImageSource):
    """COCO detection data: an image folder and an instances JSON (boxes xywh → xyxy,
    labels = COCO ``category_id`` as torchvision's detectors use; crowd boxes skipped)."""

    annotation = "boxes"

    def __init__(self, images: str | Path, annotations: str | Path, *, cache: int = 64) -> None:
        images, annotations = Path(images), Path(annotations)
        try:
            data = json.loads(annotations.read_text())
            infos = data["images"]
            anns = data.get("annotations", [])
        except (OSError, ValueError, KeyError) as exc:
            msg = f"training data: cannot read COCO annotations {str(annotations)!r}: {exc}"
            raise InvalidArgumentError(msg, argument="annotations", allowed="a COCO instances JSON") from exc
        by_image: dict[int, list[dict]] = {}
        for a in anns:
            if not a.get("iscrowd", 0):
                by_image.setdefault(a["image_id"], []).append(a)
        infos = [im for im in sorted(infos, key=lambda im: im["file_name"]) if (images / im["file_name"]).is_file()]
        if not infos:
            msg = f"training data: none of the images listed in {str(annotations)!r} exist under {str(images)!r}"
            raise InvalidArgumentError(msg, argument="data", allowed="the COCO image folder")
        super().__init__([images / im["file_name"] for im in infos], cache=cache)
        self._boxes = []
        for im in infos:
            rows = by_image.get(im["id"], [])
            b = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                          for a in rows], dtype=np.float32).reshape(-1, 4)
            self._boxes.append((b, np.array([a["category_id"] for a in rows], dtype=np.int64)))

    def boxes(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self._boxes[i]


class BuiltinPhotos(ImageSource):
    """The photos installed packages ship (:func:`npp_plugin.datasets.builtin_photos`), with
    the fixed split by file name (``split="train"`` or ``"val"``)."""

    def __init__(self, split: str = "train", *, val_fraction: float = 0.25) -> None:
        if split not in ("train", "val"):
            msg = f"training data: split={split!r} is not allowed; choose 'train' | 'val'"
            raise InvalidArgumentError(msg, argument="split", allowed=("train", "val"))
        train, val = split_files(builtin_photos(), val_fraction=val_fraction)
        files = train if split == "train" else val
        if not files:
            msg = "training data: no built-in photos found (install scikit-image / scikit-learn / matplotlib)"
            raise InvalidArgumentError(msg, argument="data", allowed="builtin")
        super().__init__(files, cache=len(files))
        self.split = split

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "split": self.split}


class CorpusPhotos(ImageSource):
    """The photo corpus (:mod:`npp_plugin.corpus`, built by ``npp data build``), one split:
    ``"train"``, ``"dev"`` or ``"all"``. Each photo's ``group`` is in :attr:`groups`."""

    def __init__(self, split: str = "train", *, root: str | Path | None = None, cache: int = 64) -> None:
        from ..corpus import corpus_info, corpus_photos

        photos = corpus_photos(split, root)
        if not photos:
            msg = f"training data: the photo corpus has no {split!r} photos"
            raise InvalidArgumentError(msg, argument="data", allowed="corpus:train | corpus:dev | corpus:all")
        super().__init__([p.path for p in photos], cache=cache)
        self.split = split
        self.groups = [p.group for p in photos]
        self.digest = corpus_info(root)["digest"]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "split": self.split, "corpus_digest": self.digest}


def make_source(data: str, *, annotations: str | None = None, split: str = "train") -> ImageSource:
    """``"builtin"`` → the built-in photos; ``"corpus:train"`` (``:dev``, ``:all``) → the
    photo corpus; a folder (+ ``annotations`` JSON → COCO)."""
    if data == "builtin":
        return BuiltinPhotos(split)
    if data.startswith("corpus:") or data == "corpus":
        return CorpusPhotos(data.partition(":")[2] or "train")
    if annotations:
        return CocoImages(data, annotations)
    return ImageFolder(data)


def _fit(rgb: np.ndarray, size: int, boxes: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Upscale so the shorter side is at least ``size`` (boxes scaled along)."""
    h, w = rgb.shape[:2]
    if min(h, w) >= size:
        return rgb, boxes
    from PIL import Image

    s = size / min(h, w)
    nh, nw = max(size, round(h * s)), max(size, round(w * s))
    rgb = np.asarray(Image.fromarray(rgb).resize((nw, nh), Image.BICUBIC))
    if boxes is not None:
        boxes = boxes * np.array([nw / w, nh / h, nw / w, nh / h], dtype=np.float32)
    return rgb, boxes


def _crop(rgb, size, y, x, flip, ann):
    tile = rgb[y : y + size, x : x + size]
    if flip:
        tile = tile[:, ::-1]
    out_ann = None
    if ann is not None:
        b, labels = ann
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        c = b - np.array([x, y, x, y], dtype=np.float32)
        c = np.clip(c, 0, size)
        if flip:
            c = np.stack([size - c[:, 2], c[:, 1], size - c[:, 0], c[:, 3]], axis=1)
        kept = (c[:, 2] - c[:, 0]) * (c[:, 3] - c[:, 1])
        keep = (kept >= 0.25 * np.maximum(area, 1e-6)) & (c[:, 2] - c[:, 0] >= 2) & (c[:, 3] - c[:, 1] >= 2)
        out_ann = {"boxes": torch.from_numpy(np.ascontiguousarray(c[keep], dtype=np.float32)).reshape(-1, 4),
                   "labels": torch.from_numpy(labels[keep].copy())}
    return np.ascontiguousarray(tile), out_ann


def _collate(source: ImageSource, tiles: list[np.ndarray], idx: list[int], anns: list) -> tuple[torch.Tensor, Any]:
    x = torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
    if source.annotation == "labels":
        return x, torch.tensor([source.label(i) for i in idx], dtype=torch.int64)
    if source.annotation == "boxes":
        return x, anns
    return x, None


@dataclass
class Batches:
    """Random training crops: ``batches[step]`` → ``(x (B, 3, S, S) in [0, 1], target)``.

    ``target`` is int64 labels (class folders), a list of box dicts (COCO) or None (the
    loop then uses the task's reference on the uncompressed crop).
    """

    source: ImageSource
    size: int
    batch_size: int
    seed: int = 0
    rank: int = 0
    world: int = 1
    flip: bool = True

    def __post_init__(self) -> None:
        for key in ("size", "batch_size"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                msg = f"training data: {key} must be a positive integer, got {v!r}"
                raise InvalidArgumentError(msg, argument=key, allowed="integers >= 1")

    def _index(self, g: int) -> int:
        n = len(self.source)
        epoch, pos = divmod(g, n)
        perm = np.random.default_rng(_seed(self.seed, "epoch", epoch)).permutation(n)
        return int(perm[pos])

    def __getitem__(self, step: int) -> tuple[torch.Tensor, Any]:
        base = (step * self.world + self.rank) * self.batch_size
        tiles, idx, anns = [], [], []
        for k in range(self.batch_size):
            i = self._index(base + k)
            rng = np.random.default_rng(_seed(self.seed, "crop", base + k))
            rgb, b = _fit(self.source.image(i), self.size, None if self.source.boxes(i) is None else self.source.boxes(i)[0])
            ann = None if b is None else (b, self.source.boxes(i)[1])
            y = int(rng.integers(0, rgb.shape[0] - self.size + 1))
            x = int(rng.integers(0, rgb.shape[1] - self.size + 1))
            flip = bool(self.flip and rng.random() < 0.5)
            tile, a = _crop(rgb, self.size, y, x, flip, ann)
            tiles.append(tile)
            idx.append(i)
            anns.append(a)
        return _collate(self.source, tiles, idx, anns)

    def __iter__(self):
        step = 0
        while True:
            yield self[step]
            step += 1


def val_batches(source: ImageSource, *, size: int, batch_size: int, limit: int | None = None) -> list[tuple[torch.Tensor, Any]]:
    """Fixed centre crops of every image (up to ``limit``), batched: the same every run."""
    n = len(source) if limit is None else min(limit, len(source))
    out = []
    for start in range(0, n, batch_size):
        tiles, idx, anns = [], [], []
        for i in range(start, min(n, start + batch_size)):
            boxes = source.boxes(i)
            rgb, b = _fit(source.image(i), size, None if boxes is None else boxes[0])
            y, x = (rgb.shape[0] - size) // 2, (rgb.shape[1] - size) // 2
            tile, a = _crop(rgb, size, y, x, False, None if b is None else (b, boxes[1]))
            tiles.append(tile)
            idx.append(i)
            anns.append(a)
        out.append(_collate(source, tiles, idx, anns))
    return out


# -- the photos of a derivative-free search (npp search) and of a λ calibration -------------


def builtin_dev_split(dev_fraction: float = 0.25, files: Sequence[Path] | None = None) -> tuple[list[Path], list[Path]]:
    """The training photos (``files``; default the built-in training split, whose
    validation photos stay untouched for the final report) split again, by scene, into fit
    and development photos."""
    files = BuiltinPhotos("train").files if files is None else list(files)

    def bucket(p: Path) -> float:
        h = hashlib.sha256(f"dev:{scene_name(p)}".encode()).digest()
        return int.from_bytes(h[:4], "big") / 2**32

    fit = [p for p in files if bucket(p) >= dev_fraction]
    dev = [p for p in files if bucket(p) < dev_fraction]
    return fit, dev


def photo_split(images: str, *, who: str = "npp search") -> tuple[list[Path], list[Path]]:
    """The fit and development photos of ``--images``: ``builtin:train`` (the built-in
    training photos split by scene, :func:`builtin_dev_split`), ``corpus:train`` (the
    corpus' own train and dev splits), ``corpus:SPLIT`` or a folder (split by scene)."""
    files = None
    if images == "corpus:train":  # the corpus' own split by group: fit on train, select on dev
        from ..corpus import corpus_files

        return corpus_files("train"), corpus_files("dev")
    if images.startswith("corpus:"):
        from ..corpus import corpus_files

        files = corpus_files(images.partition(":")[2])
    elif images != "builtin:train":
        files = image_files(images, who=who, argument="images")
    return builtin_dev_split(files=files)
