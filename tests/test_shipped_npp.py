"""The NPP weights and the tuned-blur table that ship in the package."""

from __future__ import annotations

import json

import numpy as np
import pytest

import npp_plugin
from npp_plugin.training.data import BuiltinPhotos

from .conftest import CODECS, require_codec


def test_shipped_tuned_blur_records_its_provenance():
    blur = npp_plugin.get_preprocessor("blur_tuned")
    doc = json.loads(blur.path.read_text())
    assert set(doc["sigma"]) == {"28", "31", "34", "37", "41"}
    prov = doc["provenance"]
    assert prov["task"] == "mobilenet_v2" and prov["codec"]["codec"] == "bpg"
    assert prov["fit_photos"] and not set(prov["fit_photos"]) & set(prov["dev_photos"])
    val = {p.name for p in BuiltinPhotos("val").files}
    assert not set(prov["fit_photos"]) & val  # tuned without the held-out photos


def test_shipped_npp_weights_record_recipe_and_metrics():
    from npp_plugin.preprocessors.weights import read_weights, shipped_weights

    assert "default" in shipped_weights()
    w = read_weights()
    assert w.path.stat().st_size < 10 * 2**20
    for key in ("recipe", "codec", "fidelity", "metrics", "surrogate_check", "training_photos"):
        assert key in w.meta, key
    assert w.meta["recipe"]["track"] == "derivative-free"


@pytest.mark.parametrize("name", CODECS)
def test_npp_works_out_of_the_box(name, photo):
    """Assert ``encode(..., preprocess="npp")`` works with the shipped weights for every
    codec, decodes, and spends fewer bits than the plain codec at QP 37 (it blurs there)."""
    codec = require_codec(name)
    img = photo[:224, :224]
    data = codec.encode(img, qp=37, preprocess="npp")
    plain = codec.encode(img, qp=37)
    rgb = codec.decode(data)
    assert rgb.shape == img.shape and rgb.dtype == np.uint8
    assert len(data) < len(plain)
