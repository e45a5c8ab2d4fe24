"""Fixtures for the browser tests: Debian's chromium driven by Playwright, against real servers.

A missing chromium is a failure, not a skip: these tests are how CI proves the pages work.
Screenshots go to $NAMEGEN_SCREENSHOTS when set (docs/img/ holds the committed desktop ones),
else to a temporary directory.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).resolve().parents[1] / "service"))
from service_helpers import NAME, ROOT, Server  # noqa: E402  (shared with the service tests)

from browser_helpers import CHROMIUM_ARGS, DESKTOP, Page  # noqa: E402


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One Chromium with a fresh profile per test module; tests open their own pages. (Per module:
    Playwright's sync API keeps an event loop running while it lives, which asyncio.run in later
    test folders must not find.)"""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("Debian's chromium is not installed: `apt-get install -y chromium` (make test does it as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            tmp_path_factory.mktemp("chromium-profile"), executable_path=executable, headless=True,
            args=CHROMIUM_ARGS, viewport=DESKTOP)
        yield context
        context.close()


@pytest.fixture
def open_page(browser):
    """open_page() -> Page at desktop size; every page is closed at teardown."""
    pages: list[Page] = []

    def make() -> Page:
        pages.append(Page(browser))
        return pages[-1]
    yield make
    for p in pages:
        p.page.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    target = os.environ.get("NAMEGEN_SCREENSHOTS")
    path = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _env(registry: Path) -> dict[str, str]:
    return {"NAMEGEN_MODEL_DIR": str(registry), "NAMEGEN_MODEL_NAME": NAME, "NAMEGEN_RELOAD_INTERVAL": "0",
            "NAMEGEN_LOG_FORMAT": "json"}


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> Server:
    """A real `python -m service` serving a copy of the repository's registry (the shipped model and
    its real report), shared by a module's tests that do not change it."""
    base = tmp_path_factory.mktemp("shipped")
    registry = shutil.copytree(ROOT / "models", base / "models")
    server = Server(_env(registry), base / "server.log")
    yield server
    server.stop()


@pytest.fixture
def serve(tmp_path):
    """serve(registry) -> a real `python -m service` of its own, stopped by PID at teardown."""
    servers: list[Server] = []

    def start(registry: Path) -> Server:
        servers.append(Server(_env(registry), tmp_path / f"server{len(servers)}.log"))
        return servers[-1]
    yield start
    for server in servers:
        server.stop()
