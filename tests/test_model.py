"""The builder against torchvision: same state-dict keys and shapes, same parameter counts, same outputs."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from resnet_core import PRESETS, TORCHVISION_PRESETS, ResNetConfig, build_model
from resnet_core.blocks import BasicBlock, Bottleneck, PreActBasicBlock, ZeroPadShortcut


def tv_model(name: str, **kwargs: object) -> nn.Module:
    return getattr(torchvision.models, name)(weights=None, **kwargs)


@pytest.mark.parametrize("name", TORCHVISION_PRESETS)
def test_torchvision_presets_are_torchvision_exactly(name: str) -> None:
    ref = tv_model(name).eval()
    ours = build_model(name).eval()
    ref_sd, our_sd = ref.state_dict(), ours.state_dict()
    assert list(our_sd) == list(ref_sd)
    assert all(our_sd[k].shape == ref_sd[k].shape for k in ref_sd)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())

    # Random BN statistics too, so that every buffer matters for the comparison.
    for m in ref.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            nn.init.uniform_(m.weight, 0.5, 1.5)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 96, 80)
    with torch.no_grad():
        assert (ours(x) - ref(x)).abs().max().item() <= 1e-5


def test_zero_init_residual_matches_torchvision() -> None:
    ours = build_model(PRESETS["resnet50"].with_(zero_init_residual=True))
    ref = tv_model("resnet50", zero_init_residual=True)
    for (k, a), b in zip(ours.state_dict().items(), ref.state_dict().values()):
        if k.endswith("bn3.weight"):
            assert a.abs().sum() == 0 and b.abs().sum() == 0, k


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_runs_forward_and_backward(name: str) -> None:
    cfg = PRESETS[name]
    if cfg.depth > 200:  # ResNet-1202: a forward at 32x32 is enough
        model = build_model(cfg)
        with torch.no_grad():
            assert model(torch.randn(1, 3, 32, 32)).shape == (1, cfg.num_classes)
        return
    model = build_model(cfg)
    side = 32 if cfg.stem == "cifar" else 64
    out = model(torch.randn(2, 3, side, side))
    assert out.shape == (2, cfg.num_classes)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_bottleneck_stride_placement() -> None:
    v15 = build_model("resnet50").layer2[0]
    v1 = build_model("resnet50_v1").layer2[0]
    assert (v15.conv1.stride, v15.conv2.stride) == ((1, 1), (2, 2))  # torchvision: on the 3x3
    assert (v1.conv1.stride, v1.conv2.stride) == ((2, 2), (1, 1))  # the paper: on the first 1x1


def test_shortcut_options() -> None:
    a = build_model("resnet20")
    assert isinstance(a.layer2[0].downsample, ZeroPadShortcut) and a.layer1[0].downsample is None
    b = build_model("resnet18")
    assert b.layer1[0].downsample is None and isinstance(b.layer2[0].downsample, nn.Sequential)
    c = build_model(PRESETS["resnet18"].with_(shortcut="C"))
    assert all(isinstance(blk.downsample, nn.Sequential) for s in c.stages for blk in c.get_submodule(s))


def test_zero_pad_shortcut_is_subsampled_identity_with_zero_channels() -> None:
    x = torch.randn(2, 16, 9, 9)
    y = ZeroPadShortcut(16, 32, 2)(x)
    assert y.shape == (2, 32, 5, 5)
    assert torch.equal(y[:, :16], x[:, :, ::2, ::2]) and not y[:, 16:].any()


def test_block_computes_relu_of_branch_plus_identity() -> None:
    block: BasicBlock = build_model("resnet18").layer1[0].eval()
    x = torch.randn(1, 64, 8, 8)
    with torch.no_grad():
        branch = block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x)))))
        assert torch.allclose(block(x), torch.relu(branch + x))


def test_plain_twin_has_the_same_layers_without_shortcuts() -> None:
    res, plain = build_model("resnet56"), build_model("plain56")
    res_names = [n for n, _ in res.named_modules() if "downsample" not in n]
    assert res_names == [n for n, _ in plain.named_modules()]
    x = torch.randn(1, 16, 8, 8)
    block: nn.Module = plain.layer1[0].eval()
    with torch.no_grad():
        branch = block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x)))))
        assert torch.allclose(block(x), torch.relu(branch))  # no "+ x"
    proj = sum(p.numel() for n, p in build_model("resnet18").named_parameters() if "downsample" in n)
    assert sum(p.numel() for p in build_model("resnet18").parameters()) - proj == sum(
        p.numel() for p in build_model("plain18").parameters()
    )


def test_preact_block_keeps_the_identity_path_clean() -> None:
    cfg = PRESETS["resnet20"].with_(preact=True)
    model = build_model(cfg).eval()
    block: PreActBasicBlock = model.layer1[0]
    x = torch.randn(1, 16, 8, 8)
    with torch.no_grad():
        f = block.conv2(torch.relu(block.bn2(block.conv1(torch.relu(block.bn1(x))))))
        assert torch.allclose(block(x), f + x)  # [He2016] eq. 3: no ReLU after the sum
    assert isinstance(model.final_bn, nn.BatchNorm2d) and not hasattr(model, "bn1")


def test_resnext_and_wide_inner_widths_match_their_papers() -> None:
    resnext: Bottleneck = build_model("resnext50_32x4d").layer1[0]
    assert (resnext.conv2.in_channels, resnext.conv2.groups) == (128, 32)  # 32 groups of 4 ([Xie2017] Table 1)
    wide: Bottleneck = build_model("wide_resnet50_2").layer1[0]
    assert wide.conv2.in_channels == 128 and wide.conv3.out_channels == 256  # twice the inner width


def test_meta_device_build_allocates_nothing() -> None:
    model = build_model("resnet152", device="meta")
    assert all(p.is_meta for p in model.parameters())


def test_custom_config_runs() -> None:
    cfg = ResNetConfig(blocks=(1, 2, 1), block=("basic", "bottleneck", "bottleneck"), widths=(8, 16, 32),
                       stem="cifar", stem_width=8, groups=1, in_channels=1, num_classes=7, shortcut="C")
    model = build_model(cfg)
    assert model(torch.randn(3, 1, 20, 28)).shape == (3, 7)


def test_seeded_builds_repeat_and_leave_the_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    a, b = build_model("resnet20", seed=3), build_model("resnet20", seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    c = build_model("resnet20", seed=4)
    assert not torch.equal(a.conv1.weight, c.conv1.weight)
