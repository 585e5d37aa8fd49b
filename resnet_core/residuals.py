"""Why residual networks train, measured the way the papers measured it, on any trained plain/residual pair.

- `layer_responses`: [He2015] §4.2 and Fig. 7. The standard deviation of each block's branch output (after its
  last BN, before the sum with the shortcut). The paper finds residual functions respond less than the layers of
  the plain net: the blocks learn small corrections to the identity.
- `lesion_study`: [Veit2016] §4 and Figs. 3-5. Delete one block (its branch set to zero, the shortcut kept) and
  measure the test error; then delete k random blocks. A residual net degrades smoothly (it behaves like an
  ensemble of paths of many lengths, `path_lengths`, Fig. 6); deleting any layer of a plain net breaks it.
- `loss_surface`: [Li2018] §4. The loss around the trained weights along random directions whose every filter has
  the norm of the weights' filter ("filter normalisation"), so that plots of different nets compare; BN parameters
  and biases are not moved.
- `effective_receptive_field`: [Luo2016] §2. The gradient of the centre output unit with respect to the input,
  averaged over images: how much each input pixel actually moves that unit. It fills far less than the
  theoretical receptive field and falls off like a Gaussian.
- `shattered_gradients`: [Balduzzi2017] §2-3 and Figs. 1-3. The gradient of the output with respect to the input,
  at inputs along a line from one test image to another, and how it correlates between inputs a few steps apart.
  In a deep plain net it decorrelates like white noise ("shatters"); the shortcuts keep it correlated.

References
- [He2015] K. He et al. "Deep Residual Learning for Image Recognition", CVPR 2016.
- [Veit2016] A. Veit, M. Wilber, S. Belongie. "Residual Networks Behave Like Ensembles of Relatively Shallow
  Networks", NeurIPS 2016.
- [Li2018] H. Li, Z. Xu, G. Taylor, C. Studer, T. Goldstein. "Visualizing the Loss Landscape of Neural Nets",
  NeurIPS 2018.
- [Luo2016] W. Luo, Y. Li, R. Urtasun, R. Zemel. "Understanding the Effective Receptive Field in Deep
  Convolutional Neural Networks", NeurIPS 2016.
- [Balduzzi2017] D. Balduzzi, M. Frean, L. Leary, J. P. Lewis, K. W.-D. Ma, B. McWilliams. "The Shattered
  Gradients Problem: If resnets are the answer, then what is the question?", ICML 2017.

Every function takes a model and tensors and leaves the model as it found it (weights, mode, hooks).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data import Dataset
from .model import ResNet, eval_mode
from .train.ops import normalizer

Direction = dict[str, Tensor]  # parameter name -> a tensor of its shape

# Images per forward pass when a model is evaluated: 100 CIFAR-size images keep a layer's activations in a CPU's
# cache (ResNet-20 evaluates 500 images 1.9x faster in batches of 100 than in one batch of 500).
EVAL_BATCH = 100


# --- blocks -------------------------------------------------------------------------------------------


def blocks(model: ResNet) -> dict[str, nn.Module]:
    """Every residual block by path ("layer2.0"), in forward order."""
    return {f"{stage}.{i}": block for stage in model.stages
            for i, block in enumerate(model.get_submodule(stage).children())}


def downsampling(model: ResNet) -> tuple[str, ...]:
    """The blocks that change the shape (a stride, or more channels): their shortcut is not the identity."""
    return tuple(b.path for b in model.plan.blocks if b.stride != 1 or b.in_channels != b.out_channels)


def _branch_end(block: nn.Module) -> nn.Module:
    return block.branch_end()  # type: ignore[operator]


# --- layer responses ([He2015] Fig. 7) -----------------------------------------------------------------


@dataclass(frozen=True)
class Responses:
    blocks: tuple[str, ...]
    std: tuple[float, ...]  # of each block's branch output over the batch, every channel and position


@torch.no_grad()
def layer_responses(model: ResNet, x: Tensor) -> Responses:
    """The std of each block's branch output F(x) (after its last BN, before the sum), in eval mode, as
    [He2015] Fig. 7 plots it. On a plain net the same module ends the block's layers."""
    found: dict[str, float] = {}
    handles = []
    for path, block in blocks(model).items():
        def keep(m: nn.Module, a: tuple[Tensor, ...], out: Tensor, path: str = path) -> None:
            found[path] = float(out.double().std())
        handles.append(_branch_end(block).register_forward_hook(keep))
    try:
        with eval_mode(model):
            model(x)
    finally:
        for h in handles:
            h.remove()
    names = tuple(blocks(model))
    return Responses(names, tuple(found[n] for n in names))


