"""The sweep runner: rows, outputs, resume after a failure or a kill, shards, the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from npp_plugin import hookimpl
from npp_plugin.errors import CodecError, InvalidArgumentError
from npp_plugin.evaluation import SweepSpec, finalize, folder_images, merge_shards, run_sweep
from npp_plugin.evaluation.__main__ import main
from npp_plugin.evaluation.store import RowStore, row_key
from npp_plugin.preprocessors.filters import GaussianBlur
from tests.test_eval_fixtures import FailingCodec, TinyClassifier, ZlibQuantCodec

ROOT = Path(__file__).resolve().parents[1]


class CoarseCodec(ZlibQuantCodec):
    """A second codec: coarser steps (step doubles every 4 QP)."""

    name = "zqc"

    def _encode(self, rgb, /, *, qp):
        return super()._encode(rgb, qp=min(51, round(qp * 1.5)))


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for i in range(4):
        base = rng.random((8, 8, 3))
        img = np.kron(base, np.ones((6, 6, 1)))  # smooth-ish 48x48 content
        img = (np.clip(img + rng.normal(0, 0.05, img.shape), 0, 1) * 255).astype(np.uint8)
        Image.fromarray(img).save(d / f"img{i}.png")
    return d


def spec(codec=None, qps=(0, 24, 36)):
    return SweepSpec.with_qps(
        {"zq": codec or ZlibQuantCodec(), "zqc": CoarseCodec()},
        {"plain": None, "blur10": GaussianBlur(1.0)},
        {"tiny": TinyClassifier()},
        list(qps),
        metrics=("psnr", "ms_ssim"),
    )


def values(rows):
    return {row_key(r): {k: r[k] for k in ("bytes", "bpp", "psnr", "score", "kl") if k in r} for r in rows}


def test_rows_have_true_rates_and_consistent_scores(image_dir, tmp_path):
    """Assert one row per (image, codec, QP, variant, task), bpp from the real bitstream,
    lossless QP 0 scoring 1 with KL 0, and reference rows scoring 1 (agreement)."""
    images = folder_images(image_dir)
    stats = run_sweep(images, spec(), tmp_path, workers=2)
    rows = RowStore(tmp_path / "rows.jsonl").load()
    coded = [r for r in rows if r["kind"] == "coded"]
    assert len(coded) == 4 * 2 * 3 * 2 and stats.computed == len(rows) == len(coded) + 4
    assert stats.total == len(rows) and stats.skipped == 0
    zq = ZlibQuantCodec()
    for r in coded:
        if r["codec"] == "zq" and r["variant"] == "plain":
            img = np.asarray(Image.open(image_dir / r["image"]).convert("RGB"))
            assert r["bytes"] == len(zq.encode(img, qp=r["qp"]))
        assert r["bpp"] == pytest.approx(8 * r["bytes"] / (48 * 48))
        assert 0 <= r["score"] <= 1 and r["kl"] >= 0
        if r["qp"] == 0 and r["variant"] == "plain":
            assert r["score"] == 1.0 and r["kl"] == pytest.approx(0, abs=1e-9) and r["psnr"] == 100.0
    assert all(r["score"] == 1.0 for r in rows if r["kind"] == "reference")
    by_qp = {qp: np.mean([r["bpp"] for r in coded if r["qp"] == qp and r["codec"] == "zq"]) for qp in (0, 24, 36)}
    assert by_qp[0] > by_qp[24] > by_qp[36]


def test_end_to_end_writes_json_plot_and_table(image_dir, tmp_path):
    """Assert finalize writes results.json (configs, versions, git, curves, BD-rates), CSVs,
    the markdown table and PNG plots, and that curve points are per-QP means of rows."""
    images = folder_images(image_dir)[:2]
    run_sweep(images, spec(qps=(12, 30)), tmp_path)
    res = finalize(tmp_path, n_boot=50)
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["codecs"]["zq"] == ZlibQuantCodec().get_config()
    assert data["variants"] == {"plain": None, "blur10": {"preprocessor": "gaussian", "sigma": 1.0}}
    assert data["tasks"]["tiny"]["task"] == "tiny"
    assert "torch" in data["runs"][0]["versions"] and "commit" in data["runs"][0]["git"]
    assert "mean over images" in data["aggregation"]
    assert len(data["rows"]) == 2 * (1 + 2 * 2 * 2)
    pt = next(c for c in data["curves"] if c["codec"] == "zq" and c["variant"] == "plain" and c["qp"] == 30)
    rows = [r for r in data["rows"] if r["kind"] == "coded" and r["codec"] == "zq" and r["variant"] == "plain" and r["qp"] == 30]
    assert pt["n"] == 2 and pt["bpp"] == pytest.approx(np.mean([r["bpp"] for r in rows]))
    assert {(e["codec"], e["variant"], e["metric"]) for e in data["bd_rate"]} >= {("zq", "blur10", "kl"), ("zq", "blur10", "psnr")}
    assert all(e["anchor"].endswith("/plain") for e in data["bd_rate"])
    for name in ("rows.csv", "curves.csv", "bdrate.csv", "table.md", "rate_score_tiny.png", "rate_kl_tiny.png", "rate_psnr.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert (tmp_path / "rate_psnr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| tiny | zq | blur10 | zq/plain | kl |" in res["table"]


def test_interrupted_run_resumes_without_recomputing(image_dir, tmp_path):
    """Assert a run that fails midway keeps its finished rows, and the resumed run computes
    only the missing ones and ends with the same rows as an uninterrupted run."""
    images = folder_images(image_dir)
    clean = tmp_path / "clean"
    run_sweep(images, spec(), clean)
    broken = tmp_path / "broken"
    with pytest.raises(CodecError, match="injected"):
        run_sweep(images, spec(codec=FailingCodec(fail_after=9)), broken, batch_size=2)
    before = len(RowStore(broken / "rows.jsonl").load())
    assert 0 < before < 52
    stats = run_sweep(images, spec(), broken, resume=True, batch_size=2)
    assert stats.computed == 52 - before and stats.skipped == before
    after = RowStore(broken / "rows.jsonl").load()
    assert values(after) == values(RowStore(clean / "rows.jsonl").load())
    again = run_sweep(images, spec(), broken, resume=True)
    assert again.computed == 0 and again.skipped == 52


_KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    import torch
    torch.set_num_threads(1)
    from tests.test_eval_fixtures import ZlibQuantCodec
    from tests.test_eval_sweep import spec
    from npp_plugin.evaluation import folder_images, run_sweep

    class Slow(ZlibQuantCodec):
        def _encode(self, rgb, /, *, qp):
            time.sleep(0.05)
            return super()._encode(rgb, qp=qp)

    run_sweep(folder_images({images!r}), spec(codec=Slow()), {out!r}, batch_size=1, workers=1)
""")


