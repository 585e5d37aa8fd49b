"""The "Why residuals work" page in a real browser: both signal-at-init charts render with resnet_core's numbers,
and a race starts, grows live and stops from the page.

Expected numbers come from `resnet_core.lab` on the page's own batch, and from the racers trained here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from resnet_core.config import ResNetConfig
from resnet_core.data import load_dataset
from resnet_core.lab import SignalProfile, compare_at_init, main_path_convs, scaled, twins
from resnet_core.model import build_model
from resnet_core.train import RACE_RECIPES, Trainer
from ui.lab import _batch

from .helpers import (
    expect,
    one_torch_thread,
    plotly_figure,
    plotly_trace,
    plotly_values,
    screenshot,
    stop_on_failure,
    subplot_titles,
    wait_for_app,
    wait_for_points,
)

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

DEFAULT_DEPTH = 56  # what the page shows first
DEPTH = 20  # the race runs the quickest twins
WIDTH, WIDTH_LABEL = 0.25, "0.25× (16·0.25 channels first)"
EPOCHS = 3  # the page's default
SIGNAL_TITLES = ["Forward: RMS of each conv's output", "Backward: RMS of the loss gradient at each conv"]
RACE_TITLE = "Test accuracy per epoch"  # a subplot title only the race chart has
# The race's recipe (ui/lab.py `start_race`), to train the racers' first steps here (the time limit changes nothing).
RACE_CFG = RACE_RECIPES["builtin"].with_(epochs=EPOCHS)
LOSS_REL = 1e-3  # see the race's check below
SMOOTH_HALF = 2  # ui.charts.smooth: a centred average of 5 reports, so its first point averages the first 3
# A loaded CPU can take many seconds per measurement and per report; every wait is on content, with this much room.
RUN_MS = 90_000


def _signal_chart(page: Page) -> Locator:
    return page.get_by_test_id("stPlotlyChart").filter(has_text=SIGNAL_TITLES[0])


def _layers(depth: int) -> list[str]:
    """The main-path convs of `depth`'s twins, input to output: one point each on the signal charts."""
    plain, res = (build_model(cfg) for cfg in twins(depth))
    names = [n for n, _ in main_path_convs(plain)]
    assert names == [n for n, _ in main_path_convs(res)]
    return names


def _check_signal_chart(chart: Locator, depth: int, expected: dict[str, SignalProfile] | None = None) -> None:
    """Both panels hold both nets, one point per conv; with `expected`, the values are resnet_core's."""
    figure = plotly_figure(chart)
    assert subplot_titles(figure) == SIGNAL_TITLES
    layers = _layers(depth)
    for key, name in (("plain", f"plain-{depth}"), ("residual", f"ResNet-{depth}")):
        for xaxis, field in (("x", "forward_rms"), ("x2", "grad_rms")):
            trace = plotly_trace(figure, name, xaxis=xaxis)
            assert plotly_values(trace["customdata"]) == layers, (name, xaxis)
            assert plotly_values(trace["x"]) == list(range(1, len(layers) + 1))
            ys = plotly_values(trace["y"])
            assert all(y > 0 for y in ys), (name, xaxis)
            if expected is not None:
                assert ys == pytest.approx(getattr(expected[key], field), rel=1e-4), (name, xaxis)


def _first_losses(racers: dict[str, str], n: int = SMOOTH_HALF + 1) -> dict[str, list[float]]:
    """Each racer's first `n` reported training losses, trained here with the race's recipe."""
    data = load_dataset("builtin", download=False)
    plain, res = twins(DEPTH)
    configs = {racers["plain"]: scaled(plain, WIDTH), racers["residual"]: scaled(res, WIDTH)}

    def first(cfg: ResNetConfig) -> list[float]:
        steps = Trainer(cfg, data, RACE_CFG).steps()
        losses: list[float] = []
        try:
            for report in steps:
                if report.kind == "step" and report.loss is not None:
                    losses.append(report.loss)
                if len(losses) == n:
                    return losses
        finally:
            steps.close()
        return losses

    with one_torch_thread():
        return {name: first(cfg) for name, cfg in configs.items()}


