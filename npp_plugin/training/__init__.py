"""Training NPP through a real codec (the paper's Algorithm 1).

* :mod:`npp_plugin.ste` and :mod:`npp_plugin.surrogates` (codec-side, used here, by
  ``npp_refine`` and by the surrogate check) — the straight-through step and the analytic
  codec surrogates: real codec values forward, a proxy's or a surrogate's gradients back;
* :mod:`.losses` — the objective (rate, calibrated λ·task, a binding fidelity term);
* :mod:`.data` — image folders, COCO and the built-in photos; seeded crops per step;
* :mod:`.loop` — :func:`~.loop.run`, which runs one stage: :mod:`.proxy_stage` (stage 1, the
  learned proxies and their training helpers) or :mod:`.npp_stage` (stages 2 and 3, the NPP);
  :mod:`.common` — what they share (checkpoint, run log, stopper, components);
  :mod:`.config` — the configuration; :mod:`.ddp` — torchrun;
* ``npp train`` / ``python -m npp_plugin.training`` — :func:`npp_plugin.training.__main__.main`.

Importing this package is cheap; torch and compressai load when a stage runs.
"""

from __future__ import annotations

__all__: list[str] = []
