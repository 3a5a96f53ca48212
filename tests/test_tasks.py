"""Task networks: built-in registrations, frozen networks, losses, scores and their errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from npp_plugin import hookimpl
from npp_plugin.datasets import builtin_photos, load_rgb
from npp_plugin.errors import InvalidArgumentError, ShapeError, UnknownTaskError, WeightsError
from npp_plugin.registry import available_tasks, get_task
from npp_plugin.tasks import Task

torch.set_num_threads(1)
CATS = range(281, 286)  # ImageNet tabby .. Egyptian cat


def _photo(name: str, box: tuple[int, int, int, int] | None = None) -> torch.Tensor:
    paths = {p.name: p for p in builtin_photos()}
    if name not in paths:
        pytest.skip(f"built-in photo {name} not installed")
    rgb = load_rgb(paths[name])
    if box is not None:
        y0, x0, h, w = box
        rgb = rgb[y0 : y0 + h, x0 : x0 + w]
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255.0


@pytest.fixture(scope="module")
def mobilenet():
    return get_task("mobilenet_v2")


def test_builtin_import_is_cheap():
    """Assert importing the tasks plugin imports neither torch nor torchvision."""
    code = "import sys, npp_plugin.tasks.builtin; print('torch' in sys.modules, 'torchvision' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_builtin_tasks_registered():
    """Assert the six built-in task names are registered; an unknown one raises UnknownTaskError."""
    assert {"mobilenet_v2", "efficientnet_lite0", "mtcnn", "fcos", "fasterrcnn", "retinanet"} <= set(available_tasks())
    with pytest.raises(UnknownTaskError, match="available"):
        get_task("no_such_task")


def test_user_can_register_a_task(plugin_host):
    """Assert a third-party plugin's task shows up next to the built-ins in its host."""
    class Mine(Task):
        name = "mine"
        kind = "classification"

        def reference(self, batch):
            return batch.mean(dim=(1, 2, 3))

        def loss(self, batch, target, *, reduction="mean"):
            return (batch.mean(dim=(1, 2, 3)) - target).abs().mean()

        def score(self, batch, target):
            return torch.ones(batch.shape[0])

    class Plugin:
        @hookimpl
        def npp_register_tasks(self, register):
            register("mine", Mine)

    plugin_host.register(Plugin(), name="mine-plugin")
    reg = plugin_host.tasks
    assert "mine" in reg and "mobilenet_v2" in reg
    task = reg.get("mine")()
    x = torch.rand(2, 3, 8, 8)
    assert float(task.loss(x, task.reference(x))) == 0.0


def test_mobilenet_is_frozen_and_real(mobilenet):
    """Assert the packaged MobileNetV2 weights load (cat photo → a cat class) and are frozen."""
    net = mobilenet.net
    assert not net.training
    assert all(not p.requires_grad for p in net.parameters())
    x = _photo("chelsea.png")
    ref = mobilenet.reference(x)
    assert ref.shape == (1, 1000)
    assert torch.allclose(ref.sum(dim=1), torch.ones(1), atol=1e-5)
    assert int(ref.argmax()) in CATS


def test_efficientnet_lite0_is_real():
    """Assert the packaged EfficientNet-Lite0 classifies the cat photo as a cat, confidently."""
    task = get_task("efficientnet_lite0")
    ref = task.reference(_photo("chelsea.png"))
    assert int(ref.argmax()) in CATS
    assert all(not p.requires_grad for p in task.net.parameters())


