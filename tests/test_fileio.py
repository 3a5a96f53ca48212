"""Tagged torch files: what save_tagged writes, load_tagged reads back; bad input changes nothing."""

from __future__ import annotations

import pytest
import torch

from npp_plugin.errors import InvalidArgumentError, WeightsError
from npp_plugin.fileio import load_tagged, save_tagged


def test_roundtrip_sets_the_tag(tmp_path):
    """Assert the dict comes back with its tensors and the format tag, from path or bytes."""
    path = save_tagged(tmp_path / "a.pt", "npp-test/1", {"w": torch.arange(4.0), "n": 3})
    assert path == tmp_path / "a.pt"
    back = load_tagged(path, "npp-test/1", who="test", what="a test file")
    assert back["format"] == "npp-test/1" and back["n"] == 3 and torch.equal(back["w"], torch.arange(4.0))
    assert load_tagged(path.read_bytes(), "npp-test/1", who="test", what="a test file")["n"] == 3
    with pytest.raises(WeightsError, match="format tag 'npp-test/1', expected 'other/1'"):
        load_tagged(path, "other/1", who="test", what="another file")


def test_a_matching_tag_inside_is_accepted_and_a_different_one_refused(tmp_path):
    """Assert obj may carry the same tag (as checkpoints do), never another one."""
    save_tagged(tmp_path / "b.pt", "npp-test/1", {"format": "npp-test/1", "x": 1})
    with pytest.raises(InvalidArgumentError, match="carries format tag 'npp-test/2'"):
        save_tagged(tmp_path / "c.pt", "npp-test/1", {"format": "npp-test/2"})
    with pytest.raises(InvalidArgumentError, match="expected a dict"):
        save_tagged(tmp_path / "c.pt", "npp-test/1", [1, 2])  # type: ignore[arg-type]
    assert not (tmp_path / "c.pt").exists()


class Unpicklable:
    def __reduce__(self):
        msg = "cannot pickle this"
        raise TypeError(msg)


def test_an_unsaveable_object_leaves_the_old_file(tmp_path):
    """Assert a failure while serialising keeps the previous file whole and leaves no temp file."""
    path = save_tagged(tmp_path / "d.pt", "npp-test/1", {"v": 1})
    before = path.read_bytes()
    with pytest.raises(TypeError, match="cannot pickle this"):
        save_tagged(path, "npp-test/1", {"v": Unpicklable()})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.pt"]
