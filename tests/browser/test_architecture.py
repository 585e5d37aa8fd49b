"""The architecture page driven through its controls: the picker, the layer table, its CSV, shared links, errors.

Every expected number comes from `resnet_core.analyze` here; the app has to agree with the library.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import pandas as pd

from resnet_core import Report, analyze
from resnet_core.config import ResNetConfig
from resnet_core.tables import CSV_HEADERS
from resnet_core.units import fmt_count

from .helpers import (
    choose_option,
    expect,
    expect_rerun,
    metric_locator,
    plotly_figure,
    plotly_values,
    screenshot,
    wait_for_app,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

PARAMS = "Parameters (trainable)"
MACS = "MACs per image"
LEVEL_LABELS = {"stage": "Stages", "block": "Blocks", "layer": "Every layer"}


def _params(report: Report) -> str:
    return f"{report.trainable_params:,}"


def _macs(report: Report) -> str:
    return fmt_count(report.total_macs, "MACs")


def _query(page: Page) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(page.url).query).items()}


def _metrics(page: Page) -> dict[str, str]:
    """Every st.metric on the page, label -> displayed value."""
    out = {}
    for m in page.get_by_test_id("stMetric").all():
        out[m.get_by_test_id("stMetricLabel").inner_text().strip()] = m.get_by_test_id("stMetricValue").inner_text()
    return out


def _open(page: Page, url: str) -> None:
    """Load `url` and wait for the first script run to have drawn the page and finished."""
    page.goto(url)
    expect(page.get_by_test_id("stMetric").first).to_be_visible()
    wait_for_app(page)


def _table_panel(page: Page) -> Locator:
    return page.get_by_role("tabpanel", name="Layer table")


def _show_level(page: Page, level: str) -> None:
    """Choose the table's level and wait for the run it starts. A click that lands while the page's first runs are
    still redrawing the control can be dropped by the browser (seen on a cold server): then it is clicked again."""
    radio = _table_panel(page).get_by_role("radio", name=LEVEL_LABELS[level], exact=True)
    for _ in range(3):
        if radio.get_attribute("aria-checked") == "true":
            break
        radio.click()
        try:
            expect(radio).to_have_attribute("aria-checked", "true", timeout=10_000)
        except AssertionError:
            continue
    expect(radio).to_have_attribute("aria-checked", "true")
    wait_for_app(page)


def _expect_rows(page: Page, n: int) -> None:
    """The layer table's grid reports `n` data rows (glide-data-grid's aria-rowcount counts the header too)."""
    grid = _table_panel(page).get_by_test_id("stDataFrame").locator("[role=grid]")
    expect(grid).to_have_attribute("aria-rowcount", str(n + 1))


def _download_csv(page: Page, dest: Path) -> tuple[str, pd.DataFrame]:
    with page.expect_download() as info:
        _table_panel(page).get_by_role("button", name="Download CSV").click()
    download = info.value
    download.save_as(dest)
    return download.suggested_filename, pd.read_csv(dest)


def _assert_same_table(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Same columns (each header with its unit), same rows, same numbers (the expected frame goes through CSV too,
    so dtypes match)."""
    expected = expected.rename(columns=CSV_HEADERS)
    assert list(got.columns) == list(expected.columns)
    assert {"macs_per_image", "output_bytes_per_batch", "receptive_field_px"} <= set(got.columns)
    assert len(got) == len(expected)
    pd.testing.assert_frame_equal(got, pd.read_csv(io.StringIO(expected.to_csv(index=False))), check_exact=True)
    for col in ("params", "macs_per_image", "flops_per_image", "output_bytes_per_batch"):  # exact integers
        assert got[col].astype("int64").tolist() == expected[col].astype("int64").tolist(), col


def test_preset_and_input_through_the_sidebar(page: Page, app_server: str) -> None:
    _open(page, app_server)
    choose_option(page, "Family", "ImageNet")  # a no-op when it is already chosen (the default)

    choose_option(page, "Preset", "resnet18")
    r18 = analyze("resnet18", input_size=(3, 224, 224), batch_size=1)
    expect(metric_locator(page, PARAMS)).to_have_text(_params(r18))
    expect(metric_locator(page, MACS)).to_have_text(_macs(r18))
    expect(page).to_have_url(re.compile(r"[?&]preset=resnet18(&|$)"))

    side = page.get_by_role("spinbutton", name="Side (pixels)", exact=True)
    side.fill("320")
    with expect_rerun(page):
        side.press("Enter")
    r18_320 = analyze("resnet18", input_size=(3, 320, 320), batch_size=1)
    assert _macs(r18_320) != _macs(r18)
    expect(metric_locator(page, MACS)).to_have_text(_macs(r18_320))
    expect(metric_locator(page, PARAMS)).to_have_text(_params(r18_320))
    expect(page).to_have_url(re.compile(r"[?&]input=3x320x320(&|$)"))
    assert _query(page)["preset"] == "resnet18"
    expect(page.get_by_test_id("stException")).to_have_count(0)


