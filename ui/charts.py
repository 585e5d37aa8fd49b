"""Every Plotly figure of the app: where a report's parameters and MACs sit, how the feature map evolves with depth,
what the feature-maps page draws from one image (channel tiles, residual anatomy), two models compared, a run's
live curves and confusion matrix, and the residual lab's signal, race and analyses. Pages only lay them out."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from resnet_core import Report
from resnet_core.activations import BlockAnatomy
from resnet_core.lab import RaceReport, SignalProfile
from resnet_core.residuals import Erf, Landscape, LesionStudy, Responses, ShatteredGradients, path_lengths
from resnet_core.train import Progress

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


def image_map(z: np.ndarray, *, zmax: float = 1.0, height: int, title: str | None = None) -> go.Figure:
    """A 2-D array drawn as an image (row 0 at the top, square pixels, no axes), NaN cells left blank.

    A bare `go.Heatmap`: `px.imshow` builds the same trace with about 30 ms more of Python per figure, and
    float32 halves the bytes sent to the browser (Plotly ships a numpy array as a typed array)."""
    fig = go.Figure(
        go.Heatmap(
            z=np.asarray(z, dtype=np.float32),
            zmin=0.0,
            zmax=zmax,
            colorscale="Viridis",
            showscale=False,
            hovertemplate="x %{x}, y %{y}: %{z:.2f}<extra></extra>",
        )
    )
    fig.update_layout(height=height, margin=dict(t=40 if title else 10, b=10, l=10, r=10), title=title)
    fig.update_xaxes(visible=False, constrain="domain")
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x", constrain="domain")
    return fig


def legend_over_panel_titles(fig: go.Figure, height: int) -> None:
    """Side-by-side panels with titles: the legend in a row at the figure's top, clear of the titles under it (a
    legend placed in the panels' coordinates overlaps them at some heights)."""
    fig.update_layout(height=height + 30, margin=dict(t=70, b=10, l=10, r=10),
                      legend=dict(orientation="h", yref="container", y=1, yanchor="top", x=0))


def anatomy_bars(anatomy: Sequence[BlockAnatomy]) -> go.Figure:
    """Per block, mean |x| of the shortcut beside mean |F(x)| of the residual branch, on one image."""
    paths = [a.path for a in anatomy]
    fig = go.Figure()
    fig.add_bar(x=paths, y=[a.shortcut_abs_mean for a in anatomy], name="|x| (shortcut)", marker_color="#16a34a")
    fig.add_bar(x=paths, y=[a.residual_abs_mean for a in anatomy], name="|F(x)| (residual branch)",
                marker_color="#ea580c")
    fig.update_layout(barmode="group", height=300, margin=dict(t=10, b=10, l=10, r=10), yaxis_title="mean |value|",
                      legend=dict(orientation="h", y=1.1))
    return fig


def compare_stages(stages: pd.DataFrame, a_label: str, b_label: str) -> go.Figure:
    """Model A and model B stage by stage (`resnet_core.compare.stage_frame`): parameters, MACs per image and the
    activations written for the batch, A and B side by side on each stage's own shade."""
    titles = ("Parameters per stage", "MACs per image, per stage", "Activation memory per stage (batch)")
    fig = make_subplots(rows=1, cols=3, subplot_titles=titles, horizontal_spacing=0.06)
    fields = (("params", "parameters"), ("macs", "MACs"), ("output_bytes", "bytes"))
    for col, (field, unit) in enumerate(fields, start=1):
        for side, label, colour in (("A", a_label, "#94a3b8"), ("B", b_label, "#0ea5e9")):
            fig.add_bar(
                x=stages["stage"],
                y=stages[f"{side} {field}"],
                name=f"{side}: {label}",
                legendgroup=side,
                showlegend=col == 1,
                marker_color=colour,
                customdata=stages[f"{side} output_shape"],
                hovertemplate=f"{side} %{{x}}: %{{y:,}} {unit}<br>output %{{customdata}}<extra></extra>",
                row=1,
                col=col,
            )
    # Each stage on its own shade, in the colours of the single-model charts (one layout update: add_vrect per
    # shape costs milliseconds each, and this figure is redrawn whenever B changes).
    axis = ("x", "x2", "x3")
    shades = [dict(type="rect", xref=axis[col], yref=f"{axis[col].replace('x', 'y')} domain", x0=i - 0.5,
                   x1=i + 0.5, y0=0, y1=1, fillcolor=STAGE_COLOURS[i % len(STAGE_COLOURS)], opacity=0.08,
                   line_width=0, layer="below")
              for col in range(3) for i in range(len(stages))]
    fig.update_layout(barmode="group", height=340, margin=dict(t=40, b=10, l=10, r=10), shapes=shades,
                      legend=dict(orientation="h", y=-0.12, x=0))
    fig.update_yaxes(rangemode="tozero")
    return fig


