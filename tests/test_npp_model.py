# SPDX-License-Identifier: GPL-2.0-or-later
"""NppNet: parameter counts, identity start, shapes, QP conditioning, input checks."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from npp_plugin.errors import InvalidArgumentError, ShapeError  # noqa: E402
from npp_plugin.preprocessors.model import (  # noqa: E402
    CONFIGS,
    NppConfig,
    NppNet,
    QAScale,
    count_parameters,
    describe_configs,
    npp_net,
)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def perturbed(config: str = "tiny", *, seed: int = 0, scale: float = 0.05, **kwargs) -> NppNet:
    """A network moved away from its identity initialisation, in eval mode."""
    net = npp_net(config=config, **kwargs)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    return net.eval()


def rand(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


# -- parameter counts -----------------------------------------------------------------------


def test_describe_configs_counts():
    """Assert the CLI's parameter counts: paper 9.42 M without QA as reported, small ~1 M, tiny ~0.15 M."""
    rows = {r["name"]: r for r in describe_configs()}
    assert set(rows) == {"paper", "small", "tiny"}
    assert rows["paper"]["params_without_qa"] == 9_418_331
    assert abs(rows["paper"]["params_without_qa"] - 9.42e6) / 9.42e6 < 0.001
    assert rows["paper"]["params"] == 9_436_097
    assert rows["small"]["params"] == 932_937
    assert 0.8e6 < rows["small"]["params"] < 1.2e6
    assert rows["tiny"]["params"] == 150_681
    assert 0.1e6 < rows["tiny"]["params"] < 0.2e6
    for r in rows.values():
        assert r["pad_multiple"] == 16
        assert r["params"] > r["params_without_qa"]


@pytest.mark.parametrize("name", ["small", "tiny"])
def test_counts_match_real_networks(name):
    """Assert describe_configs counts what a real (non-meta) network holds, with and without QA."""
    row = next(r for r in describe_configs() if r["name"] == name)
    assert count_parameters(NppNet(name)) == row["params"]
    assert count_parameters(npp_net(config=name, qa=False)) == row["params_without_qa"]


def test_qa_parameters_formula():
    """Assert QA adds one 1→h→C MLP at each of the eight scaling points."""
    cfg = CONFIGS["paper"]
    w, h = cfg.widths, cfg.qa_hidden
    channels = [3, 3, *w, 2 * w[-1], w[0]]
    assert len(channels) == 8
    expected = sum(2 * h + h * c + c for c in channels)
    row = next(r for r in describe_configs() if r["name"] == "paper")
    assert row["params"] - row["params_without_qa"] == expected


# -- identity start, shapes ------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape", [(1, 3, 1, 1), (1, 3, 3, 5), (2, 3, 17, 31), (1, 3, 16, 16), (4, 3, 33, 64)]
)
def test_fresh_net_is_identity(shape):
    """Assert a fresh network returns its input exactly, for odd, tiny and batched sizes."""
    net = NppNet("tiny").eval()
    x = rand(*shape)
    assert torch.equal(net(x, 0.3), x)


def test_fresh_paper_net_is_identity_and_learns():
    """Assert the paper network starts as the identity yet every branch learns."""
    net = NppNet("paper")
    x = rand(2, 3, 23, 29)
    y = net(x, torch.tensor([0.2, 0.8]))
    assert torch.equal(y, x)
    (y - 0.5).pow(2).sum().backward()
    assert net.out.weight.grad.abs().sum() > 0  # U-Net branch
    assert net.pixel1.weight.grad.abs().sum() > 0  # pixel branch
    assert net.qa["pixel1"].fc2.weight.grad.abs().sum() > 0  # QA
    # U-Net QA layers sit before the zero-initialised output conv: they learn from step 2
    with torch.no_grad():
        for p in net.parameters():
            p -= 0.01 * p.grad
    net.zero_grad()
    (net(x, torch.tensor([0.2, 0.8])) - 0.5).pow(2).sum().backward()
    assert net.qa["head"].fc2.weight.grad.abs().sum() > 0
    assert net.qa["enc0"].fc2.weight.grad.abs().sum() > 0


