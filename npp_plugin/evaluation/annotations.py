"""COCO box annotations as per-image detection targets (``npp eval --annotations FILE``).

Each evaluation image is matched to a COCO ``images`` entry by its path relative to the
image folder (``file_name``), else by its file name when that is unique in the file. Boxes
become ``{"boxes": (K, 4) float xyxy pixels, "labels": (K,) int64 category ids,
"iscrowd": (K,) uint8}`` (torchvision's COCO detectors predict those same category ids).

For crops, boxes are shifted into the crop and clipped to it; a box keeps its class when at
least half its area lies inside, and becomes an ignored (crowd) region when less does, so a
detection of a cut-off object is neither a hit nor a false alarm.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError
from .inputs import EvalImage

__all__ = ["MAX_FILE_BYTES", "load_coco_boxes", "targets_for"]

#: Larger annotation files are refused before reading (COCO 2017 train is about 450 MB).
MAX_FILE_BYTES = 1 << 30
#: Share of a box's area that must lie inside a crop for it to stay an object.
MIN_INSIDE = 0.5


def _bad(path: Any, what: str) -> InvalidArgumentError:
    msg = f"--annotations {str(path)!r}: {what}"
    return InvalidArgumentError(msg, argument="annotations", allowed="a COCO instances JSON file")


def _read(path: Path) -> dict:
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise _bad(path, f"cannot be read ({exc})") from exc
    if size > MAX_FILE_BYTES:
        raise _bad(path, f"is {size} bytes, more than the {MAX_FILE_BYTES} allowed")
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise _bad(path, f"is not JSON ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(data.get("annotations"), list):
        raise _bad(path, "has no 'images' and 'annotations' lists")
    return data


def _boxes_by_image(data: dict, path: Path) -> tuple[dict[str, Any], dict[str, list], dict[Any, list]]:
    by_name: dict[str, Any] = {}
    by_base: dict[str, list] = defaultdict(list)
    for img in data["images"]:
        if not isinstance(img, dict) or "id" not in img or not isinstance(img.get("file_name"), str):
            raise _bad(path, f"image entry {str(img)[:80]} needs 'id' and 'file_name'")
        name = img["file_name"].replace("\\", "/")
        by_name[name] = img["id"]
        by_base[Path(name).name].append(img["id"])
    anns: dict[Any, list] = defaultdict(list)
    for a in data["annotations"]:
        try:
            x, y, w, h = (float(v) for v in a["bbox"])
            cat, crowd = int(a["category_id"]), int(bool(a.get("iscrowd", 0)))
            image_id = a["image_id"]
        except (KeyError, TypeError, ValueError) as exc:
            raise _bad(path, f"annotation {str(a)[:80]} needs 'image_id', 'category_id' and bbox [x, y, w, h]") from exc
        if not all(np.isfinite((x, y, w, h))) or w < 0 or h < 0:
            raise _bad(path, f"annotation {a.get('id')} has bbox {a['bbox']} (w and h must be finite and >= 0)")
        anns[image_id].append((x, y, x + w, y + h, cat, crowd))
    return by_name, by_base, anns


def _crop(entries: list[tuple], box: tuple[int, int, int] | None) -> list[tuple]:
    if box is None:
        return entries
    y0, x0, s = box
    out = []
    for x1, y1, x2, y2, cat, crowd in entries:
        cx1, cy1 = min(max(x1 - x0, 0.0), s), min(max(y1 - y0, 0.0), s)
        cx2, cy2 = min(max(x2 - x0, 0.0), s), min(max(y2 - y0, 0.0), s)
        inside = (cx2 - cx1) * (cy2 - cy1)
        if inside <= 0:
            continue
        area = (x2 - x1) * (y2 - y1)
        out.append((cx1, cy1, cx2, cy2, cat, crowd or int(inside < MIN_INSIDE * area)))
    return out


def load_coco_boxes(path: str | Path, images: Sequence[EvalImage]) -> dict[str, dict]:
    """Per evaluation image (by key), its boxes from the COCO file at ``path``.

    Raises:
        InvalidArgumentError: the file is too large, not COCO JSON, or has no entry for one
            of ``images`` (naming it).
    """
    import torch

    path = Path(path)
    by_name, by_base, anns = _boxes_by_image(_read(path), path)
    out = {}
    for img in images:
        image_id = by_name.get(img.source)
        if image_id is None:
            ids = by_base.get(Path(img.source).name, [])
            if len(ids) > 1:
                raise _bad(path, f"holds {len(ids)} images named {Path(img.source).name!r}; name them by relative path")
            image_id = ids[0] if ids else None
        if image_id is None:
            raise _bad(path, f"has no image entry for {img.source!r}")
        entries = _crop(anns.get(image_id, []), img.box)
        arr = np.array([e[:4] for e in entries], np.float32).reshape(-1, 4)
        out[img.key] = {"boxes": torch.from_numpy(arr),
                        "labels": torch.tensor([e[4] for e in entries], dtype=torch.int64),
                        "iscrowd": torch.tensor([e[5] for e in entries], dtype=torch.uint8)}
    return out


def targets_for(boxes: Mapping[str, dict], items: Sequence[EvalImage]) -> list[dict]:
    """The targets of ``items`` in order (raises naming an image without annotations)."""
    missing = [img.key for img in items if img.key not in boxes]
    if missing:
        msg = f"evaluation: no box annotations for image {missing[0]!r}"
        raise InvalidArgumentError(msg, argument="annotations", allowed="annotations for every image")
    return [boxes[img.key] for img in items]
