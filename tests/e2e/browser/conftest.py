"""A real browser on the end-to-end stack: Debian's Chromium driven by Playwright.

The tests install what they need: Chromium from Debian's packages when it is missing
(Playwright's own browser download is not used), Playwright and axe-core from the dev
dependencies. Each page a test visits can be kept as a screenshot under
`test-artifacts/screenshots/` (`BUTTERFLY_ARTIFACTS_DIR` moves it) and checked with axe-core
against WCAG 2 A and AA.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from infra.packages import apt_install

ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = Path(os.environ.get("BUTTERFLY_ARTIFACTS_DIR") or ROOT / "test-artifacts")
SCREENSHOTS = ARTIFACTS / "screenshots"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
AXE_RULES = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
NewPage = Callable[..., Awaitable[Page]]


def chromium_path() -> str:
    """Debian's Chromium, installed with apt-get when it is not on this machine yet."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0:
        pytest.fail("Chromium is missing: install Debian's `chromium` package (apt-get).")
    installed = apt_install("chromium", timeout=900)
    if installed is None:
        pytest.fail("Chromium is missing and there is no apt-get to install Debian's `chromium`.")
    if not installed.ok:
        pytest.fail(
            f"apt-get {installed.command} failed ({installed.returncode}): {installed.tail()}"
        )
    found = shutil.which("chromium")
    if not found:
        pytest.fail("apt-get installed chromium but it is not on PATH")
    return found


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    executable = await asyncio.to_thread(chromium_path)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield launched
        finally:
            await launched.close()


async def _context(browser: Browser, base_url: str, viewport: dict[str, int]) -> BrowserContext:
    context = await browser.new_context(base_url=base_url, viewport=viewport)  # type: ignore[arg-type]
    context.set_default_timeout(20_000)
    return context


@pytest.fixture
async def page(browser: Browser, stack: object) -> AsyncIterator[Page]:
    """A fresh browser profile (no cookies) at desktop size on the stack's gateway."""
    context = await _context(browser, stack.base_url, DESKTOP)  # type: ignore[attr-defined]
    try:
        yield await context.new_page()
    finally:
        await context.close()


@pytest.fixture
async def phone(browser: Browser, stack: object) -> AsyncIterator[Page]:
    """The same at a phone's width."""
    context = await _context(browser, stack.base_url, PHONE)  # type: ignore[attr-defined]
    try:
        yield await context.new_page()
    finally:
        await context.close()


@pytest.fixture
async def new_page(browser: Browser, stack: object) -> AsyncIterator[NewPage]:
    """More browser profiles in one test (two attendees, an attendee and an admin)."""
    contexts: list[BrowserContext] = []

    async def make(viewport: dict[str, int] = DESKTOP) -> Page:
        context = await _context(browser, stack.base_url, viewport)  # type: ignore[attr-defined]
        contexts.append(context)
        return await context.new_page()

    yield make
    for context in contexts:
        await context.close()


async def shot(page: Page, name: str) -> Path:
    """Keep a full-page screenshot of what the page shows now as a test artifact."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def check_accessible(page: Page, name: str) -> None:
    """axe-core finds no WCAG 2 A/AA violation on the page as it is now; a screenshot is kept
    either way."""
    await shot(page, name)
    results = await Axe().run(page, options={"runOnly": {"type": "tag", "values": AXE_RULES}})
    violations = results.response["violations"]
    assert not violations, f"{name}: axe-core found\n" + "\n".join(
        f"- {v['id']} ({v['impact']}): {v['help']} at "
        + ", ".join(str(node["target"]) for node in v["nodes"][:5])
        for v in violations
    )
