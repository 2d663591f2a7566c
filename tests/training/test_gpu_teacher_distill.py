"""The GPU teacher's output as a distillation teacher: a tiny teacher run on CPU over a
tiny pack, its pack-order scores mapped back to corpus texts for fine-tuning's
pseudo rows (alone, averaged with a baseline, restricted to the texts it scored),
the folder completed into a scorer folder, and a corpus that is not the pack's refused."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from tests.helpers import synthetic_texts

from zhenping.training.pack import build_pack, doc_lines, load_pack, write_label_pack

_texts = synthetic_texts


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A corpus, a pack with labels, a tiny shipped-style model and a teacher run on CPU."""
    from transformers import RobertaPreLayerNormConfig, RobertaPreLayerNormForSequenceClassification

    from zhenping.training import gpu_teacher
    from zhenping.training.tokenizer import save_tokenizer, train_tokenizer

    root = tmp_path_factory.mktemp("distill")
    work = root / "work"
    work.mkdir()
    lines = _texts(300)
    (work / "corpus.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (work / "corpus_manifest.json").write_text(json.dumps({"stats": {"texts": len(lines)}}))  # the corpus is built
    tok = train_tokenizer(lines, vocab_size=120, min_frequency=1)
    model_dir = root / "shipped"
    config = RobertaPreLayerNormConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                                       num_attention_heads=2, intermediate_size=64, max_position_embeddings=514,
                                       type_vocab_size=2, pad_token_id=0, bos_token_id=2, eos_token_id=3,
                                       num_labels=3, problem_type="multi_label_classification")
    RobertaPreLayerNormForSequenceClassification(config).save_pretrained(model_dir)
    save_tokenizer(tok, model_dir)
    data = root / "data"
    data.mkdir()
    rng = random.Random(1)
    in_train = lines[:5]  # corpus texts that are also gold training texts: never pseudo rows
    for split, n in (("train", 40), ("validation", 12)):
        texts = _texts(n, seed=len(split)) + (in_train if split == "train" else [])
        rows = [{"id": f"{split}{i}", "text": t, "warmth": rng.choice([0, 1 / 3, 2 / 3, 1]),
                 "substance": rng.random(), "template": round(rng.random(), 3)} for i, t in enumerate(texts)]
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    pack = root / "pack"
    build_pack(pack, model_dir, work_dir=work, heldout_docs=30, echo=lambda m: None)
    write_label_pack(pack, data, max_length=32, echo=lambda m: None)
    out = root / "teacher"
    assert gpu_teacher.main(["--config", "gpu_teacher_tiny.toml", f"--pack={pack}", f"--out={out}"]) == 0
    return {"root": root, "corpus": work / "corpus.txt", "lines": lines, "model": model_dir, "pack": pack,
            "data": data, "out": out, "in_train": set(in_train), "tok": tok}


def _expected(t) -> dict[str, np.ndarray]:
    """Corpus text -> the teacher's scores, from the pack's document order."""
    header = load_pack(t["pack"]).header
    with np.load(t["out"] / "scores.npz") as z:
        scores = z["scores"].astype(np.float32)
    return {t["lines"][line]: scores[k] for k, line in enumerate(doc_lines(header))}


def _cfg(t, tmp_path, **kw):
    from zhenping.training.finetune import FinetuneConfig

    base = dict(data_dir=str(t["data"]), base=str(t["model"]), out_dir=str(tmp_path / "ft"), max_length=32,
                batch_size=16, epochs=1, patience=1, num_threads=1, pseudo_teacher=str(t["out"]),
                pseudo_corpus=str(t["corpus"]), pseudo_texts=-1)
    base.update(kw)
    return FinetuneConfig(**base)


def test_scores_npz_records_the_corpus_mapping(teacher):
    header = load_pack(teacher["pack"]).header
    with np.load(teacher["out"] / "scores.npz") as z:
        assert str(z["corpus_sha1"]) == header["corpus_sha1"] and int(z["corpus_lines"]) == 300
        assert int(z["seed"]) == header["seed"] and int(z["documents"]) == header["documents"]
    assert header["corpus_file"].endswith("corpus.txt")
    log = json.loads((teacher["out"] / "log.json").read_text())
    assert log["data"]["pack"] == str(teacher["pack"]) and log["data"]["corpus_sha1"] == header["corpus_sha1"]


