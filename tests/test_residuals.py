"""The analyses of why residuals work, each checked against what it must equal by construction or by the papers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from resnet_core import analyze
from resnet_core.config import PRESETS, ResNetConfig
from resnet_core.model import build_model
from resnet_core.residuals import (
    Responses,
    blocks,
    downsampling,
    effective_receptive_field,
    erf_before_and_after,
    error_rate,
    filter_normalized_direction,
    gradient_correlation,
    grid,
    input_gradients,
    landscape,
    layer_responses,
    lesion_study,
    lesioned,
    line_between,
    local_minima,
    loss_surface,
    mass_extent,
    mean_loss,
    model_erf,
    nonconvex_share,
    path_lengths,
    say_erf,
    say_responses,
    say_shattered,
    shattered_gradients,
    support,
)

SMALL = ResNetConfig(blocks=(2, 2), widths=(8, 16), stem="cifar", stem_width=8, shortcut="B", num_classes=5)


def _batch(n: int = 16, side: int = 16, classes: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, side, side, generator=g), torch.randint(0, classes, (n,), generator=g)


def _settle(model: nn.Module, x: torch.Tensor) -> None:
    """Running BN statistics from a few forward passes, so that eval mode is not the identity of a fresh net."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(x)


def test_a_deleted_block_whose_branch_is_already_zero_changes_no_logit() -> None:
    model = build_model(SMALL.with_(zero_init_residual=True), seed=0)  # every branch ends in a BN of weight 0
    x, _ = _batch()
    _settle(model, x)
    model.eval()
    with torch.no_grad():
        before = model(x)
        for path in blocks(model):
            with lesioned(model, [path]):
                assert torch.equal(model(x), before), path
    assert not any(m._forward_hooks for m in model.modules())  # every hook removed


def test_deleting_a_block_of_a_plain_net_cuts_the_signal_and_of_a_residual_net_keeps_the_shortcut() -> None:
    x, _ = _batch()
    plain = build_model(SMALL.with_(residual=False), seed=0).eval()
    residual = build_model(SMALL, seed=0).eval()
    with torch.no_grad(), lesioned(plain, ["layer1.1"]):
        assert torch.count_nonzero(plain.forward_features(x)) == 0  # nothing passes a deleted plain layer
    block = residual.layer1[1]
    seen = {}
    block.register_forward_hook(lambda m, a, out: seen.update(x=a[0], y=out))
    with torch.no_grad(), lesioned(residual, ["layer1.1"]):
        residual(x)
    assert torch.equal(seen["y"], F.relu(seen["x"]))  # y = relu(0 + x): the identity passes on


def test_layer_responses_are_the_std_a_forward_hook_sees_at_each_branch_end() -> None:
    model = build_model(SMALL, seed=1)
    x, _ = _batch()
    _settle(model, x)
    seen = {}
    for path, block in blocks(model).items():
        end = block.bn2  # a basic block's branch ends in its second BN ([He2015] Fig. 2)
        end.register_forward_hook(lambda m, a, out, path=path: seen.update({path: float(out.double().std())}))
    responses = layer_responses(model, x)
    assert responses.blocks == tuple(seen) and responses.std == pytest.approx(tuple(seen.values()), rel=1e-12)
    assert model.training  # its mode is given back


def test_the_lesion_study_counts_downsampling_blocks_and_the_paths_are_binomial() -> None:
    model = build_model(PRESETS["resnet20"].with_(num_classes=5), seed=0)
    assert downsampling(model) == ("layer2.0", "layer3.0")  # [He2015] §4.2: 16 -> 32 -> 64 channels
    x, y = _batch(n=20, side=16)
    study = lesion_study(model, x, y, samples=2)
    assert len(study.single) == 9 and study.downsampling.count(True) == 2
    assert study.k == tuple(range(1, 8))  # the seven blocks that keep the shape
    with lesioned(model, ["layer1.0"]):
        assert study.single[0] == error_rate(model, x, y)
    counts = path_lengths(54)  # ResNet-110's 54 blocks ([Veit2016] Fig. 6a)
    assert sum(counts) == 2**54 and max(range(55), key=lambda k: counts[k]) == 27
    assert counts[:3] == (1, 54, math.comb(54, 2))


