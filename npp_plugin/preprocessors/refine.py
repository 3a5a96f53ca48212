# SPDX-License-Identifier: GPL-2.0-or-later
"""The built-in plugin "npp_refine": a preprocessor's output refined at encode time for a
known task network.

    >>> codec = get_codec("bpg")
    >>> data = codec.encode(img, qp=34, preprocess="npp_refine")    # MobileNetV2, 4 steps
    >>> p = get_preprocessor("npp_refine", base="npp", steps=8)

A base preprocessor (default the tuned blur) filters the image; then a few Adam steps on its
pixels lower, for this image and the codec and QP it is about to be coded with,

    J = bits / pixel + λ(QP) · task loss(decoded, task(image))   (classifiers: the KL)

Forward values are the real codec's bits and reconstruction; gradients come from the analytic
surrogates (:func:`~npp_plugin.surrogates.surrogate_step`: squared-log rate model,
codec-masked Jacobian). Of the iterates, each image keeps the one with the lowest real J, the
base's output included, so for the codec it is given the result is never worse than the base
on that J (the codec is deterministic and the output is coded from the same float pixels).

Why at encode time: a network trained on the same gradients over the built-in training
photos did not learn these changes, while per image they lower the held-out J far below the
tuned blur's (docs/results.md, "npp_refine"). The price: the task network at the encoder, and per step a
real encode and decode and a backward pass through the task.

λ per QP is the plain codec's own rate–task slope from the shipped blur table (calibrated for
BPG and MobileNetV2, interpolated by ``codec.normalized_qp``); another task needs its own
``lambdas``, e.g. from :func:`npp_plugin.evaluation.calibrate.task_lambdas` (the same slope
for that task: ``npp_refine(task="centernet", lambdas=task_lambdas(codec, task, images, qps))``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import InvalidArgumentError
from ..hookspecs import hookimpl
from ..tasks import require_trainable
from .base import Preprocessor, resolve_preprocessor

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ..codec import Codec

__all__ = ["Refined", "TaskRefine", "npp_register_preprocessors", "refine_step_size"]

MAX_STEPS = 100
#: The task sees at most this many pixels (larger images are area-downscaled for it, aspect
#: kept): ImageNet classifiers look at about 224², and a backward pass through MobileNetV2 at
#: full resolution holds about 2 GB of activations per megapixel.
TASK_PIXELS = 1 << 18
INNER = ("same", "fast")


def refine_step_size(lr: float, codec: Codec, qp: int) -> float:
    """``lr`` (the step size at QP 34, HEVC scale) at ``qp``: ×2 every 6 QP, as the quantiser
    step grows (:meth:`TaskRefine.step_size`); also the scale of the refinement's change."""
    return lr * 2.0 ** ((51.0 * codec.normalized_qp(qp) - 34.0) / 6.0)


class Refined(NamedTuple):
    """What :meth:`TaskRefine.refine` returns: the kept images and, per image (float64, CPU),
    the real J, bits per pixel and task loss of the base's output and of the kept iterate."""

    images: torch.Tensor
    lam: float
    j_base: torch.Tensor
    j: torch.Tensor
    bpp_base: torch.Tensor
    bpp: torch.Tensor
    loss_base: torch.Tensor
    loss: torch.Tensor


def _integer(key: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        msg = f"preprocessor 'npp_refine': {key} must be an integer in [{lo}, {hi}], got {value!r}"
        raise InvalidArgumentError(msg, argument=key, allowed=f"[{lo}, {hi}]")
    return value


def _read_lambdas(path: str) -> Any:
    import json

    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError) as exc:
        msg = f"preprocessor 'npp_refine': lambdas file {path!r} cannot be read as JSON {{qp: λ}}: {exc}"
        raise InvalidArgumentError(msg, argument="lambdas", allowed="dict qp → λ > 0, one λ > 0, or a JSON file") from exc