# --- lesions ([Veit2016]) -----------------------------------------------------------------------------


@contextmanager
def lesioned(model: ResNet, paths: Iterable[str]) -> Iterator[ResNet]:
    """`model` with the branches of the blocks `paths` deleted (their output set to zero): a residual block then
    passes its shortcut on, a plain one passes nothing."""
    by_path = blocks(model)

    def zero(m: nn.Module, a: tuple[Tensor, ...], out: Tensor) -> Tensor:
        return torch.zeros_like(out)

    handles = [_branch_end(by_path[p]).register_forward_hook(zero) for p in paths]
    try:
        yield model
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def error_rate(model: nn.Module, x: Tensor, y: Tensor, *, batch_size: int = EVAL_BATCH) -> float:
    """Top-1 error on (x, y) in eval mode."""
    wrong = 0
    with eval_mode(model):
        for i in range(0, len(x), batch_size):
            wrong += int((model(x[i:i + batch_size]).argmax(1) != y[i:i + batch_size]).sum())
    return wrong / len(x)


@dataclass(frozen=True)
class LesionStudy:
    blocks: tuple[str, ...]
    downsampling: tuple[bool, ...]  # per block: does it change the shape (its deletion hurts most in [Veit2016])
    error: float  # test error of the whole net
    single: tuple[float, ...]  # test error with each block deleted alone
    k: tuple[int, ...]  # 1 .. n: how many random blocks (of the shape-keeping ones) are deleted together
    k_error: tuple[float, ...]  # mean test error over the samples of each k
    k_spread: tuple[float, ...]  # their standard deviation


def lesion_study(model: ResNet, x: Tensor, y: Tensor, *, samples: int = 5, seed: int = 0,
                 on_progress: Callable[[int, int], None] | None = None) -> LesionStudy:
    """[Veit2016] Fig. 3 (each block deleted alone) and Fig. 5 (k random blocks deleted together, k = 1 .. n of the
    blocks that keep the shape, `samples` random sets each; the downsampling blocks stay, as in the paper)."""
    paths = tuple(blocks(model))
    down = set(downsampling(model))
    keep_shape = [p for p in paths if p not in down]
    total = len(paths) + samples * len(keep_shape)
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if on_progress is not None:
            on_progress(done, total)

    single = []
    for p in paths:
        with lesioned(model, [p]):
            single.append(error_rate(model, x, y))
        step()
    rng = torch.Generator().manual_seed(seed)
    k_error, k_spread = [], []
    for k in range(1, len(keep_shape) + 1):
        errors = []
        for _ in range(samples):
            chosen = [keep_shape[int(i)] for i in torch.randperm(len(keep_shape), generator=rng)[:k]]
            with lesioned(model, chosen):
                errors.append(error_rate(model, x, y))
            step()
        t = torch.tensor(errors, dtype=torch.float64)
        k_error.append(float(t.mean()))
        k_spread.append(float(t.std(unbiased=False)))
    return LesionStudy(paths, tuple(p in down for p in paths), error_rate(model, x, y), tuple(single),
                       tuple(range(1, len(keep_shape) + 1)), tuple(k_error), tuple(k_spread))


