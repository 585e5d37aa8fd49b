"""Take the README's screenshot of the compare page: resnet50_v1 | resnet50 at 1280×800 in Chromium.

    .venv/bin/python -m tests.browser.compare_screenshot            # writes docs/img/compare_resnet50_v1_resnet50.png
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.browser.helpers import expect, wait_for_app
from tests.serving import REPO_ROOT, serve

URL = "/compare?preset=resnet50_v1&input=3x224x224&batch=1&b_preset=resnet50"
OUT = REPO_ROOT / "docs" / "img" / "compare_resnet50_v1_resnet50.png"


def main(out: Path = OUT) -> int:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, serve(log_path=Path(tmp) / "server.log") as server, \
            sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{server.url}{URL}")
            expect(page.get_by_text("B has the same parameters as A")).to_be_visible()
            wait_for_app(page, quiet_ms=1000)
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out))  # the viewport: what a reader sees first
        finally:
            browser.close()
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
