"""``npp demo``: every installed codec on the built-in photos, at several QPs.

Prints a table of mean bits per pixel and RGB PSNR per codec and QP over 256² centre crops
of the photos that installed packages ship (:mod:`npp_plugin.datasets`).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence

import numpy as np

from .datasets import builtin_photos, load_rgb
from .errors import NppError
from .registry import available_codecs, get_codec


def centre_crop(rgb: np.ndarray, size: int) -> np.ndarray | None:
    h, w = rgb.shape[:2]
    if h < size or w < size:
        return None
    y, x = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(rgb[y : y + size, x : x + size])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def run(codecs: Sequence[str], qps: Sequence[int], size: int, limit: int | None, progress: bool = True) -> list[dict]:
    from tqdm import tqdm

    crops = [c for c in (centre_crop(load_rgb(p), size) for p in builtin_photos()) if c is not None]
    if limit:
        crops = crops[:limit]
    if not crops:
        msg = "no built-in photos found: install scikit-image / scikit-learn / matplotlib (make demo does)"
        raise NppError(msg)
    rows = []
    jobs = [(c, q) for c in codecs for q in qps]
    for name, qp in tqdm(jobs, desc="codecs x QPs", disable=not progress):
        codec = get_codec(name)
        lo, hi = codec.qp_range
        qp_c = min(max(qp, lo), hi)
        streams = codec.encode_batch(crops, qp=qp_c)
        recon = codec._map(codec.decode, streams, None)
        bpp = [8 * len(s) / (size * size) for s in streams]
        ps = [psnr(a, b) for a, b in zip(crops, recon)]
        rows.append({"codec": name, "qp": qp_c, "images": len(crops), "bpp": float(np.mean(bpp)),
                     "psnr": float(np.mean(ps))})
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [f"{'codec':<8}{'qp':>4}{'images':>8}{'bpp':>9}{'PSNR dB':>9}"]
    for r in rows:
        lines.append(f"{r['codec']:<8}{r['qp']:>4}{r['images']:>8}{r['bpp']:>9.4f}{r['psnr']:>9.2f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="npp demo", description=__doc__.splitlines()[0])
    parser.add_argument("--codecs", default=None, help="comma-separated (default: every available codec)")
    parser.add_argument("--qps", default="28,34,41", help="comma-separated QPs (default 28,34,41)")
    parser.add_argument("--size", type=int, default=256, help="crop size (default 256)")
    parser.add_argument("--limit", type=int, default=None, help="use at most this many photos")
    args = parser.parse_args(argv)
    from .registry import codec_registry

    reg = codec_registry()
    names = args.codecs.split(",") if args.codecs else [n for n in available_codecs() if reg.get(n).is_available()]
    qps = [int(q) for q in args.qps.split(",")]
    rows = run(names, qps, args.size, args.limit, progress=sys.stderr.isatty())
    print(format_table(rows))
    return 0
