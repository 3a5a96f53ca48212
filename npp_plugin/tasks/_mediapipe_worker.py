"""MediaPipe worker: runs in MediaPipe's own environment, one process for many batches.

Started by :mod:`npp_plugin.tasks.mediapipe_runtime` with the interpreter of the environment
that set-up made for ``mediapipe==0.10.21`` (its ``protobuf<5`` cannot sit beside onnx in the
main one). It imports only the standard library, numpy and mediapipe, never npp_plugin.

Protocol on stdin/stdout, one request at a time:
    request:  a JSON line ``{"op": "segment" | "pose", "shape": [N, H, W, 3], "options": {}}``
              then N·H·W·3 bytes of RGB uint8;
    reply:    a JSON line ``{"ok": true, "arrays": [[name, dtype, shape], ...]}`` then each
              array's bytes in that order, or ``{"ok": false, "error": "..."}``.
The first line the worker writes is a hello: ``{"ok": true, "mediapipe": VERSION}``.
Every image is processed on its own (static-image mode): no tracking between images.
"""

from __future__ import annotations

import json
import sys

import numpy as np

#: BlazePose's landmark model that ships inside the wheel (complexity 0 and 2 would download).
POSE_COMPLEXITY = 1


def _send(out, header: dict, arrays: list[tuple[str, np.ndarray]] = ()) -> None:
    header = dict(header, arrays=[[n, str(a.dtype), list(a.shape)] for n, a in arrays])
    out.write(json.dumps(header).encode() + b"\n")
    for _, a in arrays:
        out.write(np.ascontiguousarray(a).tobytes())
    out.flush()


class _Models:
    def __init__(self) -> None:
        self._seg: dict[int, object] = {}
        self._pose: dict[float, object] = {}

    def segment(self, images: np.ndarray, options: dict) -> list[tuple[str, np.ndarray]]:
        from mediapipe.python.solutions import selfie_segmentation

        sel = int(options.get("model_selection", 0))
        if sel not in self._seg:
            self._seg[sel] = selfie_segmentation.SelfieSegmentation(model_selection=sel)
        model = self._seg[sel]
        masks = np.stack([model.process(img).segmentation_mask.astype(np.float32) for img in images])
        return [("masks", masks)]

    def pose(self, images: np.ndarray, options: dict) -> list[tuple[str, np.ndarray]]:
        from mediapipe.python.solutions import pose

        conf = float(options.get("min_detection_confidence", 0.5))
        if conf not in self._pose:
            self._pose[conf] = pose.Pose(static_image_mode=True, model_complexity=POSE_COMPLEXITY,
                                         enable_segmentation=False, min_detection_confidence=conf)
        model = self._pose[conf]
        landmarks = np.zeros((len(images), 33, 4), np.float32)  # x, y (normalised), z, visibility
        found = np.zeros(len(images), np.uint8)
        for i, img in enumerate(images):
            res = model.process(img)
            if res.pose_landmarks is not None:
                found[i] = 1
                landmarks[i] = [(p.x, p.y, p.z, p.visibility) for p in res.pose_landmarks.landmark]
        return [("landmarks", landmarks), ("found", found)]


def main() -> int:
    import mediapipe

    inp, out = sys.stdin.buffer, sys.stdout.buffer
    models = _Models()
    _send(out, {"ok": True, "mediapipe": mediapipe.__version__})
    while True:
        line = inp.readline()
        if not line:
            return 0  # the parent closed the pipe
        try:
            req = json.loads(line)
            n, h, w, c = (int(v) for v in req["shape"])
            size = n * h * w * c
            data = inp.read(size)
            if len(data) != size or c != 3:
                _send(out, {"ok": False, "error": f"expected {n}x{h}x{w}x3 bytes, got {len(data)} (c={c})"})
                return 1
            images = np.frombuffer(data, np.uint8).reshape(n, h, w, 3)
            op = getattr(models, req["op"], None) if req["op"] in ("segment", "pose") else None
            if op is None:
                _send(out, {"ok": False, "error": f"unknown op {req['op']!r}"})
                continue
            _send(out, {"ok": True}, op(images, req.get("options", {})))
        except Exception as exc:  # report to the parent, which raises with this text
            _send(out, {"ok": False, "error": f"{type(exc).__name__}: {exc}"})


if __name__ == "__main__":
    raise SystemExit(main())
