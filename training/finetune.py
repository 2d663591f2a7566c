"""Fine-tune an encoder into zhenping's three-axis scorer.

``AutoModelForSequenceClassification`` with 3 labels (warmth, substance,
template), multi-label: one sigmoid per axis trained with binary cross-entropy
against the soft target level / 3. The Hugging Face ``Trainer`` runs the loop:
evaluation on the validation split every epoch, early stopping on the mean
Spearman correlation, checkpoints every epoch in ``out_dir`` (rerunning the same
command after a crash resumes from the newest one).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zhenping.model.axes import AXES, LEVELS
from zhenping.model.normalize import normalize_text
from zhenping.training.config import config_to_dict, format_config


@dataclass
class FinetuneConfig:
    data_dir: str = "runs/data"  # train/validation/test.jsonl from `zhenping prepare`
    base: str = "runs/pretrain/encoder"  # encoder dir, zhenping model dir, hub id, or "default" (the shipped model)
    out_dir: str = "runs/finetune"  # trainer checkpoints (resume point)
    max_length: int = 128  # tokens; longer comments are truncated
    lr: float = 1e-4  # peak, after warmup
    batch_size: int = 32  # comments per step
    epochs: int = 12  # upper bound; early stopping usually ends sooner
    warmup_ratio: float = 0.06  # share of steps spent warming up
    weight_decay: float = 0.01
    patience: int = 3  # epochs without validation improvement before stopping
    dropout: float = 0.1  # classifier and encoder dropout
    seed: int = 13
    num_threads: int = 0  # torch threads (0: library default)
    num_layers: int = 0  # keep only the base's first N encoder layers, a smaller and faster model; a multiple of its layers grows it (0: as it is)
    extra_train: list[str] | None = None  # more labelled files (JSONL/CSV/Parquet/HF) for the train split
    skip_invalid: bool = False  # bad rows of extra_train files: drop and list them instead of stopping
    pseudo_teacher: str | None = None  # teacher(s) scoring unlabelled text for training: a fitted baseline (.joblib) or a scorer folder, several averaged when comma-separated; None: off
    pseudo_corpus: str = "runs/pretrain/corpus.txt"  # unlabelled texts (labelled validation/test texts left out)
    pseudo_texts: int = 0  # unlabelled texts scored by the teacher and added to the training rows (0: off; -1: all the teacher can score)
    pseudo_pack: str | None = None  # pack a GPU teacher's scores.npz belongs to (None: the one its log.json names)
    eval_steps: int = 0  # evaluate and checkpoint every N steps (0: once per epoch); patience then counts evaluations
    augment_tails: float = 0.0  # share of the labelled training rows added again with one trailing mark (punctuation, emoticon, emoji), levels kept (0: off)
    level_weight: float = 0.0  # rare levels weigh more: a row's loss on an axis times (share of its level)^-level_weight, mean 1 (0: all rows alike)

    def __post_init__(self):
        if not 0.0 <= self.augment_tails <= 1.0:
            raise ValueError(f"augment_tails must be a share between 0 and 1, got {self.augment_tails}")
        if self.level_weight < 0:
            raise ValueError(f"level_weight must be >= 0, got {self.level_weight}")


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def read_split(data_dir: str | os.PathLike, split: str) -> list[dict]:
    path = Path(data_dir) / f"{split}.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; run `zhenping prepare` first")
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


class _Dataset:
    """Tokenised comments with float targets (and optional per-axis loss weights), for the Trainer."""

    def __init__(self, rows: list[dict], tokenizer, max_length: int, loss_weights: np.ndarray | None = None):
        texts = [normalize_text(r["text"]) for r in rows]
        self.enc = tokenizer(texts, truncation=True, max_length=max_length)
        self.labels = [[float(r[a]) for a in AXES] for r in rows]
        self.loss_weights = None if loss_weights is None else loss_weights.tolist()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        item = {k: v[i] for k, v in self.enc.items()}
        item["labels"] = self.labels[i]
        if self.loss_weights is not None:
            item["loss_weights"] = self.loss_weights[i]
        return item


# Trailing marks for ``augment_tails``: the punctuation runs, bracket emoticons and emoji that
# most often end the comments of the pretraining corpus (after normalisation), most frequent
# first within each kind; marks of contempt (🤮, 😡, 💩) are left out.
TAILS = (
    "。", "!", "?", ".", "......", "...", "~", "!!!", "??", "!!", "。。。",
    "[流泪]", "[大哭]", "[doge]", "[爱心]", "[心]", "[大笑]", "[可爱]", "[色]", "[泪]", "[憨笑]", "[亲亲]", "[捂脸]",
    "😂", "😅", "😭", "😋", "🤣", "🥹", "❤️", "🥺", "🥰", "🙏", "🤗", "😍", "👍", "🤔", "😊",
)


def tail_copies(rows: list[dict], share: float, seed: int) -> list[dict]:
    """Copies of a seeded random ``share`` of ``rows``, each with one mark of :data:`TAILS`
    appended and its levels kept: the guidelines judge a comment by what it says, and a
    trailing 。, [心] or 😊 changes no level, so the model should learn not to move for one.

    Example:
        >>> [r["text"] for r in tail_copies([{"id": "a", "text": "好听", "warmth": 1.0}], 1.0, 0)]
        ['好听😋']
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"augment_tails must be a share between 0 and 1, got {share}")
    rng = random.Random(seed)
    picked = rng.sample(range(len(rows)), round(share * len(rows)))
    copies = []
    for i in sorted(picked):
        tail = rng.choice(TAILS)
        copies.append({**rows[i], "id": f"{rows[i]['id']}+tail", "text": rows[i]["text"].rstrip() + tail})
    return copies