@pytest.mark.slow
def test_killed_process_resumes_without_recomputing(image_dir, tmp_path):
    """Assert a SIGKILLed evaluation (plus a torn last line) resumes: only missing rows are
    computed, no key is duplicated, and every expected row exists at the end."""
    out = tmp_path / "killed"
    script = _KILL_SCRIPT.format(root=str(ROOT), images=str(image_dir), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    rows_file = out / "rows.jsonl"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if rows_file.exists() and rows_file.read_text().count("\n") >= 15:
                break
            if proc.poll() is not None:
                pytest.fail(f"worker exited early: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.05)
        else:
            pytest.fail("worker wrote no rows in time")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    with open(rows_file, "a") as fh:
        fh.write('{"kind": "coded", "image": "img0.png", "co')  # a write torn by the kill
    before = len(RowStore(rows_file).load())
    assert 15 <= before < 52
    stats = run_sweep(folder_images(image_dir), spec(), out, resume=True)
    assert stats.computed == 52 - before
    lines = [json.loads(line) for line in rows_file.read_text().splitlines()]
    assert len(lines) == 52 and len({row_key(r) for r in lines}) == 52


def test_existing_output_needs_resume_and_same_configuration(image_dir, tmp_path):
    """Assert reusing a folder without --resume, or with another codec configuration, fails."""
    images = folder_images(image_dir)[:1]
    run_sweep(images, spec(qps=(30,)), tmp_path)
    with pytest.raises(InvalidArgumentError, match="--resume"):
        run_sweep(images, spec(qps=(30,)), tmp_path)
    other = spec(qps=(30,))
    other.variants["blur10"] = GaussianBlur(2.0)  # same label, other configuration
    with pytest.raises(InvalidArgumentError, match="blur10"):
        run_sweep(images, other, tmp_path, resume=True)
    with pytest.raises(InvalidArgumentError, match="shard"):
        run_sweep(images, spec(qps=(30,)), tmp_path, resume=True, shard=(1, 2))
    # new QPs extend a finished run: only their rows are computed
    stats = run_sweep(images, spec(qps=(30, 40)), tmp_path, resume=True)
    assert stats.computed == 2 * 2 and stats.skipped == 1 + 2 * 2


def test_shards_merge_to_the_full_run(image_dir, tmp_path):
    """Assert shards 0/2 and 1/2 split the images and merge to the rows of one full run."""
    images = folder_images(image_dir)
    run_sweep(images, spec(qps=(24,)), tmp_path / "full")
    for i in range(2):
        stats = run_sweep(images, spec(qps=(24,)), tmp_path / f"s{i}", shard=(i, 2))
        assert stats.total == 2 * (1 + 2 * 2)
    counts = merge_shards(tmp_path / "merged", [tmp_path / "s0", tmp_path / "s1"])
    assert counts == {"rows": 4 * 5, "shards": 2, "missing_shards": 0}
    full = values(RowStore(tmp_path / "full" / "rows.jsonl").load())
    assert values(RowStore(tmp_path / "merged" / "rows.jsonl").load()) == full
    finalize(tmp_path / "merged", n_boot=0, plots=False)
    assert json.loads((tmp_path / "merged" / "run.json").read_text())["shard"] == {"index": 0, "count": 1}


class _TestPlugin:
    @staticmethod
    @hookimpl
    def npp_register_codecs(register):
        register(ZlibQuantCodec)

    @staticmethod
    @hookimpl
    def npp_register_tasks(register):
        register("tiny", TinyClassifier)


@pytest.fixture
def registered(plugin_host):
    plugin_host.register(_TestPlugin, name="evaltest")
    return plugin_host


def test_cli_runs_reports_and_resumes(registered, image_dir, tmp_path, capsys):
    """Assert `npp eval` evaluates, prints the BD table, and a rerun with --resume computes nothing."""
    out = tmp_path / "cli"
    argv = ["--codecs", "zq", "--qps", "12,30,42", "--variants", "plain,gaussian:sigma=0.8", "--tasks", "tiny",
            "--images", str(image_dir), "--out", str(out), "--bootstrap", "40", "--no-progress", "--metrics", "psnr"]
    assert main(argv) == 0
    cap = capsys.readouterr()
    assert "| tiny | zq | gaussian:sigma=0.8 | zq/plain | kl |" in cap.out
    assert "28 rows computed" in cap.err
    assert main(argv) == 2  # without --resume an existing run is refused
    assert "--resume" in capsys.readouterr().err
    assert main([*argv, "--resume"]) == 0
    assert "0 rows computed, 28 already done" in capsys.readouterr().err
    assert main(["report", str(out), "--anchor", "zq/gaussian:sigma=0.8", "--bootstrap", "0", "--no-plots"]) == 0
    assert "| tiny | zq | plain | zq/gaussian:sigma=0.8 | score |" in capsys.readouterr().out


def test_cli_calibrate_writes_operating_range(registered, image_dir, tmp_path, capsys):
    """Assert --calibrate finds QPs per codec and task and caches them."""
    out = tmp_path / "cal"
    assert main(["--codecs", "zq", "--tasks", "tiny", "--images", str(image_dir), "--out", str(out),
                 "--calibrate", "--num-qps", "3", "--no-progress"]) == 0
    qps = json.loads(capsys.readouterr().out)["zq"]["tiny"]
    cal = json.loads((out / "calibration.json").read_text())["zq"]["tiny"]
    assert qps == cal["qps"] and 2 <= len(qps) <= 3 and qps == sorted(qps)
    assert cal["ratio"][0] == 1.0 and cal["reference"] == 1.0


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--codecs", "nope"], "unknown codec 'nope'"),
        (["--codecs", "zq", "--qps", "60"], "qp=60 is out of range"),
        (["--codecs", "zq", "--variants", "blur07"], "unknown preprocessor 'blur07'"),
        (["--codecs", "zq", "--shard", "3/2"], "--shard"),
        (["--codecs", "zq", "--qps", "a,b"], "--qps"),
    ],
)
def test_cli_errors_are_one_line_exit_2(registered, image_dir, tmp_path, capsys, argv, needle):
    """Assert bad arguments give exit status 2 and one line on stderr naming the problem."""
    code = main([*argv, "--tasks", "tiny", "--images", str(image_dir), "--out", str(tmp_path / "x"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("npp eval: error:") and needle in err[-1]


def test_one_pass_classifier_score_equals_task_score():
    """Assert the single-forward score used for classifiers equals Task.score, for soft
    references and for labels, and that KL comes with it."""
    import torch

    from npp_plugin.evaluation.sweep import _task_scores

    task = TinyClassifier(seed=1)
    from npp_plugin.evaluation import builtin_images, select_evenly
    from npp_plugin.images import uint8_to_tensor_batch

    x = uint8_to_tensor_batch(np.stack([i.load() for i in select_evenly(builtin_images(crop_size=48), 12)]))
    y = x.flip(0)  # other photos: agreement only by chance
    ref = task.reference(x)
    score, kl = _task_scores(task, y, ref, ref)
    assert score == task.score(y, ref).tolist() and 0 < sum(score) < 12
    assert len(kl) == 12 and min(kl) >= 0
    labels = torch.arange(12) % 10
    assert _task_scores(task, y, ref, labels)[0] == task.score(y, labels).tolist()
