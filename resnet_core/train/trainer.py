"""The trainer: a plain class that reports `Progress` through a callback (or as a generator).

    data = builtin()
    trainer = Trainer(PRESETS["resnet20"], data, default_recipe(PRESETS["resnet20"], "builtin"), on_progress=print)
    result = trainer.run()             # or: for progress in trainer.steps(): ...
    result.test_accuracy, result.confusion, result.model, result.end

The trainer knows nothing about any UI: a page or a job runner turns `Progress` into charts.

Why it is fast. The whole dataset is one uint8 tensor on the device. Each step indexes a shuffled
batch there, augments it in batch (`ops.augment_batch`: one gather), converts to float, normalises,
and runs forward/backward/update. No Python work happens per sample, so no DataLoader worker is
needed (bench/bench_train.py compares this with a DataLoader of per-sample torchvision transforms).
On CUDA the forward runs under bf16 autocast with channels_last tensors and cudnn autotuning; the
loss stays on the device and is read (a sync) only every `log_every` steps.

Reproducibility. One `torch.Generator` seeded from `TrainConfig.seed` draws every shuffle, crop and
flip, and the weights are initialised with `build_model(..., seed=seed)`: on the CPU the same seed
gives the same loss curve, bit for bit (tests/test_training.py).

Distributed. Under `torchrun` (a process group initialised by the caller, see
`distributed.process_group`), each rank trains on its slice of every global batch (all ranks draw the
same permutation from the shared seed) and DistributedDataParallel averages the gradients. BatchNorm
statistics are broadcast from rank 0 before each evaluation, so every rank holds identical weights
and buffers and computes the same test accuracy.
"""

from __future__ import annotations

import time
import traceback
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ResNetConfig
from ..data import Dataset
from ..model import ResNet, build_model
from .config import TrainConfig
from .device import peak_flops, resolve_device
from .distributed import all_mean, all_sum, broadcast_buffers, local_rank, rank_and_world
from .ops import augment_batch, lr_at, normalizer

ProgressKind = Literal["step", "epoch", "done"]
# Why a run ended: it went through all its epochs, or TrainConfig.max_seconds, TrainConfig.max_steps or the
# caller's should_stop() cut it short.
EndReason = Literal["finished", "time", "steps", "user"]

T = TypeVar("T")

MAX_STEP_HISTORY = 2000  # step reports kept in a History; epoch reports are all kept
N_SHOWN_PREDICTIONS = 32  # test images whose predictions TrainResult keeps


def training_flops(forward_flops: int) -> int:
    """FLOPs to train on one image, from the forward pass's (`Report.total_flops`): the backward pass computes
    the gradients of both the inputs and the weights, each about one forward's work, so about 3 x forward."""
    return 3 * forward_flops


@dataclass(frozen=True)
class Progress:
    """One report of a run. Accuracies are fractions in [0, 1]."""

    kind: ProgressKind  # "step": every log_every steps; "epoch": after each epoch's evaluation; "done": once
    step: int  # optimiser steps done so far
    epoch: int  # 1-based epoch in progress (for "epoch": the one just finished)
    total_steps: int  # steps the schedule spans (epochs x steps per epoch)
    loss: float | None  # mean training loss since the last step report ("epoch": over the epoch)
    train_acc: float | None  # "epoch" and "done": accuracy on the augmented training batches of the epoch
    test_acc: float | None  # "epoch" and "done": accuracy on the whole test set
    lr: float  # learning rate of the latest step
    images_per_s: float | None  # training images per second over a recent window (evaluation excluded)
    mfu: float | None  # model FLOP utilisation, 0..1: CUDA on a GPU of GPU_PEAK_FLOPS only
    elapsed_s: float  # wall time since the run started, evaluation included
    train_s: float  # training time so far: elapsed_s less evaluation and the time callers spent on reports
    device: str  # "cpu", "cuda:0", "mps"
    steps_per_epoch: int = 0  # optimiser steps in one epoch
    epochs: int = 0  # epochs the run was planned for
    end: EndReason | None = None  # "done" only: why the run ended

    @property
    def epochs_done(self) -> float:
        """Epochs of training so far, fractional: step 290 of 312-step epochs is 0.93."""
        return self.step / self.steps_per_epoch if self.steps_per_epoch else float(self.epoch)


