"""Join the outputs of ``npp eval --shard i/n`` runs into one evaluation folder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import InvalidArgumentError
from .store import RowStore, row_key
from .sweep import MANIFEST, ROWS, _check_compatible, _merge_manifest, read_manifest, write_manifest

__all__ = ["merge_shards"]


def merge_shards(out_dir: str | Path, shard_dirs: Sequence[str | Path]) -> dict[str, int]:
    """Merge shard folders into ``out_dir`` (which must not hold results yet).

    The shards must share their configuration (codecs, variants, tasks, images, metrics);
    rows are deduplicated by key. Returns counts of rows and of shards seen.

    Raises:
        InvalidArgumentError: no shards, a folder is not an evaluation output, the
            configurations differ, or ``out_dir`` already holds results.
    """
    out = Path(out_dir)
    if not shard_dirs:
        msg = "merge: give at least one shard folder"
        raise InvalidArgumentError(msg, argument="shards", allowed="one or more folders")
    if (out / MANIFEST).exists() or (out / ROWS).exists():
        msg = f"merge: {out} already holds results; merge into a new folder"
        raise InvalidArgumentError(msg, argument="out", allowed="an empty folder")
    manifests = [read_manifest(Path(d)) for d in shard_dirs]
    merged = dict(manifests[0])
    merged["runs"] = []
    seen_shards = set()
    for d, m in zip(shard_dirs, manifests, strict=True):
        _check_compatible(merged, m, Path(d))
        merged = _merge_manifest(merged, m)
        seen_shards.add((m["shard"]["index"], m["shard"]["count"]))
    counts = {n for _, n in seen_shards}
    missing = []
    if len(counts) == 1:
        (n,) = counts
        missing = sorted(set(range(n)) - {i for i, _ in seen_shards})
    merged["shard"] = {"index": 0, "count": 1}
    merged["merged_from"] = [{"dir": str(d), **m["shard"]} for d, m in zip(shard_dirs, manifests, strict=True)]
    merged["missing_shards"] = missing
    rows: dict[tuple, dict] = {}
    for d in shard_dirs:
        for r in RowStore(Path(d) / ROWS).load():
            rows.setdefault(row_key(r), r)
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(out, merged)
    RowStore(out / ROWS).append(rows.values())
    return {"rows": len(rows), "shards": len(shard_dirs), "missing_shards": len(missing)}
