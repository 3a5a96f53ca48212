# SPDX-License-Identifier: GPL-2.0-or-later
"""NPP weights files: save → load, stored configuration and metadata, refusal of bad files,
and where weights are looked for."""

from __future__ import annotations

import hashlib
import json

import pytest

torch = pytest.importorskip("torch")

from npp_plugin.errors import InvalidArgumentError, WeightsError  # noqa: E402
from npp_plugin.preprocessors import weights as W  # noqa: E402
from npp_plugin.preprocessors.model import NppNet  # noqa: E402
from npp_plugin.preprocessors.weights import npp_net  # noqa: E402

META = {
    "codec": {"codec": "jpeg", "chroma": "420"},
    "recipe": {"stage": 3, "steps": 10, "lr": 1e-4, "qps": [28, 34, 41]},
    "fidelity": {"kind": "mse", "beta": 0.5},
    "metrics": {"bd_rate_kl": -0.4},
    "task": "mobilenet_v2",
}


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No $NPP_WEIGHTS and an empty shipped folder, whatever the environment holds."""
    torch.set_num_threads(1)
    monkeypatch.delenv(W.ENV_VAR, raising=False)
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    monkeypatch.setattr(W, "_shipped_dir", lambda: shipped)
    return shipped


def trained(config="tiny", seed=0, **kwargs) -> NppNet:
    """A network away from identity, with non-default BatchNorm statistics, in eval mode."""
    net = npp_net(config=config, **kwargs)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
        net.train()
        net(torch.rand(2, 3, 32, 32, generator=gen), 0.5)  # updates running_mean / var
    return net.eval()


def image(n=2, h=29, w=35):
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(7))


def test_save_load_identical_output(tmp_path):
    """Assert a saved and reloaded network gives bit-identical output, BN statistics included."""
    net = trained()
    path = W.save_weights(tmp_path / "a.npp.pt", net, meta=META)
    loaded, info = W.load_weights(path)
    x = image()
    with torch.inference_mode():
        assert torch.equal(loaded(x, 0.37), net(x, 0.37))
    assert not loaded.training
    for key, value in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert info.path == path and info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_npp_net_builder_loads_weights(tmp_path):
    """Assert npp_net(weights=...) builds the stored configuration with the stored tensors."""
    net = trained("tiny")
    path = W.save_weights(tmp_path / "t.npp.pt", net, meta=META)
    again = npp_net(weights=path)
    x = image(1)
    with torch.inference_mode():
        assert torch.equal(again(x, 0.8), net(x, 0.8))
    with pytest.raises(WeightsError, match="holds configuration 'tiny', but 'small'"):
        npp_net(weights=path, config="small")
    with pytest.raises(WeightsError, match="cannot override"):
        npp_net(weights=path, qa=False)


def test_configuration_is_stored_not_inferred(tmp_path):
    """Assert a custom configuration comes back from the file's record, not from tensor shapes."""
    net = trained("tiny", widths=(6, 12, 24), qa=False, qa_hidden=4)
    path = W.save_weights(tmp_path / "c.npp.pt", net, meta=META)
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == W.FORMAT and raw["format_version"] == 1
    assert raw["config"] == {
        "name": "tiny",
        "widths": [6, 12, 24],
        "qa": False,
        "qa_hidden": 4,
        "description": net.config.description,
    }
    info = W.read_weights(path)
    assert info.config == net.config and info.config.multiple == 8


def test_meta_recorded(tmp_path):
    """Assert the training recipe, fidelity constraint, codec and metrics are stored, plus provenance."""
    net = trained()
    path = W.save_weights(
        tmp_path / "m.npp.pt", net, meta={k: v for k, v in META.items() if k != "metrics"}
    )
    meta = W.read_weights(path).meta
    for key in ("codec", "recipe", "fidelity", "task"):
        assert meta[key] == META[key]
    assert meta["metrics"] == {}
    assert meta["params"] == sum(p.numel() for p in net.parameters())
    assert (
        meta["torch_version"] and meta["npp_plugin_version"] and meta["created"].endswith("+00:00")
    )


