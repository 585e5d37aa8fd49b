"""Command line: `python -m resnet_core summary resnet50 --input 3x224x224 [--batch 8] [--csv out.csv]`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .analysis import Level, Report, analyze
from .config import PRESETS
from .tables import LEVELS
from .units import fmt_bytes, fmt_count


def parse_input(text: str) -> tuple[int, int, int]:
    """'3x224x224' -> (3, 224, 224); '224' -> (3, 224, 224)."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--input {text!r}: expected CxHxW, e.g. 3x224x224") from None
    if len(dims) == 1:
        return (3, dims[0], dims[0])
    if len(dims) == 3:
        return (dims[0], dims[1], dims[2])
    raise argparse.ArgumentTypeError(f"--input {text!r}: expected CxHxW, e.g. 3x224x224")


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
        f"parameters:        {report.total_params:,} ({fmt_count(report.total_params)})",
        f"MACs per image:    {report.total_macs:,} ({fmt_count(report.total_macs)}MACs, multiply-accumulates "
        "of convs and linear layers)",
        f"FLOPs per image:   {report.total_flops:,} ({fmt_count(report.total_flops)}FLOPs = 2 x MACs)",
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
    parser = argparse.ArgumentParser(prog="python -m resnet_core", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("summary", help="layer table and totals of a preset")
    s.add_argument("preset", choices=sorted(PRESETS), metavar="PRESET", help=f"one of: {', '.join(PRESETS)}")
    s.add_argument("--input", type=parse_input, default=(3, 224, 224), help="CxHxW (default 3x224x224)")
    s.add_argument("--batch", type=int, default=1)
    s.add_argument("--level", choices=LEVELS, default="layer")
    s.add_argument("--csv", help="also write the layer table to this CSV file")
    args = parser.parse_args(argv)

    try:
        report = analyze(args.preset, input_size=args.input, batch_size=args.batch)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_summary(report, args.level))
    if args.csv:
        report.to_dataframe(args.level).to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
