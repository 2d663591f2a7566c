"""Training faults: bad label rows, labels that no longer match the corpora, a killed
fine-tune run, and a crash in the middle of an export."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zhenping.model.axes import AXES
from tests.helpers import make_tiny_checkpoint
from tests.training.corpus_fixtures import WAIMAI, make_tiny, sha1, write_gold
from tests.training.test_train import _tiny_data, _tiny_encoder
from zhenping.training.cli import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def tree_digest(path: Path) -> dict[str, str]:
    """SHA-1 of every file under ``path``, by relative name."""
    return {str(p.relative_to(path)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------- label files


def test_prepare_names_file_and_line_of_malformed_rows(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"text": "挺好的", "warmth": 2, "substance": 1, "template": 0}, ensure_ascii=False) + "\n"
        "{not json\n"
        + json.dumps({"text": "一般", "warmth": 5, "substance": 1, "template": 0}, ensure_ascii=False) + "\n"
        + json.dumps({"warmth": 1, "substance": 1, "template": 1}) + "\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    result = runner.invoke(app, ["prepare", "--no-gold", "--extra", str(bad), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        "error: bad.jsonl: line 2: not valid JSON (Expecting property name enclosed in double quotes at column 2) "
        "(and 2 more invalid rows); fix the rows, or pass --skip-invalid to drop and list bad rows",
    ]
    listed = runner.invoke(app, ["prepare", "--no-gold", "--extra", str(bad), "--out", str(tmp_path / "listed"),
                                 "--skip-invalid"])
    assert listed.exit_code == 0, listed.output
    assert "skipped bad.jsonl: line 4: missing column(s) ['text']" in listed.output
    assert not out.exists()  # nothing half-written


def test_gold_label_whose_corpus_row_changed_is_named_by_id(tmp_path):
    root, gold, rows = make_tiny(tmp_path, n_variants=1)
    records = [json.loads(line) for line in (gold / "gold_v1.jsonl").read_text(encoding="utf-8").splitlines()]
    changed = f"{WAIMAI}:2"
    for rec in records:
        if rec["id"] == changed:
            rec["sha1"] = sha1(rows[changed][0] + "(labelled before an edit)")
    write_gold(gold / "gold_v1.jsonl", records)

    result = runner.invoke(app, ["prepare", "--corpora", str(root), "--gold", str(gold), "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    assert f"warning: gold labels not joined: 1 changed: {changed}; those ids are left out" in result.output
    manifest = json.loads((tmp_path / "a" / "prepare_manifest.json").read_text(encoding="utf-8"))
    assert manifest["gold"]["changed"] == [changed]
    assert manifest["counts"]["total"] == len(rows) - 1

    strict = runner.invoke(app, ["prepare", "--strict", "--corpora", str(root), "--gold", str(gold),
                                 "--out", str(tmp_path / "b")])
    assert strict.exit_code == 1
    assert strict.stderr.strip() == (
        f"error: gold labels not joined: 1 changed: {changed} (run without --strict to leave them out)")


# ----------------------------------------------------------------- kill -9 and resume


def train_command(data: Path, enc: Path, ft: Path, out: Path, epochs: int) -> list[str]:
    return [sys.executable, "-c", "from zhenping.training.cli import app; app()", "train",
            "--out", str(out), "--version", "resume-test",
            f"--data_dir={data}", f"--base={enc}", f"--out_dir={ft}", f"--epochs={epochs}",
            "--batch_size=4", "--max_length=32", "--patience=1000", "--num_threads=1", "--lr=1e-4"]


def complete_checkpoints(ft: Path) -> list[Path]:
    return [p for p in ft.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]


@pytest.mark.slow
def test_killed_fine_tune_resumes_from_the_last_checkpoint(tmp_path):
    enc = _tiny_encoder(tmp_path / "enc")
    data = _tiny_data(tmp_path / "data", n=40)
    ft, out = tmp_path / "ft", tmp_path / "model"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    cmd = train_command(data, enc, ft, out, epochs=8)

    log1 = tmp_path / "first.log"
    with open(log1, "wb") as fh:
        first = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while not complete_checkpoints(ft):
            assert first.poll() is None, log1.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "no checkpoint after 300 s"
            time.sleep(0.1)
        first.send_signal(signal.SIGKILL)  # no cleanup, no atexit: as a power cut or the OOM killer
        assert first.wait(timeout=30) == -signal.SIGKILL
    finally:
        if first.poll() is None:
            first.kill()
    assert not out.exists()
    kept = max(complete_checkpoints(ft), key=lambda p: int(p.name.split("-")[1]))
    step = int(kept.name.split("-")[1])
    assert step < 8 * 10  # 40 rows, batch 4: 10 steps an epoch; it was killed before the end

    # A checkpoint cut short by the kill (no trainer_state.json) is skipped, not loaded.
    partial = ft / f"checkpoint-{step + 1000}"
    partial.mkdir(exist_ok=True)
    (partial / "model.safetensors").write_bytes(b"cut short")

    second = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"skipping {partial}: its save did not finish (no readable trainer_state.json)" in second.stderr
    resumed = [line for line in second.stderr.splitlines() if line.startswith("resuming from ")]
    assert resumed and Path(resumed[0].removeprefix("resuming from ")).name.startswith("checkpoint-")
    assert int(Path(resumed[0].removeprefix("resuming from ")).name.split("-")[1]) >= step
    assert f"model exported to {out}" in second.stderr

    from zhenping.model.scorer import Scorer

    scorer = Scorer.from_pretrained(out)
    assert scorer.model_version == "resume-test"
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["training"]["finetune"]["epochs_run"] == pytest.approx(8)
    assert not list(tmp_path.glob(".model.*"))


# ----------------------------------------------------------------- export


@pytest.fixture()
def previous_model(tmp_path):
    model = make_tiny_checkpoint(tmp_path / "model", seed=1)
    return model, tree_digest(model)


def tiny_model_and_tokenizer(tmp_path):
    from transformers import AutoTokenizer, BertForSequenceClassification

    src = make_tiny_checkpoint(tmp_path / "src", seed=2)
    return BertForSequenceClassification.from_pretrained(src), AutoTokenizer.from_pretrained(src)


def assert_untouched(model: Path, digest: dict[str, str]) -> None:
    assert tree_digest(model) == digest
    assert sorted(p.name for p in model.parent.iterdir() if p.name.startswith(f".{model.name}")) == []
    from zhenping.model.scorer import Scorer

    assert Scorer.from_pretrained(model).model_version == "tiny-test"


def test_crash_while_writing_the_export_keeps_the_previous_model(tmp_path, previous_model, monkeypatch):
    import zhenping.training.export as export

    model, digest = previous_model
    new_model, tok = tiny_model_and_tokenizer(tmp_path)

    def crash(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export, "save_tokenizer", crash)  # after the weights are written
    cfg = export.make_scorer_config(max_length=64, model_version="never-finished")
    with pytest.raises(OSError, match="No space left on device"):
        export.write_model_dir(new_model, tok, model, cfg)
    assert_untouched(model, digest)


def test_failed_swap_puts_the_previous_model_back(tmp_path, previous_model, monkeypatch):
    import zhenping.training.export as export

    model, digest = previous_model
    new_model, tok = tiny_model_and_tokenizer(tmp_path)
    real_rename = Path.rename

    def rename(self, target):
        moving_in = self.name.startswith(".model.") and not self.name.startswith(".model.old-")
        if Path(target) == model and moving_in:  # the finished export, not the old model coming back
            raise KeyboardInterrupt
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    cfg = export.make_scorer_config(max_length=64, model_version="never-finished")
    with pytest.raises(KeyboardInterrupt):
        export.write_model_dir(new_model, tok, model, cfg)
    monkeypatch.undo()
    assert_untouched(model, digest)


def test_crash_during_train_evaluation_keeps_the_previous_model(tmp_path, previous_model, monkeypatch):
    import zhenping.training.evaluate
    import zhenping.training.train
    from zhenping import training

    model, digest = previous_model
    new_model, tok = tiny_model_and_tokenizer(tmp_path)
    data = _tiny_data(tmp_path / "data", n=10)
    monkeypatch.setattr(training.train, "train", lambda cfg: (new_model, tok, {"train_rows": 10}))

    def crash(*args, **kwargs):
        raise MemoryError("evaluation ran out of memory")

    monkeypatch.setattr(training.evaluate, "evaluate_model", crash)
    cfg = training.train.FinetuneConfig(data_dir=str(data), base="unused", out_dir=str(tmp_path / "ft"),
                                          max_length=32)
    with pytest.raises(MemoryError):
        training.train.run_train(cfg, model, model_version="never-finished", baselines=tmp_path / "none.json")
    assert_untouched(model, digest)  # no staging folder left beside it either


def test_export_replaces_the_previous_model_when_it_succeeds(tmp_path, previous_model):
    from zhenping.model.scorer import Scorer
    from zhenping.training.export import make_scorer_config, write_model_dir

    model, digest = previous_model
    new_model, tok = tiny_model_and_tokenizer(tmp_path)
    write_model_dir(new_model, tok, model, make_scorer_config(max_length=64, model_version="v2"))
    assert tree_digest(model) != digest
    assert Scorer.from_pretrained(model).model_version == "v2"
    assert Scorer.from_pretrained(model).axes == AXES
    assert [p.name for p in model.parent.iterdir() if p.name.startswith(".model")] == []
