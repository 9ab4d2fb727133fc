"""Browser tests: headless Chromium (Debian's /usr/bin/chromium) driven by Playwright.

`make test` installs chromium with apt when it is missing (as root); these tests are skipped, with
the reason, only when no chromium binary can be found (or the playwright package is absent).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("SMARTHUB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}

try:
    from playwright.async_api import Browser, async_playwright
except ImportError:  # pragma: no cover - the test extra installs it
    async_playwright = None  # type: ignore[assignment]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = None
    if async_playwright is None:
        reason = "the playwright package is not installed (pip install -e '.[test]')"
    elif not Path(CHROMIUM).exists():
        reason = f"no chromium at {CHROMIUM} (make install runs apt-get install -y chromium)"
    if reason is None:
        return
    if os.environ.get("SMARTHUB_REQUIRE_BROWSER"):
        raise pytest.UsageError(reason + " (SMARTHUB_REQUIRE_BROWSER is set: CI must run the browser tests)")
    for item in items:
        if "tests/browser" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as pw:
        # --no-sandbox: CI and the dev containers run as root, where Chromium's sandbox refuses to start.
        b = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            await b.close()
