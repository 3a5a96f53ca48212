"""The demo's compact answer (``npp_plugin.evaluation.summary``) and the long table's notes."""

from __future__ import annotations

from npp_plugin.evaluation.results import RESAMPLE_WARNING, coding_times, format_table
from npp_plugin.evaluation.summary import format_summary

NOTE = "37/100 bootstrap resamples had overlap warnings or dropped points"


def _entry(task, variant, anchor, value, warnings=()):
    return {"task": task, "codec": "bpg", "variant": variant, "anchor": f"bpg/{anchor}", "metric": "kl",
            "value": value, "ci_low": value - 5, "ci_high": value + 5, "includes_zero": False, "n_images": 12,
            "warnings": list(warnings)}


def _results():
    bd = [
        _entry("mobilenet_v2", "blur_tuned", "plain", -30.0, [NOTE]),
        _entry("mobilenet_v2", "npp_refine", "plain", -80.0, ["Insufficient curve overlap: '16.0'. Minimum overlap: '75.0'", NOTE]),
        _entry("mobilenet_v2", "npp_refine", "blur_tuned", -77.5),
        _entry("efficientnet_lite0", "blur_tuned", "plain", -20.0),
        _entry("efficientnet_lite0", "npp_refine", "plain", -40.0),
        _entry("efficientnet_lite0", "npp_refine", "blur_tuned", -25.3),
        {**_entry("-", "npp_refine", "plain", 4.8), "metric": "psnr"},
    ]
    return {"bd_rate": bd, "variants": {"plain": None, "blur_tuned": {}, "npp_refine": {}},
            "qps": {"bpg": {"mobilenet_v2": [28, 34, 41]}},
            "bd_rate_settings": {"unit": "source", "n_boot": 100},
            "counts": {"images": 12, "sources": 3},
            "timing": [{"codec": "bpg", "variant": "npp_refine", "n": 36, "seconds_per_image": 0.75}]}


def test_summary_has_one_line_per_variant_both_classifiers_both_anchors(tmp_path):
    """Assert the summary gives, per codec and variant, the KL BD-rate with its interval
    against both anchors for both classifiers, the time per image, the counts, the
    interval warning once in words, and where the full table is."""
    text = format_summary(_results(), tasks=[("mobilenet_v2", "tuned with"), ("efficientnet_lite0", "unseen")],
                          out=tmp_path)
    lines = text.splitlines()
    refine = next(ln for ln in lines if ln.startswith("bpg") and "npp_refine" in ln)
    assert "−80.0 [−85.0, −75.0] ~ †" in refine and "−77.5 [−82.5, −72.5]" in refine
    assert "−40.0 [−45.0, −35.0]" in refine and "−25.3 [−30.3, −20.3]" in refine
    assert refine.split()[-1] == "750"
    blur = next(ln for ln in lines if ln.startswith("bpg") and "blur_tuned" in ln)
    assert "—" in blur and blur.split()[-1] == "n/a"
    assert not any(ln.startswith("bpg") and " plain " in f" {ln.split()[1]} " for ln in lines)
    assert "mobilenet_v2 (tuned with)" in text and "efficientnet_lite0 (unseen)" in text
    assert "12 images from 3 photos; QPs 28, 34, 41" in text
    flat = " ".join(text.split())  # the prose is wrapped
    assert flat.count("Read with care") == 1 and "2 of 6 intervals (†)" in flat and "1 of 6 BD-rates (~)" in flat
    assert str(tmp_path / "table.md") in text
    assert "psnr" not in text.lower().split("kl bd-rate")[0]


def test_long_table_says_the_resample_warning_once():
    """Assert table.md marks rows whose resamples had overlap trouble with † and says what
    that means once, instead of repeating the bootstrap note in every row."""
    table = format_table(_results()["bd_rate"])
    assert NOTE not in table and table.count(RESAMPLE_WARNING) == 1
    assert table.count("] †") == 2 and "overlap 16 % < 75 %" in table


def test_coding_times_count_each_coded_image_once():
    """Assert the time per image averages each (codec, variant, QP, image) once, whatever the
    number of tasks scoring it, and is None for rows written before timing existed."""
    rows = [{"kind": "coded", "codec": "bpg", "variant": "plain", "qp": q, "image": i, "task": t, "coded_s": s}
            for q, s in ((28, 0.2), (34, 0.1)) for i in ("a", "b") for t in ("m", "e")]
    rows += [{"kind": "coded", "codec": "jpeg", "variant": "plain", "qp": 28, "image": "a", "task": "m"}]
    got = {(t["codec"], t["variant"]): t for t in coding_times(rows)}
    assert got[("bpg", "plain")]["n"] == 4 and abs(got[("bpg", "plain")]["seconds_per_image"] - 0.15) < 1e-12
    assert got[("jpeg", "plain")]["seconds_per_image"] is None


def test_demo_scores_the_unseen_classifier_and_prints_the_summary(monkeypatch):
    """Assert ``npp demo`` evaluates with the classifier the preprocessors were tuned with and
    the unseen one, and asks for the summary with both labelled (the evaluation is stubbed)."""
    import npp_plugin.evaluation.__main__ as ev
    from npp_plugin import demo

    seen = []
    monkeypatch.setattr(ev, "main", lambda argv: seen.append(argv) or 0)
    assert demo.main(["--out", "runs/x"]) == 0
    argv = seen[0]
    assert argv[argv.index("--tasks") + 1] == "mobilenet_v2,efficientnet_lite0"
    assert argv[argv.index("--summary") + 1] == "mobilenet_v2=tuned with,efficientnet_lite0=unseen"
    assert "npp_refine" in argv[argv.index("--variants") + 1].split(",")
    assert argv[argv.index("--anchor") + 1] == "plain,blur_tuned"
    demo.main(["--out", "runs/x", "--unseen", ""])
    assert seen[1][seen[1].index("--tasks") + 1] == "mobilenet_v2"
