"""λ tables for npp_refine: ``npp search lambda`` calibrates one for any registered task (a
third-party plugin's, an ensemble), ``npp_refine`` finds it ($NPP_LAMBDAS, the user folder,
the package), and a malformed or hostile table is refused with its file named."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import npp_plugin
from npp_plugin import hookimpl
from npp_plugin.cli import main as npp_main
from npp_plugin.errors import InvalidArgumentError, UnknownTaskError
from npp_plugin.preprocessors.filters import TunedBlur
from npp_plugin.preprocessors.lambdas import FORMAT, find_table, read_table, shipped_dir, user_dir
from npp_plugin.preprocessors.refine import TaskRefine
from npp_plugin.tasks import Task, freeze

# -- a third-party classifier, registered from outside the package ------------------------


class TinyClassifier(Task):
    """A 10-class convolutional classifier with fixed random weights: the KL to its own
    uncompressed prediction is the loss, as for the shipped classifiers."""

    kind = "classification"

    def __init__(self, *, seed: int = 0, name: str = "tinycls") -> None:
        gen = torch.Generator().manual_seed(seed)
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, stride=2), torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 3),
                                  torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                  torch.nn.Linear(16, 10))
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        self.net = freeze(net)
        self.name = name

    def modules(self):
        return [self.net]

    def reference(self, batch):
        with torch.no_grad():
            return self.net(batch * 4 - 2).softmax(dim=1)

    def loss(self, batch, target, *, reduction="mean"):
        logp = self.net(batch * 4 - 2).log_softmax(dim=1)
        per = (torch.special.xlogy(target, target) - target * logp).sum(dim=1)
        return {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]

    def score(self, batch, target):
        with torch.no_grad():
            return (self.net(batch * 4 - 2).argmax(dim=1) == target.argmax(dim=1)).float()


class TinyPlugin:
    """What a third-party package's plugin module holds."""

    @staticmethod
    @hookimpl
    def npp_register_tasks(register):
        register("tinycls", TinyClassifier)
        register("tinytoo", lambda **kw: TinyClassifier(seed=1, name="tinytoo", **kw))


@pytest.fixture(autouse=True)
def own_folders(tmp_path, monkeypatch):
    """No user table or $NPP_LAMBDAS of the machine running the tests leaks in."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("NPP_LAMBDAS", raising=False)


@pytest.fixture
def tiny(plugin_host):
    plugin_host.register(TinyPlugin, name="tiny-plugin")
    return plugin_host


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Five photos of five scenes (the command calibrates on the fit split, by scene)."""
    from PIL import Image
    from skimage import data

    root = tmp_path_factory.mktemp("photos")
    for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry"):
        Image.fromarray(getattr(data, name)()[:192, :192]).resize((96, 96)).save(root / f"{name}.png")
    return root


def _search(photos, *extra) -> list[str]:
    return ["search", "lambda", "--images", str(photos), "--max-images", "4", "--crop-size", "64",
            "--qps", "30,38", "--no-progress", *extra]


def _image() -> torch.Tensor:
    from skimage import data

    return torch.from_numpy(data.astronaut()[::8, ::8][:64, :64].copy()).permute(2, 0, 1)[None].float() / 255