@pytest.mark.parametrize("drop", W.REQUIRED_META)
def test_meta_required_keys(tmp_path, drop):
    """Assert saving without codec, recipe or fidelity is refused by name and writes nothing."""
    meta = {k: v for k, v in META.items() if k != drop}
    with pytest.raises(InvalidArgumentError, match=drop):
        W.save_weights(tmp_path / "x.npp.pt", trained(), meta=meta)
    assert list(tmp_path.iterdir()) == [tmp_path / "shipped"]


def test_meta_must_be_json(tmp_path):
    """Assert metadata that JSON cannot hold (objects, NaN) is refused."""
    with pytest.raises(InvalidArgumentError, match="JSON"):
        W.save_weights(
            tmp_path / "x.npp.pt", trained(), meta={**META, "metrics": {"x": float("nan")}}
        )
    with pytest.raises(InvalidArgumentError, match="JSON"):
        W.save_weights(tmp_path / "x.npp.pt", trained(), meta={**META, "recipe": object()})
    with pytest.raises(InvalidArgumentError, match="NppNet"):
        W.save_weights(tmp_path / "x.npp.pt", torch.nn.Linear(1, 1), meta=META)


def test_save_is_atomic_and_overwrites(tmp_path):
    """Assert saving leaves no temporary file and replaces an existing file whole."""
    path = tmp_path / "w.npp.pt"
    W.save_weights(path, trained(seed=1), meta=META)
    first = path.read_bytes()
    W.save_weights(path, trained(seed=2), meta=META)
    assert path.read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shipped", "w.npp.pt"]


# -- refused files ---------------------------------------------------------------------------


def _payload(net):
    """A valid file's contents, built by hand so single fields can be broken."""
    return {
        "format": W.FORMAT,
        "format_version": W.FORMAT_VERSION,
        "config": net.config.to_dict(),
        "state_dict": {k: v.clone() for k, v in net.state_dict().items()},
        "meta": json.loads(json.dumps(META)),
    }


def _write(path, obj):
    torch.save(obj, path)
    return path


def test_refuses_garbage_and_truncated(tmp_path):
    """Assert random bytes and a truncated file raise WeightsError naming the file."""
    junk = tmp_path / "junk.npp.pt"
    junk.write_bytes(b"not a weights file at all")
    with pytest.raises(WeightsError, match="junk.npp.pt.*not a readable"):
        W.read_weights(junk)
    good = W.save_weights(tmp_path / "g.npp.pt", trained(), meta=META)
    cut = tmp_path / "cut.npp.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(WeightsError, match="not a readable"):
        W.read_weights(cut)


def test_refuses_plain_state_dict(tmp_path):
    """Assert an ordinary PyTorch checkpoint (no format tag) is refused, not guessed from shapes."""
    path = _write(tmp_path / "sd.pt", trained().state_dict())
    with pytest.raises(WeightsError, match="not an NPP weights file"):
        W.read_weights(path)


def test_refuses_other_version_and_bad_config(tmp_path):
    """Assert an unknown format version and an invalid stored configuration are refused."""
    obj = _payload(trained())
    with pytest.raises(WeightsError, match="version 2 is not supported"):
        W.read_weights(_write(tmp_path / "v2.npp.pt", {**obj, "format_version": 2}))
    bad_cfg = {**obj, "config": {**obj["config"], "widths": [4, -1]}}
    with pytest.raises(WeightsError, match="invalid stored configuration"):
        W.read_weights(_write(tmp_path / "cfg.npp.pt", bad_cfg))


def test_refuses_mismatched_tensors(tmp_path):
    """Assert tensors that do not fit the stored configuration are refused when building."""
    obj = _payload(trained())
    obj["state_dict"].pop("out.weight")
    with pytest.raises(WeightsError, match="(?s)do not match configuration 'tiny'.*out.weight"):
        W.load_weights(_write(tmp_path / "miss.npp.pt", obj))
    obj = _payload(trained())
    obj["config"]["widths"] = [5, 10, 20, 40]  # the file lies about its shapes
    with pytest.raises(WeightsError, match="do not match"):
        W.load_weights(_write(tmp_path / "lie.npp.pt", obj))