# --- why residuals work, part 2 ---------------------------------------------------------------------------

PAIR_COLOURS = {"plain": "#ef4444", "residual": "#0ea5e9"}


def _pair_colour(name: str) -> str:
    return PAIR_COLOURS["plain" if name.startswith("plain") else "residual"]


def responses_chart(responses: dict[str, Responses]) -> go.Figure:
    """[He2015] Fig. 7: the std of each block's branch output, in forward order, for both twins."""
    fig = go.Figure()
    for name, r in responses.items():
        fig.add_scatter(x=list(range(1, len(r.std) + 1)), y=list(r.std), mode="lines+markers", name=name,
                        line_color=_pair_colour(name), customdata=list(r.blocks),
                        hovertemplate="%{customdata}: std %{y:.3f}<extra>" + name + "</extra>")
    fig.update_layout(height=340, margin=dict(t=30, b=10, l=10, r=10), xaxis_title="block (forward order)",
                      yaxis_title="std of the branch output", legend=dict(orientation="h", y=1.12))
    fig.update_yaxes(rangemode="tozero")
    return fig


def lesion_chart(studies: dict[str, LesionStudy], chance: float) -> go.Figure:
    """[Veit2016] Fig. 3 and 5: test error with each block deleted, and with k random blocks deleted."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("One block deleted", "k random blocks deleted"))
    for name, s in studies.items():
        colour = _pair_colour(name)
        fig.add_bar(x=list(s.blocks), y=list(s.single), name=name, marker_color=colour, legendgroup=name,
                    marker_pattern_shape=["/" if d else "" for d in s.downsampling],
                    hovertemplate="without %{x}: %{y:.1%} error<extra>" + name + "</extra>", row=1, col=1)
        fig.add_scatter(x=list(s.k), y=list(s.k_error), name=name, mode="lines+markers", line_color=colour,
                        legendgroup=name, showlegend=False,
                        error_y=dict(type="data", array=list(s.k_spread), visible=True),
                        hovertemplate="%{x} deleted: %{y:.1%} error<extra>" + name + "</extra>", row=1, col=2)
        for col in (1, 2):
            fig.add_hline(y=s.error, line_dash="dot", line_color=colour, row=1, col=col)  # type: ignore[arg-type]
    for col in (1, 2):
        fig.add_hline(y=chance, line_dash="dash", line_color="#64748b", row=1, col=col,  # type: ignore[arg-type]
                      annotation_text="chance", annotation_position="bottom right")
    fig.update_layout(barmode="group")
    legend_over_panel_titles(fig, 360)
    fig.update_yaxes(tickformat=".0%", range=[0, 1])
    fig.update_xaxes(title_text="hatched: a downsampling block", row=1, col=1)
    fig.update_xaxes(title_text="blocks deleted", row=1, col=2)
    return fig


def path_length_chart(n: int) -> go.Figure:
    """[Veit2016] Fig. 6a: how many paths through n blocks pass k of their branches."""
    counts = path_lengths(n)
    fig = go.Figure(go.Bar(x=list(range(n + 1)), y=list(counts), marker_color="#0ea5e9",
                           hovertemplate="%{y:,} paths of length %{x}<extra></extra>"))
    fig.update_layout(height=260, margin=dict(t=30, b=10, l=10, r=10), xaxis_title="path length (branches passed)",
                      yaxis_title="paths", title=f"The 2^{n} paths through {n} blocks")
    return fig


def landscape_line_chart(scapes: dict[str, Landscape]) -> go.Figure:
    """[Li2018] Fig. 2: the loss along one filter-normalised direction through the trained weights (at 0)."""
    fig = go.Figure()
    for name, s in scapes.items():
        fig.add_scatter(x=list(s.line), y=list(s.line_loss), mode="lines", name=name, line_color=_pair_colour(name),
                        hovertemplate="α %{x:.2f}: loss %{y:.3f}<extra>" + name + "</extra>")
    fig.update_layout(height=320, margin=dict(t=30, b=10, l=10, r=10), xaxis_title="α (along the direction)",
                      yaxis_title="test loss", legend=dict(orientation="h", y=1.12))
    return fig


def landscape_surfaces(scapes: dict[str, Landscape], *, three_d: bool) -> go.Figure:
    """[Li2018] Fig. 5: each twin's loss surface around its trained weights, on the same colour scale."""
    names = list(scapes)
    # On log10 of the loss, as Li et al. draw their contours: the basin would vanish under the far rim's losses.
    logs = {n: np.log10(np.maximum(np.array(s.surface, dtype=float), 1e-6)) for n, s in scapes.items()}
    top = max(float(z.max()) for z in logs.values())
    low = min(float(z.min()) for z in logs.values())
    specs = [[{"type": "surface" if three_d else "xy"} for _ in names]]
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, specs=specs)
    for col, name in enumerate(names, start=1):
        s = scapes[name]
        z = logs[name]
        bar = dict(title="log10 loss")
        if three_d:
            fig.add_surface(z=z, x=list(s.axis), y=list(s.axis), cmin=low, cmax=top, colorscale="Viridis",
                            showscale=col == len(names), colorbar=bar, row=1, col=col)
        else:
            fig.add_contour(z=z, x=list(s.axis), y=list(s.axis), zmin=low, zmax=top, colorscale="Viridis",
                            showscale=col == len(names), colorbar=bar, ncontours=20,
                            contours=dict(coloring="heatmap", showlabels=True),
                            customdata=np.array(s.surface, dtype=float),
                            hovertemplate="(%{x:.2f}, %{y:.2f}): loss %{customdata:.3f}<extra>" + name + "</extra>",
                            row=1, col=col)
    fig.update_layout(height=420 if three_d else 380, margin=dict(t=40, b=10, l=10, r=10))
    return fig


