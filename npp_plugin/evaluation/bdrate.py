"""Bjøntegaard-delta rate with a paired bootstrap interval over images.

Curves are means over images per QP (rate = mean bpp, quality = mean score). The integral
itself comes from the ``bjontegaard`` package (pchip by default, akima on request, both
interpolating log-rate as a function of quality); its overlap warnings are captured and
returned, never lost on stderr.

Non-monotonic curves. A rate–quality curve measured on a few hundred images can dip (a
higher QP scoring better by chance); the interpolation needs quality strictly increasing
with rate. We sort the points by rate and keep the *monotone envelope*: a point stays only
when its quality is strictly above every cheaper point's (the operational, Pareto-optimal
curve: a dominated point is one a user would never choose). Dropped points are reported.
Fewer than two points left gives NaN with a warning.

Confidence interval. The rows of anchor and test share their images, so we resample images
(or groups of images, e.g. all crops of one photo) with replacement, recompute both mean
curves on the same resample, and take the percentile interval of the BD-rates. Resamples
whose BD-rate is undefined are counted and left out; with fewer than half valid the interval
is NaN.

Sign: negative BD-rate = the test needs fewer bits than the anchor at equal quality.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError, ShapeError

__all__ = ["BdResult", "bd_quality", "bd_rate", "bd_rate_bootstrap", "bd_rate_bootstrap_weighted", "monotone_envelope"]

METHODS = ("pchip", "akima")


@dataclass
class BdResult:
    """A BD-rate (percent) with its bootstrap interval and what went into it."""

    value: float
    ci_low: float = math.nan
    ci_high: float = math.nan
    confidence: float = 0.95
    method: str = "pchip"
    n_images: int = 0
    n_boot: int = 0
    n_boot_valid: int = 0
    dropped_anchor: list[int] = field(default_factory=list)
    dropped_test: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def includes_zero(self) -> bool | None:
        """Whether the interval contains 0 (no significant difference); None without one."""
        if math.isnan(self.ci_low) or math.isnan(self.ci_high):
            return None
        return self.ci_low <= 0.0 <= self.ci_high

    def as_dict(self) -> dict:
        d = asdict(self)
        d["includes_zero"] = self.includes_zero
        return d


def _check_method(method: str) -> str:
    if method not in METHODS:
        msg = f"BD-rate: interpolation method {method!r} is not supported; choose {' | '.join(METHODS)}"
        raise InvalidArgumentError(msg, argument="method", allowed=METHODS)
    return method


def monotone_envelope(rate: Sequence[float], quality: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points sorted by rate, keeping those strictly better than every cheaper point.

    Returns:
        ``(rate, quality, dropped)``: the kept points (quality strictly increasing with
        rate) and the indices (into the input) of the dropped ones. Non-finite points are
        dropped too.
    """
    r = np.asarray(rate, dtype=np.float64)
    q = np.asarray(quality, dtype=np.float64)
    if r.shape != q.shape or r.ndim != 1:
        msg = f"monotone_envelope: rate and quality must be 1-D of equal length, got {r.shape} and {q.shape}"
        raise ShapeError(msg, actual_shape=q.shape, expected_shape=str(r.shape), argument="quality")
    order = np.argsort(r, kind="stable")
    keep, dropped, best = [], [], -math.inf
    for i in order:
        if math.isfinite(r[i]) and math.isfinite(q[i]) and r[i] > 0 and q[i] > best:
            keep.append(i)
            best = q[i]
        else:
            dropped.append(i)
    keep_a = np.asarray(keep, dtype=int)
    return r[keep_a], q[keep_a], np.asarray(sorted(dropped), dtype=int)


