"""GradCAM (Selvaraju et al. 2017): where a classifier looks, before and after preprocessing.

The class-activation map of class c at layer A is ReLU(Σ_k α_k A_k) with α_k the spatial mean
of ∂y_c/∂A_k; it is upsampled to the input size and scaled to [0, 1] per image. The paper's
figures 4 and 12 compare it on the original image and on the NPP-filtered image: a
task-aware filter should keep the regions the classifier uses.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidArgumentError
from ..fileio import atomic_write_bytes

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["gradcam", "gradcam_figure", "last_conv"]


def _network(task: Any):
    import torch

    if not callable(getattr(task, "logits", None)):
        msg = f"GradCAM: task {getattr(task, 'name', task)!r} has no logits(batch) method; GradCAM needs a classifier"
        raise InvalidArgumentError(msg, argument="task", allowed="a classification task with logits()")
    net = getattr(task, "net", None)
    if not isinstance(net, torch.nn.Module) and callable(getattr(task, "modules", None)):
        net = next((m for m in task.modules() if isinstance(m, torch.nn.Module)), None)
    if not isinstance(net, torch.nn.Module):
        msg = f"GradCAM: cannot find the network module of task {getattr(task, 'name', task)!r}"
        raise InvalidArgumentError(msg, argument="task", allowed="a task with .net or modules()")
    return net


def last_conv(module: torch.nn.Module) -> torch.nn.Module:
    """The last ``Conv2d`` of ``module`` in registration order (its deepest feature map)."""
    import torch

    convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
    if not convs:
        msg = f"GradCAM: {type(module).__name__} has no Conv2d layer"
        raise InvalidArgumentError(msg, argument="layer", allowed="a network with Conv2d layers")
    return convs[-1]


def gradcam(task: Any, batch: torch.Tensor, *, layer: torch.nn.Module | None = None,
            class_idx: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """GradCAM maps of a classification task.

    Args:
        task: a task with ``logits(batch)`` (e.g. ``get_task("mobilenet_v2")``).
        batch: (N, 3, H, W) float in [0, 1].
        layer: the layer whose output is explained (default: the last Conv2d).
        class_idx: (N,) classes to explain (default: each image's predicted class).

    Returns:
        ``(cams, classes)``: (N, H, W) float32 maps in [0, 1] and the (N,) explained classes.
    """
    import torch
    import torch.nn.functional as F

    layer = layer or last_conv(_network(task))
    store: dict[str, torch.Tensor] = {}

    def hook(_m, _i, out):
        out.retain_grad()
        store["a"] = out

    handle = layer.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            x = batch.detach().clone().requires_grad_(True)  # frozen weights: the graph hangs on x
            logits = task.logits(x)
            classes = logits.argmax(1) if class_idx is None else class_idx.to(logits.device).long()
            logits.gather(1, classes.view(-1, 1)).sum().backward()
    finally:
        handle.remove()
    act, grad = store["a"].detach(), store["a"].grad.detach()
    cam = F.relu((grad.mean(dim=(2, 3), keepdim=True) * act).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=batch.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    flat = cam.flatten(1)
    lo, hi = flat.min(1).values.view(-1, 1, 1), flat.max(1).values.view(-1, 1, 1)
    cam = (cam - lo) / (hi - lo).clamp_min(1e-12)
    return cam.float().cpu().numpy(), classes.cpu().numpy()


def gradcam_figure(task: Any, original: np.ndarray, processed: np.ndarray, path: str | Path, *,
                   titles: tuple[str, str] = ("original", "preprocessed")) -> Path:
    """Save a 2×2 PNG: each image and its GradCAM overlay, explaining the class predicted on
    the original (so the two maps answer the same question).

    Args:
        original, processed: (H, W, 3) uint8 images of equal size.
    """
    import torch

    from ..images import uint8_to_tensor_batch

    if original.shape != processed.shape or original.ndim != 3:
        msg = f"GradCAM: images must be (H, W, 3) of equal shape, got {original.shape} and {processed.shape}"
        raise InvalidArgumentError(msg, argument="processed", allowed=str(original.shape))
    x = uint8_to_tensor_batch(np.stack([original, processed]))
    with torch.no_grad():
        probs = task.logits(x).float().softmax(1)
    cls = probs[0].argmax().view(1).repeat(2)
    cams, _ = gradcam(task, x, class_idx=cls)

    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 6.4), dpi=100)
    axes = fig.subplots(2, 2)
    for row, (img, cam, title) in enumerate(zip((original, processed), cams, titles, strict=True)):
        p = float(probs[row, cls[0]])
        axes[row, 0].imshow(img)
        axes[row, 0].set_title(f"{title}", fontsize="small")
        axes[row, 1].imshow(img)
        axes[row, 1].imshow(cam, cmap="jet", alpha=0.45, vmin=0, vmax=1)
        axes[row, 1].set_title(f"GradCAM class {int(cls[0])} (p={p:.2f})", fontsize="small")
        for ax in axes[row]:
            ax.axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return atomic_write_bytes(path, buf.getvalue())
