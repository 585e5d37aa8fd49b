"""The "why residuals work" lab: a plain network against its residual twin, measured.

[He2015] §4.1 and Fig. 1/6: a deeper *plain* network has a higher *training* error than a shallower
one (the degradation problem), while the same depth with shortcuts trains better. The paper argues this
is an optimisation difficulty, not vanishing gradients, since with BN "the backward propagated gradients
exhibit healthy norms". `signal_at_init` measures exactly that on a real batch, so the page can show
whichever is true for the setting the user picks; `race` trains the two twins side by side.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import PRESETS, ResNetConfig
from .data import Dataset
from .model import ResNet, build_model
from .train import Progress, TrainConfig, Trainer, TrainResult

CIFAR_DEPTHS = (20, 32, 44, 56, 110)
IMAGENET_DEPTHS = (18, 34)


def twins(depth: int) -> tuple[ResNetConfig, ResNetConfig]:
    """(plain, residual) configs of one depth: the same layers, with and without shortcuts."""
    residual = PRESETS[f"resnet{depth}"]
    return residual.with_(residual=False), residual


def without_batchnorm(model: ResNet) -> ResNet:
    """A copy of `model` with every BatchNorm replaced by the identity (to see what BN does to the signal)."""
    bare = copy.deepcopy(model)
    for name, module in list(bare.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.BatchNorm2d):
                setattr(module, child_name, nn.Identity())
        del name
    return bare


@dataclass(frozen=True)
class SignalProfile:
    """Per conv layer of the main path, in forward order: how big the signal is at initialisation."""

    layers: tuple[str, ...]
    forward_rms: tuple[float, ...]  # root-mean-square of the conv's output over the batch
    grad_rms: tuple[float, ...]  # root-mean-square of d loss / d (conv output)

    @property
    def grad_ratio(self) -> float:
        """Gradient at the first conv over gradient at the last one (< 0.01: the gradient vanishes)."""
        return self.grad_rms[0] / self.grad_rms[-1] if self.grad_rms[-1] else float("inf")

    @property
    def forward_ratio(self) -> float:
        """Signal at the last conv over signal at the first one."""
        return self.forward_rms[-1] / self.forward_rms[0] if self.forward_rms[0] else float("inf")


def main_path_convs(model: ResNet) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and "downsample" not in n]


def signal_at_init(model: ResNet, x: Tensor, y: Tensor) -> SignalProfile:
    """One forward and backward pass of a cross-entropy loss on a real batch, in training mode (as the
    first step of training sees it); records each main-path conv's output and its gradient.

    The backward pass asks autograd for the gradients at the conv outputs only (`torch.autograd.grad`),
    not for the weights' as `loss.backward()` would: the same numbers, bit for bit, without the
    weight-gradient convolutions nothing reads (bench/bench_lab.py checks both and times them). The
    model's `.grad`s are left as they were."""
    outputs: dict[str, Tensor] = {}
    handles = []
    for name, conv in main_path_convs(model):
        def keep(m: nn.Module, a: tuple[Tensor, ...], out: Tensor, name: str = name) -> None:
            outputs[name] = out
        handles.append(conv.register_forward_hook(keep))
    was_training = model.training
    model.train()
    try:
        loss = F.cross_entropy(model(x), y)
        names = tuple(outputs)
        grads = torch.autograd.grad(loss, [outputs[n] for n in names])
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return SignalProfile(
        layers=names,
        forward_rms=tuple(float(outputs[n].detach().pow(2).mean().sqrt()) for n in names),
        grad_rms=tuple(float(g.pow(2).mean().sqrt()) for g in grads),
    )


def compare_at_init(depth: int, x: Tensor, y: Tensor, *, batchnorm: bool = True, seed: int = 0,
                    width_scale: float = 1.0) -> dict[str, SignalProfile]:
    """Signal profiles of plain-`depth` and ResNet-`depth`, same seed, same batch."""
    result = {}
    for name, cfg in zip(("plain", "residual"), twins(depth)):
        cfg = scaled(cfg, width_scale).with_(in_channels=x.shape[1], num_classes=int(y.max()) + 1)
        model = build_model(cfg, seed=seed)
        if not batchnorm:
            model = without_batchnorm(model)
        result[name] = signal_at_init(model, x, y)
    return result