# Magma with its first colour #000004 raised to #0c0820: drawn in Chromium, heatmap cells of #000004 (and of colours
# within a few % of it) came out in another colour (pink under Streamlit's theme), so a map's zero read as warm.
ERF_COLORS = ["#0c0820", *plotly.colors.sequential.Magma[1:]]


def erf_chart(erfs: dict[str, Erf]) -> go.Figure:
    """[Luo2016] Fig. 3: the effective receptive field at initialisation and trained, with the theoretical field
    (dashed, clipped to the input) and the square holding 95% of the gradient (solid) drawn over it."""
    cols = [(name, when) for name in erfs for when in ("at init", "trained")]
    fig = make_subplots(rows=1, cols=len(cols), subplot_titles=[f"{n}, {w}" for n, w in cols],
                        horizontal_spacing=0.03)
    for col, (name, when) in enumerate(cols, start=1):
        e = erfs[name]
        z = (e.at_init if when == "at init" else e.trained).numpy()
        extent = e.extent_init if when == "at init" else e.extent_trained
        fig.add_heatmap(z=z / z.max() if z.max() > 0 else z, zmin=0, zmax=1, colorscale=ERF_COLORS, showscale=False,
                        hovertemplate="(%{x}, %{y}): %{z:.3f}<extra></extra>", row=1, col=col)
        h, w = z.shape
        cy, cx = h // 2, w // 2
        for side, dash in ((e.theoretical, "dash"), (extent, "solid")):
            r = side / 2
            fig.add_shape(type="rect", x0=max(-0.5, cx - r), x1=min(w - 0.5, cx + r), y0=max(-0.5, cy - r),
                          y1=min(h - 0.5, cy + r), line=dict(color="#22d3ee", dash=dash, width=1.5), row=1, col=col)
        fig.update_yaxes(autorange="reversed", scaleanchor=f"x{col if col > 1 else ''}", showticklabels=False,
                         row=1, col=col)
        fig.update_xaxes(showticklabels=False, row=1, col=col)
    fig.update_layout(height=300, margin=dict(t=40, b=10, l=10, r=10))
    return fig


def shattered_chart(results: dict[str, ShatteredGradients]) -> go.Figure:
    """[Balduzzi2017] Fig. 3, on images: the correlation of the input gradients of two inputs k steps apart on a line
    between two test images, for both twins, at initialisation (dotted) and trained (solid)."""
    fig = go.Figure()
    for name, r in results.items():
        for when, values, dash in (("at init", r.at_init, "dot"), ("trained", r.trained, "solid")):
            fig.add_scatter(x=list(r.lags), y=list(values), mode="lines", name=f"{name}, {when}",
                            line=dict(color=_pair_colour(name), dash=dash),
                            hovertemplate="%{x} steps apart: %{y:.2f}<extra>" + f"{name}, {when}</extra>")
    fig.add_hline(y=0, line_color="#94a3b8", line_width=1)
    fig.update_layout(height=340, margin=dict(t=30, b=10, l=10, r=10), legend=dict(orientation="h", y=1.15),
                      xaxis_title="steps apart on the line (of " + str(next(iter(results.values())).points - 1) + ")",
                      yaxis_title="correlation of the gradients")
    fig.update_yaxes(range=[-0.1, 1.0])
    return fig


