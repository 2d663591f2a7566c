"""The web page follows the input contract: blank lines are skipped, counted and said so."""

from __future__ import annotations

from tests.api.conftest import API_KEYS
from tests.api.test_page import browser, page, pytestmark  # noqa: F401 - fixtures and markers shared


def test_blank_lines_are_skipped_and_counted(page):
    page.fill("#api-key", API_KEYS[0])
    # (A textarea turns a bare \r into a line break itself, so the page cannot keep one.)
    page.fill("#comments", "谢谢分享\n\n   \n默认好评\n\t\n")
    page.click("#score")
    page.wait_for_selector("#results tbody tr.result")
    rows = page.locator("#results tbody tr.result")
    assert rows.count() == 2
    assert page.locator("#skipped").inner_text() == "跳过 3 个空行 · 3 blank line(s) skipped"
