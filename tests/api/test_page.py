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


@pytest.fixture(scope="module")
def campaign_server(tiny_model_dir, tmp_path_factory):
    """A server with campaign detection on (actions, evidence, duplicate clusters), no API key."""
    from tests.api.conftest import MAIN_SETTINGS, start_server

    settings = {k: v for k, v in MAIN_SETTINGS.items() if k not in ("ZHENPING_CAMPAIGN", "ZHENPING_API_KEYS")}
    server = start_server(tiny_model_dir, tmp_path_factory.mktemp("page") / "server.log",
                          {**settings, "ZHENPING_MAX_COMMENTS": "4"})
    yield server
    server.stop()


def test_uploaded_csv_gets_verdicts_and_a_csv_download(browser, campaign_server, tmp_path):
    # Six comments in a CSV (one with a quoted comma and line break, two copies of an ad, one
    # longer than this server's MAX_CHARS): more than one request's worth (MAX_COMMENTS 4).
    long = "房间干净,早餐一般,隔音差。" * 10
    upload = tmp_path / "comments.csv"
    upload.write_text(
        "id,text\n"
        "1,谢谢分享，挺有用的\n"
        "2,兼职日结加微信 abc123 手机就能做\n"
        "3,兼职日结加微信 abc123 手机就能做\n"
        '4,"住了两晚,房间干净\n但隔音差"\n'
        f'5,"{long}"\n'
        "6,默认好评\n",
        encoding="utf-8",
    )
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN", accept_downloads=True)
    page = context.new_page()
    page.goto(campaign_server.base_url + "/")
    page.wait_for_function("document.getElementById('model').textContent.includes('tiny-test')")
    page.set_input_files("#file", str(upload))
    page.wait_for_function("document.getElementById('file-note').textContent.includes('6')")
    assert page.locator("#comments").input_value().splitlines()[3] == "住了两晚,房间干净 但隔音差"
    page.click("#score")
    page.wait_for_selector("#results tbody tr.result")

    headers = page.locator("#head-row th").all_inner_texts()
    assert headers[-4:] == ["处理 action", "证据 evidence", "重复 duplicates", "截断 truncated"]
    rows = page.locator("#results tbody tr.result")
    assert rows.count() == 6
    actions = [rows.nth(i).locator(".action-badge").get_attribute("data-action") for i in range(6)]
    assert set(actions) <= {"pass", "review", "fold"}
    clusters = [rows.nth(i).locator("td.cluster").get_attribute("data-cluster") for i in range(6)]
    assert clusters[1] == clusters[2] and len(set(clusters)) == 5  # the two copies share a cluster
    assert "×2" in rows.nth(2).locator("td.cluster").inner_text()
    assert "exact copy" in rows.nth(2).locator("td.evidence").inner_text()
    truncated = [rows.nth(i).locator("td.truncated").inner_text() for i in range(6)]
    assert truncated == ["", "", "", "", "截断 yes", ""]
    # Level definitions on hover.
    assert "0: hostile" in page.locator("#head-row th.axis-warmth").get_attribute("title")
    assert "3: filler, copy-paste, ads, bot text" in page.locator("#head-row th.axis-template").get_attribute("title")

    with page.expect_download() as info:
        page.click("#download")
    saved = tmp_path / "scores.csv"
    info.value.save_as(saved)
    import csv

    with open(saved, encoding="utf-8-sig", newline="") as fh:
        got = list(csv.DictReader(fh))
    assert [r["text"] for r in got][:3] == ["谢谢分享，挺有用的", "兼职日结加微信 abc123 手机就能做",
                                             "兼职日结加微信 abc123 手机就能做"]
    assert [r["action"] for r in got] == actions
    assert [r["truncated"] for r in got] == ["false"] * 4 + ["true", "false"]
    assert got[1]["duplicate_cluster"] == got[2]["duplicate_cluster"] == clusters[1]
    assert all(0 <= float(r["warmth"]) <= 1 and r["warmth_level"] in "0123" for r in got)

    shot = tmp_path / "verdicts.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    context.close()
