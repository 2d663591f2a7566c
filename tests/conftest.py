"""Shared fixtures: a tiny random checkpoint built once per test session."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.helpers import make_tiny_checkpoint  # noqa: E402

SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A complete scorer directory with a random 2-layer BERT (session-wide, read-only)."""
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "model")


def pytest_collection_modifyitems(config, items):
    if SHARED.is_dir():
        return
    skip = pytest.mark.skip(reason="../shared (corpora and gold labels) is not present")
    for item in items:
        if "real_data" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _zhenping_logs_reach_caplog(request):
    """The service stops the ``zhenping`` logger propagating (``zhenping.api.main._configure_logging``);
    its modules log under it (``zhenping.model.scorer``, ...), so let caplog see them."""
    if "caplog" not in request.fixturenames:
        yield
        return
    log = logging.getLogger("zhenping")
    saved = log.propagate
    log.propagate = True
    try:
        yield
    finally:
        log.propagate = saved
