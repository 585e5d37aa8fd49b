"""The layer analysis against outside truths, computed in the same run:
torchinfo (parameters, Mult-Adds), FlopCounterMode (MACs), forward hooks (shapes and order),
autograd's saved tensors (training memory), input gradients (receptive field), the paper (Table 1)."""

from __future__ import annotations

import copy
import random

import pytest
import torch
import torchinfo
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from resnet_core import PRESETS, TORCHVISION_PRESETS, analyze, build_model
from server.selection import default_input

SIZES = (32, 224, 320, 513)
SAMPLED_PAIRS = 40
SAMPLED_MAX_DEPTH = 200


def torchinfo_grid() -> list[tuple[str, int]]:
    """Every preset at its natural input side (32 for a CIFAR stem, 224 for an ImageNet one), and a fixed, seeded
    sample of the other (preset, side) pairs, the same number for each side in SIZES, so that every side is
    checked and every run checks the same pairs. The sample leaves out the 1202-layer nets (above
    SAMPLED_MAX_DEPTH): resnet110's stages with 200 blocks each instead of 18, so another side checks nothing
    on them that it does not check on resnet110, at about ten times its cost; the whole grid took over a minute,
    mostly them."""
    natural = [(name, default_input(cfg)[1]) for name, cfg in PRESETS.items()]
    others = {size: [(name, size) for name, cfg in PRESETS.items()
                     if (name, size) not in natural and cfg.depth <= SAMPLED_MAX_DEPTH] for size in SIZES}
    rng = random.Random(0)
    per_size = SAMPLED_PAIRS // len(SIZES)
    sampled = [pair for size in SIZES for pair in rng.sample(others[size], min(per_size, len(others[size])))]
    return natural + sampled


def meta_flops(model: nn.Module, shape: tuple[int, ...]) -> int:
    model.eval()  # batch 1 at 1x1 spatial size is fine for BN in eval mode
    with FlopCounterMode(display=False) as counter:
        model(torch.empty(shape, device="meta"))
    return counter.get_total_flops()


@pytest.mark.parametrize(("name", "size"), torchinfo_grid())
def test_params_and_macs_equal_torchinfo_and_flopcounter(name: str, size: int) -> None:
    report = analyze(name, input_size=(3, size, size))
    model = build_model(name, device="meta")
    summary = torchinfo.summary(model, input_size=(1, 3, size, size), device="meta", verbose=0, mode="eval")
    assert report.total_params == summary.total_params == summary.trainable_params
    # FlopCounterMode counts 2 FLOPs per multiply-accumulate of convs and matmuls.
    assert report.total_macs * 2 == report.total_flops == meta_flops(model, (1, 3, size, size))
    # torchinfo's Mult-Adds also count BatchNorm parameters and the linear bias (see docs/analysis.md).
    assert report.torchinfo_mult_adds == summary.total_mult_adds


@pytest.mark.parametrize("name", TORCHVISION_PRESETS)
def test_macs_equal_flopcounter_on_torchvision_models(name: str) -> None:
    tv = getattr(torchvision.models, name)().to("meta")
    assert analyze(name, input_size=(3, 224, 224)).total_flops == meta_flops(tv, (1, 3, 224, 224))


def test_torchinfo_mult_adds_scale_with_batch() -> None:
    model = build_model("resnet18", device="meta")
    summary = torchinfo.summary(model, input_size=(4, 3, 64, 48), device="meta", verbose=0, mode="eval")
    assert analyze("resnet18", input_size=(3, 64, 48), batch_size=4).torchinfo_mult_adds == summary.total_mult_adds


@pytest.mark.parametrize(
    "cfg",
    [
        "resnet18",
        "resnet50",
        "resnet50_v1",
        "resnext50_32x4d",
        "resnet20",
        "plain20",
        "resnet18_cifar",
        PRESETS["resnet50"].with_(preact=True),
        PRESETS["resnet20"].with_(preact=True, shortcut="B"),
        PRESETS["resnet18"].with_(shortcut="C", blocks=(1, 2, 1), widths=(32, 64, 128)),
    ],
    ids=str,
)
def test_rows_follow_the_forward_pass(cfg: object) -> None:
    """Every layer call, in order, with the output shape a real (meta) forward pass produces."""
    model = build_model(cfg, device="meta")  # type: ignore[arg-type]
    calls: list[tuple[str, tuple[int, ...]]] = []
    for path, module in model.named_modules():
        if len(list(module.children())) == 0 or (path.endswith("downsample") and not isinstance(module, nn.Sequential)):
            module.register_forward_hook(lambda m, i, o, path=path: calls.append((path, tuple(o.shape))))
    model(torch.empty(2, 3, 71, 64, device="meta"))
    report = analyze(cfg, input_size=(3, 71, 64), batch_size=2)  # type: ignore[arg-type]
    rows = [(r.path, r.output_shape) for r in report.rows if r.kind != "Add"]
    assert rows == calls


def test_layer_rows_add_up_and_levels_agree() -> None:
    report = analyze("resnet101", input_size=(3, 320, 256), batch_size=3)
    for level in ("layer", "block", "stage"):
        df = report.to_dataframe(level)
        assert df["params"].sum() == report.total_params
        assert df["macs"].sum() == report.total_macs
        assert (df["flops"] == 2 * df["macs"]).all()
    blocks = report.to_dataframe("block")
    assert len(blocks) == 1 + sum(PRESETS["resnet101"].blocks) + 1  # stem, blocks, head
    assert list(report.to_dataframe("stage")["stage"]) == ["stem", "layer1", "layer2", "layer3", "layer4", "head"]


