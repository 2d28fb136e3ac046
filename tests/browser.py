"""A headless Chromium for the HTML tests, driven by Playwright's Python API.

The browser is the system's (Debian: ``apt-get install chromium`` -> /usr/bin/chromium), never
one Playwright downloads: ``playwright install`` is not needed and must not run. Set
``FMVIZ_CHROMIUM`` to use another executable. Where Playwright or a Chromium is missing, the
tests that need them are skipped with a reason that says what to install.

Set ``FMVIZ_REQUIRE_BROWSER=1`` (CI does) to make a missing Playwright or Chromium fail the
tests instead of skipping them. Plain helpers (no fixtures here): :func:`launch`, :class:`Watch`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

# No sandbox: CI runs as root in a container. The rest keeps Chromium off the network (updates,
# sync, field trials) so that a page's own requests are the only ones.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = "apt-get install chromium (Debian), or set FMVIZ_CHROMIUM to a Chromium executable"


def find_chromium() -> str | None:
    """The Chromium executable to use: ``$FMVIZ_CHROMIUM``, else the first one on PATH."""
    configured = os.environ.get("FMVIZ_CHROMIUM")
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


@contextlib.contextmanager
def launch() -> Iterator[object]:
    """A Playwright ``Browser`` on the system Chromium; skips the test when none can be had.

    A Chromium that is installed but fails to start is an error, not a skip: CI installs one
    precisely so that these tests run.
    """
    required = os.environ.get("FMVIZ_REQUIRE_BROWSER") == "1"  # CI: a skip would hide a gap
    try:
        from playwright import sync_api
    except ModuleNotFoundError:
        missing = "playwright is not installed (pip install playwright)"
        pytest.fail(missing) if required else pytest.skip(missing)
    executable = find_chromium()
    if executable is None:
        missing = f"no Chromium found: {INSTALL_HINT}"
        pytest.fail(missing) if required else pytest.skip(missing)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Watch:
    """Everything a page did that a self-contained page must not: errors and outside requests."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    outside_requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    @classmethod
    def attach(cls, page) -> Watch:
        watch = cls()
        page.on(
            "console",
            lambda m: (
                watch.console_errors.append(m.text) if m.type in ("error", "warning") else None
            ),
        )
        page.on("pageerror", lambda e: watch.page_errors.append(str(e)))
        page.on("requestfailed", lambda r: watch.failed_requests.append(f"{r.url} {r.failure}"))
        page.on(
            "request",
            lambda r: (
                None
                if r.url.startswith(("file://", "data:"))
                else watch.outside_requests.append(r.url)
            ),
        )

        def on_dialog(dialog) -> None:
            watch.dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)
        return watch

    def problems(self) -> dict[str, list[str]]:
        return {k: v for k, v in vars(self).items() if v}
