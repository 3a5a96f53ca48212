"""Import paths that moved keep working for one release: each gives the module (or name) at
its new path itself and warns once with a DeprecationWarning; those of 0.1.0 are gone."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from npp_plugin._moved import MOVED

_SCRIPT = textwrap.dedent("""
    import importlib, json, sys, warnings
    from npp_plugin._moved import MOVED
    out = {}
    for old, new in MOVED.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            __import__(old)  # an import statement's route (importlib.import_module adds a frame)
            first = sys.modules[old]
            __import__(old)
            again = sys.modules[old]
        mine = [str(w.message) for w in caught if w.category is DeprecationWarning and old + " " in str(w.message)]
        real = importlib.import_module(new)
        out[old] = {"same": first is real and again is real, "warnings": mine,
                    "spec": real.__spec__.name, "name": real.__name__,
                    "where": sorted({w.filename for w in caught})}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from npp_plugin.training.surrogates import surrogate_step
        from npp_plugin.training.ste import CodecStep
    import npp_plugin.ste, npp_plugin.surrogates
    out["classes"] = [surrogate_step is npp_plugin.surrogates.surrogate_step,
                      CodecStep is npp_plugin.ste.CodecStep, not caught]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from npp_plugin.preprocessors.model import npp_net
    import npp_plugin.preprocessors.weights as W
    out["npp_net"] = [npp_net is W.npp_net, [str(w.message) for w in caught if w.category is DeprecationWarning],
                      sorted({w.filename for w in caught})]
    gone = []
    for old in ("npp_plugin.preprocessor", "npp_plugin.filters", "npp_plugin.preprocess",
                "npp_plugin.preprocess.hook"):
        try:
            importlib.import_module(old)
        except ModuleNotFoundError:
            gone.append(old)
    out["gone"] = gone
    print(json.dumps(out))
""")


def test_old_paths_are_the_new_modules_and_warn_once():
    """Assert every moved name imports as the very module at its new path (its own name and
    spec intact), warns exactly once naming the new path, at the importing line, and that
    names imported through old paths are the new classes."""
    res = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, check=True)
    out = json.loads(res.stdout)
    assert set(MOVED) <= set(out)
    for old, new in MOVED.items():
        row = out[old]
        assert row["same"], old
        assert row["spec"] == row["name"] == new
        assert len(row["warnings"]) == 1 and new in row["warnings"][0] and "deprecated" in row["warnings"][0]
        assert row["where"] == ["<string>"], row["where"]  # the line that imported it, not importlib
    assert out["classes"] == [True, True, True]  # already imported above: no second warning
    same, warned, where = out["npp_net"]
    assert same and len(warned) == 1 and "npp_plugin.preprocessors.weights" in warned[0], warned
    assert where == ["<string>"], where
    assert len(out["gone"]) == 4, out["gone"]  # the 0.1.0 paths served their release (0.2.0)


def test_new_package_imports_without_torch():
    """Plugin discovery imports the preprocessors package and its hook without torch."""
    code = ("import sys, npp_plugin.preprocessors, npp_plugin.preprocessors.hook, "
            "npp_plugin.preprocessors.filters; print('torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False"
