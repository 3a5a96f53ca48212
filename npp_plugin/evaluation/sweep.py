"""The evaluation sweep: images × codecs × QPs × variants × task networks → per-image rows.

Work is done per batch of images. For each batch the uncompressed prediction of every task
network is computed once (it is the target when there are no labels); then every missing
(codec, QP, variant) unit goes through the codec's one door,
``codec.roundtrip(batch, qp=qp, preprocess=variant, workers=workers)``: the preprocessor in
float, one rounding to 8 bits, and the codec's own batch route (BPG: one native call with
one thread per core; other codecs: the base class's worker threads), then the unit is scored
with torch. A variant whose preprocessor is ``codec_independent`` is filtered once per batch
and that result is coded at every codec and QP.

Resumable: each finished unit appends its rows to ``rows.jsonl`` (see :mod:`.store`) keyed by
(kind, image, codec, QP, variant, task); a rerun with ``resume=True`` skips every key present.
Shardable: shard ``i`` of ``n`` takes images ``i, i+n, i+2n, ...``; ``merge`` joins the shards.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..codec import Codec
from ..errors import InvalidArgumentError
from ..fileio import atomic_write_bytes
from ..images import uint8_to_tensor_batch
from ..preprocessors.base import Preprocessor
from ..tasks import Task
from .inputs import EvalImage
from .metrics import FIDELITY_METRICS, bpp, fidelity, kl_divergence
from .store import RowStore

__all__ = ["NO_TASK", "PLAIN", "SweepSpec", "SweepStats", "run_sweep"]

PLAIN = "plain"
#: Task label of rows when no task network is evaluated (fidelity only).
NO_TASK = "none"
MANIFEST = "run.json"
ROWS = "rows.jsonl"
FORMAT = "npp-eval/1"


@dataclass
class SweepSpec:
    """What to evaluate.

    Attributes:
        codecs: label → codec instance (the label is normally ``codec.name``).
        variants: label → preprocessor, ``None`` for the plain codec (label ``"plain"``).
        tasks: label → task network; empty for fidelity metrics only.
        qps: codec label → task label → QPs (see :meth:`with_qps` for one list for all).
        metrics: human-vision metrics to compute (subset of ``FIDELITY_METRICS``).
        labels: optional image key (or source file) → class index; the classifiers' score
            is then top-1 accuracy against the labels instead of agreement with the
            uncompressed prediction.
        boxes: optional image key → ``{"boxes": (K, 4) xyxy, "labels": (K,), "iscrowd": (K,)}``
            (COCO annotations, see :mod:`.annotations`); detection tasks are then scored
            against them instead of their own detections on the uncompressed image.
    """

    codecs: Mapping[str, Codec]
    variants: Mapping[str, Preprocessor | None]
    tasks: Mapping[str, Task]
    qps: Mapping[str, Mapping[str, Sequence[int]]]
    metrics: tuple[str, ...] = FIDELITY_METRICS
    labels: Mapping[str, int] | None = None
    boxes: Mapping[str, dict] | None = None

    @staticmethod
    def task_labels(tasks: Mapping[str, Task]) -> list[str]:
        return list(tasks) or [NO_TASK]

    @classmethod
    def with_qps(cls, codecs, variants, tasks, qps: Sequence[int], **kw: Any) -> SweepSpec:
        """The same QP list for every codec and task."""
        table = {c: {t: list(qps) for t in cls.task_labels(tasks)} for c in codecs}
        return cls(codecs, variants, tasks, table, **kw)

    def validate(self) -> None:
        if not self.codecs:
            msg = "evaluation: no codecs given"
            raise InvalidArgumentError(msg, argument="codecs", allowed="one or more codec names")
        if not self.variants:
            msg = "evaluation: no variants given"
            raise InvalidArgumentError(msg, argument="variants", allowed="'plain' and/or preprocessor names")
        for label, codec in self.codecs.items():
            per_task = self.qps.get(label)
            if not per_task:
                msg = f"evaluation: no QPs for codec {label!r}"
                raise InvalidArgumentError(msg, codec=label, argument="qps", allowed=codec.qp_range)
            for t in self.task_labels(self.tasks):
                for qp in per_task.get(t, ()):
                    codec.validate_qp(qp)
        unknown = [m for m in self.metrics if m not in FIDELITY_METRICS]
        if unknown:
            msg = f"evaluation: unknown metric {unknown[0]!r}; choose from {', '.join(FIDELITY_METRICS)}"
            raise InvalidArgumentError(msg, argument="metrics", allowed=FIDELITY_METRICS)

    def manifest(self) -> dict[str, Any]:
        return {
            "codecs": {k: c.get_config() for k, c in self.codecs.items()},
            "variants": {k: (None if p is None else p.get_config()) for k, p in self.variants.items()},
            "tasks": {k: t.get_config() for k, t in self.tasks.items()},
            "qps": {c: {t: sorted(int(q) for q in qs) for t, qs in per.items()} for c, per in self.qps.items()},
            "metrics": list(self.metrics),
            "labels": None if self.labels is None else len(self.labels),
            **({} if self.boxes is None else {"boxes": len(self.boxes)}),
        }


@dataclass
class SweepStats:
    """How much a run did: rows written now, rows found done, rows the shard needs."""

    computed: int = 0
    skipped: int = 0
    total: int = 0
    units: int = 0
    out_dir: Path | None = None
    notes: list[str] = field(default_factory=list)


# -- manifest (run.json) ---------------------------------------------------------------------


def _images_manifest(images: Sequence[EvalImage], description: Mapping[str, Any]) -> dict[str, Any]:
    import hashlib

    digest = hashlib.sha256("\n".join(i.key for i in images).encode()).hexdigest()
    return {**description, "count": len(images), "keys_sha256": digest}


def _check_compatible(old: dict, new: dict, out: Path) -> None:
    for section in ("codecs", "variants", "tasks"):
        for label, cfg in new[section].items():
            if label in old.get(section, {}) and old[section][label] != cfg:
                msg = (
                    f"evaluation: {out} holds results for {section[:-1]} {label!r} with configuration "
                    f"{old[section][label]} but this run has {cfg}; use another --out"
                )
                raise InvalidArgumentError(msg, argument="out", allowed="a folder of the same configuration")
    if old.get("images") != new["images"]:
        msg = f"evaluation: {out} was run on other images ({old.get('images')}); use another --out"
        raise InvalidArgumentError(msg, argument="out", allowed="a folder of the same images")
    if old.get("metrics") != new["metrics"] or old.get("labels") != new["labels"] or old.get("boxes") != new.get("boxes"):
        msg = f"evaluation: {out} was run with other metrics or labels; use another --out"
        raise InvalidArgumentError(msg, argument="out", allowed="a folder of the same configuration")


def _merge_manifest(old: dict, new: dict) -> dict:
    merged = dict(old)
    for section in ("codecs", "variants", "tasks"):
        merged[section] = {**old.get(section, {}), **new[section]}
    qps = {c: dict(per) for c, per in old.get("qps", {}).items()}
    for c, per in new["qps"].items():
        for t, qs in per.items():
            qps.setdefault(c, {})[t] = sorted(set(qps.get(c, {}).get(t, [])) | set(qs))
    merged["qps"] = qps
    merged["runs"] = old.get("runs", []) + new["runs"]
    return merged


def write_manifest(out: Path, manifest: dict) -> None:
    atomic_write_bytes(out / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())


def read_manifest(out: Path) -> dict:
    path = Path(out) / MANIFEST
    if not path.is_file():
        msg = f"evaluation: {Path(out)} has no {MANIFEST}; not an evaluation output folder"
        raise InvalidArgumentError(msg, argument="out", allowed="a folder written by npp eval")
    return json.loads(path.read_text())


def check_out_dir(out: str | Path, *, resume: bool) -> bool:
    """True when ``out`` holds results; raise if it does and ``resume`` is off."""
    out = Path(out)
    rows = out / ROWS
    exists = (out / MANIFEST).exists() or (rows.exists() and rows.stat().st_size > 0)
    if exists and not resume:
        msg = f"evaluation: {out} already holds results; pass --resume to continue them or choose another --out"
        raise InvalidArgumentError(msg, argument="out", allowed="an empty folder, or --resume")
    return exists


def _prepare_out(out: Path, manifest: dict, *, resume: bool) -> RowStore:
    store = RowStore(out / ROWS)
    if check_out_dir(out, resume=resume):
        old = read_manifest(out)
        _check_compatible(old, manifest, out)
        if old.get("shard") != manifest["shard"]:
            msg = f"evaluation: {out} holds shard {old.get('shard')}, not {manifest['shard']}; use that shard's own --out"
            raise InvalidArgumentError(msg, argument="shard", allowed=str(old.get("shard")))
        manifest = _merge_manifest(old, manifest)
        store.repair()
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(out, manifest)
    return store


# -- the run ----------------------------------------------------------------------------------


def _batches(items: Sequence[EvalImage], size: int) -> Iterable[list[EvalImage]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


def _split_by_shape(items: list[EvalImage], pixels: list[np.ndarray]):
    start = 0
    for i in range(1, len(items) + 1):
        if i == len(items) or pixels[i].shape != pixels[start].shape:
            yield items[start:i], np.stack(pixels[start:i])
            start = i


def _targets(spec: SweepSpec, items: list[EvalImage], refs: dict[str, Any]) -> dict[str, Any]:
    """Each task's target: class labels (classifiers) or boxes (detectors) when the spec has
    them, else the task's reference."""
    kinds = {k: t.kind for k, t in spec.tasks.items()}
    out = dict(refs)
    if spec.labels is not None:
        import torch

        labels = []
        for img in items:
            lab = spec.labels.get(img.key, spec.labels.get(img.source))
            if lab is None:
                msg = f"evaluation: no label for image {img.key!r} in the labels file"
                raise InvalidArgumentError(msg, argument="labels", allowed="a label for every image")
            labels.append(int(lab))
        t = torch.tensor(labels, dtype=torch.int64)
        out.update({k: t for k in refs if kinds.get(k, "classification") == "classification"})
    if spec.boxes is not None:
        from .annotations import targets_for

        boxes = targets_for(spec.boxes, items)
        out.update({k: boxes for k in refs if kinds.get(k) == "detection"})
    return out


