"""``npp eval``: rate–accuracy sweeps, BD-rates with intervals, plots, GradCAM.

    npp eval --codecs jpeg,bpg --qps 28,34,41 --variants plain,blur05,npp --tasks mobilenet_v2 \\
             --images builtin --out runs/eval1 [--resume] [--shard 0/4] [--bootstrap 1000]
    npp eval --codecs jpeg --tasks mobilenet_v2 --calibrate --out runs/cal   # operating range only
    npp eval merge --out runs/all runs/shard0 runs/shard1 ...
    npp eval report runs/eval1 --anchor plain --bd-method akima             # re-tabulate
    npp eval gradcam --task mobilenet_v2 --variant blur10 --out cam.png
    npp eval --tasks all --codecs bpg --qps 28,31,34,37,41 --variants plain,blur_tuned,npp \
             --crop-size 0 --anchor plain,blur_tuned --out runs/transfer   # transfer.md

Without ``--qps`` the QPs come from calibration (per codec and task: the QPs where the task
score lies between 50 % and 95 % of its uncompressed value), cached in ``calibration.json``
so a resumed run uses the same QPs. Codecs and variants take options as
``name:key=value:key=value`` (e.g. ``jpeg:chroma=444``, ``gaussian:sigma=0.7``).
``--tasks all`` runs every registered task that can run here (those needing a weights file
or MediaPipe's environment are left out, with a note); ``--annotations`` scores detectors
against COCO boxes instead of their own detections on the uncompressed image.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import InvalidArgumentError, NppError

__all__ = ["main"]

SUBCOMMANDS = ("run", "merge", "report", "gradcam")


def _split(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"name:k=v:k=v"`` → (name, {k: v}); values parsed as JSON when they can be."""
    name, *opts = spec.split(":")
    config = {}
    for opt in opts:
        if "=" not in opt:
            msg = f"option {opt!r} in {spec!r} must look like key=value"
            raise InvalidArgumentError(msg, argument=spec, allowed="name:key=value:key=value")
        k, v = opt.split("=", 1)
        config[k.strip()] = _value(v.strip())
    return name.strip(), config


def _codecs(text: str) -> dict:
    from ..registry import get_codec

    out = {}
    for spec in _split(text):
        name, cfg = parse_spec(spec)
        codec = get_codec(name, **cfg)
        codec.require_available()
        out[spec] = codec
    return out


def _variants(text: str) -> dict:
    from ..registry import get_preprocessor
    from .sweep import PLAIN

    out: dict[str, Any] = {}
    for spec in _split(text):
        if spec == PLAIN:
            out[spec] = None
        else:
            name, cfg = parse_spec(spec)
            out[spec] = get_preprocessor(name, **cfg)
    return out


ALL_TASKS = "all"


def _tasks(text: str) -> dict:
    """Task specs → tasks. ``all`` stands for every registered task that can run here:
    those that need something missing (a weights file, MediaPipe's environment) are left
    out with a note on stderr."""
    from ..errors import TaskUnavailableError, WeightsError
    from ..registry import available_tasks, get_task
    from .sweep import NO_TASK

    specs = [s for s in _split(text) if s != NO_TASK]
    out = {}
    for spec in specs:
        if spec != ALL_TASKS:
            name, cfg = parse_spec(spec)
            out[spec] = get_task(name, **cfg)
    if ALL_TASKS in specs:
        given = {parse_spec(s)[0] for s in specs if s != ALL_TASKS}
        skipped = []
        for name in available_tasks():
            if name in given:
                continue
            try:
                out[name] = get_task(name)
            except (WeightsError, TaskUnavailableError) as exc:
                skipped.append(f"{name} ({str(exc).splitlines()[0]})")
        if skipped:
            print("npp eval: --tasks all leaves out: " + "; ".join(skipped), file=sys.stderr)
    return out


def _qps(text: str) -> list[int]:
    try:
        return [int(q) for q in _split(text)]
    except ValueError as exc:
        msg = f"--qps must be comma-separated integers or 'auto', got {text!r}"
        raise InvalidArgumentError(msg, argument="qps", allowed="e.g. 28,34,41") from exc


def _labels(path: str | None) -> dict[str, int] | None:
    if path is None:
        return None
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return {row[0]: int(row[1]) for row in csv.reader(fh) if row and not row[0].startswith("#")}
    except (OSError, ValueError, IndexError) as exc:
        msg = f"--labels {path!r}: expected a CSV of 'image,class_index' lines ({exc})"
        raise InvalidArgumentError(msg, argument="labels", allowed="CSV image,class_index") from exc