def test_a_third_party_task_gets_its_table_from_the_command_and_refines_with_it(tiny, photos, tmp_path, monkeypatch, capsys):
    out = tmp_path / "tiny.json"
    assert npp_main(_search(photos, "--task", "tinycls", "--out", str(out))) == 0
    assert json.loads(capsys.readouterr().out)["table"] == str(out)
    doc = json.loads(out.read_text())
    prov = doc["provenance"]
    assert doc["format"] == FORMAT and doc["task"] == "tinycls" and doc["codec"] == "bpg"
    assert prov["codec"]["fast"] is True and prov["codec_options"] == {"fast": True}  # the shipped tables' setting
    assert prov["qps"] == [30, 38] and set(prov["calibration"]) == {"30", "38"} and prov["crops"] == 4
    assert prov["images"] == str(photos) and prov["crop_size"] == 64 and prov["n_photos"] == len(prov["photos"]) >= 1
    assert prov["task"]["name"] == "tinycls" and prov["package"]["version"] == npp_plugin.__version__
    assert prov["command"].startswith("npp search lambda --images ") and prov["date"]
    assert all({"lmbda", "bpp", "task", "slope_ok"} <= set(row) for row in prov["calibration"].values())

    monkeypatch.setenv("NPP_LAMBDAS", str(out))
    refine = npp_plugin.get_preprocessor("npp_refine", task="tinycls", steps=2)
    assert refine.lambdas == {int(q): v for q, v in doc["lambdas"].items()}
    assert refine.lambda_table.path == out
    codec = npp_plugin.get_codec("bpg", fast=True)
    r = refine.refine(_image(), codec=codec, qp=34)
    assert r.images.shape == (1, 3, 64, 64) and bool((r.j <= r.j_base).all())
    assert r.lam == pytest.approx(refine.lam(codec, 34))
    data = codec.encode(_image()[0].permute(1, 2, 0).mul(255).round().byte().numpy(), qp=34, preprocess=refine)
    assert codec.decode(data).shape == (64, 64, 3)


def test_the_command_writes_to_the_user_folder_where_npp_refine_finds_it(tiny, photos, capsys):
    assert npp_main(_search(photos, "--task", "tinycls")) == 0
    path = user_dir() / "tinycls.json"
    assert json.loads(capsys.readouterr().out)["table"] == str(path)
    assert TaskRefine(base=None, task="tinycls", steps=1).lambdas == read_table(path).lambdas


def test_an_ensemble_is_a_task_with_its_own_table(tiny, photos, tmp_path, monkeypatch, capsys):
    task = npp_plugin.get_task("tinycls+tinytoo")
    assert task.name == "tinycls+tinytoo" and [t.name for t in task.tasks] == ["tinycls", "tinytoo"]
    folder = tmp_path / "tables"
    folder.mkdir()
    assert npp_main(_search(photos, "--task", "tinycls+tinytoo", "--out", str(folder / "tinycls+tinytoo.json"))) == 0
    monkeypatch.setenv("NPP_LAMBDAS", str(folder))  # a folder of <task>.json
    refine = TaskRefine(base=None, task="tinycls+tinytoo", steps=1)
    assert refine.lambda_table.path == folder / "tinycls+tinytoo.json"
    with pytest.raises(InvalidArgumentError, match=r"npp search lambda --task tinycls\b"):
        TaskRefine(base=None, task="tinycls", steps=1)  # the ensemble's table is not a member's


def test_without_a_table_the_error_names_the_command(tiny):
    with pytest.raises(InvalidArgumentError) as e:
        npp_plugin.get_preprocessor("npp_refine", task="tinycls")
    assert "`npp search lambda --task tinycls`" in str(e.value) and e.value.argument == "lambdas"
    assert str(user_dir()) in str(e.value)
    assert TaskRefine(base=None, task="tinycls", steps=1, lambdas={34: 1.0}).lambdas == {34: 1.0}


def test_unknown_tasks_and_members_are_named(tiny, photos, capsys):
    with pytest.raises(UnknownTaskError, match=r"unknown task 'nosuch' \(a member of the ensemble 'tinycls\+nosuch'\)"):
        npp_plugin.get_task("tinycls+nosuch")
    with pytest.raises(InvalidArgumentError, match="twice"):
        npp_plugin.get_task("tinycls+tinycls")
    assert npp_main(_search(photos, "--task", "nosuch")) == 2
    assert "unknown task 'nosuch'" in capsys.readouterr().err


def _table(task="tinycls", lambdas=None, **extra):
    lam = {"28": 2.0, "41": 0.3} if lambdas is None else lambdas
    return {"format": FORMAT, "task": task, "codec": "bpg", "lambdas": lam, **extra}