def path_lengths(n: int) -> tuple[int, ...]:
    """How many of the 2^n paths through n residual blocks pass k branches, k = 0 .. n ([Veit2016] Fig. 6a):
    each block is either taken or skipped, so the lengths are binomial(n, 1/2)."""
    return tuple(math.comb(n, k) for k in range(n + 1))


# --- loss landscape ([Li2018]) ------------------------------------------------------------------------


def filter_normalized_direction(model: nn.Module, generator: torch.Generator) -> Direction:
    """A random Gaussian direction in weight space with each filter (each output unit of a conv or linear weight)
    rescaled to the norm of the same filter of the weights ([Li2018] §4, eq. 2). BN parameters and biases get a
    zero direction: they stay where training left them."""
    d: Direction = {}
    for name, p in model.named_parameters():
        w = p.detach()
        if w.dim() <= 1:
            d[name] = torch.zeros_like(w)
            continue
        r = torch.randn(w.shape, generator=generator, dtype=w.dtype, device="cpu").to(w.device)
        scale = w.flatten(1).norm(dim=1) / r.flatten(1).norm(dim=1).clamp_min(1e-12)  # one per filter
        d[name] = r * scale.view(-1, *([1] * (w.dim() - 1)))
    return d


@torch.no_grad()
def mean_loss(model: nn.Module, x: Tensor, y: Tensor, *, batch_size: int = EVAL_BATCH) -> float:
    """Mean cross-entropy over (x, y) in eval mode (the BN statistics training kept)."""
    total = 0.0
    with eval_mode(model):
        for i in range(0, len(x), batch_size):
            total += float(F.cross_entropy(model(x[i:i + batch_size]), y[i:i + batch_size], reduction="sum"))
    return total / len(x)


@torch.no_grad()
def loss_surface(model: nn.Module, x: Tensor, y: Tensor, directions: Sequence[Direction],
                 coords: Sequence[Sequence[float]], *,
                 on_progress: Callable[[int, int], None] | None = None) -> tuple[float, ...]:
    """The loss at weights + Σ c_i d_i for each point c of `coords` (one coordinate per direction): a line for one
    direction ([Li2018] Fig. 1-2), a surface for two (Fig. 5). `model` is not changed (a copy moves)."""
    moved = copy.deepcopy(model)
    params = dict(moved.named_parameters())
    origin = {name: p.detach().clone() for name, p in params.items()}
    losses = []
    for i, c in enumerate(coords):
        if len(c) != len(directions):
            raise ValueError(f"point {tuple(c)} has {len(c)} coordinates for {len(directions)} directions")
        for name, p in params.items():
            p.copy_(origin[name])
            for ci, d in zip(c, directions):
                p.add_(d[name], alpha=float(ci))
        losses.append(mean_loss(moved, x, y))
        if on_progress is not None:
            on_progress(i + 1, len(coords))
    return tuple(losses)


def grid(steps: int, extent: float = 1.0) -> tuple[float, ...]:
    """`steps` evenly spaced coordinates from -extent to extent (0 among them when `steps` is odd)."""
    if steps < 2:
        raise ValueError(f"steps={steps} must be at least 2")
    return tuple(-extent + 2 * extent * i / (steps - 1) for i in range(steps))


# --- effective receptive field ([Luo2016]) ------------------------------------------------------------


