# SPDX-License-Identifier: GPL-2.0-or-later
"""ONNX export of a trained NPP network, so an encoder can run it without PyTorch.

The exported graph (opset 18, torch's ``torch.export``-based exporter) has two inputs and one
output, with dynamic batch size, height and width (padding and cropping are in the graph)::

    image    float32 (N, 3, H, W) in [0, 1]
    qp       float32 (N,)  the codec's normalized_qp(qp) in [0, 1] (ignored without QA)
    filtered float32 (N, 3, H, W) in [0, 1]

The model's ``metadata_props`` hold ``npp_config`` (the JSON configuration) and
``npp_inputs`` (this description). :class:`OnnxNpp` runs the file with onnxruntime and numpy
only. Input checks (NaN, range) are not part of the graph: :class:`OnnxNpp` does them.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import CodecUnavailableError, InvalidArgumentError, NppError, ShapeError
from ..images import check_image_batch

if TYPE_CHECKING:  # pragma: no cover
    from .model import NppNet

__all__ = ["OnnxNpp", "check_onnx_equivalence", "export_onnx"]

OPSET = 18
_INPUTS_DOC = (
    "image: float32 (N,3,H,W) in [0,1]; qp: float32 (N,) = codec.normalized_qp(qp) in [0,1]"
)


def _onnx_graph_module(net: NppNet):
    import torch

    class _Graph(torch.nn.Module):
        def __init__(self, inner: NppNet) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, image: torch.Tensor, qp: torch.Tensor) -> torch.Tensor:
            q = qp.reshape(-1, 1).to(image.dtype) if self.inner.config.qa else None
            return self.inner.filter(image, q)

    return _Graph(net)


def export_onnx(
    net: NppNet, path: str | os.PathLike, *, example_size: tuple[int, int] = (40, 56)
) -> Path:
    """Export ``net`` (a copy, on CPU, in eval mode) to an ONNX file, written atomically.

    Args:
        net: the network.
        path: destination ``.onnx`` file.
        example_size: (H, W) of the tracing example; any size works afterwards.

    Returns:
        The path written.

    Raises:
        CodecUnavailableError: ``onnx`` / ``onnxscript`` are not installed
            (``pip install npp_plugin[onnx]``).
    """
    import torch

    from ..fileio import atomic_write_bytes
    from .model import NppNet

    if not isinstance(net, NppNet):
        msg = f"export_onnx: expected an NppNet, got {type(net).__name__}"
        raise InvalidArgumentError(msg, argument="net", allowed="NppNet")
    try:
        import onnx
        import onnxscript  # noqa: F401  (needed by torch's exporter)
    except ImportError as exc:
        msg = f"export_onnx needs onnx and onnxscript: pip install 'npp_plugin[onnx]' ({exc})"
        raise CodecUnavailableError(msg) from exc
    graph = _onnx_graph_module(copy.deepcopy(net).cpu().float()).eval()
    h, w = example_size
    example = (torch.rand(2, 3, h, w), torch.full((2,), 0.5))
    n, hd, wd = (
        torch.export.Dim("N", min=1),
        torch.export.Dim("H", min=1),
        torch.export.Dim("W", min=1),
    )
    # the exporter prints progress to stdout and warns that N is shared by both inputs
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.filterwarnings("ignore", message=".*axis name.*will not be used.*")
        program = torch.onnx.export(
            graph,
            example,
            input_names=["image", "qp"],
            output_names=["filtered"],
            dynamic_shapes={"image": {0: n, 2: hd, 3: wd}, "qp": {0: n}},
            opset_version=OPSET,
            dynamo=True,
            verbose=False,
        )
    model = program.model_proto
    for key, value in (("npp_config", json.dumps(net.get_config())), ("npp_inputs", _INPUTS_DOC)):
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.checker.check_model(model)
    return atomic_write_bytes(path, model.SerializeToString())


class OnnxNpp:
    """Run an exported NPP network with onnxruntime (no PyTorch needed).

    Args:
        path: the ``.onnx`` file from :func:`export_onnx`.

    Shape:
        - image: (N, 3, H, W) float32 in [0, 1]; qp_norm: float or (N,) → (N, 3, H, W)
    """

    def __init__(self, path: str | os.PathLike) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            msg = f"OnnxNpp needs onnxruntime: pip install 'npp_plugin[onnx]' ({exc})"
            raise CodecUnavailableError(msg) from exc
        self.path = Path(path)
        self.session = ort.InferenceSession(
            os.fspath(self.path), providers=["CPUExecutionProvider"]
        )
        meta = self.session.get_modelmeta().custom_metadata_map
        self.config: dict[str, Any] = json.loads(meta.get("npp_config", "{}"))

    def __call__(
        self, image: np.ndarray, qp_norm: float | Sequence[float] | np.ndarray
    ) -> np.ndarray:
        x = np.asarray(image)
        check_image_batch(x, who="OnnxNpp", argument="image")
        x = np.ascontiguousarray(x, dtype=np.float32)
        q = np.asarray(qp_norm, dtype=np.float32)
        q = np.full((x.shape[0],), float(q), np.float32) if q.ndim == 0 else q
        if q.shape != (x.shape[0],):
            msg = f"OnnxNpp: qp_norm has shape {q.shape}; expected a scalar or ({x.shape[0]},)"
            raise ShapeError(
                msg, actual_shape=q.shape, expected_shape=f"({x.shape[0]},)", argument="qp_norm"
            )
        if not np.isfinite(q).all() or q.min() < 0 or q.max() > 1:
            msg = f"OnnxNpp: qp_norm {q.tolist()[:8]} is outside [0, 1]"
            raise InvalidArgumentError(msg, argument="qp_norm", allowed="[0, 1]")
        return self.session.run(["filtered"], {"image": x, "qp": q})[0]


def check_onnx_equivalence(
    net: NppNet,
    path: str | os.PathLike,
    *,
    sizes: Sequence[tuple[int, int, int]] = ((1, 1, 1), (2, 37, 50), (1, 64, 96)),
    qps: Sequence[float] = (0.0, 0.55, 1.0),
    atol: float = 1e-4,
    seed: int = 0,
) -> float:
    """Compare the ONNX file with the PyTorch network on seeded random images.

    Args:
        net: the network that was exported.
        path: the ``.onnx`` file.
        sizes: (N, H, W) test batches (odd sizes exercise the in-graph padding).
        qps: operating points; each batch gets them cycled per image.
        atol: largest allowed absolute difference.

    Returns:
        The maximum absolute difference over all tests.

    Raises:
        NppError: the difference exceeds ``atol``.
    """
    import torch

    runner = OnnxNpp(path)
    ref_net = copy.deepcopy(net).cpu().float().eval()
    rng = np.random.default_rng(seed)
    worst = 0.0
    for n, h, w in sizes:
        x = rng.random((n, 3, h, w), dtype=np.float32)
        q = np.array([qps[i % len(qps)] for i in range(n)], dtype=np.float32)
        with torch.inference_mode():
            ref = ref_net(torch.from_numpy(x), torch.from_numpy(q)).numpy()
        worst = max(worst, float(np.abs(runner(x, q) - ref).max()))
    if worst > atol:
        msg = f"ONNX export {path}: max abs difference {worst:.3g} to PyTorch exceeds {atol:g}"
        raise NppError(msg)
    return worst
