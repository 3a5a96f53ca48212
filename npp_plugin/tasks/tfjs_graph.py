# SPDX-License-Identifier: GPL-2.0-or-later
"""A small runner that executes a TF.js graph model (``model.json`` + weight files) with torch.

A TF.js graph model is a GraphDef in JSON (``modelTopology.node``: ``name``, ``op``,
``input``, ``attr``) and a ``weightsManifest`` naming the binary files and, per constant, its
shape, dtype and quantisation (float16, or affine uint8/uint16). :class:`TfjsGraph` reads
both, checks that every op is one it knows and that the weight files hold exactly the bytes
the manifest promises, and evaluates the graph node by node with torch operations, so the
result is differentiable with respect to the inputs (no TensorFlow, no ONNX converter).

Activations of rank 4 run in torch's NCHW layout; an op that needs TF's NHWC view (reshape,
slicing, gathering) gets it by a permutation, and axis arguments are mapped. The semantics
that decide where boxes land follow TF (and TF.js's CPU kernels) exactly:

* ``ResizeBilinear`` / ``ResizeNearestNeighbor`` with ``align_corners`` and
  ``half_pixel_centers`` (neither: the legacy ``src = dst · in/out``);
* ``'SAME'`` padding of convolutions and pooling: ``pad = max((ceil(in/s) − 1)·s + k_eff − in, 0)``,
  the odd pixel on the bottom/right.

Errors: an op outside :data:`SUPPORTED_OPS`, or a fused activation it does not know, is
refused when the graph is loaded, naming the op and the node; a damaged JSON file, a weight
file of the wrong length, a missing file or an unknown dtype is a
:class:`~npp_plugin.errors.WeightsError` naming the file.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import WeightsError

__all__ = ["SUPPORTED_OPS", "TfjsGraph", "resize", "same_padding"]

#: Largest graph JSON read (the CenterNet one is 0.2 MB).
MAX_JSON_BYTES = 64 << 20

_DTYPES = {"float32": (np.float32, torch.float32), "int32": (np.int32, torch.int32),
           "bool": (np.bool_, torch.bool)}
_QUANT = {"float16": np.float16, "uint8": np.uint8, "uint16": np.uint16}
_TF_DT = {"DT_FLOAT": torch.float32, "DT_INT32": torch.int32, "DT_BOOL": torch.bool, "DT_INT64": torch.int64}
_TF_TO_NC = (0, 2, 3, 1)  # NHWC axis -> NCHW axis


# --------------------------------------------------------------------------------------------
# Semantics shared with the tests (resize and padding), usable on their own


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TF's ``'SAME'`` padding of one spatial axis: ``(before, after)``, the odd one after."""
    eff = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2


def _source(n_in: int, n_out: int, align_corners: bool, half_pixel: bool) -> torch.Tensor:
    ratio = (n_in - 1) / (n_out - 1) if align_corners and n_out > 1 else n_in / n_out
    idx = torch.arange(n_out, dtype=torch.float64)
    return ratio * (idx + 0.5) - 0.5 if half_pixel else ratio * idx


def _lerp_axis(x: torch.Tensor, dim: int, n_out: int, align_corners: bool, half_pixel: bool) -> torch.Tensor:
    n_in = x.shape[dim]
    src = _source(n_in, n_out, align_corners, half_pixel)
    lo = src.floor().clamp(0, n_in - 1)
    hi = src.ceil().clamp(0, n_in - 1)
    frac = (src - lo).to(x.dtype).to(x.device)
    a = x.index_select(dim, lo.long().to(x.device))
    b = x.index_select(dim, hi.long().to(x.device))
    shape = [1] * x.ndim
    shape[dim] = n_out
    return a + (b - a) * frac.view(shape)


