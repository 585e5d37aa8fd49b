"""The feature-maps page in a real browser: the grid and the image render, a hostile file name stays text,
a broken upload is refused with a message while the previous image stays, samples and layers switch.

Expected captions come from `resnet_core` (the same model the page builds), not from the page itself.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
from PIL import Image

from resnet_core import build_model
from resnet_core.activations import block_internals, capture, channel_order, tile
from resnet_core.images import load_sample
from resnet_core.preprocess import for_input, preprocess

from .helpers import choose_option, expect, one_torch_thread, plotly_figure, plotly_values, screenshot, wait_for_app

if TYPE_CHECKING:
    from playwright.sync_api import Dialog, FilePayload, Locator, Page

PRESET, SIDE = "resnet18", 96
URL_PATH = f"/feature_maps?preset={PRESET}&input=3x{SIDE}x{SIDE}"
HOSTILE_NAME = "<img src=x onerror=alert(1)>.png"
BROKEN_NAME = "photo.jpg"
BROKEN_BYTES = b"<!DOCTYPE html><html><body><h1>not a photo</h1></body></html>"
SAMPLE = "coffee"  # not the first sample, so choosing it changes the image
BLOCK, BLOCK_LABEL = "layer2.0", "layer2.0 (block)"
# After an action, `wait_for_app` can return before a slow rerun (an upload travels first) has started, so every
# check that follows an action waits for its content, with room for a busy machine.
RERUN_MS = 30_000


def _file(name: str, mime: str, data: bytes) -> FilePayload:
    return {"name": name, "mimeType": mime, "buffer": data}


def _png(size: tuple[int, int] = (80, 60), colour: tuple[int, int, int] = (220, 40, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def _shape(what: str) -> tuple[int, int, int]:
    """(C, H, W) of `what` inside BLOCK for PRESET at SIDE: the page's model, as the library computes it."""
    model = build_model(PRESET, seed=0).eval()
    cap = capture(model, torch.zeros(1, 3, SIDE, SIDE))
    c, h, w = block_internals(model.get_submodule(BLOCK), cap.block_input(BLOCK))[what].shape
    return c, h, w


def _grid(what: str) -> np.ndarray:
    """The tiles of `what` inside BLOCK for SAMPLE, as the page draws them by default (64 channels, strongest first,
    each on its own scale), computed with the library."""
    with one_torch_thread():
        model = build_model(PRESET, seed=0).eval()
        cap = capture(model, preprocess(load_sample(SAMPLE).image, for_input((SIDE, SIDE))))
        act = block_internals(model.get_submodule(BLOCK), cap.block_input(BLOCK))[what]
        return tile(act, channel_order(act, "mean"), max_tiles=64)


def _caption(page: Page, place: str, what: str) -> Locator:
    """The caption under the grid, e.g. "layer2.0 · F(x) · 128 channels of 12×12; showing ..."."""
    return page.get_by_test_id("stCaptionContainer").filter(
        has_text=re.compile(rf"^{re.escape(f'{place} · {what} · ')}")
    )


def _segment(page: Page, group: str, option: str) -> None:
    """Press `option` of the st.segmented_control labelled `group` and wait for the rerun."""
    radio = page.get_by_role("radiogroup", name=group, exact=True).get_by_role("radio", name=option, exact=True)
    radio.click()
    expect(radio).to_have_attribute("aria-checked", "true")
    wait_for_app(page)


def _image_panel(page: Page) -> Locator:
    """The left column: the image on screen and its label."""
    return page.get_by_test_id("stColumn").filter(has=page.get_by_role("radiogroup", name="Image", exact=True))


def _errors(page: Page) -> Locator:
    """Error boxes (st.error); the page also shows st.info boxes, which are stAlert too."""
    return page.get_by_test_id("stAlert").filter(has=page.get_by_test_id("stAlertContentError"))


def _no_exception(page: Page) -> None:
    expect(page.get_by_test_id("stException")).to_have_count(0)


