"""Training NPP through a real codec (the paper's Algorithm 1).

* :mod:`.ste` — the straight-through step: real codec values forward, proxy gradients back;
* :mod:`.losses` — the objective (rate, calibrated λ·task, a binding fidelity term);
* :mod:`.data` — image folders, COCO and the built-in photos; seeded crops per step;
* :mod:`.config`, :mod:`.loop` — the three stages, checkpoints, logs; :mod:`.ddp` — torchrun;
* ``npp train`` / ``python -m npp_plugin.training`` — :func:`npp_plugin.training.__main__.main`.

Importing this package is cheap; torch and compressai load when a stage runs.
"""

from __future__ import annotations

__all__: list[str] = []
