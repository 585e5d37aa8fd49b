"""Command line.

    python -m resnet_core summary resnet50 --input 3x224x224 [--batch 8] [--csv out.csv]
    python -m resnet_core train --preset resnet18_cifar --data cifar10 --epochs 30 [--save model.safetensors]
    torchrun --nproc_per_node 2 -m resnet_core train ...      # DistributedDataParallel, one process per GPU
    python -m resnet_core fetch --weights resnet18 resnet50 --data cifar10 mnist   # prepare a machine once
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .analysis import Level, Report, analyze
from .config import PRESETS
from .tables import LEVELS, to_csv
from .units import FLOPS_RULE, fmt_bytes, fmt_count, parse_input

if TYPE_CHECKING:
    from .train import TrainConfig


def _input_size(text: str) -> tuple[int, int, int]:
    """`--input`: argparse shows an ArgumentTypeError's own words."""
    try:
        return parse_input(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--input: {e}") from None


def format_summary(report: Report, level: Level = "layer") -> str:
    df = report.to_dataframe(level)
    shown = df.drop(columns=[c for c in ("flops", "output_bytes") if c in df.columns])
    table = shown.to_string(index=False, na_rep="")
    c, h, w = report.input_size
    m = report.memory
    lines = [
        table,
        "",
        f"input {c}x{h}x{w}, batch {report.batch_size}",
        f"parameters:        {report.total_params:,} ({fmt_count(report.total_params, 'parameters')})",
        f"MACs per image:    {report.total_macs:,} ({fmt_count(report.total_macs, 'MACs')}, multiply-accumulates "
        "of convs and linear layers)",
        f"FLOPs per image:   {report.total_flops:,} ({fmt_count(report.total_flops, 'FLOPs')}; {FLOPS_RULE})",
        f"torchinfo Mult-Adds (batch): {report.torchinfo_mult_adds:,} (also counts BatchNorm parameters and "
        "the linear bias)",
        f"weighted layers:   {report.weighted_layers}",
        f"receptive field:   {report.receptive_field} px (jump {report.jump})",
        f"activations (batch, forward outputs): {fmt_bytes(report.activation_bytes)}",
        f"training memory (batch, SGD+momentum, fp32): {fmt_bytes(m.total_bytes)} = params "
        f"{fmt_bytes(m.param_bytes)} + grads {fmt_bytes(m.grad_bytes)} + optimizer "
        f"{fmt_bytes(m.optimizer_bytes)} + saved activations {fmt_bytes(m.saved_activation_bytes)}",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m resnet_core", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("summary", help="layer table and totals of a preset")
    s.add_argument("preset", choices=sorted(PRESETS), metavar="PRESET", help=f"one of: {', '.join(PRESETS)}")
    s.add_argument("--input", type=_input_size, default=(3, 224, 224), help="CxHxW (default 3x224x224)")
    s.add_argument("--batch", type=int, default=1)
    s.add_argument("--level", choices=LEVELS, default="layer")
    s.add_argument("--csv", help="also write the layer table to this CSV file")
    add_train_parser(sub)
    add_fetch_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "train":
        return train_main(args)
    if args.command == "fetch":
        return fetch_main(args)

    try:
        report = analyze(args.preset, input_size=args.input, batch_size=args.batch)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_summary(report, args.level))
    if args.csv:
        Path(args.csv).write_bytes(to_csv(report.to_dataframe(args.level)))
        print(f"wrote {args.csv}")
    return 0


# ----------------------------------------------------------------------------------------------
# train


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    from .data import DATASETS

    t = sub.add_parser(
        "train",
        help="train a preset on a dataset; prints progress lines, then how the run ended, its accuracy and images/s",
        description="Train a preset. Recipe: resnet_core.train.default_recipe (the published SGD recipe for "
        "--preset resnet18_cifar on CIFAR-10; otherwise the teaching recipe, AdamW with zero-initialised residual "
        "branches, which every preset learns with); the options below override it. Prints a progress line at "
        "least every 20 steps. Under torchrun every process trains its shard of each batch.",
    )
    t.add_argument("--preset", choices=sorted(PRESETS), default="resnet20", metavar="PRESET",
                   help="a preset of `summary` (default resnet20); classes and channels follow the data")
    t.add_argument("--data", choices=DATASETS, default="builtin", help="default builtin: no download")
    t.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), help="default auto: CUDA, MPS, then CPU")
    t.add_argument("--seed", type=int)
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int, help="global batch (split across torchrun processes)")
    t.add_argument("--lr", type=float, help="peak learning rate")
    t.add_argument("--max-seconds", type=float, help="stop after this wall time, then evaluate")
    t.add_argument("--max-steps", type=int, help="stop after this many optimiser steps, then evaluate")
    t.add_argument("--data-dir", type=Path, help="where the dataset files are (default $RESNET_DATA_DIR or ./data)")
    t.add_argument("--save", type=Path, metavar="PATH", help="write the trained state dict (safetensors)")
    t.add_argument("--train-size", type=int, help="builtin only: training images (default 10000)")
    t.add_argument("--test-size", type=int, help="builtin only: test images (default 2000)")
    t.add_argument("--print-digest", action="store_true",
                   help="every process prints a SHA-256 of its final weights (to check runs and ranks agree)")


