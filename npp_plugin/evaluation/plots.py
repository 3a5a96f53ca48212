"""Rate–accuracy and rate–fidelity plots (matplotlib, Agg backend, PNG).

One line per (codec, variant): colour by variant, line style by codec; error bars are
±1.96 standard errors of the per-QP mean (a 95 % interval of each point).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from ..fileio import atomic_write_bytes

__all__ = ["plot_all", "plot_curves"]

_LABELS = {
    "score": "task score (top-1 agreement / accuracy / AP / IoU / OKS)",
    "kl": "KL to uncompressed prediction (nats)",
    "pck": "PCK@0.05",
    "map": "mAP@[.5:.95] (COCO)",
    "ap50": "AP50 (COCO)",
    "psnr": "PSNR (dB)",
    "ms_ssim": "MS-SSIM",
    "fsim": "FSIM",
}
_STYLES = ("-", "--", ":", "-.")


def plot_curves(points: Sequence[dict], metric: str, path: str | Path, *, title: str = "") -> Path | None:
    """Plot ``metric`` against bpp for every (codec, variant) in ``points``; None when empty."""
    import io

    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    lines: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for p in points:
        if p.get(metric) is not None and p.get("bpp") is not None:
            lines[(p["codec"], p["variant"])].append(p)
    if not lines:
        return None
    variants = sorted({v for _, v in lines})
    codecs = sorted({c for c, _ in lines})
    colours = dict(zip(variants, itertools.cycle([f"C{i}" for i in range(10)])))
    styles = dict(zip(codecs, itertools.cycle(_STYLES)))
    fig = Figure(figsize=(6.4, 4.8), dpi=100)
    ax = fig.add_subplot()
    for (codec, variant), pts in sorted(lines.items()):
        pts = sorted(pts, key=lambda p: p["bpp"])
        x = [p["bpp"] for p in pts]
        y = [p[metric] for p in pts]
        err = [1.96 * (p.get(f"{metric}_se") or 0.0) for p in pts]
        ax.errorbar(x, y, yerr=err, color=colours[variant], linestyle=styles[codec], marker="o", markersize=3,
                    capsize=2, label=f"{codec} {variant}")
    ax.set_xlabel("rate (bits per pixel)")
    ax.set_ylabel(_LABELS.get(metric, metric))
    ax.grid(True, alpha=0.3)
    ax.set_title(title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return atomic_write_bytes(path, buf.getvalue())


def plot_all(curves: Sequence[dict], fidelity_curves: Sequence[dict], out_dir: str | Path) -> list[Path]:
    """rate_<metric>_<task>.png per task (score, kl, and pck / map / ap50 where a task has
    them); rate_<metric>.png for fidelity."""
    out = Path(out_dir)
    written = []
    for task in sorted({c["task"] for c in curves}):
        pts = [c for c in curves if c["task"] == task]
        for metric in ("score", "kl", "pck", "map", "ap50"):
            p = plot_curves(pts, metric, out / f"rate_{metric}_{task}.png", title=f"{task}: rate–{metric}")
            if p is not None:
                written.append(p)
    for metric in ("psnr", "ms_ssim", "fsim"):
        p = plot_curves(fidelity_curves, metric, out / f"rate_{metric}.png", title=f"rate–{metric}")
        if p is not None:
            written.append(p)
    return written
