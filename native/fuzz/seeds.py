"""Seed corpora of the libFuzzer harnesses: ``python native/fuzz/seeds.py OUT_DIR``.

Writes OUT_DIR/<target>/ for fuzz_container, fuzz_decode and fuzz_encode: the conformance
vectors (../shared/conformance/bpg/bpg/*.bpg, the lossless ones left out: at 115-230 kB they
slow every execution down) and the project's own encodes of small pictures in every pixel
format, bit depth, colour space and level; for fuzz_encode, option bytes in its input layout
(see fuzz_encode.c) with a few sample patterns. Used by tests/test_native_fuzz.py and
native/fuzz/campaign.sh.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT.parent / "shared" / "conformance" / "bpg" / "bpg"
MAX_SEED = 16384  # bytes; also the harnesses' -max_len

#: (options, size) of the own encodes: every chroma format, depth, colour space, range,
#: lossless, hash and a spread of levels.
OWN = [
    ({"fast": True}, (16, 16)), ({}, (24, 40)), ({"chroma": "444"}, (17, 23)),
    ({"chroma": "422", "level": 1}, (32, 48)), ({"chroma": "gray"}, (20, 9)),
    ({"chroma": "420_video"}, (33, 31)), ({"chroma": "422_video", "level": 5}, (40, 24)),
    ({"bit_depth": 10}, (24, 24)), ({"bit_depth": 12, "chroma": "444"}, (16, 40)),
    ({"color_space": "rgb"}, (24, 16)), ({"color_space": "ycgco"}, (18, 30)),
    ({"color_space": "ycbcr_bt709", "limited_range": True}, (40, 40)),
    ({"color_space": "ycbcr_bt2020", "bit_depth": 10}, (30, 18)),
    ({"lossless": True}, (16, 16)), ({"hash": True}, (48, 32)), ({"level": 9}, (64, 64)),
]


def own_encodes() -> list[bytes]:
    import numpy as np

    from npp_plugin.codecs.bpg import BpgCodec

    rng = np.random.default_rng(2024)
    out = []
    for k, (opts, (h, w)) in enumerate(OWN):
        # smooth gradients plus noise: both flat and detailed blocks
        y, x = np.mgrid[0:h, 0:w]
        img = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) % 256], -1)
        img = np.clip(img + rng.integers(-20, 21, img.shape), 0, 255).astype(np.uint8)
        out.append(BpgCodec(**opts).encode(img, qp=(22, 30, 38, 46)[k % 4]))
    return out


def encode_inputs() -> list[bytes]:
    """fuzz_encode inputs: 11 option bytes (w, h, channels, qp, format, depth, colour space,
    range, lossless, level, hash), then samples."""
    seeds = []
    for k, (w, h, gray, qp, fmt, depth, cs, lim, lossless, level, hsh) in enumerate([
        (15, 15, 0, 30, 1, 0, 0, 0, 0, 0, 0), (23, 16, 0, 22, 3, 1, 0, 1, 0, 8, 1),
        (8, 31, 1, 40, 0, 2, 2, 0, 0, 1, 0), (63, 63, 0, 0, 3, 0, 1, 0, 1, 5, 0),
        (40, 9, 0, 51, 4, 1, 3, 0, 0, 3, 0), (9, 40, 0, 35, 5, 2, 4, 1, 0, 9, 1),
        (31, 31, 0, 28, 2, 0, 2, 0, 0, 2, 0), (0, 0, 0, 30, 1, 0, 0, 0, 0, 0, 0),
    ]):
        head = bytes([w, h, gray, qp, fmt, depth, cs, lim, lossless, level, hsh])
        seeds.append(head + bytes((i * (k + 3) + (i >> 4) * 7) & 255 for i in range(64 + 97 * k)))
    return seeds


def write(out: Path) -> dict[str, Path]:
    own = own_encodes()
    vectors = [p.read_bytes() for p in sorted(VECTORS.glob("*.bpg"))
               if p.stat().st_size <= MAX_SEED] if VECTORS.is_dir() else []
    corpora = {"fuzz_container": vectors + own, "fuzz_decode": vectors + own,
               "fuzz_encode": encode_inputs()}
    dirs = {}
    for target, seeds in corpora.items():
        d = out / target
        d.mkdir(parents=True, exist_ok=True)
        for data in seeds:
            (d / hashlib.sha1(data).hexdigest()).write_bytes(data)
        dirs[target] = d
    return dirs


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python native/fuzz/seeds.py OUT_DIR")
    for target, d in write(Path(sys.argv[1])).items():
        print(f"{target}: {sum(1 for _ in d.iterdir())} seeds in {d}")
