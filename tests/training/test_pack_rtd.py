"""Pretraining pack round trip, RTD and MLM pretraining from a pack (with resume and
init_from), and the GPU teacher script end to end on CPU with a tiny pack."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from tests.helpers import synthetic_texts

from zhenping.training.pack import build_pack, load_label_pack, load_pack, pack_sequences, write_label_pack
from zhenping.training.pretrain import PretrainConfig, choose_positions, run

_texts = synthetic_texts


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A work dir with a corpus, a tokenizer, a pack with labels, and a tiny shipped-style model."""
    from transformers import RobertaPreLayerNormConfig, RobertaPreLayerNormForSequenceClassification

    from zhenping.training.tokenizer import save_tokenizer, train_tokenizer

    root = tmp_path_factory.mktemp("pack")
    work = root / "work"
    work.mkdir()
    lines = _texts(400)
    (work / "corpus.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (work / "corpus_manifest.json").write_text(json.dumps({"stats": {"texts": len(lines)}}))
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
    for split, n in (("train", 60), ("validation", 20)):
        rows = [{"id": f"{split}{i}", "text": t, "warmth": rng.choice([0, 1 / 3, 2 / 3, 1]),
                 "substance": rng.random(), "template": round(rng.random(), 3)}
                for i, t in enumerate(_texts(n, seed=len(split)))]
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    pack_dir = root / "pack"
    header = build_pack(pack_dir, model_dir, work_dir=work, heldout_docs=40, echo=lambda m: None)
    write_label_pack(pack_dir, data, max_length=32, echo=lambda m: None)
    return {"root": root, "work": work, "lines": lines, "model": model_dir, "pack": pack_dir, "header": header,
            "tok": tok, "data": data}


def test_pack_round_trip(tiny):
    pk = load_pack(tiny["pack"])
    h = pk.header
    tok = tiny["tok"]
    assert h["documents"] == len(tiny["lines"]) == pk.n_docs
    assert h["heldout_docs"] == 40 and h["train_docs"] == 360
    assert h["vocab_size"] == len(tok) and pk.tokens.dtype == np.uint16
    assert h["tokens"] == len(pk.tokens) == int(pk.offsets[-1])
    # Document k is corpus line doc_lines[k], tokenised without special tokens.
    from zhenping.training.pack import doc_lines, tokenizer_sha1

    lines = doc_lines(h)
    for k in (0, 39, 40, 399):
        expected = tok(tiny["lines"][lines[k]], add_special_tokens=False)["input_ids"]
        assert pk.doc(k).tolist() == expected
    assert h["tokenizer_sha1"] == tokenizer_sha1(pk.tokenizer())
    assert sorted(lines.tolist()) == list(range(400))
    # Packed sequences: [CLS] ... [SEP], only the chosen documents' tokens.
    seqs = pack_sequences(pk, None, pk.train_docs, 32, tok.cls_token_id, tok.sep_token_id, seed=0)
    assert seqs.shape[1] == 32 and (seqs[:, 0] == tok.cls_token_id).all() and (seqs[:, -1] == tok.sep_token_id).all()
    held = np.concatenate([pk.doc(i) for i in pk.heldout_docs])
    train = np.concatenate([pk.doc(i) for i in pk.train_docs])
    assert len(seqs) == (len(train) + 360) // 30
    assert int((seqs[:, 1:-1] != tok.sep_token_id).sum()) <= len(train)
    assert len(held) == h["heldout_tokens"]


def test_pack_caps_tokens_and_size(tiny, tmp_path):
    h = build_pack(tmp_path / "capped", tiny["model"], work_dir=tiny["work"], heldout_docs=40, max_tokens=2000,
                   echo=lambda m: None)
    assert h["tokens"] <= 2000 + 510 and h["documents"] < 400
    full = load_pack(tiny["pack"])
    capped = load_pack(tmp_path / "capped")
    assert np.array_equal(capped.tokens, full.tokens[: len(capped.tokens)])  # the same order, cut
    with pytest.raises(ValueError, match="does not fit"):
        build_pack(tmp_path / "small", tiny["model"], work_dir=tiny["work"], heldout_docs=40, max_mib=0.01,
                   echo=lambda m: None)


def test_damaged_pack_is_refused(tiny, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(tiny["pack"], bad)
    header = json.loads((bad / "header.json").read_text())
    header["tokens_sha1"] = "0" * 40
    (bad / "header.json").write_text(json.dumps(header))
    with pytest.raises(ValueError, match="damaged"):
        load_pack(bad)
    with pytest.raises(FileNotFoundError, match="zhenping pack"):
        load_pack(tmp_path / "missing")


def test_label_pack(tiny):
    labels = load_label_pack(tiny["pack"])
    ids, y = labels["train"]
    assert len(ids) == 60 and y.shape == (60, 3) and y.dtype == np.float32
    assert labels["axes"] == ["warmth", "substance", "template"]
    assert all(s[0] == tiny["tok"].cls_token_id and s[-1] == tiny["tok"].sep_token_id and len(s) <= 32 for s in ids)
    assert len(labels["validation"][0]) == 20


def test_span_masking_covers_spans_and_skips_special_tokens():
    import torch

    ids = torch.tensor([[2] + list(range(5, 125)) + [3]] * 50)
    g = torch.Generator().manual_seed(0)
    chosen = choose_positions(ids, 0.15, g, [0, 1, 2, 3, 4], mean_span=3.0, max_span=10)
    assert not chosen[:, 0].any() and not chosen[:, -1].any()
    assert 0.08 < chosen.float().mean().item() < 0.2
    starts = chosen[:, 1:] & ~chosen[:, :-1]
    assert chosen.sum().item() / max(starts.sum().item(), 1) > 2.0  # runs, not single tokens


def _cfg(tiny, out_dir, **kw):
    base = dict(out_dir=str(out_dir), pack=str(tiny["pack"]), max_length=32, hidden_size=32, num_layers=2,
                num_heads=2, intermediate_size=64, batch_size=4, lr=1e-3, warmup_steps=2, eval_sequences=8,
                checkpoint_minutes=100.0, dropout=0.0, seed=3)
    base.update(kw)
    return PretrainConfig(**base)


@pytest.mark.parametrize("objective", ["rtd", "mlm"])
def test_pretraining_from_the_pack_resumes_and_exports(tiny, tmp_path, objective):
    out = tmp_path / objective
    run(_cfg(tiny, out, objective=objective, max_steps=3, mask_span=2.0, generator_hidden_size=32))
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["step"] == 3 and state["sequences"] == 12
    enc = run(_cfg(tiny, out, objective=objective, max_steps=5, mask_span=2.0, generator_hidden_size=32))
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [3, 5]
    if objective == "rtd":
        for key in ("rtd_accuracy", "rtd_replaced_accuracy", "rtd_original_accuracy", "gen_mlm_accuracy"):
            assert 0.0 <= log[-1][key] <= 1.0
        assert 0.0 < log[-1]["replaced_share"] < 0.3
        assert (out / "checkpoint" / "rtd_parts.safetensors").exists()
        arch = json.loads((enc / "config.json").read_text())["architectures"]
        assert arch == ["RobertaPreLayerNormModel"]
    else:
        assert 0.0 <= log[-1]["mlm_accuracy"] <= 1.0
    summary = json.loads((enc / "pretrain_summary.json").read_text())
    assert summary["steps"] == 5 and summary["objective"] == objective
    # Another objective in the same folder is refused with a clear message.
    other = "mlm" if objective == "rtd" else "rtd"
    import shutil

    shutil.rmtree(enc)
    with pytest.raises(ValueError, match="written with objective"):
        run(_cfg(tiny, out, objective=other, max_steps=7))


def test_init_from_a_classifier_then_fine_tune_and_pipeline(tiny, tmp_path):
    """RTD from the shipped-style classifier: its encoder weights are the starting
    discriminator; the export fine-tunes through `load_base` and loads in `pipeline`."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification, pipeline

    from zhenping.training.finetune import load_base

    out = tmp_path / "rtd_init"
    enc = run(_cfg(tiny, out, objective="rtd", max_steps=1, lr=1e-9, warmup_steps=1, init_from=str(tiny["model"]),
                   hidden_size=64, num_layers=1))
    start = load_file(str(tiny["model"] / "model.safetensors"))
    after = load_file(str(enc / "model.safetensors"))
    key = "encoder.layer.1.attention.self.query.weight"
    assert json.loads((enc / "config.json").read_text())["num_hidden_layers"] == 2  # the init model's sizes
    assert torch.allclose(after[key], start["roberta_prelayernorm." + key], atol=1e-5)

    model, tok = load_base(str(enc))
    assert torch.allclose(model.base_model.state_dict()[key], start["roberta_prelayernorm." + key], atol=1e-5)
    model.config.problem_type = "multi_label_classification"
    ft = tmp_path / "finetuned"
    model.save_pretrained(ft)
    tok.save_pretrained(ft)
    clf = pipeline("text-classification", model=str(ft), function_to_apply="sigmoid", top_k=None)
    assert len(clf(["你好"])[0]) == 3
    assert isinstance(AutoModelForSequenceClassification.from_pretrained(ft), torch.nn.Module)


def test_init_from_for_mlm_and_a_mismatched_tokenizer(tiny, tmp_path):
    from safetensors.torch import load_file

    enc = run(_cfg(tiny, tmp_path / "mlm_init", objective="mlm", max_steps=1, lr=1e-9, warmup_steps=1,
                   init_from=str(tiny["model"])))
    after = load_file(str(enc / "model.safetensors"))
    start = load_file(str(tiny["model"] / "model.safetensors"))
    key = "roberta_prelayernorm.encoder.layer.0.output.dense.weight"
    assert (after[key] - start[key]).abs().max() < 1e-5
    other = tmp_path / "other_tok"
    import shutil

    shutil.copytree(tiny["model"], other)
    from zhenping.training.tokenizer import save_tokenizer, train_tokenizer

    save_tokenizer(train_tokenizer(_texts(50, seed=9), vocab_size=80, min_frequency=1), other)
    with pytest.raises(ValueError, match="tokenizer differs"):
        run(_cfg(tiny, tmp_path / "mismatch", objective="mlm", max_steps=1, init_from=str(other)))


def test_gpu_teacher_end_to_end_on_cpu(tiny, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from zhenping.training import gpu_teacher

    out = tmp_path / "teacher"
    rc = gpu_teacher.main(["--config", "gpu_teacher_tiny.toml", f"--pack={tiny['pack']}", f"--out={out}"])
    assert rc == 0
    files = sorted(p.name for p in out.iterdir())
    assert "config.json" in files and "scores.npz" in files and "log.json" in files
    assert "model.safetensors.index.json" in files
    shards = [f for f in files if f.startswith("model-") and f.endswith(".safetensors")]
    assert len(shards) >= 2 and len(files) <= 8
    assert all((out / f).stat().st_size <= 0.05 * 1024 * 1024 for f in shards)
    assert sum((out / f).stat().st_size for f in files) <= 64 * 1024 * 1024
    with np.load(out / "scores.npz") as z:
        scores = z["scores"]
    assert scores.shape == (tiny["header"]["documents"], 3) and scores.dtype == np.float16
    assert np.isfinite(scores).all() and scores.min() >= 0.0 and scores.max() <= 1.0
    log = json.loads((out / "log.json").read_text())
    assert set(log["finetune"]["validation_spearman"]) == {"warmth", "substance", "template"}
    assert 0.0 <= log["pretrain"]["heldout"]["rtd_accuracy"] <= 1.0
    assert log["pretrain"]["tokens_per_second"] > 0
    for phase in ("pretrain_seconds", "finetune_seconds", "score_seconds", "total_seconds"):
        assert phase in log["phases"]
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.num_labels == 3
    # A second run starts from the weights the first brought back.
    out2 = tmp_path / "teacher2"
    assert gpu_teacher.main(["--config", "gpu_teacher_tiny.toml", "--resume", str(out), "--pack", str(tiny["pack"]),
                             "--out", str(out2), "--objective=mlm"]) == 0
    log2 = json.loads((out2 / "log.json").read_text())
    assert log2["resume"] == str(out) and "mlm_accuracy" in log2["pretrain"]["heldout"]


def test_gpu_teacher_refuses_an_oversized_teacher(tiny, tmp_path, capsys):
    from zhenping.training import gpu_teacher

    rc = gpu_teacher.main(["--config", "gpu_teacher_tiny.toml", f"--pack={tiny['pack']}",
                           f"--out={tmp_path / 't'}", "--max_output_mib=0.01"])
    assert rc == 1
    assert "over max_output_mib" in capsys.readouterr().err


def test_cli_errors_are_one_line(tmp_path):
    from typer.testing import CliRunner

    from zhenping.training.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["pretrain", "--config", "pretrain_rtd_cpu.toml", f"--pack={tmp_path / 'none'}",
                              f"--out_dir={tmp_path / 'out'}"])
    assert res.exit_code == 1
    assert f"error: {tmp_path / 'none' / 'header.json'} not found; write the pack with `zhenping pack" in res.output
    assert "Traceback" not in res.output
    res = runner.invoke(app, ["pack", "--labels", "--out", str(tmp_path / "nopack")])
    assert res.exit_code == 1 and "write the pack first with `zhenping pack --out" in res.output