def test_kl_loss_zero_on_itself_and_differentiable(mobilenet):
    """Assert KL to the own reference is ~0 on the same image, positive on a degraded one, and
    gradients reach the input (not the frozen weights)."""
    x = _photo("chelsea.png", (0, 0, 64, 64)).repeat(2, 1, 1, 1)
    ref = mobilenet.reference(x)
    assert float(mobilenet.loss(x, ref)) == pytest.approx(0.0, abs=1e-5)
    noisy = (x + 0.2 * torch.randn_like(x, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    noisy.requires_grad_(True)
    loss = mobilenet.loss(noisy, ref)
    loss.backward()
    assert float(loss) > 1e-3
    assert noisy.grad is not None and float(noisy.grad.abs().sum()) > 0
    assert all(p.grad is None for p in mobilenet.net.parameters())
    per = mobilenet.loss(noisy.detach(), ref, reduction="none")
    assert per.shape == (2,) and torch.allclose(per.mean(), loss.detach(), atol=1e-6)


def test_cross_entropy_with_labels(mobilenet):
    """Assert labels give exactly torch's cross-entropy of the network's logits, and score is top-1."""
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 5, 999])
    expected = F.cross_entropy(mobilenet.logits(x), labels)
    assert torch.allclose(mobilenet.loss(x, labels), expected, atol=1e-5)
    top1 = mobilenet.logits(x).argmax(dim=1)
    assert mobilenet.score(x, top1).tolist() == [1.0, 1.0, 1.0]
    assert mobilenet.score(x, (top1 + 1) % 1000).tolist() == [0.0, 0.0, 0.0]


def test_classifier_errors(mobilenet):
    """Assert bad batches, targets and reductions raise typed errors naming the task."""
    x = torch.rand(2, 3, 64, 64)
    with pytest.raises(ShapeError, match="mobilenet_v2"):
        mobilenet.loss(torch.rand(3, 64, 64), torch.tensor([1, 2]))
    with pytest.raises(ShapeError, match="target"):
        mobilenet.loss(x, torch.rand(2, 10))
    with pytest.raises(InvalidArgumentError, match="0..999"):
        mobilenet.loss(x, torch.tensor([1, 1000]))
    with pytest.raises(InvalidArgumentError, match="reduction"):
        mobilenet.loss(x, torch.tensor([1, 2]), reduction="max")
    with pytest.raises(InvalidArgumentError, match="size"):
        get_task("mobilenet_v2", size=8)


def test_resize_option():
    """Assert size=N resizes inside the task (same logits as resizing first)."""
    task = get_task("mobilenet_v2", size=96)
    x = torch.rand(1, 3, 64, 80)
    resized = F.interpolate(x, size=(96, 96), mode="bilinear", align_corners=False)
    assert torch.allclose(task.logits(x), task.logits(resized), atol=1e-5)
    assert task.get_config()["size"] == 96


def test_user_weights_file_mismatch(tmp_path):
    """Assert a user-named weights file that is missing or does not fit raises WeightsError."""
    with pytest.raises(WeightsError, match="does not exist"):
        get_task("mobilenet_v2", weights=str(tmp_path / "none.pth"))
    bad = tmp_path / "bad.pth"
    torch.save({"foo": torch.zeros(1)}, bad)
    with pytest.raises(WeightsError, match="does not match"):
        get_task("mobilenet_v2", weights=str(bad))


@pytest.mark.parametrize("name", ["fcos", "fasterrcnn", "retinanet"])
def test_detectors_need_a_weights_file(name):
    """Assert torchvision detectors fail fast without weights, naming the file to pass."""
    with pytest.raises(WeightsError, match=r"weights=PATH.*\.pth"):
        get_task(name)
    with pytest.raises(InvalidArgumentError, match="arch"):
        get_task(name, weights="x.pth", arch="vgg")