def _bd(fn_name: str, ra, qa, rt, qt, method: str, min_overlap: float) -> tuple[float, list[str], np.ndarray, np.ndarray]:
    import bjontegaard

    ra2, qa2, da = monotone_envelope(ra, qa)
    rt2, qt2, dt = monotone_envelope(rt, qt)
    notes = []
    if len(da):
        notes.append(f"anchor: dropped {len(da)} non-monotonic point(s)")
    if len(dt):
        notes.append(f"test: dropped {len(dt)} non-monotonic point(s)")
    if len(ra2) < 2 or len(rt2) < 2:
        notes.append("fewer than 2 monotonic points: BD undefined")
        return math.nan, notes, da, dt
    fn = getattr(bjontegaard, fn_name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = float(fn(ra2, qa2, rt2, qt2, method=method, require_matching_points=False, min_overlap=min_overlap))
        except (ValueError, ZeroDivisionError) as exc:
            notes.append(f"bjontegaard failed: {exc}")
            value = math.nan
    notes.extend(str(w.message) for w in caught)
    return value, notes, da, dt


def bd_rate(
    rate_anchor: Sequence[float],
    quality_anchor: Sequence[float],
    rate_test: Sequence[float],
    quality_test: Sequence[float],
    *,
    method: str = "pchip",
    min_overlap: float = 0.75,
) -> tuple[float, list[str]]:
    """BD-rate in percent of test against anchor (negative = fewer bits), with the notes
    (overlap warnings, dropped points). Higher quality must mean better: pass −KL, not KL."""
    value, notes, _, _ = _bd("bd_rate", rate_anchor, quality_anchor, rate_test, quality_test, _check_method(method), min_overlap)
    return value, notes


def bd_quality(
    rate_anchor: Sequence[float],
    quality_anchor: Sequence[float],
    rate_test: Sequence[float],
    quality_test: Sequence[float],
    *,
    method: str = "pchip",
    min_overlap: float = 0.75,
) -> tuple[float, list[str]]:
    """Mean quality difference at equal rate (BD-PSNR generalised), with notes."""
    value, notes, _, _ = _bd("bd_psnr", rate_anchor, quality_anchor, rate_test, quality_test, _check_method(method), min_overlap)
    return value, notes


def _group_sums(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    out = np.zeros((groups.max() + 1, values.shape[1]))
    np.add.at(out, groups, values)
    return out


def _group_ids(groups, n: int, *, who: str) -> np.ndarray:
    """Bootstrap unit per image: 0..G-1 from the group labels (each image its own by default)."""
    if groups is None:
        return np.arange(n)
    if len(groups) != n:
        msg = f"{who}: {len(groups)} group labels for {n} images"
        raise ShapeError(msg, actual_shape=(len(groups),), expected_shape=f"({n},)", argument="groups")
    return np.unique(np.asarray(groups), return_inverse=True)[1]


def bd_rate_bootstrap(
    rate_anchor: np.ndarray,
    quality_anchor: np.ndarray,
    rate_test: np.ndarray,
    quality_test: np.ndarray,
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    method: str = "pchip",
    min_overlap: float = 0.75,
    groups: Sequence | None = None,
    seed: int = 0,
) -> BdResult:
    """BD-rate of the mean curves with a paired percentile bootstrap interval.

    Args:
        rate_anchor, quality_anchor: (n_images, k_anchor) per-image bpp and quality, one
            column per QP of the anchor.
        rate_test, quality_test: (n_images, k_test), the same images in the same row order.
        n_boot: bootstrap resamples (0: no interval).
        confidence: interval coverage, e.g. 0.95.
        method: "pchip" or "akima".
        min_overlap: below this relative overlap of the quality ranges ``bjontegaard`` warns.
        groups: optional group label per image (e.g. the source photo); resampling then
            draws whole groups (a cluster bootstrap), for images that are not independent.
        seed: seed of the resampling.

    Returns:
        A :class:`BdResult`.

    Raises:
        ShapeError: when the arrays do not line up.
        InvalidArgumentError: for an unknown method or a bad ``n_boot``/``confidence``.
    """
    method = _check_method(method)
    arrays = [np.asarray(a, dtype=np.float64) for a in (rate_anchor, quality_anchor, rate_test, quality_test)]
    ra, qa, rt, qt = arrays
    if ra.ndim != 2 or ra.shape != qa.shape or rt.shape != qt.shape or rt.ndim != 2 or ra.shape[0] != rt.shape[0]:
        msg = (
            "bd_rate_bootstrap: expected (n_images, k) arrays with the same images for anchor and test, "
            f"got {ra.shape}, {qa.shape}, {rt.shape}, {qt.shape}"
        )
        raise ShapeError(msg, actual_shape=rt.shape, expected_shape="(n_images, k)", argument="rate_test")
    _check_boot("bd_rate_bootstrap", n_boot, confidence)
    n = ra.shape[0]
    if n == 0:
        msg = "bd_rate_bootstrap: no images shared by anchor and test"
        raise InvalidArgumentError(msg, argument="images", allowed=">= 1 image")

    value, notes, da, dt = _bd("bd_rate", ra.mean(0), qa.mean(0), rt.mean(0), qt.mean(0), method, min_overlap)
    kq = ra.shape[1]
    result = BdResult(
        value=value, confidence=confidence, method=method, n_images=n, n_boot=n_boot,
        dropped_anchor=[int(x) for x in da], dropped_test=[int(x) for x in dt], warnings=notes,
    )
    if n_boot == 0 or n < 2:
        return result

    # Resample groups: the mean over a resample = (sum of the drawn groups' sums) / (their counts).
    gid = _group_ids(groups, n, who="bd_rate_bootstrap")
    sums = _group_sums(np.concatenate([ra, qa, rt, qt], axis=1), gid)
    counts = np.bincount(gid).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(counts), size=(n_boot, len(counts)))
    means = sums[draws].sum(1) / counts[draws].sum(1, keepdims=True)
    values, boot_notes = [], 0
    for m in means:
        v, nb, _, _ = _bd("bd_rate", m[:kq], m[kq : 2 * kq], m[2 * kq : 2 * kq + rt.shape[1]], m[2 * kq + rt.shape[1] :], method, min_overlap)
        boot_notes += bool(nb)
        if math.isfinite(v):
            values.append(v)
    _set_interval(result, values, boot_notes)
    return result


def bd_rate_bootstrap_weighted(
    rate_anchor: np.ndarray,
    rate_test: np.ndarray,
    quality_anchor: Callable[[np.ndarray], np.ndarray],
    quality_test: Callable[[np.ndarray], np.ndarray],
    *,
    n_metrics: int = 1,
    n_boot: int = 1000,
    confidence: float = 0.95,
    method: str = "pchip",
    min_overlap: float = 0.75,
    groups: Sequence | None = None,
    seed: int = 0,
) -> list[BdResult]:
    """BD-rates with the paired bootstrap of :func:`bd_rate_bootstrap`, for qualities that
    are not means over images (dataset-level COCO mAP).

    Args:
        rate_anchor, rate_test: (n_images, k) per-image bpp, one column per QP; the rate of a
            curve point is the (weighted) mean over images.
        quality_anchor, quality_test: ``f(weights) -> (k, n_metrics)``, the curve's quality
            per QP (and metric) over the images drawn ``weights[i]`` times each (integers).
        n_metrics: how many metrics the quality functions return (one result each).
        Others: as :func:`bd_rate_bootstrap` (the same draws for the same seed and groups).

    Returns:
        One :class:`BdResult` per metric.
    """
    method = _check_method(method)
    ra, rt = (np.asarray(a, dtype=np.float64) for a in (rate_anchor, rate_test))
    if ra.ndim != 2 or rt.ndim != 2 or ra.shape[0] != rt.shape[0] or ra.shape[0] == 0:
        msg = f"bd_rate_bootstrap_weighted: expected (n_images, k) rates for the same images, got {ra.shape} and {rt.shape}"
        raise ShapeError(msg, actual_shape=rt.shape, expected_shape="(n_images, k)", argument="rate_test")
    _check_boot("bd_rate_bootstrap_weighted", n_boot, confidence)
    n = ra.shape[0]

    def curves(w: np.ndarray):
        qa = np.asarray(quality_anchor(w), dtype=np.float64).reshape(ra.shape[1], n_metrics)
        qt = np.asarray(quality_test(w), dtype=np.float64).reshape(rt.shape[1], n_metrics)
        return (w @ ra) / w.sum(), qa, (w @ rt) / w.sum(), qt

    mra, mqa, mrt, mqt = curves(np.ones(n, dtype=int))
    results = []
    for m in range(n_metrics):
        value, notes, da, dt = _bd("bd_rate", mra, mqa[:, m], mrt, mqt[:, m], method, min_overlap)
        results.append(BdResult(value=value, confidence=confidence, method=method, n_images=n, n_boot=n_boot,
                                dropped_anchor=[int(x) for x in da], dropped_test=[int(x) for x in dt], warnings=notes))
    if n_boot == 0 or n < 2:
        return results
    gid = _group_ids(groups, n, who="bd_rate_bootstrap_weighted")
    n_groups = int(gid.max()) + 1
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_groups, size=(n_boot, n_groups))
    values: list[list[float]] = [[] for _ in range(n_metrics)]
    noted = [0] * n_metrics
    for d in draws:
        w = np.bincount(d, minlength=n_groups)[gid]
        bra, bqa, brt, bqt = curves(w)
        for m in range(n_metrics):
            v, nb, _, _ = _bd("bd_rate", bra, bqa[:, m], brt, bqt[:, m], method, min_overlap)
            noted[m] += bool(nb)
            if math.isfinite(v):
                values[m].append(v)
    for res, vals, nb in zip(results, values, noted, strict=True):
        _set_interval(res, vals, nb)
    return results


def _check_boot(who: str, n_boot: Any, confidence: Any) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 0:
        msg = f"{who}: n_boot must be an integer >= 0, got {n_boot!r}"
        raise InvalidArgumentError(msg, argument="n_boot", allowed=">= 0")
    if not 0 < confidence < 1:
        msg = f"{who}: confidence must be in (0, 1), got {confidence!r}"
        raise InvalidArgumentError(msg, argument="confidence", allowed="(0, 1)")


def _set_interval(result: BdResult, values: list[float], noted: int) -> None:
    """The percentile interval of the finite resampled ``values`` (none when fewer than half
    the resamples gave one), with a warning for ``noted`` resamples that needed care."""
    result.n_boot_valid = len(values)
    if noted:
        result.warnings.append(f"{noted}/{result.n_boot} bootstrap resamples had overlap warnings or dropped points")
    if len(values) >= result.n_boot / 2:
        alpha = (1.0 - result.confidence) / 2.0
        result.ci_low, result.ci_high = (float(x) for x in np.quantile(values, [alpha, 1.0 - alpha]))
    else:
        result.warnings.append(f"only {len(values)}/{result.n_boot} resamples gave a BD-rate: no interval")