def _floats(values: Any) -> list[float | None]:
    """Per-image values as floats; NaN (an image the task cannot judge) becomes None."""
    arr = values.detach().cpu().double().numpy() if hasattr(values, "detach") else np.asarray(values, dtype=np.float64)
    return [float(v) if np.isfinite(v) else None for v in arr.reshape(-1)]


def _array(values: Any, dtype: Any = None) -> np.ndarray:
    return np.asarray(values.detach().cpu() if hasattr(values, "detach") else values, dtype=dtype)


def _dets_json(det: Mapping[str, Any]) -> dict[str, list]:
    """One image's detections (or boxes) as JSON lists: xyxy pixels to 0.01 px."""
    boxes = _array(det["boxes"], np.float64).reshape(-1, 4)
    scores = np.ones(len(boxes)) if det.get("scores") is None else _array(det["scores"], np.float64)
    out = {"boxes": [[round(float(v), 2) for v in b] for b in boxes],
           "scores": [round(float(v), 6) for v in scores.reshape(-1)],
           "labels": [int(v) for v in _array(det["labels"]).reshape(-1)]}
    if "iscrowd" in det:
        out["iscrowd"] = [int(v) for v in _array(det["iscrowd"]).reshape(-1)]
    return out


class _Runner:
    def __init__(self, spec: SweepSpec, store: RowStore, done: set, workers: int | None, stats: SweepStats) -> None:
        self.spec, self.store, self.done, self.workers, self.stats = spec, store, done, workers, stats
        self.task_labels = SweepSpec.task_labels(spec.tasks)

    def expected(self, img: EvalImage) -> tuple[list[tuple], dict[tuple, set[str]]]:
        ref_keys = [("reference", img.key, None, None, None, t) for t in self.spec.tasks]
        units: dict[tuple, set[str]] = defaultdict(set)
        for c, per_task in self.spec.qps.items():
            for t in self.task_labels:
                for qp in per_task.get(t, ()):
                    for v in self.spec.variants:
                        units[(c, int(qp), v)].add(t)
        return ref_keys, units

    def skip_if_done(self, items: Sequence[EvalImage]) -> bool:
        """Count and skip a batch whose rows all exist (without reading its pixels)."""
        keys = []
        for img in items:
            ref_keys, units = self.expected(img)
            keys += ref_keys
            keys += [("coded", img.key, c, qp, v, t) for (c, qp, v), ts in units.items() for t in ts]
        if all(k in self.done for k in keys):
            self.stats.skipped += len(keys)
            return True
        return False

    def count(self, items: Sequence[EvalImage]) -> int:
        n = 0
        for img in items[:1]:
            refs, units = self.expected(img)
            n = len(refs) + sum(len(ts) for ts in units.values())
        return n * len(items)

    def run_group(self, items: list[EvalImage], pixels: np.ndarray) -> None:
        import torch

        missing_ref: dict[str, list[int]] = defaultdict(list)
        missing_units: dict[tuple, dict[str, list[int]]] = {}
        for i, img in enumerate(items):
            ref_keys, units = self.expected(img)
            for key in ref_keys:
                if key in self.done:
                    self.stats.skipped += 1
                else:
                    missing_ref[key[5]].append(i)
            for (c, qp, v), tasks in units.items():
                for t in tasks:
                    if ("coded", img.key, c, qp, v, t) in self.done:
                        self.stats.skipped += 1
                    else:
                        missing_units.setdefault((c, qp, v), {}).setdefault(t, []).append(i)
        if not missing_ref and not missing_units:
            return
        x = uint8_to_tensor_batch(pixels)
        h, w = x.shape[-2:]
        need_tasks = set(missing_ref) | {t for u in missing_units.values() for t in u if t != NO_TASK}
        with torch.inference_mode():
            refs = {t: self.spec.tasks[t].reference(x) for t in need_tasks}
        targets = _targets(self.spec, items, refs)
        rows = []
        for t, idx in missing_ref.items():
            task = self.spec.tasks[t]
            with torch.inference_mode():
                if task.kind == "classification":
                    m = {"score": _floats(task.score(x, targets[t]))}
                else:
                    m = _task_measures(task, x, refs[t], targets[t])
            if task.kind == "detection":  # the pseudo ground truth (and the annotations) for mAP
                m["dets"] = [_dets_json(d) for d in refs[t]]
                if targets[t] is not refs[t]:
                    m["gt"] = [_dets_json(d) for d in targets[t]]
            rows += [self._row("reference", items[i], None, None, None, t, w, h,
                               **{k: v[i] for k, v in m.items()}) for i in idx]
        self.stats.computed += self.store.append(rows)
        fixed: dict[str, Any] = {}  # outputs of codec-independent filters, per variant
        fixed_s: dict[str, float] = {}  # and the seconds that filter took
        for (c, qp, v), per_task in missing_units.items():
            codec, prep = self.spec.codecs[c], self.spec.variants[v]
            start = time.perf_counter()
            if prep is not None and prep.codec_independent:
                if v not in fixed:
                    with torch.inference_mode():
                        fixed[v] = prep(x, codec=codec, qp=qp)
                    fixed_s[v] = time.perf_counter() - start
                    start = time.perf_counter()
                recon, bits = codec.roundtrip(fixed[v], qp=qp, workers=self.workers)
            else:
                recon, bits = codec.roundtrip(x, qp=qp, preprocess=prep, workers=self.workers)
            # wall seconds per image of the batch: filter + encode + decode (the codec's threads)
            coded_s = (time.perf_counter() - start + fixed_s.get(v, 0.0)) / len(items)
            self._score_unit(items, x, refs, targets, c, qp, v, per_task, recon, bits, coded_s)

    def _score_unit(self, items, x, refs, targets, c, qp, v, per_task, recon, bits, coded_s=None) -> None:
        import torch

        h, w = x.shape[-2:]
        nbytes = np.rint(bits.numpy() / 8.0).astype(np.int64)
        rate = bpp(nbytes, h, w)
        with torch.inference_mode():
            fid = fidelity(x, recon, tuple(self.spec.metrics))
        rows = []
        for t, idx in per_task.items():
            measures: dict[str, list] = {"score": [None] * len(items), "kl": [None] * len(items)}
            if t != NO_TASK:
                measures.update(_task_measures(self.spec.tasks[t], recon, refs[t], targets[t]))
            for i in idx:
                extra = {m: float(fid[m][i]) for m in fid}
                rows.append(self._row(
                    "coded", items[i], c, qp, v, t, w, h, bytes=int(nbytes[i]), bpp=float(rate[i]),
                    **{k: vals[i] for k, vals in measures.items()}, **extra, coded_s=coded_s,
                ))
        self.stats.computed += self.store.append(rows)
        self.stats.units += 1

    @staticmethod
    def _row(kind, img, codec, qp, variant, task, w, h, **values) -> dict[str, Any]:
        return {"kind": kind, "image": img.key, "source": img.source, "codec": codec, "qp": qp,
                "variant": variant, "task": task, "width": int(w), "height": int(h), **values}