def level_loss_weights(targets, power: float) -> np.ndarray:
    """Per-row, per-axis loss weights that give rare levels more say.

    A row's weight on an axis is ``share ** -power``, where ``share`` is the share
    of the training rows at its level on that axis (a soft target counts at its
    nearest level); each axis's weights are then scaled to mean 1, so the loss keeps
    its size. ``power = 0`` weighs every row alike; 1 gives each level the same
    total weight; values between temper it.

    Example:
        >>> level_loss_weights([[0.0], [1/3], [1/3], [1/3]], 1.0)[:, 0].round(3).tolist()
        [2.0, 0.667, 0.667, 0.667]
    """
    t = np.asarray(targets, dtype=np.float64)
    if t.ndim != 2 or not len(t):
        raise ValueError(f"targets must be a non-empty (rows, axes) array, got shape {t.shape}")
    if power < 0:
        raise ValueError(f"level_weight must be >= 0, got {power}")
    levels = np.clip(np.rint(t * LEVELS), 0, LEVELS).astype(int)
    w = np.empty_like(t)
    for j in range(t.shape[1]):
        share = np.bincount(levels[:, j], minlength=LEVELS + 1) / len(t)
        w[:, j] = share[levels[:, j]] ** -power
        w[:, j] /= w[:, j].mean()
    return w


def _weighted_trainer_class():
    """A ``Trainer`` whose loss is the per-axis BCE weighted by each row's ``loss_weights``."""
    import torch
    from transformers import Trainer

    class WeightedTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            weights = inputs.pop("loss_weights", None)
            if weights is None:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                outputs.logits, labels.to(outputs.logits.dtype), weight=weights.to(outputs.logits.dtype))
            return (loss, outputs) if return_outputs else loss

    return WeightedTrainer


def spearman_metrics(pred_scores: np.ndarray, true_scores: np.ndarray) -> dict:
    from scipy.stats import spearmanr

    out = {}
    for j, a in enumerate(AXES):
        rho = spearmanr(pred_scores[:, j], true_scores[:, j]).statistic
        out[f"spearman_{a}"] = float(np.nan_to_num(rho))
    out["mean_spearman"] = float(np.mean([out[f"spearman_{a}"] for a in AXES]))
    return out


