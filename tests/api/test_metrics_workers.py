"""`/metrics` of `zhenping serve --workers 2` counts every worker's requests.

A real two-worker server: requests on fresh connections spread over both
workers; every scrape, whichever worker answers it, shows counters that never go
backwards and, at the end, equal what was sent.
"""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import start_server

pytestmark = pytest.mark.slow

REQUESTS = 40  # score requests, one comment each, every one on a new connection
SCRAPES_PER_REQUEST = 2


def scrape(base: str) -> dict[tuple[str, tuple], float]:
    """Every sample of ``/metrics`` by (name, sorted labels), on a new connection."""
    r = httpx.get(f"{base}/metrics", timeout=30)
    assert r.status_code == 200, r.text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def worker_count(path) -> float:
    """Comments one worker scored, from its own metrics file."""
    from prometheus_client.multiprocess import MultiProcessCollector

    return sum(s.value for m in MultiProcessCollector.merge([str(path)], accumulate=True)
               for s in m.samples if s.name == "zhenping_comments_scored_total")


def test_metrics_are_summed_across_two_workers(tiny_model_dir, tmp_path):
    shared = tmp_path / "prom"
    shared.mkdir()
    (shared / "counter_1.db").write_bytes(b"left over from an earlier run")  # serve empties the folder
    server = start_server(tiny_model_dir, tmp_path / "serve.log",
                          {"ZHENPING_CAMPAIGN": "false", "PROMETHEUS_MULTIPROC_DIR": str(shared)},
                          args=("--workers", "2"))
    try:
        assert not (shared / "counter_1.db").exists()
        base = server.base_url
        seen: list[float] = []
        for i in range(REQUESTS):
            r = httpx.post(f"{base}/v1/score", json={"comments": [{"text": f"第{i}条评论"}]}, timeout=30)
            assert r.status_code == 200, r.text
            for _ in range(SCRAPES_PER_REQUEST):
                seen.append(scrape(base)[("zhenping_comments_scored_total", ())])
        assert seen == sorted(seen), f"a counter went backwards: {seen}"
        final = scrape(base)
        assert final[("zhenping_comments_scored_total", ())] == REQUESTS
        score_200 = (("method", "POST"), ("route", "/v1/score"), ("status", "200"))
        assert final[("zhenping_http_requests_total", score_200)] == REQUESTS
        latency = (("method", "POST"), ("route", "/v1/score"))
        assert final[("zhenping_http_request_duration_seconds_count", latency)] == REQUESTS
        assert final[("zhenping_cache_misses_total", ())] == REQUESTS
        assert final[("zhenping_ready", ())] == 1.0  # the lowest over the live workers
        assert ("zhenping_queue_depth_texts", ()) in final
        scrapes = final[("zhenping_http_requests_total", (("method", "GET"), ("route", "/metrics"),
                                                          ("status", "200")))]
        assert scrapes == REQUESTS * SCRAPES_PER_REQUEST
        # Both workers scored some of the comments: the sums above are over two processes.
        per_worker = [worker_count(f) for f in sorted(shared.glob("counter_*.db"))]
        assert len([n for n in per_worker if n > 0]) == 2, per_worker
        assert sum(per_worker) == REQUESTS
    finally:
        server.stop()
    assert server.process.returncode == 0, server.log()
