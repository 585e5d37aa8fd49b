"""Training throughput and time to accuracy: our trainer vs a "seed-style" DataLoader loop.

1. Throughput, same model, data and device, images per second of training (forward, backward, SGD):
   - ours: `resnet_core.train.Trainer`: the dataset is one uint8 tensor on the device; each step
     gathers a shuffled batch there, crops and flips it in one batched gather, normalises, and steps
     (on CUDA: bf16 autocast, channels_last, cudnn autotuning, the loss read every `log_every` steps).
   - seed-style: what most CIFAR scripts do (e.g. kuangliu/pytorch-cifar): a torch Dataset of uint8
     HWC arrays turned into PIL images, a DataLoader with per-sample torchvision transforms
     (RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize), `--workers` worker
     processes, fp32, NCHW, batch 128, SGD, and `loss.item()` plus the correct count every step.
   Both time `--steps` steps after `--warmup` warm-up steps, on the built-in 32x32 dataset.
2. Time to accuracy: ResNet-20 with RECIPES["builtin"] on `builtin()` (10,000 training images),
   evaluated on the 2,000 test images after every epoch; reported: when test accuracy first reached
   90%, in training seconds (evaluation excluded) and wall seconds (evaluation included).

    python bench/bench_train.py                      # everything, on the default device
    python bench/bench_train.py --device cuda --steps 50 --warmup 10
    python bench/bench_train.py --skip-throughput --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, no install needed

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torchvision import transforms

from bench.machine import describe
from resnet_core import PRESETS, analyze, build_model
from resnet_core.data import Dataset, builtin
from resnet_core.train import RECIPES, TrainConfig, Trainer, peak_flops, resolve_device, training_flops


@dataclass(frozen=True)
class Row:
    model: str
    batch: int
    variant: str  # "ours" or "seed-style"
    setting: str  # precision and layout, in words
    images_per_s: float
    mfu: float | None


class ArrayDataset(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
    """CIFAR10-style: HWC uint8 arrays in memory, a PIL image per sample, then the per-sample transforms."""

    def __init__(self, x: np.ndarray, y: np.ndarray, transform: Callable[..., torch.Tensor]) -> None:
        self.x, self.y, self.transform = x, y, transform

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.x[i])), int(self.y[i])


def seed_style(model_name: str, data: Dataset, *, batch: int, steps: int, warmup: int, device: torch.device,
               workers: int) -> float:
    """Images/s of the DataLoader loop over `steps` steps after `warmup`."""
    model = build_model(PRESETS[model_name].with_(num_classes=data.num_classes), seed=0).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    tf = transforms.Compose([
        transforms.RandomCrop(32, padding=4),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(data.mean, data.std),
    ])
    x_hwc = data.x_train.permute(0, 2, 3, 1).numpy()  # (N, 32, 32, 3), as torchvision's CIFAR10 keeps it
    loader = torch.utils.data.DataLoader(
        ArrayDataset(x_hwc, data.y_train.numpy(), tf), batch_size=batch, shuffle=True, drop_last=True,
        num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=False,
    )
    correct = 0
    start = 0.0
    for i, (x, y) in enumerate(loader):
        if i == warmup:
            sync(device)
            start = time.perf_counter()
        if i == warmup + steps:
            break
        x, y = x.to(device), y.to(device)
        out = model(x)
        loss = F.cross_entropy(out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        _ = loss.item()  # the usual running loss and accuracy: a sync every step
        correct += int(out.argmax(1).eq(y).sum().item())
    sync(device)
    return steps * batch / (time.perf_counter() - start)


def ours(model_name: str, data: Dataset, *, batch: int, steps: int, warmup: int, device: torch.device,
         channels_last: bool | None = None) -> float:
    """Images/s of our trainer: its steady-state throughput counts from the first report (after `warmup` steps)."""
    cfg = TrainConfig(epochs=1, batch_size=batch, lr=0.1, augment=True, flip=True, device=str(device),
                      max_steps=warmup + steps, log_every=warmup, channels_last=channels_last)
    return Trainer(PRESETS[model_name], data, cfg).run().images_per_s


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def throughput(args: argparse.Namespace, device: torch.device) -> list[Row]:
    gpu = device.type == "cuda"
    preferred = 512 if gpu else 128
    batches = sorted({128, preferred})
    data = builtin(n_train=(args.warmup + args.steps + 1) * max(batches), n_test=512, seed=0)
    peak_bf16 = peak_flops(torch.cuda.get_device_name(device), bf16=True, tf32=True) if gpu else None
    peak_fp32 = (
        peak_flops(torch.cuda.get_device_name(device), bf16=False, tf32=torch.backends.cudnn.allow_tf32)
        if gpu
        else None
    )
    rows = []
    for model_name in ("resnet18_cifar", "resnet20"):
        flops = training_flops(analyze(PRESETS[model_name].with_(num_classes=10), input_size=(3, 32, 32)).total_flops)
        for batch in batches:
            kw = {"batch": batch, "steps": args.steps, "warmup": args.warmup, "device": device}
            ips = ours(model_name, data, **kw)
            setting = "bf16 autocast, channels_last" if gpu else "fp32, NCHW"
            rows.append(Row(model_name, batch, "ours", setting, ips, flops * ips / peak_bf16 if peak_bf16 else None))
            print(f"  {model_name} batch {batch} ours: {ips:.0f} img/s", file=sys.stderr, flush=True)
            if not gpu:
                ips = ours(model_name, data, channels_last=True, **kw)
                rows.append(Row(model_name, batch, "ours", "fp32, channels_last", ips, None))
                print(f"  {model_name} batch {batch} ours channels_last: {ips:.0f} img/s", file=sys.stderr, flush=True)
            if batch == 128:
                ips = seed_style(model_name, data, workers=args.workers, **kw)
                rows.append(Row(model_name, batch, "seed-style", f"fp32, NCHW, {args.workers} workers", ips,
                                flops * ips / peak_fp32 if peak_fp32 else None))
                print(f"  {model_name} batch {batch} seed-style: {ips:.0f} img/s", file=sys.stderr, flush=True)
    return rows


def print_throughput(rows: list[Row]) -> None:
    print("| model | batch | loop | setting | img/s | vs seed-style @128 | MFU |")
    print("|---|---:|---|---|---:|---:|---:|")
    for r in rows:
        base = next(b for b in rows if b.model == r.model and b.variant == "seed-style")
        mfu = f"{100 * r.mfu:.1f}%" if r.mfu is not None else "n/a"
        print(f"| {r.model} | {r.batch} | {r.variant} | {r.setting} | {r.images_per_s:,.0f} | "
              f"{r.images_per_s / base.images_per_s:.2f}x | {mfu} |")


def time_to_accuracy(args: argparse.Namespace, device: torch.device) -> None:
    t = time.perf_counter()
    data = builtin()
    gen_s = time.perf_counter() - t
    cfg = RECIPES["builtin"].with_(device=str(device))
    print(f"Built-in dataset: {len(data.y_train):,} train / {len(data.y_test):,} test images, generated in "
          f"{gen_s:.1f} s (not counted below). Recipe RECIPES['builtin']: {cfg.epochs} epochs, batch "
          f"{cfg.batch_size}, lr {cfg.lr} cosine, warm-up {cfg.warmup_epochs} epochs, momentum {cfg.momentum}, "
          f"weight decay {cfg.weight_decay}, augment {cfg.augment}, channels_last {cfg.channels_last}.")
    print()
    print("| seed | epoch | test acc | training s | wall s | img/s |")
    print("|---:|---:|---:|---:|---:|---:|")
    summary = []
    for seed in args.seeds:
        result = Trainer(PRESETS["resnet20"], data, cfg.with_(seed=seed)).run()
        epochs = [p for p in result.history if p.kind == "epoch"]
        for p in epochs:
            print(f"| {seed} | {p.epoch} | {100 * (p.test_acc or 0):.1f}% | {p.train_s:.1f} | {p.elapsed_s:.1f} | "
                  f"{p.images_per_s or 0:.0f} |", flush=True)
        first = next((p for p in epochs if (p.test_acc or 0) >= 0.9), None)
        summary.append((seed, first, result.test_accuracy))
    print()
    print("| seed | first >= 90% at | training s | wall s | final test acc |")
    print("|---:|---|---:|---:|---:|")
    for seed, first, final in summary:
        if first is None:
            print(f"| {seed} | never | - | - | {100 * final:.1f}% |")
        else:
            print(f"| {seed} | epoch {first.epoch} ({first.step * cfg.batch_size:,} images) | {first.train_s:.1f} | "
                  f"{first.elapsed_s:.1f} | {100 * final:.1f}% |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per throughput case")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before them")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the seed-style loop")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 2])
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-accuracy", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(describe())
    print(f"Run: device {device}, torch threads {torch.get_num_threads()}, torchvision {torchvision.__version__}.")
    print()
    t = time.perf_counter()
    if not args.skip_throughput:
        print(f"Throughput: {args.steps} timed steps after {args.warmup} warm-up steps.")
        print()
        print_throughput(throughput(args, device))
        print()
    if not args.skip_accuracy:
        time_to_accuracy(args, device)
        print()
    print(f"Whole run: {time.perf_counter() - t:.0f} s; load average at the end {os.getloadavg()[0]:.1f}.")


if __name__ == "__main__":
    main()