def effective_receptive_field(features: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """|d (centre unit of `features(x)`) / d x|, summed over the input's channels and averaged over the images:
    an (H, W) map. The centre unit's gradient is 1 in every channel, 0 elsewhere ([Luo2016] §2)."""
    x = x.detach().clone().requires_grad_(True)
    out = features(x)  # (B, C, h, w)
    seed = torch.zeros_like(out)
    seed[:, :, out.shape[2] // 2, out.shape[3] // 2] = 1
    (grad,) = torch.autograd.grad(out, x, seed)
    return grad.abs().sum(1).mean(0).detach()  # (H, W)


def model_erf(model: ResNet, x: Tensor) -> Tensor:
    """The effective receptive field of the last feature map's centre unit (before global pooling), in eval mode."""
    with eval_mode(model):
        return effective_receptive_field(model.forward_features, x)


def support(erf: Tensor, *, tol: float = 0.0) -> tuple[int, int]:
    """(rows, columns) of the smallest box holding every input pixel whose gradient exceeds `tol` of the largest."""
    on = erf > tol * float(erf.max())
    rows = torch.nonzero(on.any(1)).flatten()
    cols = torch.nonzero(on.any(0)).flatten()
    if len(rows) == 0:
        return (0, 0)
    return (int(rows[-1] - rows[0]) + 1, int(cols[-1] - cols[0]) + 1)


def mass_extent(erf: Tensor, share: float = 0.95) -> int:
    """The side of the smallest square, centred on the gradient's centre of mass, that holds `share` of it."""
    total = float(erf.sum())
    if total == 0:
        return 0
    h, w = erf.shape
    ys = torch.arange(h, dtype=erf.dtype)
    xs = torch.arange(w, dtype=erf.dtype)
    cy = round(float((erf.sum(1) * ys).sum()) / total)
    cx = round(float((erf.sum(0) * xs).sum()) / total)
    for r in range(max(h, w)):
        box = erf[max(0, cy - r):cy + r + 1, max(0, cx - r):cx + r + 1]
        if float(box.sum()) >= share * total:
            return 2 * r + 1
    return max(h, w)


# --- shattered gradients ([Balduzzi2017]) -------------------------------------------------------------


def input_gradients(f: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """(N, D): the gradient of `f(x)[i]` with respect to `x[i]`, flattened, for each of the N inputs. `f` maps a batch
    to one number per input and must treat the inputs apart (a model in eval mode does), so one backward pass of the
    sum gives every input's own gradient."""
    x = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(f(x).sum(), x)
    return grad.flatten(1).detach()


def gradient_correlation(g: Tensor, max_lag: int) -> tuple[float, ...]:
    """For k = 1 .. `max_lag`: the mean Pearson correlation between the gradients (rows of `g`) of inputs k apart."""
    z = F.normalize(g - g.mean(1, keepdim=True), dim=1)
    return tuple(float((z[:-k] * z[k:]).sum(1).mean()) for k in range(1, max_lag + 1))


def line_between(a: Tensor, b: Tensor, points: int) -> Tensor:
    """`points` inputs evenly spaced on the straight line from `a` to `b` (both included)."""
    t = torch.linspace(0, 1, points, dtype=a.dtype).view(-1, *([1] * a.dim()))
    return a.unsqueeze(0) * (1 - t) + b.unsqueeze(0) * t


@dataclass(frozen=True)
class ShatteredGradients:
    lags: tuple[int, ...]  # 1 .. max lag: how many steps apart two inputs on the line are
    at_init: tuple[float, ...]  # mean correlation of the input gradients of inputs `lag` steps apart
    trained: tuple[float, ...]
    points: int  # inputs on the line from one test image to another


def shattered_gradients(trained: ResNet, initial: ResNet, x: Tensor, y: Tensor, *, points: int = 128,
                        max_lag: int = 32) -> ShatteredGradients:
    """[Balduzzi2017] on images: the gradient of the logit of the first test image's class, at `points` inputs on
    the line from that image to the first one of another class, at initialisation and trained (eval mode)."""
    other = int(torch.nonzero(y != y[0]).flatten()[0]) if bool((y != y[0]).any()) else min(1, len(x) - 1)
    line, label = line_between(x[0], x[other], points), int(y[0])

    def correlation(model: ResNet) -> tuple[float, ...]:
        with eval_mode(model):
            return gradient_correlation(input_gradients(lambda v: model(v)[:, label], line), max_lag)

    return ShatteredGradients(tuple(range(1, max_lag + 1)), correlation(initial), correlation(trained), points)


# --- on a trained pair: what the lab runs, with progress ----------------------------------------------

ANALYSES = ("responses", "lesion", "landscape", "erf", "shattered")


def test_inputs(data: Dataset, n: int) -> tuple[Tensor, Tensor]:
    """The first `n` test images, normalised as the trainer feeds them (float32), and their labels."""
    scale, shift = normalizer(data.mean, data.std, torch.device("cpu"))
    return data.x_test[:n].float() * scale + shift, data.y_test[:n]


@dataclass(frozen=True)
class Landscape:
    line: tuple[float, ...]  # coordinates along the first direction
    line_loss: tuple[float, ...]
    axis: tuple[float, ...]  # coordinates of the surface along each of the two directions
    surface: tuple[tuple[float, ...], ...]  # surface[i][j]: loss at (axis[i], axis[j])
    loss: float  # at the trained weights


def landscape(model: ResNet, x: Tensor, y: Tensor, *, steps: int = 11, line_steps: int = 25, extent: float = 1.0,
              seed: int = 0, on_progress: Callable[[int, int], None] | None = None) -> Landscape:
    """[Li2018] around the trained weights: a line along one filter-normalised direction (Fig. 2) and a
    `steps` × `steps` surface along two (Fig. 5), the directions drawn from `seed` (the same for twins)."""
    g = torch.Generator().manual_seed(seed)
    d1, d2 = filter_normalized_direction(model, g), filter_normalized_direction(model, g)
    line, axis = grid(line_steps, extent), grid(steps, extent)
    total = line_steps + steps * steps

    def part(offset: int) -> Callable[[int, int], None] | None:
        return None if on_progress is None else lambda i, n: on_progress(offset + i, total)

    line_loss = loss_surface(model, x, y, [d1], [(a,) for a in line], on_progress=part(0))
    flat = loss_surface(model, x, y, [d1, d2], [(a, b) for a in axis for b in axis], on_progress=part(line_steps))
    surface = tuple(flat[i * steps:(i + 1) * steps] for i in range(steps))
    return Landscape(line, line_loss, axis, surface, mean_loss(model, x, y))


@dataclass(frozen=True)
class Erf:
    at_init: Tensor  # (H, W)
    trained: Tensor  # (H, W)
    theoretical: int  # the theoretical receptive field (pixels), from the analysis
    extent_init: int  # side of the central square that holds 95% of the gradient
    extent_trained: int

    @property
    def input_side(self) -> int:
        return max(self.trained.shape)


def erf_before_and_after(trained: ResNet, initial: ResNet, x: Tensor) -> Erf:
    """[Luo2016] Fig. 3: the effective receptive field of the same network at initialisation and trained."""
    from .analysis import analyze

    rf = analyze(trained.config, input_size=tuple(x.shape[1:])).receptive_field  # type: ignore[arg-type]
    at_init, after = model_erf(initial, x), model_erf(trained, x)
    return Erf(at_init, after, rf, mass_extent(at_init), mass_extent(after))


def nonconvex_share(surface: Sequence[Sequence[float]]) -> float:
    """The share of the surface's inner points where it curves down in some direction (the finite-difference
    Hessian has a negative eigenvalue): 0 for a bowl. [Li2018] Fig. 1 and 5 show plain nets far from 0."""
    s = torch.tensor(surface, dtype=torch.float64)
    dxx = s[2:, 1:-1] - 2 * s[1:-1, 1:-1] + s[:-2, 1:-1]
    dyy = s[1:-1, 2:] - 2 * s[1:-1, 1:-1] + s[1:-1, :-2]
    dxy = (s[2:, 2:] - s[2:, :-2] - s[:-2, 2:] + s[:-2, :-2]) / 4
    smallest = (dxx + dyy) / 2 - torch.sqrt(((dxx - dyy) / 2) ** 2 + dxy**2)  # the lower eigenvalue
    return float((smallest < 0).double().mean()) if smallest.numel() else 0.0


def local_minima(surface: Sequence[Sequence[float]]) -> int:
    """Points of the surface lower than all eight neighbours (inner points only): 1 for a bowl; a chaotic surface,
    as [Li2018] Fig. 5 shows for deep plain nets, has many."""
    s = torch.tensor(surface, dtype=torch.float64)
    inner = s[1:-1, 1:-1]
    lower = torch.ones_like(inner, dtype=torch.bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                lower &= inner < s[1 + dy:s.shape[0] - 1 + dy, 1 + dx:s.shape[1] - 1 + dx]
    return int(lower.sum())


# --- what the numbers say (the page's sentences, generated, never fixed) ------------------------------


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def say_responses(plain: Responses, residual: Responses, names: tuple[str, str]) -> str:
    p, r = _mean(plain.std), _mean(residual.std)
    verdict = (f"the residual functions respond {p / r:.1f}× less, as He et al. found (2015, Fig. 7): each block "
               "learns a small correction to the identity" if r < p else
               f"the residual functions do not respond less here ({r / p:.1f}× the plain layers'), unlike He et "
               "al.'s Fig. 7: train longer, or look at the deeper pair")
    return (f"The branch outputs of {names[1]} have a standard deviation of {r:.2f} on average, the same layers of "
            f"{names[0]} {p:.2f}: {verdict}.")


def say_lesion(plain: LesionStudy, residual: LesionStudy, names: tuple[str, str], classes: int) -> str:
    def worst(s: LesionStudy) -> tuple[str, float, bool]:
        i = max(range(len(s.single)), key=lambda j: s.single[j])
        return s.blocks[i], s.single[i], s.downsampling[i]

    chance = 1 - 1 / classes
    keep = [e for e, d in zip(residual.single, residual.downsampling) if not d]
    block, err, down = worst(residual)
    plain_keep = [e for e, d in zip(plain.single, plain.downsampling) if not d]
    return (f"Deleting one block of {names[1]} moves its test error from {residual.error:.0%} to {_mean(keep):.0%} "
            f"on average (at most {err:.0%}, without {block}{', a downsampling block' if down else ''}); deleting "
            f"the same layers of {names[0]} moves it from {plain.error:.0%} to {_mean(plain_keep):.0%} (chance: "
            f"{chance:.0%}). "
            + ("The residual net degrades gracefully, an ensemble of paths that do not all need each block "
               "(Veit et al. 2016)." if _mean(keep) < _mean(plain_keep) else
               "Here the residual net does not degrade more gracefully than the plain one: train the pair longer."))


def say_landscape(plain: Landscape, residual: Landscape, names: tuple[str, str]) -> str:
    p, r = (local_minima(plain.surface), nonconvex_share(plain.surface)), (local_minima(residual.surface),
                                                                          nonconvex_share(residual.surface))
    rise_p = _mean([plain.line_loss[0], plain.line_loss[-1]]) - plain.loss
    rise_r = _mean([residual.line_loss[0], residual.line_loss[-1]]) - residual.loss
    shape = ("smoother, closer to one bowl, as Li et al. found (2018, Fig. 5)" if r < p else
             "not smoother here than the plain one's; Li et al.'s difference shows at 56 layers and more")

    def minima(n: int) -> str:
        return "one local minimum" if n == 1 else f"{n} local minima"

    return (f"Around the trained weights, {names[0]}'s surface has {minima(p[0])} and curves downward at {p[1]:.0%} "
            f"of its points, {names[1]}'s has {minima(r[0])} and curves downward at {r[1]:.0%}: the residual net's "
            f"is {shape}. A step of one along the line (the weights' own scale) raises the loss by {rise_p:.2f} "
            f"for {names[0]} and {rise_r:.2f} for {names[1]}.")


def say_erf(erf: Erf, name: str) -> str:
    grew = {True: "it grew with training", False: "training did not widen it"}[erf.extent_trained > erf.extent_init]
    reach = min(erf.theoretical, erf.input_side)
    where = (f"{erf.theoretical} px" if erf.theoretical <= erf.input_side else
             f"{erf.theoretical} px, more than the {erf.input_side} px input")
    return (f"{name}'s theoretical receptive field is {where}; 95% of the gradient of its centre unit falls within "
            f"{erf.extent_init} px at initialisation and {erf.extent_trained} px trained ({grew}): "
            f"{erf.extent_trained / reach:.0%} of what the architecture (and the input) allow. Luo et al. (2016) "
            "found the effective field a fraction of the theoretical one.")


def say_shattered(plain: ShatteredGradients, residual: ShatteredGradients, names: tuple[str, str]) -> str:
    def compare(p: float, r: float) -> str:
        if abs(p - r) < 0.05:
            return "about alike"
        return f"{names[0]}'s is the {'more' if p < r else 'less'} shattered"

    step = f"1/{plain.points - 1} of the way from one test image to another"
    init, trained = (plain.at_init[0], residual.at_init[0]), (plain.trained[0], residual.trained[0])
    return (f"The gradients of two inputs one step apart ({step}) correlate {init[0]:.2f} in {names[0]} and "
            f"{init[1]:.2f} in {names[1]} at initialisation ({compare(*init)}), {trained[0]:.2f} and {trained[1]:.2f} "
            f"trained ({compare(*trained)}). Balduzzi et al. (2017) found that a deep plain net's gradient "
            "decorrelates like white noise and a residual net's far more slowly.")


@dataclass(frozen=True)
class AnalysisProgress:
    """A progress report of an analysis: `done` of `total` evaluations of `analysis` on `model`."""

    analysis: str
    model: str
    done: int
    total: int
    kind: str = "step"


def result_type(analysis: str) -> type:
    """What `run_analysis` gives for each model: Responses, LesionStudy, Landscape, Erf or ShatteredGradients.
    Refuses a name that is not one of ANALYSES."""
    if analysis not in ANALYSES:
        raise ValueError(f"analysis={analysis!r} is not one of {', '.join(ANALYSES)}")
    return {"responses": Responses, "lesion": LesionStudy, "landscape": Landscape, "erf": Erf,
            "shattered": ShatteredGradients}[analysis]


def run_analysis(analysis: str, trained: dict[str, ResNet], data: Dataset, *, seed: int, images: int = 500,
                 steps: int = 11, on_progress: Callable[[AnalysisProgress], None] | None = None) -> dict[str, object]:
    """One of ANALYSES on each trained model (e.g. {"plain-20": ..., "ResNet-20": ...}), on the first `images` test
    images: name -> Responses, LesionStudy, Landscape, Erf or ShatteredGradients. `seed` is the training seed: the
    weights at initialisation (the ERF's and the gradients' "at init") are `build_model(config, seed=seed)`, the very
    weights training started from."""
    result_type(analysis)  # a name that is not one of ANALYSES is refused here
    from .model import build_model

    x, y = test_inputs(data, images)
    out: dict[str, object] = {}
    for name, model in trained.items():
        def report(done: int, total: int, name: str = name) -> None:
            if on_progress is not None:
                on_progress(AnalysisProgress(analysis, name, done, total))

        if analysis == "responses":
            out[name] = layer_responses(model, x)
        elif analysis == "lesion":
            out[name] = lesion_study(model, x, y, seed=seed, on_progress=report)
        elif analysis == "landscape":
            out[name] = landscape(model, x, y, steps=steps, seed=seed, on_progress=report)
        elif analysis == "erf":
            out[name] = erf_before_and_after(model, build_model(model.config, seed=seed), x[:64])
        else:
            out[name] = shattered_gradients(model, build_model(model.config, seed=seed), x, y)
        report(1, 1)
    return out
