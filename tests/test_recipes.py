"""Every model in the picker learns on its default path: the teaching recipe, on the built-in shapes.

The representatives take every kind of part a picker's model is built from: basic and bottleneck blocks, the CIFAR
and ImageNet stems, shortcuts A and B, a plain net, grouped 3x3 convolutions, a custom stage layout and a 1-channel
input (resnet50_v1 moves a stride to another conv and wide_resnet50_2 widens the 3x3: both train at full size in
bench/bench_recipes.py). Each one trains N steps of `default_recipe(model, "builtin")` on the built-in shapes
drawn at 16x16 (a test-sized resolution: a quarter of the default's pixels) with the warm-up of the default path
(31 steps). Its training loss after N steps is below its first report, and no report exceeds 1.5x the first.
The full-size figures (32x32, 10,000 images, test accuracy) are bench/bench_recipes.py's, in docs/benchmarks.md.
Also: the recipe's pieces (zero-init, batch scaling, twins), the plan before Start, and the sentences after.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch

from resnet_core import PRESETS, ResNetConfig
from resnet_core.analysis import analyze
from resnet_core.data import Dataset, builtin
from resnet_core.train import (
    RACE_RECIPES,
    RECIPES,
    TEACHING,
    Progress,
    Trainer,
    default_recipe,
    expected_accuracy_at,
    scaled_lr,
)
from resnet_core.train.estimate import plan_run, probe_images_per_s
from resnet_core.train.verdict import describe_end, explain_accuracy
from tests.conftest import torch_threads

REPRESENTATIVE: dict[str, ResNetConfig] = {
    **{name: PRESETS[name] for name in ("resnet20", "resnet56", "plain56", "resnet18", "resnet50", "resnext50_32x4d")},
    "custom 6 stages": ResNetConfig(blocks=(1,) * 6, widths=(16, 32, 64, 128, 256, 512), stem="cifar", stem_width=16),
    "custom 1 channel": ResNetConfig(blocks=(2, 2), widths=(16, 32), stem="cifar", stem_width=16, in_channels=1,
                                     num_classes=7),
}
N_STEPS = 60
REPORT_EVERY = 10  # a report is the mean loss of 10 steps: a plain-56 near chance moves by less than the noise
DEFAULT_WARMUP_STEPS = round(TEACHING.warmup_epochs * (10_000 // TEACHING.batch_size))  # on the default path


@pytest.fixture(scope="module", autouse=True)
def _two_threads() -> Iterator[None]:
    with torch_threads(2):  # eight models of up to 25 M parameters: the test needs both cores
        yield


@pytest.fixture(scope="module")
def shapes16() -> Dataset:
    return builtin(n_train=320, n_test=64, size=16)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(REPRESENTATIVE))
def test_every_representative_model_learns_on_its_default_path(name: str, shapes16: Dataset) -> None:
    cfg = REPRESENTATIVE[name]
    if cfg.in_channels == 1:  # a 1-channel model learns from the grey images of the same shapes
        grey = shapes16.x_train.float().mean(1, keepdim=True).round().to(torch.uint8)
        grey_test = shapes16.x_test.float().mean(1, keepdim=True).round().to(torch.uint8)
        data = Dataset("builtin", shapes16.classes, grey, shapes16.y_train, grey_test, shapes16.y_test, (0.5,), (0.25,))
    else:
        data = shapes16
    recipe = default_recipe(cfg, "builtin")
    steps_per_epoch = len(data.y_train) // recipe.batch_size
    run = recipe.with_(epochs=10, warmup_epochs=DEFAULT_WARMUP_STEPS / steps_per_epoch, max_steps=N_STEPS,
                       log_every=REPORT_EVERY, device="cpu")
    seen: list[Progress] = []
    result = Trainer(cfg, data, run, on_progress=seen.append).run()
    losses = [p.loss for p in seen if p.kind == "step"]
    assert len(losses) == N_STEPS // REPORT_EVERY
    assert all(loss is not None and math.isfinite(loss) for loss in losses)
    first, last = losses[0], losses[-1]
    assert first is not None and last is not None
    assert last < first, f"{name}: loss {first:.3f} -> {last:.3f}: {losses}"
    assert max(losses) <= 1.5 * first, f"{name}: a report of {max(losses):.3f} against {first:.3f} first: {losses}"
    assert result.end == "steps" and result.last.step == N_STEPS


def test_twins_get_the_same_recipe_and_only_the_residual_one_starts_with_zeroed_branches() -> None:
    plain, residual = PRESETS["plain56"], PRESETS["resnet56"]
    assert default_recipe(plain, "builtin") == default_recipe(residual, "builtin")
    data = builtin(n_train=64, n_test=8)
    recipe = default_recipe(residual, "builtin").with_(device="cpu")
    assert Trainer(residual, data, recipe).model_cfg.zero_init_residual
    assert not Trainer(plain, data, recipe).model_cfg.zero_init_residual  # no branch to zero: it would cut the net


def test_a_residual_net_built_by_the_recipe_starts_as_its_shortcuts() -> None:
    # Zero-init (Goyal et al. 2017): each block's last BN scale is 0, so each block's output is its shortcut.
    cfg = PRESETS["resnet20"].with_(zero_init_residual=True)
    from resnet_core import build_model

    model = build_model(cfg, seed=0).eval()
    block = model.layer1[0]
    x = torch.randn(2, 16, 8, 8).relu()
    with torch.no_grad():
        assert torch.equal(block(x), torch.relu(x))  # identity shortcut, then the block's ReLU


def test_the_learning_rate_follows_the_batch_size() -> None:
    assert scaled_lr(TEACHING, TEACHING.batch_size) == TEACHING.lr
    assert scaled_lr(TEACHING, 4 * TEACHING.batch_size) == pytest.approx(2 * TEACHING.lr)  # AdamW: sqrt
    sgd = RECIPES["resnet18_cifar"]
    assert scaled_lr(sgd, 256) == pytest.approx(0.2)  # SGD: linear (Goyal et al. 2017)
    with pytest.raises(ValueError, match="batch_size"):
        scaled_lr(TEACHING, 0)


def test_race_recipes_live_beside_the_others_and_keep_the_papers_cifar_recipe() -> None:
    paper = RACE_RECIPES["cifar10"]
    assert (paper.optimizer, paper.batch_size, paper.lr, paper.momentum, paper.weight_decay) == (
        "sgd", 128, 0.1, 0.9, 1e-4)
    assert RACE_RECIPES["builtin"].optimizer == TEACHING.optimizer
    assert default_recipe("resnet20", "mnist").flip is False


# ----------------------------------------------------------------------------------------------
# Before Start: the plan


def test_a_plan_says_how_far_the_time_cap_reaches() -> None:
    cfg = TEACHING.with_(epochs=2, max_seconds=120.0)
    plan = plan_run(n_train=10_000, input_size=(3, 32, 32), cfg=cfg,
                    images_per_s=100.0, measured=True)
    assert plan.steps_per_epoch == 312 and plan.total_steps == 624
    assert plan.seconds_per_epoch == pytest.approx(312 * 32 / 100)
    assert plan.reach_epochs == pytest.approx(120 / plan.seconds_per_epoch) and plan.capped
    assert plan.reach_steps == math.floor(plan.reach_epochs * 312)
    fast = plan_run(n_train=10_000, input_size=(3, 32, 32), cfg=cfg,
                    images_per_s=1000.0, measured=True)
    assert not fast.capped and fast.reach_epochs == 2 and fast.reach_steps == 624


def test_the_probe_times_real_training_steps_of_the_model() -> None:
    data = builtin(n_train=128, n_test=8)
    cfg = TEACHING.with_(device="cpu")
    ips = probe_images_per_s(PRESETS["resnet20"], data, cfg, min_steps=2, seconds=0.0)
    # A whole-run measurement of the same steps, as the trainer reports it.
    seen: list[Progress] = []
    Trainer(PRESETS["resnet20"], data, cfg.with_(max_steps=3, log_every=1), on_progress=seen.append).run()
    run_ips = 2 * cfg.batch_size / (seen[2].train_s - seen[0].train_s)
    assert 0.5 < ips / run_ips < 4  # the same work timed twice (the probe's quickest step, the run's mean)


def test_expected_accuracy_grows_with_the_epochs_reached() -> None:
    assert expected_accuracy_at("builtin", 0.1) == "10% (chance)"
    assert expected_accuracy_at("builtin", 2.0) != expected_accuracy_at("builtin", 0.1)
    assert expected_accuracy_at("builtin", 2.0, preset="resnet20") == "about 98%"  # its own measured figure
    assert expected_accuracy_at("cifar10", 1.0) is None  # not measured here: nothing promised


# ----------------------------------------------------------------------------------------------
# After a run: why it ended, and why at chance


def _done(step: int, end: str, epochs: int = 2, steps_per_epoch: int = 312) -> Progress:
    return Progress("done", step, step // steps_per_epoch + 1, epochs * steps_per_epoch, 2.3, 0.1, 0.1, 0.0, 100.0,
                    None, 120.0, 110.0, "cpu", steps_per_epoch, epochs, end)  # type: ignore[arg-type]


def test_a_runs_end_names_its_reason() -> None:
    assert describe_end(_done(290, "time"), max_seconds=120) == \
        "stopped at the 120 s limit at step 290 of 624 (epoch 1 of 2)"
    assert describe_end(_done(624, "finished")) == "finished 2 epochs (624 steps)"
    assert describe_end(_done(80, "user")) == "stopped by you at step 80 of 624 (epoch 1 of 2)"
    assert describe_end(_done(60, "steps")) == "stopped at its step limit at step 60 of 624 (epoch 1 of 2)"


def test_a_run_at_chance_is_explained_from_its_own_numbers() -> None:
    data = builtin(n_train=256, n_test=64)
    cfg = default_recipe("resnet20", "builtin").with_(device="cpu", max_steps=2, log_every=1)
    result = Trainer(PRESETS["resnet20"], data, cfg).run()
    assert result.test_accuracy <= 0.15  # two steps: chance
    why = explain_accuracy(result, data.num_classes)
    assert why is not None and "chance level for 10 classes" in why and "0.25 of an epoch" in why


def test_resnet20_on_the_default_path_gets_an_analysis_flops_count_passed_in() -> None:
    data = builtin(n_train=64, n_test=8)
    flops = analyze(PRESETS["resnet20"], input_size=data.input_size).total_flops
    trainer = Trainer(PRESETS["resnet20"], data, TEACHING.with_(device="cpu"), forward_flops_per_image=flops)
    assert trainer.flops_per_image == 3 * flops
