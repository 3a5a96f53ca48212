"""The NPP training objective and its calibration.

    L = R + λ(qp) · D_task + β · F(x, x̄)

* ``R``: bits per pixel of the real bitstream (values; gradients from the proxy).
* ``D_task``: the frozen task's own loss on the decoded image.
* ``λ(qp)``: by default calibrated per QP to the *plain* codec's local slope
  ``λ = −ΔR / ΔD`` (bpp per unit of task loss, measured between qp − δ and qp + δ before
  training). At that λ the plain codec's operating point is stationary: sliding along the
  codec's own rate–task curve (what a first CPU experiment here learned) gains nothing to
  first order, so the loss only falls if the filter moves the curve. The paper's fixed table
  (QP 28/31/34/37/41 → 0.5/1/2/4/8) is available as ``lambda_mode="paper"``.
* ``F``: a fidelity term that binds in the [0, 1] pixel range. A plain ``β·MSE`` is ~3e-4 there
  (β = 0.5 does nothing; the filter drifted to a global colour shift). Instead:

      F = relu(MSE(x, x̄) / m − 1) + ‖mean_hw(x̄ − x)‖² / m,   m = 10^(−psnr_floor / 10)

  The first part is zero while PSNR(x, x̄) ≥ ``psnr_floor`` (the filter may remove what the
  task does not need) and grows linearly in MSE beyond it; the second penalises the per-
  channel mean shift (colour cast) in the same units, so a shift of one floor-RMS costs β.
  Both are ~1 at the scale that matters, so β ≈ 1 is comparable to R. The choice is recorded
  in the weights' metadata (:func:`fidelity_spec`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..errors import InvalidArgumentError

# the λ slope is codec-and-task calibration, shared with npp_refine and evaluation
from ..evaluation.calibrate import PAPER_LAMBDAS, calibrate_lambdas, paper_lambda

__all__ = [
    "PAPER_LAMBDAS",
    "calibrate_lambdas",
    "fidelity_loss",
    "fidelity_spec",
    "npp_loss",
    "paper_lambda",
]

def fidelity_spec(psnr_floor: float, beta: float) -> dict[str, Any]:
    """What goes into the weights' metadata to describe the fidelity term."""
    return {
        "kind": "psnr_floor_hinge+colour_mean",
        "formula": "beta*(relu(mse/m-1) + |mean_hw(xbar-x)|^2/m), m=10^(-psnr_floor/10), pixels in [0,1]",
        "psnr_floor_db": float(psnr_floor),
        "beta": float(beta),
    }


def fidelity_loss(x: torch.Tensor, x_bar: torch.Tensor, *, psnr_floor: float = 30.0) -> torch.Tensor:
    """Per-image fidelity penalty F (N,) of the filtered ``x_bar`` against ``x`` (see module doc)."""
    if x.shape != x_bar.shape:
        msg = f"fidelity_loss: shapes differ: {tuple(x.shape)} vs {tuple(x_bar.shape)}"
        raise InvalidArgumentError(msg, argument="x_bar", allowed=str(tuple(x.shape)))
    m = 10.0 ** (-psnr_floor / 10.0)
    diff = x_bar - x
    mse = diff.pow(2).flatten(1).mean(dim=1)
    cast = diff.mean(dim=(2, 3)).pow(2).sum(dim=1)
    return F.relu(mse / m - 1.0) + cast / m


def npp_loss(
    bpp: torch.Tensor, task: torch.Tensor, fidelity: torch.Tensor, *, lmbda: float, beta: float
) -> dict[str, torch.Tensor]:
    """``{"loss", "bpp", "task", "fidelity"}`` (batch means) of the NPP objective."""
    terms = {"bpp": bpp.mean(), "task": task.mean(), "fidelity": fidelity.mean()}
    terms["loss"] = terms["bpp"] + lmbda * terms["task"] + beta * terms["fidelity"]
    return terms