def _images(args) -> tuple[list, dict]:
    from .inputs import DEFAULT_CROP, builtin_images, corpus_images, folder_images, select_evenly

    whole = args.crop_size == 0  # --crop-size 0: whole photos
    if args.images.split(":")[0] == "corpus":
        crop = None if whole else (args.crop_size or DEFAULT_CROP)
        split = args.images.partition(":")[2] or "all"
        items = corpus_images(crop_size=crop, stride=args.stride, split=split)
        from ..corpus import corpus_info

        # the digest, not the folder, names the photos (a resumed run may be on another machine)
        desc = {"source": args.images, "crop_size": crop, "stride": args.stride or crop, "split": split,
                "corpus_digest": corpus_info()["digest"]}
    elif args.images.split(":")[0] == "builtin":
        crop = None if whole else (args.crop_size or DEFAULT_CROP)
        split = args.images.partition(":")[2] or "all"
        items = builtin_images(crop_size=crop, stride=args.stride, split=split)
        desc = {"source": args.images, "crop_size": crop, "stride": args.stride or crop, "split": split}
    else:
        items = folder_images(args.images, crop_size=None if whole else args.crop_size, stride=args.stride)
        desc = {"source": str(Path(args.images).resolve()), "crop_size": args.crop_size, "stride": args.stride}
    items = select_evenly(items, args.max_images)
    desc["max_images"] = args.max_images
    return items, desc


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--codecs", default="jpeg", help="comma-separated codec specs (default: jpeg)")
    p.add_argument("--qps", default="auto", help="comma-separated QPs, or 'auto' (calibrate; default)")
    p.add_argument("--variants", default="plain", help="'plain' and/or preprocessor specs, e.g. plain,blur05,npp")
    p.add_argument("--tasks", default="mobilenet_v2",
                   help="task networks; 'all' for every task that can run here; 'none' for fidelity only")
    p.add_argument("--images", default="builtin",
                   help="'builtin', 'builtin:val' (photos held out from training), 'builtin:train', "
                        "'corpus:dev', 'corpus:train', 'corpus:all' (npp data build), or a folder")
    p.add_argument("--crop-size", type=int, default=None,
                   help="square crops of this size (builtin default 144); 0 for whole photos")
    p.add_argument("--stride", type=int, default=None, help="crop stride (default: crop size)")
    p.add_argument("--max-images", type=int, default=None, help="use this many images, spread evenly")
    p.add_argument("--labels", default=None, help="CSV 'image,class' for top-1 accuracy instead of agreement")
    p.add_argument("--annotations", default=None,
                   help="COCO instances JSON: detectors are scored (per-image AP, mAP) against its boxes")
    p.add_argument("--metrics", default="psnr,ms_ssim,fsim", help="human-vision metrics (subset of psnr,ms_ssim,fsim)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--shard", default="0/1", help="evaluate shard i of n (images i, i+n, ...); join with 'merge'")
    p.add_argument("--resume", action="store_true", help="continue the run in --out, skipping finished rows")
    p.add_argument("--calibrate", action="store_true", help="only find the operating-range QPs and stop")
    p.add_argument("--calibration-images", type=int, default=32)
    p.add_argument("--calibration-range", default="0.5,0.95", help="task-score window relative to uncompressed")
    p.add_argument("--num-qps", type=int, default=5, help="QPs chosen by calibration")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=None, help="codec threads (default: one per core)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--no-progress", action="store_true")
    _add_report_args(p)