def test_layer_table_levels_and_csv(page: Page, app_server: str, tmp_path: Path) -> None:
    preset, size, batch = "resnet18", (3, 160, 160), 2
    _open(page, f"{app_server}/?preset={preset}&input={'x'.join(map(str, size))}&batch={batch}")
    report = analyze(preset, input_size=size, batch_size=batch)
    expect(metric_locator(page, PARAMS)).to_have_text(_params(report))
    page.get_by_role("tab", name="Layer table").click()
    wait_for_app(page)

    for level in ("stage", "block", "layer"):
        _show_level(page, level)
        expected = report.to_dataframe(level)
        _expect_rows(page, len(expected))
        name, got = _download_csv(page, tmp_path / f"{level}.csv")
        assert name.endswith(f"_{level}.csv"), name
        _assert_same_table(got, expected)  # the CSV is exactly the table shown
    screenshot(page, tmp_path / "table.png")
    _table_panel(page).screenshot(path=str(tmp_path / "table_panel.png"))

    # The stage filter: the grid and the CSV both hold only that stage's rows.
    choose_option(page, "Stage", "layer2")
    expected = report.to_dataframe("layer")
    expected = expected[expected["stage"] == "layer2"].reset_index(drop=True)
    assert 0 < len(expected) < len(report.to_dataframe("layer"))
    _expect_rows(page, len(expected))
    _, got = _download_csv(page, tmp_path / "layer2.csv")
    _assert_same_table(got, expected)

    # Only the open tab is drawn: nothing of the diagram or the charts is in the page while the table is open.
    expect(page.get_by_test_id("stGraphVizChart")).to_have_count(0)
    expect(page.get_by_test_id("stPlotlyChart")).to_have_count(0)
    with expect_rerun(page):
        page.get_by_role("tab", name="Diagram").click()
    chart = page.get_by_role("tabpanel", name="Diagram").get_by_test_id("stGraphVizChart")
    expect(chart.locator("svg g.node").first).to_be_visible()
    expect(page.get_by_test_id("stDataFrame")).to_have_count(0)
    screenshot(page, tmp_path / "diagram.png")
    chart.screenshot(path=str(tmp_path / "diagram_chart.png"))
    for png in ("table.png", "table_panel.png", "diagram.png", "diagram_chart.png"):
        assert (tmp_path / png).stat().st_size > 0, png

    with expect_rerun(page):
        page.get_by_role("tab", name="Charts").click()
    charts = page.get_by_role("tabpanel", name="Charts").get_by_test_id("stPlotlyChart")
    expect(charts).to_have_count(2)
    per_stage = plotly_figure(charts.first)
    stages = report.to_dataframe("stage")
    assert plotly_values(per_stage["data"][0]["y"]) == stages["params"].tolist()
    assert plotly_values(per_stage["data"][1]["y"]) == stages["macs"].tolist()

    # Back on the table: the level and the stage chosen before are kept.
    with expect_rerun(page):
        page.get_by_role("tab", name="Layer table").click()
    expect(_table_panel(page).get_by_role("radio", name=LEVEL_LABELS["layer"], exact=True)).to_have_attribute(
        "aria-checked", "true"
    )
    expect(page.get_by_role("combobox", name="Stage", exact=True)).to_have_value("layer2")
    _expect_rows(page, len(expected))
    expect(page.get_by_test_id("stException")).to_have_count(0)


def test_shared_link_reproduces_a_custom_model(page: Page, browser: Browser, app_server: str) -> None:
    _open(
        page,
        f"{app_server}/?preset=custom&blocks=1,2,3&block=bottleneck&widths=32,64,128&stem=cifar&stem_width=16"
        "&shortcut=B&input=3x64x64&batch=4",
    )
    cfg = ResNetConfig().with_(
        blocks=(1, 2, 3), block="bottleneck", widths=(32, 64, 128), stem="cifar", stem_width=16, shortcut="B"
    )
    report = analyze(cfg, input_size=(3, 64, 64), batch_size=4)
    expect(metric_locator(page, PARAMS)).to_have_text(_params(report))
    expect(metric_locator(page, MACS)).to_have_text(_macs(report))
    expect(page.get_by_test_id("stAlert").filter(has_text="link")).to_have_count(0)  # no URL warning
    shared = page.url
    q = _query(page)
    assert (q["preset"], q["blocks"], q["widths"], q["input"], q["batch"]) == (
        "custom", "1,2,3", "32,64,128", "3x64x64", "4",
    )  # fmt: skip
    first = _metrics(page)
    assert len(first) >= 8, first

    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        other = context.new_page()
        _open(other, shared)
        expect(metric_locator(other, PARAMS)).to_have_text(_params(report))
        for label, value in first.items():
            expect(metric_locator(other, label)).to_have_text(value)
        assert _metrics(other) == first
        assert _query(other) == q
        expect(other.get_by_test_id("stException")).to_have_count(0)
    finally:
        context.close()


def test_invalid_custom_blocks_keep_the_last_valid_model(page: Page, app_server: str, tmp_path: Path) -> None:
    _open(page, f"{app_server}/?preset=resnet18&input=3x224x224&batch=1")
    r18 = analyze("resnet18", input_size=(3, 224, 224), batch_size=1)
    expect(metric_locator(page, PARAMS)).to_have_text(_params(r18))

    choose_option(page, "Family", "Custom")  # seeded from what is on screen: resnet18's shape
    blocks = page.get_by_role("textbox", name="Blocks per stage", exact=True)
    expect(blocks).to_have_value("2,2,2,2")
    expect(metric_locator(page, PARAMS)).to_have_text(_params(r18))

    blocks.fill("2,0,2,2")
    with expect_rerun(page):
        blocks.press("Enter")
    sidebar = page.get_by_test_id("stSidebar")
    error = sidebar.get_by_test_id("stAlert").filter(has_text=re.compile("blocks", re.IGNORECASE))
    expect(error).to_have_count(1)
    error.scroll_into_view_if_needed()
    screenshot(page, tmp_path / "invalid.png")
    expect(metric_locator(page, PARAMS)).to_have_text(_params(r18))
    expect(metric_locator(page, MACS)).to_have_text(_macs(r18))
    assert _query(page)["blocks"] == "2,2,2,2"  # the URL keeps the last valid model too
    expect(page.get_by_test_id("stException")).to_have_count(0)
