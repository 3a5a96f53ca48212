# SPDX-License-Identifier: GPL-2.0-or-later
"""Hostile input: how long refusing a decompression bomb takes, next to decoding a real
small file, for every codec.

Run:
    .venv/bin/pytest tests/benchmarks/test_bench_hostile.py --benchmark-only -s \
        --benchmark-columns=median,iqr,min,rounds

Group ``refuse-<codec>``: ``bomb`` = ``decode`` of a file whose header claims 16384 x 16384
(tests/test_pixel_limit.py builds them; PixelLimitError from the header), ``small`` =
``decode`` of a real 96x64 file of the same codec. The ratio small / bomb is printed and stored
in ``extra_info``: how many bomb refusals cost one tiny decode.
"""

from __future__ import annotations

import pytest

from npp_plugin.errors import PixelLimitError

from ..conftest import CODECS, require_codec
from ..test_pixel_limit import BOMBS, _small

_MEDIANS: dict[str, float] = {}


def _refuse(codec, data) -> None:
    try:
        codec.decode(data)
    except PixelLimitError:
        return
    msg = "the bomb was not refused"
    raise AssertionError(msg)


@pytest.mark.parametrize("name", CODECS)
@pytest.mark.parametrize("what", ["small", "bomb"])
def test_refusal_against_a_small_decode(benchmark, name, what):
    codec = require_codec(name)
    benchmark.group = f"refuse-{name}"
    if what == "bomb":
        benchmark(_refuse, codec, BOMBS[name]())
    else:
        benchmark(codec.decode, _small(name))
    _MEDIANS[f"{name}-{what}"] = benchmark.stats.stats.median
    if f"{name}-small" in _MEDIANS and f"{name}-bomb" in _MEDIANS:  # whichever ran second
        ratio = _MEDIANS[f"{name}-small"] / _MEDIANS[f"{name}-bomb"]
        benchmark.extra_info["ratio_small_over_bomb"] = round(ratio, 1)
        print(f"\n{name}: refusal {_MEDIANS[f'{name}-bomb'] * 1e3:.3f} ms median, "
              f"96x64 decode {_MEDIANS[f'{name}-small'] * 1e3:.3f} ms: {ratio:.1f}x")