def _add_report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--anchor", default="plain",
                   help="BD-rate anchor(s), comma-separated: a variant (same codec) or codec/variant, e.g. plain,blur_tuned")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95 %% interval (0: none)")
    p.add_argument("--bootstrap-unit", choices=("image", "source"), default="image",
                   help="resample images, or whole source photos (crops of one photo are correlated)")
    p.add_argument("--bd-method", choices=("pchip", "akima"), default="pchip")
    p.add_argument("--bd-metrics", default="score,kl,pck,map,ap50,psnr,ms_ssim", help="metrics to compute BD-rates on")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--summary", default=None, metavar="TASK[=LABEL],...",
                   help="print the compact summary instead of the long table (table.md has it either way): "
                        "KL BD-rates of these classifiers against every anchor, and the time per image")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="npp eval", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    _add_run_args(sub.add_parser("run", help="evaluate (the default command)"))
    m = sub.add_parser("merge", help="join shard folders and tabulate")
    m.add_argument("--out", required=True)
    m.add_argument("shards", nargs="+")
    _add_report_args(m)
    r = sub.add_parser("report", help="recompute tables, BD-rates and plots of a finished folder")
    r.add_argument("out")
    _add_report_args(r)
    g = sub.add_parser("gradcam", help="GradCAM of a classifier on an image before/after preprocessing")
    g.add_argument("--task", default="mobilenet_v2")
    g.add_argument("--variant", default="blur10", help="preprocessor spec")
    g.add_argument("--codec", default="jpeg", help="codec spec the preprocessor is conditioned on and that encodes")
    g.add_argument("--qp", type=int, default=34)
    g.add_argument("--no-encode", action="store_true", help="show the preprocessed image, not the decoded one")
    g.add_argument("--image", default="builtin", help="an image file, or 'builtin'")
    g.add_argument("--index", type=int, default=0, help="which built-in crop")
    g.add_argument("--crop-size", type=int, default=224)
    g.add_argument("--out", required=True, help="PNG path")
    return parser


def _report(args, out: Path) -> dict:
    from .results import finalize

    return finalize(out, anchor=args.anchor, n_boot=args.bootstrap, method=args.bd_method, seed=args.seed,
                    unit=args.bootstrap_unit, bd_metrics=_split(args.bd_metrics), plots=not args.no_plots)


def _print_results(res: dict, out: Path, summary: str | None = None) -> None:
    if summary:
        from .summary import format_summary

        tasks = [tuple(t.split("=", 1)) if "=" in t else (t, "") for t in _split(summary)]
        anchors = [a.strip().split("/")[-1] for a in res["bd_rate_settings"]["anchor"].split(",") if a.strip()]
        print(format_summary(res, tasks=tasks, anchors=anchors, out=out), end="")
        return
    print(res["table"], end="")
    if res.get("transfer"):
        print("\nTransfer table:\n\n" + res["transfer"]["table"], end="")
    print(f"\nwrote {out / 'results.json'}, rows.csv, curves.csv, bdrate.csv, table.md"
          + (", transfer.md" if res.get("transfer") else "")
          + (f", {', '.join(res.get('plots', []))}" if res.get("plots") else ""))


def _calibrated_qps(args, items, codecs, tasks, out: Path) -> dict:
    from ..fileio import atomic_write_bytes
    from .calibrate import calibrate

    path = out / "calibration.json"
    if args.resume and path.exists():
        cached = json.loads(path.read_text())
        return {c: {t: cached[c][t]["qps"] for t in cached[c]} for c in cached}
    if not tasks:
        msg = "--qps auto needs a task network to calibrate on; give --qps or --tasks"
        raise InvalidArgumentError(msg, argument="qps", allowed="QP list, or a task")
    try:
        lo, hi = (float(v) for v in _split(args.calibration_range))
    except ValueError as exc:
        msg = f"--calibration-range must be 'lo,hi', got {args.calibration_range!r}"
        raise InvalidArgumentError(msg, argument="calibration_range", allowed="e.g. 0.5,0.95") from exc
    labels = _labels(args.labels)
    table: dict[str, dict[str, Any]] = {}
    for c, codec in codecs.items():
        for t, task in tasks.items():
            cal = calibrate(items, codec, task, codec_label=c, task_label=t, lo=lo, hi=hi, n_qps=args.num_qps,
                            max_images=args.calibration_images, labels=labels, batch_size=args.batch_size,
                            workers=args.workers)
            table.setdefault(c, {})[t] = cal.as_dict()
            ratio = ", ".join(f"{q}:{r:.2f}" for q, r in zip(cal.grid, cal.ratio, strict=True))
            print(f"calibration {c} / {t}: QPs {cal.qps} (score/uncompressed by QP: {ratio})"
                  + (f" [{'; '.join(cal.notes)}]" if cal.notes else ""), file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(table, indent=2).encode())
    return {c: {t: v["qps"] for t, v in per.items()} for c, per in table.items()}