def test_filter_normalised_directions_have_the_weights_filter_norms_and_leave_bn_alone() -> None:
    model = build_model(SMALL, seed=0)
    d = filter_normalized_direction(model, torch.Generator().manual_seed(0))
    for name, p in model.named_parameters():
        if p.dim() > 1:  # conv and linear weights: one norm per output unit
            assert torch.allclose(d[name].flatten(1).norm(dim=1), p.detach().flatten(1).norm(dim=1), rtol=1e-5)
        else:
            assert torch.count_nonzero(d[name]) == 0, name


def test_the_landscape_at_the_origin_is_the_evaluated_loss_and_the_model_does_not_move() -> None:
    model = build_model(SMALL, seed=0)
    x, y = _batch()
    _settle(model, x)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    d1, d2 = filter_normalized_direction(model, g), filter_normalized_direction(model, g)
    coords = [(a, b) for a in grid(3) for b in grid(3)]
    losses = loss_surface(model, x, y, [d1, d2], coords)
    model.eval()
    with torch.no_grad():
        direct = float(F.cross_entropy(model(x), y))
    assert losses[coords.index((0.0, 0.0))] == pytest.approx(direct, rel=1e-6) == pytest.approx(mean_loss(model, x, y))
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert len(set(losses)) > 1  # moving along the directions changes the loss


def test_the_erf_of_one_conv_is_its_kernel() -> None:
    conv = nn.Conv2d(1, 1, 5, padding=2, bias=False)
    x = torch.randn(4, 1, 15, 15)
    erf = effective_receptive_field(conv, x)
    assert torch.allclose(erf[5:10, 5:10], conv.weight[0, 0].detach().abs(), atol=1e-7)
    assert float(erf.sum()) == pytest.approx(float(conv.weight.detach().abs().sum()), rel=1e-6)  # nothing outside
    assert support(erf) == (5, 5)  # one stride-1 conv: the receptive field is its kernel


@pytest.mark.parametrize("cfg", [SMALL, SMALL.with_(residual=False), SMALL.with_(blocks=(1, 1, 1), widths=(4, 8, 8))])
def test_the_erf_support_of_a_small_net_is_the_theoretical_receptive_field(cfg: ResNetConfig) -> None:
    side = 64
    model = build_model(cfg, seed=0).double()
    x = torch.randn(8, 3, side, side, dtype=torch.float64)
    erf = model_erf(model, x)
    rf = analyze(cfg, input_size=(3, side, side)).receptive_field
    assert rf < side and support(erf) == (rf, rf)
    assert 0 < mass_extent(erf, 0.95) <= rf  # the effective one is at most the theoretical one


def test_a_bowl_has_one_local_minimum_and_a_rippled_surface_many() -> None:
    axis = grid(11)
    assert local_minima([[a * a + b * b for b in axis] for a in axis]) == 1
    ripples = [[math.cos(3 * math.pi * a) + math.cos(3 * math.pi * b) for b in axis] for a in axis]
    assert local_minima(ripples) == 4  # cos(3πx) is lowest at ±1/3 (on this grid ±0.4) on each axis: 2 × 2 minima


def test_nonconvex_share_is_zero_on_a_bowl_and_one_on_a_saddle() -> None:
    axis = grid(9)
    assert nonconvex_share([[a * a + b * b for b in axis] for a in axis]) == 0.0
    assert nonconvex_share([[a * a - b * b for b in axis] for a in axis]) == 1.0
    assert nonconvex_share([[-(a * a) - b * b for b in axis] for a in axis]) == 1.0


def test_the_sentences_say_the_measured_numbers_and_follow_them() -> None:
    calm, loud = Responses(("layer1.0",), (0.25,)), Responses(("layer1.0",), (0.75,))
    said = say_responses(loud, calm, ("plain-20", "ResNet-20"))
    assert "0.25" in said and "0.75" in said and "3.0× less" in said
    assert "do not respond less" in say_responses(calm, loud, ("plain-20", "ResNet-20"))


def test_a_landscape_of_a_pair_and_the_erf_before_and_after_training() -> None:
    x, y = _batch(n=8, side=16)
    model = build_model(SMALL, seed=0)
    _settle(model, x)
    scape = landscape(model, x, y, steps=3, line_steps=5)
    assert scape.line_loss[2] == pytest.approx(scape.loss, rel=1e-6) == pytest.approx(scape.surface[1][1], rel=1e-6)
    erf = erf_before_and_after(model, build_model(SMALL, seed=0), x)
    assert erf.theoretical == analyze(SMALL, input_size=(3, 16, 16)).receptive_field
    assert 0 < erf.extent_init <= 16 and 0 < erf.extent_trained <= 16
    assert f"{erf.theoretical} px" in say_erf(erf, "small")


