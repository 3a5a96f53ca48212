"""From per-image rows to curves, BD-rates, tables and files.

Aggregation: rows are grouped by (task, codec, variant, QP); each curve point is the
arithmetic mean over the images of that group of bpp and of every score (task score, KL,
PCK, PSNR in dB, MS-SSIM, FSIM), with the standard error of the mean. Human-vision curves
are grouped by (codec, variant, QP) over unique images (they do not depend on the task).
Detection curves also get dataset-level COCO mAP@[.5:.95] and AP50 over the group's images
(:mod:`.coco_map`), which are not means over images. BD-rates are computed on those
curves, with a paired bootstrap over images (:mod:`.bdrate`). Images a task cannot judge
(score None, e.g. no person in the uncompressed photo) are left out of that task's curves.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError
from ..fileio import atomic_write_bytes
from .bdrate import bd_rate_bootstrap, bd_rate_bootstrap_weighted
from .coco_map import MAP_METRICS, MatchTable, coco_map
from .metrics import FIDELITY_METRICS
from .store import RowStore
from .sweep import NO_TASK, PLAIN, ROWS, read_manifest

__all__ = ["AGGREGATION", "add_dataset_map", "aggregate", "bd_table", "fidelity_curves", "finalize", "format_table"]

AGGREGATION = (
    "curve point = arithmetic mean over images, per (task, codec, variant, QP), of bpp and of each "
    "score (task score, KL to the uncompressed prediction, PSNR dB, MS-SSIM, FSIM), with the "
    "standard error of the mean (*_se); detection curves add dataset-level COCO mAP@[.5:.95] and "
    "AP50 over the point's images (pycocotools); BD-rates are computed on these curves with a paired "
    "bootstrap over images (or over source photos) for the interval; images a task cannot judge "
    "(score None) are left out of its curves"
)
#: metric → how to make "higher is better" for BD-rate (KL: lower is better).
QUALITY = {"score": 1.0, "kl": -1.0, "pck": 1.0, "map": 1.0, "ap50": 1.0, "psnr": 1.0, "ms_ssim": 1.0, "fsim": 1.0}
#: per-image task metrics (means over images); mAP and AP50 are dataset-level (MAP_METRICS).
TASK_METRICS = ("score", "kl", "pck")


def _mean_se(values: list[float]) -> tuple[float | None, float | None]:
    vals = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if len(vals) == 0:
        return None, None
    se = float(vals.std(ddof=1) / math.sqrt(len(vals))) if len(vals) > 1 else None
    return float(vals.mean()), se


def _curve_rows(groups: dict[tuple, list[dict]], key_names: Sequence[str], metrics: Sequence[str]) -> list[dict]:
    out = []
    for key in sorted(groups, key=lambda k: tuple(str(x) for x in k[:-1]) + (k[-1],)):
        rows = groups[key]
        point: dict[str, Any] = dict(zip(key_names, key, strict=True))
        point["n"] = len(rows)
        scored = [r for r in rows if r.get("score") is not None]
        if len(scored) != len(rows):
            point["n_scored"] = len(scored)
        for m in ("bpp", *metrics):
            mean, se = _mean_se([r.get(m) for r in rows])
            point[m], point[f"{m}_se"] = mean, se
        out.append(point)
    return out


def aggregate(rows: Sequence[dict]) -> list[dict]:
    """Mean curves per (task, codec, variant, qp)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        if r["kind"] == "coded":
            groups[(r["task"], r["codec"], r["variant"], r["qp"])].append(r)
    return _curve_rows(groups, ("task", "codec", "variant", "qp"), (*TASK_METRICS, *FIDELITY_METRICS))


def _unique_fidelity_rows(rows: Sequence[dict]) -> list[dict]:
    seen: dict[tuple, dict] = {}
    for r in rows:
        if r["kind"] == "coded":
            seen.setdefault((r["image"], r["codec"], r["variant"], r["qp"]), r)
    return list(seen.values())


