"""Plotly figures of a report: where the parameters and MACs sit, and how the feature map evolves with depth."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from resnet_core import Report

STAGE_COLOURS = ("#64748b", "#0ea5e9", "#10b981", "#f59e0b", "#ef4444", "#8b5cf6", "#ec4899", "#334155")


def per_stage(report: Report) -> go.Figure:
    df = report.to_dataframe("stage")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Parameters per stage", "MACs per image, per stage"))
    colours = [STAGE_COLOURS[i % len(STAGE_COLOURS)] for i in range(len(df))]
    for col, (field, unit) in enumerate((("params", "parameters"), ("macs", "MACs")), start=1):
        total = df[field].sum()
        fig.add_bar(
            x=df["stage"],
            y=df[field],
            marker_color=colours,
            text=[f"{v / total:.0%}" if total else "" for v in df[field]],
            textposition="outside",
            hovertemplate="%{x}: %{y:,} " + unit + "<extra></extra>",
            row=1,
            col=col,
        )
    fig.update_layout(showlegend=False, height=340, margin=dict(t=40, b=10, l=10, r=10))
    fig.update_yaxes(rangemode="tozero")
    return fig


def along_depth(report: Report) -> go.Figure:
    """Spatial size, channels and receptive field after every weighted layer of the main path."""
    rows = [r for r in report.rows if r.kind == "Conv2d" and r.branch != "shortcut"]
    x = list(range(1, len(rows) + 1))
    names = [r.path for r in rows]
    fig = make_subplots(
        rows=3,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.06,
        subplot_titles=("Spatial size (height of the feature map, px)", "Channels", "Receptive field (px)"),
    )
    series = (
        ([r.output_shape[2] for r in rows], "height"),
        ([r.output_shape[1] for r in rows], "channels"),
        ([r.receptive_field for r in rows], "receptive field"),
    )
    for i, (ys, label) in enumerate(series, start=1):
        fig.add_scatter(
            x=x,
            y=ys,
            customdata=names,
            mode="lines+markers",
            line_shape="hv",
            marker_size=4,
            hovertemplate="%{customdata}<br>" + label + ": %{y:,}<extra></extra>",
            row=i,
            col=1,
        )
    side = report.input_size[1]
    fig.add_hline(y=side, line_dash="dot", annotation_text=f"input height {side}px", row=3, col=1)
    fig.update_xaxes(title_text="conv layer along the main path", row=3, col=1)
    fig.update_layout(showlegend=False, height=620, margin=dict(t=40, b=10, l=10, r=10))
    return fig