def saved_for_backward_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the distinct non-parameter tensors autograd keeps for backward."""
    own = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in own:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return sum(saved.values())


@pytest.mark.parametrize(
    ("cfg", "size", "batch"),
    [
        ("resnet18", 64, 2),
        ("resnet50", 64, 2),
        ("resnet20", 32, 4),
        ("plain18", 48, 1),
        ("resnet18_cifar", 32, 2),
        (PRESETS["resnet50"].with_(preact=True), 64, 1),
        (PRESETS["resnet20"].with_(preact=True), 32, 2),
        (PRESETS["resnet18"].with_(shortcut="C"), 64, 1),
    ],
    ids=str,
)
def test_saved_activations_equal_what_autograd_keeps(cfg: object, size: int, batch: int) -> None:
    model = build_model(cfg).train()  # type: ignore[arg-type]
    measured = saved_for_backward_bytes(model, torch.randn(batch, 3, size, size))
    report = analyze(cfg, input_size=(3, size, size), batch_size=batch)  # type: ignore[arg-type]
    assert report.memory.saved_activation_bytes == measured
    assert report.memory.param_bytes == report.memory.grad_bytes == report.memory.optimizer_bytes
    assert report.memory.param_bytes == 4 * sum(p.numel() for p in model.parameters())


def measured_receptive_field(features: nn.Module, channels: int, height: int, width: int = 32) -> int:
    """Rows of input that reach the centre output unit: backpropagate from it through a copy of the
    network whose weights are all positive (so no contribution cancels) and count non-zero gradients."""
    net = copy.deepcopy(features).double().eval()
    for name, m in list(net.named_modules()):
        if isinstance(m, nn.Conv2d):
            fan_in = m.weight[0].numel()
            nn.init.constant_(m.weight, 1.0 / fan_in)
        elif isinstance(m, nn.MaxPool2d):  # an average pool has the same footprint and passes every gradient
            parent = net.get_submodule(name.rpartition(".")[0]) if "." in name else net
            setattr(parent, name.rpartition(".")[2], nn.AvgPool2d(m.kernel_size, m.stride, m.padding))
    x = torch.ones(1, channels, height, width, dtype=torch.float64, requires_grad=True)
    out = net(x)
    out[0, :, out.shape[2] // 2, out.shape[3] // 2].sum().backward()
    rows = (x.grad[0].abs().sum(dim=(0, 2)) > 0).nonzero().flatten()
    assert rows.min() > 0 and rows.max() < height - 1, "receptive field clipped by the border: use a taller input"
    return int(rows.max() - rows.min() + 1)


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50", "resnext50_32x4d", "resnet101", "resnet152"])
def test_receptive_field_of_torchvision_models(name: str) -> None:
    tv = getattr(torchvision.models, name)()
    features = nn.Sequential(*list(tv.children())[:-2])  # up to layer4, before pooling
    report = analyze(name)
    height = report.receptive_field + 96
    assert measured_receptive_field(features, 3, height) == report.receptive_field


class Features(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)


@pytest.mark.parametrize("cfg", ["resnet20", "resnet56", "resnet50_v1", "resnet18_cifar",
                                 PRESETS["resnet20"].with_(preact=True)], ids=str)
def test_receptive_field_of_our_models(cfg: object) -> None:
    model = build_model(cfg)  # type: ignore[arg-type]
    report = analyze(cfg, input_size=(3, 64, 64))  # type: ignore[arg-type]
    assert measured_receptive_field(Features(model), 3, report.receptive_field + 96) == report.receptive_field


# [He2015] Table 1 gives "FLOPs" that are multiply-adds (MACs here), for the paper's stride placement (v1).
PAPER_GMACS = {"resnet18": 1.8, "resnet34": 3.6, "resnet50": 3.8, "resnet101": 7.6, "resnet152": 11.3}


@pytest.mark.parametrize(("name", "paper"), PAPER_GMACS.items())
def test_macs_agree_with_paper_table_1(name: str, paper: float) -> None:
    macs = analyze(PRESETS[name].with_(stride_at="v1")).total_macs
    assert abs(macs / 1e9 - paper) / paper < 0.02  # the paper prints two or three significant digits
    if name == "resnet50":
        assert macs == analyze("resnet50_v1").total_macs


def test_bad_inputs_are_refused_with_what_is_allowed() -> None:
    with pytest.raises(ValueError, match="height=0 is not allowed: an integer from 1 to 4096"):
        analyze("resnet50", input_size=(3, 0, 8))
    with pytest.raises(ValueError, match="width=5000"):
        analyze("resnet50", input_size=(3, 224, 5000))
    with pytest.raises(ValueError, match="input has 1 channels but the model expects in_channels=3"):
        analyze("resnet50", input_size=(1, 224, 224))
    with pytest.raises(ValueError, match="batch_size"):
        analyze("resnet50", batch_size=0)


def test_large_inputs_and_batches_are_analysed() -> None:
    report = analyze("resnet50", input_size=(3, 1024, 1024), batch_size=256)
    assert report.rows[-1].output_shape == (256, 1000)
    assert report.total_macs == analyze("resnet50", input_size=(3, 1024, 1024)).total_macs  # MACs are per image