def test_signal_charts_and_a_race_from_the_page(page: Page, app_server: str, tmp_path: Path) -> None:
    page.goto(f"{app_server}/residual_lab")
    wait_for_app(page)

    # Both signal charts (forward and backward, one figure) for the default depth: both nets, one point per conv.
    chart = _signal_chart(page)
    expect(chart.locator(".main-svg").first).to_be_visible(timeout=RUN_MS)
    expect(chart).to_contain_text(f"plain-{DEFAULT_DEPTH}")
    _check_signal_chart(chart, DEFAULT_DEPTH)
    expect(page.get_by_test_id("stException")).to_have_count(0)
    screenshot(page, tmp_path / "1_signal.png")

    # Another depth: the charts follow, with the numbers resnet_core measures on the page's batch.
    depth = page.get_by_role("radiogroup", name="Depth", exact=True).get_by_role("radio", name=f"{DEPTH} (CIFAR)")
    depth.click()
    expect(depth).to_have_attribute("aria-checked", "true")
    # While the script reruns, the old chart can stay on screen beside the new one: wait for the new one alone.
    expect(chart.filter(has_text=f"plain-{DEPTH}")).to_have_count(1, timeout=RUN_MS)
    expect(chart).to_have_count(1, timeout=RUN_MS)
    wait_for_app(page, timeout_ms=RUN_MS)
    x, y = _batch(DEPTH)
    with one_torch_thread():
        expected = compare_at_init(DEPTH, x, y, batchnorm=True, seed=0)
    _check_signal_chart(chart, DEPTH, expected)

    # The race, made small (the quickest depth, quarter width), started from the page.
    width = page.get_by_role("slider", name="Width")
    width.focus()
    width.press("Home")  # the first option: the narrowest
    expect(page.get_by_test_id("stSlider").filter(has=width)).to_contain_text(WIDTH_LABEL)
    # Its time limit stays at the default: on a busy machine the test, not the limit, ends the race.
    start = page.get_by_role("button", name="Start the race")
    start.click()

    racers = {"plain": f"plain-{DEPTH}", "residual": f"ResNet-{DEPTH}"}
    racing = page.get_by_test_id("stMarkdown").filter(has_text=f"Racing {racers['plain']} vs {racers['residual']}")
    with stop_on_failure(page):
        expect(racing).to_be_visible(timeout=RUN_MS)
        expect(start).to_be_disabled()
        for name in racers.values():  # both racers report: their curves grow together
            wait_for_points(page, RACE_TITLE, name, timeout_ms=RUN_MS)
        screenshot(page, tmp_path / "2_racing.png")
        page.get_by_role("button", name="Stop", exact=True).click()

    expect(racing).to_have_count(0, timeout=RUN_MS)
    expect(page.get_by_role("button", name="Stop", exact=True)).to_have_count(0)
    verdict = page.get_by_test_id("stMarkdown").filter(has_text="What you just measured")
    expect(verdict).to_be_visible(timeout=RUN_MS)

    race = plotly_figure(page.get_by_test_id("stPlotlyChart").filter(has_text=RACE_TITLE))
    first = _first_losses(racers)
    last: dict[str, str] = {}
    for name in racers.values():
        loss = plotly_trace(race, name)
        steps, losses = plotly_values(loss["x"]), plotly_values(loss["y"])
        assert steps == [RACE_CFG.log_every * (i + 1) for i in range(len(steps))], name
        # The first smoothed point is the mean of the first reports (a centred average). Trained here on one thread
        # and in the server on torch's default count, a few steps of plain-20 spread float rounding to about 1e-4;
        # another seed, learning rate, warm-up or augmentation moves at least one racer's loss by more than 1e-3.
        head = first[name][: min(SMOOTH_HALF + 1, len(losses))]
        assert losses[0] == pytest.approx(sum(head) / len(head), rel=LOSS_REL), name
        last[name] = f"{losses[-1]:.3f}"
    # The verdict quotes each racer's last smoothed loss, as plotted.
    expect(verdict).to_contain_text(
        f"{racers['residual']} ended at {last[racers['residual']]}, {racers['plain']} at {last[racers['plain']]}"
    )
    errors = page.get_by_test_id("stAlert").filter(has=page.get_by_test_id("stAlertContentError"))
    expect(errors).to_have_count(0)
    expect(page.get_by_test_id("stException")).to_have_count(0)
    verdict.scroll_into_view_if_needed()
    screenshot(page, tmp_path / "3_stopped.png")

    # The twins the race trained, measured: their layer responses, drawn, and said with the drawn numbers.
    with stop_on_failure(page):
        page.get_by_role("button", name="Measure").click()  # the first tab's, the one in sight
        said = page.get_by_test_id("stMarkdown").filter(has_text="have a standard deviation of")
        expect(said).to_be_visible(timeout=RUN_MS)
    wait_for_app(page, timeout_ms=RUN_MS)
    responses = plotly_figure(page.get_by_test_id("stPlotlyChart").filter(has_text="std of the branch output"))
    means = {}
    for name in racers.values():
        std = plotly_values(plotly_trace(responses, name)["y"])
        assert len(std) == 9  # ResNet-20's nine blocks, and the same layers of plain-20 ([He2015] §4.2)
        means[name] = sum(std) / len(std)
    expect(said).to_contain_text(f"{racers['residual']} have a standard deviation of {means[racers['residual']]:.2f}")
    expect(said).to_contain_text(f"{racers['plain']} {means[racers['plain']]:.2f}")
    screenshot(page, tmp_path / "4_responses.png")

    # The page's link names the race: a reload (a new session) shows it again, its verdict and what was measured on
    # its twins, which can be measured again.
    assert "run=" in page.url
    said_text = said.inner_text()
    page.reload()
    wait_for_app(page, timeout_ms=RUN_MS)
    expect(page.get_by_test_id("stMarkdown").filter(has_text="What you just measured")).to_contain_text(
        f"{racers['residual']} ended at {last[racers['residual']]}, {racers['plain']} at {last[racers['plain']]}")
    expect(page.get_by_test_id("stMarkdown").filter(has_text="have a standard deviation of")).to_have_text(said_text)
    expect(page.get_by_role("button", name="Measure again")).to_be_visible()
    for png in ("1_signal.png", "2_racing.png", "3_stopped.png", "4_responses.png"):
        assert (tmp_path / png).stat().st_size > 0, png