def _nearest_axis(x: torch.Tensor, dim: int, n_out: int, align_corners: bool, half_pixel: bool) -> torch.Tensor:
    n_in = x.shape[dim]
    ratio = (n_in - 1) / (n_out - 1) if align_corners and n_out > 1 else n_in / n_out
    src = ratio * (torch.arange(n_out, dtype=torch.float64) + (0.5 if half_pixel else 0.0))
    idx = (src + 0.5).floor() if align_corners else src.floor()  # JS Math.round / C roundf on >= 0
    idx = idx.clamp(max=n_in - 1)
    if half_pixel:
        idx = idx.clamp(min=0)
    return x.index_select(dim, idx.long().to(x.device))


def resize(x: torch.Tensor, size: Sequence[int], *, method: str = "bilinear", align_corners: bool = False,
           half_pixel_centers: bool = False) -> torch.Tensor:
    """TF's ``ResizeBilinear`` / ``ResizeNearestNeighbor`` on an NCHW tensor (differentiable).

    Bilinear interpolates along the width first, then the height, as TF.js's CPU kernel does.
    """
    oh, ow = (int(v) for v in size)
    if method == "bilinear":
        y = _lerp_axis(x, 3, ow, align_corners, half_pixel_centers)
        return _lerp_axis(y, 2, oh, align_corners, half_pixel_centers)
    y = _nearest_axis(x, 3, ow, align_corners, half_pixel_centers)
    return _nearest_axis(y, 2, oh, align_corners, half_pixel_centers)


def _pad_same(x: torch.Tensor, k: tuple[int, int], s: tuple[int, int], d: tuple[int, int], value: float = 0.0) -> torch.Tensor:
    top, bottom = same_padding(x.shape[2], k[0], s[0], d[0])
    left, right = same_padding(x.shape[3], k[1], s[1], d[1])
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (left, right, top, bottom), value=value)


# --------------------------------------------------------------------------------------------
# Reading the model


def _attr(node: Mapping[str, Any], key: str, default: Any = None) -> Any:
    a = node.get("attr", {}).get(key)
    if a is None:
        return default
    if "list" in a:
        lst = a["list"]
        if "i" in lst:
            return [int(v) for v in lst["i"]]
        if "s" in lst:
            return [base64.b64decode(v).decode() for v in lst["s"]]
        if "f" in lst:
            return [float(v) for v in lst["f"]]
        return []
    if "s" in a:
        return base64.b64decode(a["s"]).decode()
    if "i" in a:
        return int(a["i"])
    if "f" in a:
        return float(a["f"])
    if "b" in a:
        return bool(a["b"])
    if "type" in a:
        return a["type"]
    return default