HOSTILE = {
    "not json": b"{'28': 1}",
    "empty": b"",
    "a list": b"[1, 2]",
    "NaN": json.dumps(_table(lambdas={"28": 1.0})).replace("1.0", "NaN").encode(),
    "Infinity": json.dumps(_table(lambdas={"28": 1.0})).replace("1.0", "Infinity").encode(),
    "negative": json.dumps(_table(lambdas={"28": -1.0})).encode(),
    "zero": json.dumps(_table(lambdas={"28": 0})).encode(),
    "huge λ": json.dumps(_table(lambdas={"28": 1e300})).encode(),
    "λ a string": json.dumps(_table(lambdas={"28": "1.0"})).encode(),
    "λ a bool": json.dumps(_table(lambdas={"28": True})).encode(),
    "QP not a number": json.dumps(_table(lambdas={"x": 1.0})).encode(),
    "QP out of range": json.dumps(_table(lambdas={"4000": 1.0})).encode(),
    "QP negative": json.dumps(_table(lambdas={"-3": 1.0})).encode(),
    "QP in other digits": json.dumps(_table(lambdas={"\u0662\u0668": 1.0})).encode(),
    "no λ": json.dumps({k: v for k, v in _table().items() if k != "lambdas"}).encode(),
    "empty λ": json.dumps(_table(lambdas={})).encode(),
    "too many QPs": json.dumps(_table(lambdas={str(q): 1.0 for q in range(300)})).encode(),
    "another format": json.dumps({**_table(), "format": "npp_plugin.blur-tuned/1"}).encode(),
    "no format": json.dumps({k: v for k, v in _table().items() if k != "format"}).encode(),
    "no task": json.dumps({**_table(), "task": None}).encode(),
    "provenance a list": json.dumps({**_table(), "provenance": [1]}).encode(),
    "deep nesting": b'{"format": ' + b"[" * 100000 + b"]" * 100000 + b"}",
    "too large": b'{"pad": "' + b" " * (2 << 20) + b'"}',
    "not UTF-8": b'{"task": "\xff\xfe"}',
}


@pytest.mark.parametrize("content", list(HOSTILE.values()), ids=list(HOSTILE))
def test_malformed_tables_are_refused_naming_the_file(content, tmp_path, monkeypatch):
    path = tmp_path / "tinycls.json"
    path.write_bytes(content)
    with pytest.raises(InvalidArgumentError) as e:
        read_table(path)
    assert str(path) in str(e.value) and e.value.argument == "lambdas"
    # found by the lookup (a file, a folder), it is refused too, not passed over
    for env in (path, tmp_path):
        monkeypatch.setenv("NPP_LAMBDAS", str(env))
        with pytest.raises(InvalidArgumentError, match="λ table") as e:
            find_table("tinycls")
        assert str(path) in str(e.value)


def test_what_is_no_regular_file_is_refused_unopened(tmp_path):
    import os

    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)  # opening it would block
    for path in (fifo, tmp_path):
        with pytest.raises(InvalidArgumentError, match="is not a regular file"):
            TaskRefine(base=None, steps=1, lambdas=str(path))


def test_lookup_order_and_the_table_of_another_task(tiny, tmp_path, monkeypatch):
    user_dir().mkdir(parents=True)
    (user_dir() / "tinycls.json").write_text(json.dumps(_table(lambdas={"34": 5.0})))
    assert find_table("tinycls").lambdas == {34: 5.0}
    env = tmp_path / "env"
    env.mkdir()
    (env / "tinycls.json").write_text(json.dumps(_table(lambdas={"34": 7.0})))
    monkeypatch.setenv("NPP_LAMBDAS", str(env))
    assert find_table("tinycls").lambdas == {34: 7.0}  # $NPP_LAMBDAS first
    other = tmp_path / "other.json"
    other.write_text(json.dumps(_table(task="tinytoo", lambdas={"34": 9.0})))
    monkeypatch.setenv("NPP_LAMBDAS", str(other))  # one file, another task's: passed over for this one
    assert find_table("tinycls").lambdas == {34: 5.0} and find_table("tinytoo").lambdas == {34: 9.0}
    (user_dir() / "tinycls.json").write_text(json.dumps(_table(task="tinytoo")))  # misnamed: refused
    with pytest.raises(InvalidArgumentError, match="is the table of task 'tinytoo', not 'tinycls'"):
        find_table("tinycls")
    with pytest.raises(InvalidArgumentError, match="is the table of task 'tinytoo', not 'tinycls'"):
        TaskRefine(base=None, task="tinycls", steps=1, lambdas=str(other))  # explicit, but another task's
    monkeypatch.setenv("NPP_LAMBDAS", str(tmp_path / "missing"))
    with pytest.raises(InvalidArgumentError, match="NPP_LAMBDAS"):
        find_table("tinycls")
    monkeypatch.delenv("NPP_LAMBDAS")
    assert find_table("../cache/npp_plugin/lambdas/tinycls") is None  # no safe file name: no folder lookup


