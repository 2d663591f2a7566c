"""The copy rule (long exact copies from many accounts fold) through a real `zhenping serve`."""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import start_server

REVIEW = "裤子很满意,很舒服,男朋友很喜欢,显得腿很长,大大的满意"
SETTINGS = {
    "ZHENPING_CAMPAIGN": "true",
    "ZHENPING_CACHE_SIZE": "0",
    # Only the copy rule folds here: the campaign score, template and hostility rules are off.
    "ZHENPING_ACTION_FOLD_CAMPAIGN": "1.01", "ZHENPING_ACTION_REVIEW_CAMPAIGN": "1.01",
    "ZHENPING_ACTION_FOLD_TEMPLATE": "1.01", "ZHENPING_ACTION_REVIEW_TEMPLATE": "1.01",
    "ZHENPING_ACTION_FOLD_HOSTILE": "1.01", "ZHENPING_ACTION_REVIEW_HOSTILE": "1.01",
    "ZHENPING_ACTION_FOLD_COPIES": "5", "ZHENPING_ACTION_FOLD_COPY_LENGTH": "10",
    "ZHENPING_ACTION_FOLD_COPY_AUTHORS": "5", "ZHENPING_ACTION_FOLD_COPY_TEMPLATE": "0",
}


@pytest.fixture(scope="module")
def client(tiny_model_dir, tmp_path_factory):
    running = start_server(tiny_model_dir, tmp_path_factory.mktemp("copy_rule") / "serve.log", SETTINGS)
    with httpx.Client(base_url=running.base_url, timeout=60) as c:
        yield c
    running.stop()


def score(client, comments: list[dict]) -> list[dict]:
    response = client.post("/v1/score", json={"comments": comments})
    assert response.status_code == 200, response.text
    return response.json()["results"]


def test_long_copies_fold_from_the_fifth_account_on(client):
    first = score(client, [{"text": REVIEW, "id": f"r{k}", "author_id": f"acct{k}"} for k in range(4)])
    assert [r["action"] for r in first] == ["pass"] * 4
    assert first[-1]["duplicates"]["exact_count"] == 3
    later = score(client, [{"text": REVIEW, "id": f"r{k}", "author_id": f"acct{k}"} for k in range(4, 6)])
    assert [r["action"] for r in later] == ["fold", "fold"]
    assert later[-1]["cluster"]["authors"] == 6 and later[-1]["duplicates"]["exact_count"] == 5


def test_short_chants_and_one_accounts_repeats_pass(client):
    chant = score(client, [{"text": "武汉加油!", "id": f"w{k}", "author_id": f"fan{k}"} for k in range(10)])
    assert {r["action"] for r in chant} == {"pass"}  # 4 characters, under the rule's 10
    text = "今天的直播太精彩了,主播辛苦了,明天同一时间不见不散"
    same = score(client, [{"text": text, "id": f"s{k}", "author_id": f"one{k % 2}"} for k in range(10)])
    assert {r["action"] for r in same} == {"pass"}  # 10 copies but 2 accounts, under the rule's 5


def test_a_copy_rule_of_one_copy_is_refused_at_start():
    from pydantic import ValidationError

    from zhenping.api.settings import Settings

    with pytest.raises(ValidationError, match="action_fold_copies must be 0 \\(off\\) or >= 2, got 1"):
        Settings(model_dir="unused", action_fold_copies=1)
