"""The README's Python snippets run as written.

Each ```python block runs in a fresh namespace, in an empty working directory, against a
fresh plugin host. A snippet that needs the user's files cannot, and is listed in
``NOT_SELF_CONTAINED`` (by section) with the reason; the list must match the README, so a
snippet that becomes runnable, or a new one that is not, is noticed.
"""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest

import npp_plugin

README = Path(__file__).resolve().parents[1] / "README.md"

#: section heading → why its snippets cannot run here
NOT_SELF_CONTAINED = {
    "Using it": "opens the user's photo.png and round-trips the user's training batch "
                "(`batch` is theirs, not defined in the snippet)",
}

PLUGIN_SECTION = "Writing a codec plugin"


def snippets() -> list[tuple[str, int, str]]:
    """``(section, index within the section, code)`` of every ```python block."""
    out: list[tuple[str, int, str]] = []
    section, block, count = "", None, {}
    for line in README.read_text().splitlines():
        if block is not None:
            if line.startswith("```"):
                count[section] = count.get(section, 0) + 1
                out.append((section, count[section] - 1, "\n".join(block) + "\n"))
                block = None
            else:
                block.append(line)
        elif line.startswith("## "):
            section = line[3:].strip()
        elif line.strip() == "```python":
            block = []
    return out


SNIPPETS = snippets()


def test_the_skip_list_matches_the_readme():
    """Assert every listed section exists and holds Python snippets, and there are snippets
    that do run (the plugin example at least)."""
    sections = {s for s, _, _ in SNIPPETS}
    assert set(NOT_SELF_CONTAINED) <= sections
    assert PLUGIN_SECTION in sections


@pytest.mark.parametrize(("section", "index", "code"), SNIPPETS, ids=[f"{s}-{i}" for s, i, _ in SNIPPETS])
def test_snippet_runs(section, index, code, tmp_path, monkeypatch, plugin_host):
    """Assert the snippet executes without error (or is skipped with the listed reason)."""
    if section in NOT_SELF_CONTAINED:
        pytest.skip(f"README section {section!r}: {NOT_SELF_CONTAINED[section]}")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"README.md:{section}[{index}]", "exec"), {"__name__": f"readme_snippet_{index}"})


def _plugin_module() -> types.ModuleType:
    code = next(c for s, _, c in SNIPPETS if s == PLUGIN_SECTION)
    module = types.ModuleType("my_codec")
    exec(compile(code, "README.md:my_codec.py", "exec"), module.__dict__)
    return module


def test_the_plugin_example_is_a_working_codec(plugin_host, photo):
    """Assert the README's codec, registered as a plugin, encodes and decodes real images:
    fewer bytes and lower PSNR at a higher qp, found from its magic bytes, its option and
    size limit enforced by the base class."""
    from npp_plugin.errors import InvalidArgumentError
    from npp_plugin.evaluation.metrics import psnr_from_mse

    plugin_host.register(_plugin_module(), name="mycodec")
    assert plugin_host.plugin_infos()["mycodec"].codecs == ["mycodec"]
    codec = npp_plugin.get_codec("mycodec")

    def quality(qp: int) -> tuple[int, float]:
        data = codec.encode(photo, qp=qp)
        back = npp_plugin.codec_for_data(data).decode(data)
        assert back.shape == photo.shape and back.dtype == np.uint8
        mse = float(np.mean((back / 255.0 - photo / 255.0) ** 2))
        return len(data), psnr_from_mse(mse)

    (fine_bytes, fine_db), (coarse_bytes, coarse_db) = quality(10), quality(40)
    assert fine_bytes > coarse_bytes and fine_db > coarse_db + 10
    assert fine_db > 45  # step 2 at qp 10: an error of at most 1 level
    with pytest.raises(InvalidArgumentError, match="effort=0 is out of range 1..9"):
        npp_plugin.get_codec("mycodec", effort=0)
    with pytest.raises(InvalidArgumentError, match="larger than the format allows"):
        codec.validate_size(width=65536, height=8)
