# SPDX-License-Identifier: GPL-2.0-or-later
"""Pre-encode hooks: the preprocessor contract, the classical filters and the neural
preprocessor (NPP: network, weights files, the "npp" hook, ONNX export, saliency blur).

Names are loaded lazily, so ``import npp_plugin.preprocessors.hook`` (plugin discovery) does
not import torch.

    base.py         Preprocessor (the contract), resolve_preprocessor()
    filters.py      GaussianBlur, BilateralFilter, GuidedFilter, TunedBlur, gaussian_blur()
    model.py        NppNet, NppConfig, CONFIGS, describe_configs()
    weights.py      npp_net() (fresh or from a file), save_weights(), load_weights(), read_weights(), resolve_weights()
    hook.py         NppPreprocessor, npp_filter() and the "npp" registration
    refine.py       TaskRefine: "npp_refine", per-image refinement on the real codec's J
    onnx_export.py  export_onnx(), check_onnx_equivalence()
    saliency.py     SaliencyBlurNet, SaliencyBlurConfig (the saliency-guided blur NPP)
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "CONFIGS",
    "BilateralFilter",
    "GaussianBlur",
    "GuidedFilter",
    "Preprocessor",
    "TunedBlur",
    "gaussian_blur",
    "resolve_preprocessor",
    "NppConfig",
    "NppNet",
    "NppPreprocessor",
    "NppWeights",
    "TaskRefine",
    "check_onnx_equivalence",
    "count_parameters",
    "describe_configs",
    "export_onnx",
    "load_weights",
    "npp_filter",
    "npp_net",
    "read_weights",
    "resolve_weights",
    "save_weights",
]

_WHERE = {
    "Preprocessor": "base",
    "resolve_preprocessor": "base",
    "BilateralFilter": "filters",
    "GaussianBlur": "filters",
    "GuidedFilter": "filters",
    "TunedBlur": "filters",
    "gaussian_blur": "filters",
    "CONFIGS": "model",
    "NppConfig": "model",
    "NppNet": "model",
    "count_parameters": "model",
    "describe_configs": "model",
    "npp_net": "weights",
    "NppWeights": "weights",
    "load_weights": "weights",
    "read_weights": "weights",
    "resolve_weights": "weights",
    "save_weights": "weights",
    "NppPreprocessor": "hook",
    "npp_filter": "hook",
    "TaskRefine": "refine",
    "export_onnx": "onnx_export",
    "check_onnx_equivalence": "onnx_export",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
