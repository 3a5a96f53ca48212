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
surrogates (:func:`~npp_plugin.surrogates.surrogate_grad`: squared-log rate model,
codec-masked Jacobian). Of the iterates, each image keeps the one with the lowest real J, the
base's output included, so for the codec it is given the result is never worse than the base
on that J (the codec is deterministic, and the kept iterate is returned as the 8-bit pixels
its encode codes).
``inner`` runs the loop's round trips at a cheaper codec setting (the choice is then by that
setting's J) and ``select=False`` skips scoring the last iterate: the speed–gain trade-off
is measured in docs/results.md.

Memory is bounded for photos up to the codec's pixel limit: the task sees the decoded image
at its own input size (k×k block means, ``Task.input_pixels``), the surrogate's gradient is
computed in bands of rows and Adam updates in place, so beside the task only a few
full-size planes are held.

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
#: About the most pixels a task that does not say its input size (``Task.input_pixels``) is
#: shown (larger images as k×k block means): a backward pass through MobileNetV2 at full
#: resolution holds about 2 GB of activations per megapixel.
TASK_PIXELS = 1 << 20
INNER = ("same", "fast", "OPTION=VALUE")


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
        inner: the codec setting inside the loop: ``"same"`` (the codec as given),
            ``"fast"`` (its ``fast=True``, e.g. BPG's x265 ultrafast with 16×16 CTUs), or one
            codec option ``"OPTION=VALUE"`` (e.g. ``"level=1"``, BPG's superfast preset). A codec
            without that option runs the loop as given; the final encode is always the codec
            as given.
        select: score the last iterate too and keep the iterate with the lowest J of the
            inner codec (the base's output included); False returns the last iterate
            unscored, one encode and one task pass cheaper.
        task_pixels: larger images are shown to the task as k×k block means, k the largest
            integer that leaves at least this many pixels (aspect kept), as its own input
            transform would shrink them: its cost and memory stop growing with the photo.
            None: the task's ``input_pixels`` (224² for the ImageNet classifiers, 512² for
            ``centernet``), else 2²⁰.
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
        task_pixels: int | None = None,
        max_pixels: int | None = None,
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
        if not isinstance(inner, str) or not (inner in INNER[:2] or inner.partition("=")[0].isidentifier()
                                              and inner.partition("=")[2]):
            msg = f"preprocessor 'npp_refine': inner must be 'same', 'fast' or one codec option 'OPTION=VALUE', got {inner!r}"
            raise InvalidArgumentError(msg, argument="inner", allowed=list(INNER))
        if not isinstance(select, bool):
            msg = f"preprocessor 'npp_refine': select must be True or False, got {select!r}"
            raise InvalidArgumentError(msg, argument="select", allowed=[True, False])
        self.inner, self.select = inner, select
        self.max_pixels = None if max_pixels is None else _integer("max_pixels", max_pixels, 1, 1 << 40)
        if weights is not None:
            if base not in ("npp", "blur_tuned"):  # blur_tuned: the default, replaced by the NPP
                msg = f"preprocessor 'npp_refine': weights= starts from that NPP; it does not go with base={base!r}"
                raise InvalidArgumentError(msg, argument="weights", allowed="weights with base 'npp' (or the default base)")
            base = get_preprocessor("npp", weights=str(weights))
        self.base = None if base is None else resolve_preprocessor(base)
        self.task = require_trainable(get_task(task) if isinstance(task, str) else task, who="preprocessor 'npp_refine'")
        # what the loop runs: the task's fused copy where it has one (same outputs, faster)
        self._runner = self.task.fused() if callable(getattr(self.task, "fused", None)) else self.task
        if task_pixels is None:
            task_pixels = getattr(self.task, "input_pixels", None) or TASK_PIXELS
        self.task_pixels = _integer("task_pixels", task_pixels, 32 * 32, 1 << 40)
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

    def inner_options(self, codec: Codec) -> dict[str, Any]:
        """The per-call codec options of the loop's round trips (:attr:`inner`); the codec
        checks their values."""
        if self.inner == "same":
            return {}
        key, _, value = ("fast=true" if self.inner == "fast" else self.inner).partition("=")
        if key not in codec.params:
            return {}
        low = value.lower()
        return {key: low == "true" if low in ("true", "false") else int(value) if value.lstrip("-").isdigit() else value}

    def forward(self, batch: torch.Tensor, *, codec: Codec, qp: int) -> torch.Tensor:
        return self.refine(batch, codec=codec, qp=qp).images

    def filter_uint8(self, images: torch.Tensor, *, codec: Codec, qp: int) -> torch.Tensor:
        # refine makes the float copy of 8-bit input itself and drops it after the base's pass
        return self.refine(images, codec=codec, qp=qp).images

    def refine(self, batch: torch.Tensor, *, codec: Codec, qp: int) -> Refined:
        """The refined images with the real J (and its bits and task loss) of the base's
        output and of the kept iterate, per image: what a teacher for distillation stores.
        With ``select=False`` the kept iterate is not scored: its J, bits and loss are NaN.
        ``batch`` may also be 8-bit samples (uint8, read as ``/ 255``; the images come back
        float32): their float copy is then dropped once the base has run."""
        import torch

        from ..images import dequantize_uint8, quantize_uint8
        from ..surrogates import surrogate_grad_bands

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
            owned = batch.dtype == torch.uint8  # x is then ours alone: freed after the base's pass
            if owned:
                x = dequantize_uint8(batch.to(device=device))
            else:
                x = batch.detach().to(device=device, dtype=torch.float32)
            ref = self._runner.reference(self._task_view(x))
            # projected Adam on z, from the base's output, kept in [0, 1]: z is the codec input
            z = x if self.base is None else self.base(x, codec=codec, qp=qp)
            z = (z.clone() if z is x and not owned else z).clamp_(0, 1)  # never write into the caller's batch
            del x
            npx = z.shape[-1] * z.shape[-2]
            # the kept iterate as the codec's encode will round it to 8 bits: ¼ the memory
            best = quantize_uint8(z) if self.select else None
            adam = _Adam(z, lr, keep_state=self.steps > 1)
            first = best_real = None
            for it in range(self.steps + self.select):
                # the decoded 8-bit samples: exact, and a quarter of a float copy's memory
                real, bits = codec.roundtrip(z, qp=qp, workers=self.workers, dtype=torch.uint8, **opts)
                last = it == self.steps
                with torch.enable_grad():
                    # the task's view of the decoded image: a leaf, so its gradient is small
                    seen = self._task_view(real).detach().requires_grad_(not last)
                    loss = self._runner.loss(seen, ref, reduction="none")
                bpp = bits.to(loss) / npx
                # the real codec's values: these are the real J, bpp and loss of z
                real_j = torch.stack([bpp + lam * loss.detach(), bpp, loss.detach()])
                if first is None:
                    first, best_real = real_j.clone(), real_j.clone()
                elif self.select:
                    better = real_j[0] < best_real[0]
                    for i in better.nonzero().flatten().tolist():
                        quantize_uint8(z[i], out=best[i])
                    best_real[:, better] = real_j[:, better]
                if last:
                    break
                with torch.enable_grad():
                    (g_seen,) = torch.autograd.grad(lam * loss.sum(), seen)
                del loss, seen
                adam.begin()
                for a, b, g in surrogate_grad_bands(z, real, bits, self._view_grad(g_seen, z.shape), codec=codec, qp=qp,
                                                    bits_weight=1.0 / npx, rate=self.rate, jacobian=self.jacobian):
                    adam.update(a, b, g)  # band by band: no full-size gradient is held
                del g_seen, real
            if not self.select:
                best, best_real = z, torch.full_like(first, float("nan"))
            else:
                del adam, z
                best = dequantize_uint8(best)
        f, b = first.double().cpu(), best_real.double().cpu()
        dtype = batch.dtype if batch.is_floating_point() else torch.float32
        return Refined(best.to(device=batch.device, dtype=dtype), lam, f[0], b[0], f[1], b[1], f[2], b[2])

    def _view_factor(self, h: int, w: int) -> int:
        return max(1, math.floor(math.sqrt(h * w / self.task_pixels)))

    def _task_view(self, x: torch.Tensor) -> torch.Tensor:
        """What the task sees of ``x`` (float in [0, 1], or 8-bit samples, read as
        float32 ``/ 255`` a band of rows at a time): ``x``, or means over k×k blocks (k the
        largest integer with at least ``task_pixels`` of them; the last h mod k rows and
        w mod k columns are not seen)."""
        import torch
        import torch.nn.functional as F

        from ..images import dequantize_uint8

        k = self._view_factor(*x.shape[-2:])
        if x.dtype != torch.uint8:
            return x if k == 1 else F.avg_pool2d(x, k)
        if k == 1:
            return dequantize_uint8(x)
        hk, wk = x.shape[-2] // k, x.shape[-1] // k
        out = torch.empty((*x.shape[:-2], hk, wk), dtype=torch.float32, device=x.device)
        rows = max(1, 256 // k)  # output rows per band: the float band stays small
        for a in range(0, hk, rows):
            out[..., a : a + rows, :] = F.avg_pool2d(dequantize_uint8(x[..., a * k : (a + rows) * k, :]), k)
        return out

    def _view_grad(self, g_seen: torch.Tensor, shape: torch.Size):
        """The gradient at full size of what the task saw: ``g_seen`` itself, or rows of it
        spread back over each k×k block (a function of the rows, so it is never held whole)."""
        import torch

        h, w = shape[-2:]
        k = self._view_factor(h, w)
        if k == 1:
            return g_seen
        hk, wk = g_seen.shape[-2:]

        def rows(a: int, b: int) -> torch.Tensor:
            r = torch.arange(a, b, device=g_seen.device) // k
            out = g_seen[..., r.clamp(max=hk - 1), :].repeat_interleave(k, dim=-1) / (k * k)
            out = out * (r < hk).to(out).view(-1, 1)  # rows below the last block: unseen
            return torch.nn.functional.pad(out, (0, w - wk * k))  # so are the last columns

        return rows

    def get_config(self) -> dict[str, Any]:
        return {"preprocessor": self.name, "base": None if self.base is None else self.base.get_config(),
                "task": self.task.name, "steps": self.steps, "lr": self.lr,
                "lambdas": {str(k): v for k, v in self.lambdas.items()}, "rate": self.rate,
                "jacobian": self.jacobian, "inner": self.inner, "select": self.select,
                "task_pixels": self.task_pixels, "max_pixels": self.max_pixels}


class _Adam:
    """Projected Adam on ``z`` in place, rows ``a:b`` at a time (torch.optim.Adam's
    arithmetic; ``z`` is then clamped to [0, 1]). In place and by bands because at 12 MP
    each full-size float tensor is 144 MB; without ``keep_state`` (one step) the first
    step, ``lr · g / (|g| + eps)``, needs no moment buffers."""

    def __init__(self, z: torch.Tensor, lr: float, *, keep_state: bool = True,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.z, self.lr, self.keep_state, self.betas, self.eps = z, lr, keep_state, betas, eps
        self.m = self.v = None
        self.t = 0

    def begin(self) -> None:
        """Start a step (every row must then be updated once)."""
        import torch

        if self.m is None and self.keep_state:
            self.m, self.v = torch.zeros_like(self.z), torch.zeros_like(self.z)
        self.t += 1

    def update(self, a: int, b: int, g: torch.Tensor) -> None:
        b1, b2 = self.betas
        z = self.z[..., a:b, :]
        if self.m is None:  # first step, nothing kept: m̂ = g, v̂ = g²
            if self.t != 1:
                msg = "_Adam without keep_state takes one step"
                raise RuntimeError(msg)
            z.addcdiv_(g, g.abs().add_(self.eps), value=-self.lr).clamp_(0, 1)
            return
        m, v = self.m[..., a:b, :], self.v[..., a:b, :]
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        denom = (v.sqrt() / math.sqrt(1 - b2**self.t)).add_(self.eps)
        z.addcdiv_(m, denom, value=-self.lr / (1 - b1**self.t)).clamp_(0, 1)


@hookimpl
def npp_register_preprocessors(register) -> None:
    register("npp_refine", TaskRefine)
