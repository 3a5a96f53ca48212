"""Conformance of the in-process BPG codec against ../shared/conformance/bpg (reference
libbpg 0.9.8 vectors and manifest.json): bit-exact decoding, header round trips, and
rate/quality at the reference settings."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from npp_plugin.codecs.bpg import BpgCodec

from .conftest import SHARED, psnr

BPG_DIR = SHARED / "conformance" / "bpg"

pytestmark = [
    pytest.mark.shared,
    pytest.mark.skipif(not (BPG_DIR / "manifest.json").is_file(),
                       reason=f"conformance vectors not found at {BPG_DIR} (../shared beside the repo)"),
    pytest.mark.skipif(not BpgCodec.is_available(),
                       reason=f"libnpp_bpg unavailable: {BpgCodec.unavailable_reason()}"),
]


def _manifest() -> dict:
    path = BPG_DIR / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {"vectors": [], "sources": {}}


MANIFEST = _manifest()
VECTORS = {v["id"]: v for v in MANIFEST["vectors"]}
# The reference setting of criterion (c): bpgenc -q N only (level 8, 4:2:0, 8 bit).
PLAIN = [v for v in MANIFEST["vectors"] if v["bpgenc_args"] == ["-q", str(v["qp"])]]
REF_QPS = (28, 34, 41)


@cache
def _source(path: str) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(Image.open(BPG_DIR / path).convert("RGB")))


def _sha256(a: np.ndarray) -> str:
    if a.dtype == np.uint16:
        a = a.astype(">u2")  # the manifest hashes 16-bit samples big-endian
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


# -- (a) decoding every vector is bit-exact with bpgdec --------------------------------------


@pytest.mark.parametrize("vid", sorted(VECTORS))
def test_decoded_pixels_match_reference_sha256(vid):
    v = VECTORS[vid]
    data = (BPG_DIR / v["bpg"]).read_bytes()
    codec = BpgCodec()
    rgb = codec.decode(data)
    assert rgb.shape == (v["height"], v["width"], 3)
    assert _sha256(rgb) == v["decoded_pixel_sha256"]
    if "decoded_16bit_pixel_sha256" in v:
        wide = codec.decode(data, high_bit_depth=True)
        assert wide.dtype == np.uint16
        assert _sha256(wide) == v["decoded_16bit_pixel_sha256"]


@pytest.mark.parametrize("vid", sorted(VECTORS))
def test_header_info_matches_manifest(vid):
    v = VECTORS[vid]
    h = v["bpg_header"]
    info = BpgCodec().info((BPG_DIR / v["bpg"]).read_bytes())
    names = {0: "gray", 1: "420", 2: "422", 3: "444", 4: "420_video", 5: "422_video"}
    assert (info["width"], info["height"]) == (h["width"], h["height"])
    assert info["chroma"] == names[h["pixel_format"]]
    assert info["bit_depth"] == h["bit_depth"]
    assert info["color_space"] == ("ycbcr", "rgb")[h["color_space"]]
    assert info["limited_range"] == bool(h["limited_range_flag"])
    assert not info["alpha"] and not info["animation"] and info["extensions"] == []


# -- (b) our files parse back; lossless is exact ----------------------------------------------


@pytest.mark.parametrize(
    "options",
    [{}, {"chroma": "444"}, {"chroma": "422_video", "bit_depth": 10}, {"chroma": "gray"},
     {"color_space": "ycbcr_bt2020", "limited_range": True, "bit_depth": 12},
     {"color_space": "ycgco", "chroma": "420_video"}, {"fast": True}],
)
def test_our_files_parse_back_to_what_we_wrote(options):
    src = _source("src/chelsea_full.png")  # 451 x 300: odd width, padding in both directions
    codec = BpgCodec(**options)
    data = codec.encode(src, qp=32)
    info = codec.info(data)
    assert (info["width"], info["height"]) == (451, 300)
    assert info["chroma"] == options.get("chroma", "420")
    assert info["bit_depth"] == options.get("bit_depth", 8)
    assert info["color_space"] == options.get("color_space", "ycbcr")
    assert info["limited_range"] == options.get("limited_range", False)
    assert psnr(src, codec.decode(data)) > (30 if options.get("chroma") != "gray" else 15)


@pytest.mark.parametrize("name", ["chelsea_full", "astronaut_c256"])
def test_lossless_round_trip_is_exact(name):
    src = _source(f"src/{name}.png")
    codec = BpgCodec(lossless=True)
    data = codec.encode(src, qp=0)
    assert codec.info(data)["color_space"] == "rgb" and codec.info(data)["chroma"] == "444"
    assert np.array_equal(codec.decode(data), src)
    # like bpgenc -lossless (which ignores -q) the file does not depend on the QP given
    assert all(codec.encode(src, qp=qp) == data for qp in (29, 51))
    # and x265's lossless QP 4 lands within 1 % of the reference's lossless file (measured 0.2 %)
    ref = VECTORS[f"{name}_lossless"]["bpg_bytes"]
    assert abs(len(data) / ref - 1) < 0.01


# -- (c) rate and quality at the reference settings -------------------------------------------


@cache
def _point(source: str, qp: int) -> tuple[float, float]:
    """(bpp, RGB PSNR) of our level-8 4:2:0 8-bit encode."""
    src = _source(source)
    data = BpgCodec().encode(src, qp=qp)
    return len(data) * 8 / (src.shape[0] * src.shape[1]), psnr(src, BpgCodec().decode(data))


PLAIN_AT_REF = [v["id"] for v in PLAIN if v["qp"] in REF_QPS]


@pytest.mark.slow
@pytest.mark.parametrize("vid", PLAIN_AT_REF)
def test_quality_at_the_reference_rate(vid):
    """At the bpp of the reference file, our PSNR is at most 0.15 dB below bpgenc's.

    Our rate-PSNR curve is sampled at integer QPs around the reference QP and interpolated
    linearly in log(bpp) at the reference bpp: this compares the two encoders' operating
    curves, independent of how each x265 version maps QP to lambda. Debian's x265 3.5 is
    measured -0.03..+0.09 dB from bpgenc here (0.01-0.20 dB better with x265's own lambda
    tables); more than 0.3 dB better would mean we compared the wrong thing, so that is an
    error too.
    """
    v = VECTORS[vid]
    pts = sorted(_point(v["source"], q) for q in range(v["qp"] - 1, v["qp"] + 3))
    bpp = np.log([p[0] for p in pts])
    target = np.log(v["bpp"])
    assert bpp[0] <= target <= bpp[-1], f"reference bpp {v['bpp']} outside our sampled range {pts}"
    ours = float(np.interp(target, bpp, [p[1] for p in pts]))
    assert -0.15 <= ours - v["psnr_rgb"] <= 0.3, f"{vid}: ours {ours:.3f} dB vs bpgenc {v['psnr_rgb']:.3f} dB"


@pytest.mark.slow
def test_bpp_and_psnr_at_the_same_qp_within_issue_tolerance():
    """Issue criterion (c): at the same QP, bpp within 5 % and RGB PSNR within 0.15 dB of
    bpgenc's, on all 15 reference points. Holds because x265's lambda tables are shifted
    one QP (``BpgCodec.x265_lambda``); with x265 3.5's own tables every point misses
    (+5-10 % bpp, +0.2-0.5 dB: test_x265_own_lambda_misses_the_reference)."""
    assert BpgCodec.x265_lambda(8) == "bpgenc"
    misses = []
    for v in PLAIN:
        if v["qp"] not in REF_QPS:
            continue
        bpp, q = _point(v["source"], v["qp"])
        if abs(bpp / v["bpp"] - 1) > 0.05 or abs(q - v["psnr_rgb"]) > 0.15:
            misses.append((v["id"], round(bpp / v["bpp"] - 1, 4), round(q - v["psnr_rgb"], 3)))
    assert not misses, misses


OTHER_FORMATS = [v["id"] for v in VECTORS.values() if v["id"].endswith(("_444", "_b10"))]


@pytest.mark.parametrize("vid", OTHER_FORMATS)
def test_other_formats_at_the_same_qp(vid):
    """The same tolerance holds for bpgenc's 4:4:4 and 10-bit vectors (their own x265
    builds and lambda tables, each shifted)."""
    v = VECTORS[vid]
    args = v["bpgenc_args"]
    opts = {"chroma": args[args.index("-f") + 1]} if "-f" in args else {}
    if "-b" in args:
        opts["bit_depth"] = int(args[args.index("-b") + 1])
    assert BpgCodec.x265_lambda(opts.get("bit_depth", 8)) == "bpgenc"
    src = _source(v["source"])
    codec = BpgCodec(**opts)
    data = codec.encode(src, qp=v["qp"])
    bpp = len(data) * 8 / (src.shape[0] * src.shape[1])
    assert abs(bpp / v["bpp"] - 1) <= 0.05, f"{vid}: bpp {bpp:.4f} vs bpgenc {v['bpp']:.4f}"
    assert abs(psnr(src, codec.decode(data)) - v["psnr_rgb"]) <= 0.15


_OWN_LAMBDA_CHILD = """
import json, sys
import numpy as np
from PIL import Image
from npp_plugin.codecs.bpg import BpgCodec
src = np.asarray(Image.open(sys.argv[1]).convert("RGB"))
print(json.dumps([BpgCodec.x265_lambda(8), len(BpgCodec().encode(src, qp=int(sys.argv[2])))]))
"""


def _child(code: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


def test_x265_own_lambda_misses_the_reference():
    """NPP_BPG_X265_LAMBDA=x265 (read once per process, hence a child process) keeps x265's
    own tables: the same QP then costs clearly more bits than bpgenc's file."""
    v = VECTORS["astronaut_c256_q34"]
    out = _child(_OWN_LAMBDA_CHILD, str(BPG_DIR / v["source"]), str(v["qp"]),
                 env={"NPP_BPG_X265_LAMBDA": "x265"})
    assert out.returncode == 0, out.stderr
    state, nbytes = json.loads(out.stdout)
    assert state == "x265"
    assert nbytes / v["bpg_bytes"] > 1.04
    ours = BpgCodec().encode(_source(v["source"]), qp=v["qp"])
    assert abs(len(ours) / v["bpg_bytes"] - 1) <= 0.05


def test_unknown_lambda_setting_is_a_clear_error():
    out = _child(_OWN_LAMBDA_CHILD, str(BPG_DIR / VECTORS["astronaut_c256_q34"]["source"]), "34",
                 env={"NPP_BPG_X265_LAMBDA": "hm"})
    assert out.returncode != 0
    assert "InvalidArgumentError" in out.stderr
    assert "NPP_BPG_X265_LAMBDA=hm is not understood; use bpgenc (the default) or x265" in out.stderr


def test_shared_dir_layout():
    assert Path(BPG_DIR / "FORMAT.md").is_file()
    assert len(VECTORS) >= 23 and len(PLAIN_AT_REF) == 15
