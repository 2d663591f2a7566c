"""/v1/score and /v1/rank response bodies on a mixed stream, byte for byte.

The stream of ``tests/model/campaign_stream.py`` (templates, edited copies,
repeats, short texts, ids seen again, authors, likes, posting times, reads
without recording) is sent through the service with a fixed clock and a fixed
detector configuration. Every body must be exactly the recorded one
(``campaign_responses_expected.json``), and every /v1/score body must carry
what the detector itself answers for the same comments, as the response model
writes it.

``python -m tests.api.test_campaign_responses`` rewrites the recorded digests;
do that only when a change is meant to change the responses.
"""

from __future__ import annotations

import hashlib
import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from fastapi.testclient import TestClient

from zhenping.api.main import create_app
from zhenping.api.schemas import ScoreResponse
from zhenping.api.settings import Settings
from zhenping.model.axes import AXES
from zhenping.model.campaign import CampaignConfig, CampaignDetector, CampaignInput, WindowConfig
from zhenping.model.normalize import normalize_text
from zhenping.model.scorer import CommentScores
from tests.helpers import StubScorer
from tests.model.campaign_stream import CONFIG, WINDOW, requests

EXPECTED = Path(__file__).resolve().parent / "campaign_responses_expected.json"
COMMENTS = 1500


def scores_of(text: str) -> CommentScores:
    h = hashlib.blake2b(text.encode("utf-8"), digest_size=6).digest()
    return CommentScores(h[0] / 255, h[1] / 255, (h[2] / 255) ** 0.5)


class HashScorer(StubScorer):
    """Scores from a hash of the normalised text: varied, and the same for the same text."""

    max_length = 128
    model_id = "hash"

    def score_normalized(self, texts, batch_size=32, max_tokens=None):
        return [scores_of(t) for t in texts]


def when(posted_at: float | None, k: int):
    """``posted_at`` as the API takes it: ISO with Z, with +08:00, naive (UTC), or seconds."""
    if posted_at is None:
        return None
    moment = datetime.fromtimestamp(posted_at, tz=timezone.utc)
    form = k % 4
    if form == 0:
        return moment.isoformat().replace("+00:00", "Z")
    if form == 1:
        return moment.astimezone(timezone(timedelta(hours=8))).isoformat()
    if form == 2:
        return moment.replace(tzinfo=None).isoformat()
    return posted_at


def detector(clock) -> CampaignDetector:
    return CampaignDetector.build(CampaignConfig(window=WindowConfig(**WINDOW), **CONFIG), clock=clock)


def direct_body(twin: CampaignDetector, comments: list[dict], now: float, model: str, record: bool = True) -> dict:
    """What /v1/score should answer, from the detector's own results through the response model
    (``record=False``: a read, as /v1/rank makes, which the twin must see too)."""
    texts = [normalize_text(c["text"]) for c in comments]
    scores = [scores_of(t) for t in texts]
    inputs = []
    for c, t in zip(comments, texts):
        posted = c.get("posted_at")
        if isinstance(posted, str):
            moment = datetime.fromisoformat(posted.replace("Z", "+00:00"))
            posted = (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()
        inputs.append(CampaignInput(t, c.get("id"), c.get("author_id"), c.get("likes"), posted))
    report = twin.process(inputs, scores, now=now, record=record)
    results = []
    for c, s, r in zip(comments, scores, report.results):
        d = r.duplicates
        results.append({
            "id": c.get("id"), **{axis: getattr(s, axis) for axis in AXES}, "levels": s.levels, "truncated": False,
            "duplicates": {"exact_count": d.exact_count, "near_count": d.near_count, "cluster_id": d.cluster_id,
                           "first_seen": datetime.fromtimestamp(d.first_seen, tz=timezone.utc)},
            "template_fused": r.template_fused, "evidence": [e.as_dict() for e in r.evidence],
            "action": r.action, "campaign": r.campaign, "cluster": r.cluster.as_dict(),
            "suspicious_likes": r.suspicious_likes,
            "expected_likes": None if r.expected_likes is None else round(r.expected_likes, 3),
        })
    body = {"model": model, "results": results}
    if any(c.get("author_id") is not None for c in comments):
        body["authors"] = [a.as_dict() for a in report.authors]
    return ScoreResponse.model_validate(body).model_dump(mode="json", exclude_unset=True)


def run_stream(check_direct: bool = True) -> list[str]:
    """SHA-256 of every response body of the stream, in order."""
    settings = Settings(model_dir="unused", max_wait_ms=0, cache_size=0)
    clock = [0.0]
    digests = []
    with TestClient(create_app(settings, scorer=HashScorer())) as client:
        client.app.state.campaign = detector(lambda: clock[0])
        twin = detector(lambda: clock[0])
        for r, (now, batch, _, record) in enumerate(requests(7, COMMENTS)):
            clock[0] = now
            comments = []
            for k, (text, cid, author, likes, posted_at) in enumerate(batch):
                comment = {"text": text}
                for key, value in (("id", cid), ("author_id", author), ("likes", likes),
                                   ("posted_at", when(posted_at, r + k))):
                    if value is not None:
                        comment[key] = value
                comments.append(comment)
            if record:
                response = client.post("/v1/score", json={"comments": comments})
                assert response.status_code == 200, response.text
                digests.append(hashlib.sha256(response.content).hexdigest())
                if check_direct:
                    assert response.json() == direct_body(twin, comments, now, "hash@v1"), f"request {r}"
            if not record or r % 3 == 0:
                order = "quality_engagement" if r % 2 else "quality"
                response = client.post("/v1/rank", json={"comments": comments, "order": order})
                assert response.status_code == 200, response.text
                if check_direct:
                    direct_body(twin, comments, now, "hash@v1", record=False)
                digests.append(hashlib.sha256(response.content).hexdigest())
    return digests


def test_score_and_rank_bodies_are_the_recorded_ones_and_the_detectors_own():
    expected = json.loads(EXPECTED.read_text(encoding="utf-8"))
    digests = run_stream()
    assert len(digests) == len(expected["bodies"]) > 100
    assert [k for k, (a, b) in enumerate(zip(digests, expected["bodies"])) if a != b] == []


if __name__ == "__main__":
    bodies = run_stream(check_direct="--no-direct" not in sys.argv)
    EXPECTED.write_text(json.dumps({"comments": COMMENTS, "bodies": bodies}, indent=0) + "\n", encoding="utf-8")
    print(f"wrote {len(bodies)} digests to {EXPECTED}")
