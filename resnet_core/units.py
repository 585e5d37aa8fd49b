"""Human-readable numbers: SI prefixes for counts, binary prefixes for bytes."""

from __future__ import annotations


def fmt_count(n: float, digits: int = 2) -> str:
    """4_089_184_256 -> '4.09 G'; the unit (MACs, FLOPs, params) follows in the caller's text."""
    for value, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= value:
            return f"{n / value:.{digits}f} {prefix}"
    return f"{n:.0f} "


def fmt_bytes(n: float) -> str:
    """Bytes with binary prefixes: 102_760_448 -> '98.0 MiB'."""
    for value, prefix in ((1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if abs(n) >= value:
            return f"{n / value:.1f} {prefix}"
    return f"{n:.0f} B"
