# SPDX-License-Identifier: GPL-2.0-or-later
"""λ tables: the weight ``npp_refine`` gives a task's loss against the bits, per QP.

A table is a JSON document made by ``npp search lambda --task NAME``::

    {"format": "npp_plugin.lambdas/1", "task": "efficientnet_lite0", "codec": "bpg",
     "lambdas": {"28": 2.1, "31": 1.2, ...}, "provenance": {...}}

λ at a QP is the plain codec's local rate–task slope, ``−ΔR/ΔD`` over QP ± 3 on training
crops (:func:`npp_plugin.evaluation.calibrate.calibrate_lambdas`), so J = bits/pixel + λ·loss
favours a change only when it moves the codec's rate–task curve. One table per task; it
applies to every codec by normalised QP, as the tuned blur's σ do (the codec it was
calibrated with is recorded).

Where ``npp_refine`` finds the table of a task, first match wins (:func:`find_table`):

1. ``$NPP_LAMBDAS``: a table file (used when its ``task`` is this task) or a folder of
   ``<task>.json``;
2. the user folder, ``$XDG_CACHE_HOME`` (or ``~/.cache``) ``/npp_plugin/lambdas/<task>.json``,
   where ``npp search lambda`` writes by default;
3. the tables shipped in the package (``npp_plugin/weights/lambdas/``): ``mobilenet_v2``,
   ``efficientnet_lite0`` and their ensemble ``mobilenet_v2+efficientnet_lite0``.

Every file is validated before use (:func:`read_table`); a malformed one is refused with an
error that names it and what is wrong, never skipped.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidArgumentError

__all__ = ["ENV_VAR", "FORMAT", "LambdaTable", "find_table", "make_command", "parse_lambdas", "read_table",
           "resolve_lambdas", "shipped_dir", "table_path", "user_dir"]

FORMAT = "npp_plugin.lambdas/1"
#: Environment variable naming a table file or a folder of ``<task>.json``.
ENV_VAR = "NPP_LAMBDAS"
#: A table is a few hundred bytes; anything far larger is not one.
MAX_BYTES = 1 << 20
MAX_ENTRIES = 256
QP_LIMITS = (0, 100)
LAMBDA_LIMIT = 1e6
_SAFE_NAME = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9_.+-]{0,199}")
_ALLOWED = "a JSON table {format, task, codec, lambdas: {qp: λ}} (npp search lambda), a dict qp → λ, or one λ"


@dataclass(frozen=True)
class LambdaTable:
    """A validated λ table: λ per QP for ``task``, calibrated with ``codec``."""

    task: str | None
    codec: str | None
    lambdas: dict[int, float]
    path: Path | None = None
    provenance: dict[str, Any] = field(default_factory=dict)


def make_command(task: str) -> str:
    """The command that calibrates ``task``'s table into the user folder."""
    return f"npp search lambda --task {task}"


def user_dir() -> Path:
    """``$XDG_CACHE_HOME`` (or ``~/.cache``) ``/npp_plugin/lambdas``: where ``npp search lambda``
    writes, beside the corpus and the models."""
    cache = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache, "npp_plugin", "lambdas")


def shipped_dir() -> Path:
    """The tables shipped in the package."""
    return Path(__file__).resolve().parent.parent / "weights" / "lambdas"


def table_path(folder: str | os.PathLike, task: str) -> Path | None:
    """``folder/<task>.json``, or None when ``task`` is no safe file name (it then has no
    table in any folder; pass ``lambdas=`` or give ``--out``)."""
    if not _SAFE_NAME.fullmatch(task) or task in (".", ".."):
        return None
    return Path(folder) / f"{task}.json"


def _bad(where: Any, why: str) -> InvalidArgumentError:
    """The error for a bad table: ``where`` is its file (named as such) or a label."""
    label = f"λ table {str(where)!r}" if isinstance(where, os.PathLike) else str(where)
    msg = f"{label}: {why}"
    return InvalidArgumentError(msg, argument="lambdas", allowed=_ALLOWED)


def _no_constants(name: str) -> float:
    msg = f"{name} is not a number JSON allows"
    raise ValueError(msg)


