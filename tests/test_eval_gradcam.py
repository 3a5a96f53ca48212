"""GradCAM maps and figures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from npp_plugin.errors import InvalidArgumentError
from npp_plugin.evaluation.gradcam import gradcam, gradcam_figure, last_conv
from tests.test_eval_fixtures import TinyClassifier


def test_gradcam_maps_are_normalised_and_follow_the_evidence():
    """Assert maps are (N, H, W) in [0, 1], and that the map follows the image content:
    the evidence of a pattern placed in one corner lies in that corner."""
    task = TinyClassifier()
    g = torch.Generator().manual_seed(0)
    x = torch.full((1, 3, 32, 32), 0.5)
    x[..., :12, :12] = torch.rand(3, 12, 12, generator=g)
    cams, classes = gradcam(task, x)
    assert cams.shape == (1, 32, 32) and cams.min() >= 0 and cams.max() == pytest.approx(1.0)
    assert classes.tolist() == task.reference(x).argmax(1).tolist()
    assert cams[0, :16, :16].mean() > cams[0, 16:, 16:].mean()


def test_last_conv_and_explicit_class():
    """Assert the default layer is the last Conv2d and an explicit class is honoured."""
    task = TinyClassifier()
    assert last_conv(task.net) is task.net[2]
    _, classes = gradcam(task, torch.rand(2, 3, 16, 16), class_idx=torch.tensor([3, 4]))
    assert classes.tolist() == [3, 4]


def test_gradcam_figure_writes_png(tmp_path):
    """Assert the comparison figure is written as a PNG."""
    rng = np.random.default_rng(0)
    a = (rng.random((40, 40, 3)) * 255).astype(np.uint8)
    path = gradcam_figure(TinyClassifier(), a, a[::-1].copy(), tmp_path / "cam.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_gradcam_needs_a_classifier():
    """Assert a task without logits() gets a clear error."""

    class NoLogits:
        name = "det"

    with pytest.raises(InvalidArgumentError, match="logits"):
        gradcam(NoLogits(), torch.rand(1, 3, 8, 8))