def fidelity_curves(rows: Sequence[dict]) -> list[dict]:
    """Mean human-vision curves per (codec, variant, qp) over unique images."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in _unique_fidelity_rows(rows):
        groups[(r["codec"], r["variant"], r["qp"])].append(r)
    return _curve_rows(groups, ("codec", "variant", "qp"), FIDELITY_METRICS)


def reference_scores(rows: Sequence[dict]) -> dict[str, dict[str, Any]]:
    """Per task: mean score of the uncompressed images (1.0 for agreement by definition),
    how many images the task could judge, and mAP for detectors (against the annotations,
    or 1.0 against their own pseudo ground truth)."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if r["kind"] == "reference":
            groups[r["task"]].append(r)
    out = {}
    for t, rs in groups.items():
        mean, se = _mean_se([r.get("score") for r in rs])
        out[t] = {"score": mean, "score_se": se, "n": len(rs),
                  "n_scored": sum(r.get("score") is not None for r in rs)}
        if any(r.get("pck") is not None for r in rs):
            out[t]["pck"] = _mean_se([r.get("pck") for r in rs])[0]
        if rs and all("dets" in r for r in rs):
            out[t].update(coco_map([r.get("gt", r["dets"]) for r in rs], [r["dets"] for r in rs]))
    return out


def _ground_truth(rows: Sequence[dict]) -> dict[tuple[str, str], dict]:
    """(task, image) → the mAP ground truth: annotations, else the reference detections."""
    return {(r["task"], r["image"]): r.get("gt", r["dets"]) for r in rows if r["kind"] == "reference" and "dets" in r}


def add_dataset_map(curves: list[dict], rows: Sequence[dict]) -> list[dict]:
    """Fill ``map`` / ``ap50`` of each detection curve point whose rows all hold detections."""
    gts = _ground_truth(rows)
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        if r["kind"] == "coded" and "dets" in r:
            groups[(r["task"], r["codec"], r["variant"], r["qp"])].append(r)
    for c in curves:
        rs = groups.get((c["task"], c["codec"], c["variant"], c["qp"]), [])
        if rs and len(rs) == c["n"] and all((r["task"], r["image"]) in gts for r in rs):
            c.update(coco_map([gts[(r["task"], r["image"])] for r in rs], [r["dets"] for r in rs]))
    return curves


def _parse_anchor(anchor: str) -> tuple[str | None, str]:
    if "/" in anchor:
        codec, variant = anchor.split("/", 1)
        return codec, variant
    return None, anchor


def _matrix(curve_rows: list[dict], metric: str) -> tuple[list[int], dict[str, dict], dict[str, str]]:
    """image → {qp: (bpp, metric)} for one curve, plus its QPs and image sources."""
    per_image: dict[str, dict[int, tuple[float, float]]] = defaultdict(dict)
    sources: dict[str, str] = {}
    for r in curve_rows:
        v = r.get(metric)
        if v is None or r.get("bpp") is None:
            continue
        per_image[r["image"]][r["qp"]] = (r["bpp"], QUALITY[metric] * v)
        sources[r["image"]] = r.get("source", r["image"])
    qps = sorted({qp for d in per_image.values() for qp in d})
    return qps, per_image, sources


def _bd_entry(anchor_rows, test_rows, metric, *, n_boot, method, seed, unit) -> dict[str, Any] | None:
    qa, ia, sources = _matrix(anchor_rows, metric)
    qt, it, _ = _matrix(test_rows, metric)
    if not qa or not qt:
        return None
    images = sorted(k for k in set(ia) & set(it) if len(ia[k]) == len(qa) and len(it[k]) == len(qt))
    if len(images) == 0:
        return None
    arr = lambda d, qps, j: np.array([[d[k][q][j] for q in qps] for k in images])  # noqa: E731
    groups = [sources[k] for k in images] if unit == "source" else None
    res = bd_rate_bootstrap(arr(ia, qa, 0), arr(ia, qa, 1), arr(it, qt, 0), arr(it, qt, 1),
                            n_boot=n_boot, method=method, seed=seed, groups=groups)
    d = res.as_dict()
    d["dropped_anchor_qps"] = [qa[i] for i in d.pop("dropped_anchor")]
    d["dropped_test_qps"] = [qt[i] for i in d.pop("dropped_test")]
    d["qps_anchor"], d["qps_test"] = qa, qt
    d["bootstrap_unit"] = unit
    return d


