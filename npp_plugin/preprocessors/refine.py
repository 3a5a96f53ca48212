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

λ per QP is the plain codec's own rate–task slope for the task (``−ΔR/ΔD`` over QP ± 3 on
the training photos), from the task's λ table, interpolated by ``codec.normalized_qp``. Tables
ship for ``mobilenet_v2`` (the blur table's λ), ``efficientnet_lite0`` and their ensemble
``mobilenet_v2+efficientnet_lite0``; ``npp search lambda --task NAME`` makes one for any other
registered task, and ``$NPP_LAMBDAS`` or the user folder is searched before the package
(:mod:`npp_plugin.preprocessors.lambdas`). ``lambdas=`` overrides the table.
"""

from __future__ import annotations

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
#: Default largest image refined: the backward pass through the task network holds its
#: activations, about 2 GB per megapixel for MobileNetV2 on CPU (measured peak RSS).
MAX_PIXELS = 1 << 22


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
        lr: Adam's step size at QP 34 (HEVC scale), in [0, 1] pixel units, (0, 0.1]; at other
            QPs it follows the quantiser step, ×2 every 6 QP (:meth:`step_size`), since a
            change must outlive a coarser quantiser to reach the decoder.
        lambdas: ``{qp: λ}`` for the codec family the table was made for (interpolated by
            normalised QP), or one λ for every QP, or the path of a JSON file holding a
            table (``npp eval --variants npp_refine:task=centernet:lambdas=lam.json``);
            None → the task's table: ``$NPP_LAMBDAS`` (a table file, or a folder of
            ``<task>.json``), then the user folder (``~/.cache/npp_plugin/lambdas``), then the
            package's; a task without one is refused with the command that makes it,
            ``npp search lambda --task NAME``.
        rate, jacobian: the surrogate's rate model and distortion Jacobian.
        workers: threads for the codec's batch round trips (None: the codec's default).
        max_pixels: refuse images with more pixels than this (default 2²², about 8 GB of
            activations), before any memory is spent on them.

    Shape:
        - batch: (N, 3, H, W) float in [0, 1] → same shape, dtype and device. The images are
          refined independently (the loss is a sum over the batch; Adam is per element).
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
        lambdas: dict | float | None = None,
        rate: str = "sqlog",
        jacobian: str = "masked",
        workers: int | None = None,
        max_pixels: int = MAX_PIXELS,
    ) -> None:
        from ..registry import get_preprocessor, get_task
        from ..surrogates import JACOBIANS, RATE_MODELS
        from .filters import TunedBlur, _positive
        from .lambdas import resolve_lambdas

        self.steps = _integer("steps", steps, 1, MAX_STEPS)
        self.lr = _positive(self.name, "lr", lr, upper=0.1)
        if rate not in RATE_MODELS:
            msg = f"preprocessor 'npp_refine': rate {rate!r} is not a rate model; allowed: {list(RATE_MODELS)}"
            raise InvalidArgumentError(msg, argument="rate", allowed=list(RATE_MODELS))
        if jacobian not in JACOBIANS:
            msg = f"preprocessor 'npp_refine': jacobian {jacobian!r} is not a Jacobian; allowed: {list(JACOBIANS)}"
            raise InvalidArgumentError(msg, argument="jacobian", allowed=list(JACOBIANS))
        self.rate, self.jacobian, self.workers = rate, jacobian, workers
        self.max_pixels = _integer("max_pixels", max_pixels, 1, 1 << 40)
        if weights is not None:
            if base not in ("npp", "blur_tuned"):  # blur_tuned: the default, replaced by the NPP
                msg = f"preprocessor 'npp_refine': weights= starts from that NPP; it does not go with base={base!r}"
                raise InvalidArgumentError(msg, argument="weights", allowed="weights with base 'npp' (or the default base)")
            base = get_preprocessor("npp", weights=str(weights))
        self.base = None if base is None else resolve_preprocessor(base)
        self.task = require_trainable(get_task(task) if isinstance(task, str) else task, who="preprocessor 'npp_refine'")
        # λ per QP: the caller's, else this task's table ($NPP_LAMBDAS, the user folder, the package)
        self.lambdas, self.lambda_table = resolve_lambdas(
            lambdas, task=task if isinstance(task, str) else self.task.name, who=f"preprocessor {self.name!r}")
        self._table = TunedBlur  # by_normalized_qp: how a table made for BPG applies to other codecs

    def lam(self, codec: Codec, qp: int) -> float:
        """λ at ``qp`` for ``codec`` (by normalised QP, held at the table's ends)."""
        return self._table.by_normalized_qp(self.lambdas, codec, qp)

    def step_size(self, codec: Codec, qp: int) -> float:
        """Adam's step size at ``qp``: ``lr · 2^((q − 34)/6)``, q the QP on HEVC's scale
        (``51 · codec.normalized_qp(qp)``), as the quantiser step grows; the tuning on the
        training photos that chose it is in ``weights/npp-refine.json``."""
        return refine_step_size(self.lr, codec, qp)

    def forward(self, batch: torch.Tensor, *, codec: Codec, qp: int) -> torch.Tensor:
        return self.refine(batch, codec=codec, qp=qp).images

    def refine(self, batch: torch.Tensor, *, codec: Codec, qp: int) -> Refined:
        """The refined images with the real J (and its bits and task loss) of the base's
        output and of the kept iterate, per image: what a teacher for distillation stores."""
        import torch

        from ..surrogates import surrogate_step

        h, w = batch.shape[-2:]
        if h * w > self.max_pixels:
            msg = (f"preprocessor 'npp_refine': a {w}×{h} image has {w * h} pixels, more than "
                   f"max_pixels={self.max_pixels} (the task's backward pass needs about 2 GB per "
                   "megapixel); crop or downscale it, or raise max_pixels")
            raise InvalidArgumentError(msg, argument="max_pixels", allowed=f"images of at most {self.max_pixels} pixels")
        lam = self.lam(codec, qp)
        with torch.inference_mode(False), torch.enable_grad():
            # on the task network's device (the codec reads CPU tensors either way)
            x = batch.detach().to(device=getattr(self.task, "device", "cpu"), dtype=torch.float32).clone()
            start = (x if self.base is None else self.base(x, codec=codec, qp=qp)).detach().clone()
            with torch.no_grad():
                ref = self.task.reference(x)
            npx = x.shape[-1] * x.shape[-2]
            delta = torch.zeros_like(start, requires_grad=True)
            opt = torch.optim.Adam([delta], lr=self.step_size(codec, qp))
            best = start.clone()
            first: tuple[torch.Tensor, torch.Tensor] | None = None
            for it in range(self.steps + 1):
                y = (start + delta).clamp(0, 1)
                with torch.set_grad_enabled(it < self.steps):  # the last iterate is only scored
                    st = surrogate_step(y, codec=codec, qp=qp, rate=self.rate, jacobian=self.jacobian,
                                        workers=self.workers)
                    loss = self.task.loss(st.x_hat, ref, reduction="none")
                    j = st.bits / npx + lam * loss
                # the forward values are the real codec's: these are the real J, bpp and loss
                real = torch.stack([j.detach(), st.bits.detach() / npx, loss.detach()])
                if first is None:
                    first, best_real = real.clone(), real.clone()
                else:
                    better = real[0] < best_real[0]
                    best[better], best_real[:, better] = y.detach()[better], real[:, better]
                if it == self.steps:
                    break
                opt.zero_grad(set_to_none=True)
                j.sum().backward()
                opt.step()
        f, b = first.double().cpu(), best_real.double().cpu()
        return Refined(best.to(device=batch.device, dtype=batch.dtype), lam, f[0], b[0], f[1], b[1], f[2], b[2])

    def get_config(self) -> dict[str, Any]:
        return {"preprocessor": self.name, "base": None if self.base is None else self.base.get_config(),
                "task": self.task.name, "steps": self.steps, "lr": self.lr,
                "lambdas": {str(k): v for k, v in self.lambdas.items()}, "rate": self.rate,
                "jacobian": self.jacobian, "max_pixels": self.max_pixels}


@hookimpl
def npp_register_preprocessors(register) -> None:
    register("npp_refine", TaskRefine)
