"""The transfer table: every task's BD-rate of every preprocessor, against one or more anchors.

One row per (task, metric, codec, variant), one column per anchor (e.g. plain BPG and the
tuned blur), each cell the BD-rate with its 95 % bootstrap interval. A cell whose interval is
wider than ±``max_half_width`` percentage points (or has none), or that rests on fewer than
``MIN_IMAGES`` images (a percentile bootstrap over a handful of images understates its own
uncertainty), says so instead of giving a number: the value would mean nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["MAX_HALF_WIDTH", "MIN_IMAGES", "TABLE_METRICS", "cell", "metric_name", "transfer_rows", "transfer_table"]

#: Widest 95 % interval (half-width, percentage points) for which a BD-rate is printed.
MAX_HALF_WIDTH = 10.0
#: Fewest usable images for which a BD-rate is printed.
MIN_IMAGES = 10
#: Task metrics the table shows (KL and the human-vision metrics stay in table.md).
TABLE_METRICS = ("score", "pck", "map", "ap50")
_NAMES = {
    ("classification", "score"): "top-1 agreement",
    ("detection", "score"): "AP50 per image",
    ("segmentation", "score"): "mask IoU",
    ("pose", "score"): "OKS",
    ("pose", "pck"): "PCK@0.05",
    ("features", "score"): "feature fidelity",
}


def metric_name(kind: str, metric: str, *, labels: bool = False) -> str:
    """What ``metric`` measures for a task of ``kind`` (``labels``: scored against labels)."""
    if metric == "map":
        return "mAP@[.5:.95]"
    if metric == "ap50":
        return "AP50"
    if (kind, metric) == ("classification", "score") and labels:
        return "top-1 accuracy"
    return _NAMES.get((kind, metric), metric)


def _half_width(e: Mapping[str, Any]) -> float:
    lo, hi = e.get("ci_low"), e.get("ci_high")
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return math.nan
    return (hi - lo) / 2.0


def cell(e: Mapping[str, Any] | None, max_half_width: float = MAX_HALF_WIDTH) -> str:
    """One table cell: the BD-rate and interval, or why there is no number."""
    if e is None:
        return "—"
    value, n = e.get("value"), e.get("n_images")
    if value is None or not math.isfinite(value):
        why = next(("curves do not overlap" if "do not overlap" in w else w.split(":")[0]
                    for w in e.get("warnings", []) if "BD undefined" in w or "overlap" in w), "BD-rate undefined")
        return f"n/a: {why} ({n} images)"
    half = _half_width(e)
    if n is not None and n < MIN_IMAGES:
        return f"too few usable images ({n} < {MIN_IMAGES})"
    if not math.isfinite(half):
        return f"too few usable images ({n}): no interval"
    if half > max_half_width:
        return f"too few usable images ({n}): 95 % CI ±{half:.1f} % > ±{max_half_width:g} %"
    return f"{value:+.1f} % [{e['ci_low']:+.1f}, {e['ci_high']:+.1f}]"


def transfer_rows(
    bd_by_anchor: Mapping[str, Sequence[Mapping[str, Any]]],
    kinds: Mapping[str, str],
    *,
    labels: bool = False,
    max_half_width: float = MAX_HALF_WIDTH,
) -> list[dict[str, Any]]:
    """The table as dicts: task, kind, metric, codec, variant, images, and per anchor the
    BD-rate entry's value, interval and cell text (``None`` entries where not computed).
    With anchors ``plain, blur_tuned`` the rows are ``blur_tuned`` (against plain) and the
    other variants (against both); ``plain`` against ``blur_tuned`` would only repeat the
    first row inverted.

    Args:
        bd_by_anchor: anchor label → BD-rate entries (:func:`~.results.bd_table`).
        kinds: task label → task kind.
        labels: the classifiers were scored against class labels.
    """
    index: dict[tuple, dict[str, Mapping[str, Any]]] = {}
    order_of = {a.split("/")[-1]: i for i, a in enumerate(bd_by_anchor)}
    for j, (anchor, entries) in enumerate(bd_by_anchor.items()):
        for e in entries:
            # an earlier anchor against a later one is the inverse of a row already there
            earlier = order_of.get(e["variant"], len(order_of)) < j
            if e["metric"] in TABLE_METRICS and e["task"] in kinds and not earlier:
                index.setdefault((e["task"], e["metric"], e["codec"], e["variant"]), {})[anchor] = e
    order = {m: i for i, m in enumerate(TABLE_METRICS)}
    rows = []
    for (task, metric, codec, variant) in sorted(index, key=lambda k: (k[0], order[k[1]], k[2], k[3])):
        per = index[(task, metric, codec, variant)]
        row: dict[str, Any] = {"task": task, "kind": kinds[task], "metric": metric,
                               "measure": metric_name(kinds[task], metric, labels=labels),
                               "codec": codec, "variant": variant,
                               "images": max(int(e.get("n_images", 0)) for e in per.values())}
        for anchor in bd_by_anchor:
            e = per.get(anchor)
            row[anchor] = None if e is None else {
                "value": e.get("value"), "ci_low": e.get("ci_low"), "ci_high": e.get("ci_high"),
                "n_images": e.get("n_images"), "cell": cell(e, max_half_width)}
        rows.append(row)
    return rows


def transfer_table(rows: Sequence[Mapping[str, Any]], anchors: Sequence[str],
                   max_half_width: float = MAX_HALF_WIDTH) -> str:
    """Markdown of :func:`transfer_rows`: BD-rate % [95 % CI] against each anchor."""
    head = "| task | measure | codec | variant | images | " + " | ".join(f"vs {a}" for a in anchors) + " |"
    lines = [head, "| --- | --- | --- | --- | ---: | " + " | ".join("---" for _ in anchors) + " |"]
    for r in rows:
        cells = [("—" if r.get(a) is None else r[a]["cell"]) for a in anchors]
        lines.append(f"| {r['task']} | {r['measure']} | {r['codec']} | {r['variant']} | {r['images']} | "
                     + " | ".join(cells) + " |")
    lines += ["", f"BD-rate % (negative: fewer bits at equal task quality) [95 % bootstrap interval]; "
              f"no number where the interval is wider than ±{max_half_width:g} % or rests on fewer than "
              f"{MIN_IMAGES} images."]
    return "\n".join(lines) + "\n"