class TaskRefine(Preprocessor):
    """``base``'s output refined per image by ``steps`` Adam steps on the real codec's J.

    Args:
        base: the preprocessor to start from (registered name or instance; None: the image
            itself); default ``"blur_tuned"`` (on the training photos, 4 steps from it reach a
            lower J than from the shipped NPP, and it costs no saliency pass).
        weights: an NPP weights file, to start from that NPP (``base="npp"``).
        task: the task network whose loss enters J (registered name or instance): any
            trainable task, e.g. a classifier (KL to its uncompressed prediction) or
            ``"centernet"`` (its soft CenterNet loss against the uncompressed outputs).
        steps: Adam steps per image, 1–100 (each: one real encode and decode, one backward
            pass through the task).
        inner: the codec setting inside the loop: ``"same"`` (the codec as given) or
            ``"fast"`` (its ``fast=True`` where it has that option, e.g. BPG's x265
            ultrafast; the final encode is always the codec as given).
        select: score the last iterate too and keep the iterate with the lowest J of the
            inner codec (the base's output included); False returns the last iterate
            unscored, one encode and one task pass cheaper.
        task_pixels: the task sees the decoded image area-downscaled to at most this many
            pixels (aspect kept; default 2¹⁸), as a classifier's own resize would: the task's
            cost and memory stop growing with the photo.
        lr: Adam's step size at QP 34 (HEVC scale), in [0, 1] pixel units, (0, 0.1]; at other
            QPs it follows the quantiser step, ×2 every 6 QP (:meth:`step_size`), since a
            change must outlive a coarser quantiser to reach the decoder.
        lambdas: ``{qp: λ}`` for the codec family the table was made for (interpolated by
            normalised QP), or one λ for every QP, or the path of a JSON file holding such
            a table (``npp eval --variants npp_refine:task=centernet:lambdas=lam.json``);
            None → the shipped blur table's, which was calibrated for ``mobilenet_v2``
            (another task must pass its own).
        rate, jacobian: the surrogate's rate model and distortion Jacobian.
        workers: threads for the codec's batch round trips (None: the codec's default).
        max_pixels: refuse images with more pixels than this before any work (default None:
            the codec's own pixel limit).

    Shape:
        - batch: (N, 3, H, W) float in [0, 1] → same shape, dtype and device. The images are
          refined independently, but together: one task pass and one batched codec round
          trip per step for the whole batch (the loss is a sum; Adam is per element). The
          task runs on its own ``device`` (e.g. ``get_task(name, device="cuda")``), the codec
          on CPU threads.
    """

    name = "npp_refine"

    def __init__(
        self,
        *,
        base: str | Preprocessor | None = "blur_tuned",
        weights: str | None = None,
        task: Any = "mobilenet_v2",
        steps: int = 4,
        lr: float = 0.004,
        inner: str = "same",
        select: bool = True,
        lambdas: dict | float | None = None,
        rate: str = "sqlog",
        jacobian: str = "masked",
        workers: int | None = None,
        task_pixels: int = TASK_PIXELS,
        max_pixels: int | None = None,
    ) -> None:
        from ..registry import get_preprocessor, get_task
        from ..surrogates import JACOBIANS, RATE_MODELS
        from .filters import _positive

        self.steps = _integer("steps", steps, 1, MAX_STEPS)
        self.lr = _positive(self.name, "lr", lr, upper=0.1)
        if rate not in RATE_MODELS:
            msg = f"preprocessor 'npp_refine': rate {rate!r} is not a rate model; allowed: {list(RATE_MODELS)}"
            raise InvalidArgumentError(msg, argument="rate", allowed=list(RATE_MODELS))
        if jacobian not in JACOBIANS:
            msg = f"preprocessor 'npp_refine': jacobian {jacobian!r} is not a Jacobian; allowed: {list(JACOBIANS)}"
            raise InvalidArgumentError(msg, argument="jacobian", allowed=list(JACOBIANS))
        self.rate, self.jacobian, self.workers = rate, jacobian, workers
        if inner not in INNER:
            msg = f"preprocessor 'npp_refine': inner must be one of {list(INNER)}, got {inner!r}"
            raise InvalidArgumentError(msg, argument="inner", allowed=list(INNER))
        if not isinstance(select, bool):
            msg = f"preprocessor 'npp_refine': select must be True or False, got {select!r}"
            raise InvalidArgumentError(msg, argument="select", allowed=[True, False])
        self.inner, self.select = inner, select
        self.task_pixels = _integer("task_pixels", task_pixels, 32 * 32, 1 << 40)
        self.max_pixels = None if max_pixels is None else _integer("max_pixels", max_pixels, 1, 1 << 40)
        if weights is not None:
            if base not in ("npp", "blur_tuned"):  # blur_tuned: the default, replaced by the NPP
                msg = f"preprocessor 'npp_refine': weights= starts from that NPP; it does not go with base={base!r}"
                raise InvalidArgumentError(msg, argument="weights", allowed="weights with base 'npp' (or the default base)")
            base = get_preprocessor("npp", weights=str(weights))
        self.base = None if base is None else resolve_preprocessor(base)
        self.task = require_trainable(get_task(task) if isinstance(task, str) else task, who="preprocessor 'npp_refine'")
        table = get_preprocessor("blur_tuned")  # the shipped table, read once per process
        if lambdas is None:
            if table.tuned_for["task"] != self.task.name:
                msg = (f"preprocessor 'npp_refine': the shipped λ table was calibrated for task "
                       f"{table.tuned_for['task']!r}, not {self.task.name!r}; pass lambdas={{qp: λ}}, e.g. "
                       "npp_plugin.evaluation.calibrate.task_lambdas(codec, task, images, qps)")
                raise InvalidArgumentError(msg, argument="lambdas", allowed="dict qp → λ > 0, or one λ > 0")
            lambdas = table.lambdas
        if isinstance(lambdas, str):  # a JSON file {qp: λ} (the CLI cannot spell a dict)
            lambdas = _read_lambdas(lambdas)
        if isinstance(lambdas, (int, float)) and not isinstance(lambdas, bool):
            lambdas = {0: lambdas}
        try:
            lam = {int(q): float(v) for q, v in dict(lambdas).items()}
        except (TypeError, ValueError) as exc:
            msg = f"preprocessor 'npp_refine': lambdas must map QPs to numbers, got {lambdas!r}"
            raise InvalidArgumentError(msg, argument="lambdas", allowed="dict qp → λ > 0, or one λ > 0") from exc
        if not lam or not all(0 < v < 1e6 and math.isfinite(v) for v in lam.values()):
            msg = f"preprocessor 'npp_refine': every λ must be positive and finite, got {lambdas!r}"
            raise InvalidArgumentError(msg, argument="lambdas", allowed="λ in (0, 1e6)")
        self.lambdas = dict(sorted(lam.items()))
        self._table = table

    def lam(self, codec: Codec, qp: int) -> float:
        """λ at ``qp`` for ``codec`` (by normalised QP, held at the table's ends)."""
        return self._table.by_normalized_qp(self.lambdas, codec, qp)

    def step_size(self, codec: Codec, qp: int) -> float:
        """Adam's step size at ``qp``: ``lr · 2^((q − 34)/6)``, q the QP on HEVC's scale
        (``51 · codec.normalized_qp(qp)``), as the quantiser step grows; the tuning on the
        training photos that chose it is in ``weights/npp-refine.json``."""
        return refine_step_size(self.lr, codec, qp)

    def inner_options(self, codec: Codec) -> dict[str, Any]:
        """The per-call codec options of the loop's round trips (:attr:`inner`)."""
        return {"fast": True} if self.inner == "fast" and "fast" in codec.params else {}

    def forward(self, batch: torch.Tensor, *, codec: Codec, qp: int) -> torch.Tensor:
        return self.refine(batch, codec=codec, qp=qp).images

    def refine(self, batch: torch.Tensor, *, codec: Codec, qp: int) -> Refined:
        """The refined images with the real J (and its bits and task loss) of the base's
        output and of the kept iterate, per image: what a teacher for distillation stores.
        With ``select=False`` the kept iterate is not scored: its J, bits and loss are NaN."""
        import torch

        from ..surrogates import surrogate_grad

        h, w = batch.shape[-2:]
        if self.max_pixels is not None and h * w > self.max_pixels:
            msg = (f"preprocessor 'npp_refine': a {w}×{h} image has {w * h} pixels, more than "
                   f"max_pixels={self.max_pixels}; crop or downscale it, or raise max_pixels")
            raise InvalidArgumentError(msg, argument="max_pixels", allowed=f"images of at most {self.max_pixels} pixels")
        codec.validate_size(width=w, height=h)
        lam, lr, opts = self.lam(codec, qp), self.step_size(codec, qp), self.inner_options(codec)
        device = getattr(self.task, "device", "cpu")
        with torch.inference_mode(False), torch.no_grad():
            # on the task network's device (the codec reads CPU tensors either way)
            x = batch.detach().to(device=device, dtype=torch.float32)
            ref = self.task.reference(self._task_view(x))
            # Adam on z = the base's output + the change (Adam does not see the offset)
            z = (x if self.base is None else self.base(x, codec=codec, qp=qp)).clone()
            del x
            npx = z.shape[-1] * z.shape[-2]
            best = z.clone() if self.select else None
            m = v = None
            first = best_real = None
            for it in range(self.steps + self.select):
                y = z.clamp(0, 1)
                real, bits = codec.roundtrip(y, qp=qp, workers=self.workers, **opts)
                last = it == self.steps
                with torch.enable_grad():
                    x_hat = real.requires_grad_(not last)
                    loss = self.task.loss(self._task_view(x_hat), ref, reduction="none")
                bpp = bits.to(loss) / npx
                # the real codec's values: these are the real J, bpp and loss of y
                real_j = torch.stack([bpp + lam * loss.detach(), bpp, loss.detach()])
                if first is None:
                    first, best_real = real_j.clone(), real_j.clone()
                elif self.select:
                    better = real_j[0] < best_real[0]
                    best[better], best_real[:, better] = y[better], real_j[:, better]
                if last:
                    break
                with torch.enable_grad():
                    (g_hat,) = torch.autograd.grad(lam * loss.sum(), x_hat)
                del loss
                g = surrogate_grad(y, real.detach(), bits, g_hat, codec=codec, qp=qp, bits_weight=1.0 / npx,
                                   rate=self.rate, jacobian=self.jacobian)
                del g_hat, real, y
                g.mul_((z >= 0) & (z <= 1))  # the clamp passes the gradient inside [0, 1] only
                m, v = _adam(z, g, m, v, step=it + 1, lr=lr)
                del g
            if not self.select:
                best = z.clamp_(0, 1)
                best_real = torch.full_like(first, float("nan"))
        f, b = first.double().cpu(), best_real.double().cpu()
        return Refined(best.to(device=batch.device, dtype=batch.dtype), lam, f[0], b[0], f[1], b[1], f[2], b[2])

    def _task_view(self, x: torch.Tensor) -> torch.Tensor:
        """What the task sees of ``x``: ``x``, or area-downscaled to ``task_pixels`` pixels."""
        import torch.nn.functional as F

        h, w = x.shape[-2:]
        if h * w <= self.task_pixels:
            return x
        s = math.sqrt(self.task_pixels / (h * w))
        return F.interpolate(x, size=(max(1, int(h * s)), max(1, int(w * s))), mode="area")

    def get_config(self) -> dict[str, Any]:
        return {"preprocessor": self.name, "base": None if self.base is None else self.base.get_config(),
                "task": self.task.name, "steps": self.steps, "lr": self.lr,
                "lambdas": {str(k): v for k, v in self.lambdas.items()}, "rate": self.rate,
                "jacobian": self.jacobian, "inner": self.inner, "select": self.select,
                "task_pixels": self.task_pixels, "max_pixels": self.max_pixels}


def _adam(z: torch.Tensor, g: torch.Tensor, m: torch.Tensor | None, v: torch.Tensor | None, *,
          step: int, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
    """One Adam step on ``z`` in place (torch.optim.Adam's arithmetic, without its
    per-parameter copies: at 12 MP each full-size float tensor is 144 MB)."""
    import torch

    b1, b2 = betas
    if m is None:
        m, v = torch.zeros_like(z), torch.zeros_like(z)
    m.mul_(b1).add_(g, alpha=1 - b1)
    v.mul_(b2).addcmul_(g, g, value=1 - b2)
    denom = (v.sqrt() / math.sqrt(1 - b2**step)).add_(eps)
    z.addcdiv_(m, denom, value=-lr / (1 - b1**step))
    return m, v


@hookimpl
def npp_register_preprocessors(register) -> None:
    register("npp_refine", TaskRefine)