def scaled(cfg: ResNetConfig, width_scale: float) -> ResNetConfig:
    """The same depth at a fraction of the width (a race that fits a CPU)."""
    if width_scale == 1.0:
        return cfg
    widths = tuple(max(1, round(w * width_scale)) for w in cfg.widths)
    return cfg.with_(widths=widths, stem_width=max(1, round(cfg.stem_width * width_scale)))


@dataclass(frozen=True)
class RaceReport:
    """A progress report of one of the racers."""

    racer: str  # e.g. "plain-56"
    progress: Progress

    @property
    def kind(self) -> str:
        """The report's kind ("step", "epoch", "done"): a History keeps every one that is not "step"."""
        return self.progress.kind


def race(racers: dict[str, ResNetConfig], data: Dataset, cfg: TrainConfig, *,
         on_progress: Callable[[RaceReport], None] | None = None,
         should_stop: Callable[[], bool] | None = None) -> dict[str, TrainResult]:
    """Train every racer with the same recipe, data and seed, in turns of one report each, so that
    their curves grow together. Returns each racer's result."""
    gens: dict[str, Iterator[Progress]] = {
        name: Trainer(model_cfg, data, cfg, should_stop=should_stop).steps() for name, model_cfg in racers.items()
    }
    results: dict[str, TrainResult] = {}
    try:
        while gens:
            for name in list(gens):
                try:
                    progress = next(gens[name])
                except StopIteration as done:
                    results[name] = done.value
                    del gens[name]
                    continue
                if on_progress is not None:
                    on_progress(RaceReport(name, progress))
    finally:
        for g in gens.values():
            g.close()  # type: ignore[attr-defined]
    return results


def at_chance(loss: float, classes: int, *, tolerance: float = 0.05) -> bool:
    """A cross-entropy within `tolerance` of ln(classes): the net still predicts every class alike."""
    return abs(loss - math.log(classes)) <= tolerance * math.log(classes)


def race_verdict(final_loss: dict[str, float], classes: int) -> str:
    """What a finished race measured, in sentences made from its numbers: each depth pair's gap (deeper plain vs
    shallower plain: the degradation problem; deeper residual vs shallower residual: its cure) and which nets
    never left chance. `final_loss` maps "plain-20", "ResNet-56", ... to the smoothed training loss at the end."""
    chance = math.log(classes)
    said = []
    for kind in ("plain", "ResNet"):
        depths = sorted(int(n.split("-")[1]) for n in final_loss if n.startswith(kind + "-"))
        if len(depths) < 2:
            continue
        low, high = f"{kind}-{depths[0]}", f"{kind}-{depths[-1]}"
        gap = final_loss[high] - final_loss[low]
        deeper = "higher" if gap > 0 else "lower"
        meaning = ({"plain": "the deeper plain net trains worse on its own training data: the degradation problem "
                             "(He et al. 2015, Fig. 1)",
                    "ResNet": "the deeper residual net trains worse too: the race was too short for it to catch up"}
                   if gap > 0 else
                   {"plain": "the deeper plain net was not behind this time: a short, narrow race is noisy; train "
                             "longer to see the paper's gap",
                    "ResNet": "with shortcuts, depth helps instead of hurting (He et al. 2015, Fig. 6)"})[kind]
        said.append(f"{high} ended at a training loss of {final_loss[high]:.3f}, {deeper} than {low}'s "
                    f"{final_loss[low]:.3f}: {meaning}.")
    both = [d for d in sorted({int(n.split("-")[1]) for n in final_loss})
            if f"plain-{d}" in final_loss and f"ResNet-{d}" in final_loss]
    if both:
        d = both[-1]
        p, r = final_loss[f"plain-{d}"], final_loss[f"ResNet-{d}"]
        said.append(f"At {d} layers the shortcuts are the only difference: ResNet-{d} ended at {r:.3f}, plain-{d} at "
                    f"{p:.3f}" + (", so the shortcuts made the deep net trainable." if r < p else
                                  "; the shortcuts did not help in this race."))
    stuck = [n for n, v in final_loss.items() if at_chance(v, classes)]
    if stuck:
        why = (", through so many layers without shortcuts" if all(n.startswith("plain") for n in stuck) else "")
        said.append(f"{' and '.join(stuck)} {'sits' if len(stuck) == 1 else 'sit'} at chance (a loss of ln "
                    f"{classes} = {chance:.2f}): {'it has' if len(stuck) == 1 else 'they have'} not yet found a "
                    f"direction to learn in{why}.")
    return " ".join(said)