def test_a_bare_qp_lambda_file_still_works(tmp_path):
    path = tmp_path / "lam.json"
    path.write_text('{"28": 1.5, "41": 0.25}')
    assert TaskRefine(base=None, steps=1, lambdas=str(path)).lambdas == {28: 1.5, 41: 0.25}
    path.write_text("0.5")
    assert TaskRefine(base=None, steps=1, lambdas=str(path)).lambdas == {0: 0.5}
    assert TaskRefine(base=None, steps=1, lambdas={np.int64(34): np.float32(0.5)}).lambdas == {34: 0.5}


# -- the shipped tables --------------------------------------------------------------------


def test_shipped_tables_load_and_mobilenet_v2_keeps_the_blur_tables_lambdas():
    shipped = {p.stem: read_table(p, task=p.stem) for p in shipped_dir().glob("*.json")}
    assert set(shipped) == {"mobilenet_v2", "efficientnet_lite0", "mobilenet_v2+efficientnet_lite0", "mobilenet_v2_stem"}
    blur = TunedBlur()
    assert shipped["mobilenet_v2"].lambdas == blur.lambdas  # exactly: npp_refine's default is unchanged
    assert TaskRefine(base=None, steps=1).lambdas == blur.lambdas
    assert find_table("mobilenet_v2").path == shipped_dir() / "mobilenet_v2.json"
    blur_doc = json.loads(blur.path.read_text())
    fit_photos = blur_doc["provenance"]["fit_photos"]
    for name, table in shipped.items():
        prov = table.provenance
        # calibrated as the blur table was: its codec settings, photos, crops and QPs
        assert table.codec == "bpg" and prov["codec"] == blur_doc["codec_config"], name
        assert prov["codec"]["fast"] is True and prov["codec"]["level"] == 8, name
        assert prov["images"] == "builtin:train" and prov["photos"] == fit_photos, name
        assert (prov["crops"], prov["crop_size"], prov["seed"], prov["qps"]) == (64, 224, 1, [28, 31, 34, 37, 41]), name
        assert all(row["slope_ok"] for row in prov["calibration"].values()), name
        assert prov["command"].startswith(f"npp search lambda --task {name}"), name
        lam = list(table.lambdas.values())
        assert lam == sorted(lam, reverse=True), name  # λ falls as QP rises


def test_the_shipped_ensembles_lambda_is_the_harmonic_mean_of_its_members():
    """Same crops, same bits, and the ensemble's loss is the mean of its members': so
    −ΔR/ΔD_ensemble is the harmonic mean of the members' λ (a check of the calibration)."""
    m, e = (read_table(shipped_dir() / f"{t}.json").lambdas for t in ("mobilenet_v2", "efficientnet_lite0"))
    both = read_table(shipped_dir() / "mobilenet_v2+efficientnet_lite0.json", task="mobilenet_v2+efficientnet_lite0")
    assert set(both.lambdas) == set(m) == set(e)
    for q, lam in both.lambdas.items():
        assert lam == pytest.approx(2 / (1 / m[q] + 1 / e[q]), rel=1e-6)


def test_efficientnet_lite0_and_the_ensemble_refine_with_their_shipped_tables():
    codec = npp_plugin.get_codec("bpg", fast=True)
    for name in ("efficientnet_lite0", "mobilenet_v2+efficientnet_lite0"):
        path = shipped_dir() / f"{name}.json"
        refine = npp_plugin.get_preprocessor("npp_refine", task=name, steps=1)
        assert refine.task.name == name and refine.lambdas == read_table(path).lambdas
        r = refine.refine(_image(), codec=codec, qp=37)
        assert r.images.shape == (1, 3, 64, 64) and bool((r.j <= r.j_base).all())
