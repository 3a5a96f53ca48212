# SPDX-License-Identifier: GPL-2.0-or-later
"""ONNX export of NPP: the graph equals PyTorch within 1e-4 at any size, batch and QP."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx", reason="ONNX export needs onnx: pip install 'npp_plugin[onnx]'")
pytest.importorskip(
    "onnxscript", reason="torch's ONNX exporter needs onnxscript: pip install 'npp_plugin[onnx]'"
)
pytest.importorskip(
    "onnxruntime", reason="the equivalence check needs onnxruntime: pip install 'npp_plugin[onnx]'"
)

from npp_plugin.errors import InvalidArgumentError, NppError, ShapeError  # noqa: E402
from npp_plugin.preprocessors.onnx_export import OnnxNpp, check_onnx_equivalence, export_onnx  # noqa: E402
from npp_plugin.preprocessors.weights import npp_net  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A trained-looking tiny QA network (BN statistics included) and its ONNX file; export takes ~20 s."""
    torch.set_num_threads(1)
    net = npp_net(config="tiny")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
        net.train()
        net(torch.rand(2, 3, 32, 32, generator=gen), 0.5)
    net.eval()
    path = export_onnx(net, tmp_path_factory.mktemp("onnx") / "npp.onnx")
    return net, path


@pytest.mark.slow
def test_onnx_equivalence(exported):
    """Assert max |ONNX - PyTorch| < 1e-4 on odd, tiny, large and batched inputs at several QPs."""
    net, path = exported
    sizes = ((1, 1, 1), (2, 3, 5), (3, 37, 50), (1, 16, 16), (1, 224, 224), (1, 301, 517))
    worst = check_onnx_equivalence(net, path, sizes=sizes, qps=(0.0, 0.3, 0.725, 1.0))
    assert worst < 1e-4


@pytest.mark.slow
def test_onnx_qp_input_is_live(exported):
    """Assert the exported graph's qp input changes the output as in PyTorch."""
    net, path = exported
    runner = OnnxNpp(path)
    x = np.random.default_rng(1).random((1, 3, 40, 40), dtype=np.float32)
    a, b = runner(x, 0.1), runner(x, 0.9)
    assert float(np.abs(a - b).mean()) > 1e-3
    with torch.inference_mode():
        ref = net(torch.from_numpy(x), 0.9).numpy()
    assert float(np.abs(b - ref).max()) < 1e-4


@pytest.mark.slow
def test_onnx_metadata_and_checks(exported):
    """Assert the file records the configuration and the runner refuses bad inputs."""
    net, path = exported
    runner = OnnxNpp(path)
    assert runner.config == json.loads(json.dumps(net.get_config()))
    assert [i.name for i in runner.session.get_inputs()] == ["image", "qp"]
    with pytest.raises(ShapeError):
        runner(np.zeros((1, 4, 8, 8), np.float32), 0.5)
    with pytest.raises(InvalidArgumentError, match=r"\[0, 1\]"):
        runner(np.full((1, 3, 8, 8), 2.0, np.float32), 0.5)
    with pytest.raises(InvalidArgumentError, match="qp_norm"):
        runner(np.zeros((1, 3, 8, 8), np.float32), 1.5)
    with pytest.raises(ShapeError, match="qp_norm"):
        runner(np.zeros((2, 3, 8, 8), np.float32), [0.1, 0.2, 0.3])


@pytest.mark.slow
def test_equivalence_check_detects_a_different_network(exported):
    """Assert the equivalence check fails when the network no longer matches the file."""
    net, path = exported
    other = npp_net(config="tiny")
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.1)
    with pytest.raises(NppError, match="exceeds"):
        check_onnx_equivalence(other.eval(), path, sizes=((1, 16, 16),))


def test_export_refuses_non_npp():
    """Assert exporting something that is not an NppNet is refused by name."""
    with pytest.raises(InvalidArgumentError, match="expected an NppNet"):
        export_onnx(torch.nn.Identity(), "x.onnx")
