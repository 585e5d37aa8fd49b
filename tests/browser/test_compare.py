"""The compare page in a real Chromium: a shared pair link opens both models, and switching B keeps the link.

Every expected number comes from `resnet_core.analyze` here; the page has to agree with the library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from resnet_core import analyze
from resnet_core.units import fmt_count

from .helpers import choose_option, expect, wait_for_app

if TYPE_CHECKING:
    from playwright.sync_api import Page


def _query(page: Page) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(page.url).query).items()}


def _headline_row(page: Page, label: str) -> list[str]:
    """The cells of the headline table's row `label`: [A, B, B − A, B / A]."""
    row = page.get_by_test_id("stTable").locator("tr").filter(has=page.locator("th", has_text=label))
    expect(row.locator("td").first).to_be_visible()  # drawn (a rerun may still be on its way)
    return [cell.inner_text().strip() for cell in row.locator("td").all()]


def test_a_shared_pair_link_shows_both_models(app_server: str, page: Page) -> None:
    a, b = analyze("resnet50_v1"), analyze("resnet50")
    page.goto(f"{app_server}/compare?preset=resnet50_v1&input=3x224x224&batch=1&b_preset=resnet50")
    expect(page.get_by_role("heading", name="resnet50_v1 vs resnet50")).to_be_visible()
    wait_for_app(page)
    # A in the sidebar, B on the page.
    expect(page.get_by_role("combobox", name="Preset", exact=True)).to_have_value("resnet50_v1")
    expect(page.get_by_role("combobox", name="Model B", exact=True)).to_have_value("resnet50")
    assert _headline_row(page, "MACs per image")[:2] == [fmt_count(a.total_macs, "MACs"),
                                                        fmt_count(b.total_macs, "MACs")]
    assert _headline_row(page, "Parameters")[:3] == [fmt_count(a.total_params, "parameters")] * 2 + ["same"]
    expect(page.get_by_text("B has the same parameters as A")).to_be_visible()
    # One block of each, drawn side by side: the first downsampling block, where the stride moved.
    page.get_by_role("tab", name="One block, layer by layer").click()
    panel = page.get_by_role("tabpanel", name="One block, layer by layer")
    expect(panel.get_by_text("A · resnet50_v1")).to_be_visible()
    expect(panel.get_by_text("B · resnet50")).to_be_visible()
    expect(panel.get_by_test_id("stGraphVizChart")).to_have_count(2)
    expect(panel.get_by_test_id("stGraphVizChart").first.locator("svg")).to_contain_text("conv 1x1/2")
    expect(panel.get_by_test_id("stGraphVizChart").last.locator("svg")).to_contain_text("conv 3x3/2")


def test_switching_b_updates_the_numbers_and_the_link(app_server: str, page: Page) -> None:
    page.goto(f"{app_server}/compare?preset=resnet18&b_preset=resnet50")
    expect(page.get_by_role("heading", name="resnet18 vs resnet50")).to_be_visible()
    wait_for_app(page)
    choose_option(page, "Model B", "resnet152")
    expect(page.get_by_role("heading", name="resnet18 vs resnet152")).to_be_visible()
    assert _headline_row(page, "Parameters")[1] == fmt_count(analyze("resnet152").total_params, "parameters")
    q = _query(page)
    assert (q["preset"], q["b_preset"]) == ("resnet18", "resnet152")
