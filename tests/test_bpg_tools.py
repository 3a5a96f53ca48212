"""``npp-bpgenc`` / ``npp-bpgdec`` as drop-ins for libbpg 0.9.8's bpgenc / bpgdec: installed
on PATH, driven unchanged by CompressAI's bench codec and by the paper's two command lines,
bpgenc's options with bpgenc's meaning, and a one-line error for what they cannot do.

The tools are run by name from the environment's scripts folder (``.venv/bin``), where
``pip install`` put them, as a shell with the environment active finds them."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys
import sysconfig
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import npp_plugin
from npp_plugin.codecs.bpg import BpgCodec

from .conftest import SHARED, psnr

TOOLS = ("npp-bpgenc", "npp-bpgdec")
SCRIPTS = Path(sysconfig.get_path("scripts"))
ENV = {**os.environ, "PATH": f"{SCRIPTS}{os.pathsep}{os.environ.get('PATH', '')}"}
BPG_DIR = SHARED / "conformance" / "bpg"

pytestmark = pytest.mark.skipif(
    not BpgCodec.is_available(), reason=f"libnpp_bpg unavailable: {BpgCodec.unavailable_reason()}"
)


def run(*args, cwd: Path, ok: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([str(a) for a in args], cwd=cwd, env=ENV, capture_output=True, timeout=300)
    if ok:
        assert r.returncode == 0, f"{args}: exit {r.returncode}: {r.stderr.decode()}"
    return r


def png_pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="module")
def small(photo) -> np.ndarray:
    """A 96x72 crop of the photo: quick at level 8."""
    return np.ascontiguousarray(photo[40:112, 60:156])


# -- installation ----------------------------------------------------------------------------


def test_installed_on_path_as_built():
    """pip put both tools in the environment's scripts folder, as the build made them, under
    names that leave a system bpgenc/bpgdec alone."""
    from npp_plugin._native import binding as _lib

    for name in TOOLS:
        found = shutil.which(name, path=str(SCRIPTS))
        assert found, f"{name} is not in {SCRIPTS}: run scripts/setup.sh (or pip install -e .)"
        built = _lib.library_path().parent / name
        assert Path(found).read_bytes() == built.read_bytes(), (
            f"{found} differs from {built}: native/ changed since the install; rerun scripts/setup.sh")
    assert shutil.which("bpgenc", path=str(SCRIPTS)) is None
    assert shutil.which("bpgdec", path=str(SCRIPTS)) is None


def test_help_first_line_is_bpgencs_with_our_version(tmp_path):
    """CompressAI reads the version as word 5 of ``bpgenc -h`` (which exits 1, as bpgenc)."""
    version = BpgCodec().version()  # "1.0.0 (x265 build ..., libde265 ...)"
    r = run("npp-bpgenc", "-h", cwd=tmp_path, ok=False)
    assert r.returncode == 1
    out = r.stdout.decode("ascii")
    assert out.splitlines()[0] == f"BPG Image Encoder version {version}"
    assert out.split()[4] == version.split()[0]
    for option in ("-o", "-q", "-f", "-c", "-b", "-lossless", "-e", "-m", "-a", "-fps", "-loop",
                   "-delayfile", "-alphaq", "-premul", "-limitedrange", "-hash", "-keepmetadata",
                   "-v"):
        assert f"\n{option} " in out, option
    r = run("npp-bpgdec", "-h", cwd=tmp_path, ok=False)
    assert r.returncode == 1
    assert r.stdout.decode("ascii").splitlines()[0] == f"BPG Image Decoder version {version}"
    # no input file: the short help, status 1, as bpgenc/bpgdec
    assert run("npp-bpgenc", cwd=tmp_path, ok=False).returncode == 1
    assert run("npp-bpgdec", cwd=tmp_path, ok=False).stdout.startswith(b"BPG Image Decoder")


# -- CompressAI's bench and the paper's command lines -----------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("compressai") is None, reason="compressai not installed")
def test_compressai_bench_runs_unchanged_and_matches_in_process_codec(tmp_path):
    """``python -m compressai.utils.bench bpg DIR --encoder-path npp-bpgenc --decoder-path
    npp-bpgdec`` at three QPs: its bpp and PSNR (means over the images) are those of
    ``get_codec("bpg")`` with the settings its BPG codec asks for (``-f 444 -e x265 -c ycbcr
    -b 8`` by default)."""
    from npp_plugin.datasets import builtin_photos, load_rgb

    photos = {p.name: p for p in builtin_photos()}
    names = [n for n in ("astronaut.png", "chelsea.png", "coffee.png") if n in photos]
    names = (names + [n for n in sorted(photos) if n not in names])[:3]
    assert len(names) == 3, f"need three built-in photos, found {sorted(photos)}"
    data = tmp_path / "photos"
    data.mkdir()
    images = {}
    for name, (h, w) in zip(names, [(165, 197), (231, 170), (181, 223)], strict=True):  # no side a multiple of 8
        rgb = load_rgb(photos[name])
        y, x = (rgb.shape[0] - h) // 2, (rgb.shape[1] - w) // 2
        path = data / f"{Path(name).stem}.png"
        Image.fromarray(np.ascontiguousarray(rgb[y : y + h, x : x + w])).save(path)
        images[path.name] = png_pixels(path)

    qps = [28, 34, 41]
    r = run(sys.executable, "-m", "compressai.utils.bench", "bpg", data, "-q", ",".join(map(str, qps)),
            "--metrics", "psnr-rgb", "--encoder-path", "npp-bpgenc", "--decoder-path", "npp-bpgdec",
            cwd=tmp_path)
    out = json.loads(r.stdout)
    assert out["name"] == "BPG 8b 444 x265 ycbcr"
    assert "1.0.0" in out["description"]  # bpgenc -h's version word, as CompressAI reads it

    codec = npp_plugin.get_codec("bpg", chroma="444")
    for i, qp in enumerate(qps):
        bpp, db = [], []
        for name in sorted(images):
            rgb = images[name]
            bits = codec.encode(rgb, qp=qp)
            bpp.append(len(bits) * 8 / (rgb.shape[0] * rgb.shape[1]))
            db.append(psnr(rgb, codec.decode(bits)))
        # Equal bpp: the same files. Its PSNR takes a float32 torch mean, whose rounding
        # depends on summation order; one sample one level off would move it ~4e-4 dB.
        assert out["results"]["bpp"][i] == pytest.approx(sum(bpp) / 3, rel=1e-12), qp
        assert out["results"]["psnr-rgb"][i] == pytest.approx(sum(db) / 3, abs=1e-4), qp
    assert out["results"]["bpp"][0] > out["results"]["bpp"][1] > out["results"]["bpp"][2]


def test_paper_command_lines(tmp_path, photo):
    """``bpgenc -q QP -o x.bpg x.png`` then ``bpgdec -o y.png x.bpg``: the file is the
    in-process codec's at bpgenc's defaults, and y.png holds its decoded pixels."""
    Image.fromarray(photo).save(tmp_path / "x.png")
    run("npp-bpgenc", "-q", 34, "-o", "x.bpg", "x.png", cwd=tmp_path)
    run("npp-bpgdec", "-o", "y.png", "x.bpg", cwd=tmp_path)
    codec = npp_plugin.get_codec("bpg")
    data = (tmp_path / "x.bpg").read_bytes()
    assert data == codec.encode(photo, qp=34)
    y = png_pixels(tmp_path / "y.png")
    assert np.array_equal(y, codec.decode(data))
    assert 30 < psnr(photo, y) < 40


def test_default_output_names(tmp_path, small):
    """Without -o: out.bpg and out.png in the current folder, as bpgenc/bpgdec."""
    Image.fromarray(small).save(tmp_path / "x.png")
    run("npp-bpgenc", "x.png", cwd=tmp_path)
    run("npp-bpgdec", "out.bpg", cwd=tmp_path)
    codec = npp_plugin.get_codec("bpg")
    assert (tmp_path / "out.bpg").read_bytes() == codec.encode(small, qp=29)  # default -q 29
    assert np.array_equal(png_pixels(tmp_path / "out.png"), codec.decode(codec.encode(small, qp=29)))


# -- bpgenc's options, with bpgenc's meaning --------------------------------------------------

# (bpgenc arguments, the in-process codec's options and qp for the same file)
MEANINGS = [
    ([], {}),
    (["-q28"], {"qp": 28}),  # getopt: value attached
    (["-f", "444"], {"chroma": "444"}),
    (["-f", "422"], {"chroma": "422"}),
    (["-f", "420_video"], {"chroma": "420_video"}),
    (["-f", "422_video"], {"chroma": "422_video"}),
    (["-c", "ycgco"], {"color_space": "ycgco"}),
    (["-c", "ycbcr_bt709", "-f", "444"], {"color_space": "ycbcr_bt709", "chroma": "444"}),
    (["-c", "ycbcr_bt2020"], {"color_space": "ycbcr_bt2020"}),
    (["-c", "rgb"], {"color_space": "rgb"}),  # RGB is coded 4:4:4 ...
    (["-c", "rgb", "-f", "420"], {"color_space": "rgb"}),  # ... whatever -f says
    (["-b", "10"], {"bit_depth": 10}),
    (["-b", "12", "-limitedrange"], {"bit_depth": 12, "limited_range": True}),
    # x265 codes lossless at QP 4 whatever -q says, and so does the library whatever QP it is given
    (["-lossless"], {"lossless": True, "qp": 51}),
    (["-lossless", "-q", "40"], {"lossless": True, "qp": 0}),
    (["-limitedrange", "-lossless"], {"lossless": True}),  # -lossless resets the range
    (["-m", "1"], {"level": 1}),
    (["-m", "5"], {"level": 5}),
    (["-m", "0"], {"level": 1}),  # bpgenc clamps the level to 1..9
    (["-m", "12"], {"level": 9}),
    (["-hash"], {"hash": True}),
    (["--hash"], {"hash": True}),
    (["-ha"], {"hash": True}),  # unique abbreviation (getopt_long_only)
    (["-fast"], {"fast": True}),
    (["-f", "gray"], {"chroma": "gray"}),
    # no effect on an opaque still without metadata or gamma chunk, nor in bpgenc:
    (["-e", "x265", "-v", "-alphaq", "12", "-premul", "-keepmetadata", "-loop", "2", "-fps", "30",
      "-delayfile", "delays.txt"], {}),
]


@pytest.mark.parametrize(("args", "same_as"), MEANINGS, ids=[" ".join(a) or "defaults" for a, _ in MEANINGS])
def test_option_means_what_it_means_to_bpgenc(tmp_path, small, args, same_as):
    Image.fromarray(small).save(tmp_path / "x.png")
    run("npp-bpgenc", *args, "-o", "x.bpg", "x.png", cwd=tmp_path)
    opts = dict(same_as)
    qp = opts.pop("qp", 29)
    assert (tmp_path / "x.bpg").read_bytes() == BpgCodec(**opts).encode(small, qp=qp)


def test_options_after_the_file_and_in_any_order(tmp_path, small):
    """GNU getopt permutes (bpgenc uses it): ``bpgenc x.png -q 30 -o y.bpg`` works, and a
    later option overrides an earlier one."""
    Image.fromarray(small).save(tmp_path / "x.png")
    run("npp-bpgenc", "x.png", "-q", 40, "-f", "444", "-q", 30, "-o", "y.bpg", cwd=tmp_path)
    assert (tmp_path / "y.bpg").read_bytes() == BpgCodec(chroma="444").encode(small, qp=30)


def test_gray_and_palette_png_as_bpgenc_reads_them(tmp_path, small):
    """Gray PNG -> a gray BPG in YCbCr whatever -f/-c say; palette PNG -> RGB."""
    gray = np.ascontiguousarray(small[..., 1])
    Image.fromarray(gray).save(tmp_path / "g.png")
    run("npp-bpgenc", "-f", "444", "-c", "rgb", "-o", "g.bpg", "g.png", cwd=tmp_path)
    codec = BpgCodec()
    info = codec.info((tmp_path / "g.bpg").read_bytes())
    assert (info["chroma"], info["color_space"]) == ("gray", "ycbcr")
    dec = codec.decode((tmp_path / "g.bpg").read_bytes())
    assert np.array_equal(dec[..., 0], dec[..., 2]) and psnr(gray, dec[..., 0]) > 30

    pal = Image.fromarray(small).quantize(64)
    pal.save(tmp_path / "p.png")
    run("npp-bpgenc", "-o", "p.bpg", "p.png", cwd=tmp_path)
    rgb = np.asarray(pal.convert("RGB"))
    assert (tmp_path / "p.bpg").read_bytes() == codec.encode(rgb, qp=29)


def test_premul_sets_libpngs_alpha_mode_as_bpgenc_does(tmp_path, small):
    """bpgenc -premul asks libpng for associated alpha with linear output, which linearises
    the colours of a file with a gAMA chunk even without alpha: not ignored here either."""
    Image.fromarray(small).save(tmp_path / "x.png")
    raw = (tmp_path / "x.png").read_bytes()
    gama = b"gAMA" + struct.pack(">I", 45455)  # 1/2.2
    chunk = struct.pack(">I", 4) + gama + struct.pack(">I", zlib.crc32(gama))
    (tmp_path / "g.png").write_bytes(raw[:33] + chunk + raw[33:])  # after the IHDR chunk
    run("npp-bpgenc", "-o", "plain.bpg", "g.png", cwd=tmp_path)
    run("npp-bpgenc", "-premul", "-o", "premul.bpg", "g.png", cwd=tmp_path)
    codec = BpgCodec()
    plain = (tmp_path / "plain.bpg").read_bytes()
    assert plain == codec.encode(small, qp=29)  # gAMA alone changes nothing, as in bpgenc
    linear = codec.decode((tmp_path / "premul.bpg").read_bytes()).astype(float)
    expected = 255 * (small / 255.0) ** 2.2
    assert abs(linear.mean() - expected.mean()) < 2 < small.mean() - linear.mean()


def test_jpeg_input_keeps_its_colour_space_and_chroma_layout(tmp_path, small):
    """As bpgenc: a 4:2:0 or 4:2:2 JPEG keeps its layout (-f applies to 4:4:4 ones), -c and
    -limitedrange do not apply; a gray JPEG stays gray. YCbCr goes through RGB here, which
    a note says."""
    codec = BpgCodec()
    cases = [("420.jpg", {"subsampling": 2}, ["-f", "444"], "420"),
             ("422.jpg", {"subsampling": 1}, ["-f", "420"], "422"),
             ("444.jpg", {"subsampling": 0}, ["-f", "422"], "422")]
    for name, save, args, chroma in cases:
        Image.fromarray(small).save(tmp_path / name, quality=95, **save)
        r = run("npp-bpgenc", *args, "-c", "ycgco", "-limitedrange", "-q", 20, "-o", "x.bpg", name,
                cwd=tmp_path)
        assert b"coded through RGB" in r.stderr and r.stderr.count(b"\n") == 1
        data = (tmp_path / "x.bpg").read_bytes()
        info = codec.info(data)
        assert (info["chroma"], info["color_space"], info["limited_range"]) == (chroma, "ycbcr", False)
        assert psnr(png_pixels(tmp_path / name), codec.decode(data)) > 33, name
    Image.fromarray(np.ascontiguousarray(small[..., 0])).save(tmp_path / "g.jpg", quality=95)
    r = run("npp-bpgenc", "-o", "g.bpg", "g.jpg", cwd=tmp_path)
    assert r.stderr == b""  # gray and RGB JPEGs give bpgenc's planes as they are
    assert codec.info((tmp_path / "g.bpg").read_bytes())["chroma"] == "gray"


def _extensions(data: bytes) -> list[tuple[int, bytes]]:
    """The extension records of a BPG file (FORMAT.md section 3)."""

    def ue7(pos: int) -> tuple[int, int]:
        v = 0
        while True:
            b = data[pos]
            pos += 1
            v = v << 7 | (b & 0x7F)
            if not b & 0x80:
                return v, pos

    assert data[5] & 0x08, "extension_present_flag not set"
    pos = 6
    for _ in range(3):
        _, pos = ue7(pos)
    length, pos = ue7(pos)
    end, records = pos + length, []
    while pos < end:
        tag, pos = ue7(pos)
        n, pos = ue7(pos)
        records.append((tag, data[pos : pos + n]))
        pos += n
    return records


def test_keepmetadata_stores_icc_and_exif_as_bpgenc(tmp_path, small):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(small).save(tmp_path / "icc.png", icc_profile=icc)
    run("npp-bpgenc", "-o", "plain.bpg", "icc.png", cwd=tmp_path)
    run("npp-bpgenc", "-keepmetadata", "-o", "meta.bpg", "icc.png", cwd=tmp_path)
    plain, meta = (tmp_path / "plain.bpg").read_bytes(), (tmp_path / "meta.bpg").read_bytes()
    codec = BpgCodec()
    assert plain == codec.encode(small, qp=29)  # without -keepmetadata, bpgenc drops it
    assert _extensions(meta) == [(2, icc)]
    assert codec.info(meta)["extensions"] == ["icc"]
    assert np.array_equal(codec.decode(meta), codec.decode(plain))
    r = run("npp-bpgdec", "-i", "meta.bpg", cwd=tmp_path)
    assert r.stdout.decode().splitlines()[1:] == ["Extension data:", f"  tag=2 (ICC profile) length={len(icc)}"]

    exif = Image.Exif()
    exif[0x010F] = "npp_plugin test"  # Make
    Image.fromarray(small).save(tmp_path / "e.jpg", quality=95, exif=exif, icc_profile=icc)
    run("npp-bpgenc", "-keepmetadata", "-o", "e.bpg", "e.jpg", cwd=tmp_path)
    records = _extensions((tmp_path / "e.bpg").read_bytes())
    assert records == [(1, exif.tobytes()[6:]), (2, icc)]  # APP1 payload after "Exif\0\0"


# -- bpgdec ---------------------------------------------------------------------------------


def test_output_format_follows_bpgdecs_rule(tmp_path, small):
    """PPM when the name has no '.' or ends in .ppm (any case), else PNG; -b 16 for PNG."""
    codec = BpgCodec(bit_depth=10)
    data = codec.encode(small, qp=30)
    (tmp_path / "x.bpg").write_bytes(data)
    (tmp_path / "d.x").mkdir()
    rgb8, rgb16 = codec.decode(data), codec.decode(data, high_bit_depth=True)
    h, w = small.shape[:2]
    for name in ("out", "out.PPM", "d.x/out.ppm"):
        run("npp-bpgdec", "-o", name, "x.bpg", cwd=tmp_path)
        head = f"P6\n{w} {h}\n255\n".encode()
        assert (tmp_path / name).read_bytes() == head + rgb8.tobytes(), name
    for name in ("out.png", "d.x/out", "OUT.PNG"):
        run("npp-bpgdec", "-o", name, "x.bpg", cwd=tmp_path)
        assert np.array_equal(png_pixels(tmp_path / name), rgb8), name
    run("npp-bpgdec", "-b", 16, "-o", "w.png", "x.bpg", cwd=tmp_path)
    assert _png16(tmp_path / "w.png").tobytes() == rgb16.astype(">u2").tobytes()


def _png16(path: Path) -> np.ndarray:
    """Samples of an RGB 16-bit PNG (Pillow would reduce them to 8 bits)."""
    raw = path.read_bytes()
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(raw):
        n, kind = struct.unpack(">I4s", raw[pos : pos + 8])
        body = raw[pos + 8 : pos + 8 + n]
        if kind == b"IHDR":
            width, height, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert (depth, ctype) == (16, 2)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    rows, stride, prev = zlib.decompress(idat), width * 6, bytearray(width * 6)
    out = bytearray()
    for y in range(height):
        f, line = rows[y * (stride + 1)], bytearray(rows[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - 6] if i >= 6 else 0
            b, c = prev[i], prev[i - 6] if i >= 6 else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xFF
            elif f == 2:
                line[i] = (line[i] + b) & 0xFF
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        out += line
        prev = line
    return np.frombuffer(bytes(out), dtype=">u2").reshape(height, width, 3)


def test_info_lines_are_bpgdecs(tmp_path, small):
    Image.fromarray(small).save(tmp_path / "x.png")
    run("npp-bpgenc", "-b", 10, "-f", "444", "-limitedrange", "-c", "ycbcr_bt709", "-o", "x.bpg", "x.png",
        cwd=tmp_path)
    r = run("npp-bpgdec", "-i", "x.bpg", cwd=tmp_path)
    h, w = small.shape[:2]
    assert r.stdout.decode() == (f"size={w}x{h} color_space=YCbCr_BT709 format=4:4:4 limited_range=1 "
                                 "bit_depth=10 animation=0\n")


def _sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _manifest() -> list[dict]:
    path = BPG_DIR / "manifest.json"
    return json.loads(path.read_text())["vectors"] if path.is_file() else []


VECTORS = {v["id"]: v for v in _manifest()}


@pytest.mark.parametrize("vid", sorted(VECTORS) or ["none"])
@pytest.mark.usefixtures("shared_dir")
@pytest.mark.shared
def test_bpgdec_on_reference_files_gives_bpgdecs_output(tmp_path, vid):
    """The reference bpgenc's files: the same -i line and the same pixels as bpgdec's
    (8-bit PNG, and -b 16 for the files above 8 bits)."""
    v = VECTORS[vid]
    src = BPG_DIR / v["bpg"]
    assert run("npp-bpgdec", "-i", src, cwd=tmp_path).stdout.decode() == v["bpgdec_info"] + "\n"
    run("npp-bpgdec", "-o", "y.png", src, cwd=tmp_path)
    assert _sha256(png_pixels(tmp_path / "y.png")) == v["decoded_pixel_sha256"]
    if "decoded_16bit_pixel_sha256" in v:
        run("npp-bpgdec", "-b", "16", "-o", "w.png", src, cwd=tmp_path)
        assert _sha256(_png16(tmp_path / "w.png")) == v["decoded_16bit_pixel_sha256"]


@pytest.mark.slow
@pytest.mark.parametrize("vid", sorted(VECTORS) or ["none"])
@pytest.mark.usefixtures("shared_dir")
@pytest.mark.shared
def test_bpgencs_own_command_lines_give_bpgencs_kind_of_file(tmp_path, vid):
    """Each reference file's bpgenc command line, run through npp-bpgenc: the same header
    (bpgdec -i line), bpp within 5 % and RGB PSNR within 0.15 dB of bpgenc's file (the
    in-process codec's tolerance, test_bpg_conformance), lossless files lossless."""
    v = VECTORS[vid]
    src = BPG_DIR / v["source"]
    run("npp-bpgenc", *v["bpgenc_args"], "-o", "x.bpg", src, cwd=tmp_path)
    assert run("npp-bpgdec", "-i", "x.bpg", cwd=tmp_path).stdout.decode() == v["bpgdec_info"] + "\n"
    run("npp-bpgdec", "-o", "y.png", "x.bpg", cwd=tmp_path)
    ref, out = png_pixels(src), png_pixels(tmp_path / "y.png")
    if v["decoded_equals_source"]:
        assert np.array_equal(out, ref)
        return
    bpp = (tmp_path / "x.bpg").stat().st_size * 8 / (v["width"] * v["height"])
    assert abs(bpp / v["bpp"] - 1) <= 0.05, f"bpp {bpp:.4f} vs bpgenc {v['bpp']:.4f}"
    assert abs(psnr(ref, out) - v["psnr_rgb"]) <= 0.15