def test_average_precision_values():
    """Assert per-image AP: perfect, half recall, a wrong label, an empty image."""
    from npp_plugin.tasks.detection import average_precision

    gt = {"boxes": torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]]), "labels": torch.tensor([1, 1])}
    assert average_precision({**gt, "scores": torch.tensor([0.9, 0.8])}, gt) == pytest.approx(1.0)
    half = {"boxes": gt["boxes"][:1], "labels": gt["labels"][:1], "scores": torch.tensor([0.9])}
    assert average_precision(half, gt) == pytest.approx(0.5)
    wrong = {"boxes": gt["boxes"], "labels": torch.tensor([2, 2]), "scores": torch.tensor([0.9, 0.8])}
    assert average_precision(wrong, gt) == 0.0
    # a false positive ranked first: precision 1/2 then 2/3; the envelope makes both 2/3
    fp = {"boxes": torch.cat([torch.tensor([[50.0, 50, 60, 60]]), gt["boxes"]]), "labels": torch.tensor([1, 1, 1]),
          "scores": torch.tensor([0.99, 0.9, 0.8])}
    assert average_precision(fp, gt) == pytest.approx(2 / 3)
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    assert average_precision(empty, empty) == 1.0
    assert average_precision(gt, empty) == 0.0


@pytest.mark.slow
def test_mtcnn_finds_the_astronauts_face():
    """Assert offline MTCNN detects the face, scores its own reference 1, and its loss has input
    gradients and rises when the face is blurred away."""
    task = get_task("mtcnn")
    x = _photo("astronaut.png", (0, 128, 256, 256))
    ref = task.reference(x)
    assert len(ref[0]["boxes"]) >= 1
    assert task.score(x, ref).tolist() == [1.0]
    xx = x.clone().requires_grad_(True)
    loss = task.loss(xx, ref)
    loss.backward()
    assert float(xx.grad.abs().sum()) > 0
    blurred = F.avg_pool2d(x, 15, stride=1, padding=7)
    assert float(task.loss(blurred, ref)) > float(loss)
    none = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    assert float(task.loss(x, none)) == 0.0


@pytest.mark.slow
def test_fcos_from_a_user_weights_file(tmp_path):
    """Assert FCOS builds from a named state_dict, stays frozen, and its pseudo-label loss is
    differentiable in the input (random weights: shape of the pipeline, not accuracy)."""
    import torchvision

    torch.manual_seed(0)
    src = torchvision.models.detection.fcos_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)
    path = tmp_path / "fcos.pth"
    torch.save(src.state_dict(), path)
    task = get_task("fcos", weights=str(path), min_size=128, max_size=128, score_thresh=0.0)
    assert all(not p.requires_grad for p in task.net.parameters())
    x = torch.rand(2, 3, 96, 96, requires_grad=True)
    target = [{"boxes": torch.tensor([[10.0, 10, 60, 60]]), "labels": torch.tensor([3])},
              {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    loss = task.loss(x, target)
    loss.backward()
    assert torch.isfinite(loss) and float(x.grad.abs().sum()) > 0
    assert not task.net.training and not task.net.backbone.training
    assert task.score(x.detach(), target).shape == (2,)
    assert task.loss(x.detach(), target, reduction="none").shape == (2,)


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0"])
def test_fused_copy_gives_the_same_logits_and_gradients(name):
    """fused(): batch norms folded into convolutions, channels-last (npp_refine's runner):
    the same outputs and input gradients up to float rounding; the original keeps its modules."""
    task = get_task(name)
    fast = task.fused()
    assert fast is not task and fast.name == task.name and hasattr(task.net, "features" if name == "mobilenet_v2" else "_blocks")
    if name == "mobilenet_v2":  # every batch norm follows a plain Conv2d there
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.net.modules())
    x = torch.rand(2, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(fast.logits(x), task.logits(x), rtol=1e-4, atol=1e-4)
    ref = task.reference(x.flip(-1))
    grads = []
    for t in (task, fast):
        xx = x.clone().requires_grad_(True)
        t.loss(xx, ref).backward()
        grads.append(xx.grad)
    # ReLU6 kinks flip for a few inputs within rounding: compare the gradients as wholes
    assert float((grads[1] - grads[0]).norm() / grads[0].norm()) < 1e-2
    assert all(not p.requires_grad for p in fast.net.parameters())
