"""Smoke tests: the app loads, shows the default model's exact numbers, and survives a broken link."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from resnet_core import analyze

from .helpers import expect, metric_value, screenshot, wait_for_app

if TYPE_CHECKING:
    from playwright.sync_api import Page

PARAMS = "Parameters (trainable)"


def _params(preset: str) -> str:
    return f"{analyze(preset).total_params:,}"


def test_default_page_shows_resnet50(page: Page, app_server: str, tmp_path: Path) -> None:
    page.goto(app_server)
    wait_for_app(page)

    title_ok = "ResNet Explorer" in page.title()
    assert title_ok or page.get_by_text("resnet50").count() > 0, page.title()
    assert metric_value(page, PARAMS) == _params("resnet50")
    expect(page).to_have_url(re.compile(r"[?&]preset=resnet50(&|$)"))
    assert screenshot(page, tmp_path / "smoke.png").stat().st_size > 0


def test_link_selects_resnet18(page: Page, app_server: str) -> None:
    page.goto(f"{app_server}/?preset=resnet18&input=3x224x224&batch=1")
    wait_for_app(page)

    assert metric_value(page, PARAMS) == _params("resnet18")
    expect(page).to_have_url(re.compile(r"[?&]preset=resnet18(&|$)"))


def test_broken_link_warns_without_traceback(page: Page, app_server: str) -> None:
    page.goto(f"{app_server}/?preset=nonsense&input=abc")
    wait_for_app(page)

    alerts = page.get_by_test_id("stAlert")
    expect(alerts.filter(has_text="Unknown preset")).to_have_count(1)
    expect(page.get_by_test_id("stException")).to_have_count(0)
