"""The multi-task stage on tiny corpora: task data, held-out exclusion, saved encoder."""

from __future__ import annotations

import csv
import gzip
import json

from zhenping.training.multitask import MultitaskConfig, load_task_data, run
from tests.training.test_train import _tiny_encoder


def _write_csv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, quoting=csv.QUOTE_ALL)
        w.writerow(header)
        w.writerows(rows)


def _tiny_corpora(root):
    _write_csv(root / "cold" / "train.csv.gz", ["split", "topic", "label", "TEXT"],
               [["train", "race", str(i % 2), f"评论{i}号" + ("你脑子有病吧" if i % 2 else "谢谢分享")]
                for i in range(40)] + [["train", "race", "1", "评论0号谢谢分享"]])  # a duplicate text
    _write_csv(root / "waimai_10k" / "waimai_10k.csv.gz", ["label", "review"],
               [[str(i % 2), f"外卖{i}" + ("很好吃" if i % 2 else "太难吃了")] for i in range(30)])
    return root


def test_task_data_is_deduplicated_and_labelled(tmp_path):
    root = _tiny_corpora(tmp_path / "corpora")
    cfg = MultitaskConfig(corpora=str(root), gold=str(tmp_path / "nogold"), tasks=["offensive", "sentiment"])
    data = load_task_data(cfg)
    texts, ys = data["offensive"]
    assert len(texts) == 40  # the repeated text is kept once
    assert set(ys) == {0, 1}
    assert len(data["sentiment"][0]) == 30


def test_multitask_saves_encoder_with_summary(tmp_path):
    root = _tiny_corpora(tmp_path / "corpora")
    enc = _tiny_encoder(tmp_path / "enc")
    cfg = MultitaskConfig(base=str(enc), out_dir=str(tmp_path / "mt"), corpora=str(root),
                          gold=str(tmp_path / "nogold"), steps=6, batch_size=4, warmup_steps=1,
                          max_length=16)
    out = run(cfg)
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    summary = json.loads((out / "multitask_summary.json").read_text())
    assert summary["steps"] == 6
    assert set(summary["tasks"]) == {"offensive", "sentiment"}


def test_multitask_distils_a_teacher_on_unlabelled_text(tmp_path):
    import numpy as np

    from zhenping.training.baselines import TfidfRidgeBaseline
    from tests.helpers import TINY_TEXTS

    rng = np.random.default_rng(0)
    teacher = TfidfRidgeBaseline().fit(TINY_TEXTS * 2, rng.random((len(TINY_TEXTS) * 2, 3)))
    teacher_path = teacher.save(tmp_path / "teacher.joblib")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"{t}{i}" for i, t in enumerate(TINY_TEXTS * 4)) + "\n", encoding="utf-8")
    enc = _tiny_encoder(tmp_path / "enc")
    cfg = MultitaskConfig(base=str(enc), out_dir=str(tmp_path / "mt"), corpora=str(tmp_path / "empty"),
                          gold=str(tmp_path / "nogold"), tasks=["offensive"], steps=6, batch_size=4,
                          warmup_steps=1, max_length=16, distill_teacher=str(teacher_path),
                          distill_corpus=str(corpus), distill_texts=20)
    (tmp_path / "empty").mkdir()
    out = run(cfg)
    summary = json.loads((out / "multitask_summary.json").read_text())
    assert summary["tasks"] == ["distill"]
    assert summary["texts"]["distill"] == 20
    assert 0.0 <= summary["distill_mae_last_100_batches"] <= 1.0


def test_teachers_are_averaged_baseline_and_scorer_folder(tmp_path, tiny_model_dir):
    import numpy as np
    import pytest

    from zhenping.model.normalize import normalize_text
    from zhenping.model.scorer import Scorer
    from zhenping.training.baselines import TfidfRidgeBaseline
    from zhenping.training.multitask import teacher_scores
    from tests.helpers import BATCHING_TOL, TINY_TEXTS

    rng = np.random.default_rng(1)
    baseline = TfidfRidgeBaseline().fit(TINY_TEXTS * 2, rng.random((len(TINY_TEXTS) * 2, 3)))
    path = baseline.save(tmp_path / "teacher.joblib")
    texts = [normalize_text(t) for t in TINY_TEXTS]
    alone = teacher_scores(str(path), texts)
    assert np.allclose(alone, baseline.predict(texts), atol=1e-6)
    scorer = Scorer.from_pretrained(tiny_model_dir, backend="auto")
    model = np.array([[s.warmth, s.substance, s.template] for s in scorer.score_normalized(texts)])
    both = teacher_scores(f"{path}, {tiny_model_dir}", texts)
    assert both.shape == (len(texts), 3)
    assert np.allclose(both, (baseline.predict(texts) + model) / 2, atol=BATCHING_TOL)
    with pytest.raises(FileNotFoundError, match="neither a fitted baseline file nor a scorer folder"):
        teacher_scores(f"{path},{tmp_path / 'missing'}", texts)


def test_a_scorer_folder_teacher_reads_as_many_tokens_as_asked(tiny_model_dir):
    import numpy as np

    from zhenping.model.normalize import normalize_text
    from zhenping.model.scorer import Scorer
    from zhenping.training.multitask import teacher_scores
    from tests.helpers import BATCHING_TOL

    # 40 and 62 characters: the same first 8 characters, different after them.
    texts = [normalize_text("质量很好物流很快" * 5), normalize_text("质量很好物流很快" + "你脑子有病吧" * 9)]
    own = teacher_scores(str(tiny_model_dir), texts)
    short = teacher_scores(str(tiny_model_dir), texts, max_length=10)
    # (a random tiny model: scores near 0.5 that differ in the fifth decimal)
    assert np.allclose(short[0], short[1], rtol=0, atol=1e-7)  # both cut to the same 10 tokens
    assert not np.allclose(own[0], own[1], rtol=0, atol=1e-5)  # the export's 64 tokens see the difference
    cut = Scorer.from_pretrained(tiny_model_dir, max_length=10).score_normalized(texts)
    assert np.allclose(short, [[s.warmth, s.substance, s.template] for s in cut], atol=BATCHING_TOL)