def _task_measures(task: Task, recon, ref: Any, target: Any) -> dict[str, list]:
    """Per-image task metrics of ``recon``: ``score``, ``kl`` (classifiers), the task's
    other metrics (e.g. ``pck``) and, for detectors, ``dets`` (for dataset-level mAP).

    A classifier (``kind == "classification"`` whose ``reference`` gives (N, C)
    probabilities) runs once per image: KL comes from ``reference(recon)`` and the score is
    top-1 of those same probabilities, against the label or the reference's top-1, which is
    the ``Task.score`` contract for classifiers (tests check the two agree). Other tasks use
    their own ``measure`` (``score`` and friends in one pass).
    """
    import torch

    with torch.inference_mode():
        if task.kind == "classification" and torch.is_tensor(ref) and ref.ndim == 2:
            probs = task.reference(recon)
            labels = target if not torch.is_floating_point(target) else target.argmax(1)
            score = (probs.argmax(1) == labels.to(probs.device)).double()
            return {"score": _floats(score), "kl": [float(k) for k in kl_divergence(ref, probs)]}
        measured = dict(task.measure(recon, target))
    out: dict[str, list] = {}
    dets = measured.pop("detections", None)
    if dets is not None:
        out["dets"] = [_dets_json(d) for d in dets]
    for name, values in measured.items():
        out[name] = _floats(values)
    return out


