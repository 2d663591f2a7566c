"""API fuzzing: schemathesis cases from the service's own OpenAPI schema against a real server.

Every operation is fuzzed with valid (positive) and, for the request bodies,
invalid (negative) data. Each response must not be a 5xx, must have a status
code the schema declares for that operation, the declared content type and a
body that validates against the declared schema; invalid data must be refused
with a 4xx. The server must stay healthy and log no traceback.

The number of cases is ``ZHENPING_FUZZ_CASES`` (default 1000), spread over the
operations: request-body operations take most of them, parameterless GETs stop
once Hypothesis has nothing new to generate. ``ZHENPING_FUZZ_SEED`` (default 0)
picks the cases; the same seed gives the same cases.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api.conftest import API_KEYS, start_server

FUZZ_CASES = int(os.environ.get("ZHENPING_FUZZ_CASES", "1000"))
FUZZ_SEED = int(os.environ.get("ZHENPING_FUZZ_SEED", "0"))  # the same cases every run unless changed

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]

# Invalid data must be refused with one of the documented client errors; 413
# answers a schema-violating body that also has too many comments.
CONFIG = schemathesis.Config.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": [400, 401, 413, 415, 422]}}})

# Campaign detection and the feedback store are on, so their code is fuzzed too.
FUZZ_SETTINGS = {
    "ZHENPING_API_KEYS": API_KEYS[0],
    "ZHENPING_MAX_COMMENTS": "16",
    "ZHENPING_MAX_CHARS": "200",
    "ZHENPING_MAX_BODY_BYTES": "65536",
    "ZHENPING_MAX_WAIT_MS": "1",
    "ZHENPING_LOG_LEVEL": "warning",
}

SLOWEST_RESPONSE_SECONDS = 10.0


@dataclass
class FuzzRun:
    base_url: str
    session: requests.Session
    cases: int = 0
    request_seconds: float = 0.0
    statuses: dict[tuple[str, int], int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def run_case(self, case) -> None:
        self.cases += 1
        started = time.monotonic()
        try:
            response = case.call(base_url=self.base_url, session=self.session, headers={"X-API-Key": API_KEYS[0]},
                                 timeout=SLOWEST_RESPONSE_SECONDS)
        except requests.RequestException as exc:  # a hang or a dropped connection is a failure too
            self.failures.append(f"{case.operation.label}: {type(exc).__name__}: {exc}\n  body: {_short(case.body)}")
            return
        finally:
            self.request_seconds += time.monotonic() - started
        key = (case.operation.label, response.status_code)
        self.statuses[key] = self.statuses.get(key, 0) + 1
        try:
            case.validate_response(response, checks=CHECKS, headers={"X-API-Key": API_KEYS[0]})
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - every failing case is reported at the end
            self.failures.append(
                f"{case.operation.label} -> {response.status_code}: {str(exc).strip()[:600]}\n"
                f"  body: {_short(case.body)}\n  response: {response.text[:300]!r}"
            )


def _server_errors(base_url: str) -> float:
    """5xx answers the server has counted so far (/ready's 503s while the model loads included)."""
    metrics = httpx.get(f"{base_url}/metrics", timeout=5).text
    pattern = r'^zhenping_http_requests_total\{[^}]*status="5\d\d"\} ([0-9.e+]+)$'
    return sum(float(m) for m in re.findall(pattern, metrics, re.MULTILINE))


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 300 else text[:300] + "..."


def _fuzz(run: FuzzRun, strategy, examples: int, rng_seed: int) -> None:
    @seed(rng_seed)
    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), derandomize=False)
    @given(case=strategy)
    def fuzz_one(case):
        run.run_case(case)

    fuzz_one()


@pytest.fixture(scope="module")
def fuzz_server(tiny_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    server = start_server(tiny_model_dir, tmp / "server.log", {**FUZZ_SETTINGS, "ZHENPING_DATA_DIR": str(tmp / "data")})
    yield server
    server.stop()


def test_fuzzed_requests_get_documented_answers_and_no_5xx(fuzz_server):
    schema = schemathesis.openapi.from_url(f"{fuzz_server.base_url}/openapi.json", config=CONFIG)
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {op.label for op in operations}
    assert {"POST /v1/score", "POST /v1/rank", "POST /v1/feedback", "GET /health"} <= labels
    with_body = [op for op in operations if op.body]
    without_body = [op for op in operations if not op.body]

    errors_before = _server_errors(fuzz_server.base_url)
    run = FuzzRun(fuzz_server.base_url, requests.Session())
    started = time.monotonic()
    for op in without_body:
        _fuzz(run, op.as_strategy(GenerationMode.POSITIVE), 10, FUZZ_SEED + 1)
    # The rest goes to the request bodies, valid and invalid; repeat rounds with a
    # new seed until the budget is spent (Hypothesis may stop a round early).
    pairs = [(op, mode) for op in with_body for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)]
    round_seed = 0
    while run.cases < FUZZ_CASES and round_seed < 20:
        before = run.cases
        share = max(1, -(-(FUZZ_CASES - run.cases) // len(pairs)))
        for op, mode in pairs:
            _fuzz(run, op.as_strategy(mode), share, FUZZ_SEED + 1000 + round_seed)
        round_seed += 1
        assert run.cases > before, "Hypothesis generated no new cases"
    seconds = time.monotonic() - started

    summary = ", ".join(f"{label} {status}: {n}" for (label, status), n in sorted(run.statuses.items()))
    for failure in run.failures:
        print(failure)
    print(f"\nfuzzed {run.cases} cases in {seconds:.0f} s ({run.request_seconds:.0f} s waiting for responses): "
          f"{summary}")
    assert run.cases >= FUZZ_CASES
    assert not run.failures, f"{len(run.failures)} of {run.cases} cases failed:\n" + "\n".join(run.failures[:20])
    assert not any(status >= 500 for _, status in run.statuses)
    # Both outcomes were exercised: scores and refusals.
    assert run.statuses.get(("POST /v1/score", 200)) and run.statuses.get(("POST /v1/score", 422))

    assert httpx.get(f"{fuzz_server.base_url}/ready", timeout=5).status_code == 200
    assert _server_errors(fuzz_server.base_url) == errors_before
    log = fuzz_server.log()
    assert "Traceback" not in log and "unhandled error" not in log, log[-3000:]