def load_base(base: str, tokenizer_dir: str | None = None, dropout: float = 0.1, num_layers: int = 0):
    """Model and tokenizer from an encoder dir, a zhenping model dir or a hub id.

    ``num_layers`` > 0 keeps only the first ``num_layers`` encoder layers of the
    base (its lower layers, embeddings and head load as they are); more layers than
    the base has grow it (see :func:`grow_layers`).
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from zhenping.training.export import set_label_names

    if base == "default":  # the shipped model, wherever the package is installed
        from zhenping.model.scorer import DEFAULT_MODEL_DIR

        base = str(DEFAULT_MODEL_DIR)
    config = AutoConfig.from_pretrained(base)
    set_label_names(config)
    if hasattr(config, "hidden_dropout_prob"):
        config.hidden_dropout_prob = dropout
    config.classifier_dropout = dropout
    grow_to = 0
    if num_layers:
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        if num_layers > config.num_hidden_layers:
            if num_layers % config.num_hidden_layers:
                raise ValueError(f"num_layers above the base's {config.num_hidden_layers} layers must be a "
                                 f"multiple of it, got {num_layers}")
            grow_to = num_layers
        else:
            config.num_hidden_layers = num_layers
    model = AutoModelForSequenceClassification.from_pretrained(
        base, config=config, use_safetensors=True, ignore_mismatched_sizes=True
    )
    if grow_to:
        grow_layers(model, grow_to)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir or base)
    return model, tokenizer


def grow_layers(model, num_layers: int) -> None:
    """Deepen a BERT-family encoder in place to ``num_layers`` layers.

    Each layer is followed by copies of itself whose two output projections
    (attention output and feed-forward output) are zero: in a pre-LayerNorm
    encoder (RoBERTa-PreLayerNorm, the shipped architecture) such a copy adds nothing
    to the residual stream, so the grown model scores exactly as the base did and
    training starts from there, with the copies' query/key/value and feed-forward
    input weights already useful. (In a post-LayerNorm encoder the copies are close
    to, not exactly, the identity.) The config's ``num_hidden_layers`` follows.
    """
    import copy

    import torch

    layers = model.base_model.encoder.layer
    base = len(layers)
    if num_layers % base:
        raise ValueError(f"num_layers must be a multiple of the base's {base} layers, got {num_layers}")
    grown = []
    for layer in layers:
        grown.append(layer)
        for _ in range(num_layers // base - 1):
            twin = copy.deepcopy(layer)
            with torch.no_grad():
                for proj in (twin.attention.output.dense, twin.output.dense):
                    proj.weight.zero_()
                    proj.bias.zero_()
            grown.append(twin)
    model.base_model.encoder.layer = torch.nn.ModuleList(grown)
    model.config.num_hidden_layers = num_layers
    for i, layer in enumerate(grown):  # attention layers that index themselves (caching) see their new place
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = i


def last_complete_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    """The newest ``checkpoint-<step>`` folder whose save finished, or ``None``.

    The Trainer writes ``trainer_state.json`` last; a run killed while saving
    leaves a folder without it (or with it cut short), which is skipped with a
    note so that the rerun resumes from the checkpoint before.
    """
    found = []
    for path in Path(out_dir).glob("checkpoint-*"):
        step = path.name.removeprefix("checkpoint-")
        if path.is_dir() and step.isdigit():
            found.append((int(step), path))
    for _, path in sorted(found, reverse=True):
        try:
            json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            print(f"skipping {path}: its save did not finish (no readable trainer_state.json)", file=sys.stderr)
            continue
        return path
    return None


RUN_FILE = "zhenping_run.json"  # in the checkpoint folder: which run its checkpoints belong to
# Config fields that do not change what a run computes: a different value may resume.
_NOT_IN_FINGERPRINT = ("out_dir", "num_threads")
# Fields added later, left out while at their default: runs from before them keep their fingerprint.
_UNSET_NOT_IN_FINGERPRINT = {"pseudo_pack": None, "eval_steps": 0, "level_weight": 0.0, "augment_tails": 0.0}


def _sha1_path(path: Path) -> str:
    h = hashlib.sha1()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for p in files:
        if path.is_dir():
            h.update(str(p.relative_to(path)).encode("utf-8") + b"\0")
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _source_sha1(spec: str) -> str:
    """SHA-1 of a local file or folder; a dataset name stands for itself."""
    path = Path(spec).expanduser()
    return _sha1_path(path) if path.exists() else f"name:{spec}"


def _base_sha1(base: str) -> str:
    if base == "default":
        from zhenping.model.scorer import DEFAULT_MODEL_DIR

        base = str(DEFAULT_MODEL_DIR)
    path = Path(base).expanduser()
    if not path.is_dir():
        return f"name:{base}"  # a Hub id
    weights = [p for p in ("model.safetensors", "config.json") if (path / p).is_file()]
    return "+".join(_sha1_path(path / p) for p in weights) or _sha1_path(path)


def run_fingerprint(cfg: FinetuneConfig) -> dict:
    """What makes a fine-tuning run the same run: its resolved config (less the
    checkpoint folder and thread count), the SHA-1 of every data file it reads and of
    its base model. Checkpoints are resumed only by a run with the same ``id``.
    """
    config = {k: v for k, v in config_to_dict(cfg).items() if k not in _NOT_IN_FINGERPRINT
              and not (k in _UNSET_NOT_IN_FINGERPRINT and v == _UNSET_NOT_IN_FINGERPRINT[k])}
    data = {f"{split}.jsonl": _source_sha1(str(Path(cfg.data_dir) / f"{split}.jsonl"))
            for split in ("train", "validation")}
    for spec in cfg.extra_train or []:
        data[f"extra:{spec}"] = _source_sha1(spec)
    if cfg.pseudo_teacher and cfg.pseudo_texts != 0:
        for spec in cfg.pseudo_teacher.split(","):
            data[f"teacher:{spec.strip()}"] = _source_sha1(spec.strip())
        data["pseudo_corpus"] = _source_sha1(cfg.pseudo_corpus)
    fp = {"config": config, "data": data, "base": {"name": cfg.base, "sha1": _base_sha1(cfg.base)}}
    fp["id"] = hashlib.sha1(json.dumps(fp, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()
    return fp


def _fingerprint_difference(found: dict | None, fp: dict) -> str:
    """Why a checkpoint folder's run is not this one, in words."""
    if not found:
        return f"it has no {RUN_FILE} saying which data, config and base it was trained with"
    parts = []
    for part, label in (("data", "data"), ("config", "config"), ("base", "base model")):
        old, new = found.get(part) or {}, fp[part]
        keys = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        if keys:
            shown = ", ".join(f"{k} {_short(old.get(k))} -> {_short(new.get(k))}" for k in keys[:4])
            parts.append(f"{label} differ: {shown}" if label == "data" else f"{label} differs: {shown}")
    return "; ".join(parts) or "its run fingerprint differs"


