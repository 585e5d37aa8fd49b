"""Human-readable numbers: SI prefixes for counts, binary prefixes for bytes."""

from __future__ import annotations


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