# --- training -------------------------------------------------------------------------------------------

def smooth(values: list[float], window: int = 5) -> list[float]:
    """Centred moving average over `window` reports (fewer at the ends): no lag, so a loss that falls fast is
    drawn where it is, not where it was (an EMA of 0.9 over reports lags by ten of them)."""
    half = window // 2
    out = []
    for i in range(len(values)):
        part = values[max(0, i - half) : i + half + 1]
        out.append(sum(part) / len(part))
    return out


def side_by_side(titles: tuple[str, ...], *, gap: float = 0.2) -> go.Figure:
    """Empty panels in one row, trace axes "x"/"y", "x2"/"y2", ... (what `make_subplots(rows=1, cols=n,
    subplot_titles=titles)` lays out, built as a plain layout: 1.7 ms instead of 8.5 ms, which counts in a
    figure redrawn twice a second next to a training thread)."""
    n = len(titles)
    width = (1 - gap / n * (n - 1)) / n
    layout: dict[str, object] = {"annotations": []}
    for i, title in enumerate(titles):
        left = i * (width + gap / n)
        suffix = "" if i == 0 else str(i + 1)
        layout[f"xaxis{suffix}"] = {"domain": [left, left + width], "anchor": f"y{suffix}"}
        layout[f"yaxis{suffix}"] = {"domain": [0, 1], "anchor": f"x{suffix}"}
        layout["annotations"].append({  # type: ignore[attr-defined]
            "text": title, "x": left + width / 2, "y": 1, "xref": "paper", "yref": "paper",
            "xanchor": "center", "yanchor": "bottom", "showarrow": False, "font": {"size": 16},
        })
    return go.Figure(layout=layout)


def accuracy_points(progress: list[Progress]) -> list[Progress]:
    """The reports with a test accuracy: each epoch's, and the final one where the run ended mid-epoch."""
    points = [p for p in progress if p.kind == "epoch"]
    done = [p for p in progress if p.kind == "done" and p.test_acc is not None]
    if done and (not points or done[-1].step != points[-1].step):
        points.append(done[-1])
    return points


def curves(progress: list[Progress], earlier: list[tuple[str, list[Progress]]] = ()) -> go.Figure:  # type: ignore[assignment]
    """The live curves of a run: loss per step (each report as a dot, a centred 5-report average as the line),
    test and train accuracy against epochs (fractional, so a run cut short mid-epoch shows where it ended),
    learning rate per step. The session's earlier runs are drawn in grey beneath: loss and test accuracy."""
    fig = side_by_side(("Training loss", "Accuracy", "Learning rate"))
    for name, past in earlier:
        past_steps = [p for p in past if p.kind == "step" and p.loss is not None]
        past_acc = accuracy_points(past)
        fig.add_scatter(x=[p.step for p in past_steps], y=smooth([float(p.loss or 0.0) for p in past_steps]),
                        mode="lines", line=dict(color="#94a3b8", width=1.5), name=f"{name}", legendgroup=name,
                        opacity=0.8)
        fig.add_scatter(x=[p.epochs_done for p in past_acc], y=[p.test_acc for p in past_acc], mode="lines+markers",
                        line=dict(color="#94a3b8", width=1.5, dash="dot"), name=f"{name}: test", legendgroup=name,
                        showlegend=False, xaxis="x2", yaxis="y2", hovertemplate="%{y:.1%}")
    steps = [p for p in progress if p.kind == "step" and p.loss is not None]
    if steps:
        xs = [p.step for p in steps]
        fig.add_scatter(x=xs, y=[p.loss for p in steps], mode="markers", marker=dict(color="#fdba74", size=4),
                        name="loss (each report)")
        fig.add_scatter(x=xs, y=smooth([float(p.loss or 0.0) for p in steps]), mode="lines",
                        line=dict(color="#c2410c", width=2), name="loss (5-report average)")
        fig.add_scatter(x=xs, y=[p.lr for p in steps], mode="lines", line=dict(color="#0ea5e9"), name="lr",
                        xaxis="x3", yaxis="y3", showlegend=False)
    points = accuracy_points(progress)
    if points:
        ex = [p.epochs_done for p in points]
        fig.add_scatter(x=ex, y=[p.train_acc for p in points], mode="lines+markers", name="train accuracy",
                        line=dict(color="#10b981"), xaxis="x2", yaxis="y2", hovertemplate="%{y:.1%}")
        fig.add_scatter(x=ex, y=[p.test_acc for p in points], mode="lines+markers", name="test accuracy",
                        line=dict(color="#6366f1"), xaxis="x2", yaxis="y2", hovertemplate="%{y:.1%}")
    fig.update_layout(
        xaxis_title_text="step", xaxis2_title_text="epochs", xaxis3_title_text="step",
        yaxis2_range=[0, 1], yaxis2_tickformat=".0%", xaxis2_rangemode="tozero",
        height=330, margin=dict(t=40, b=10, l=10, r=10), legend=dict(orientation="h", y=-0.25),
    )
    return fig


