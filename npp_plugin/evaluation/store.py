"""The append-only row file that makes a sweep resumable.

Each finished unit of work appends its rows to ``rows.jsonl`` as complete lines, flushed and
fsynced, so a killed run loses at most the unit in flight. On reopening, a truncated last
line (the process died mid-write) is cut off, and the keys of the rows already there tell the
runner what to skip. Final tables are written separately, atomically, from these rows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import InvalidArgumentError

__all__ = ["RowStore", "row_key"]

KEY_FIELDS = ("kind", "image", "codec", "qp", "variant", "task")


def row_key(row: dict[str, Any]) -> tuple:
    """The identity of a row: (kind, image, codec, QP, variant, task)."""
    return tuple(row.get(k) for k in KEY_FIELDS)


class RowStore:
    """Rows of one sweep, one JSON object per line."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def repair(self) -> int:
        """Cut a trailing partial line; return how many bytes were removed."""
        if not self.path.exists():
            return 0
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end == len(data):
            return 0
        with open(self.path, "r+b") as fh:
            fh.truncate(end)
        return len(data) - end

    def load(self) -> list[dict[str, Any]]:
        """All complete rows (a later duplicate of a key replaces the earlier one)."""
        if not self.path.exists():
            return []
        rows: dict[tuple, dict] = {}
        with open(self.path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.endswith("\n"):
                    break  # partial last line of a killed run
                line = line.strip()
                if not line:
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    msg = f"{self.path}:{lineno}: not a JSON row ({exc}); the file is damaged"
                    raise InvalidArgumentError(msg, argument="rows", allowed="JSON lines") from exc
                rows[row_key(row)] = row
        return list(rows.values())

    def keys(self) -> set[tuple]:
        return {row_key(r) for r in self.load()}

    def append(self, rows: Iterable[dict[str, Any]]) -> int:
        """Append rows as whole lines, durable on return; returns how many."""
        lines = [json.dumps(r, sort_keys=True, allow_nan=True) + "\n" for r in rows]
        if not lines:
            return 0
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write("".join(lines))
            fh.flush()
            os.fsync(fh.fileno())
        return len(lines)
