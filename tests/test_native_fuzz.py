"""Coverage-guided fuzzing of native/ in the test suite: the three libFuzzer harnesses
(native/fuzz/, clang with ASan + UBSan) are built, each runs for a bounded time on its seed
corpus with the BPG dictionary, and any finding (crash, sanitizer report, leak, hang,
harness assertion) fails the test. Every earlier finding, kept in
tests/data/fuzz-regressions/<target>/, is replayed first. Skipped when clang or its
libFuzzer runtime is missing (scripts/setup.sh installs them: clang libclang-rt-dev).

Longer campaigns: native/fuzz/campaign.sh."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from .conftest import ROOT

FUZZ = ROOT / "native" / "fuzz"
REGRESSIONS = ROOT / "tests" / "data" / "fuzz-regressions"
BUILD = ROOT / "build" / "fuzz-test"
#: seconds of fuzzing per harness: about a minute and a half in all. A unit over 60 s is a
#: hang (the slowest inputs seen take 2-53 ms unsanitised, seconds under ASan on a busy VM).
BUDGET = {"fuzz_container": 15, "fuzz_decode": 45, "fuzz_encode": 30}


def _libfuzzer_missing() -> str | None:
    clang = shutil.which("clang")
    if clang is None:
        return "clang is not installed (apt-get install clang libclang-rt-dev, as scripts/setup.sh does)"
    if shutil.which("pkg-config") is None or shutil.which("make") is None:
        return "make or pkg-config is missing"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "t.c"
        src.write_text("int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n)"
                       "{ (void)d; (void)n; return 0; }\n")
        proc = subprocess.run([clang, "-fsanitize=fuzzer,address,undefined", str(src), "-o",
                               str(Path(tmp) / "t")], capture_output=True, text=True)
    if proc.returncode != 0:
        return ("clang cannot link -fsanitize=fuzzer,address,undefined (the libFuzzer runtime, "
                f"libclang-rt-dev, is missing?): {proc.stderr.strip()[-300:]}")
    return None


_MISSING = _libfuzzer_missing()
pytestmark = pytest.mark.skipif(_MISSING is not None, reason=f"no libFuzzer: {_MISSING}")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = "detect_leaks=1:allocator_may_return_null=1"
    env["LSAN_OPTIONS"] = f"suppressions={FUZZ / 'lsan.supp'}"
    env["UBSAN_OPTIONS"] = "halt_on_error=1:print_stacktrace=1"
    return env


@pytest.fixture(scope="module")
def harnesses() -> dict[str, Path]:
    proc = subprocess.run(["nice", "-n", "10", "make", "-s", "-C", str(FUZZ), f"OUT={BUILD}", "-j2"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"building the harnesses failed:\n{proc.stdout}\n{proc.stderr}"
    return {t: BUILD / t for t in BUDGET}


@pytest.fixture(scope="module")
def seed_dirs(tmp_path_factory) -> dict[str, Path]:
    import importlib.util

    spec = importlib.util.spec_from_file_location("npp_fuzz_seeds", FUZZ / "seeds.py")
    seeds = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(seeds)
    return seeds.write(tmp_path_factory.mktemp("fuzz-seeds"))


@pytest.mark.parametrize("target", sorted(BUDGET))
def test_regressions_replay(harnesses, target):
    files = sorted((REGRESSIONS / target).glob("*")) if (REGRESSIONS / target).is_dir() else []
    if not files:
        pytest.skip(f"no regression inputs for {target} yet")
    proc = subprocess.run([str(harnesses[target]), *map(str, files)], capture_output=True,
                          text=True, env=_env(), timeout=300)
    assert proc.returncode == 0, f"{target} fails on a regression input:\n{proc.stderr[-4000:]}"
    assert len(re.findall(r"^Executed ", proc.stderr, re.M)) == len(files)


@pytest.mark.parametrize("target", sorted(BUDGET))
def test_fuzz_finds_nothing(harnesses, seed_dirs, target, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(seed_dirs[target], corpus)  # regression inputs are replayed above
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    cmd = [str(harnesses[target]), str(corpus), f"-dict={FUZZ / 'bpg.dict'}", "-max_len=16384",
           f"-max_total_time={BUDGET[target]}", "-timeout=60", "-rss_limit_mb=2048",
           f"-artifact_prefix={artifacts}/", "-print_final_stats=1"]
    # Through a shell that forks: a process exec'd straight from pytest inherits pytest's peak
    # RSS in getrusage (Linux carries the old memory's high-water mark across execve), which
    # libFuzzer's -rss_limit_mb reads, so a suite that once held 2 GB made every input "oom".
    proc = subprocess.run(["bash", "-c", '"$@"; exit $?', "fuzz", *cmd], capture_output=True, text=True,
                          env=_env(), timeout=BUDGET[target] + 240)
    found = sorted(p.name for p in artifacts.iterdir())
    assert proc.returncode == 0 and not found, (
        f"{target} found {found or 'a problem'} (artifacts in {artifacts}; add each to "
        f"tests/data/fuzz-regressions/{target}/ once fixed):\n{proc.stderr[-6000:]}")
    runs = re.search(r"stat::number_of_executed_units: (\d+)", proc.stderr)
    assert runs and int(runs.group(1)) > 0, proc.stderr[-2000:]
