"""The scoring page at / in a real headless Chromium against the live server."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.conftest import API_KEYS

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium is not installed (apt-get install -y chromium)"),
]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser, api_server):
    context = browser.new_context(viewport={"width": 1100, "height": 760}, locale="zh-CN")
    page = context.new_page()
    page.goto(api_server.base_url + "/")
    # /info says a key is required, so the key field appears once it has loaded.
    page.wait_for_selector("#key-row:not([hidden])", timeout=10_000)
    yield page
    context.close()


def test_scores_two_comments_as_bars(page, tmp_path):
    assert "tiny-test" in page.locator("#model").inner_text()
    page.fill("#api-key", API_KEYS[0])
    page.fill("#comments", "谢谢分享，挺有用的\n\n默认好评")
    page.click("#score")
    page.wait_for_selector("#results tbody tr.result")

    rows = page.locator("#results tbody tr.result")
    assert rows.count() == 2  # the blank line is skipped
    assert rows.nth(0).locator("td.text").inner_text() == "谢谢分享，挺有用的"
    assert rows.nth(1).locator("td.text").inner_text() == "默认好评"
    headers = page.locator("#head-row th.axis").all_inner_texts()
    assert headers == ["温度 warmth", "实质 substance", "模板化 template"]
    for i in range(2):
        bars = rows.nth(i).locator(".bar")
        assert bars.count() == 3
        for j in range(3):
            value = float(bars.nth(j).get_attribute("aria-valuenow"))
            assert 0.0 <= value <= 1.0
            width = bars.nth(j).locator(".fill").evaluate("el => el.style.width")
            assert width.endswith("%") and abs(float(width[:-1]) - value * 100) < 0.1
        levels = rows.nth(i).locator(".level").all_inner_texts()
        assert len(levels) == 3 and all(level in {"0", "1", "2", "3"} for level in levels)
    assert page.locator("#error").is_hidden()

    shot = tmp_path / "score_page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_shows_the_error_body(page):
    page.fill("#comments", "没有密钥")
    page.click("#score")
    page.wait_for_selector("#error:not([hidden])")
    assert page.locator("#error").inner_text() == (
        "missing API key; send it as 'X-API-Key: <key>' or 'Authorization: Bearer <key>' (unauthorized)"
    )
    assert page.locator("#results-card").is_hidden()


def test_api_docs_render_offline(browser, api_server):
    # Swagger UI from the server's own files: with every other host blocked, the
    # operations still render.
    context = browser.new_context()
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(api_server.base_url)
                  else route.abort())
    page = context.new_page()
    page.goto(api_server.base_url + "/docs")
    page.wait_for_selector(".opblock", timeout=15_000)
    summaries = page.locator(".opblock-summary-path").all_inner_texts()
    assert "/v1/score" in [s.strip() for s in summaries]
    context.close()
