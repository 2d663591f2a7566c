"""Where a model comes from: local folders, Hub ids, and folders that do not exist.

A path that looks local and is not there is reported at once as a missing folder, by
every command that loads a model; only an ``owner/name`` that is not on disk goes to
the Hub, and an unreachable Hub fails at once instead of after the client's retries.
"""

from __future__ import annotations

import re
import time

import pytest
from typer.testing import CliRunner

from zhenping.model.scorer import ModelLoadError, Scorer
from zhenping.training.cli import app

FAST = 3.0  # seconds: what "at once" allows on a busy 2-core machine


@pytest.fixture
def in_project(tmp_path, monkeypatch):
    """A working folder with a ``runs/`` folder, as after `zhenping prepare`."""
    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def timed_load(name, **kw):
    started = time.perf_counter()
    with pytest.raises(ModelLoadError) as err:
        Scorer.from_pretrained(name, **kw)
    return str(err.value), time.perf_counter() - started


@pytest.mark.parametrize("name, reason", [
    ("runs/model-mine", "its parent folder 'runs/' exists, so it is read as a local path, not a Hub id"),
    ("./model-mine", "a file-system path, not a Hub id"),
    ("/nonexistent-zhenping/model", "a file-system path, not a Hub id"),
    ("~/nonexistent-zhenping-model", "a file-system path, not a Hub id"),
])
def test_a_missing_local_folder_is_named_at_once(in_project, name, reason):
    message, seconds = timed_load(name)
    assert message == f"model directory {name!r} does not exist ({reason}); check the path"
    assert seconds < FAST


def test_an_unreachable_hub_fails_at_once(in_project, monkeypatch):
    from huggingface_hub import constants

    # Nothing listens on port 9 of this machine: the Hub "cannot be reached".
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for key in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(key, raising=False)
    message, seconds = timed_load("nobody-zhenping/missing-model", cache_dir=in_project / "hub")
    assert message.startswith("could not fetch 'nobody-zhenping/missing-model' from the Hugging Face Hub: "
                              "it is not in the local cache and the Hub cannot be reached")
    assert seconds < FAST


def test_offline_mode_fails_at_once(in_project, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    message, seconds = timed_load("nobody-zhenping/missing-model", cache_dir=in_project / "hub")
    assert message.startswith("could not fetch 'nobody-zhenping/missing-model'")
    assert seconds < FAST


def _feedback_db(path):
    from zhenping.api.db import FeedbackStore

    store = FeedbackStore(f"sqlite:///{path}")
    try:
        store.submit(text="物流很快,包装完好", levels={"warmth": 2}, submitter="mod-1")  # other axes need the model
    finally:
        store.close()
    return f"sqlite:///{path}"


def test_every_command_names_the_missing_folder_at_once(in_project):
    (in_project / "two.txt").write_text("沙发\n谢谢分享\n", encoding="utf-8")
    (in_project / "two.csv").write_text("text\n沙发\n谢谢分享\n", encoding="utf-8")
    url = _feedback_db(in_project / "feedback.db")
    missing = re.compile(r"model directory '?runs/model-mine'? does not exist")
    commands = {
        "score": ["score", "two.txt", "--model", "runs/model-mine", "--no-progress"],
        "score-dataset": ["score-dataset", "two.csv", "out.parquet", "--model", "runs/model-mine", "--no-progress"],
        "feedback export": ["feedback", "export", "-o", "out.jsonl", "--model", "runs/model-mine",
                            "--database-url", url, "--no-progress"],
        "evaluate": ["evaluate", "--model", "runs/model-mine", "--data", "runs/data", "--out", "runs/eval"],
        "serve": ["serve", "--model", "runs/model-mine"],
    }
    for name, args in commands.items():
        started = time.perf_counter()
        result = CliRunner().invoke(app, args)
        seconds = time.perf_counter() - started
        assert result.exit_code in (1, 2), (name, result.output)
        assert missing.search(result.output), (name, result.output)
        assert "Hugging Face" not in result.output, name
        assert seconds < FAST, (name, seconds)
