"""Operating range: the QPs where preprocessing can matter.

At very low QPs the task network does not notice compression (score ≈ uncompressed) and at
very high QPs it fails whatever the preprocessing; savings are measured in between. For one
codec and one task network we measure the plain codec's mean task score on a QP grid over a
subset of the images, divide by the uncompressed score, make the ratio non-increasing in QP
(a running minimum: noise must not reopen the window), and keep the QPs whose ratio lies in
[lo, hi] (default 50 %–95 %). ``n_qps`` integer QPs are spread evenly across that range.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..codec import Codec
from ..errors import InvalidArgumentError
from ..images import uint8_to_tensor_batch
from ..tasks import Task
from .inputs import EvalImage, select_evenly
from .sweep import SweepSpec, _targets

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["PAPER_LAMBDAS", "Calibration", "calibrate", "calibrate_lambdas", "choose_qps", "default_grid", "paper_lambda",
           "task_lambdas"]


@dataclass
class Calibration:
    """The measured score curve and the QPs chosen from it."""

    codec: str
    task: str
    grid: list[int]
    scores: list[float]
    reference: float
    ratio: list[float]
    qps: list[int]
    lo: float
    hi: float
    n_images: int
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_grid(codec: Codec, step: int = 3) -> list[int]:
    lo, hi = codec.qp_range
    grid = list(range(lo, hi + 1, step))
    if grid[-1] != hi:
        grid.append(hi)
    return grid


def choose_qps(grid: Sequence[int], ratio: Sequence[float], *, lo: float, hi: float, n_qps: int) -> tuple[list[int], list[str]]:
    """QPs spread over the part of ``grid`` where the (monotonised) ratio is in [lo, hi]."""
    if not 0 < lo < hi <= 1.5:
        msg = f"calibration: range must satisfy 0 < lo < hi, got lo={lo}, hi={hi}"
        raise InvalidArgumentError(msg, argument="calibration_range", allowed="0 < lo < hi")
    if n_qps < 2:
        msg = f"calibration: n_qps must be >= 2 (a curve needs two points), got {n_qps}"
        raise InvalidArgumentError(msg, argument="n_qps", allowed=">= 2")
    g = np.asarray(grid)
    r = np.minimum.accumulate(np.asarray(ratio, dtype=np.float64))
    notes = []
    below_hi = np.nonzero(r <= hi)[0]
    above_lo = np.nonzero(r >= lo)[0]
    if len(below_hi) == 0:
        notes.append(f"score never fell to {hi:.0%} of uncompressed: using the highest QPs")
        first, last = max(0, len(g) - n_qps), len(g) - 1
    elif len(above_lo) == 0:
        notes.append(f"score below {lo:.0%} of uncompressed at every QP: using the lowest QPs")
        first, last = 0, min(len(g) - 1, n_qps - 1)
    else:
        first, last = int(below_hi[0]), int(above_lo[-1])
        if first == 0:
            notes.append(f"score is at or below {hi:.0%} of uncompressed already at QP {g[0]}: the range starts there")
        if last < first:  # the whole window falls between two grid points
            first, last = last, first
            notes.append("the 50–95 % window lies between two grid points: QPs interpolated between them")
    qps = sorted({int(round(q)) for q in np.linspace(g[first], g[last], n_qps)})
    if len(qps) < n_qps:
        notes.append(f"range {g[first]}..{g[last]} holds only {len(qps)} distinct QPs")
    return qps, notes


def calibrate(
    images: Sequence[EvalImage],
    codec: Codec,
    task: Task,
    *,
    codec_label: str | None = None,
    task_label: str | None = None,
    grid: Sequence[int] | None = None,
    lo: float = 0.5,
    hi: float = 0.95,
    n_qps: int = 5,
    max_images: int = 32,
    labels: Mapping[str, int] | None = None,
    batch_size: int = 16,
    workers: int | None = None,
) -> Calibration:
    """Find the operating range of ``codec`` for ``task`` on (a subset of) ``images``.

    Returns:
        A :class:`Calibration` whose ``qps`` are the QPs to evaluate.
    """
    import torch

    grid = [codec.validate_qp(q) for q in (grid or default_grid(codec))]
    subset = select_evenly(images, max_images)
    spec = SweepSpec({}, {}, {"t": task}, {}, labels=labels)
    sums = np.zeros(len(grid))
    ref_sum, n = 0.0, 0
    for start in range(0, len(subset), batch_size):
        batch = subset[start : start + batch_size]
        pixels = [img.load() for img in batch]
        if len({p.shape for p in pixels}) != 1:  # whole files of mixed sizes: one at a time
            groups = [([b], [p]) for b, p in zip(batch, pixels, strict=True)]
        else:
            groups = [(batch, pixels)]
        for items, pix in groups:
            x = uint8_to_tensor_batch(np.stack(pix))
            with torch.inference_mode():
                target = _targets(spec, items, {"t": task.reference(x)})["t"]
                ref_scores = task.score(x, target).double()
                # images the task cannot judge (NaN, e.g. no person) are left out
                usable = torch.isfinite(ref_scores)
                ref_sum += float(ref_scores[usable].sum())
            for j, qp in enumerate(grid):
                recon, _bits = codec.roundtrip(x, qp=qp, workers=workers)
                with torch.inference_mode():
                    sums[j] += float(task.score(recon, target).double()[usable].nan_to_num(0.0).sum())
            n += int(usable.sum())
    notes = []
    if n == 0:
        msg = (f"calibration: task {task_label or task.name!r} could judge none of the {len(subset)} calibration "
               "images (e.g. no person in them); give --qps, or images the task applies to")
        raise InvalidArgumentError(msg, argument="qps", allowed="a QP list, or usable images")
    scores = sums / n
    reference = ref_sum / n
    if reference <= 0:
        notes.append("uncompressed score is 0: ratio undefined, using the whole grid")
        ratio = np.ones(len(grid))
    else:
        ratio = scores / reference
    qps, more = choose_qps(grid, ratio, lo=lo, hi=hi, n_qps=n_qps)
    return Calibration(
        codec=codec_label or codec.name, task=task_label or task.name, grid=list(grid),
        scores=[float(s) for s in scores], reference=float(reference), ratio=[float(r) for r in ratio],
        qps=qps, lo=lo, hi=hi, n_images=n, notes=notes + more,
    )


def task_lambdas(
    codec: Codec,
    task: Task,
    images: Sequence[Any],
    qps: Sequence[int],
    *,
    delta: int = 3,
    workers: int | None = None,
) -> dict[int, float]:
    """λ per QP for ``task``: the plain codec's local rate–task slope on ``images``.

    The same calibration as NPP training's (:func:`calibrate_lambdas`,
    ``−ΔR/ΔD`` over qp ± ``delta``) with the task's loss against its own outputs on the
    uncompressed images, so ``npp_refine`` can weigh any trainable task, e.g.
    ``get_preprocessor("npp_refine", task="centernet", lambdas=task_lambdas(codec, task, imgs, [28, 34, 41]))``.

    Args:
        images: (N, 3, H, W) float tensors in [0, 1], or :class:`EvalImage` (same size each).

    Returns:
        ``{qp: λ}``; where the loss does not rise with QP on these images the paper's λ is used.
    """
    import torch

    from ..tasks import require_trainable

    require_trainable(task, who="task_lambdas")
    batches = []
    for img in images:
        x = uint8_to_tensor_batch(np.stack([img.load()])) if isinstance(img, EvalImage) else img
        with torch.no_grad():
            batches.append((x, task.reference(x)))
    table = calibrate_lambdas(codec, task, batches, list(qps), delta=delta, workers=workers)
    return {qp: row["lmbda"] for qp, row in table.items()}


#: the paper's QP → λ pairs (BPG)
PAPER_LAMBDAS: dict[int, float] = {28: 0.5, 31: 1.0, 34: 2.0, 37: 4.0, 41: 8.0}


def paper_lambda(qp: int) -> float:
    """The paper's λ, log-linearly interpolated in QP (λ doubles about every 3 QP)."""
    qps = sorted(PAPER_LAMBDAS)
    if qp <= qps[0]:
        lo, hi = qps[0], qps[1]
    elif qp >= qps[-1]:
        lo, hi = qps[-2], qps[-1]
    else:
        lo = max(q for q in qps if q <= qp)
        hi = min(q for q in qps if q > qp) if qp != lo else lo
        if hi == lo:
            return PAPER_LAMBDAS[lo]
    t = (qp - lo) / (hi - lo)
    return float(math.exp((1 - t) * math.log(PAPER_LAMBDAS[lo]) + t * math.log(PAPER_LAMBDAS[hi])))


