"""The model store: promotion only when not worse, refusal, rollback, listing, the
service serving the current version, and the feedback → export → train → promote loop."""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest
from typer.testing import CliRunner

from zhenping.model.axes import AXES
from zhenping.model.scorer import Scorer
from tests.helpers import TINY_TEXTS, make_tiny_checkpoint
from zhenping.training.store import (
    CURRENT,
    ModelStore,
    StoreError,
    compare,
    is_store,
    promote,
    resolve_model_dir,
)

runner = CliRunner()


def cli(*args: str):
    from zhenping.training.cli import app

    return runner.invoke(app, list(args), catch_exceptions=False)


def metrics(**rho):
    return {"n": 100, "axes": list(AXES), "overall": {a: {"spearman": rho.get(a)} for a in AXES}}


def retag(model_dir, version):
    cfg_path = model_dir / "scorer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["model_version"] = version
    cfg_path.write_text(json.dumps(cfg))
    return model_dir


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two tiny random models that score differently: 'good' (seed 0) and 'bad' (seed 1)."""
    root = tmp_path_factory.mktemp("models")
    good = retag(make_tiny_checkpoint(root / "good", seed=0), "good-v1")
    bad = retag(make_tiny_checkpoint(root / "bad", seed=1), "bad-v1")
    return good, bad


@pytest.fixture(scope="module")
def shipped_dir(tmp_path_factory):
    """A tiny stand-in for the shipped model (seed 2), version 0 of the stores below."""
    return retag(make_tiny_checkpoint(tmp_path_factory.mktemp("shipped") / "model", seed=2), "shipped-v0")


@pytest.fixture
def tiny_shipped(shipped_dir, monkeypatch):
    import zhenping.training.store
    from zhenping import training

    monkeypatch.setattr(training.store, "shipped_model_dir", lambda: shipped_dir)
    return shipped_dir


@pytest.fixture(scope="module")
def data(models, tmp_path_factory):
    """A test split whose gold scores are the 'good' model's own: it ranks perfectly, 'bad' does not."""
    good, _ = models
    texts = [t + s for t in TINY_TEXTS for s in ("", "!", "。。", "吧")]
    scores = Scorer.from_pretrained(good).score(texts)
    folder = tmp_path_factory.mktemp("data")
    rows = [{"id": f"t{i}", "source": "tiny", "text": t, **s.as_dict()} for i, (t, s) in enumerate(zip(texts, scores))]
    (folder / "test.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return folder


# ------------------------------------------------------------------ the rule


def test_compare_accepts_within_tolerance_and_names_every_reason_to_refuse():
    ok = compare(metrics(warmth=0.50, substance=0.40, template=0.60),
                 metrics(warmth=0.51, substance=0.40, template=0.60), tolerance=0.005, max_axis_drop=0.02)
    assert ok.accepted and ok.reasons == []
    assert ok.candidate_mean == pytest.approx(0.5) and ok.current_mean == pytest.approx(0.50333333)

    bad = compare(metrics(warmth=0.40, substance=0.45, template=0.60),
                  metrics(warmth=0.50, substance=0.40, template=0.60), tolerance=0.005, max_axis_drop=0.02)
    assert not bad.accepted
    assert bad.reasons == [
        "warmth Spearman ρ: new 0.400 < current 0.500; allowed drop 0.020",
        "mean Spearman ρ: new 0.483 < current 0.500; allowed drop 0.005",
    ]
    plain = compare(metrics(warmth=0.71, substance=0.71, template=0.71),
                    metrics(warmth=0.715, substance=0.715, template=0.715), tolerance=0.004)
    assert plain.reasons == ["mean Spearman ρ: new 0.710 < current 0.715; allowed drop 0.004"]
    undefined = compare(metrics(warmth=None, substance=0.9, template=0.9), metrics(warmth=0.1, substance=0.1, template=0.1))
    assert undefined.reasons == [
        "warmth Spearman ρ: new is undefined (constant scores), current 0.100"
    ]
    table = bad.table()
    assert table.splitlines() == [
        "Spearman ρ on 100 rows:",
        "              candidate    current   change",
        "  warmth          0.400      0.500   -0.100",
        "  substance       0.450      0.400   +0.050",
        "  template        0.600      0.600   +0.000",
        "  mean            0.483      0.500   -0.017",
    ]
    with pytest.raises(ValueError, match="tolerance and max_axis_drop must be >= 0"):
        compare(metrics(), metrics(), tolerance=-1)


# ------------------------------------------------------------------ promote, refuse, rollback


def test_promote_refuse_rollback_and_list(models, data, tmp_path, tiny_shipped):
    good, bad = models
    store = ModelStore(tmp_path / "store")
    lines: list[str] = []

    # A new store starts with the shipped model as version 0; the first candidate is compared with it.
    first = promote(good, store, data_dir=data, echo=lines.append, progress=False)
    assert first.promoted and first.previous == "shipped-v0" and first.comparison.accepted
    assert lines[0].startswith(f"new model store {store.root}: adding the shipped model shipped-v0 as version 0")
    assert "comparing candidate good-v1 with current shipped-v0 on the test split of" in lines[1]
    assert store.current() == "good-v1" and is_store(store.root)
    assert (store.root / CURRENT).is_symlink() and os.readlink(store.root / CURRENT) == "versions/good-v1"
    assert resolve_model_dir(store.root) == store.versions_dir / "good-v1"

    lines.clear()
    refused = promote(bad, store, data_dir=data, echo=lines.append, progress=False)
    assert not refused.promoted and store.current() == "good-v1"
    assert not (store.versions_dir / "bad-v1").exists()
    assert refused.comparison.current_mean == pytest.approx(1.0)
    assert refused.comparison.candidate_mean < 0.9
    assert lines[-1] == ("not promoted: bad-v1 is worse than good-v1; good-v1 stays current (--force promotes it "
                         "anyway; --tolerance and --max-axis-drop set the allowed drops)")
    assert any(line.startswith("Spearman ρ on 60 rows") for line in lines)
    assert store.history()[-1]["action"] == "refuse"

    # The same model under another name is not worse: promoted, and the store serves it under that name.
    same = promote(good, store, data_dir=data, version="good-v2", echo=lines.append, progress=False)
    assert same.promoted and same.previous == "good-v1" and same.comparison.accepted
    assert store.current() == "good-v2"
    assert Scorer.from_pretrained(resolve_model_dir(store.root)).model_version == "good-v2"

    forced = promote(bad, store, data_dir=data, force=True, echo=lines.append, progress=False)
    assert forced.promoted and store.current() == "bad-v1" and store.history()[-1]["forced"] is True

    assert store.rollback() == ("bad-v1", "good-v2")
    assert store.rollback() == ("good-v2", "good-v1")
    listed = {v.version: v for v in store.list()}
    assert [v.version for v in store.list()] == ["shipped-v0", "good-v1", "good-v2", "bad-v1"]
    assert listed["good-v1"].status == "current" and listed["good-v1"].test_mean_spearman == pytest.approx(1.0)
    assert listed["good-v2"].status == "rolled back" and listed["bad-v1"].status == "rolled back"
    assert listed["shipped-v0"].status == "promoted earlier"
    assert store.rollback(to="0") == ("good-v1", "shipped-v0")  # version 0, by number
    assert Scorer.from_pretrained(resolve_model_dir(store.root)).model_version == "shipped-v0"
    with pytest.raises(StoreError, match="'shipped-v0' is the first version promoted"):
        store.rollback()

    with pytest.raises(StoreError, match="version 'good-v1' is already in model store"):
        promote(good, store, data_dir=data, progress=False)
    with pytest.raises(StoreError, match="version name must be 1-100 letters"):
        promote(good, store, data_dir=data, version="../escape", progress=False)


def test_cli_promote_refusal_exits_1_and_rollback_and_list(models, data, tmp_path, tiny_shipped):
    good, bad = models
    store = str(tmp_path / "store")
    first = cli("promote", str(good), "--store", store, "--data", str(data))
    assert first.exit_code == 0, first.output
    refused = cli("promote", str(bad), "--store", store, "--data", str(data))
    assert refused.exit_code == 1
    assert "not promoted: bad-v1 is worse than good-v1; good-v1 stays current" in refused.output
    assert "  worse: warmth Spearman ρ: new " in refused.output
    loose = cli("promote", str(bad), "--store", store, "--data", str(data), "--tolerance", "2",
                "--max-axis-drop", "2")
    assert loose.exit_code == 0 and "promoted bad-v1 (was good-v1)" in loose.output
    listing = cli("models", "list", "--store", store)
    assert listing.exit_code == 0
    assert listing.output.splitlines()[1].startswith("  shipped-v0 ")
    assert listing.output.splitlines()[3].startswith("* bad-v1 ")
    back = cli("rollback", "--store", store)
    assert back.exit_code == 0 and "rolled back bad-v1 -> good-v1" in back.output
    zero = cli("rollback", "--store", store, "--to", "0")
    assert zero.exit_code == 0 and "rolled back good-v1 -> shipped-v0" in zero.output
    again = cli("rollback", "--store", store)
    assert again.exit_code == 2 and "there is no earlier one to roll back to" in again.output
    listed = json.loads(cli("models", "list", "--store", store, "--json").output)
    assert [(v["version"], v["current"]) for v in listed] == [("shipped-v0", True), ("good-v1", False),
                                                              ("bad-v1", False)]


def test_an_empty_store_cannot_be_served_or_rolled_back(tmp_path):
    from zhenping.api.service import ModelLoadError, check_model_dir

    store = ModelStore(tmp_path / "store")
    store.versions_dir.mkdir(parents=True)
    with pytest.raises(ModelLoadError, match="has no current version; promote one with `zhenping promote"):
        check_model_dir(store.root)
    with pytest.raises(StoreError, match="has no current version; nothing to roll back"):
        store.rollback()


def test_the_service_serves_the_current_version_and_info_names_it(models, data, tmp_path, tiny_shipped):
    from fastapi.testclient import TestClient

    from zhenping.api.main import create_app
    from zhenping.api.settings import Settings

    good, bad = models
    store = ModelStore(tmp_path / "store")
    promote(good, store, data_dir=data, echo=lambda m: None, progress=False)
    promote(bad, store, data_dir=data, force=True, echo=lambda m: None, progress=False)

    def served_version() -> str:
        app = create_app(Settings(model_dir=store.root, max_wait_ms=0), on_load_failure=None)
        with TestClient(app) as client:
            deadline = time.monotonic() + 120
            while client.get("/ready").status_code != 200:
                assert time.monotonic() < deadline, client.get("/ready").text
                time.sleep(0.1)
            info = client.get("/info").json()
            scored = client.post("/v1/score", json={"comments": [{"text": "好听"}]}).json()
        assert scored["model"].endswith("@" + info["model_version"])
        return info["model_version"]

    assert served_version() == "bad-v1"
    store.rollback()
    assert served_version() == "good-v1"  # after a restart


def test_a_new_store_starts_with_the_shipped_model_as_version_0(models, data, tmp_path):
    from zhenping.model.scorer import DEFAULT_MODEL_DIR

    shipped = json.loads((DEFAULT_MODEL_DIR / "scorer_config.json").read_text())["model_version"]
    good, _ = models
    store = ModelStore(tmp_path / "store")
    lines: list[str] = []
    result = promote(good, store, data_dir=data, echo=lines.append, progress=False)
    assert result.previous == shipped and result.comparison is not None  # compared with the shipped model
    assert [v.version for v in store.list()] == [shipped, "good-v1"]
    assert store.history()[0] == {**store.history()[0], "action": "add", "version": shipped,
                                  "source": str(DEFAULT_MODEL_DIR)}
    assert result.promoted  # the gold scores are good-v1's own: nothing ranks them better
    assert store.rollback(to="0") == ("good-v1", shipped)
    assert Scorer.from_pretrained(resolve_model_dir(store.root)).model_version == shipped


# ------------------------------------------------------------------ the whole loop


@pytest.mark.slow
def test_feedback_export_train_and_promote(tmp_path, monkeypatch):
    import zhenping.training.store
    from zhenping import training
    from zhenping.api.db import FeedbackStore

    monkeypatch.setattr(training.store, "shipped_model_dir", lambda: None)  # no version 0: nothing to compare with
    from tests.training.test_train import _tiny_data, _tiny_encoder

    enc = _tiny_encoder(tmp_path / "enc")
    data = _tiny_data(tmp_path / "data")
    held_out_text = json.loads((data / "test.jsonl").read_text().splitlines()[0])["text"]
    model_dir = make_tiny_checkpoint(tmp_path / "current")

    feedback = FeedbackStore(f"sqlite:///{tmp_path / 'feedback.db'}")
    feedback.submit(text="默认好评，好评！", levels={"template": 3, "substance": 0}, submitter="a")
    feedback.submit(text="默认好评,好评!", levels={"template": 2, "warmth": 1}, submitter="b")  # same text, normalised
    feedback.submit(text="抱抱你,会好起来的", levels={"warmth": 3, "substance": 1, "template": 0}, submitter="a")
    feedback.submit(text="第二张图里那只橘猫好胖", levels={"warmth": 2}, submitter="a")
    feedback.submit(comment_id="c-9", levels={"warmth": 0})
    feedback.submit(text=held_out_text, levels={"warmth": 3})
    feedback.close()

    monkeypatch.setenv("ZHENPING_DATABASE_URL", f"sqlite:///{tmp_path / 'feedback.db'}")
    out = tmp_path / "feedback.jsonl"
    exported = cli("feedback", "export", "-o", str(out), "--model", str(model_dir), "--data", str(data),
                   "--no-progress")
    assert exported.exit_code == 0, exported.output
    assert "6 feedback records: 3 comments written to" in exported.output
    assert "1 named their comment by id only (no text to train on): left out" in exported.output
    assert "1 are on validation/test texts of" in exported.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    by_text = {r["text"][:4]: r for r in rows}
    stock = by_text["默认好评"]
    assert stock["template"] == 3  # mean of 3 and 2, rounded half up
    assert stock["substance"] == 0 and stock["warmth"] == 1
    assert stock["corrected"] == ["warmth", "substance", "template"] and stock["filled_by"] is None
    assert stock["submitters"] == 2
    hug = by_text["抱抱你,"]
    assert (hug["warmth"], hug["substance"], hug["template"]) == (3, 1, 0)
    cat = by_text["第二张图"]
    predicted = Scorer.from_pretrained(model_dir).score([cat["text"]])[0].levels
    assert cat["warmth"] == 2 and cat["corrected"] == ["warmth"] and cat["filled_by"] == "tiny-test"
    assert (cat["substance"], cat["template"]) == (predicted["substance"], predicted["template"])
    assert "1 comments had axes nobody corrected: uncorrected axes filled with tiny-test's levels" in exported.output
    assert all(isinstance(r[a], int) and 0 <= r[a] <= 3 for r in rows for a in AXES)

    from zhenping.training.userdata import load_labelled

    assert len(load_labelled(out)) == 3  # the training format reads it back

    store = tmp_path / "store"
    trained = cli("train", "--extra", str(out), "--out", str(tmp_path / "model"), "--base", str(enc),
                  "--version", "retrained-v1", "--promote", "--store", str(store),
                  f"--data_dir={data}", f"--out_dir={tmp_path / 'ft'}", "--epochs=1", "--batch_size=16",
                  "--max_length=32", "--patience=1")
    assert trained.exit_code == 0, trained.output
    assert "promoting retrained-v1 without comparison" in trained.output
    assert ModelStore(store).current() == "retrained-v1"
    metrics_json = json.loads((store / "versions" / "retrained-v1" / "metrics.json").read_text())
    assert metrics_json["training"]["finetune"]["train_rows"] == 60 + 3

    # A second candidate is compared with it on the same test split.
    shutil.copytree(tmp_path / "model", tmp_path / "model2")
    retag(tmp_path / "model2", "retrained-v2")
    second = cli("promote", str(tmp_path / "model2"), "--store", str(store), "--data", str(data))
    assert second.exit_code == 0, second.output
    assert "comparing candidate retrained-v2 with current retrained-v1 on the test split" in second.output
    assert "promoted retrained-v2 (was retrained-v1)" in second.output
