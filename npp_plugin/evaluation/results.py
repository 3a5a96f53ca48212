"""From per-image rows to curves, BD-rates, tables and files.

Aggregation: rows are grouped by (task, codec, variant, QP); each curve point is the
arithmetic mean over the images of that group of bpp and of every score (task score, KL,
PSNR in dB, MS-SSIM, FSIM), with the standard error of the mean. Human-vision curves are
grouped by (codec, variant, QP) over unique images (they do not depend on the task).
BD-rates are computed on those mean curves, with a paired bootstrap over images
(:mod:`.bdrate`).
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
from .bdrate import bd_rate_bootstrap
from .metrics import FIDELITY_METRICS
from .store import RowStore
from .sweep import NO_TASK, PLAIN, ROWS, read_manifest

__all__ = ["AGGREGATION", "aggregate", "bd_table", "fidelity_curves", "finalize", "format_table"]

AGGREGATION = (
    "curve point = arithmetic mean over images, per (task, codec, variant, QP), of bpp and of each "
    "score (task score, KL to the uncompressed prediction, PSNR dB, MS-SSIM, FSIM), with the "
    "standard error of the mean (*_se); BD-rates are computed on these mean curves with a paired "
    "bootstrap over images (or over source photos) for the interval"
)
#: metric → how to make "higher is better" for BD-rate (KL: lower is better).
QUALITY = {"score": 1.0, "kl": -1.0, "psnr": 1.0, "ms_ssim": 1.0, "fsim": 1.0}
TASK_METRICS = ("score", "kl")


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
    """Per task: mean score of the uncompressed images (1.0 for agreement by definition)."""
    groups: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        if r["kind"] == "reference":
            groups[r["task"]].append(r.get("score"))
    out = {}
    for t, vals in groups.items():
        mean, se = _mean_se(vals)
        out[t] = {"score": mean, "score_se": se, "n": len(vals)}
    return out


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


def bd_table(
    rows: Sequence[dict],
    *,
    anchor: str = PLAIN,
    metrics: Sequence[str] = ("score", "kl", "psnr", "ms_ssim"),
    n_boot: int = 1000,
    method: str = "pchip",
    seed: int = 0,
    unit: str = "image",
) -> list[dict]:
    """BD-rate (with interval) of every (codec, variant) curve against the anchor.

    Args:
        anchor: a variant label (compared within each codec, default ``"plain"``) or
            ``"codec/variant"`` (one curve every other curve is compared with).
        metrics: task metrics ("score", "kl") are computed per task; fidelity metrics once
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
    coded = [r for r in rows if r["kind"] == "coded"]
    by_task: dict[str, dict[tuple, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in coded:
        by_task[r["task"]][(r["codec"], r["variant"])].append(r)
    fid = defaultdict(list)
    for r in _unique_fidelity_rows(coded):
        fid[(r["codec"], r["variant"])].append(r)
    jobs = [(t, curves, [m for m in metrics if m in TASK_METRICS]) for t, curves in sorted(by_task.items()) if t != NO_TASK]
    jobs.append(("-", fid, [m for m in metrics if m not in TASK_METRICS]))
    out = []
    for task, curves, ms in jobs:
        for (codec, variant) in sorted(curves):
            ref = (a_codec or codec, a_variant)
            if ref == (codec, variant) or ref not in curves:
                continue
            for m in ms:
                entry = _bd_entry(curves[ref], curves[(codec, variant)], m, n_boot=n_boot, method=method, seed=seed, unit=unit)
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


def format_table(bd: Sequence[dict], curves: Sequence[dict] | None = None, refs: dict | None = None) -> str:
    """Markdown: the BD-rate table (and the curve points when given)."""
    lines = [
        "| task | codec | variant | anchor | metric | BD-rate % | 95 % CI | CI ∋ 0 | images | notes |",
        "| --- | --- | --- | --- | --- | ---: | --- | --- | ---: | --- |",
    ]
    for e in bd:
        ci = f"[{_fmt(e['ci_low'])}, {_fmt(e['ci_high'])}]"
        inc = {True: "yes", False: "**no**", None: "n/a"}[e["includes_zero"]]
        notes = "; ".join(_short(w) for w in e["warnings"])
        lines.append(f"| {e['task']} | {e['codec']} | {e['variant']} | {e['anchor']} | {e['metric']} | "
                     f"{_fmt(e['value'])} | {ci} | {inc} | {e['n_images']} | {notes} |")
    if curves:
        lines += ["", "| task | codec | variant | QP | n | bpp | score | KL | PSNR dB | MS-SSIM | FSIM |",
                  "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for c in curves:
            lines.append(
                f"| {c['task']} | {c['codec']} | {c['variant']} | {c['qp']} | {c['n']} | {_fmt(c['bpp'], '.4f')} | "
                f"{_fmt(c['score'], '.4f')} | {_fmt(c['kl'], '.4f')} | {_fmt(c['psnr'])} | {_fmt(c['ms_ssim'], '.4f')} | "
                f"{_fmt(c['fsim'], '.4f')} |")
    if refs:
        lines += ["", "Uncompressed: " + ", ".join(f"{t} score {_fmt(v['score'], '.4f')} (n={v['n']})" for t, v in refs.items())]
    return "\n".join(lines) + "\n"


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
    bd_metrics: Sequence[str] = ("score", "kl", "psnr", "ms_ssim"),
    plots: bool = True,
) -> dict[str, Any]:
    """Write results.json, rows.csv, curves.csv, bdrate.csv, table.md and the plots.

    Every file is written atomically; rerunning (e.g. with another anchor) replaces them.
    Returns the results dictionary (as in results.json, without the rows).
    """
    out = Path(out_dir)
    manifest = read_manifest(out)
    rows = sorted(RowStore(out / ROWS).load(), key=lambda r: tuple(str(r.get(k)) for k in ("kind", "task", "codec", "variant", "qp", "image")))
    if not rows:
        msg = f"evaluation: {out} has no result rows yet"
        raise InvalidArgumentError(msg, argument="out", allowed="a folder with rows.jsonl")
    curves = aggregate(rows)
    fcurves = fidelity_curves(rows)
    refs = reference_scores(rows)
    metrics = [m for m in bd_metrics if m in TASK_METRICS or m in manifest.get("metrics", FIDELITY_METRICS)]
    # several anchors (``plain,blur_tuned``): every claim beside every baseline, one table
    anchors = [a.strip() for a in anchor.split(",") if a.strip()]
    bd = [e for a in anchors
          for e in bd_table(rows, anchor=a, metrics=metrics, n_boot=n_boot, method=method, seed=seed, unit=unit)]
    results = {
        **manifest,
        "aggregation": AGGREGATION,
        "bd_rate_settings": {"anchor": anchor, "method": method, "n_boot": n_boot, "confidence": 0.95,
                             "seed": seed, "unit": unit, "non_monotonic": "monotone envelope (dominated points dropped)"},
        "reference": refs,
        "curves": curves,
        "fidelity_curves": fcurves,
        "bd_rate": bd,
    }
    table = format_table(bd, curves, refs)
    atomic_write_bytes(out / "results.json", json.dumps({**results, "rows": rows}, indent=1, allow_nan=True).encode())
    atomic_write_bytes(out / "rows.csv", _csv(rows))
    atomic_write_bytes(out / "curves.csv", _csv(curves))
    atomic_write_bytes(out / "bdrate.csv", _csv(bd))
    atomic_write_bytes(out / "table.md", table.encode())
    if plots:
        from .plots import plot_all

        results["plots"] = [p.name for p in plot_all(curves, fcurves, out)]
    results["table"] = table
    return results