def _task_scores(task: Task, recon, ref: Any, target: Any) -> tuple[list[float | None], list[float] | None]:
    """Per-image task score and, for classifiers, KL to the uncompressed prediction (see
    :func:`_task_measures`)."""
    m = _task_measures(task, recon, ref, target)
    return m["score"], m.get("kl")


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` → (i, n) with 0 <= i < n."""
    try:
        i, n = (int(p) for p in text.split("/"))
    except ValueError as exc:
        msg = f"evaluation: --shard must look like i/n (e.g. 0/4), got {text!r}"
        raise InvalidArgumentError(msg, argument="shard", allowed="i/n with 0 <= i < n") from exc
    if not (n >= 1 and 0 <= i < n):
        msg = f"evaluation: --shard {text!r} needs 0 <= i < n"
        raise InvalidArgumentError(msg, argument="shard", allowed="i/n with 0 <= i < n")
    return i, n


def run_sweep(
    images: Sequence[EvalImage],
    spec: SweepSpec,
    out_dir: str | Path,
    *,
    resume: bool = False,
    batch_size: int = 16,
    workers: int | None = None,
    shard: tuple[int, int] = (0, 1),
    images_description: Mapping[str, Any] | None = None,
    progress: bool | Callable[[Iterable], Iterable] = False,
) -> SweepStats:
    """Evaluate ``images`` under ``spec``, appending per-image rows to ``out_dir/rows.jsonl``.

    Args:
        images: all images of the evaluation (every shard gets the same list).
        spec: codecs, variants, tasks, QPs, metrics.
        out_dir: output folder; holds ``run.json`` and ``rows.jsonl``.
        resume: continue a run in ``out_dir`` (its configuration must match); without it a
            non-empty ``out_dir`` is an error.
        batch_size: images per batch (task networks and metrics run per batch).
        workers: the codecs' parallel workers (``roundtrip(workers=...)``; default: one per core).
        shard: ``(i, n)``: evaluate images ``i, i+n, ...`` only.
        images_description: how the images were chosen (recorded in ``run.json``).
        progress: show a tqdm bar (or pass a wrapper such as ``tqdm``).

    Returns:
        :class:`SweepStats` (rows computed now and rows skipped as already done).

    Raises:
        InvalidArgumentError: bad spec, or ``out_dir`` holds another configuration.
        CodecError and friends: from the codecs; rows finished so far stay on disk.
    """
    from .provenance import provenance

    spec.validate()
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        msg = f"evaluation: batch_size must be an integer >= 1, got {batch_size!r}"
        raise InvalidArgumentError(msg, argument="batch_size", allowed=">= 1")
    if not images:
        msg = "evaluation: no images to evaluate"
        raise InvalidArgumentError(msg, argument="images", allowed=">= 1 image")
    i, n = shard
    out = Path(out_dir)
    manifest = {
        "format": FORMAT,
        **spec.manifest(),
        "images": _images_manifest(images, images_description or {}),
        "shard": {"index": i, "count": n},
        "runs": [{"started": datetime.now(timezone.utc).isoformat(timespec="seconds"), **provenance()}],
    }
    store = _prepare_out(out, manifest, resume=resume)
    done = store.keys() if resume else set()
    mine = list(images)[i::n]
    stats = SweepStats(out_dir=out)
    batches = list(_batches(mine, batch_size))
    if progress is True:
        from tqdm import tqdm

        iterator: Iterable = tqdm(batches, desc=f"npp eval {out.name}", unit="batch", dynamic_ncols=True)
    elif callable(progress):
        iterator = progress(batches)
    else:
        iterator = batches
    runner = _Runner(spec, store, done, workers, stats)
    stats.total = runner.count(mine)
    for batch in iterator:
        if runner.skip_if_done(batch):
            continue
        pixels = [img.load() for img in batch]
        for group, arr in _split_by_shape(batch, pixels):
            runner.run_group(group, arr)
    return stats
