"""The public API, listed (kornia's ``test_api_surface.py`` pattern).

Removing or renaming a public name breaks users, so it must be a deliberate edit here, next to
a deprecation alias; adding one is a decision too. Each list is what the module's ``__all__``
says; the ``Codec`` list is the contract plugins build on (``npp_plugin/codec.py``).
"""

from __future__ import annotations

import importlib
import inspect
import types

import pytest

import npp_plugin
from npp_plugin import Codec

PUBLIC = {
    "npp_plugin": [
        "Codec", "NppError", "Param", "Preprocessor", "__version__", "available_codecs",
        "available_preprocessors", "available_tasks", "codec_for_data", "get_codec",
        "get_preprocessor", "get_task", "hookimpl", "register_bpg_opener",
    ],
    "npp_plugin.codec": [
        "Codec", "DEFAULT_PIXEL_LIMIT", "HeaderSize", "PIXEL_LIMIT", "PIXEL_LIMIT_ENV", "Param",
        "default_workers", "pixel_limit_in_force",
    ],
    "npp_plugin.errors": [
        "CodecError", "CodecUnavailableError", "CorruptStreamError", "InvalidArgumentError",
        "NativeLibraryError", "NppError", "PixelLimitError", "PixelLimitWarning", "PluginError",
        "ShapeError", "TaskUnavailableError", "UnknownCodecError", "UnknownPreprocessorError",
        "UnknownTaskError", "WeightsError",
    ],
    "npp_plugin.fileio": ["atomic_write_bytes", "load_tagged", "save_tagged"],
    "npp_plugin.hookspecs": [
        "PROJECT", "hookimpl", "hookspec", "npp_register_codecs", "npp_register_preprocessors",
        "npp_register_tasks",
    ],
    "npp_plugin.images": [
        "check_image_batch", "dequantize_uint8", "is_tensor", "quantize_uint8", "tensor_batch_to_uint8", "to_float_batch",
        "to_uint8_rgb", "uint8_to_tensor_batch",
    ],
    "npp_plugin.plugins": [
        "DEFAULT_PLUGINS", "PluginHost", "PluginInfo", "PluginWarning", "default_host",
        "get_plugin_manager", "load_plugins", "plugin_infos", "reset", "use_host",
    ],
    "npp_plugin.preprocessors": [
        "BilateralFilter", "CONFIGS", "GaussianBlur", "GuidedFilter", "NppConfig", "NppNet",
        "NppPreprocessor", "NppWeights", "Preprocessor", "TaskRefine", "TunedBlur", "check_onnx_equivalence",
        "count_parameters", "describe_configs", "export_onnx", "gaussian_blur", "load_weights",
        "npp_filter", "npp_net", "read_weights", "resolve_preprocessor", "resolve_weights",
        "save_weights",
    ],
    "npp_plugin.registry": [
        "Registry", "available_codecs", "available_preprocessors", "available_tasks",
        "codec_registry", "get_codec", "get_preprocessor", "get_task", "load_all_registries",
        "preprocessor_registry", "task_registry",
    ],
}

#: What a plugin's codec class gets from ``Codec`` (methods and class attributes).
CODEC_CONTRACT = [
    "check", "decode", "description", "encode", "extensions", "from_config",
    "get_config", "info", "is_available", "max_size", "mime", "name", "normalized_qp", "params",
    "qp_norm_range", "qp_range", "quant_step", "quant_table", "require_available", "roundtrip",
    "unavailable_reason", "validate_data", "validate_qp", "validate_size", "version",
]

#: The spellings of release 0.1.0 that 0.2.0 deprecated; 0.3.0 removed them.
REMOVED_CODEC = ["_check_dims", "_require_available", "_validate_data", "_validate_qp", "encode_batch"]


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_all_lists_exactly_the_public_names(module):
    """Assert ``__all__`` is the listed names and each one resolves."""
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(PUBLIC[module])
    missing = [n for n in mod.__all__ if not hasattr(mod, n)]
    assert not missing, f"{module}.__all__ names what it does not define: {missing}"


def test_the_package_exposes_nothing_else():
    """Assert every public attribute of ``npp_plugin`` is in ``__all__`` or a submodule."""
    extra = [
        n for n, v in vars(npp_plugin).items()
        if not n.startswith("_") and n not in npp_plugin.__all__
        and not isinstance(v, types.ModuleType) and n != "annotations"  # from __future__
    ]
    assert not extra, f"public but not in npp_plugin.__all__: {extra}"


def test_the_codec_contract():
    """Assert the public members of ``Codec`` are the documented contract, each documented."""
    public = sorted(n for n in dir(Codec) if not n.startswith("_"))
    assert public == sorted(CODEC_CONTRACT)
    for name in CODEC_CONTRACT:
        member = inspect.getattr_static(Codec, name)
        if callable(member) or isinstance(member, (classmethod, staticmethod)):
            assert inspect.getdoc(getattr(Codec, name)), f"Codec.{name} has no docstring"
    for name in REMOVED_CODEC:
        assert not hasattr(Codec, name), f"Codec.{name} was removed in 0.3.0"


def test_a_legacy_check_dims_override_is_just_a_method():
    """Assert a plugin that still overrides ``_check_dims(rgb)`` (removed in 0.3.0) gets no
    special treatment: no warning, and only the base size rule applies."""
    import warnings

    import numpy as np

    from tests.test_eval_fixtures import ZlibQuantCodec

    with warnings.catch_warnings():
        warnings.simplefilter("error")

        class Legacy(ZlibQuantCodec):
            def _check_dims(self, rgb):  # never called
                raise AssertionError

    codec = Legacy()
    assert codec.decode(codec.encode(np.zeros((4, 5, 3), np.uint8), qp=10)).shape == (4, 5, 3)
