"""MediaPipe in its own environment, called as a subprocess (a batch of images per call).

``mediapipe==0.10.21`` (the last release with the legacy solutions, whose ``.tflite`` files
ship inside the wheel) requires ``protobuf<5``, while onnx in the main environment requires
``protobuf>=6``: the two cannot share one environment. ``scripts/setup.sh`` therefore makes a
small one inside the main venv, at ``<venv>/mediapipe``; ``NPP_MEDIAPIPE_PYTHON`` names
another interpreter that has mediapipe 0.10.x.

One long-lived worker process (:mod:`._mediapipe_worker`) serves every call of a task, so the
interpreter and the graphs start once; it exits when its stdin closes (this process ending).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from ..errors import InvalidArgumentError, TaskUnavailableError

__all__ = ["MEDIAPIPE_VERSION", "MediapipeWorker", "mediapipe_python", "mediapipe_unavailable_reason",
           "to_uint8_images"]

#: The release set-up installs (the legacy solutions with their models inside the wheel).
MEDIAPIPE_VERSION = "0.10.21"
ENV_VAR = "NPP_MEDIAPIPE_PYTHON"
_WORKER = Path(__file__).with_name("_mediapipe_worker.py")


def _default_python() -> Path:
    sub = "Scripts/python.exe" if os.name == "nt" else "bin/python"
    return Path(sys.prefix) / "mediapipe" / sub


def mediapipe_python() -> Path:
    """The interpreter of MediaPipe's environment: ``$NPP_MEDIAPIPE_PYTHON`` or
    ``<sys.prefix>/mediapipe/bin/python`` (where ``scripts/setup.sh`` puts it)."""
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else _default_python()


def mediapipe_unavailable_reason() -> str | None:
    """Why the MediaPipe tasks cannot run here, or None when the interpreter is there."""
    py = mediapipe_python()
    if py.is_file() and os.access(py, os.X_OK):
        return None
    where = f"${ENV_VAR}={py}" if os.environ.get(ENV_VAR) else str(py)
    return (f"MediaPipe {MEDIAPIPE_VERSION} runs in its own environment and none was found at {where}: "
            f"run scripts/setup.sh, or set {ENV_VAR} to a python with mediapipe=={MEDIAPIPE_VERSION}")


def to_uint8_images(batch: Any) -> np.ndarray:
    """(N, 3, H, W) float in [0, 1] → (N, H, W, 3) uint8 RGB, rounded as codec inputs are."""
    import torch

    x = batch.detach().clamp(0, 1).mul(255.0).round().to(torch.uint8)
    return np.ascontiguousarray(x.permute(0, 2, 3, 1).cpu().numpy())


def _stop(proc: subprocess.Popen, log: Any) -> None:
    try:
        if proc.stdin:
            proc.stdin.close()
        proc.wait(timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait()
    finally:
        for f in (proc.stdout, log):
            if f is not None:
                f.close()


class MediapipeWorker:
    """A MediaPipe worker process, started on the first call.

    Args:
        task: the task name, for error messages.

    Raises:
        TaskUnavailableError: (at construction) no MediaPipe interpreter; (at the first call)
            the worker does not start or has another mediapipe release.
    """

    def __init__(self, task: str) -> None:
        reason = mediapipe_unavailable_reason()
        if reason:
            msg = f"task {task!r}: {reason}"
            raise TaskUnavailableError(msg)
        self.task = task
        self.python = mediapipe_python()
        self.version: str | None = None
        self._proc: subprocess.Popen | None = None
        self._log: Any = None
        self._lock = threading.Lock()
        self._finalizer: weakref.finalize | None = None

    def _start(self) -> None:
        env = dict(os.environ, GLOG_minloglevel="2", TF_CPP_MIN_LOG_LEVEL="2", PYTHONNOUSERSITE="1")
        env.pop("PYTHONPATH", None)  # the main environment's paths must not leak into MediaPipe's
        self._log = tempfile.TemporaryFile()  # MediaPipe logs to stderr; kept for error messages
        self._proc = subprocess.Popen([str(self.python), "-u", str(_WORKER)], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=self._log, env=env)
        self._finalizer = weakref.finalize(self, _stop, self._proc, self._log)
        hello = self._read_header()
        self.version = str(hello.get("mediapipe"))
        if not self.version.startswith("0.10."):
            self.close()
            msg = (f"task {self.task!r}: {self.python} has mediapipe {self.version}; the legacy solutions "
                   f"need mediapipe 0.10.x (set-up installs {MEDIAPIPE_VERSION})")
            raise TaskUnavailableError(msg)

    def _stderr_tail(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        lines = [ln for ln in self._log.read().decode(errors="replace").splitlines()
                 if ln.strip() and not ln.startswith(("W0000", "I0000", "INFO:", "WARNING: All log"))]
        return "\n".join(lines[-8:])

    def _fail(self, what: str) -> NoReturn:
        """Stop the worker and raise, with the end of its stderr."""
        code = self._proc.poll() if self._proc else None
        tail = self._stderr_tail()
        self.close()
        msg = f"task {self.task!r}: the MediaPipe worker ({self.python}) {what} (exit {code})" + (
            f":\n{tail}" if tail else "")
        raise TaskUnavailableError(msg)

    def _read_header(self) -> dict:
        assert self._proc is not None and self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            self._fail("stopped")
        return json.loads(line)

    def _read_exact(self, n: int) -> bytes:
        assert self._proc is not None and self._proc.stdout is not None
        data = self._proc.stdout.read(n)
        if len(data) != n:
            self._fail("stopped mid-reply")
        return data

    def call(self, op: str, images: np.ndarray, **options: Any) -> dict[str, np.ndarray]:
        """Run ``op`` ("segment" or "pose") on (N, H, W, 3) uint8 RGB images, one round trip."""
        images = np.ascontiguousarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            msg = f"task {self.task!r}: MediaPipe takes (N, H, W, 3) uint8 RGB, got {images.dtype} {images.shape}"
            raise InvalidArgumentError(msg, argument="images", allowed="(N, H, W, 3) uint8")
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._start()
            assert self._proc is not None and self._proc.stdin is not None
            header = {"op": op, "shape": list(images.shape), "options": options}
            try:
                self._proc.stdin.write(json.dumps(header).encode() + b"\n")
                self._proc.stdin.write(images.tobytes())
                self._proc.stdin.flush()
            except (BrokenPipeError, OSError):
                self._fail("stopped")
            reply = self._read_header()
            if not reply.get("ok"):
                msg = f"task {self.task!r}: MediaPipe {op} failed: {reply.get('error')}"
                raise InvalidArgumentError(msg, argument="images", allowed="RGB images MediaPipe accepts")
            out = {}
            for name, dtype, shape in reply["arrays"]:
                dt = np.dtype(dtype)
                count = int(np.prod(shape)) if shape else 1
                out[name] = np.frombuffer(self._read_exact(count * dt.itemsize), dt).reshape(shape).copy()
            return out

    def close(self) -> None:
        """Stop the worker (it restarts on the next call)."""
        if self._finalizer is not None:
            self._finalizer()
        self._proc, self._log, self._finalizer = None, None, None
