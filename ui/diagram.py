"""A block-level diagram of a ResNet in Graphviz DOT: blocks, sums, and shortcuts drawn by their kind.

Each block is   in -> [F(x)] -> (+) -> out,  with the shortcut drawn from `in` straight to (+):
solid green for the identity, dashed orange for a projection, dotted blue for zero-padding.
A collapsed stage is one node that says how many blocks it holds.
"""

from __future__ import annotations

from collections.abc import Collection
from html import escape

from resnet_core import Report
from resnet_core.plan import BlockPlan

SHORTCUT_STYLE = {
    # Shortcuts drawn thicker than the main path: a one-pixel dotted line (option A) vanished at screen size.
    "identity": ('color="#16a34a" penwidth=2', "identity"),
    "projection": ('color="#ea580c" style=dashed penwidth=2', "projection 1x1"),
    "zero_pad": ('color="#2563eb" style=dotted penwidth=3', "zero-pad (A)"),
}


def _shape(shape: tuple[int, ...]) -> str:
    return "×".join(str(d) for d in shape[1:])


def _branch_text(b: BlockPlan) -> str:
    parts = []
    for c in b.convs:
        s = f"{c.kernel}x{c.kernel}"
        if c.stride > 1:
            s += f"/{c.stride}"
        g = f" g{c.groups}" if c.groups > 1 else ""
        parts.append(f"{s}, {c.out_channels}{g}")
    return " · ".join(parts)


def _node(name: str, title: str, lines: list[str], fill: str) -> str:
    label = f"<<b>{escape(title)}</b>" + "".join(f"<br/>{escape(t)}" for t in lines) + ">"
    return f'  "{name}" [label={label} fillcolor="{fill}"];'


def default_expanded(report: Report, max_blocks: int = 6) -> list[str]:
    """Stages short enough to draw block by block (ResNet-152's 8- and 36-block stages start collapsed)."""
    return [f"layer{i + 1}" for i, n in enumerate(report.config.blocks) if n <= max_blocks]


def block_diagram(report: Report, expanded: Collection[str]) -> str:
    p = report.plan
    out_shape = {}  # block path -> its output shape, read from the analysis rows
    for r in report.rows:
        if r.block is not None and r.branch != "shortcut":
            out_shape[f"{r.stage}.{r.block}"] = r.output_shape
    stem_rows = [r for r in report.rows if r.stage == "stem"]

    lines = [
        "digraph resnet {",
        '  rankdir=TB; nodesep=0.25; ranksep=0.22; bgcolor="transparent";',
        '  node [shape=box style="rounded,filled" fontname="Helvetica" fontsize=10 color="#94a3b8"];',
        '  edge [fontname="Helvetica" fontsize=9 color="#475569"];',
    ]
    c, h, w = report.input_size
    lines.append(_node("input", "input", [f"{c}×{h}×{w}"], "#f1f5f9"))
    stem_bits = [f"conv {p.stem_conv.kernel}x{p.stem_conv.kernel}/{p.stem_conv.stride}, {p.stem_conv.out_channels}"]
    if p.stem_pool:
        stem_bits.append("max-pool 3x3/2")
    lines.append(_node("stem", "stem", stem_bits, "#e2e8f0"))
    lines.append(f'  "input" -> "stem" [label=" {c}×{h}×{w}"];')
    prev, prev_shape = "stem", stem_rows[-1].output_shape

    for s, stage in enumerate(p.stages):
        name = f"layer{s + 1}"
        if name not in expanded:
            last = stage[-1]
            kinds = {b.shortcut for b in stage}
            summary = ", ".join(f"{sum(b.shortcut == k for b in stage)} {SHORTCUT_STYLE.get(k, ('', k))[1]}"
                                for k in ("projection", "zero_pad", "identity", "none") if k in kinds)
            title = f"{name}: {len(stage)} × {type_name(last)}"
            lines.append(_node(name, title, [_branch_text(last), f"shortcuts: {summary}", "(collapsed)"], "#fef3c7"))
            lines.append(f'  "{prev}" -> "{name}" [label=" {_shape(prev_shape)}"];')
            prev, prev_shape = name, out_shape[last.path]
            continue
        for b in stage:
            node, add = b.path, f"{b.path}.add"
            lines.append(_node(node, f"{b.path} · {type_name(b)}", [_branch_text(b)], "#dbeafe"))
            lines.append(f'  "{prev}" -> "{node}" [label=" {_shape(prev_shape)}"];')
            if b.shortcut == "none":  # plain network: no sum, the block's output goes straight on
                prev, prev_shape = node, out_shape[b.path]
                continue
            lines.append(f'  "{add}" [label="+" shape=circle width=0.28 fixedsize=true fillcolor="#ffffff"];')
            lines.append(f'  "{node}" -> "{add}" [label=" F(x)"];')
            style, text = SHORTCUT_STYLE[b.shortcut]
            lines.append(f'  "{prev}" -> "{add}" [{style} label=" {text}" fontcolor="#475569"];')
            prev, prev_shape = add, out_shape[b.path]

    head = "BN-ReLU, " if p.final_bn else ""
    lines.append(_node("head", "head", [f"{head}global avg-pool", f"fc {p.features} → {report.config.num_classes}"],
                       "#e2e8f0"))
    lines.append(f'  "{prev}" -> "head" [label=" {_shape(prev_shape)}"];')
    lines.append(_node("output", "logits", [str(report.config.num_classes)], "#f1f5f9"))
    lines.append('  "head" -> "output";')
    lines.append("}")
    return "\n".join(lines)