def _bd_map_entries(anchor_rows, test_rows, gts, *, n_boot, method, seed, unit) -> dict[str, dict[str, Any]]:
    """BD-rates on dataset-level mAP and AP50 (metric → entry), bootstrapped over images."""
    def by_image(rows):
        d: dict[str, dict[int, dict]] = defaultdict(dict)
        for r in rows:
            if "dets" in r and r.get("bpp") is not None and (r["task"], r["image"]) in gts:
                d[r["image"]][r["qp"]] = r
        return d, sorted({r["qp"] for r in rows})

    (ia, qa), (it, qt) = by_image(anchor_rows), by_image(test_rows)
    images = sorted(k for k in set(ia) & set(it) if len(ia[k]) == len(qa) and len(it[k]) == len(qt))
    if not images or not qa or not qt:
        return {}
    task = anchor_rows[0]["task"]
    truth = [gts[(task, k)] for k in images]

    def curve(per_image, qps):
        rate = np.array([[per_image[k][q]["bpp"] for q in qps] for k in images])
        tables = [MatchTable(truth, [per_image[k][q]["dets"] for k in images]) for q in qps]
        return rate, (lambda w: np.stack([tb.evaluate(w) for tb in tables]))

    (ra, fa), (rt, ft) = curve(ia, qa), curve(it, qt)
    groups = [ia[k][qa[0]].get("source", k) for k in images] if unit == "source" else None
    results = bd_rate_bootstrap_weighted(ra, rt, fa, ft, n_metrics=len(MAP_METRICS), n_boot=n_boot, method=method,
                                         seed=seed, groups=groups)
    out = {}
    for m, res in zip(MAP_METRICS, results, strict=True):
        d = res.as_dict()
        d["dropped_anchor_qps"] = [qa[i] for i in d.pop("dropped_anchor")]
        d["dropped_test_qps"] = [qt[i] for i in d.pop("dropped_test")]
        d["qps_anchor"], d["qps_test"] = qa, qt
        d["bootstrap_unit"] = unit
        out[m] = d
    return out