def parse_lambdas(value: Any, *, where: Any = "lambdas") -> dict[int, float]:
    """``{qp: λ}`` from a mapping of integer QPs (or their strings) to positive finite
    numbers, sorted by QP; anything else raises :class:`InvalidArgumentError` naming ``where``."""
    if not isinstance(value, dict) or not value:
        raise _bad(where, f"λ must be a non-empty object {{qp: λ}}, got {type(value).__name__} {_short(value)}")
    if len(value) > MAX_ENTRIES:
        raise _bad(where, f"{len(value)} QPs; a table holds at most {MAX_ENTRIES}")
    out: dict[int, float] = {}
    lo, hi = QP_LIMITS
    for q, v in value.items():
        if isinstance(q, bool) or not isinstance(q, (numbers.Integral, str)) or not re.fullmatch(r"[0-9]{1,3}", str(q).strip()):
            raise _bad(where, f"QP {_short(q)} is not an integer")
        qp = int(str(q).strip())
        if not lo <= qp <= hi:
            raise _bad(where, f"QP {qp} is outside [{lo}, {hi}]")
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise _bad(where, f"λ at QP {qp} is {type(v).__name__} {_short(v)}, not a number")
        v = float(v)
        if not (math.isfinite(v) and 0 < v < LAMBDA_LIMIT):
            raise _bad(where, f"λ at QP {qp} is {v!r}; every λ must be positive, finite and below {LAMBDA_LIMIT:g}")
        if qp in out:
            raise _bad(where, f"QP {qp} appears twice")
        out[qp] = v
    return dict(sorted(out.items()))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def read_table(path: str | os.PathLike, *, task: str | None = None, plain: bool = False) -> LambdaTable:
    """Read and validate the table at ``path``.

    Args:
        task: when given, the table must be this task's.
        plain: also accept a bare ``{qp: λ}`` object (what ``lambdas="file.json"`` always took);
            it has no task or codec.

    Raises:
        InvalidArgumentError: naming the file and what is wrong (unreadable, too large, not
            JSON, NaN or infinite numbers, another format, another task, bad QPs or λ).
    """
    path = Path(path)
    if path.exists() and not path.is_file():  # a folder, a FIFO, a device: never opened
        raise _bad(path, "is not a regular file")
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise _bad(path, f"cannot be read: {exc}; make one with `npp search lambda`") from exc
    if len(data) > MAX_BYTES:
        raise _bad(path, f"larger than {MAX_BYTES} bytes; not a λ table")
    try:
        doc = json.loads(data.decode("utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _bad(path, f"not valid JSON: {exc}") from exc
    if plain and isinstance(doc, (int, float)) and not isinstance(doc, bool):  # one λ for every QP
        doc = {0: doc}
    if plain and isinstance(doc, dict) and "format" not in doc:
        return LambdaTable(task=None, codec=None, lambdas=parse_lambdas(doc, where=path), path=path)
    if not isinstance(doc, dict):
        raise _bad(path, f"holds a JSON {type(doc).__name__}, not a table object")
    if doc.get("format") != FORMAT:
        raise _bad(path, f"format is {_short(doc.get('format'))}, not {FORMAT!r} (tables come from `npp search lambda`)")
    name = doc.get("task")
    if not isinstance(name, str) or not name:
        raise _bad(path, f"'task' must be a non-empty string, got {_short(name)}")
    if task is not None and name != task:
        raise _bad(path, f"is the table of task {name!r}, not {task!r}; make {task!r}'s with `{make_command(task)}`")
    codec = doc.get("codec")
    if codec is not None and not isinstance(codec, str):
        raise _bad(path, f"'codec' must be a string, got {_short(codec)}")
    prov = doc.get("provenance", {})
    if not isinstance(prov, dict):
        raise _bad(path, f"'provenance' must be an object, got {type(prov).__name__}")
    return LambdaTable(task=name, codec=codec, lambdas=parse_lambdas(doc.get("lambdas"), where=path), path=path,
                       provenance=prov)


def _sources() -> list[tuple[str, Path]]:
    env = os.environ.get(ENV_VAR, "").strip()
    out = [(f"${ENV_VAR}", Path(env))] if env else []
    return [*out, ("the user folder", user_dir()), ("the package", shipped_dir())]


def find_table(task: str) -> LambdaTable | None:
    """The first table for ``task`` in ``$NPP_LAMBDAS``, the user folder, then the package
    (see the module docstring); None when there is none. A file found is validated: a
    malformed one raises rather than being passed over."""
    for where, source in _sources():
        from_env = where == f"${ENV_VAR}"
        if from_env and source.is_file():
            # one table for one task: used for it, passed over for the others
            table = read_table(source)
            if table.task == task:
                return table
            continue
        if not source.is_dir():
            if from_env:
                msg = f"${ENV_VAR}={str(source)!r} is neither a λ table file nor a folder of <task>.json"
                raise InvalidArgumentError(msg, argument="lambdas", allowed=f"${ENV_VAR}: a table file or a folder")
            continue
        path = table_path(source, task)
        if path is not None and path.is_file():
            return read_table(path, task=task)
    return None


def resolve_lambdas(value: Any, *, task: str, who: str = "preprocessor 'npp_refine'") -> tuple[dict[int, float], LambdaTable | None]:
    """``lambdas=`` as ``npp_refine`` takes it, resolved to ``({qp: λ}, the table or None)``.

    ``value``: None (``task``'s table, from :func:`find_table`), the path of a table file (or
    of a bare ``{qp: λ}`` JSON object), a dict ``{qp: λ}``, or one λ for every QP. Errors
    are :class:`InvalidArgumentError` (``argument="lambdas"``) prefixed with ``who``.
    """
    try:
        return _resolve(value, task)
    except InvalidArgumentError as exc:
        msg = f"{who}: {exc}"
        raise InvalidArgumentError(msg, argument="lambdas", allowed=exc.allowed) from exc


def _resolve(value: Any, task: str) -> tuple[dict[int, float], LambdaTable | None]:
    if value is None:
        table = find_table(task)
        if table is None:
            where = ", ".join(f"{w} ({p})" for w, p in _sources())
            msg = (f"no λ table for task {task!r} (looked in {where}); make one with "
                   f"`{make_command(task)}`, or pass lambdas={{qp: λ}}")
            raise InvalidArgumentError(msg, argument="lambdas", allowed=_ALLOWED)
        return table.lambdas, table
    if isinstance(value, (str, os.PathLike)):  # a JSON file (the CLI cannot spell a dict)
        table = read_table(value, plain=True)
        if table.task is not None and table.task != task:
            raise _bad(Path(value), f"is the table of task {table.task!r}, not {task!r}; make {task!r}'s with "
                                    f"`{make_command(task)}`")
        return table.lambdas, table
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return parse_lambdas({0: value}, where="lambdas"), None
    if isinstance(value, dict):
        return parse_lambdas(value, where="lambdas"), None
    why = f"must be a table path, a dict qp → λ or one λ, got {type(value).__name__}"
    err = _bad("lambdas", why)  # named first: the linter wants no literal in a raise
    raise err