def test_one_step_moves_away_from_identity():
    """Assert one gradient step changes the output (identity init does not block learning)."""
    net = NppNet("tiny")
    x = rand(2, 3, 32, 32)
    loss = (net(x, 0.5) - x.flip(-1)).pow(2).mean()
    loss.backward()
    with torch.no_grad():  # plain SGD (torch.optim's first step imports torch._dynamo: seconds)
        for p in net.parameters():
            p -= 0.1 * p.grad
    net.eval()
    with torch.inference_mode():
        assert (net(x, 0.5) - x).abs().max() > 1e-4


@pytest.mark.parametrize("shape", [(1, 3, 1, 1), (1, 3, 3, 5), (3, 3, 37, 50), (1, 3, 65, 17)])
def test_trained_net_shape_and_range(shape):
    """Assert output keeps the input shape (padding cropped back) and lies in [0, 1]."""
    net = perturbed("tiny", scale=0.5)
    x = rand(*shape)
    with torch.inference_mode():
        y = net(x, 0.5)
    assert y.shape == x.shape
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert not torch.equal(y, x)


def test_large_input():
    """Assert a large odd-sized image runs and keeps its size."""
    net = perturbed("tiny")
    x = rand(1, 3, 1001, 1503)
    with torch.inference_mode():
        y = net(x, 0.6)
    assert y.shape == x.shape
    assert 0.0 <= float(y.min()) and float(y.max()) <= 1.0


def test_batch_equals_single_images():
    """Assert a batch with per-image operating points equals the images run one by one."""
    net = perturbed("tiny")
    x = rand(3, 3, 21, 34)
    q = torch.tensor([0.0, 0.5, 1.0])
    with torch.inference_mode():
        batch = net(x, q)
        singles = torch.cat([net(x[i : i + 1], float(q[i])) for i in range(3)])
    torch.testing.assert_close(batch, singles, atol=1e-5, rtol=0)