def _short(v) -> str:
    if v is None:
        return "none"
    s = str(v)
    return s[:12] if len(s) == 40 and all(c in "0123456789abcdef" for c in s) else s


def checkpoint_folder(out_dir: str | os.PathLike, fp: dict) -> tuple[Path, Path | None]:
    """The folder this run checkpoints into, and the checkpoint to resume from (or ``None``).

    ``out_dir`` when it holds no finished checkpoint, or checkpoints of this very run
    (same fingerprint: resumed). When it holds another run's checkpoints, they are left
    alone, the reason is printed, and this run uses ``<out_dir>-<fingerprint>``
    (resuming there if an earlier attempt of this run left checkpoints).
    """
    primary = Path(out_dir)
    found = last_complete_checkpoint(primary)
    if found is None:
        return primary, None
    theirs = _read_run_file(primary)
    if theirs is not None and theirs.get("id") == fp["id"]:
        return primary, found
    alt = primary.with_name(f"{primary.name}-{fp['id'][:10]}")
    print(f"not resuming from {found}: it belongs to another run ({_fingerprint_difference(theirs, fp)}); "
          f"this run trains from the start in {alt}", file=sys.stderr)
    alt_found = last_complete_checkpoint(alt)
    mine = _read_run_file(alt)
    if alt_found is not None and mine is not None and mine.get("id") == fp["id"]:
        return alt, alt_found
    return alt, None


def _read_run_file(folder: Path) -> dict | None:
    try:
        return json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _test_rows(data_dir: str | os.PathLike) -> list[dict]:
    path = Path(data_dir) / "test.jsonl"
    return read_split(data_dir, "test") if path.is_file() else []


def labelled_texts(rows: list[dict]) -> set[str]:
    """The texts of labelled rows as they are and normalised, the form corpus texts have."""
    return {r["text"] for r in rows} | {normalize_text(r["text"]) for r in rows}


def pseudo_rows(cfg: FinetuneConfig, exclude: set[str]) -> list[dict]:
    """Self-training rows: unlabelled corpus texts with the teacher's soft scores.

    The teacher (the TF-IDF baseline) was fitted on the gold training split only, and
    ``exclude`` holds the texts of every labelled row of the prepared splits, the
    validation and test ones included: the corpus file leaves out the held-out texts
    of the labels there were when it was built, not those of label files added since,
    so nothing of the held-out splits reaches training either way. A GPU teacher's output folder
    (or its ``scores.npz``) gives its scores of the pack documents, looked up by text
    (see :mod:`zhenping.training.pack_scores`); ``pseudo_texts = -1`` takes every text it scored.
    """
    from zhenping.training.multitask import MultitaskConfig, load_distill_data

    texts, scores = load_distill_data(MultitaskConfig(
        distill_teacher=cfg.pseudo_teacher, distill_corpus=cfg.pseudo_corpus,
        distill_texts=cfg.pseudo_texts, distill_pack=cfg.pseudo_pack, seed=cfg.seed + 1,
        distill_max_length=cfg.max_length))
    rows = [{"id": f"pseudo:{i}", "source": "pseudo", "text": t, **{a: float(v) for a, v in zip(AXES, s)}}
            for i, (t, s) in enumerate(zip(texts, scores)) if t not in exclude]
    print(f"fine-tune: {len(rows):,} teacher-scored unlabelled texts join the training rows", file=sys.stderr)
    return rows


