# SPDX-License-Identifier: GPL-2.0-or-later
"""The derivative-free track: tune filters directly on the real codec's objective.

Gradient training through a codec needs a stand-in for its gradients, and every stand-in is
biased (``npp check-surrogate`` measures how much). A filter family with few parameters needs
none: evaluate the real objective

    J = bpp + λ(qp) · KL(task(x) ‖ task(codec(filter(x))))

on fixed crops of the training photos (real bits, real reconstruction, the frozen task) and
let a search choose the parameters. Two searches live here:

* :func:`tune_blur` — the anchor to beat: per QP, the uniform Gaussian σ with the lowest J
  (a grid, then the best σ refined). Stored as ``blur-tuned.json``, read by the ``blur_tuned``
  preprocessor.
* :func:`search_saliency_blur` — CMA-ES (the ``cma`` package) over the four parameters per QP
  of :class:`~npp_plugin.preprocessors.saliency.SaliencyBlurNet`, started from the tuned blur;
  per generation the mean's J on *development* crops (other training photos) is logged, and
  the parameters with the best development J are kept.

λ per QP is the plain codec's local rate–task slope (:func:`~.losses.calibrate_lambdas`), so J
favours a filter only when it moves the codec's rate–task curve, not when it slides along it.
``npp search blur|npp --out DIR [--resume]`` is the command line; both write a JSON-lines log
and resume where they stopped.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..datasets import fixed_crops
from ..errors import InvalidArgumentError, NppError
from ..fileio import atomic_write_bytes
from .common import option_value as _kv
from .data import Batches, ImageSource, builtin_dev_split, photo_split

__all__ = ["Crops", "RealObjective", "builtin_dev_split", "main", "photo_split", "search_saliency_blur", "tune_blur"]

BLUR_TABLE_FORMAT = "npp_plugin.blur-tuned/1"
DEFAULT_QPS = (28, 31, 34, 37, 41)


# -- data ---------------------------------------------------------------------------------


@dataclass
class Crops:
    """Fixed crops with what every evaluation of them needs: the task's reference
    prediction on the uncompressed crop and the saliency map (both depend on the crop only)."""

    x: torch.Tensor
    ref: torch.Tensor
    saliency: torch.Tensor | None = None
    sources: list[str] = field(default_factory=list)
    bank: list[Any] | None = None
    #: the photo each crop comes from (grid crops; for intervals over photos)
    origins: list[str] = field(default_factory=list)

    @classmethod
    def random(cls, files: Sequence[Path], *, n: int, size: int, seed: int, task: Any) -> Crops:
        src = ImageSource(list(files), cache=len(files))
        b = Batches(src, size=size, batch_size=n, seed=seed)
        x = b[0][0]
        return cls(x, task.reference(x), sources=sorted({p.name for p in files}))

    @classmethod
    def grid(cls, files: Sequence[Path], *, n: int, size: int, task: Any) -> Crops:
        crops = list(fixed_crops(files, size=size))
        if len(crops) > n:  # evenly over the list, so every photo keeps some crops
            crops = [crops[i] for i in np.linspace(0, len(crops) - 1, n).round().astype(int)]
        x = torch.from_numpy(np.stack([c.pixels for c in crops])).permute(0, 3, 1, 2).float().div_(255)
        return cls(x, task.reference(x), sources=sorted({c.source for c in crops}), origins=[c.source for c in crops])

    def with_saliency(self, net: Any, batch: int = 32) -> Crops:
        """Compute what a saliency-blur network needs of these crops once: the saliency map
        and the Gaussian bank (per batch of ``batch`` crops, as :class:`RealObjective` reads)."""
        self.saliency = torch.cat([net.saliency(self.x[i:i + batch]) for i in range(0, len(self.x), batch)])
        self.bank = [net.bank(self.x[i:i + batch]) for i in range(0, len(self.x), batch)]
        return self


class RealObjective:
    """J = bpp + λ·KL on fixed crops, with the real codec: values only, no gradients."""

    def __init__(self, codec: Any, task: Any, crops: Crops, lambdas: dict[int, float], *,
                 batch: int = 32, workers: int | None = None) -> None:
        self.codec, self.task, self.crops, self.lambdas = codec, task, crops, lambdas
        self.batch, self.workers = batch, workers
        self.calls = 0

    @torch.no_grad()
    def per_image(self, qp: int, filt: Any = None) -> dict[str, np.ndarray]:
        """Per-crop bpp, KL and J; ``filt(x, extra)`` → filtered x (None: the plain codec);
        ``extra`` holds what the crops carry precomputed (``saliency``, ``bank``)."""
        bpp, kl = [], []
        x_all, s_all, banks = self.crops.x, self.crops.saliency, self.crops.bank
        for i in range(0, len(x_all), self.batch):
            x = x_all[i:i + self.batch]
            extra = {} if s_all is None else {"saliency": s_all[i:i + self.batch]}
            if banks is not None:
                extra["bank"] = banks[i // self.batch]
            y = x if filt is None else filt(x, extra).clamp(0, 1)
            recon, bits = self.codec.roundtrip(y, qp=qp, workers=self.workers)
            bpp.append(bits.double().numpy() / (x.shape[2] * x.shape[3]))
            kl.append(self.task.loss(recon, self.crops.ref[i:i + self.batch], reduction="none").double().numpy())
        self.calls += 1
        b, k = np.concatenate(bpp), np.concatenate(kl)
        return {"bpp": b, "kl": k, "J": b + self.lambdas[qp] * k}

    def __call__(self, qp: int, filt: Any = None) -> dict[str, float]:
        v = self.per_image(qp, filt)
        return {k: float(a.mean()) for k, a in v.items()}


def _blur_filter(sigma: float):
    from ..preprocessors.filters import gaussian_blur

    return None if sigma <= 0 else (lambda x, s: gaussian_blur(x, sigma))


# -- the tuned blur -----------------------------------------------------------------------


def tune_blur(fit: RealObjective, dev: RealObjective | None, qps: Sequence[int], *,
              grid: Sequence[float] = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2, 1.4),
              log: Any = None) -> dict[int, dict[str, float]]:
    """Per QP, the Gaussian σ (0 = no blur) with the lowest J on ``fit``, refined once
    between the grid neighbours of the best; ``dev`` J recorded beside it."""
    out: dict[int, dict[str, float]] = {}
    for qp in qps:
        seen: dict[float, float] = {}

        def j(s: float, qp=qp, seen=seen) -> float:
            if s not in seen:
                seen[s] = fit(qp, _blur_filter(s))["J"]
                if log:
                    log({"event": "blur", "qp": qp, "sigma": s, "J": seen[s]})
            return seen[s]

        best = min(grid, key=j)
        i = list(grid).index(best)
        for s in ((grid[i - 1] + best) / 2 if i > 0 else None, (grid[i + 1] + best) / 2 if i + 1 < len(grid) else None):
            if s is not None:
                j(round(s, 3))
        best = min(seen, key=seen.get)
        row = {"sigma": best, "J_fit": seen[best], "J_fit_plain": seen.get(0.0, j(0.0))}
        if dev is not None:
            row["J_dev"] = dev(qp, _blur_filter(best))["J"]
            row["J_dev_plain"] = dev(qp)["J"]
        out[int(qp)] = row
    return out


def blur_table(rows: dict[int, dict[str, float]], *, codec: Any, task: str, provenance: dict[str, Any]) -> dict[str, Any]:
    """The JSON document the ``blur_tuned`` preprocessor reads."""
    return {"format": BLUR_TABLE_FORMAT, "codec": codec.name, "codec_config": codec.get_config(), "task": task,
            "sigma": {str(q): r["sigma"] for q, r in sorted(rows.items())},
            "rows": {str(q): r for q, r in sorted(rows.items())}, "provenance": provenance}


# -- the saliency-guided blur -------------------------------------------------------------


def search_saliency_blur(net: Any, codec: Any, fit: RealObjective, dev: RealObjective, qps: Sequence[int], *,
                         generations: int = 12, popsize: int = 8, sigma0: float = 0.35, seed: int = 1,
                         state: dict[str, Any] | None = None, save: Any = None, log: Any = None,
                         stop: Any = None, params: Sequence[str] | None = None) -> dict[str, Any]:
    """CMA-ES on the real J, one anchor QP at a time (the anchors are ``qps``, in order).

    ``state`` (from an earlier call's ``save``) resumes: finished QPs are kept, the QP in
    progress continues from its pickled CMA state. Returns the state: per QP the kept
    parameters (best development J), their fit and development J, and the plain codec's.
    """
    import cma

    from ..preprocessors.saliency import PARAM_NAMES

    free = [PARAM_NAMES.index(n) for n in (params or PARAM_NAMES)]
    lo_all = [math.log(0.05), math.log(0.05), math.log(0.1), math.log(0.25)]
    hi_all = [math.log(4.0), math.log(4.0), math.log(10.0), math.log(8.0)]
    state = state or {"done": {}, "current": None}
    anchors = [codec.normalized_qp(q) for q in qps]
    if [round(a, 6) for a in anchors] != [round(a, 6) for a in net.config.anchors]:
        msg = f"npp search: the network's anchors {net.config.anchors} are not the QPs {list(qps)} of {codec.name}"
        raise InvalidArgumentError(msg, argument="qps", allowed=str(list(qps)))
    for i, qp in enumerate(qps):
        key = str(qp)
        if key in state["done"]:
            net.theta.data[i] = torch.tensor(state["done"][key]["theta"])
            continue
        cur = state.get("current")
        if cur and cur["qp"] == qp:
            es, best, full0 = _unpickle(cur["es"]), cur["best"], np.asarray(cur["x0"], dtype=float)
        else:
            full0 = net.theta.detach()[i].double().numpy()
            es = cma.CMAEvolutionStrategy(full0[free], sigma0, {
                "popsize": popsize, "seed": seed + qp, "verbose": -9,
                "bounds": [[lo_all[k] for k in free], [hi_all[k] for k in free]]})
            base = _theta_filter(net, i, qp, codec, full0)
            jd = dev(qp, base)["J"]
            best = {"theta": full0.tolist(), "J_dev": jd, "J_fit": jd if fit is dev else fit(qp, base)["J"],
                    "generation": -1}

        def full(v: Any, full0=full0) -> np.ndarray:
            """The searched parameters in place, the others as they started."""
            t = full0.copy()
            t[free] = v
            return t
        while es.countiter < generations:
            if stop is not None and stop():
                state["current"] = {"qp": qp, "es": _pickle(es), "best": best, "x0": full0.tolist()}
                return state
            cand = es.ask()
            js = [fit(qp, _theta_filter(net, i, qp, codec, full(c)))["J"] for c in cand]
            es.tell(cand, js)
            mean = full(np.asarray(es.mean))
            jd = dev(qp, _theta_filter(net, i, qp, codec, mean))["J"]
            rec = {"event": "generation", "qp": qp, "generation": es.countiter, "J_fit_best": min(js),
                   "J_fit_median": float(np.median(js)), "J_dev_mean": jd,
                   **{n: float(math.exp(v)) for n, v in zip(PARAM_NAMES, mean, strict=True)}}
            if jd < best["J_dev"]:
                jf = jd if fit is dev else fit(qp, _theta_filter(net, i, qp, codec, mean))["J"]
                best = {"theta": mean.tolist(), "J_dev": jd, "J_fit": jf, "generation": es.countiter}
            if log:
                log(rec)
            state["current"] = {"qp": qp, "es": _pickle(es), "best": best, "x0": full0.tolist()}
            if save:
                save(state)
        net.theta.data[i] = torch.tensor(best["theta"], dtype=net.theta.dtype)
        plain_dev = dev(qp)["J"]
        state["done"][key] = {**best, "J_dev_plain": plain_dev, "J_fit_plain": plain_dev if fit is dev else fit(qp)["J"],
                              "params": dict(zip(PARAM_NAMES, np.exp(best["theta"]).tolist(), strict=True))}
        state["current"] = None
        if save:
            save(state)
    return state


def _theta_filter(net: Any, i: int, qp: int, codec: Any, theta: Any):
    """The network with anchor ``i`` set to ``theta``, as a filter of (x, extra)."""
    from ..preprocessors.hook import npp_filter

    def filt(x: torch.Tensor, extra: dict[str, Any]) -> torch.Tensor:
        old = net.theta.data[i].clone()
        net.theta.data[i] = torch.as_tensor(np.asarray(theta), dtype=net.theta.dtype)
        try:
            return npp_filter(net, x, codec=codec, qp=qp, **extra)
        finally:
            net.theta.data[i] = old

    return filt


def _pickle(obj: Any) -> str:
    import base64
    import pickle

    return base64.b64encode(pickle.dumps(obj)).decode()


def _unpickle(text: str) -> Any:
    import base64
    import pickle

    return pickle.loads(base64.b64decode(text))  # noqa: S301 - our own checkpoint file


# -- command line -------------------------------------------------------------------------


def _setup(args: argparse.Namespace, lambdas: dict[int, float] | None = None):
    """Codec, task, crops and λ per QP (calibrated on the fit crops unless given)."""
    from ..registry import get_codec, get_task
    from .losses import calibrate_lambdas

    torch.set_num_threads(args.threads)
    codec = get_codec(args.codec, **dict(_kv(o) for o in args.codec_option))
    task = get_task(args.task)
    fit_files, dev_files = photo_split(args.images)
    if not fit_files or (args.fit_on == "fit" and not dev_files):
        msg = (f"npp search: {args.images} gives {len(fit_files)} fit and {len(dev_files)} development photos "
               "(split by scene); give more photos or --fit-on all")
        raise InvalidArgumentError(msg, argument="images", allowed="a folder with photos of several scenes")
    if args.fit_on == "all":  # every training photo, grid crops (backgrounds too); select on them
        fit_c = Crops.grid(fit_files + dev_files, n=args.fit_crops, size=args.size, task=task)
        dev_c = fit_c
    else:
        fit_c = Crops.random(fit_files, n=args.fit_crops, size=args.size, seed=args.seed, task=task)
        dev_c = Crops.grid(dev_files, n=args.dev_crops, size=args.size, task=task)
    calib = None
    if lambdas is None:
        pairs = [(fit_c.x[i:i + 32], fit_c.ref[i:i + 32]) for i in range(0, len(fit_c.x), 32)]
        calib = calibrate_lambdas(codec, task, pairs, args.qps, delta=3, workers=args.workers)
        lambdas = {q: calib[q]["lmbda"] for q in args.qps}
    prov = {"codec": codec.get_config(), "task": args.task, "size": args.size, "lambdas": lambdas, "images": args.images,
            "lambda_calibration": {str(k): v for k, v in calib.items()} if calib else "from the blur table",
            "fit_photos": fit_c.sources, "fit_crops": len(fit_c.x), "fit_seed": args.seed,
            "dev_photos": dev_c.sources, "dev_crops": len(dev_c.x)}
    return codec, task, fit_c, dev_c, lambdas, prov


class _JsonLog:
    def __init__(self, path: Path, fresh: bool) -> None:
        self.path = path
        if fresh or not path.exists():
            atomic_write_bytes(path, b"")

    def __call__(self, rec: dict[str, Any]) -> None:
        with open(self.path, "a") as fh:
            fh.write(json.dumps({"time": round(time.time(), 1), **rec}) + "\n")
        if rec.get("event") == "generation":
            print(f"  qp {rec['qp']} gen {rec['generation']:>2}: J fit best {rec['J_fit_best']:.4f}"  # noqa: T201
                  f" dev(mean) {rec['J_dev_mean']:.4f}", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="npp search", description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=("blur", "npp", "export", "lambda"),
                   help="blur: tune the uniform blur; npp: the saliency-guided blur; export: write the weights file; "
                        "lambda: calibrate a task's λ table for npp_refine (npp search lambda -h)")
    p.add_argument("--to", default=None, help="export: the weights file to write (e.g. npp_plugin/weights/default.npp.pt)")
    p.add_argument("--attach", action="append", default=[], metavar="KEY=FILE",
                   help="export: a JSON file to store in the weights' metadata under KEY (metrics, surrogate_check)")
    p.add_argument("--out", required=True, help="output folder (log, state, results)")
    p.add_argument("--codec", default="bpg")
    p.add_argument("--codec-option", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--task", default="mobilenet_v2")
    p.add_argument("--qps", type=int, nargs="+", default=list(DEFAULT_QPS))
    p.add_argument("--images", default="builtin:train",
                   help="training photos: builtin:train (the built-in photos' training split), corpus:train (fit on "
                        "the photo corpus' train split, select on its dev split), or a folder; "
                        "split by scene into fit and development photos")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--fit-crops", type=int, default=64)
    p.add_argument("--dev-crops", type=int, default=48)
    p.add_argument("--fit-on", choices=("fit", "all"), default="fit",
                   help="fit: random crops of the fit photos, selection on grid crops of the development photos; "
                        "all: grid crops of every training photo for both (no development split)")
    p.add_argument("--search-params", default="sigma_bg,sigma_fg,gamma,chroma",
                   help="npp: the parameters searched per QP (the others stay at the tuned blur's: γ 1, chroma 1)")
    p.add_argument("--generations", type=int, default=12)
    p.add_argument("--popsize", type=int, default=8)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--blur-table", default=None, help="npp: start from this blur-tuned.json (default: --out's)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--resume", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    import signal

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["lambda"]:  # its own options: npp search lambda -h
        from .lambda_table import main as lambda_main

        return lambda_main(argv[1:])
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stopped = {"flag": False}
    signal.signal(signal.SIGTERM, lambda *a: stopped.update(flag=True))
    try:
        if args.what == "export":
            path = export_weights(out, args.to or str(out / "saliency-blur.npp.pt"),
                                  attach=dict(_kv_file(a) for a in args.attach))
            print(path)  # noqa: T201
            return 0
        table = None
        if args.what == "npp":
            table_path = Path(args.blur_table) if args.blur_table else out / "blur-tuned.json"
            if not table_path.is_file():
                msg = f"npp search npp: no tuned blur at {table_path}; run `npp search blur --out {out}` first"
                raise InvalidArgumentError(msg, argument="blur-table", allowed="a blur-tuned.json")
            table = json.loads(table_path.read_text())
            table["path"] = str(table_path)
        # the saliency-blur search scores with the λ the blur was tuned with: one objective
        lam = {int(q): float(v) for q, v in table["provenance"]["lambdas"].items()} if table else None
        codec, task, fit_c, dev_c, lambdas, prov = _setup(args, lam)
        log = _JsonLog(out / f"log-search-{args.what}.jsonl", fresh=not args.resume)
        if args.what == "blur":
            rows = tune_blur(RealObjective(codec, task, fit_c, lambdas, workers=args.workers),
                             RealObjective(codec, task, dev_c, lambdas, workers=args.workers), args.qps, log=log)
            doc = blur_table(rows, codec=codec, task=args.task, provenance=prov)
            atomic_write_bytes(out / "blur-tuned.json", json.dumps(doc, indent=2).encode())
            print(json.dumps(doc["sigma"]))  # noqa: T201
            return 0
        return _main_npp(args, out, table, codec, task, fit_c, dev_c, lambdas, prov, log, stopped)
    except NppError as exc:
        print(f"npp search: error: {exc}", file=sys.stderr)  # noqa: T201
        return 2


def _kv_file(text: str) -> tuple[str, Any]:
    k, sep, v = text.partition("=")
    try:
        return k, json.loads(Path(v).read_text())
    except (OSError, ValueError) as exc:
        msg = f"npp search export: --attach {text!r}: cannot read JSON from {v!r}: {exc}"
        raise InvalidArgumentError(msg, argument="attach", allowed="KEY=FILE.json") from exc


def export_weights(out: str | Path, to: str | Path, *, attach: dict[str, Any] | None = None) -> Path:
    """The finished search in ``out`` as an NPP weights file (recipe, photos, λ, per-QP
    development J against the tuned blur and the plain codec, and ``attach`` in its meta)."""
    from ..preprocessors.saliency import SaliencyBlurConfig, SaliencyBlurNet
    from ..preprocessors.weights import save_weights

    out = Path(out)
    try:
        result = json.loads((out / "search-npp.json").read_text())
        saved = torch.load(out / "search-npp-theta.pt", weights_only=True)
        table = json.loads(Path(result["blur_table"]).read_text())
    except (OSError, ValueError, KeyError) as exc:
        msg = f"npp search export: {out} holds no finished search ({exc}); run `npp search npp --out {out}`"
        raise InvalidArgumentError(msg, argument="out", allowed="a folder of a finished search") from exc
    net = SaliencyBlurNet(SaliencyBlurConfig.from_dict(saved["config"]))
    net.theta.data.copy_(saved["theta"])
    prov = result["provenance"]
    meta = {
        "codec": prov["codec"],
        "recipe": {"track": "derivative-free", "search": "CMA-ES (cma) on the real codec's J = bpp + λ·KL",
                   "generations": result["generations"], "popsize": result["popsize"],
                   "start": "the tuned blur (blur_tuned) at every QP", "lambdas": prov["lambdas"],
                   "crop": prov["size"], "qps": [int(q) for q in result["per_qp"]]},
        "fidelity": {"kind": "none", "note": "a blur family: no fidelity term (the blur bank bounds the change)"},
        "task": prov["task"],
        "training_photos": {"fit": prov["fit_photos"], "dev": prov["dev_photos"],
                            "fit_crops": prov["fit_crops"], "dev_crops": prov["dev_crops"]},
        "search": {"per_qp": {q: {k: v for k, v in r.items() if k != "theta"} for q, r in result["per_qp"].items()},
                   "blur_tuned": table["sigma"], "params": result["params"]},
        "metrics": {},
    }
    for key, value in (attach or {}).items():
        meta[key] = value
    return save_weights(to, net, meta=meta)


def _main_npp(args, out, table, codec, task, fit_c, dev_c, lambdas, prov, log, stopped) -> int:
    from ..preprocessors.saliency import SaliencyBlurConfig, SaliencyBlurNet

    missing = [q for q in args.qps if str(q) not in table["sigma"] or q not in lambdas]
    if missing:
        msg = f"npp search npp: the blur table {table['path']} has no entry for qps {missing}"
        raise InvalidArgumentError(msg, argument="qps", allowed=sorted(table["sigma"]))
    net = SaliencyBlurNet(SaliencyBlurConfig(anchors=tuple(codec.normalized_qp(q) for q in args.qps)))
    for i, qp in enumerate(args.qps):
        s = max(float(table["sigma"][str(qp)]), 0.05)
        net.set_anchor(i, sigma_bg=s, sigma_fg=s, gamma=1.0, chroma=1.0)
    fit_c.with_saliency(net)
    dev_c.with_saliency(net)
    fit = RealObjective(codec, task, fit_c, lambdas, workers=args.workers)
    dev = RealObjective(codec, task, dev_c, lambdas, workers=args.workers)
    state_path = out / "search-npp-state.json"
    state = json.loads(state_path.read_text()) if args.resume and state_path.is_file() else None

    def save(st: dict[str, Any]) -> None:
        atomic_write_bytes(state_path, json.dumps(st).encode())

    dev = fit if args.fit_on == "all" else dev
    state = search_saliency_blur(net, codec, fit, dev, args.qps, generations=args.generations,
                                 popsize=args.popsize, seed=args.seed, state=state, save=save, log=log,
                                 stop=lambda: stopped["flag"], params=args.search_params.split(","))
    if state.get("current"):
        print(f"npp search: stopped; continue with --resume (state in {state_path})", file=sys.stderr)  # noqa: T201
        return 143
    result = {"params": net.describe(), "per_qp": state["done"], "provenance": prov,
              "blur_table": table["path"], "generations": args.generations, "popsize": args.popsize}
    atomic_write_bytes(out / "search-npp.json", json.dumps(result, indent=2).encode())
    buf = io.BytesIO()
    torch.save({"config": net.get_config(), "theta": net.theta.detach().clone()}, buf)
    atomic_write_bytes(out / "search-npp-theta.pt", buf.getvalue())
    print(json.dumps({q: r["params"] for q, r in state["done"].items()}))  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