def read_model_json(path: Path) -> dict:
    """The parsed ``model.json``; a ``WeightsError`` naming the file if it is not one."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        msg = f"TF.js graph model {str(path)!r} cannot be read: {exc.strerror or exc}"
        raise WeightsError(msg) from exc
    if size > MAX_JSON_BYTES:
        msg = f"TF.js graph model {str(path)!r} is {size} bytes, more than {MAX_JSON_BYTES}"
        raise WeightsError(msg)
    try:
        model = json.loads(path.read_bytes())
        nodes = model["modelTopology"]["node"]
        manifest = model["weightsManifest"]
        ok = isinstance(nodes, list) and isinstance(manifest, list) and all(
            isinstance(n, dict) and "name" in n and "op" in n for n in nodes)
    except (ValueError, KeyError, TypeError) as exc:
        msg = f"TF.js graph model {str(path)!r} is damaged or truncated (not a graph-model JSON: {exc})"
        raise WeightsError(msg) from exc
    if not ok:
        msg = f"TF.js graph model {str(path)!r} is damaged: modelTopology.node / weightsManifest malformed"
        raise WeightsError(msg)
    return model


def read_weights(model: Mapping[str, Any], folder: Path) -> dict[str, torch.Tensor]:
    """The constants of ``weightsManifest``, dequantised to float32 (int32 and bool kept)."""
    out: dict[str, torch.Tensor] = {}
    for group in model["weightsManifest"]:
        files = [Path(folder) / p for p in group.get("paths", [])]
        chunks = []
        for f in files:
            try:
                chunks.append(f.read_bytes())
            except OSError as exc:
                msg = f"TF.js weights file {str(f)!r} cannot be read: {exc.strerror or exc}"
                raise WeightsError(msg) from exc
        data = b"".join(chunks)
        where = ", ".join(repr(str(f)) for f in files) or "(no file)"
        offset = 0
        for spec in group.get("weights", []):
            name, shape, dtype = spec["name"], [int(v) for v in spec["shape"]], spec["dtype"]
            quant = spec.get("quantization")
            if dtype not in _DTYPES:
                msg = f"TF.js weights {where}: constant {name!r} has dtype {dtype!r}, not one of {list(_DTYPES)}"
                raise WeightsError(msg)
            stored = _QUANT.get(quant["dtype"]) if quant else _DTYPES[dtype][0]
            if stored is None:
                msg = f"TF.js weights {where}: constant {name!r} is quantised as {quant['dtype']!r}, not one of {list(_QUANT)}"
                raise WeightsError(msg)
            count = math.prod(shape)
            nbytes = count * np.dtype(stored).itemsize
            if offset + nbytes > len(data):
                msg = (f"TF.js weights file {where} is truncated: {len(data)} bytes, but constant {name!r} "
                       f"ends at byte {offset + nbytes}")
                raise WeightsError(msg)
            arr = np.frombuffer(data, dtype=stored, count=count, offset=offset).reshape(shape)
            offset += nbytes
            if quant and quant["dtype"] in ("uint8", "uint16"):
                arr = arr.astype(np.float32) * np.float32(quant["scale"]) + np.float32(quant["min"])
            arr = arr.astype(_DTYPES[dtype][0])
            out[name] = torch.from_numpy(arr.copy())
        if offset != len(data):
            msg = (f"TF.js weights file {where} has {len(data)} bytes, but its manifest describes {offset}: "
                   "damaged, or not the file of this model")
            raise WeightsError(msg)
    return out


# --------------------------------------------------------------------------------------------
# The runner


class _Env:
    """Values by name; rank-4 activations are kept NCHW (``nchw`` holds their names)."""

    def __init__(self) -> None:
        self.v: dict[str, torch.Tensor] = {}
        self.nchw: set[str] = set()

    def tf(self, name: str) -> torch.Tensor:
        t = self.v[name]
        return t.permute(0, 2, 3, 1) if name in self.nchw else t

    def nc(self, name: str) -> torch.Tensor:
        t = self.v[name]
        if name in self.nchw:
            return t
        if t.ndim != 4:
            msg = f"TF.js graph: {name!r} has rank {t.ndim}, an image op needs rank 4"
            raise WeightsError(msg)
        return t.permute(0, 3, 1, 2)

    def set(self, name: str, t: torch.Tensor, *, nchw: bool = False) -> None:
        self.v[name] = t
        if nchw:
            self.nchw.add(name)
        else:
            self.nchw.discard(name)


def _as_nc(t: torch.Tensor) -> torch.Tensor:
    """A TF-layout operand of rank <= 4, broadcast against an NHWC tensor, in NCHW."""
    while t.ndim < 4:
        t = t.unsqueeze(0)
    return t.permute(0, 3, 1, 2)


_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "Relu": F.relu, "Relu6": lambda x: x.clamp(0.0, 6.0), "Sigmoid": torch.sigmoid, "Tanh": torch.tanh,
    "Elu": F.elu,
}
_UNARY: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    **_ACTIVATIONS, "Identity": lambda x: x, "Neg": torch.neg, "Exp": torch.exp, "Sqrt": torch.sqrt,
    "Rsqrt": torch.rsqrt, "Square": torch.square, "Abs": torch.abs, "Log": torch.log,
    "StopGradient": lambda x: x.detach(),
}
_BINARY: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "Add": torch.add, "AddV2": torch.add, "BiasAdd": torch.add, "Sub": torch.sub, "Mul": torch.mul,
    "RealDiv": torch.div, "Div": torch.div, "Maximum": torch.maximum, "Minimum": torch.minimum,
    "Pow": torch.pow, "SquaredDifference": lambda a, b: (a - b).square(),
    "FloorDiv": lambda a, b: torch.div(a, b, rounding_mode="floor"), "FloorMod": torch.remainder,
    "Equal": torch.eq, "NotEqual": torch.ne, "Greater": torch.gt, "GreaterEqual": torch.ge,
    "Less": torch.lt, "LessEqual": torch.le,
}
_CONVS = ("Conv2D", "_FusedConv2D", "DepthwiseConv2dNative", "FusedDepthwiseConv2dNative")
_OTHER = ("Placeholder", "Const", "Mean", "Sum", "Max", "ResizeBilinear", "ResizeNearestNeighbor", "ConcatV2",
          "MaxPool", "AvgPool", "Cast", "Reshape", "ExpandDims", "Squeeze", "TopKV2", "GatherV2",
          "StridedSlice", "Pad", "PadV2", "Transpose", "Softmax", "Shape")
#: The TF ops this runner executes.
SUPPORTED_OPS = frozenset((*_UNARY, *_BINARY, *_CONVS, *_OTHER))
_FUSED = frozenset(("BiasAdd", *_ACTIVATIONS, "Prelu", "LeakyRelu"))


class TfjsGraph(torch.nn.Module):
    """A TF.js graph model run with torch ops.

    Args:
        model_json: path of ``model.json``; its weight files are read from the same folder.

    Raises:
        WeightsError: damaged/truncated JSON or weights, a missing file, or an op (or a
            fused activation) this runner does not know, named with its node.

    Example:
        >>> g = TfjsGraph("centernet.json")                               # doctest: +SKIP
        >>> out = g({"tower_0/images": x_nhwc}, ["tower_0/keypoints"])   # doctest: +SKIP
    """

    def __init__(self, model_json: str | Path) -> None:
        super().__init__()
        path = Path(model_json)
        model = read_model_json(path)
        self.path = path
        self.nodes = {n["name"]: n for n in model["modelTopology"]["node"]}
        for n in self.nodes.values():
            if n["op"] not in SUPPORTED_OPS:
                msg = (f"TF.js graph model {str(path)!r}: op {n['op']!r} (node {n['name']!r}) is not supported "
                       "by the torch runner")
                raise WeightsError(msg)
            for f in _attr(n, "fused_ops", []) or []:
                if f not in _FUSED:
                    msg = (f"TF.js graph model {str(path)!r}: fused op {f!r} in {n['op']!r} (node {n['name']!r}) "
                           "is not supported by the torch runner")
                    raise WeightsError(msg)
        consts = read_weights(model, path.parent)
        missing = [n for n, v in self.nodes.items() if v["op"] == "Const" and n not in consts]
        if missing:
            msg = f"TF.js graph model {str(path)!r}: constants without weights in the manifest: {missing[:5]}"
            raise WeightsError(msg)
        # conv filters converted once to torch's layout, kept as buffers (they follow .to())
        self._const_index: dict[str, int] = {}
        conv_filters = {n["input"][1]: n["op"] for n in self.nodes.values() if n["op"] in _CONVS}
        for i, (name, value) in enumerate(consts.items()):
            kind = conv_filters.get(name)
            if kind in ("Conv2D", "_FusedConv2D"):
                value = value.permute(3, 2, 0, 1).contiguous()  # HWIO -> OIHW
            elif kind is not None:  # depthwise HWCM -> (C*M, 1, H, W)
                h, w, c, m = value.shape
                value = value.permute(2, 3, 0, 1).reshape(c * m, 1, h, w).contiguous()
            self.register_buffer(f"c{i}", value, persistent=False)
            self._const_index[name] = i
        self.inputs = [n for n, v in self.nodes.items() if v["op"] == "Placeholder"]
        self.signature = model.get("signature", {})

    def const(self, name: str) -> torch.Tensor:
        return getattr(self, f"c{self._const_index[name]}")

    def _order(self, outputs: Iterable[str], feeds: Iterable[str]) -> list[str]:
        fed = {_base(f) for f in feeds}
        order: list[str] = []
        seen: set[str] = set()
        for out in outputs:
            stack = [(_base(out), False)]
            while stack:
                name, done = stack.pop()
                if done:
                    order.append(name)
                    continue
                if name in seen:
                    continue
                if name not in self.nodes and name not in fed:
                    msg = f"TF.js graph model {str(self.path)!r}: no node {name!r}"
                    raise WeightsError(msg)
                seen.add(name)
                stack.append((name, True))
                if name in fed:
                    continue
                for i in self.nodes[name].get("input", []):
                    if not i.startswith("^"):
                        stack.append((_base(i), False))
        return order

    def forward(self, feeds: Mapping[str, torch.Tensor], outputs: Sequence[str], *,
                nchw_feeds: Sequence[str] = (), nchw_outputs: bool = False) -> list[torch.Tensor]:
        """Evaluate ``outputs`` (node names, ``name:i`` for the i-th output) from ``feeds``.

        Feeds and outputs are in TF layout (NHWC) unless named in ``nchw_feeds`` /
        ``nchw_outputs=True`` (rank-4 values only). Any node may be fed, which cuts the
        graph there.
        """
        env = _Env()
        for k, v in feeds.items():
            env.set(_base(k), v, nchw=k in nchw_feeds)
        for name in self._order(outputs, feeds):
            if name in env.v:
                continue
            self._run(self.nodes[name], env)
        res = []
        for o in outputs:
            key = o if o in env.v else _base(o)
            res.append(env.nc(key) if nchw_outputs and env.v[key].ndim == 4 else env.tf(key))
        return res

    # ---- ops -----------------------------------------------------------------------------

    def _run(self, node: Mapping[str, Any], env: _Env) -> None:  # noqa: C901, PLR0912, PLR0915
        op, name = node["op"], node["name"]
        ins = [_ref(i) for i in node.get("input", []) if not i.startswith("^")]
        if op == "Placeholder":
            msg = f"TF.js graph: input {name!r} was not fed"
            raise WeightsError(msg)
        if op == "Const":
            env.set(name, self.const(name))
        elif op in _CONVS:
            self._conv(node, env, ins)
        elif op in _UNARY:
            env.set(name, _UNARY[op](env.v[ins[0]]), nchw=ins[0] in env.nchw)
        elif op in _BINARY:
            a, b = ins[0], ins[1]
            if a in env.nchw or b in env.nchw:
                ta = env.v[a] if a in env.nchw else _as_nc(env.v[a])
                tb = env.v[b] if b in env.nchw else _as_nc(env.v[b])
                env.set(name, _BINARY[op](ta, tb), nchw=True)
            else:
                env.set(name, _BINARY[op](env.v[a], env.v[b]))
        elif op in ("Mean", "Sum", "Max"):
            axes = [int(v) for v in env.v[ins[1]].reshape(-1).tolist()]
            keep = bool(_attr(node, "keep_dims", False))
            x = env.v[ins[0]]
            if ins[0] in env.nchw and keep:
                dims = sorted({_TF_TO_NC[a % 4] for a in axes})
                env.set(name, _reduce(op, x, dims, True), nchw=True)
            else:
                x = env.tf(ins[0])
                env.set(name, _reduce(op, x, sorted({a % x.ndim for a in axes}), keep))
        elif op in ("ResizeBilinear", "ResizeNearestNeighbor"):
            size = env.v[ins[1]].reshape(-1).tolist()
            y = resize(env.nc(ins[0]), size, method="bilinear" if op == "ResizeBilinear" else "nearest",
                       align_corners=bool(_attr(node, "align_corners", False)),
                       half_pixel_centers=bool(_attr(node, "half_pixel_centers", False)))
            env.set(name, y, nchw=True)
        elif op == "ConcatV2":
            parts, axis = ins[:-1], int(env.v[ins[-1]])
            if all(env.v[p].ndim == 4 for p in parts) and any(p in env.nchw for p in parts):
                env.set(name, torch.cat([env.nc(p) for p in parts], _TF_TO_NC[axis % 4]), nchw=True)
            else:
                xs = [env.tf(p) for p in parts]
                env.set(name, torch.cat(xs, axis % xs[0].ndim))
        elif op in ("MaxPool", "AvgPool"):
            env.set(name, self._pool(node, env.nc(ins[0])), nchw=True)
        elif op == "Cast":
            env.set(name, env.v[ins[0]].to(_TF_DT.get(_attr(node, "DstT"), torch.float32)), nchw=ins[0] in env.nchw)
        elif op == "Reshape":
            shape = [int(v) for v in env.v[ins[1]].reshape(-1).tolist()]
            env.set(name, env.tf(ins[0]).reshape(shape))
        elif op == "ExpandDims":
            x = env.tf(ins[0])
            ax = int(env.v[ins[1]].reshape(-1)[0])
            env.set(name, x.unsqueeze(ax if ax >= 0 else x.ndim + 1 + ax))
        elif op == "Squeeze":
            x = env.tf(ins[0])
            dims = _attr(node, "squeeze_dims", []) or [i for i, s in enumerate(x.shape) if s == 1]
            for d in sorted((d % x.ndim for d in dims), reverse=True):
                x = x.squeeze(d)
            env.set(name, x)
        elif op == "TopKV2":
            x, k = env.tf(ins[0]), int(env.v[ins[1]])
            # TF breaks ties by the lower index: a stable descending sort does the same
            idx = torch.sort(x.detach(), dim=-1, descending=True, stable=True).indices[..., :k]
            env.set(name, x.gather(-1, idx))
            env.set(f"{name}:1", idx.to(torch.int32))
        elif op == "GatherV2":
            params, idx = env.tf(ins[0]), env.v[ins[1]].long()
            axis = int(env.v[ins[2]]) % params.ndim
            if int(_attr(node, "batch_dims", 0) or 0) != 0:
                msg = f"TF.js graph: GatherV2 with batch_dims != 0 (node {name!r}) is not supported"
                raise WeightsError(msg)
            out = params.index_select(axis, idx.reshape(-1))
            env.set(name, out.reshape(*params.shape[:axis], *idx.shape, *params.shape[axis + 1:]))
        elif op == "StridedSlice":
            env.set(name, _strided_slice(node, env.tf(ins[0]), *(env.v[i] for i in ins[1:4])))
        elif op in ("Pad", "PadV2"):
            pads = env.v[ins[1]].reshape(-1, 2).tolist()
            value = float(env.v[ins[2]]) if op == "PadV2" else 0.0
            x = env.tf(ins[0])
            flat = [int(v) for pair in reversed(pads) for v in pair]
            env.set(name, F.pad(x, flat, value=value))
        elif op == "Transpose":
            env.set(name, env.tf(ins[0]).permute(*[int(v) for v in env.v[ins[1]].tolist()]))
        elif op == "Softmax":
            env.set(name, torch.softmax(env.tf(ins[0]), dim=-1))
        elif op == "Shape":
            env.set(name, torch.tensor(list(env.tf(ins[0]).shape), dtype=torch.int32))
        else:  # pragma: no cover - SUPPORTED_OPS is checked when loading
            msg = f"TF.js graph: op {op!r} (node {name!r}) is not supported by the torch runner"
            raise WeightsError(msg)

    def _conv(self, node: Mapping[str, Any], env: _Env, ins: list[str]) -> None:
        op = node["op"]
        if (_attr(node, "data_format", "NHWC") or "NHWC") != "NHWC":
            msg = f"TF.js graph: {op} (node {node['name']!r}) with data_format {_attr(node, 'data_format')!r}"
            raise WeightsError(msg)
        x, w = env.nc(ins[0]), self.const(ins[1])
        strides = _attr(node, "strides", [1, 1, 1, 1])
        dil = _attr(node, "dilations", [1, 1, 1, 1]) or [1, 1, 1, 1]
        s, d = (strides[1], strides[2]), (dil[1], dil[2])
        k = (w.shape[2], w.shape[3])
        padding = _attr(node, "padding", "VALID")
        if padding == "SAME":
            x = _pad_same(x, k, s, d)
        elif padding == "EXPLICIT":
            p = _attr(node, "explicit_paddings", [])
            x = F.pad(x, (p[4], p[5], p[2], p[3]))
        groups = x.shape[1] if "Depthwise" in op else 1
        y = F.conv2d(x, w, None, s, 0, d, groups)
        fused = _attr(node, "fused_ops", []) or []
        extra = ins[2:]
        for f in fused:
            if f == "BiasAdd":
                y = y + env.v[extra.pop(0)].reshape(1, -1, 1, 1)
            elif f == "Prelu":
                alpha = env.v[extra.pop(0)].reshape(1, -1, 1, 1)
                y = torch.where(y >= 0, y, y * alpha)
            elif f == "LeakyRelu":
                y = F.leaky_relu(y, float(_attr(node, "leakyrelu_alpha", 0.2)))
            else:
                y = _ACTIVATIONS[f](y)
        env.set(node["name"], y, nchw=True)

    def _pool(self, node: Mapping[str, Any], x: torch.Tensor) -> torch.Tensor:
        ks, st = _attr(node, "ksize"), _attr(node, "strides")
        k, s = (ks[1], ks[2]), (st[1], st[2])
        same = _attr(node, "padding", "VALID") == "SAME"
        if node["op"] == "MaxPool":
            if same:
                x = _pad_same(x, k, s, (1, 1), value=-math.inf)
            return F.max_pool2d(x, k, s)
        if not same:
            return F.avg_pool2d(x, k, s)
        # TF averages over the pixels inside the image only
        ones = torch.ones_like(x[:, :1])
        num = F.avg_pool2d(_pad_same(x, k, s, (1, 1)), k, s, divisor_override=1)
        den = F.avg_pool2d(_pad_same(ones, k, s, (1, 1)), k, s, divisor_override=1)
        return num / den


def _base(name: str) -> str:
    name = name.lstrip("^")
    head, _, tail = name.rpartition(":")
    return head if head and tail.isdigit() else name


def _ref(name: str) -> str:
    """``name:0`` -> ``name``; ``name:1`` stays (second output of a node)."""
    head, _, tail = name.rpartition(":")
    if head and tail == "0":
        return head
    return name


def _reduce(op: str, x: torch.Tensor, dims: list[int], keep: bool) -> torch.Tensor:
    if not dims:
        return x
    if op == "Mean":
        return x.mean(dim=dims, keepdim=keep)
    if op == "Sum":
        return x.sum(dim=dims, keepdim=keep)
    return x.amax(dim=dims, keepdim=keep)


def _strided_slice(node: Mapping[str, Any], x: torch.Tensor, begin: torch.Tensor, end: torch.Tensor,
                   strides: torch.Tensor) -> torch.Tensor:
    if _attr(node, "ellipsis_mask", 0) or _attr(node, "new_axis_mask", 0):
        msg = f"TF.js graph: StridedSlice with ellipsis/new-axis masks (node {node['name']!r}) is not supported"
        raise WeightsError(msg)
    bm, em, sm = (int(_attr(node, k, 0) or 0) for k in ("begin_mask", "end_mask", "shrink_axis_mask"))
    b, e, s = (t.reshape(-1).tolist() for t in (begin, end, strides))
    index: list[Any] = []
    for i in range(len(b)):
        if sm >> i & 1:
            index.append(int(b[i]))
            continue
        if s[i] < 0:
            msg = f"TF.js graph: StridedSlice with negative strides (node {node['name']!r}) is not supported"
            raise WeightsError(msg)
        index.append(slice(None if bm >> i & 1 else int(b[i]), None if em >> i & 1 else int(e[i]), int(s[i])))
    return x[tuple(index)]