def train(cfg: FinetuneConfig):
    """Fine-tune; returns ``(model, tokenizer, info)`` with the best validation model."""
    import torch
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer, TrainingArguments

    print("fine-tune config:\n" + format_config(cfg), file=sys.stderr)
    seed_everything(cfg.seed)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    train_rows = read_split(cfg.data_dir, "train")
    val_rows = read_split(cfg.data_dir, "validation")
    if cfg.extra_train:
        from zhenping.training.userdata import load_labelled

        for f in cfg.extra_train:
            for r in load_labelled(f, skip_invalid=cfg.skip_invalid):
                train_rows.append({"id": r.id, "source": r.source, "text": r.text,
                                   **{a: lv / 3.0 for a, lv in zip(AXES, r.levels)}})
    if cfg.augment_tails:
        copies = tail_copies(train_rows, cfg.augment_tails, cfg.seed + 2)
        print(f"fine-tune: {len(copies):,} labelled rows added again with a trailing mark "
              f"(augment_tails {cfg.augment_tails})", file=sys.stderr)
        train_rows += copies
    if cfg.pseudo_teacher and cfg.pseudo_texts != 0:
        train_rows += pseudo_rows(cfg, labelled_texts(train_rows + val_rows + _test_rows(cfg.data_dir)))
    model, tok = load_base(cfg.base, dropout=cfg.dropout, num_layers=cfg.num_layers)
    weights = None
    if cfg.level_weight:
        weights = level_loss_weights([[float(r[a]) for a in AXES] for r in train_rows], cfg.level_weight)
        print(f"fine-tune: rare levels weigh more (level_weight {cfg.level_weight}; largest row weight per axis "
              + ", ".join(f"{a} {weights[:, j].max():.2f}" for j, a in enumerate(AXES)) + ")", file=sys.stderr)
    train_ds = _Dataset(train_rows, tok, cfg.max_length, weights)
    val_ds = _Dataset(val_rows, tok, cfg.max_length)
    print(f"fine-tune: {len(train_ds):,} train, {len(val_ds):,} validation comments; "
          f"base {cfg.base}", file=sys.stderr)

    def compute_metrics(p):
        logits, labels = p
        return spearman_metrics(1.0 / (1.0 + np.exp(-logits)), labels)

    fingerprint = run_fingerprint(cfg)
    ckpt_dir, resume = checkpoint_folder(cfg.out_dir, fingerprint)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    (ckpt_dir / RUN_FILE).write_text(json.dumps(fingerprint, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    args = TrainingArguments(
        output_dir=str(ckpt_dir),
        learning_rate=cfg.lr,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=64,
        num_train_epochs=cfg.epochs,
        warmup_steps=cfg.warmup_ratio,  # a float in [0, 1) is a share of all steps
        weight_decay=cfg.weight_decay,
        eval_strategy="steps" if cfg.eval_steps > 0 else "epoch",
        save_strategy="steps" if cfg.eval_steps > 0 else "epoch",
        eval_steps=cfg.eval_steps if cfg.eval_steps > 0 else None,
        save_steps=cfg.eval_steps if cfg.eval_steps > 0 else None,
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model="mean_spearman",
        greater_is_better=True,
        train_sampling_strategy="group_by_length",  # less padding per batch
        seed=cfg.seed,
        data_seed=cfg.seed,
        logging_steps=50,
        report_to=[],
        disable_tqdm=False,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        remove_unused_columns=weights is None,  # else the rows' loss_weights would be dropped before the loss
    )
    trainer = (_weighted_trainer_class() if weights is not None else Trainer)(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=val_ds,
        data_collator=DataCollatorWithPadding(tok),
        compute_metrics=compute_metrics,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=cfg.patience)],
    )
    if resume is not None:
        print(f"resuming from {resume}", file=sys.stderr)
    t0 = time.time()
    trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
    seconds = time.time() - t0
    history = [h for h in trainer.state.log_history if "eval_mean_spearman" in h]
    info = {
        "train_rows": len(train_ds),
        "validation_rows": len(val_ds),
        "train_seconds": round(seconds, 1),
        "epochs_run": trainer.state.epoch,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "best_validation_mean_spearman": trainer.state.best_metric,
        "validation_history": history,
        "config": config_to_dict(cfg),
        "checkpoints": str(ckpt_dir),
        "resumed_from": str(resume) if resume is not None else None,
        "run_fingerprint": fingerprint["id"],
        "data_sha1": fingerprint["data"],
    }
    trainer.model.eval()
    return trainer.model, tok, info
