# SPDX-License-Identifier: GPL-2.0-or-later
"""``npp teacher``: ``npp_refine``'s outputs over training crops, stored for distillation.

The per-image refinement (:class:`~npp_plugin.preprocessors.refine.TaskRefine`) is the
teacher of the NPP network: it needs the task network and a backward pass at the encoder,
the student must not. This module runs it once over many crops and keeps, per crop, the
8-bit image that was coded and what the real codec made of it::

    npp teacher --images corpus:train --out runs/teacher            # resumable; --resume
    npp teacher --images corpus:dev --crops-per-photo 2 --out runs/teacher-dev
    npp teacher compare runs/teacher-dev runs/teacher-dev-ens --tasks efficientnet_lite0,efficientnet_lite2

Crops: every photo of ``--images`` at one of ``--scales`` (bicubic downscale), a random
position and horizontal flip, ``--crops-per-photo`` rounds; round k takes one crop of every
photo before round k+1 starts, so a run stopped early still covers every photo. A shard of
``--shard`` crops is refined at one QP drawn uniformly from ``--qps LO HI`` (a QP per shard:
the refinement codes a batch at one QP). Everything is a function of ``--seed``: a second
run (or ``--resume``) plans the same crops, QPs and shards.

Each shard ``shard-NNNNN.pt`` (a tagged torch file, written atomically) holds ``x`` (the
crops, uint8), ``y`` (the teacher's output as coded, uint8), ``qp``, ``lam`` and per crop the
real J, bits per pixel and task loss of the tuned blur (the teacher's start) and of the
teacher, the photo and its group. ``teacher.json`` holds the settings, the photos' digest and
the plan's size; ``log.jsonl`` one line per shard.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InvalidArgumentError, NppError
from ..fileio import atomic_write_bytes, load_tagged, save_tagged
from ..images import quantize_uint8
from .data import _seed

__all__ = ["SHARD_FORMAT", "CropSpec", "TeacherSettings", "code_and_score", "compare_teachers", "load_shards", "main", "plan_crops",
           "run_teacher"]

SHARD_FORMAT = "npp-teacher-shard/1"


@dataclass(frozen=True)
class TeacherSettings:
    """What decides a teacher run's crops and targets (stored in ``teacher.json``)."""

    images: str = "corpus:train"
    size: int = 224
    scales: tuple[float, ...] = (1.0, 0.75, 0.5)
    crops_per_photo: int = 8
    qps: tuple[int, int] = (28, 41)
    task: str = "mobilenet_v2"
    steps: int = 4
    lr: float = 0.004
    codec: str = "bpg"
    level: int = 8
    shard: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        def bad(*, key: str, allowed: str, value: Any) -> InvalidArgumentError:
            return InvalidArgumentError(f"npp teacher: {key} must be {allowed}, got {value!r}",
                                        argument=key, allowed=allowed)

        if not (isinstance(self.size, int) and 32 <= self.size <= 1024 and self.size % 16 == 0):
            raise bad(key="size", allowed="a multiple of 16 in [32, 1024]", value=self.size)
        if not self.scales or not all(0.1 <= float(s) <= 1.0 for s in self.scales):
            raise bad(key="scales", allowed="scales in [0.1, 1]", value=self.scales)
        if not (isinstance(self.crops_per_photo, int) and 1 <= self.crops_per_photo <= 1000):
            raise bad(key="crops_per_photo", allowed="an integer in [1, 1000]", value=self.crops_per_photo)
        lo, hi = self.qps
        if not (0 <= lo <= hi <= 51):
            raise bad(key="qps", allowed="LO HI with 0 <= LO <= HI <= 51", value=self.qps)
        if not (isinstance(self.shard, int) and 1 <= self.shard <= 256):
            raise bad(key="shard", allowed="an integer in [1, 256]", value=self.shard)
        object.__setattr__(self, "scales", tuple(float(s) for s in self.scales))
        object.__setattr__(self, "qps", (int(lo), int(hi)))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["scales"], d["qps"] = list(self.scales), list(self.qps)
        return d


@dataclass(frozen=True)
class CropSpec:
    """One planned crop: photo ``photo`` (index into the run's photo list) downscaled by
    ``scale``, the ``size``² window at (``y``, ``x``), mirrored when ``flip``."""

    photo: int
    scale: float
    y: int
    x: int
    flip: bool


