"""The built-in photo set and the public API surface."""

from __future__ import annotations

import numpy as np

import npp_plugin
from npp_plugin.datasets import builtin_photos, fixed_crops, load_rgb, split_files


def test_builtin_photos_are_real_colour_photos():
    photos = builtin_photos()
    assert len(photos) >= 10, photos
    assert len({p.name for p in photos}) == len(photos)
    for p in photos[:5]:
        rgb = load_rgb(p)
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
        # colour, not grayscale stored as RGB
        assert np.abs(rgb[..., 0].astype(int) - rgb[..., 2]).mean() > 2


def test_split_is_fixed_by_name_and_disjoint():
    photos = builtin_photos()
    train, val = split_files(photos)
    assert set(train).isdisjoint(val) and len(train) + len(val) == len(photos)
    assert val and train
    again_train, again_val = split_files(list(reversed(photos)))
    assert set(again_val) == set(val)


def test_fixed_crops_are_deterministic_and_in_bounds():
    photos = builtin_photos()[:3]
    a = list(fixed_crops(photos, size=96))
    b = list(fixed_crops(photos, size=96))
    assert [c.key for c in a] == [c.key for c in b]
    assert all(c.pixels.shape == (96, 96, 3) for c in a)
    assert all(np.array_equal(x.pixels, y.pixels) for x, y in zip(a, b, strict=False))


def test_public_api_surface():
    # removing or renaming a public name is a breaking change: update this list on purpose
    assert set(npp_plugin.__all__) == {
        "Codec", "NppError", "Param", "Preprocessor", "__version__", "available_codecs",
        "available_preprocessors", "available_tasks", "codec_for_data", "get_codec",
        "get_preprocessor", "get_task", "hookimpl", "register_bpg_opener",
    }
    for name in npp_plugin.__all__:
        assert hasattr(npp_plugin, name)


def test_eval_builtin_split_matches_the_training_split():
    import pytest

    from npp_plugin.errors import InvalidArgumentError
    from npp_plugin.evaluation.inputs import builtin_images

    val = builtin_images(crop_size=192, split="val")
    train = builtin_images(crop_size=192, split="train")
    everything = builtin_images(crop_size=192)
    assert len(val) + len(train) == len(everything)
    _, val_files = split_files(builtin_photos())
    assert {i.key.split("@")[0].split("/")[-1] for i in val} <= {p.name for p in val_files}
    with pytest.raises(InvalidArgumentError, match="split 'test'"):
        builtin_images(split="test")


def test_split_keeps_stereo_pairs_together():
    from pathlib import Path

    names = ["aloeL.jpg", "aloeR.jpg", "leuvenA.jpg", "leuvenB.jpg", "graf1.png", "graf3.png",
             "motorcycle_left.png", "motorcycle_right.png"] + [f"photo{c}x.jpg" for c in "abcdefghij"]
    train, val = split_files([Path(n) for n in names])
    side = {p.name: "val" for p in val} | {p.name: "train" for p in train}
    for a, b in [("aloeL.jpg", "aloeR.jpg"), ("leuvenA.jpg", "leuvenB.jpg"), ("graf1.png", "graf3.png"),
                 ("motorcycle_left.png", "motorcycle_right.png")]:
        assert side[a] == side[b]