def test_an_analysis_job_measures_the_pair_it_is_given_with_progress() -> None:
    from safetensors.torch import save

    from resnet_core.residuals import AnalysisProgress, run_analysis
    from server.work import AnalysisJob, worker_dataset

    data = worker_dataset("builtin")
    cfgs = {"plain": SMALL.with_(residual=False, num_classes=len(data.classes)),
            "residual": SMALL.with_(num_classes=len(data.classes))}
    models = {name: build_model(cfg, seed=3).eval() for name, cfg in cfgs.items()}
    job = AnalysisJob("lesion", tuple((n, m.config, save(m.state_dict())) for n, m in models.items()), "builtin",
                      seed=3, images=40)

    class Context:  # what a worker hands a job: somewhere to report
        def __init__(self) -> None:
            self.reports: list[AnalysisProgress] = []

        def report(self, item: AnalysisProgress) -> None:
            self.reports.append(item)

    ctx = Context()
    result = job(ctx)
    assert result == run_analysis("lesion", models, data, seed=3, images=40)
    assert {r.model for r in ctx.reports} == {"plain", "residual"} and ctx.reports[-1].done == ctx.reports[-1].total
    with pytest.raises(ValueError, match="not one of responses, lesion, landscape, erf, shattered"):
        run_analysis("hessian", models, data, seed=3)


def test_input_gradients_are_each_input_s_own_gradient() -> None:
    model = build_model(SMALL, seed=0)
    x, _ = _batch(n=4, side=16)
    _settle(model, x)
    model.eval()
    g = input_gradients(lambda v: model(v)[:, 2], x)
    for i in range(len(x)):  # one input at a time, by torch's Jacobian: no batch to share
        alone = torch.autograd.functional.jacobian(lambda v: model(v.unsqueeze(0))[0, 2], x[i])
        assert torch.allclose(g[i], alone.flatten(), rtol=1e-4, atol=1e-6)


def test_gradient_correlation_is_pearson_s_between_gradients_k_apart() -> None:
    g = torch.randn(40, 30, generator=torch.Generator().manual_seed(0), dtype=torch.float64).cumsum(0)  # brown noise
    measured = gradient_correlation(g, 5)
    for k, value in enumerate(measured, start=1):
        expected = np.mean([np.corrcoef(g[i].numpy(), g[i + k].numpy())[0, 1] for i in range(len(g) - k)])
        assert value == pytest.approx(expected, rel=1e-9)
    assert measured == tuple(sorted(measured, reverse=True))  # brown noise decorrelates with distance
    # A linear map has one gradient everywhere: every pair correlates 1 ([Balduzzi2017]: depth 0 does not shatter).
    w = torch.randn(3 * 8 * 8)
    line = line_between(torch.zeros(3, 8, 8), torch.ones(3, 8, 8), 16)
    assert gradient_correlation(input_gradients(lambda v: v.flatten(1) @ w, line), 4) == pytest.approx((1.0,) * 4)
    assert torch.equal(line[0], torch.zeros(3, 8, 8)) and torch.equal(line[-1], torch.ones(3, 8, 8))


def test_a_deep_plain_net_s_gradients_shatter_and_a_residual_net_s_do_not() -> None:
    """[Balduzzi2017] §3-4 at initialisation: a plain net's gradients decorrelate faster the deeper it is; the same
    net with shortcuts keeps them correlated."""
    from resnet_core.lab import scaled, twins

    x, y = _batch(n=8, side=32, classes=10)
    first = {}
    for depth in (20, 56):
        plain, residual = (scaled(c, 0.25) for c in twins(depth))
        p, r = (shattered_gradients(build_model(c, seed=1), build_model(c, seed=0), x, y, points=48, max_lag=8)
                for c in (plain, residual))
        assert p.at_init[0] < r.at_init[0] and p.at_init[-1] < r.at_init[-1], depth
        assert p.lags == tuple(range(1, 9)) and p.points == 48
        first[depth] = p.at_init[0]
        said = say_shattered(p, r, (f"plain-{depth}", f"ResNet-{depth}"))
        assert f"{p.at_init[0]:.2f} in plain-{depth}" in said and "plain-" + str(depth) + "'s is the more" in said
    assert first[56] < first[20]