@dataclass
class Photos:
    """The photos a run reads: paths, their groups (the unit of every interval) and a digest."""

    files: list[Path]
    groups: list[str]
    #: a name per photo, unique in the run (the corpus' file, the built-in source/name)
    keys: list[str]
    digest: str
    sizes: list[tuple[int, int]] = field(default_factory=list)


def _rng(*parts: Any) -> random.Random:
    return random.Random(_seed(*parts))


def resolve_photos(images: str) -> Photos:
    """``corpus:train|dev|all``, ``builtin:train|val|all`` or a folder → :class:`Photos`."""
    from PIL import Image

    if images.startswith("corpus:"):
        from ..corpus import corpus_photos

        entries = corpus_photos(images.split(":", 1)[1])
        files, groups, keys = [e.path for e in entries], [e.group for e in entries], [e.file for e in entries]
    elif images.startswith("builtin"):
        from ..datasets import builtin_photos, scene_name, split_files

        split = images.split(":", 1)[1] if ":" in images else "all"
        files = builtin_photos()
        if split != "all":
            files = dict(zip(("train", "val"), split_files(files), strict=True))[split]
        groups = [scene_name(p) for p in files]
        keys = [f"{p.parent.name}/{p.name}" for p in files]
    else:
        from ..datasets import image_files

        files = image_files(images, who="npp teacher", argument="images")
        groups = keys = [p.relative_to(images).as_posix() for p in files]
    if not files:
        msg = f"npp teacher: no photos in {images!r}"
        raise InvalidArgumentError(msg, argument="images", allowed="corpus:train, builtin:train or a folder")
    sizes = []
    h = hashlib.sha256()
    for p in files:
        with Image.open(p) as im:
            sizes.append(im.size)
    for key, size in zip(keys, sizes, strict=True):
        h.update(f"{key}:{size}\n".encode())
    return Photos(list(files), groups, keys, h.hexdigest()[:16], sizes)


def plan_crops(sizes: Sequence[tuple[int, int]], s: TeacherSettings) -> list[CropSpec]:
    """The run's crops, in order (module docstring); photos too small for one crop at any
    scale are skipped."""
    plan = []
    for r in range(s.crops_per_photo):
        order = list(range(len(sizes)))
        _rng(s.seed, "order", r).shuffle(order)
        for i in order:
            w, h = sizes[i]
            rng = _rng(s.seed, "crop", r, i)
            fits = [sc for sc in s.scales if min(round(w * sc), round(h * sc)) >= s.size]
            if not fits:
                continue
            sc = rng.choice(fits)
            sw, sh = round(w * sc), round(h * sc)
            plan.append(CropSpec(i, sc, rng.randrange(sh - s.size + 1), rng.randrange(sw - s.size + 1),
                                 rng.random() < 0.5))
    return plan


def shard_qp(s: TeacherSettings, k: int) -> int:
    return _rng(s.seed, "qp", k).randint(*s.qps)


def _cut(photo: np.ndarray, spec: CropSpec, size: int) -> np.ndarray:
    from PIL import Image

    if spec.scale != 1.0:
        h, w = photo.shape[:2]
        im = Image.fromarray(photo).resize((round(w * spec.scale), round(h * spec.scale)), Image.BICUBIC)
        photo = np.asarray(im)
    tile = photo[spec.y:spec.y + size, spec.x:spec.x + size]
    return np.ascontiguousarray(tile[:, ::-1] if spec.flip else tile)


def make_teacher(s: TeacherSettings):
    """The refinement and the codec it refines through, as ``s`` says."""
    from ..preprocessors.refine import TaskRefine
    from ..registry import get_codec, get_preprocessor, get_task

    codec = get_codec(s.codec, level=s.level) if s.codec == "bpg" else get_codec(s.codec)
    # "a+b" is a ClassifierEnsemble. It keeps MobileNetV2's λ table, as the ensemble teacher
    # (run C) was made; the ensemble's own table (shipped since) would weigh the mean KL otherwise
    lambdas = get_preprocessor("blur_tuned").lambdas if "+" in s.task else None
    return TaskRefine(task=get_task(s.task), steps=s.steps, lr=s.lr, lambdas=lambdas), codec