def calibrate_lambdas(
    codec: Any,
    task: Any,
    batches: Iterable[tuple[torch.Tensor, Any]],
    qps: Sequence[int],
    *,
    delta: int = 3,
    workers: int | None = None,
    progress: Callable[[int, int], Any] | None = None,
) -> dict[int, dict[str, float]]:
    """λ per QP from the plain codec's local rate–task slope, ``−ΔR/ΔD`` over qp ± ``delta``.

    Args:
        batches: ``(x, target)`` pairs (target = labels, annotations or a task reference).
        progress: called after each batch's round trip with (images coded, images to code).

    Returns:
        ``{qp: {"lmbda", "bpp", "task", "slope_ok"}}``; where the task loss does not rise
        with QP on these batches (too few images), ``slope_ok`` is False and the paper's λ
        is used instead.
    """
    import torch

    batches = list(batches)
    lo, hi = codec.qp_range
    wanted = sorted({q for qp in qps for q in (max(lo, qp - delta), qp, min(hi, qp + delta))})
    rate: dict[int, float] = {}
    dist: dict[int, float] = {}
    total, done = len(wanted) * sum(x.shape[0] for x, _ in batches), 0
    for q in wanted:
        bits = pixels = loss = 0.0
        n = 0
        for x, target in batches:
            with torch.no_grad():
                recon, b = codec.roundtrip(x, qp=q, workers=workers)
                loss += float(task.loss(recon, target, reduction="sum"))
            bits += float(b.sum())
            pixels += x.shape[0] * x.shape[2] * x.shape[3]
            n += x.shape[0]
            done += x.shape[0]
            if progress is not None:
                progress(done, total)
        rate[q], dist[q] = bits / pixels, loss / max(n, 1)
    out = {}
    for qp in qps:
        a, b = max(lo, qp - delta), min(hi, qp + delta)
        d_rate, d_dist = rate[a] - rate[b], dist[b] - dist[a]
        ok = d_rate > 0 and d_dist > 1e-6
        lmbda = d_rate / d_dist if ok else paper_lambda(qp)
        out[int(qp)] = {"lmbda": float(lmbda), "bpp": rate[qp], "task": dist[qp], "slope_ok": bool(ok)}
    return out
