"""Numbers as people read and write them: SI prefixes for counts, binary prefixes for bytes, and the two
forms a person types, an input size (`3x224x224`) and a list of whole numbers (`3,4,6,3`)."""

from __future__ import annotations

# The FLOPs rule, stated here once: a multiply-accumulate (MAC) is two floating-point operations, a multiply and an
# add. The ResNet paper's "FLOPs" (Table 1) and torchvision's "GFLOPS" are multiply-adds, our MACs.
FLOPS_PER_MAC = 2
FLOPS_RULE = "FLOPs = 2 × MACs (each multiply-accumulate is a multiply and an add)"


def fmt_count(n: float, unit: str = "", digits: int = 2) -> str:
    """A count with an SI prefix and its unit: (4_089_184_256, "MACs") -> '4.09 GMACs' (a unit symbol takes the
    prefix), (23_528_522, "parameters") -> '23.53 M parameters' (a word stands apart), (512, "FLOPs") -> '512 FLOPs'."""
    word = unit[:1].islower()
    for value, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= value:
            return f"{n / value:.{digits}f} {prefix}{' ' if word and unit else ''}{unit}".rstrip()
    return f"{n:.0f} {unit}".rstrip()


def fmt_bytes(n: float) -> str:
    """Bytes with binary prefixes: 102_760_448 -> '98.0 MiB'."""
    for value, prefix in ((1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if abs(n) >= value:
            return f"{n / value:.1f} {prefix}"
    return f"{n:.0f} B"


def parse_ints(text: str) -> tuple[int, ...]:
    """'3, 4, 6, 3' -> (3, 4, 6, 3). ValueError, in words, for anything that is not whole numbers and commas."""
    try:
        values = tuple(int(p) for p in text.replace(" ", "").split(",") if p)
    except ValueError:
        raise ValueError(f"{text!r} is not whole numbers separated by commas, e.g. 3,4,6,3") from None
    if not values:
        raise ValueError("give at least one number, e.g. 3,4,6,3")
    return values


def parse_input(text: str) -> tuple[int, int, int]:
    """'3x224x224' -> (3, 224, 224); a single side, '224', means 3 channels: (3, 224, 224)."""
    parts = text.strip().lower().replace("×", "x").split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if len(dims) == 1:
        return (3, dims[0], dims[0])
    if len(dims) != 3:
        raise ValueError(f"{text!r} is not an input size CxHxW, e.g. 3x224x224")
    return (dims[0], dims[1], dims[2])


def format_input(size: tuple[int, int, int]) -> str:
    return "x".join(str(d) for d in size)