def _shard_path(out: Path, k: int) -> Path:
    return out / f"shard-{k:05d}.pt"


def run_teacher(out: str | Path, s: TeacherSettings, *, resume: bool = False, max_shards: int | None = None,
                progress: bool = True) -> dict[str, Any]:
    """Refine the planned crops shard by shard into ``out`` (module docstring). Returns a
    summary. With ``resume``, shards already written are kept; without it, ``out`` must not
    hold another run's shards. ``max_shards`` stops after that many new shards."""
    from tqdm import tqdm

    from ..datasets import load_rgb

    out = Path(out)
    photos = resolve_photos(s.images)
    plan = plan_crops(photos.sizes, s)
    n_shards = (len(plan) + s.shard - 1) // s.shard
    meta = {"format": "npp-teacher/1", "settings": s.to_dict(), "photos": len(photos.files),
            "photos_digest": photos.digest, "crops": len(plan), "shards": n_shards}
    meta_path = out / "teacher.json"
    if meta_path.is_file():
        old = json.loads(meta_path.read_text())
        if not resume:
            msg = f"npp teacher: {str(out)!r} holds a teacher run already; add --resume to continue it"
            raise InvalidArgumentError(msg, argument="resume", allowed="--resume, or another --out")
        if {k: old.get(k) for k in meta} != meta:
            msg = (f"npp teacher: {str(out)!r} holds a run with other settings or photos "
                   f"({old.get('settings')}, photos {old.get('photos_digest')}); use another --out")
            raise InvalidArgumentError(msg, argument="out", allowed="a fresh folder")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(meta_path, (json.dumps(meta, indent=1) + "\n").encode())
    todo = [k for k in range(n_shards) if not _shard_path(out, k).is_file()]
    if max_shards is not None:
        todo = todo[:max_shards]
    teacher, codec = make_teacher(s)
    done, t0 = 0, time.time()
    cache: dict[int, np.ndarray] = {}
    bar = tqdm(todo, desc="teacher", unit="shard", disable=not progress)
    for k in bar:
        specs = plan[k * s.shard:(k + 1) * s.shard]
        tiles = []
        for spec in specs:
            if spec.photo not in cache:
                if len(cache) > 64:
                    cache.pop(next(iter(cache)))
                cache[spec.photo] = load_rgb(photos.files[spec.photo])
            tiles.append(_cut(cache[spec.photo], spec, s.size))
        x8 = torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2).contiguous()
        qp = shard_qp(s, k)
        t = time.time()
        r = teacher.refine(x8, codec=codec, qp=qp)  # 8-bit input: refine reads it as / 255
        y8 = quantize_uint8(r.images)
        rec = {"x": x8, "y": y8, "qp": qp, "lam": r.lam, "j_base": r.j_base, "j": r.j, "bpp_base": r.bpp_base,
               "bpp": r.bpp, "loss_base": r.loss_base, "loss": r.loss,
               "photos": [photos.keys[c.photo] for c in specs],
               "groups": [photos.groups[c.photo] for c in specs],
               "specs": [[c.photo, c.scale, c.y, c.x, int(c.flip)] for c in specs]}
        save_tagged(_shard_path(out, k), SHARD_FORMAT, rec)
        line = {"shard": k, "qp": qp, "n": len(specs), "seconds": round(time.time() - t, 2),
                "j_base": float(r.j_base.mean()), "j": float(r.j.mean()),
                "bpp_base": float(r.bpp_base.mean()), "bpp": float(r.bpp.mean()),
                "loss_base": float(r.loss_base.mean()), "loss": float(r.loss.mean())}
        with open(out / "log.jsonl", "a") as fh:
            fh.write(json.dumps(line) + "\n")
        done += 1
        bar.set_postfix(J=f"{line['j']:.3f}/{line['j_base']:.3f}")
    have = sum(_shard_path(out, k).is_file() for k in range(n_shards))
    return {"out": str(out), "new_shards": done, "shards": have, "of": n_shards, "crops": len(plan),
            "photos": len(photos.files), "seconds": round(time.time() - t0, 1)}


