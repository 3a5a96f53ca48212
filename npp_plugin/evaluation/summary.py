"""The compact answer of an evaluation: one line per codec and variant.

For each (codec, variant) it gives the KL BD-rate against each anchor (``plain`` and
``blur_tuned``), with its 95 % interval, for each classifier named (the one the
preprocessors were tuned with and one they never saw), and the wall time per image of
filtering, encoding and decoding. The long table, with every metric and the per-QP points,
stays in ``table.md``; the interval warning is said once, in words, under the summary.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .results import resample_noted

__all__ = ["format_summary"]


def _cell(e: dict | None) -> tuple[str, bool, bool]:
    """``"−25.8 [−34.2, −6.3]"``; whether the point estimate carries an overlap warning;
    whether some resamples did."""
    if e is None or e.get("value") is None:
        return "n/a", False, False
    fmt = lambda v: "n/a" if v is None else f"{v:+.1f}".replace("-", "−")  # noqa: E731
    text = f"{fmt(e['value'])} [{fmt(e.get('ci_low'))}, {fmt(e.get('ci_high'))}]"
    own = any("overlap" in w and "resamples" not in w for w in e.get("warnings", ()))
    return text, own, resample_noted(e) > 0


def _qps(results: dict[str, Any]) -> list[int]:
    qps = results.get("qps", {})
    return sorted({int(q) for per in qps.values() for qs in per.values() for q in qs}) if isinstance(qps, dict) else []


def format_summary(
    results: dict[str, Any],
    *,
    tasks: Sequence[tuple[str, str]],
    anchors: Sequence[str] = ("plain", "blur_tuned"),
    metric: str = "kl",
    out: str | Path | None = None,
) -> str:
    """The summary text of an evaluation's ``results`` (as :func:`~.results.finalize` returns).

    Args:
        tasks: (task, label) pairs in column order, e.g. ``("mobilenet_v2", "tuned with")``;
            tasks the run lacks are left out.
        anchors: the anchor variants, compared within each codec.
        metric: the BD-rate metric ("kl": KL divergence to the uncompressed prediction).
        out: the run folder, to name the files holding the rest.
    """
    bd = {(e["task"], e["codec"], e["variant"], e["anchor"].split("/")[-1]): e
          for e in results.get("bd_rate", ()) if e["metric"] == metric}
    present = {t for t, *_ in bd}
    tasks = [(t, label) for t, label in tasks if t in present]
    times = {(t["codec"], t["variant"]): t["seconds_per_image"] for t in results.get("timing", ())}
    codecs = sorted({c for _, c, _, _ in bd})
    variants = list(dict.fromkeys(v for v in results.get("variants", {}) if v not in anchors[:1]))
    variants += sorted({v for _, _, v, _ in bd} - set(variants) - set(anchors[:1]))

    head = ["codec", "variant"] + [f"vs {a}" for _ in tasks for a in anchors] + ["ms/image"]
    rows, own_marks, noted, total = [], 0, 0, 0
    for codec in codecs:
        for variant in variants:
            cells = []
            for t, _ in tasks:
                for a in anchors:
                    if a == variant:
                        cells.append("—")
                        continue
                    text, own, resampled = _cell(bd.get((t, codec, variant, a)))
                    total += text != "n/a"
                    own_marks += own
                    noted += resampled
                    cells.append(text + (" ~" if own else "") + (" †" if resampled else ""))
            if all(c in ("n/a", "—") for c in cells):
                continue
            secs = times.get((codec, variant))
            rows.append([codec, variant, *cells, "n/a" if secs is None else f"{1000 * secs:.0f}"])
    if not rows:
        return f"no {metric} BD-rates in these results\n"

    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()  # noqa: E731
    # one heading over each task's columns
    group = ["", ""]
    for k, (t, label) in enumerate(tasks):
        span = sum(widths[2 + k * len(anchors) + j] for j in range(len(anchors))) + 2 * (len(anchors) - 1)
        group.append((f"{t} ({label})" if label else t).ljust(span)[: max(span, len(t))])
    gwidths = widths[:2] + [len(g) for g in group[2:]]
    group_line = "  ".join(c.ljust(w) for c, w in zip(group, gwidths, strict=True)).rstrip()
    counts = results.get("counts", {})
    n_img = counts.get("images", "?")
    n_src = counts.get("sources", "?")
    settings = results.get("bd_rate_settings", {})
    unit = "source photos" if settings.get("unit") == "source" else "images"
    text = [
        "KL BD-rate, % (negative: fewer bits for the same KL to the classifier's prediction on the "
        "uncompressed image)",
        f"[95 % bootstrap interval over {unit}, {settings.get('n_boot', '?')} resamples]; "
        f"{n_img} images from {n_src} photos; QPs {', '.join(str(q) for q in _qps(results))}",
        "",
        group_line,
        line(head),
        line(["-" * w for w in widths]),
        *(line(r) for r in rows),
        "",
        *textwrap.wrap("ms/image: wall time per image of a batch to filter, encode and decode, all QPs "
                       "averaged, on this machine, the codec's threads on every core.", 100),
    ]
    if noted or own_marks:
        words = []
        if own_marks:
            words.append(f"{own_marks} of {total} BD-rates (~) rest on curves that overlap less than "
                         "bjontegaard's 75 % minimum, so part of each is extrapolated")
        if noted:
            words.append(f"{noted} of {total} intervals (†) come from resamples some of which had that "
                         "problem, so they are rougher than their width says")
        text += textwrap.wrap("Read with care: " + "; ".join(words) + ". The per-QP points in table.md say it "
                              "more plainly.", 100)
    if out is not None:
        out = Path(out)
        plots = sorted(p.name for p in out.glob("rate_*.png"))
        text += ["", f"full table, every metric and the per-QP points: {out / 'table.md'}",
                 f"rows and curves: {out / 'rows.csv'}, {out / 'curves.csv'}, {out / 'bdrate.csv'}, "
                 f"{out / 'results.json'}"]
        if plots:
            text.append(f"plots: {', '.join(str(out / p) for p in plots)}")
    return "\n".join(text) + "\n"