@dataclass(frozen=True)
class TestPredictions:
    """What the final model says about the first few test images."""

    indices: Tensor  # int64 (n,): positions in Dataset.x_test
    predicted: Tensor  # int64 (n,)
    true: Tensor  # int64 (n,)


@dataclass(frozen=True)
class TrainResult:
    model: ResNet  # on the CPU, in eval mode
    history: list[Progress]  # every "epoch" report, the "done" one, at most MAX_STEP_HISTORY "step" reports
    test_accuracy: float  # fraction of the test set classified correctly by the final model
    confusion: Tensor  # int64 (K, K): row = true class, column = predicted class
    test_predictions: TestPredictions
    images_per_s: float  # mean training throughput (evaluation and the first report window excluded)
    device: str
    end: EndReason  # why the run ended

    @property
    def stopped(self) -> bool:
        """True when max_seconds, max_steps or should_stop ended the run before its last epoch."""
        return self.end != "finished"

    @property
    def last(self) -> Progress:
        """The "done" report: where the run ended (step, epoch, time)."""
        return self.history[-1]


class History(Generic[T]):
    """A run's progress reports, bounded: every report that is not a step report ("epoch", "done"), and step
    reports thinned evenly to every 2nd, 4th, ... once there are more than `max_steps`; the latest step report
    is always kept, so a curve ends where the run is. An item's kind is its `kind` attribute (Progress.kind,
    RaceReport.kind); items without one count as step reports."""

    def __init__(self, max_steps: int = MAX_STEP_HISTORY) -> None:
        if max_steps < 1:
            raise ValueError(f"History(max_steps={max_steps}) is not allowed: an integer >= 1")
        self.max_steps = max_steps
        self.stride = 1
        self.n_steps_seen = 0
        self.n_seen = 0
        self.entries: list[tuple[int, int, T]] = []  # (arrival, ordinal among step reports or -1, report)
        self.latest_step: tuple[int, int, T] | None = None  # the newest step report, kept or thinned out

    def add(self, item: T) -> None:
        arrival = self.n_seen
        self.n_seen += 1
        if getattr(item, "kind", "step") != "step":
            self.entries.append((arrival, -1, item))
            return
        ordinal = self.n_steps_seen
        self.n_steps_seen += 1
        self.latest_step = (arrival, ordinal, item)
        if ordinal % self.stride:
            return
        self.entries.append((arrival, ordinal, item))
        if sum(o >= 0 for _, o, _ in self.entries) > self.max_steps:
            self.stride *= 2
            self.entries = [e for e in self.entries if e[1] < 0 or e[1] % self.stride == 0]

    def __len__(self) -> int:
        """Reports added so far, kept or thinned out: a view of the history is current while this is unchanged."""
        return self.n_seen

    def to_list(self) -> list[T]:
        """The kept reports in the order they came, the latest step report among them."""
        entries = self.entries
        if self.latest_step is not None and self.latest_step[1] % self.stride:  # thinned out: put it back
            entries = sorted([*entries, self.latest_step], key=lambda e: e[0])
        return [item for _, _, item in entries]