def load_shards(folder: str | Path, *, limit: int | None = None) -> dict[str, Any]:
    """Every shard under ``folder`` concatenated: ``x``, ``y`` (uint8), ``qp`` (per crop) and
    the per-crop J, bpp and loss of base and teacher, with ``photos`` and ``groups``."""
    folder = Path(folder)
    paths = sorted(folder.glob("shard-*.pt"))[:limit]
    if not paths:
        msg = f"no teacher shards in {str(folder)!r}; make them with `npp teacher --out {folder}`"
        raise InvalidArgumentError(msg, argument="teacher", allowed="a folder written by npp teacher")
    cols: dict[str, list] = {}
    for p in paths:
        d = load_tagged(p, SHARD_FORMAT, who="npp distil", what="a teacher shard")
        n = d["x"].shape[0]
        d["qp"] = torch.full((n,), int(d["qp"]), dtype=torch.int64)
        d["lam"] = torch.full((n,), float(d["lam"]), dtype=torch.float64)
        for key in ("x", "y", "qp", "lam", "j_base", "j", "bpp_base", "bpp", "loss_base", "loss", "photos", "groups"):
            cols.setdefault(key, []).append(d[key])
    out: dict[str, Any] = {k: torch.cat(v) for k, v in cols.items() if k not in ("photos", "groups")}
    out["photos"] = [p for v in cols["photos"] for p in v]
    out["groups"] = [g for v in cols["groups"] for g in v]
    return out


def _ratio_interval(num: np.ndarray, den: np.ndarray, groups: Sequence[str], *, n_boot: int = 1000,
                    seed: int = 0) -> list[float]:
    """mean(num) / mean(den) − 1 over paired crops, with a 95 % bootstrap interval that
    resamples photo groups (a ratio of means: per-crop ratios of small KLs are too noisy)."""
    names = sorted(set(groups))
    rows = {g: [i for i, h in enumerate(groups) if h == g] for g in names}
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(n_boot):
        idx = np.concatenate([rows[names[i]] for i in rng.integers(0, len(names), len(names))])
        stats.append(num[idx].mean() / den[idx].mean() - 1)
    return [float(num.mean() / den.mean() - 1), *map(float, np.percentile(stats, [2.5, 97.5]))]