def bd_table(
    rows: Sequence[dict],
    *,
    anchor: str = PLAIN,
    metrics: Sequence[str] = ("score", "kl", "pck", "map", "ap50", "psnr", "ms_ssim"),
    n_boot: int = 1000,
    method: str = "pchip",
    seed: int = 0,
    unit: str = "image",
) -> list[dict]:
    """BD-rate (with interval) of every (codec, variant) curve against the anchor.

    Args:
        anchor: a variant label (compared within each codec, default ``"plain"``) or
            ``"codec/variant"`` (one curve every other curve is compared with).
        metrics: task metrics ("score", "kl", "pck"; dataset-level "map", "ap50" for
            detectors) are computed per task; fidelity metrics once
            per (codec, variant) on unique images (task column ``"-"``).
        unit: bootstrap unit, "image" or "source" (all crops of a photo together).
    """
    if unit not in ("image", "source"):
        msg = f"BD-rate: bootstrap unit must be 'image' or 'source', got {unit!r}"
        raise InvalidArgumentError(msg, argument="bootstrap_unit", allowed=("image", "source"))
    bad = [m for m in metrics if m not in QUALITY]
    if bad:
        msg = f"BD-rate: unknown metric {bad[0]!r}; choose from {', '.join(QUALITY)}"
        raise InvalidArgumentError(msg, argument="bd_metrics", allowed=tuple(QUALITY))
    a_codec, a_variant = _parse_anchor(anchor)
    gts = _ground_truth(rows)
    coded = [r for r in rows if r["kind"] == "coded"]
    by_task: dict[str, dict[tuple, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in coded:
        by_task[r["task"]][(r["codec"], r["variant"])].append(r)
    fid = defaultdict(list)
    for r in _unique_fidelity_rows(coded):
        fid[(r["codec"], r["variant"])].append(r)
    per_task = (*TASK_METRICS, *MAP_METRICS)
    jobs = [(t, curves, [m for m in metrics if m in per_task]) for t, curves in sorted(by_task.items()) if t != NO_TASK]
    jobs.append(("-", fid, [m for m in metrics if m not in per_task]))
    out = []
    for task, curves, ms in jobs:
        for (codec, variant) in sorted(curves):
            ref = (a_codec or codec, a_variant)
            if ref == (codec, variant) or ref not in curves:
                continue
            maps = {}
            if task != "-" and any(m in MAP_METRICS for m in ms):
                maps = _bd_map_entries(curves[ref], curves[(codec, variant)], gts, n_boot=n_boot, method=method,
                                       seed=seed, unit=unit)
            for m in ms:
                if m in MAP_METRICS:
                    entry = maps.get(m)
                else:
                    entry = _bd_entry(curves[ref], curves[(codec, variant)], m, n_boot=n_boot, method=method,
                                      seed=seed, unit=unit)
                if entry is not None:
                    out.append({"task": task, "codec": codec, "variant": variant, "anchor": "/".join(ref), "metric": m, **entry})
    return out


def _fmt(v: Any, spec: str = ".2f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return format(v, spec)


def _short(note: str) -> str:
    """bjontegaard's overlap warning, shortened for a table cell."""
    m = re.match(r"Insufficient curve overlap: '([\d.]+)'\. Minimum overlap: '([\d.]+)'", note)
    if m:
        return f"overlap {float(m.group(1)):.0f} % < {float(m.group(2)):.0f} %"
    return note.replace("Curves do not overlap. BD cannot be calculated.", "curves do not overlap")


#: the bootstrap's own note (:func:`~.bdrate._set_interval`), said once under the table
_RESAMPLE_NOTE = re.compile(r"^(\d+)/(\d+) bootstrap resamples had overlap warnings or dropped points$")

#: what † means, in words, once
RESAMPLE_WARNING = (
    "†: in some bootstrap resamples (how many: `boot_noted` in bdrate.csv) the two curves "
    "overlapped less than bjontegaard's minimum or lost non-monotonic points, so the BD-rate "
    "there rests partly on extrapolation and the interval is rougher than its width suggests; "
    "the per-QP points below say it more plainly."
)


def resample_noted(entry: dict) -> int:
    """How many bootstrap resamples of a BD-rate entry needed care (0 when none)."""
    for w in entry.get("warnings", ()):
        m = _RESAMPLE_NOTE.match(w)
        if m:
            return int(m.group(1))
    return 0


def format_table(bd: Sequence[dict], curves: Sequence[dict] | None = None, refs: dict | None = None) -> str:
    """Markdown: the BD-rate table (and the curve points when given). The bootstrap's
    per-row note is a † here, explained once under the table."""
    lines = [
        "| task | codec | variant | anchor | metric | BD-rate % | 95 % CI | CI ∋ 0 | images | notes |",
        "| --- | --- | --- | --- | --- | ---: | --- | --- | ---: | --- |",
    ]
    any_noted = False
    for e in bd:
        ci = f"[{_fmt(e['ci_low'])}, {_fmt(e['ci_high'])}]"
        inc = {True: "yes", False: "**no**", None: "n/a"}[e["includes_zero"]]
        noted = resample_noted(e) > 0
        any_noted |= noted
        notes = "; ".join(_short(w) for w in e["warnings"] if not _RESAMPLE_NOTE.match(w))
        ci += " †" if noted else ""
        lines.append(f"| {e['task']} | {e['codec']} | {e['variant']} | {e['anchor']} | {e['metric']} | "
                     f"{_fmt(e['value'])} | {ci} | {inc} | {e['n_images']} | {notes} |")
    if any_noted:
        lines += ["", RESAMPLE_WARNING]
    if curves:
        # PCK, mAP and AP50 columns only when some task has them (pose, detection)
        extra = [m for m in ("pck", "map", "ap50") if any(c.get(m) is not None for c in curves)]
        names = {"pck": "PCK", "map": "mAP", "ap50": "AP50"}
        lines += ["", "| task | codec | variant | QP | n | bpp | score | KL | "
                  + "".join(f"{names[m]} | " for m in extra) + "PSNR dB | MS-SSIM | FSIM |",
                  "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | " + "---: | " * len(extra) + "---: | ---: | ---: |"]
        for c in curves:
            n = c["n"] if c.get("n_scored") is None else f"{c['n_scored']}/{c['n']}"
            lines.append(
                f"| {c['task']} | {c['codec']} | {c['variant']} | {c['qp']} | {n} | {_fmt(c['bpp'], '.4f')} | "
                f"{_fmt(c['score'], '.4f')} | {_fmt(c['kl'], '.4f')} | "
                + "".join(f"{_fmt(c.get(m), '.4f')} | " for m in extra)
                + f"{_fmt(c['psnr'])} | {_fmt(c['ms_ssim'], '.4f')} | {_fmt(c['fsim'], '.4f')} |")
    if refs:
        def ref(t: str, v: dict) -> str:
            n = v["n"] if v.get("n_scored", v["n"]) == v["n"] else f"{v['n_scored']} of {v['n']} scored"
            more = "".join(f", {label} {_fmt(v[k], '.4f')}" for k, label in (("map", "mAP"), ("ap50", "AP50"))
                           if v.get(k) is not None)
            return f"{t} score {_fmt(v['score'], '.4f')} (n={n}{more})"

        lines += ["", "Uncompressed: " + ", ".join(ref(t, v) for t, v in refs.items())]
    return "\n".join(lines) + "\n"


def coding_times(rows: Sequence[dict]) -> list[dict]:
    """Per (codec, variant): the mean wall seconds per image of filtering, encoding and
    decoding (``coded_s`` of the rows, each coded image counted once whatever the tasks);
    ``None`` where the rows predate the timing."""
    seen: dict[tuple, float | None] = {}
    for r in rows:
        if r["kind"] == "coded":
            seen.setdefault((r["codec"], r["variant"], r["qp"], r["image"]), r.get("coded_s"))
    groups: dict[tuple, list] = defaultdict(list)
    for (codec, variant, _, _), t in seen.items():
        groups[(codec, variant)].append(t)
    out = []
    for (codec, variant), ts in sorted(groups.items()):
        known = [t for t in ts if t is not None]
        out.append({"codec": codec, "variant": variant, "n": len(known),
                    "seconds_per_image": float(np.mean(known)) if known else None})
    return out


def _csv(rows: Sequence[dict]) -> bytes:
    if not rows:
        return b""
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in r.items()})
    return buf.getvalue().encode()


def finalize(
    out_dir: str | Path,
    *,
    anchor: str = PLAIN,
    n_boot: int = 1000,
    method: str = "pchip",
    seed: int = 0,
    unit: str = "image",
    bd_metrics: Sequence[str] = ("score", "kl", "pck", "map", "ap50", "psnr", "ms_ssim"),
    plots: bool = True,
) -> dict[str, Any]:
    """Write results.json, rows.csv, curves.csv, bdrate.csv, table.md, transfer.md and the plots.

    ``anchor`` may list several anchors (``"plain,blur_tuned"``); the transfer table
    (transfer.md) has one column per anchor and is written when the run has a task and more
    than one variant.
    Every file is written atomically; rerunning (e.g. with another anchor) replaces them.
    Returns the results dictionary (as in results.json, without the rows).
    """
    out = Path(out_dir)
    manifest = read_manifest(out)
    rows = sorted(RowStore(out / ROWS).load(), key=lambda r: tuple(str(r.get(k)) for k in ("kind", "task", "codec", "variant", "qp", "image")))
    if not rows:
        msg = f"evaluation: {out} has no result rows yet"
        raise InvalidArgumentError(msg, argument="out", allowed="a folder with rows.jsonl")
    curves = add_dataset_map(aggregate(rows), rows)
    fcurves = fidelity_curves(rows)
    refs = reference_scores(rows)
    metrics = [m for m in bd_metrics if m in TASK_METRICS or m in MAP_METRICS
               or m in manifest.get("metrics", FIDELITY_METRICS)]
    # several anchors (``plain,blur_tuned``): every claim beside every baseline, one table
    anchors = list(dict.fromkeys(a.strip() for a in anchor.split(",") if a.strip()))
    by_anchor = {a: bd_table(rows, anchor=a, metrics=metrics, n_boot=n_boot, method=method, seed=seed, unit=unit)
                 for a in anchors}
    bd = [e for a in anchors for e in by_anchor[a]]
    results = {
        **manifest,
        "aggregation": AGGREGATION,
        "bd_rate_settings": {"anchor": anchor, "method": method, "n_boot": n_boot, "confidence": 0.95,
                             "seed": seed, "unit": unit, "non_monotonic": "monotone envelope (dominated points dropped)"},
        "reference": refs,
        "curves": curves,
        "fidelity_curves": fcurves,
        "bd_rate": bd,
        "timing": coding_times(rows),
        "counts": {"images": len({r["image"] for r in rows}), "sources": len({r.get("source", r["image"]) for r in rows})},
    }
    table = format_table(bd, curves, refs)
    kinds = {t: cfg.get("kind", "") for t, cfg in manifest.get("tasks", {}).items()}
    if kinds and len(manifest.get("variants", {})) > 1:
        from .transfer import transfer_rows, transfer_table

        transfer = transfer_rows(by_anchor, kinds, labels=manifest.get("labels") is not None)
        results["transfer"] = {"anchors": anchors, "rows": transfer, "table": transfer_table(transfer, anchors)}
        atomic_write_bytes(out / "transfer.md", results["transfer"]["table"].encode())
    atomic_write_bytes(out / "results.json", json.dumps({**results, "rows": rows}, indent=1, allow_nan=True).encode())
    atomic_write_bytes(out / "rows.csv", _csv(rows))
    atomic_write_bytes(out / "curves.csv", _csv(curves))
    atomic_write_bytes(out / "bdrate.csv", _csv([{**e, "boot_noted": resample_noted(e)} for e in bd]))
    atomic_write_bytes(out / "table.md", table.encode())
    if plots:
        from .plots import plot_all

        results["plots"] = [p.name for p in plot_all(curves, fcurves, out)]
    results["table"] = table
    return results