def test_padding_replicates_bottom_right_edges():
    """Assert an odd-sized image is filtered as if its last row/column were repeated to ×16."""
    net = perturbed("tiny", scale=0.2)
    x = rand(1, 3, 17, 21)
    padded = torch.nn.functional.pad(x, (0, 11, 0, 15), mode="replicate")
    assert padded.shape[-2:] == (32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(net(x, 0.4), net(padded, 0.4)[..., :17, :21], atol=1e-6, rtol=0)


# -- quantization adaptation -----------------------------------------------------------------


def test_qp_changes_output():
    """Assert the operating point changes the output of a trained QA network."""
    net = perturbed("tiny")
    x = rand(1, 3, 40, 40)
    with torch.inference_mode():
        lo, hi = net(x, 0.1), net(x, 0.9)
    assert float((lo - hi).abs().mean()) > 1e-3


def test_qp_ignored_without_qa():
    """Assert a network without QA layers ignores qp_norm (stage 2) and accepts None."""
    net = perturbed("tiny", qa=False)
    assert len(net.qa) == 0
    x = rand(1, 3, 24, 24)
    with torch.inference_mode():
        assert torch.equal(net(x, 0.1), net(x, 0.9))
        assert torch.equal(net(x, None), net(x, 0.9))


def test_enable_qa_keeps_output_and_keys():
    """Assert adding QA to a stage-2 network keeps its output and its existing tensors."""
    net = perturbed("tiny", qa=False)
    x = rand(2, 3, 19, 23)
    with torch.inference_mode():
        before = net(x)
    keys = set(net.state_dict())
    net.enable_qa()
    assert net.config.qa and len(net.qa) == 8
    assert keys < set(net.state_dict())
    with torch.inference_mode():
        assert torch.equal(net(x, 0.0), before)
        assert torch.equal(net(x, 1.0), before)


def test_qa_scale_starts_at_one():
    """Assert a fresh QA layer scales every channel by exactly 1 at every operating point."""
    qa = QAScale(7, 5)
    s = qa.scale(torch.linspace(0, 1, 11).reshape(-1, 1))
    assert torch.equal(s, torch.ones(11, 7))


# -- refused inputs --------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 1, 8, 8), (1, 4, 8, 8), (3, 8, 8), (1, 3, 0, 8)])
def test_wrong_shape_refused(shape):
    """Assert wrong channel counts, missing batch dimension and empty images raise ShapeError."""
    net = NppNet("tiny")
    with pytest.raises(ShapeError, match=r"\(N, 3, H, W\)|zero size"):
        net(torch.zeros(shape), 0.5)


def test_nan_and_range_refused():
    """Assert NaN, inf, out-of-range and integer inputs are refused naming the problem."""
    net = NppNet("tiny")
    x = rand(1, 3, 8, 8)
    bad = x.clone()
    bad[0, 1, 2, 3] = float("nan")
    with pytest.raises(InvalidArgumentError, match="NaN"):
        net(bad, 0.5)
    bad[0, 1, 2, 3] = float("inf")
    with pytest.raises(InvalidArgumentError, match="NaN or infinite"):
        net(bad, 0.5)
    with pytest.raises(InvalidArgumentError, match=r"expected \[0, 1\]"):
        net(x * 2, 0.5)
    with pytest.raises(InvalidArgumentError, match=r"expected \[0, 1\]"):
        net(x - 0.5, 0.5)
    with pytest.raises(InvalidArgumentError, match="float"):
        net((x * 255).to(torch.uint8), 0.5)


@pytest.mark.parametrize("q", [1.5, -0.1, float("nan"), torch.tensor([0.2, 1.2])])
def test_qp_out_of_range_refused(q):
    """Assert qp_norm outside [0, 1] (or NaN) is refused with the codec hint."""
    net = NppNet("tiny")
    with pytest.raises(InvalidArgumentError, match="normalized_qp") as info:
        net(rand(2, 3, 8, 8), q)
    assert info.value.argument == "qp_norm"


def test_qp_shape_and_type_refused():
    """Assert a qp_norm of the wrong length, type, or missing with QA on is refused."""
    net = NppNet("tiny")
    x = rand(2, 3, 8, 8)
    with pytest.raises(ShapeError, match=r"\(2,\)"):
        net(x, torch.tensor([0.1, 0.2, 0.3]))
    with pytest.raises(InvalidArgumentError, match="qp_norm"):
        net(x, "0.5")
    with pytest.raises(InvalidArgumentError, match="required"):
        net(x, None)


def test_config_errors():
    """Assert unknown configurations, options and invalid widths are refused by name."""
    with pytest.raises(InvalidArgumentError, match="unknown configuration 'huge'"):
        NppNet("huge")
    with pytest.raises(InvalidArgumentError, match="unknown option 'depth'"):
        npp_net(config="tiny", depth=3)
    with pytest.raises(InvalidArgumentError, match="widths"):
        NppConfig("x", (4, 0))
    with pytest.raises(InvalidArgumentError, match="qa_hidden"):
        NppConfig("x", (4,), qa_hidden=0)


def test_custom_levels_pad_multiple():
    """Assert a 2-level network pads to a multiple of 4 and is still the identity when fresh."""
    net = npp_net(config="tiny", widths=(4, 8)).eval()
    assert net.config.multiple == 4
    x = rand(1, 3, 7, 9)
    assert torch.equal(net(x, 0.5), x)


def test_config_roundtrip():
    """Assert get_config/from_config rebuild an equal configuration."""
    net = npp_net(config="small", qa=False, qa_hidden=8)
    again = NppNet.from_config(net.get_config())
    assert again.config == net.config
    assert "params=" in repr(net)