def _download_printer(what: str = "") -> Callable[[int, int | None], None]:
    """A download progress callback that prints to stderr every 2 seconds and at the end."""
    last = [0.0]

    def show(done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - last[0] > 2 or (total is not None and done == total):
            last[0] = now
            of = f" of {total / 1e6:.1f}" if total else ""
            print(f"downloading{what}: {done / 1e6:.1f}{of} MB", file=sys.stderr, flush=True)

    return show


def train_main(args: argparse.Namespace) -> int:
    from contextlib import nullcontext

    from .train import dist_from_env, process_group

    dist = dist_from_env()
    try:
        with process_group(dist, args.device or "auto") if dist else nullcontext():
            return _train(args, rank=dist.rank if dist else 0, world=dist.world_size if dist else 1)
    except KeyboardInterrupt:
        return 130


def progress_every(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """Steps between progress lines: at most 20, and at least 5 lines in a run (of max_steps, or all epochs)."""
    run_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        run_steps = min(run_steps, cfg.max_steps)
    return max(1, min(20, run_steps // 5))


def _train(args: argparse.Namespace, *, rank: int, world: int) -> int:
    from .config import resolve
    from .data import DatasetUnavailable, builtin, default_data_dir, load_dataset
    from .export import to_safetensors, write_atomically
    from .train import Progress, Trainer, default_recipe, state_digest
    from .train.verdict import describe_end, explain_accuracy

    def say(*parts: object, flush: bool = False) -> None:
        if rank == 0:  # under torchrun, one process speaks
            print(*parts, flush=flush)

    try:
        if args.data != "builtin" and (args.train_size or args.test_size):
            raise ValueError("--train-size and --test-size are for --data builtin only")
        recipe = default_recipe(args.preset, args.data)
        overrides = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
                     "device": args.device, "max_seconds": args.max_seconds, "max_steps": args.max_steps}
        cfg = recipe.with_(**{k: v for k, v in overrides.items() if v is not None})
        if args.data == "builtin":
            data = builtin(n_train=args.train_size or 10_000, n_test=args.test_size or 2_000)
        else:
            import torch.distributed

            root = args.data_dir or default_data_dir()
            if rank != 0:
                torch.distributed.barrier()  # rank 0 downloads; the others then read its files
            data = load_dataset(args.data, root=root, download=rank == 0,
                                on_progress=_download_printer() if rank == 0 else None)
            if rank == 0 and world > 1:
                torch.distributed.barrier()

        model_cfg = resolve(args.preset)
        steps_per_epoch = len(data.y_train) // cfg.batch_size
        cfg = cfg.with_(log_every=progress_every(cfg, steps_per_epoch))

        def on_progress(p: Progress) -> None:
            if p.kind == "step":
                say(f"step {p.step}/{p.total_steps}  epoch {p.epoch}/{p.epochs}  loss {p.loss:.2f}  lr {p.lr:.4g}  "
                    f"{p.images_per_s or 0:.0f} img/s", flush=True)
            elif p.kind == "epoch":
                say(f"epoch {p.epoch}/{p.epochs}  loss {p.loss:.4f}  train acc {100 * (p.train_acc or 0):.1f}%  "
                    f"test acc {100 * (p.test_acc or 0):.1f}%  img/s {p.images_per_s or 0:.0f}  "
                    f"elapsed {p.elapsed_s:.1f}s" + (f"  MFU {100 * p.mfu:.1f}%" if p.mfu is not None else ""),
                    flush=True)

        trainer = Trainer(model_cfg, data, cfg, on_progress=on_progress)  # it analyses the model for its FLOPs
    except (ValueError, DatasetUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    c, h, w = data.input_size
    say(f"training {args.preset} on {data.name} ({len(data.y_train)} train / {len(data.y_test)} test images, "
        f"{c}x{h}x{w}, {data.num_classes} classes), {world} process{'es' if world > 1 else ''}: {cfg.epochs} epochs "
        f"of {trainer.steps_per_epoch} steps, batch {cfg.batch_size}, {cfg.optimizer} lr {cfg.lr:.4g}", flush=True)
    result = trainer.run()
    say(f"{describe_end(result.last, max_seconds=cfg.max_seconds)}", flush=True)
    if (why := explain_accuracy(result, data.num_classes)) is not None:
        say(why, flush=True)
    if args.print_digest:
        print(f"weights sha256 (rank {rank}): {state_digest(result.model)}", flush=True)
    if args.save and rank == 0:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(args.save, to_safetensors(result.model))
        say(f"wrote {args.save}")
    say(f"final test accuracy: {100 * result.test_accuracy:.1f}%")
    say(f"images/s: {result.images_per_s:.0f}", flush=True)
    return 0


# ----------------------------------------------------------------------------------------------
# fetch


def add_fetch_parser(sub: argparse._SubParsersAction) -> None:
    from .config import TORCHVISION_PRESETS
    from .data import DATASETS

    f = sub.add_parser(
        "fetch",
        help="download ImageNet weights and datasets once, so that the app needs no network afterwards",
        description="Download, check against the published checksums and put in place what the app reads: "
        "ImageNet weights where it looks for them (torch hub's cache) and datasets in its data folder. What is "
        "there already is kept as it is. A failed download leaves nothing behind.",
    )
    f.add_argument("--weights", nargs="+", choices=TORCHVISION_PRESETS, default=[], metavar="PRESET",
                   help=f"ImageNet weights of these presets (of: {', '.join(TORCHVISION_PRESETS)})")
    files = [d for d in DATASETS if d != "builtin"]  # the built-in shapes are drawn in memory: nothing to fetch
    f.add_argument("--data", nargs="+", choices=files, default=[], metavar="DATASET",
                   help=f"these datasets (of: {', '.join(files)})")
    f.add_argument("--data-dir", type=Path,
                   help="where the datasets go (default: where the app reads them, $RESNET_DATA_DIR or data/)")
    f.add_argument("--weights-dir", type=Path,
                   help="where the weights go (default torch hub's cache, $TORCH_HOME/hub/checkpoints)")
    f.add_argument("--mirror", metavar="URL",
                   help="download from this folder URL instead of the publishers' sites: it holds the weights files "
                   "by name and the dataset files under their paths in the data folder (another machine's, served "
                   "over HTTP)")


def fetch_main(args: argparse.Namespace) -> int:
    from .data import DatasetUnavailable, dataset_present, default_data_dir, fetch_dataset
    from .weights import PretrainedUnavailable, checkpoint_present, fetch_checkpoint, weights_dir

    if not args.weights and not args.data:
        print("error: nothing to fetch: name --weights PRESET ... and/or --data DATASET ...", file=sys.stderr)
        return 2
    data_dir = args.data_dir or default_data_dir()
    w_dir = args.weights_dir or weights_dir()
    fetched = 0
    what = ""
    try:
        for preset in args.weights:
            what = f"the {preset} weights"
            if checkpoint_present(preset, root=w_dir):
                print(f"{preset} weights: already in {w_dir}")
                continue
            path = fetch_checkpoint(preset, root=w_dir, mirror=args.mirror,
                                    on_progress=_download_printer(f" {preset} weights"))
            print(f"{preset} weights: downloaded and checked, {path}", flush=True)
            fetched += 1
        for name in args.data:
            what = name
            if dataset_present(name, root=data_dir):
                print(f"{name}: already in {data_dir}")
                continue
            fetch_dataset(name, root=data_dir, mirror=args.mirror, on_progress=_download_printer(f" {name}"))
            print(f"{name}: downloaded, checked and extracted into {data_dir}", flush=True)
            fetched += 1
    except (DatasetUnavailable, PretrainedUnavailable) as e:
        reason = " ".join(str(e.reason).split())  # one line, whatever the cause's own text holds
        end = "" if reason.endswith((".", "?")) else "."
        print(f"error: could not fetch {what}: {reason}{end} Nothing partial was kept; run the command again.",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    if not fetched:
        print("Nothing to do: everything asked for is already here.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