class _Clock:
    """Wall time since the start, and training time: wall time minus evaluation and the caller's turns."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.paused_s = 0.0
        self.paused_at: float | None = None

    def wall(self) -> float:
        return time.perf_counter() - self.start

    def pause(self) -> None:
        if self.paused_at is None:
            self.paused_at = time.perf_counter()

    def resume(self) -> None:
        if self.paused_at is not None:
            self.paused_s += time.perf_counter() - self.paused_at
            self.paused_at = None

    def read(self) -> tuple[float, float]:
        """(wall seconds, training seconds), from one reading of the clock."""
        now = time.perf_counter()
        running_until = self.paused_at if self.paused_at is not None else now
        return now - self.start, running_until - self.start - self.paused_s


class _Held:
    """Everything a run holds on its device, in one place, so that `finally` can drop it all at once."""

    def __init__(self) -> None:
        self.model: nn.Module | None = None  # the ResNet (on the device)
        self.train_model: nn.Module | None = None  # the same, or its DistributedDataParallel wrapper
        self.optimizer: torch.optim.Optimizer | None = None
        self.tensors: dict[str, Tensor] = {}  # data, statistics and normalisation on the device


@dataclass
class _State:
    """Where a run is: the counters, sums and clock that the loop's steps read and advance."""

    gen: torch.Generator  # draws every shuffle, crop and flip
    gen_device: torch.device
    clock: _Clock = field(default_factory=_Clock)
    history: History[Progress] = field(default_factory=History)
    step: int = 0
    epoch: int = 0
    images: int = 0  # training images over all ranks
    lr: float = 0.0
    end: EndReason | None = None  # set once the run has been cut short
    local_stop: bool = False  # this rank was asked to stop (under torchrun: agreed at the next report)
    perm: Tensor | None = None  # (N,) this epoch's order of the training images
    window_loss: Tensor | None = None  # loss summed over the steps since the last step report (on the device)
    window_steps: int = 0
    epoch_loss: Tensor | None = None  # loss summed over this epoch's steps
    epoch_correct: Tensor | None = None  # training images classified right this epoch
    epoch_steps: int = 0
    last_epoch_loss: float | None = None
    train_acc: float | None = None  # of the latest finished (or cut) epoch
    evaluated: tuple[int, float, Tensor] | None = None  # (step, test accuracy, confusion) of the latest evaluation
    rate_window: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=6))  # (train s, images)
    first_report: tuple[float, int] | None = None  # (train s, images) at the first step report