# -- what they cannot do: one line naming it, status 1, nothing written ------------------------


def _png_with_size(width: int, height: int) -> bytes:
    """A PNG claiming width x height, cut short after the start of its image data (which
    must not be needed to refuse it)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + ihdr + chunk(b"IDAT", zlib.compress(b"\0" * 64))


def _inputs(tmp: Path, small: np.ndarray) -> None:
    Image.fromarray(small).save(tmp / "x.png")
    Image.fromarray(small).convert("RGBA").save(tmp / "rgba.png")
    Image.fromarray(small).convert("LA").save(tmp / "la.png")
    pal = Image.fromarray(small).quantize(16)
    pal.save(tmp / "trns.png", transparency=0)
    Image.fromarray(small[..., 0].astype(np.uint16) * 257).save(tmp / "g16.png")
    Image.fromarray(small).convert("CMYK").save(tmp / "cmyk.jpg")
    (tmp / "notes.txt").write_text("not an image\n")
    (tmp / "cut.png").write_bytes((tmp / "x.png").read_bytes()[:200])
    Image.fromarray(small).save(tmp / "x.jpg", quality=90)
    jpeg = (tmp / "x.jpg").read_bytes()
    (tmp / "cut.jpg").write_bytes(jpeg[: len(jpeg) * 2 // 3])  # libjpeg would fill in gray
    (tmp / "bad.jpg").write_bytes(jpeg[:20] + b"\xff\xc0" + jpeg[22:])  # nonsense after SOI
    (tmp / "huge.png").write_bytes(_png_with_size(70000, 16))
    (tmp / "big.png").write_bytes(_png_with_size(60000, 60000))


ENC_ERRORS = [
    (["-e", "jctvc", "x.png"], "-e jctvc: unsupported HEVC encoder; the only one here is x265"),
    (["-a", "x.png"], "-a: animations are not supported"),
    (["-q", "52", "x.png"], "-q 52: qp must be an integer from 0 to 51"),
    (["-q", "2.5", "x.png"], "-q 2.5: qp must be an integer from 0 to 51"),
    (["-f", "411", "x.png"], "-f 411: invalid chroma format"),
    (["-c", "xyz", "x.png"], "-c xyz: invalid color space"),
    (["-b", "9", "x.png"], "-b 9: x265 supports bit depths of 8, 10 or 12"),
    (["-b", "16", "x.png"], "-b 16: the bit depth must be an integer from 8 to 12"),
    (["-alphaq", "60", "x.png"], "-alphaq 60: alpha_qp must be an integer from 0 to 51"),
    (["-fps", "0", "x.png"], "-fps 0: the frame rate must be an integer from 1 to 65535"),
    (["-x", "x.png"], "unknown option -x"),
    (["-l", "x.png"], "ambiguous option -l (could be -lossless, -limitedrange, -loop)"),
    (["x.png", "-o"], "option -o needs a value"),
    (["x.png", "y.png"], "unexpected argument y.png after the input file x.png"),
    (["rgba.png"], "rgba.png: the PNG has an alpha channel"),
    (["la.png"], "la.png: the PNG has an alpha channel"),
    (["trns.png"], "trns.png: the PNG has an alpha channel or transparency"),
    (["g16.png"], "g16.png: 16-bit PNG input is not supported"),
    (["cmyk.jpg"], "cmyk.jpg: CMYK JPEG input is not supported"),
    (["notes.txt"], "notes.txt: not a PNG or JPEG file"),
    (["cut.png"], "cut.png: invalid or truncated PNG file"),
    (["cut.jpg"], "cut.jpg: truncated or corrupt JPEG data (Premature end of JPEG file)"),
    (["bad.jpg"], "bad.jpg: invalid or truncated JPEG file"),
    (["huge.png"], "huge.png: invalid or truncated PNG file (Invalid IHDR data: Image width exceeds user limit in IHDR)"),
    (["big.png"], "big.png: image size 60000x60000 is out of range"),
    (["missing.png"], "missing.png: cannot open (No such file or directory)"),
]


@pytest.mark.parametrize(("args", "message"), ENC_ERRORS, ids=[" ".join(a) for a, _ in ENC_ERRORS])
def test_encoder_errors(tmp_path, small, args, message):
    _inputs(tmp_path, small)
    (tmp_path / "z.bpg").write_bytes(b"kept")
    r = run("npp-bpgenc", "-o", "z.bpg", *args, cwd=tmp_path, ok=False)
    err = r.stderr.decode()
    assert r.returncode == 1 and r.stdout == b""
    assert err.startswith(f"npp-bpgenc: {message}") and err.count("\n") == 1, err
    assert (tmp_path / "z.bpg").read_bytes() == b"kept"  # an earlier output is not touched
    assert not list(tmp_path.glob("*.tmp-*"))


def test_decoder_errors(tmp_path, small):
    data = BpgCodec().encode(small, qp=30)
    (tmp_path / "x.bpg").write_bytes(data)
    (tmp_path / "cut.bpg").write_bytes(data[:8])  # no picture_data_length
    (tmp_path / "x.png").write_bytes(b"kept")
    ext = bytearray(data)
    ext[5] |= 0x08  # extension_present_flag, then an extension_data_length past the end
    (tmp_path / "ext.bpg").write_bytes(bytes(ext[:9] + bytes([0x86, 0x8D, 0x20]) + ext[9:]))
    cases = [
        (["-i", "ext.bpg"], "ext.bpg: not a BPG image"),
        (["-o", "x.png", "ext.bpg"], "ext.bpg: could not decode image (truncated extension block)"),
        (["-b", "10", "-o", "x.png", "x.bpg"], "-b 10: only bit_depth = 8 or 16 are supported for PNG output"),
        (["-b", "16", "-o", "y.ppm", "x.bpg"], "-b 16: PPM output is 8-bit only"),
        (["-b", "x", "x.bpg"], "-b x: the bit depth must be an integer"),
        (["-z", "x.bpg"], "unknown option -z"),
        (["-o", "x.png", "cut.bpg"], "cut.bpg: could not decode image"),
        (["-o", "x.png", "x.png"], "x.png: could not decode image"),
        (["-i", "cut.bpg"], "cut.bpg: not a BPG image"),
        (["missing.bpg"], "missing.bpg: cannot read (No such file or directory)"),
        (["x.bpg", "y.bpg"], "unexpected argument y.bpg"),
    ]
    for args, message in cases:
        r = run("npp-bpgdec", *args, cwd=tmp_path, ok=False)
        err = r.stderr.decode()
        assert r.returncode == 1 and err.startswith(f"npp-bpgdec: {message}") and err.count("\n") == 1, (args, err)
    assert (tmp_path / "x.png").read_bytes() == b"kept"
    assert not (tmp_path / "y.ppm").exists() and not list(tmp_path.glob("*.tmp-*"))


def test_decoder_refuses_alpha_it_cannot_write(tmp_path, small):
    """bpgdec writes RGBA for an alpha file; the library does not decode alpha, so the tool
    refuses rather than write RGB. (The file: ours with the alpha1 flag set in its header.)"""
    data = bytearray(BpgCodec().encode(small, qp=30))
    data[4] |= 0x10
    (tmp_path / "a.bpg").write_bytes(bytes(data))
    r = run("npp-bpgdec", "-o", "y.png", "a.bpg", cwd=tmp_path, ok=False)
    assert r.returncode == 1
    assert r.stderr.decode().startswith("npp-bpgdec: a.bpg: the image has an alpha plane")
    assert not (tmp_path / "y.png").exists()
    assert b"alpha=1 premul=0" in run("npp-bpgdec", "-i", "a.bpg", cwd=tmp_path).stdout