def test_upload_samples_and_layers(page: Page, app_server: str, tmp_path: Path) -> None:
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.goto(app_server + URL_PATH)
    wait_for_app(page)
    assert f"preset={PRESET}" in page.evaluate("location.href")

    # The grid (a plotly heat map) and the first sample photo render.
    expect(page.get_by_test_id("stPlotlyChart").first.locator(".main-svg").first).to_be_visible()
    panel = _image_panel(page)
    expect(panel.get_by_test_id("stImage").first.locator("img")).to_be_visible()
    expect(panel.get_by_test_id("stText").first).to_contain_text("astronaut")
    expect(_caption(page, "stem", "output")).to_have_count(1)
    _no_exception(page)
    screenshot(page, tmp_path / "1_sample.png")

    # A valid PNG with a hostile name: shown, and the name is plain text.
    _segment(page, "Image", "Your image")
    uploader = page.get_by_test_id("stFileUploader")
    uploader.locator("input[type=file]").set_input_files(files=[_file(HOSTILE_NAME, "image/png", _png())])
    wait_for_app(page)
    label = panel.get_by_test_id("stText").first
    expect(label).to_contain_text(f"{HOSTILE_NAME}\nPNG, RGB, 80×60", timeout=RERUN_MS)
    expect(page.get_by_text(HOSTILE_NAME, exact=False).first).to_be_visible()
    expect(page.locator('img[src="x"]')).to_have_count(0)
    expect(_errors(page)).to_have_count(0)
    shown = panel.get_by_test_id("stImage").first.locator("img")
    expect(shown).to_be_visible()
    assert not dialogs, dialogs
    uploaded_src = shown.get_attribute("src")
    assert uploaded_src, "the uploaded image has no src"
    _no_exception(page)
    screenshot(page, tmp_path / "2_hostile_name.png")

    # A broken file: a clear error, and the hostile-named image stays on screen.
    uploader.locator("input[type=file]").set_input_files(files=[_file(BROKEN_NAME, "image/jpeg", BROKEN_BYTES)])
    wait_for_app(page)
    alert = _errors(page)
    expect(alert).to_have_count(1, timeout=RERUN_MS)
    expect(alert).to_contain_text("not an image in a supported format")
    expect(alert).to_contain_text("HTML")
    expect(label).to_contain_text(f"{HOSTILE_NAME}\nPNG, RGB, 80×60")
    expect(shown).to_have_attribute("src", uploaded_src)  # the same picture, not a new one
    expect(page.locator('img[src="x"]')).to_have_count(0)
    _no_exception(page)
    screenshot(page, tmp_path / "3_broken_upload.png")

    # Back to the samples: another photo replaces the upload.
    _segment(page, "Image", "Samples")
    choose_option(page, "Sample photo", SAMPLE)
    expect(label).to_contain_text(SAMPLE, timeout=RERUN_MS)
    expect(page.get_by_text(HOSTILE_NAME, exact=False)).to_have_count(0)
    expect(_errors(page)).to_have_count(0)
    expect(panel.get_by_test_id("stImage").first.locator("img")).not_to_have_attribute("src", uploaded_src)
    _no_exception(page)

    # Another layer, then inside the block: the caption under the grid follows.
    choose_option(page, "Layer", BLOCK_LABEL)
    c, h, w = _shape("output")
    expect(_caption(page, BLOCK, "output")).to_contain_text(f"{c} channels of {h}×{w}", timeout=RERUN_MS)
    _segment(page, "Inside the block", "F(x)")
    c, h, w = _shape("F(x)")
    expect(_caption(page, BLOCK, "F(x)")).to_contain_text(f"{c} channels of {h}×{w}", timeout=RERUN_MS)
    expect(_caption(page, BLOCK, "output")).to_have_count(0)
    expect(page.get_by_test_id("stPlotlyChart").first.locator(".main-svg").first).to_be_visible()
    # The grid plotly.js holds is the library's tiling of that map (float32, NaN between tiles).
    [trace] = plotly_figure(page.get_by_test_id("stPlotlyChart").first)["data"]
    assert trace["type"] == "heatmap"
    assert np.allclose(np.array(plotly_values(trace["z"]), dtype=np.float64), _grid("F(x)"), atol=1e-3, equal_nan=True)
    _no_exception(page)
    _caption(page, BLOCK, "F(x)").scroll_into_view_if_needed()
    screenshot(page, tmp_path / "4_inside_block.png")

    if dialogs:
        pytest.fail(f"a dialog opened (script ran from a file name?): {dialogs}")
    for png in ("1_sample.png", "2_hostile_name.png", "3_broken_upload.png", "4_inside_block.png"):
        assert (tmp_path / png).stat().st_size > 0, png
