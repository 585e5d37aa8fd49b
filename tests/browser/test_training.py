"""The training page in a real browser: a tiny run starts from the page, its loss curve grows live, Stop ends it,
and the page shows the stopped run's result.

Expected numbers come from `resnet_core`: the run's length from `Trainer`, the first losses and learning rates from
the same run trained here, the test-set size and classes from `load_dataset`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import pytest

from resnet_core.data import load_dataset
from resnet_core.train import Progress, Trainer, default_recipe, resolve_device
from server.selection import from_query
from server.settings import LIMITS

from .helpers import (
    expect,
    metric_locator,
    one_torch_thread,
    plotly_figure,
    plotly_trace,
    plotly_values,
    screenshot,
    stop_on_failure,
    wait_for_app,
    wait_for_points,
)

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

# A six-layer custom net: dozens of steps a second on an idle CPU, so the curve grows while the test watches.
TINY = {"preset": "custom", "blocks": "1,1", "block": "basic", "widths": "8,16", "stem": "cifar",
        "stem_width": "8", "shortcut": "B", "classes": "10", "input": "3x32x32"}
DATA = "builtin"
EPOCHS = 10  # far more steps than the test watches: the run is still going when Stop is pressed
CHECKED_POINTS = 2  # loss points compared with the same run trained here
# A loaded CPU can take seconds per report and per evaluation; every wait is on content, with this much room.
RUN_MS = 90_000
CURVES = "Learning rate"  # a subplot title only the live curves have
LOSS = "loss (each report)"  # the trace of the raw reported losses


def _page_run(epochs: int) -> Trainer:
    """The run the page starts for TINY on the built-in data with `epochs` and every other setting at its default."""
    sel, warnings = from_query(TINY)
    assert not warnings, warnings
    data = load_dataset(DATA, download=False)
    model_cfg = sel.config.with_(in_channels=data.input_size[0], num_classes=len(data.classes))
    return Trainer(model_cfg, data, default_recipe(model_cfg, DATA).with_(epochs=epochs))


def _first_reports(trainer: Trainer, n: int) -> list[Progress]:
    """The first `n` step reports of `trainer`'s run, trained here."""
    reports = trainer.steps()
    out: list[Progress] = []
    try:
        for p in reports:
            if p.kind == "step":
                out.append(p)
                if len(out) == n:
                    break
        return out
    finally:
        reports.close()


def _curves(page: Page) -> Locator:
    return page.get_by_test_id("stPlotlyChart").filter(has_text=CURVES)


def _status(page: Page) -> Locator:
    """The live line above the curves: "Running <label> · epoch e/E · step s/T · ..."."""
    return page.get_by_test_id("stMarkdown").filter(has_text=re.compile(r"^Running "))


def _step(status: Locator) -> int:
    m = re.search(r"· step (\d+)/\d+ ·", status.inner_text())
    assert m, status.inner_text()
    return int(m.group(1))


