"""Feature maps against running the network by hand; Grad-CAM against a model whose answer is known."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from resnet_core import PRESETS, ResNetConfig, build_model
from resnet_core.activations import block_internals, blocks_of, capture, channel_order, grad_cam, tile


@pytest.mark.parametrize("cfg", ["resnet18", "resnet50", "resnet20", "plain20",
                                 PRESETS["resnet20"].with_(preact=True, shortcut="B")], ids=str)
def test_captured_outputs_equal_running_the_stages_by_hand(cfg: object) -> None:
    model = build_model(cfg).eval()  # type: ignore[arg-type]
    side = 32 if model.config.stem == "cifar" else 64
    x = torch.randn(2, 3, side, side)
    got = capture(model, x)
    with torch.no_grad():
        h = model.stem(x)
        assert torch.allclose(got.outputs["stem"], h[0])
        for stage in model.stages:
            for i, block in enumerate(model.get_submodule(stage).children()):
                h = block(h)
                assert torch.allclose(got.outputs[f"{stage}.{i}"], h[0], atol=1e-6)
            assert torch.allclose(got.stage_output(stage), h[0], atol=1e-6)
        assert torch.allclose(got.logits, model(x), atol=1e-5)
    assert len(got.anatomy) == sum(model.config.blocks)
    assert not model.training and not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_block_internals_add_up() -> None:
    model = build_model("resnet18").eval()
    x = torch.randn(1, 3, 64, 64)
    cap = capture(model, x)
    block = model.layer2[0]
    inside = block_internals(block, cap.block_input("layer2.0"))
    assert list(inside) == ["conv1", "conv2", "F(x)", "x", "F(x) + x", "output"]
    with torch.no_grad():
        xin = cap.block_input("layer2.0").unsqueeze(0)
        assert torch.allclose(inside["x"], block.downsample(xin)[0])
        assert torch.allclose(inside["F(x)"], block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(xin)))))[0])
    assert torch.allclose(inside["output"], torch.relu(inside["F(x) + x"]))
    assert torch.allclose(inside["output"], cap.outputs["layer2.0"], atol=1e-6)


def test_residual_anatomy_matches_the_tensors() -> None:
    model = build_model("resnet18").eval()
    cap = capture(model, torch.randn(1, 3, 64, 64))
    for (path, block), anatomy in zip(blocks_of(model), cap.anatomy, strict=True):
        inside = block_internals(block, cap.block_input(path))
        assert anatomy.path == path
        assert anatomy.residual_abs_mean == pytest.approx(inside["F(x)"].abs().mean().item(), rel=1e-4)
        assert anatomy.shortcut_abs_mean == pytest.approx(inside["x"].abs().mean().item(), rel=1e-4)


def test_tile_is_one_image_with_every_channel() -> None:
    act = torch.arange(5 * 3 * 4, dtype=torch.float32).reshape(5, 3, 4)
    img = tile(act, channel_order(act, "mean"), columns=3)
    assert img.shape == (2 * 4 - 1, 3 * 5 - 1)
    assert img[0, 0] == 0 and img[2, 3] == 1  # channel 4 (largest mean) first, each scaled to 0..1
    assert torch.isnan(torch.from_numpy(img[3])).all()  # the gap row
    shared = tile(act, range(5), scale="shared", columns=5)
    assert shared[0, 0] == 0 and shared[-1, -1] == 1 and 0 < shared[0, 5] < 1


def corner_batch(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise images with a bright 8x8 square in the top-left (class 0) or bottom-right (class 1) corner."""
    x = torch.rand(n, 3, 32, 32, generator=gen) * 0.3
    y = torch.randint(0, 2, (n,), generator=gen)
    for i in range(n):
        r = 2 if y[i] == 0 else 22
        x[i, :, r:r + 8, r:r + 8] = 1.0
    return x, y


def test_grad_cam_points_at_the_evidence() -> None:
    torch.manual_seed(0)
    cfg = ResNetConfig(blocks=(1, 1, 1), widths=(8, 16, 32), stem="cifar", stem_width=8, num_classes=2)
    model = build_model(cfg)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    for _ in range(60):
        x, y = corner_batch(32, gen)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, y = corner_batch(8, gen)
    model.eval()
    with torch.no_grad():
        assert (model(x).argmax(1) == y).float().mean() == 1.0
    for i in range(8):
        cam = grad_cam(model, x[i: i + 1], int(y[i]), "layer2")
        top_left, bottom_right = cam[:16, :16].mean(), cam[16:, 16:].mean()
        assert (top_left > bottom_right) if y[i] == 0 else (bottom_right > top_left)