def test_refuses_nan_weights(tmp_path):
    """Assert a file whose tensors hold NaN (a diverged run) is refused."""
    obj = _payload(trained())
    obj["state_dict"]["pixel1.weight"][0, 0, 0, 0] = float("nan")
    with pytest.raises(WeightsError, match="'pixel1.weight' contains NaN"):
        W.read_weights(_write(tmp_path / "nan.npp.pt", obj))


class _Evil:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_refuses_pickled_code(tmp_path, capsys):
    """Assert loading never runs pickled code (weights_only): such a file is refused."""
    obj = _payload(trained())
    obj["meta"] = {"evil": _Evil()}
    with pytest.raises(WeightsError, match="not a readable"):
        W.read_weights(_write(tmp_path / "evil.npp.pt", obj))
    assert "pickled code ran" not in capsys.readouterr().out


def test_hash_suffix_checked(tmp_path):
    """Assert a -<sha256 prefix> file name must match the file's hash."""
    src = W.save_weights(tmp_path / "h.npp.pt", trained(), meta=META)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    good = tmp_path / f"tiny-{digest[:8]}.npp.pt"
    good.write_bytes(src.read_bytes())
    assert W.read_weights(good).sha256 == digest
    bad = tmp_path / "tiny-deadbeef.npp.pt"
    bad.write_bytes(src.read_bytes())
    with pytest.raises(WeightsError, match="does not match the name's hash 'deadbeef'"):
        W.read_weights(bad)


# -- where weights come from -----------------------------------------------------------------


def test_no_weights_explains_how_to_get_them():
    """Assert asking for weights with none available says how to train or pass them."""
    with pytest.raises(WeightsError) as info:
        W.resolve_weights()
    text = str(info.value)
    assert (
        "npp train" in text and "NPP_WEIGHTS" in text and 'get_preprocessor("npp", weights=' in text
    )
    assert "never runs an untrained network" in text


def test_missing_path_refused(tmp_path):
    """Assert a path that does not exist (or a folder) is refused naming it."""
    with pytest.raises(WeightsError, match="nope.npp.pt.*neither a file nor a shipped"):
        W.resolve_weights(tmp_path / "nope.npp.pt")
    with pytest.raises(WeightsError, match="is a directory"):
        W.resolve_weights(tmp_path)
    with pytest.raises(InvalidArgumentError, match="path or a shipped name"):
        W.resolve_weights(42)


def test_env_var(tmp_path, monkeypatch):
    """Assert $NPP_WEIGHTS is used when no weights are given, and a bad value is named."""
    path = W.save_weights(tmp_path / "env.npp.pt", trained(), meta=META)
    monkeypatch.setenv(W.ENV_VAR, str(path))
    assert W.resolve_weights() == path
    explicit = W.save_weights(tmp_path / "explicit.npp.pt", trained(), meta=META)
    assert W.resolve_weights(explicit) == explicit  # an explicit source wins
    monkeypatch.setenv(W.ENV_VAR, str(tmp_path / "gone.npp.pt"))
    with pytest.raises(WeightsError, match=r"\$NPP_WEIGHTS=.*gone.npp.pt"):
        W.resolve_weights()


def test_shipped_weights(_isolated, tmp_path):
    """Assert shipped files are found by name, as the default, and per configuration."""
    shipped = _isolated
    W.save_weights(shipped / "default.npp.pt", trained("tiny"), meta=META)
    W.save_weights(shipped / "small.npp.pt", trained("small"), meta=META)
    assert set(W.shipped_weights()) == {"default", "small"}
    assert W.resolve_weights() == shipped / "default.npp.pt"
    assert W.resolve_weights(config="small") == shipped / "small.npp.pt"
    assert W.resolve_weights("small") == shipped / "small.npp.pt"
    net, info = W.load_weights(config="small")
    assert net.config.name == "small" and info.path.name == "small.npp.pt"
    with pytest.raises(WeightsError, match="'paper.npp.pt'.*shipped: default, small"):
        W.resolve_weights(config="paper")