def test_a_tiny_run_grows_its_curve_live_and_stops(page: Page, app_server: str, tmp_path: Path) -> None:
    trainer = _page_run(EPOCHS)
    data = trainer.data
    page.goto(f"{app_server}/training?{urlencode(TINY)}")
    wait_for_app(page)
    expect(page.get_by_role("combobox", name="Dataset", exact=True)).to_have_value(re.compile(r"^Built-in shapes"))
    expect(page.get_by_text("No run yet")).to_be_visible()

    epochs = page.get_by_role("spinbutton", name="Epochs", exact=True)
    epochs.fill(str(EPOCHS))
    epochs.press("Enter")
    # The longest time limit: on a busy machine the test, not the limit, ends the run (Stop, or stop_on_failure).
    limit = page.get_by_role("slider", name="Stop after (seconds)")
    limit.focus()
    limit.press("End")
    expect(limit).to_have_value(str(LIMITS.train_max_seconds))
    page.get_by_role("button", name="Start training").click()  # sends every widget's value with it

    with stop_on_failure(page):
        status = _status(page)
        expect(status).to_contain_text(f"· epoch 1/{EPOCHS} · step ", timeout=RUN_MS)
        expect(status).to_contain_text(f"/{trainer.total_steps} ·")  # the library's count: epochs x steps/epoch
        expect(page.get_by_role("button", name="Start training")).to_be_disabled()

        # Two looks at the live curve, the second strictly later: more points, and a step counter that moved on.
        n1 = wait_for_points(page, CURVES, LOSS, more_than=CHECKED_POINTS - 1, timeout_ms=RUN_MS)
        step1 = _step(status)
        screenshot(page, tmp_path / "1_running.png")
        n2 = wait_for_points(page, CURVES, LOSS, more_than=n1, timeout_ms=RUN_MS)
        expect(status).not_to_contain_text(f"· step {step1}/", timeout=RUN_MS)
        step2 = _step(status)
        assert n2 > n1 >= CHECKED_POINTS and trainer.total_steps > step2 > step1 > 0, (n1, n2, step1, step2)

        # What is plotted is the run resnet_core trains: the same losses and learning rates at the same steps.
        live = plotly_figure(_curves(page))
        loss, lr = plotly_trace(live, LOSS), plotly_trace(live, "lr", xaxis="x3")
        xs = plotly_values(loss["x"])
        assert len(xs) >= n2 and xs == sorted(set(xs)), xs  # one point per report, in step order
        assert plotly_values(lr["x"]) == xs
        with one_torch_thread():
            expected = _first_reports(trainer, CHECKED_POINTS)
        assert xs[:CHECKED_POINTS] == [p.step for p in expected]
        assert plotly_values(loss["y"])[:CHECKED_POINTS] == pytest.approx([p.loss for p in expected], rel=1e-4)
        assert plotly_values(lr["y"])[:CHECKED_POINTS] == pytest.approx([p.lr for p in expected], rel=1e-12)

        page.get_by_role("button", name="Stop", exact=True).click()

    # The result of the stopped run.
    expect(page.get_by_text(re.compile(r"^The run stopped by you at step [\d,]+ of [\d,]+ \(epoch \d+ of 10\)\.$")))\
        .to_be_visible(timeout=RUN_MS)
    expect(status).to_have_count(0)
    expect(page.get_by_role("button", name="Stop", exact=True)).to_have_count(0)
    expect(page.get_by_role("button", name="Start training")).to_be_enabled()
    accuracy = metric_locator(page, "Final test accuracy")
    expect(accuracy).to_have_text(re.compile(r"^\d+\.\d%$"))
    expect(metric_locator(page, "Device")).to_have_text(str(resolve_device("auto")))

    confusion_chart = page.get_by_test_id("stPlotlyChart").filter(has_text="Confusion matrix")
    expect(confusion_chart.locator(".main-svg").first).to_be_visible()
    confusion = plotly_figure(confusion_chart)["data"][0]
    counts = plotly_values(confusion["z"])
    assert plotly_values(confusion["x"]) == plotly_values(confusion["y"]) == list(data.classes)
    assert sum(map(sum, counts)) == len(data.y_test)  # every test image, once
    right = sum(counts[i][i] for i in range(len(counts)))
    expect(accuracy).to_have_text(f"{right / len(data.y_test):.1%}")  # the accuracy is the matrix's diagonal

    final = plotly_figure(_curves(page))
    final_steps = plotly_values(plotly_trace(final, LOSS)["x"])
    assert len(final_steps) >= n2 and final_steps[: len(xs)] == xs  # the curve kept what it showed live
    assert final_steps[-1] < trainer.total_steps  # stopped before the end
    expect(page.get_by_test_id("stException")).to_have_count(0)
    confusion_chart.scroll_into_view_if_needed()
    screenshot(page, tmp_path / "2_stopped.png")
    for png in ("1_running.png", "2_stopped.png"):
        assert (tmp_path / png).stat().st_size > 0, png