class Trainer:
    """Trains a ResNet on a Dataset, reporting `Progress` to `on_progress` (minGPT style).

    `model_cfg`'s in_channels and num_classes are set from the data. `should_stop()` is asked before
    every step (under torchrun: agreed by all ranks at the next report), so a stop takes effect
    within one step; the run then evaluates and returns with `end="user"`. Exceptions (a callback's,
    CUDA out-of-memory) propagate, after the trainer has dropped what it held.

    `forward_flops_per_image`: the analysis's `Report.total_flops` for the data's input size, when the
    caller has it (it is only used for model FLOP utilisation); otherwise it is analysed here.
    """

    def __init__(
        self,
        model_cfg: ResNetConfig,
        data: Dataset,
        cfg: TrainConfig,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        forward_flops_per_image: int | None = None,
        history_steps: int = MAX_STEP_HISTORY,
    ) -> None:
        c, _, _ = data.input_size
        model_cfg = model_cfg.with_(in_channels=c, num_classes=data.num_classes)
        if cfg.zero_init_residual and model_cfg.residual:
            model_cfg = model_cfg.with_(zero_init_residual=True)
        self.model_cfg = model_cfg
        if forward_flops_per_image is None:
            from ..analysis import analyze  # fails early, with the field named, for images the model cannot take

            forward_flops_per_image = analyze(model_cfg, input_size=data.input_size, batch_size=1).total_flops
        self.flops_per_image = training_flops(forward_flops_per_image)
        self.data = data
        self.cfg = cfg
        self.on_progress = on_progress
        self.should_stop = should_stop
        self.history_steps = history_steps
        self.rank, self.world_size = rank_and_world()
        self.device = resolve_device(cfg.device, local_rank=local_rank(self.world_size))  # fails if it is not there
        if cfg.batch_size % self.world_size:
            raise ValueError(f"TrainConfig.batch_size={cfg.batch_size} is not allowed: a multiple of the number of "
                             f"processes ({self.world_size})")
        if cfg.batch_size > len(data.y_train):
            raise ValueError(f"TrainConfig.batch_size={cfg.batch_size} is not allowed: at most the training set's "
                             f"size ({len(data.y_train)} images)")
        self.steps_per_epoch = len(data.y_train) // cfg.batch_size  # the incomplete last batch is dropped
        self.total_steps = cfg.epochs * self.steps_per_epoch
        self.warmup_steps = round(cfg.warmup_epochs * self.steps_per_epoch)
        cuda = self.device.type == "cuda"
        self.bf16 = cuda if cfg.bf16 is None else cfg.bf16
        channels_last = cuda if cfg.channels_last is None else cfg.channels_last
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.result: TrainResult | None = None
        self._held: _Held | None = None
        self._peak: float | None = None

    def run(self) -> TrainResult:
        """Train to the end (or a stop), calling on_progress with each report; return the result."""
        gen = self.steps()
        try:
            while True:
                try:
                    progress = next(gen)
                except StopIteration as done:
                    result: TrainResult = done.value
                    return result
                if self.on_progress is not None:
                    self.on_progress(progress)
        finally:
            gen.close()  # a callback that raised: the generator's `finally` frees the device memory

    def steps(self) -> Generator[Progress, None, TrainResult]:
        """The run as a generator of Progress reports; its return value (StopIteration.value) is the result."""
        device = self.device
        cuda = device.type == "cuda"
        if cuda:
            self._peak = peak_flops(torch.cuda.get_device_name(device), bf16=self.bf16,
                                    tf32=torch.backends.cudnn.allow_tf32)
        cudnn_benchmark = torch.backends.cudnn.benchmark
        held = self._held = _Held()
        try:
            if cuda:
                torch.backends.cudnn.benchmark = True  # autotune conv algorithms for the fixed batch shape
            self._hold(held)
            result = yield from self._loop(held)
            self.result = result
            return result
        except torch.OutOfMemoryError as e:
            # The traceback keeps the frames it passed through, and their activations, alive until the
            # caller drops the exception; clearing the finished frames lets empty_cache() return them.
            traceback.clear_frames(e.__traceback__)
            raise
        finally:
            self._held = None
            held.model = held.train_model = held.optimizer = None
            held.tensors.clear()
            del held
            if cuda:
                torch.backends.cudnn.benchmark = cudnn_benchmark
                torch.cuda.empty_cache()

    def _hold(self, held: _Held) -> None:
        """Build the model and optimiser and copy the data onto the device. No local names for what lives
        there: a traceback keeps this frame's locals alive."""
        cfg, device = self.cfg, self.device
        held.model = held.train_model = (
            build_model(self.model_cfg, seed=cfg.seed).to(device).to(memory_format=self.memory_format)
        )
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [device.index] if device.type == "cuda" else None
            held.train_model = DistributedDataParallel(held.model, device_ids=ids)
        fused = True if device.type == "cuda" else None  # one kernel for all parameters on CUDA
        if cfg.optimizer == "adamw":
            held.optimizer = torch.optim.AdamW(held.model.parameters(), lr=cfg.lr, betas=(cfg.momentum, 0.999),
                                               weight_decay=cfg.weight_decay, fused=fused)
        else:
            held.optimizer = torch.optim.SGD(held.model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                             weight_decay=cfg.weight_decay, nesterov=cfg.nesterov, fused=fused)
        t = held.tensors
        t["x_train"] = self.data.x_train.to(device)  # uint8 (N, C, H, W): 150 MB for CIFAR-10
        t["y_train"] = self.data.y_train.to(device)
        t["x_test"] = self.data.x_test.to(device)
        t["y_test"] = self.data.y_test.to(device)
        t["scale"], t["shift"] = normalizer(self.data.mean, self.data.std, device)

    # -- the loop -------------------------------------------------------------------------------

    def _loop(self, held: _Held) -> Generator[Progress, None, TrainResult]:
        cfg = self.cfg
        # Random numbers are drawn on the training device (a CPU draw copied to a GPU would sync each
        # step); every rank draws the same numbers for the whole global batch and keeps its slice.
        gen_device = self.device if self.device.type in ("cpu", "cuda") else torch.device("cpu")
        s = _State(gen=torch.Generator(device=gen_device).manual_seed(cfg.seed), gen_device=gen_device,
                   history=History[Progress](self.history_steps))
        s.lr = self._lr(0)
        for s.epoch in range(1, cfg.epochs + 1):
            self._start_epoch(s)
            for i in range(self.steps_per_epoch):
                if self._should_stop(s):
                    break
                self._step(held, s, i)
                if s.window_steps == cfg.log_every:
                    yield self._report(s, "step")
                    if s.end is not None:  # under torchrun, the ranks agreed on a stop at that report
                        break
            self._end_epoch(s)
            if s.end is not None:
                break
            yield self._report(s, "epoch", self._evaluate(held, s))
        return (yield from self._finish(held, s))

    def _lr(self, step: int) -> float:
        return lr_at(step, total_steps=self.total_steps, base_lr=self.cfg.lr, schedule=self.cfg.schedule,
                     warmup_steps=self.warmup_steps)

    def _should_stop(self, s: _State) -> bool:
        """Whether to stop before the next step, and why (s.end). max_steps is the same step on every rank;
        a time or user stop under torchrun waits for the ranks to agree at the next report."""
        cfg = self.cfg
        if cfg.max_steps is not None and s.step >= cfg.max_steps:
            s.end = "steps"
        elif not s.local_stop:
            if self.should_stop is not None and self.should_stop():
                s.local_stop, s.end = True, "user"
            elif cfg.max_seconds is not None and s.clock.wall() >= cfg.max_seconds:
                s.local_stop, s.end = True, "time"
        if self.world_size > 1 and s.end in ("user", "time"):
            return False  # agreed at the next report, which sees s.local_stop
        return s.end is not None

    def _start_epoch(self, s: _State) -> None:
        n = len(self.data.y_train)
        s.perm = torch.randperm(n, generator=s.gen, device=s.gen_device).to(self.device)  # the same on every rank
        s.window_loss = torch.zeros((), device=self.device)  # sums stay on the device: no sync per step
        s.epoch_loss = torch.zeros((), device=self.device)
        s.epoch_correct = torch.zeros((), dtype=torch.int64, device=self.device)
        s.window_steps = s.epoch_steps = 0

    def _step(self, held: _Held, s: _State, i: int) -> None:
        """One optimiser step on the i-th global batch of this epoch (this rank's slice of it)."""
        cfg, device = self.cfg, self.device
        assert s.perm is not None and s.window_loss is not None and s.epoch_loss is not None
        assert s.epoch_correct is not None
        s.clock.resume()  # after a report or an evaluation
        s.lr = self._lr(s.step)
        global_batch = cfg.batch_size
        local_batch = global_batch // self.world_size
        idx = s.perm[i * global_batch : (i + 1) * global_batch]  # (B,) this step's global batch
        offsets = flip = None
        if cfg.augment:
            offsets = torch.randint(0, 2 * cfg.crop_padding + 1, (global_batch, 2), generator=s.gen,
                                    device=s.gen_device)  # (B, 2): crop corner (row, column) in the padded image
            flip = torch.rand(global_batch, generator=s.gen, device=s.gen_device) < 0.5  # (B,)
            if not cfg.flip:
                flip = torch.zeros_like(flip)
        mine = slice(self.rank * local_batch, (self.rank + 1) * local_batch)  # this rank's shard of the batch
        loss, correct = self._update(
            held, idx[mine],
            None if offsets is None else offsets[mine].to(device),
            None if flip is None else flip[mine].to(device),
            lr=s.lr,
        )
        s.window_loss += loss
        s.epoch_loss += loss
        s.epoch_correct += correct
        s.step += 1
        s.epoch_steps += 1
        s.window_steps += 1
        s.images += global_batch

    def _update(self, held: _Held, idx: Tensor, offsets: Tensor | None, flip: Tensor | None, *,
                lr: float) -> tuple[Tensor, Tensor]:
        """Forward, backward and the optimiser's update on the images `idx`; returns (loss, correct) as device
        tensors (no sync)."""
        t, cfg = held.tensors, self.cfg
        assert held.train_model is not None and held.optimizer is not None and held.model is not None
        x = t["x_train"][idx]  # uint8 (b, C, H, W), gathered on the device
        y = t["y_train"][idx]  # (b,)
        if offsets is not None and flip is not None:
            x = augment_batch(x, padding=cfg.crop_padding, offsets=offsets, flip=flip)
        x = x.contiguous(memory_format=self.memory_format)  # layout first, on 1-byte values
        x = x.float() * t["scale"] + t["shift"]  # (b, C, H, W) float32, normalised, layout kept
        for group in held.optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits = held.train_model(x)  # (b, K)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
        held.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(held.model.parameters(), cfg.clip_grad_norm, foreach=True)
        held.optimizer.step()
        return loss.detach(), (logits.detach().argmax(1) == y).sum()

    def _end_epoch(self, s: _State) -> None:
        """The epoch's mean loss and training accuracy (under torchrun: also where the ranks agree on a stop
        asked for since the last report)."""
        if not s.epoch_steps:
            return
        assert s.epoch_loss is not None and s.epoch_correct is not None
        s.last_epoch_loss, any_stop = all_mean(s.epoch_loss / s.epoch_steps, s.local_stop, self.world_size,
                                               self.device)
        s.train_acc = all_sum(s.epoch_correct, self.world_size) / (s.epoch_steps * self.cfg.batch_size)
        if any_stop and s.end is None:
            s.end = "user"

    def _throughput(self, s: _State) -> tuple[float | None, float | None]:
        """(images/s, MFU) over the last few reports; over the whole run until there are two."""
        if len(s.rate_window) >= 2:
            (t0, i0), (t1, i1) = s.rate_window[0], s.rate_window[-1]
            ips = (i1 - i0) / max(t1 - t0, 1e-9)
        elif s.images:
            ips = s.images / max(s.clock.read()[1], 1e-9)
        else:
            return None, None
        return ips, self._mfu(ips)

    def _mfu(self, images_per_s: float) -> float | None:
        return self.flops_per_image * images_per_s / (self._peak * self.world_size) if self._peak else None

    def _report(self, s: _State, kind: ProgressKind, evaluated: float | None = None) -> Progress:
        """A report of where the run is, added to its history. A step report reads (and resets) the window's
        mean loss: the one device sync every log_every steps; under torchrun the ranks agree on a stop there."""
        loss: float | None
        if kind == "step":
            assert s.window_loss is not None
            loss, any_stop = all_mean(s.window_loss / s.window_steps, s.local_stop, self.world_size, self.device)
            s.window_loss.zero_()
            s.window_steps = 0
            if any_stop and s.end is None:
                s.end = "user"
            now = s.clock.read()[1]
            s.rate_window.append((now, s.images))
            s.first_report = s.first_report or (now, s.images)
        else:
            loss = s.last_epoch_loss
        ips, mfu = self._throughput(s)
        wall_s, train_s = s.clock.read()
        progress = Progress(
            kind=kind, step=s.step, epoch=s.epoch, total_steps=self.total_steps, loss=loss,
            train_acc=None if kind == "step" else s.train_acc, test_acc=evaluated, lr=s.lr, images_per_s=ips,
            mfu=mfu, elapsed_s=wall_s, train_s=train_s, device=str(self.device),
            steps_per_epoch=self.steps_per_epoch, epochs=self.cfg.epochs,
        )
        s.history.add(progress)
        s.clock.pause()  # the caller's time with a report is not training time; the next step resumes it
        return progress

    def _evaluate(self, held: _Held, s: _State) -> float:
        """Test accuracy of the model as it is now (kept with its confusion matrix for the result)."""
        s.clock.pause()
        accuracy, confusion = self._test(held)
        s.evaluated = (s.step, accuracy, confusion)
        return accuracy

    def _finish(self, held: _Held, s: _State) -> Generator[Progress, None, TrainResult]:
        """Evaluate the model as it ended (unless the last epoch's evaluation saw it), report "done", return."""
        s.clock.pause()
        if s.evaluated is None or s.evaluated[0] != s.step:  # stopped mid-epoch
            self._evaluate(held, s)
        assert s.evaluated is not None and held.model is not None
        _, test_acc, confusion = s.evaluated
        wall_s, train_s = s.clock.read()
        if s.first_report is not None and s.images > s.first_report[1] and train_s > s.first_report[0]:
            mean_ips = (s.images - s.first_report[1]) / (train_s - s.first_report[0])  # steady state
        else:
            mean_ips = s.images / max(train_s, 1e-9)
        end: EndReason = s.end or "finished"
        predictions = self._predictions(held)
        cpu_model = held.model.to("cpu").to(memory_format=torch.contiguous_format).eval()
        assert isinstance(cpu_model, ResNet)
        done = Progress(
            kind="done", step=s.step, epoch=s.epoch, total_steps=self.total_steps, loss=s.last_epoch_loss,
            train_acc=s.train_acc, test_acc=test_acc, lr=s.lr, images_per_s=mean_ips, mfu=self._mfu(mean_ips),
            elapsed_s=wall_s, train_s=train_s, device=str(self.device), steps_per_epoch=self.steps_per_epoch,
            epochs=self.cfg.epochs, end=end,
        )
        s.history.add(done)
        yield done
        return TrainResult(model=cpu_model, history=s.history.to_list(), test_accuracy=test_acc, confusion=confusion,
                           test_predictions=predictions, images_per_s=mean_ips, device=str(self.device), end=end)

    # -- evaluation -----------------------------------------------------------------------------

    def _logits(self, model: nn.Module, x: Tensor, t: dict[str, Tensor]) -> Tensor:
        """Eval-time logits (b, K) of uint8 images x (b, C, H, W): normalised like training, no augmentation."""
        x = x.contiguous(memory_format=self.memory_format).float() * t["scale"] + t["shift"]
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return model(x).float()

    @torch.no_grad()
    def _test(self, held: _Held) -> tuple[float, Tensor]:
        """(test accuracy, confusion (K, K) on the CPU) of the current model, in eval mode.

        Under torchrun every rank evaluates the whole test set with the same weights and, after the
        broadcast below, the same BN statistics, so all ranks get the same numbers with no reduction.
        """
        model, t = held.model, held.tensors
        assert model is not None
        broadcast_buffers(model, self.world_size)
        k = self.data.num_classes
        model.eval()
        confusion = torch.zeros(k * k, dtype=torch.int64, device=self.device)
        x_test, y_test = t["x_test"], t["y_test"]
        for start in range(0, len(y_test), self.cfg.eval_batch_size):
            x = x_test[start : start + self.cfg.eval_batch_size]  # uint8 (b, C, H, W)
            y = y_test[start : start + self.cfg.eval_batch_size]
            pred = self._logits(model, x, t).argmax(1)  # (b,)
            confusion += torch.bincount(y * k + pred, minlength=k * k)  # index true * K + predicted
        model.train()
        confusion_cpu = confusion.view(k, k).cpu()  # row = true class, column = predicted
        return float(confusion_cpu.diagonal().sum()) / max(1, len(y_test)), confusion_cpu

    @torch.no_grad()
    def _predictions(self, held: _Held) -> TestPredictions:
        assert held.model is not None
        held.model.eval()
        n = min(N_SHOWN_PREDICTIONS, len(self.data.y_test))
        logits = self._logits(held.model, held.tensors["x_test"][:n], held.tensors)
        return TestPredictions(indices=torch.arange(n), predicted=logits.argmax(1).cpu(),
                               true=self.data.y_test[:n].clone())
