"""The API's interactive docs work offline: Swagger UI (/docs) and ReDoc (/redoc) render every
operation with every request to anything but this machine refused, and they ask for nothing
outside it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from conftest import Dashboard

LOCAL = {"127.0.0.1", "localhost", "::1", "[::1]"}


@pytest.fixture
def offline_page(browser: Any) -> Iterator[tuple[Any, list[str]]]:
    """A page whose requests to any other host are refused; the refused URLs."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    refused: list[str] = []

    def only_local(route: Any) -> None:
        url = route.request.url
        if urlsplit(url).scheme in ("data", "blob") or urlsplit(url).hostname in LOCAL:
            route.continue_()
        else:
            refused.append(url)
            route.abort("internetdisconnected")

    context.route("**/*", only_local)
    page = context.new_page()
    yield page, refused
    context.close()


def test_swagger_ui_renders_the_operations_offline(
    offline_page: tuple[Any, list[str]], dashboard: Dashboard
) -> None:
    page, refused = offline_page
    page.goto(f"{dashboard.url}/docs")
    submit = page.locator(".opblock-summary-path", has_text="/api/v1/jobs").first
    submit.wait_for(timeout=30_000)
    assert page.locator(".opblock").count() > 10
    page.screenshot(path=str(dashboard.screenshots / "api-docs-swagger.png"))
    assert refused == []


def test_redoc_renders_the_operations_offline(
    offline_page: tuple[Any, list[str]], dashboard: Dashboard
) -> None:
    page, refused = offline_page
    page.goto(f"{dashboard.url}/redoc")
    page.locator("[data-section-id^='operation/']").first.wait_for(timeout=30_000)
    assert page.locator("[data-section-id^='operation/']").count() > 10
    page.screenshot(path=str(dashboard.screenshots / "api-docs-redoc.png"))
    assert refused == []
