"""Atomic file output (an error never leaves a half-written file behind), and the tagged
torch files the package writes (proxies, NPP weights, checkpoints): a dict whose ``"format"``
key names what it is, saved with :func:`save_tagged` and read back with :func:`load_tagged`."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["atomic_write_bytes", "load_tagged", "save_tagged"]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    The file gets the mode a plain ``open(path, "w")`` would give it (0666 less the umask,
    and any default ACL of the folder): the temporary file is created with mode 0666 and
    the kernel applies the umask, unlike ``tempfile.mkstemp``'s fixed 0600.
    """
    path = Path(path)
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def _create_temporary(path: Path) -> tuple[int, str]:
    """A new, exclusively created file beside ``path``: (descriptor, name)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = os.path.join(path.parent, f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    msg = f"cannot create a temporary file beside {str(path)!r}: 100 names taken"
    raise FileExistsError(msg)


def save_tagged(path: str | os.PathLike, fmt: str, obj: dict) -> Path:
    """``torch.save`` the dict ``obj``, tagged ``"format": fmt``, to ``path`` atomically, so
    that ``load_tagged(path, fmt, ...)`` reads it back; returns the path.

    ``obj`` may carry the tag itself (it must then equal ``fmt``). Serialising happens in
    memory before the file is touched: an object torch cannot save leaves any old file as it
    was.
    """
    import io

    import torch

    from .errors import InvalidArgumentError

    if not isinstance(obj, dict):
        msg = f"save_tagged: expected a dict to save as {fmt!r}, got {type(obj).__name__}"
        raise InvalidArgumentError(msg, argument="obj", allowed="dict")
    if obj.get("format", fmt) != fmt:
        msg = f"save_tagged: the dict carries format tag {obj['format']!r}, but {fmt!r} was asked for"
        raise InvalidArgumentError(msg, argument="fmt", allowed=obj["format"])
    buf = io.BytesIO()
    torch.save({"format": fmt, **obj}, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_tagged(
    source: str | os.PathLike | bytes,
    fmt: str,
    *,
    who: str,
    what: str,
    label: str | None = None,
    hint: str = "",
    map_location="cpu",
) -> dict:
    """``torch.load(weights_only=True)`` a dict whose ``"format"`` tag is ``fmt``.

    Raises :class:`~npp_plugin.errors.WeightsError` naming ``who`` and the file (``label``,
    default the path) when it is not a readable torch file or carries another tag; ``what``
    says what it should have been ("a proxy file"), ``hint`` how to make one.
    """
    import io

    import torch

    from .errors import WeightsError

    if label is None:
        label = "<bytes>" if isinstance(source, bytes) else repr(str(source))
    try:
        obj = torch.load(io.BytesIO(source) if isinstance(source, bytes) else source,
                         map_location=map_location, weights_only=True)
    except Exception as exc:
        msg = f"{who}: {label} is not a readable file ({what} expected; {type(exc).__name__}: {exc})"
        raise WeightsError(msg) from exc
    if not isinstance(obj, dict) or obj.get("format") != fmt:
        found = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        msg = f"{who}: {label} is not {what} (format tag {found!r}, expected {fmt!r}){hint}"
        raise WeightsError(msg)
    return obj