@torch.no_grad()
def code_and_score(y: torch.Tensor, qps: torch.Tensor, codec: Any, tasks: dict[str, Any], refs: dict[str, Any], *,
                   prefilter: Any = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Code each image of ``y`` at its own QP (``qps``, one per image; one batch round trip per
    QP) after ``prefilter`` (a preprocessor, or None) and score the decoded images: bits per
    pixel and each task's loss against its reference ``refs[name]`` (float64, per image)."""
    n, npx = y.shape[0], y.shape[-1] * y.shape[-2]
    bpp = torch.zeros(n, dtype=torch.float64)
    loss = {name: torch.zeros(n, dtype=torch.float64) for name in tasks}
    for qp in sorted(set(qps.tolist())):
        idx = (qps == qp).nonzero().flatten()
        yq = y[idx] if prefilter is None else prefilter(y[idx], codec=codec, qp=qp)
        rec, bits = codec.roundtrip(yq.clamp(0, 1), qp=qp)
        bpp[idx] = bits.double() / npx
        for name, t in tasks.items():
            loss[name][idx] = t.loss(rec, refs[name][idx], reduction="none").double()
    return bpp, loss


def compare_teachers(folders: Sequence[str | Path], tasks: Sequence[str], *, n_boot: int = 1000) -> dict[str, Any]:
    """Teachers run on the same crops (same photos, settings but ``task``, seed), judged by
    classifiers: per teacher and classifier, the change of KL and of bits against the tuned
    blur on the same crops at the same QP (the teacher's start), as relative changes of the
    means with 95 % intervals over photo groups. A teacher is fairly judged only by a
    classifier it did not refine for."""
    from ..registry import get_codec, get_preprocessor, get_task

    runs = [load_shards(f) for f in folders]
    metas = [json.loads((Path(f) / "teacher.json").read_text()) for f in folders]
    n = min(r["x"].shape[0] for r in runs)
    for r, f in zip(runs[1:], folders[1:], strict=True):
        if not torch.equal(r["x"][:n], runs[0]["x"][:n]) or not torch.equal(r["qp"][:n], runs[0]["qp"][:n]):
            msg = f"npp teacher compare: {str(f)!r} was not run on the same crops and QPs as {str(folders[0])!r}"
            raise InvalidArgumentError(msg, argument="folders", allowed="teacher runs with the same photos and seed")
    s = metas[0]["settings"]
    codec = get_codec(s["codec"], level=s["level"]) if s["codec"] == "bpg" else get_codec(s["codec"])
    blur = get_preprocessor("blur_tuned")
    x = runs[0]["x"][:n].float() / 255
    qps = runs[0]["qp"][:n]
    groups = runs[0]["groups"][:n]
    judges = {t: get_task(t) for t in tasks}
    refs = {t: j.reference(x) for t, j in judges.items()}

    def score(y: torch.Tensor, filt: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        bpp, kl = code_and_score(y, qps, codec, judges, refs, prefilter=blur if filt else None)
        return bpp.numpy(), {t: v.numpy() for t, v in kl.items()}

    bpp0, kl0 = score(x, True)
    out: dict[str, Any] = {"crops": n, "photos": len(set(runs[0]["photos"][:n])), "groups": len(set(groups)),
                           "blur": {"bpp": float(bpp0.mean()), **{f"kl_{t}": float(kl0[t].mean()) for t in tasks}},
                           "teachers": {}}
    for f, r, m in zip(folders, runs, metas, strict=True):
        bpp, kl = score(r["y"][:n].float() / 255, False)
        row = {"task": m["settings"]["task"], "bpp_change": _ratio_interval(bpp, bpp0, groups, n_boot=n_boot)}
        for t in tasks:
            row[f"kl_change_{t}"] = _ratio_interval(kl[t], kl0[t], groups, n_boot=n_boot)
            row[f"kl_{t}"] = float(kl[t].mean())
            row[f"unseen_{t}"] = t not in m["settings"]["task"].split("+")
        out["teachers"][str(f)] = row
    return out


def build_parser() -> argparse.ArgumentParser:
    d = TeacherSettings()
    p = argparse.ArgumentParser(prog="npp teacher", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="folder of shards (resumable)")
    p.add_argument("--images", default=d.images, help="corpus:train|dev|all, builtin:train|val|all, or a folder")
    p.add_argument("--size", type=int, default=d.size, help="crop side")
    p.add_argument("--scales", type=float, nargs="+", default=list(d.scales), help="downscales a crop is cut at")
    p.add_argument("--crops-per-photo", type=int, default=d.crops_per_photo)
    p.add_argument("--qps", type=int, nargs=2, default=list(d.qps), metavar=("LO", "HI"), help="QP range, per shard")
    p.add_argument("--task", default=d.task, help="classifier the teacher refines for; a+b: mean KL of both")
    p.add_argument("--steps", type=int, default=d.steps, help="npp_refine steps")
    p.add_argument("--lr", type=float, default=d.lr, help="npp_refine step size at QP 34")
    p.add_argument("--codec", default=d.codec)
    p.add_argument("--level", type=int, default=d.level, help="BPG effort level")
    p.add_argument("--shard", type=int, default=d.shard, help="crops per shard (one QP each)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--max-shards", type=int, default=None, help="stop after this many new shards")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["compare"]:
        p = argparse.ArgumentParser(prog="npp teacher compare",
                                    description="teachers on the same crops, judged by classifiers")
        p.add_argument("folders", nargs="+", type=Path)
        p.add_argument("--tasks", default="efficientnet_lite0,efficientnet_lite2")
        p.add_argument("--out", type=Path, default=None, help="write the comparison as JSON here")
        a = p.parse_args(argv[1:])
        try:
            res = compare_teachers(a.folders, [t for t in a.tasks.split(",") if t])
        except NppError as exc:
            print(f"npp teacher compare: error: {exc}", file=sys.stderr)
            return 2
        text = json.dumps(res, indent=1)
        if a.out is not None:
            atomic_write_bytes(a.out, (text + "\n").encode())
        print(text)
        return 0
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        s = TeacherSettings(images=args.images, size=args.size, scales=tuple(args.scales),
                            crops_per_photo=args.crops_per_photo, qps=tuple(args.qps), task=args.task,
                            steps=args.steps, lr=args.lr, codec=args.codec, level=args.level, shard=args.shard,
                            seed=args.seed)
        summary = run_teacher(args.out, s, resume=args.resume, max_shards=args.max_shards,
                              progress=not args.no_progress)
    except NppError as exc:
        print(f"npp teacher: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