def test_fine_tune_with_the_gpu_teacher_output_as_pseudo_teacher(teacher, tmp_path):
    from zhenping.training.finetune import pseudo_rows, read_split, train

    cfg = _cfg(teacher, tmp_path)
    gold = {r["text"] for s in ("train", "validation") for r in read_split(teacher["data"], s)}
    rows = pseudo_rows(cfg, gold)
    expected = _expected(teacher)
    assert len(rows) == 300 - 5  # every scored text (pseudo_texts = -1) but the gold training ones
    assert not {r["text"] for r in rows} & teacher["in_train"]
    tok = teacher["tok"]
    pk = load_pack(teacher["pack"])
    lines = doc_lines(pk.header)
    doc_of = {teacher["lines"][line]: k for k, line in enumerate(lines)}
    for r in rows:
        got = np.asarray([r["warmth"], r["substance"], r["template"]], dtype=np.float32)
        assert np.array_equal(got, expected[r["text"]])
        assert r["source"] == "pseudo"
    for r in rows[:20]:  # the text is the one the pack document was tokenised from
        assert pk.doc(doc_of[r["text"]]).tolist() == tok(r["text"], add_special_tokens=False)["input_ids"]
    # A sample of N texts, and the scores.npz path itself as the spec.
    some = pseudo_rows(_cfg(teacher, tmp_path, pseudo_texts=40,
                            pseudo_teacher=str(teacher["out"] / "scores.npz")), gold)
    assert 35 <= len(some) <= 40 and all(np.isclose(r["warmth"], expected[r["text"]][0]) for r in some)
    # A few fine-tuning steps with them.
    model, _, info = train(_cfg(teacher, tmp_path, pseudo_texts=60))
    assert info["train_rows"] == 45 + len(pseudo_rows(_cfg(teacher, tmp_path, pseudo_texts=60), gold))
    assert "teacher:" + str(teacher["out"]) in info["data_sha1"]


def test_averaged_with_a_baseline_only_over_the_texts_it_scored(teacher, tmp_path):
    """A scores file from a smaller pack (its first 100 documents) averaged with a
    TF-IDF baseline: only the 100 texts it scored are drawn."""
    from zhenping.training.baselines import TfidfRidgeBaseline
    from zhenping.training.finetune import pseudo_rows

    with np.load(teacher["out"] / "scores.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["scores"] = arrays["scores"][:100]
    arrays["documents"] = np.asarray(100)
    arrays.pop("tokens_sha1")
    part = tmp_path / "part.npz"
    np.savez(part, **arrays)
    rng = np.random.default_rng(0)
    train_texts = _texts(40, seed=5)
    baseline = TfidfRidgeBaseline(min_df=1).fit(train_texts, rng.random((40, 3)))
    bpath = baseline.save(tmp_path / "tfidf.joblib")
    rows = pseudo_rows(_cfg(teacher, tmp_path, pseudo_teacher=f"{part},{bpath}"), set())
    expected = _expected(teacher)
    header = load_pack(teacher["pack"]).header
    first = {teacher["lines"][line] for line in doc_lines(header)[:100]}
    assert {r["text"] for r in rows} == first
    texts = [r["text"] for r in rows]
    want = (np.stack([expected[t] for t in texts]).astype(np.float64) + baseline.predict(texts)) / 2
    got = np.asarray([[r["warmth"], r["substance"], r["template"]] for r in rows])
    assert np.allclose(got, want, atol=1e-6)


def test_a_corpus_that_is_not_the_packs_is_refused(teacher, tmp_path):
    from zhenping.training.finetune import pseudo_rows
    from zhenping.training.pack_scores import TeacherDataError

    other = tmp_path / "corpus.txt"
    other.write_text("\n".join(teacher["lines"][::-1]) + "\n", encoding="utf-8")
    with pytest.raises(TeacherDataError, match="not the corpus its pack was built from") as err:
        pseudo_rows(_cfg(teacher, tmp_path, pseudo_corpus=str(other)), set())
    assert "\n" not in str(err.value) and "SHA-1" in str(err.value)
    # A pack other than the one scored is refused too.
    capped = tmp_path / "capped"
    build_pack(capped, teacher["model"], work_dir=teacher["corpus"].parent, heldout_docs=30, max_tokens=800,
               echo=lambda m: None)
    with pytest.raises(TeacherDataError, match="another pack"):
        pseudo_rows(_cfg(teacher, tmp_path, pseudo_pack=str(capped)), set())


def test_completed_output_folder_is_a_scorer_and_scores_new_texts(teacher, tmp_path):
    import shutil

    from zhenping.model.scorer import Scorer
    from zhenping.training.finetune import pseudo_rows
    from zhenping.training.pack_scores import TeacherDataError, load_pack_scores, lookup, main

    out = tmp_path / "teacher"
    shutil.copytree(teacher["out"], out)
    table = load_pack_scores(out, teacher["corpus"])
    with pytest.raises(TeacherDataError, match="pack's documents only"):
        lookup(table, ["不在语料里的新评论"])
    assert main([str(out), f"--pack={teacher['pack']}"]) == 0
    scorer = Scorer.from_pretrained(out)
    import torch

    assert next(scorer._runner.model.parameters()).dtype == torch.float32  # float16 shards, loaded as float32
    texts = teacher["lines"][:8]
    got = np.asarray([[s.warmth, s.substance, s.template] for s in scorer.score_normalized(texts)])
    expected = _expected(teacher)
    assert np.allclose(got, np.stack([expected[t] for t in texts]), atol=5e-3)
    # As a teacher it now scores texts outside its pack with its model.
    table = load_pack_scores(out, teacher["corpus"])
    new = lookup(table, [texts[0], "不在语料里的新评论"])
    assert np.allclose(new[0], expected[texts[0]]) and np.isfinite(new[1]).all()
    assert len(pseudo_rows(_cfg(teacher, tmp_path, pseudo_teacher=str(out), pseudo_texts=10), set())) == 10