def type_name(b: BlockPlan) -> str:
    return ("pre-act " if b.preact else "") + ("basic" if b.kind == "basic" else "bottleneck")


def _layer_text(kind: str, kernel: int | None, stride: int | None, shape: tuple[int, ...]) -> tuple[str, str]:
    """A layer node's title and line: ("conv 1x1/2", "128×28×28")."""
    short = {"Conv2d": "conv", "BatchNorm2d": "BN", "ReLU": "ReLU", "Add": "+", "ZeroPadShortcut": "zero-pad"}
    title = short.get(kind, kind)
    if kernel is not None and kind == "Conv2d":
        title += f" {kernel}x{kernel}" + (f"/{stride}" if stride and stride > 1 else "")
    elif kind == "ZeroPadShortcut" and stride and stride > 1:
        title += f" /{stride}"
    return title, _shape(shape)


def layer_diagram(report: Report, block: str, marked: Collection[str] = ()) -> str:
    """One block (`"layer2.0"`) drawn layer by layer: the residual branch down the middle, the shortcut beside it,
    the sum and what follows it. Rows whose key (`resnet_core.compare.row_keys`) is in `marked` are drawn red."""
    from resnet_core.compare import row_keys

    keys = row_keys(report.rows)
    index = [i for i, r in enumerate(report.rows) if r.block is not None and f"{r.stage}.{r.block}" == block]
    if not index:
        raise ValueError(f"{block!r} is not a block of this model")
    b = next(p for p in report.plan.blocks if p.path == block)
    before = next(r for r in reversed(report.rows[: index[0]]) if r.branch != "shortcut")
    lines = [
        "digraph block {",
        '  rankdir=TB; nodesep=0.3; ranksep=0.16; bgcolor="transparent";',
        '  node [shape=box style="rounded,filled" fontname="Helvetica" fontsize=10 color="#94a3b8"];',
        '  edge [fontname="Helvetica" fontsize=9 color="#475569" arrowsize=0.6];',
        _node("in", f"{block} · {type_name(b)}", [f"in {_shape(before.output_shape)}"], "#f1f5f9"),
    ]
    prev, shortcut_from, shortcut_prev = "in", "in", None
    for i in index:
        r, key = report.rows[i], keys[i]
        title, shape = _layer_text(r.kind, r.kernel, r.stride, r.output_shape)
        fill = "#fee2e2" if key in marked else "#dbeafe" if r.kind == "Conv2d" else "#f8fafc"
        node = _node(key, title, [shape], fill)
        if key in marked:
            node = node.replace("];", ' color="#dc2626" penwidth=2];')
        lines.append(node)
        if r.branch == "shortcut":
            style = SHORTCUT_STYLE[b.shortcut][0]
            lines.append(f'  "{shortcut_prev or shortcut_from}" -> "{key}" [{style}];')
            shortcut_prev = key
            continue
        lines.append(f'  "{prev}" -> "{key}";')
        if r.kind == "Add":
            if shortcut_prev is not None:
                lines.append(f'  "{shortcut_prev}" -> "{key}" [{SHORTCUT_STYLE[b.shortcut][0]}];')
            else:
                style, text = SHORTCUT_STYLE["identity"]
                lines.append(f'  "{shortcut_from}" -> "{key}" [{style} label=" {text}" fontcolor="#475569"];')
        elif b.preact and b.projection is not None and r.kind == "ReLU" and shortcut_from == "in":
            shortcut_from = key  # a pre-activation block projects its activated input ([He2016] Fig. 1b)
        prev = key
    lines.append(_node("out", "out", [_shape(report.rows[index[-1]].output_shape)], "#f1f5f9"))
    lines.append(f'  "{prev}" -> "out";')
    lines.append("}")
    return "\n".join(lines)
