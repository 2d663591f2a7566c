"""Intermediate multi-task stage: teach the pretrained encoder the labels the
corpora already carry before it meets the gold labels.

Tasks (each a classification head on the ``[CLS]`` vector, trained together,
batches drawn from the tasks in turn):

* ``offensive`` — COLD offensive language (safe/offensive): hostility for warmth.
* ``sexism`` — SWSR sexist comments: contempt toward groups, warmth 0.
* ``ai_text`` — HC3-Plus and AGT-2025 human vs machine-written text: boilerplate.
* ``sentiment`` — positive/negative reviews and posts (Douban books, shopping,
  food delivery, hotels, Weibo).
* ``emotion`` — SMP2020-EWECT six emotions on Weibo.

* ``distill`` (optional) — the three axis scores a teacher (the TF-IDF baseline,
  fitted on the gold training split only) gives to unlabelled corpus texts: tens
  of thousands of soft examples of what the axes mean, where gold labels number
  7,000. The gold fine-tune that follows corrects the teacher's errors.

Texts of the labelled validation and test splits are left out. The encoder
(with its MLM head, untouched) is saved as the base for fine-tuning.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zhenping.model.axes import AXES
from zhenping.model.normalize import normalize_text
from zhenping.training.config import config_to_dict, format_config

# task -> (number of classes, [(corpus, file, label -> class index)])
_BINARY = {"0": 0, "1": 1}
TASKS: dict[str, tuple[int, list[tuple[str, str, dict]]]] = {
    "offensive": (2, [("cold", f, _BINARY) for f in ("train.csv.gz", "dev.csv.gz", "test.csv.gz")]),
    "sexism": (2, [("swsr", "SexComment.csv.gz", _BINARY)]),
    "ai_text": (2, [("hc3plus_zh", f, _BINARY) for f in
                    ("val_hc3_QA.jsonl.gz", "val_hc3_si.jsonl.gz", "test_hc3_si.jsonl.gz")]
                + [("agt2025_zh", f, _BINARY) for f in
                   ("AGT2025_fromHC3_chinese_GPT4.5_DSR1.csv.gz", "hc3_zh_human_sample.csv.gz",
                    "M4GT_chinese_human_sample.csv.gz", "AGT2025_fromM4GT_chinese_GPT4.5_DSR1.csv.gz")]),
    "sentiment": (2, [("douban_book_review", f, _BINARY) for f in ("train.csv.gz", "dev.csv.gz", "test.csv.gz")]
                  + [("online_shopping_10_cats", "online_shopping_10_cats.csv.gz", _BINARY),
                     ("waimai_10k", "waimai_10k.csv.gz", _BINARY),
                     ("chnsenticorp_htl_all", "ChnSentiCorp_htl_all.csv.gz", _BINARY),
                     ("weibo_senti_100k_subset2400", "weibo_senti_100k_2400.csv.gz", _BINARY)]),
    "emotion": (6, [("smp2020_ewect", f"{d}_{s}.csv.gz", {str(i): i for i in range(6)})
                    for d in ("usual", "virus") for s in ("train", "dev", "test")]),
}


@dataclass
class MultitaskConfig:
    base: str = "runs/pretrain/encoder"  # the pretrained encoder (a masked-LM model dir)
    out_dir: str = "runs/multitask"  # encoder/ is written here
    corpora: str | None = None
    gold: str | None = None
    tasks: list[str] | None = None  # default: every task in TASKS
    max_length: int = 96  # tokens per text
    batch_size: int = 32  # texts per step (one task per step)
    steps: int = 1500  # optimiser steps in all
    lr: float = 1e-4  # peak, after warmup
    warmup_steps: int = 100
    per_task_cap: int = 30000  # texts kept per task (a random sample above that)
    distill_teacher: str | None = None  # teacher(s) to distil: a fitted baseline (.joblib) or a scorer folder, comma-separated ones averaged; None: off
    distill_corpus: str = "runs/pretrain/corpus.txt"  # unlabelled texts (validation/test texts already left out)
    distill_texts: int = 60000  # unlabelled texts scored by the teacher (-1: all it can score)
    distill_pack: str | None = None  # pack a GPU teacher's scores.npz belongs to (None: the one its log.json names)
    distill_share: float = 0.5  # share of steps spent on the distillation task
    distill_max_length: int | None = None  # tokens a scorer-folder teacher reads per text (None: its own max_length)
    seed: int = 13
    num_threads: int = 0


def load_task_data(cfg: MultitaskConfig) -> dict[str, tuple[list[str], list[int]]]:
    """Texts and class ids per task, deduplicated, without labelled val/test texts."""
    from zhenping.training.corpora import corpora_root, get_file, iter_rows, row_text
    from zhenping.training.pretrain import PretrainConfig, _heldout_texts

    heldout = _heldout_texts(PretrainConfig(corpora=cfg.corpora, gold=cfg.gold))
    root = corpora_root(cfg.corpora)
    rng = random.Random(cfg.seed)
    out = {}
    for name in cfg.tasks or list(TASKS):
        if name not in TASKS:
            raise ValueError(f"unknown task {name!r}; known: {sorted(TASKS)}")
        _, sources = TASKS[name]
        seen: dict[str, int] = {}
        for corpus, fname, mapping in sources:
            _, cf = get_file(corpus, fname)
            path = root / corpus / fname
            if not path.exists():
                continue
            for _, rec in iter_rows(path, cf):
                label = str(rec.get(cf.label_field, "")).strip()
                if label not in mapping:
                    continue
                text = normalize_text(row_text(rec, cf))
                if not text or text in heldout or text in seen:
                    continue
                seen[text] = mapping[label]
        items = list(seen.items())
        rng.shuffle(items)
        items = items[: cfg.per_task_cap]
        if items:
            out[name] = ([t for t, _ in items], [y for _, y in items])
    return out


DISTILL = "distill"


def load_distill_data(cfg: MultitaskConfig) -> tuple[list[str], np.ndarray]:
    """Unlabelled texts and the teacher's three axis scores for them.

    ``distill_texts`` texts are drawn from the corpus (-1: all of them). A GPU teacher's
    scores (its output folder or ``scores.npz``, see :mod:`zhenping.training.pack_scores`) cover
    only its pack's documents: with one among the teachers, the texts are drawn from
    those it has scores for (unless its folder is a complete scorer folder).
    """
    from zhenping.training.pack_scores import load_pack_scores, scores_path

    path = Path(cfg.distill_corpus)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; run `zhenping pretrain` first (it writes the corpus)")
    tables = {part: load_pack_scores(part, path, cfg.distill_pack) for part in _teacher_parts(cfg.distill_teacher)
              if scores_path(part) is not None}
    with open(path, encoding="utf-8") as fh:
        lines = [line.rstrip("\n") for line in fh if line.strip()]
    limited = [t for t in tables.values() if not t.can_score_new_texts]
    if limited:
        covered = set(limited[0].texts).intersection(*(t.texts for t in limited[1:]))
        lines = [line for line in lines if line in covered]
        print(f"distillation: {len(lines):,} corpus texts have scores from every scores-file teacher",
              file=sys.stderr)
    if cfg.distill_texts < 0:
        texts = lines
    else:
        rng = random.Random(cfg.seed)
        texts = rng.sample(lines, min(cfg.distill_texts, len(lines)))
    return texts, teacher_scores(cfg.distill_teacher, texts, tables=tables, max_length=cfg.distill_max_length)


def _teacher_parts(spec: str | None) -> list[str]:
    return [part.strip() for part in str(spec or "").split(",") if part.strip()]


def teacher_scores(spec: str, texts: list[str], tables: dict | None = None, corpus: str | None = None,
                   pack: str | None = None, max_length: int | None = None) -> np.ndarray:
    """The three axis scores of ``texts`` (already normalised) by a teacher, as float32.

    ``spec`` names one teacher or several separated by commas, whose scores are
    averaged: a fitted baseline (``.joblib``, e.g. ``runs/baselines/tfidf_ridge.joblib``),
    an exported scorer folder (e.g. an earlier fine-tuned model), or a GPU teacher's
    output folder or ``scores.npz`` (scores looked up by text: ``tables`` holds them
    loaded, else they are read with ``corpus`` and ``pack``, see
    :func:`zhenping.training.pack_scores.load_pack_scores`). ``max_length``: the tokens a
    scorer folder reads per text, in place of its export's (a student that reads longer
    comments learns from teachers that read them too).
    """
    from zhenping.training.baselines import TfidfRidgeBaseline
    from zhenping.training.pack_scores import load_pack_scores, lookup, scores_path

    parts = _teacher_parts(spec)
    if not parts:
        raise ValueError("no teacher given")
    tables = dict(tables or {})
    total = np.zeros((len(texts), len(AXES)), dtype=np.float64)
    for part in parts:
        path = Path(part)
        if scores_path(part) is not None:
            if part not in tables:
                tables[part] = load_pack_scores(part, corpus or "runs/pretrain/corpus.txt", pack)
            total += lookup(tables[part], texts)
            continue
        if path.is_dir():
            from zhenping.model.scorer import Scorer

            scorer = Scorer.from_pretrained(path, backend="auto", max_length=max_length)
            if tuple(scorer.axes) != tuple(AXES):
                raise ValueError(f"teacher {path} scores {scorer.axes}, not {AXES}")
            got = scorer.score_normalized(texts, batch_size=128, max_tokens=4096)
            total += np.asarray([[getattr(s, a) for a in AXES] for s in got], dtype=np.float64)
        elif path.is_file():
            total += np.asarray(TfidfRidgeBaseline.load(path).predict(texts), dtype=np.float64)
        else:
            raise FileNotFoundError(f"teacher {part!r} is neither a fitted baseline file nor a scorer folder")
        print(f"teacher {part}: scored {len(texts):,} texts", file=sys.stderr)
    return (total / len(parts)).astype(np.float32)


def run(cfg: MultitaskConfig) -> Path:
    """Train the task heads with the encoder; returns the saved encoder folder."""
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForMaskedLM, AutoTokenizer, get_linear_schedule_with_warmup

    print("multi-task config:\n" + format_config(cfg), file=sys.stderr)
    torch.manual_seed(cfg.seed)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    data = load_task_data(cfg)
    if not data and not cfg.distill_teacher:
        raise ValueError("no task data found in the corpora")
    for name, (texts, ys) in data.items():
        counts = np.bincount(ys, minlength=TASKS[name][0]).tolist()
        print(f"task {name}: {len(texts):,} texts, classes {counts}", file=sys.stderr)
    distill = None
    if cfg.distill_teacher:
        distill = load_distill_data(cfg)
        print(f"task {DISTILL}: {len(distill[0]):,} unlabelled texts, teacher mean scores "
              f"{np.round(distill[1].mean(0), 3).tolist()}", file=sys.stderr)
    tok = AutoTokenizer.from_pretrained(cfg.base)
    mlm = AutoModelForMaskedLM.from_pretrained(cfg.base)
    encoder = mlm.base_model
    hidden = encoder.config.hidden_size
    heads = torch.nn.ModuleDict({
        name: torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Linear(hidden, TASKS[name][0]))
        for name in data
    })
    if distill is not None:
        heads[DISTILL] = torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Linear(hidden, distill[1].shape[1]))
    params = list(encoder.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)
    sched = get_linear_schedule_with_warmup(opt, cfg.warmup_steps, cfg.steps)
    encoder.train()
    heads.train()
    names = list(data) + ([DISTILL] if distill is not None else [])
    rngs = {n: np.random.default_rng(cfg.seed + i) for i, n in enumerate(names)}
    hist = {n: [] for n in names}
    plan_rng = np.random.default_rng(cfg.seed)
    t0 = time.time()
    for step in tqdm(range(cfg.steps), desc="multi-task", unit="step", file=sys.stderr, mininterval=5.0):
        if distill is not None and (not data or plan_rng.random() < cfg.distill_share):
            name = DISTILL
        else:
            name = list(data)[step % len(data)]
        texts, ys = distill if name == DISTILL else data[name]
        idx = rngs[name].integers(0, len(texts), cfg.batch_size)
        enc = tok([texts[i] for i in idx], truncation=True, max_length=cfg.max_length,
                  padding=True, return_tensors="pt")
        cls = encoder(**enc).last_hidden_state[:, 0]
        logits = heads[name](cls)
        if name == DISTILL:
            y = torch.from_numpy(ys[idx])
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
            hist[name].append(float((torch.sigmoid(logits) - y).abs().mean()))
        else:
            y = torch.tensor([ys[i] for i in idx])
            loss = torch.nn.functional.cross_entropy(logits, y)
            hist[name].append(float((logits.argmax(-1) == y).float().mean()))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    seconds = time.time() - t0
    summary = {
        "tasks": names,
        "steps": cfg.steps,
        "seconds": round(seconds, 1),
        "texts": {n: len(distill[0] if n == DISTILL else data[n][0]) for n in names},
        # accuracy for the classification tasks; mean absolute error against the teacher for distill
        "train_accuracy_last_100_batches": {n: float(np.mean(h[-100:])) for n, h in hist.items()
                                            if h and n != DISTILL},
        "distill_mae_last_100_batches": float(np.mean(hist[DISTILL][-100:])) if hist.get(DISTILL) else None,
        "config": config_to_dict(cfg),
    }
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    enc_dir = out / "encoder"
    tmp = out / "encoder.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    mlm.save_pretrained(tmp, safe_serialization=True)
    from zhenping.training.tokenizer import save_tokenizer

    save_tokenizer(tok, tmp)
    pre = Path(cfg.base) / "pretrain_summary.json"
    if pre.exists():
        shutil.copyfile(pre, tmp / "pretrain_summary.json")
    (tmp / "multitask_summary.json").write_text(json.dumps(summary, indent=2))
    shutil.rmtree(enc_dir, ignore_errors=True)
    tmp.rename(enc_dir)
    print(json.dumps(summary["train_accuracy_last_100_batches"]), file=sys.stderr)
    return enc_dir
