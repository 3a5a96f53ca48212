"""`npp eval --tasks all`: every task that runs here in one command, with mAP and the transfer table.

Images: 256² crops of the built-in photos with people (astronaut.png, grace_hopper.jpg,
messi5.jpg, person.jpg; BlazePose finds a person in each) and one without (chelsea.png).
"""

from __future__ import annotations

import json
import re

import pytest
from PIL import Image

from npp_plugin.datasets import builtin_photos, load_rgb
from npp_plugin.registry import available_codecs
from npp_plugin.tasks.centernet import model_available
from npp_plugin.tasks.mediapipe_runtime import mediapipe_unavailable_reason

#: photo → top-left corner of a 256² crop (BlazePose finds 7–16 COCO keypoints in each).
CROPS = {"astronaut.png": (0, 128), "grace_hopper.jpg": (256, 64), "messi5.jpg": (64, 128),
         "person.jpg": (64, 128), "chelsea.png": (0, 0)}
CELL = re.compile(r"^([+-]\d+\.\d % \[[+-]\d+\.\d, [+-]\d+\.\d\]|too few usable images \(\d+( < 10)?\)(: .+)?|n/a: .+|—)$")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    paths = {p.name: p for p in builtin_photos()}
    if any(n not in paths for n in CROPS):
        pytest.skip(f"built-in photos {sorted(set(CROPS) - set(paths))} not installed")
    out = tmp_path_factory.mktemp("people")
    for name, (y, x) in CROPS.items():
        Image.fromarray(load_rgb(paths[name])[y : y + 256, x : x + 256]).save(out / f"{name.split('.')[0]}.png")
    return out


@pytest.mark.slow
def test_all_tasks_in_one_command(folder, tmp_path, capsys):
    """Assert one `npp eval --tasks all` run scores every available task, leaves out the
    detectors that need weights (saying so), adds dataset-level mAP for MTCNN, leaves the
    photo without a person out of the person tasks, and writes the transfer table (with
    CenterNet's mAP where the set-up fetched it)."""
    from npp_plugin.evaluation.__main__ import main

    if "jpeg" not in available_codecs():
        pytest.skip("the 'jpeg' codec plugin is not installed")
    out = tmp_path / "run"
    rc = main(["--tasks", "all", "--codecs", "jpeg", "--qps", "30,42,51", "--variants", "plain,blur05",
               "--images", str(folder), "--crop-size", "0", "--bootstrap", "30", "--anchor", "plain,blur05",
               "--out", str(out), "--no-plots", "--no-progress", "--metrics", "psnr"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert re.search(r"--tasks all leaves out: .*fcos \(.*weights", captured.err)
    res = json.loads((out / "results.json").read_text())
    person_tasks = {"selfie_segmentation", "blazepose"} if mediapipe_unavailable_reason() is None else set()
    detectors = {"mtcnn", "centernet"} if model_available() else {"mtcnn"}  # centernet: fetched by the set-up
    classifiers = {"mobilenet_v2", "efficientnet_lite0", "efficientnet_lite2"}
    assert set(res["tasks"]) == classifiers | detectors | person_tasks | {"mobilenet_v2_stem"}
    refs = res["reference"]
    for t in detectors:
        assert refs[t]["map"] == 1.0 and refs[t]["ap50"] == 1.0  # its own pseudo ground truth
    mtcnn = [c for c in res["curves"] if c["task"] == "mtcnn"]
    assert len(mtcnn) == 6 and all(0.0 <= c["map"] <= c["ap50"] <= 1.0 for c in mtcnn)
    assert {e["metric"] for e in res["bd_rate"] if e["task"] == "mtcnn"} >= {"score", "map", "ap50"}
    for t in person_tasks:
        assert refs[t]["n"] == 5 and refs[t]["n_scored"] == 4 and refs[t]["score"] == 1.0
        assert all(c["n_scored"] == 4 for c in res["curves"] if c["task"] == t)
    rows = res["transfer"]["rows"]
    assert res["transfer"]["anchors"] == ["plain", "blur05"]
    measures = {(r["task"], r["measure"]) for r in rows}
    assert {("mobilenet_v2", "top-1 agreement"), ("mtcnn", "mAP@[.5:.95]"), ("mtcnn", "AP50"),
            ("mobilenet_v2_stem", "feature fidelity")} <= measures
    if person_tasks:
        assert {("blazepose", "OKS"), ("blazepose", "PCK@0.05"), ("selfie_segmentation", "mask IoU")} <= measures
        assert all(r["images"] == 4 for r in rows if r["task"] in person_tasks)
    table = (out / "transfer.md").read_text()
    for line in table.splitlines()[2:-2]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert all(CELL.match(c) for c in cells[5:]), line