def _run(args) -> int:
    import torch

    from .metrics import FIDELITY_METRICS
    from .sweep import SweepSpec, check_out_dir, parse_shard, run_sweep

    if args.threads:
        torch.set_num_threads(args.threads)
    shard = parse_shard(args.shard)
    metrics = tuple(_split(args.metrics)) if args.metrics != "none" else ()
    bad = [m for m in metrics if m not in FIDELITY_METRICS]
    if bad:
        msg = f"--metrics: unknown metric {bad[0]!r}; choose from {', '.join(FIDELITY_METRICS)}"
        raise InvalidArgumentError(msg, argument="metrics", allowed=FIDELITY_METRICS)
    out = Path(args.out)
    if not args.calibrate:
        check_out_dir(out, resume=args.resume)  # before calibrating: never overwrite a run's calibration
    items, desc = _images(args)
    codecs, variants, tasks = _codecs(args.codecs), _variants(args.variants), _tasks(args.tasks)
    boxes = None
    if args.annotations:
        from .annotations import load_coco_boxes

        if not any(t.kind == "detection" for t in tasks.values()):
            msg = "--annotations: no detection task among --tasks to score against the boxes"
            raise InvalidArgumentError(msg, argument="annotations", allowed="with a detection task (e.g. fcos)")
        boxes = load_coco_boxes(args.annotations, items)
    print(f"npp eval: {len(items)} images ({desc}), shard {shard[0]}/{shard[1]}", file=sys.stderr)
    if args.qps == "auto" or args.calibrate:
        qps = _calibrated_qps(args, items, codecs, tasks, out)
        if args.calibrate:
            print(json.dumps(qps, indent=2))
            return 0
        spec = SweepSpec(codecs, variants, tasks, qps, metrics=metrics, labels=_labels(args.labels), boxes=boxes)
    else:
        spec = SweepSpec.with_qps(codecs, variants, tasks, _qps(args.qps), metrics=metrics, labels=_labels(args.labels),
                                  boxes=boxes)
    stats = run_sweep(items, spec, out, resume=args.resume, batch_size=args.batch_size, workers=args.workers,
                      shard=shard, images_description=desc, progress=not args.no_progress)
    print(f"npp eval: {stats.computed} rows computed, {stats.skipped} already done (of {stats.total})", file=sys.stderr)
    if shard[1] > 1:
        print(f"npp eval: shard {shard[0]}/{shard[1]} done; join the shards with: npp eval merge --out DIR SHARD_DIRS...")
        return 0
    _print_results(_report(args, out), out, args.summary)
    return 0


def _gradcam(args) -> int:
    import numpy as np
    import torch

    from ..datasets import load_rgb
    from ..images import tensor_batch_to_uint8, uint8_to_tensor_batch
    from ..registry import get_task
    from .gradcam import gradcam_figure
    from .inputs import builtin_images

    task_name, task_cfg = parse_spec(args.task)
    task = get_task(task_name, **task_cfg)
    if args.image == "builtin":
        items = builtin_images(crop_size=args.crop_size)
        if not 0 <= args.index < len(items):
            msg = f"--index must be in 0..{len(items) - 1}, got {args.index}"
            raise InvalidArgumentError(msg, argument="index", allowed=(0, len(items) - 1))
        original = items[args.index].load()
    else:
        original = load_rgb(args.image)
    variant = _variants(args.variant)[args.variant]
    codec = next(iter(_codecs(args.codec).values()))
    x = uint8_to_tensor_batch(original[None])
    with torch.inference_mode():
        xp = x if variant is None else variant(x, codec=codec, qp=args.qp)
    processed = tensor_batch_to_uint8(xp)[0]
    title = args.variant
    if not args.no_encode:
        data = codec.encode(processed, qp=args.qp)
        processed = codec.decode(data)
        title += f" + {args.codec} QP {args.qp} ({8 * len(data) / (processed.shape[0] * processed.shape[1]):.3f} bpp)"
    path = gradcam_figure(task, np.ascontiguousarray(original), np.ascontiguousarray(processed), args.out,
                          titles=("original", title))
    print(f"wrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``npp eval``; returns the exit status (2 for a usage or NppError)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in (*SUBCOMMANDS, "-h", "--help"):
        argv = ["run", *argv]
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "merge":
            from .merge import merge_shards

            counts = merge_shards(args.out, args.shards)
            print(f"npp eval merge: {counts['rows']} rows from {counts['shards']} shard folders"
                  + (f"; {counts['missing_shards']} shard(s) missing" if counts["missing_shards"] else ""), file=sys.stderr)
            _print_results(_report(args, Path(args.out)), Path(args.out), args.summary)
            return 0
        if args.command == "report":
            _print_results(_report(args, Path(args.out)), Path(args.out), args.summary)
            return 0
        return _gradcam(args)
    except NppError as exc:
        print(f"npp eval: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("npp eval: interrupted; finished rows are kept, rerun with --resume to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