def confusion_chart(confusion: np.ndarray, classes: Sequence[str]) -> go.Figure:
    """The test set's confusion matrix: rows the true class, columns the predicted one, each cell its images."""
    fig = go.Figure(go.Heatmap(z=confusion, x=list(classes), y=list(classes), colorscale="Blues", texttemplate="%{z}",
                               hovertemplate="true %{y}, predicted %{x}: %{z} images<extra></extra>",
                               colorbar=dict(title="images")))
    fig.update_layout(height=420, margin=dict(t=30, b=10, l=10, r=10), title="Confusion matrix (test set)",
                      xaxis_title="predicted", yaxis_title="true", yaxis_autorange="reversed")
    return fig


# --- the residual lab -------------------------------------------------------------------------------------

LAB_COLOURS = {"plain": "#ea580c", "residual": "#2563eb"}


def signal_chart(profiles: dict[str, SignalProfile], depth: int) -> go.Figure:
    """Per conv layer at initialisation: the RMS of its output (forward) and of the loss gradient there (backward),
    on log axes, for plain-`depth` and ResNet-`depth`."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Forward: RMS of each conv's output",
                                                        "Backward: RMS of the loss gradient at each conv"))
    for name, prof in profiles.items():
        label = f"plain-{depth}" if name == "plain" else f"ResNet-{depth}"
        x = list(range(1, len(prof.layers) + 1))
        for col, ys in ((1, prof.forward_rms), (2, prof.grad_rms)):
            fig.add_scatter(x=x, y=ys, customdata=prof.layers, mode="lines", name=label, legendgroup=name,
                            showlegend=col == 1, line=dict(color=LAB_COLOURS[name]),
                            hovertemplate="%{customdata}: %{y:.3g}<extra>" + label + "</extra>", row=1, col=col)
    fig.update_yaxes(type="log")
    fig.update_xaxes(title_text="conv layer (input → output)")
    legend_over_panel_titles(fig, 340)
    return fig


def race_chart(run: Sequence[str], reports: Sequence[RaceReport], classes: int) -> tuple[go.Figure, dict[str, float]]:
    """Each racer's smoothed training loss per step and test accuracy per epoch, with chance drawn (ln `classes`,
    1 / `classes`); and each racer's smoothed loss at its last report (what the verdict reads)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Training loss (smoothed)", "Test accuracy per epoch"))
    palette = ["#fdba74", "#93c5fd", "#ea580c", "#2563eb"]
    final: dict[str, float] = {}
    for i, name in enumerate(run):
        mine = [r.progress for r in reports if r.racer == name]
        steps = [p for p in mine if p.kind == "step" and p.loss is not None]
        epochs = [p for p in mine if p.kind == "epoch"]
        line = dict(color=palette[(i + (4 - len(run))) % 4], dash="dot" if name.startswith("plain") else "solid")
        if steps:
            losses = smooth([float(p.loss or 0.0) for p in steps])
            final[name] = losses[-1]
            fig.add_scatter(x=[p.step for p in steps], y=losses, mode="lines" if len(steps) > 1 else "markers",
                            name=name, legendgroup=name, line=line, row=1, col=1)
        if epochs:
            fig.add_scatter(x=[p.epoch for p in epochs], y=[p.test_acc for p in epochs], mode="lines+markers",
                            name=name, legendgroup=name, showlegend=False, line=line, row=1, col=2)
    fig.add_hline(y=math.log(classes), line_dash="dash", line_color="#64748b", row=1, col=1,  # type: ignore[arg-type]
                  annotation_text=f"chance: ln {classes}", annotation_position="top right")
    fig.add_hline(y=1 / classes, line_dash="dash", line_color="#64748b", row=1, col=2,  # type: ignore[arg-type]
                  annotation_text="chance", annotation_position="bottom right")
    fig.update_yaxes(range=[0, 1], tickformat=".0%", row=1, col=2)
    fig.update_xaxes(title_text="step", row=1, col=1)
    fig.update_xaxes(title_text="epoch", row=1, col=2)
    legend_over_panel_titles(fig, 340)
    return fig, final
