"""A teacher-size encoder trained, fine-tuned and run over the whole corpus in one GPU run.

Reads only what travels with the code: a pack from ``zhenping pack`` (token ids of
every corpus document, a held-out slice, the tokenizer) and the label pack beside
it (``zhenping pack --labels``: the gold training and validation rows, tokenised).
In one run bounded by ``total_minutes`` (9 by default) it

1. pretrains an encoder (RTD or MLM, see :mod:`zhenping.training.pretrain`) in bf16
   autocast for ``pretrain_minutes``, the learning rate warming up and decaying
   to 0 over that time, and measures held-out accuracy;
2. fine-tunes it on the gold training split for ``finetune_minutes`` (soft
   targets level / 3, binary cross-entropy), keeping the epoch with the best mean
   validation Spearman ρ;
3. scores every pack document with it (sigmoid of the three axes);
4. writes to the output folder (``$OUT`` by default): ``config.json``, the
   weights in float16 as safetensors shards of at most ``shard_mib`` MiB with
   their ``model.safetensors.index.json`` (a standard
   ``RobertaPreLayerNormForSequenceClassification`` folder: ``from_pretrained``
   loads it), ``scores.npz`` (``scores``: float16 ``[documents, 3]`` in pack
   order, warmth/substance/template in [0, 1], with the pack's corpus mapping so
   that :mod:`zhenping.training.pack_scores` maps them to corpus texts) and ``log.json`` (versions,
   tokens/s, held-out accuracy, validation ρ per axis, seconds per phase). At
   most 8 files and ``max_output_mib`` MiB; the run checks both before training.

``--resume DIR`` starts from a folder an earlier run wrote (encoder and heads).
Nothing is downloaded; at start the Hugging Face cache folders are searched for
pretrained Chinese encoders, which are listed with their license. One is used
only with ``use_cached_encoder = true``, a permissive license and the pack's
tokenizer (its vocabulary must give the same ids).

Run on a GPU machine (the checkout plus the carried pack)::

    python -m zhenping.training.gpu_teacher --config training/configs/gpu_teacher.toml --pack runs/pack --out "$OUT"

Uses only stable ``torch`` and ``transformers`` APIs (torch 2.11-2.13, transformers 5).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zhenping.training.config import config_to_dict, format_config, load_config, parse_overrides

MIB = 1024 * 1024
PERMISSIVE = ("apache-2.0", "mit", "bsd-2-clause", "bsd-3-clause", "cc-by-4.0", "cc-by-sa-4.0", "openrail")


@dataclass
class TeacherConfig:
    pack: str = "runs/pack"  # folder from `zhenping pack` (labels.npz inside, from `zhenping pack --labels`)
    labels: str | None = None  # label pack (None: <pack>/labels.npz)
    out: str | None = None  # output folder (None: $OUT, else runs/teacher)
    objective: str = "rtd"  # rtd | mlm
    hidden_size: int = 512
    num_layers: int = 8
    num_heads: int = 8
    intermediate_size: int = 2048
    max_length: int = 128  # tokens per pretraining sequence and per scored document
    mask_prob: float = 0.15  # share of tokens the generator (rtd) or the MLM head predicts
    mask_span: float = 3.0  # mean masked span, tokens (1: single tokens)
    max_span: int = 10
    rtd_weight: float = 50.0  # discriminator loss weight (ELECTRA)
    generator_hidden_size: int = 0  # 0: a third of hidden_size
    generator_layers: int = 0  # 0: num_layers
    generator_heads: int = 0  # 0: one per 32 of width
    batch_size: int = 256  # pretraining sequences per step
    lr: float = 1e-3  # pretraining peak lr, after warmup; linear decay to 0 at the end of pretrain_minutes
    warmup_steps: int = 300
    weight_decay: float = 0.01
    eval_sequences: int = 1024  # held-out sequences for the accuracy figures
    finetune_lr: float = 1e-4  # peak, after warmup (6 % of the planned steps)
    finetune_batch_size: int = 64
    finetune_epochs: int = 10  # upper bound; the time budget may end it sooner
    score_batch_size: int = 512  # documents per scoring forward pass
    total_minutes: float = 9.0  # the whole run, start to last file written
    pretrain_minutes: float = 5.5
    finetune_minutes: float = 1.5
    reserve_minutes: float = 1.0  # kept for scoring and writing; pretraining is cut to leave it
    seed: int = 13
    device: str = "auto"  # auto | cuda | cpu
    bf16: bool = True  # autocast to bfloat16 on GPU (ignored on CPU)
    num_threads: int = 0  # torch CPU threads (0: library default)
    use_cached_encoder: bool = False  # start from a pretrained encoder found in the HF cache (license permitting)
    max_output_mib: float = 64.0  # all files written, in MiB
    shard_mib: float = 16.0  # largest weight shard, MiB


# ------------------------------------------------------------------ cache search


def _license_of(folder: Path) -> str | None:
    readme = folder / "README.md"
    if not readme.is_file():
        return None
    text = readme.read_text(encoding="utf-8", errors="replace")[:4000]
    m = re.search(r"^license:\s*([\w.\-]+)", text, re.MULTILINE)
    return m.group(1).lower() if m else None


def find_cached_encoders() -> list[dict]:
    """Pretrained encoders in the local Hugging Face cache folders (no network)."""
    roots = []
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE"):
        if os.environ.get(var):
            roots.append(Path(os.environ[var]))
    if os.environ.get("HF_HOME"):
        roots.append(Path(os.environ["HF_HOME"]) / "hub")
    roots += [Path.home() / ".cache" / "huggingface" / "hub", Path.home() / ".cache" / "huggingface" / "transformers"]
    found, seen = [], set()
    for root in roots:
        if not root.is_dir() or root in seen:
            continue
        seen.add(root)
        for repo in sorted(root.glob("models--*")):
            snaps = sorted((repo / "snapshots").glob("*"), key=lambda p: p.stat().st_mtime)
            if not snaps:
                continue
            snap = snaps[-1]
            try:
                config = json.loads((snap / "config.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            name = repo.name.removeprefix("models--").replace("--", "/")
            readme = (snap / "README.md").read_text(encoding="utf-8", errors="replace")[:4000] \
                if (snap / "README.md").is_file() else ""
            chinese = bool(re.search(r"chinese|(^|[-_/])zh([-_/]|$)|hfl/", name.lower())) or \
                bool(re.search(r"^language:.*\bzh\b|^- zh$", readme, re.MULTILINE))
            found.append({"name": name, "path": str(snap), "model_type": config.get("model_type"),
                          "vocab_size": config.get("vocab_size"), "license": _license_of(snap),
                          "chinese": chinese})
    return found


# ------------------------------------------------------------------ helpers


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman ρ with average ranks for ties (numpy only)."""
    def ranks(x):
        order = np.argsort(x, kind="mergesort")
        r = np.empty(len(x), dtype=np.float64)
        r[order] = np.arange(len(x), dtype=np.float64)
        _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
        sums = np.bincount(inv, weights=r)
        return sums[inv] / counts[inv]

    if len(a) < 2:
        return 0.0
    ra, rb = ranks(np.asarray(a, dtype=np.float64)), ranks(np.asarray(b, dtype=np.float64))
    ra -= ra.mean()
    rb -= rb.mean()
    denom = math.sqrt(float((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else 0.0


def _pad_batch(seqs: list[np.ndarray], pad_id: int):
    import torch

    width = max(len(s) for s in seqs)
    ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
        mask[i, : len(s)] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


def _pretrain_config(cfg: TeacherConfig, seconds: float):
    from zhenping.training.pretrain import PretrainConfig

    return PretrainConfig(
        out_dir="unused", max_length=cfg.max_length, hidden_size=cfg.hidden_size, num_layers=cfg.num_layers,
        num_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size, dropout=0.0,
        mask_prob=cfg.mask_prob, mask_span=cfg.mask_span, max_span=cfg.max_span, batch_size=cfg.batch_size,
        lr=cfg.lr, warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay, seed=cfg.seed,
        objective=cfg.objective, rtd_weight=cfg.rtd_weight, generator_hidden_size=cfg.generator_hidden_size,
        generator_layers=cfg.generator_layers, generator_heads=cfg.generator_heads,
        time_schedule_minutes=max(seconds, 1e-3) / 60, bf16=cfg.bf16, eval_sequences=cfg.eval_sequences)


def _mlm_model(encoder):
    """Encoder + a masked-LM head whose output matrix is the word-embedding matrix."""
    import torch

    class MLM(torch.nn.Module):
        def __init__(self, enc):
            super().__init__()
            h = enc.config.hidden_size
            self.enc = enc
            self.transform = torch.nn.Sequential(torch.nn.Linear(h, h), torch.nn.GELU(), torch.nn.LayerNorm(h))
            self.bias = torch.nn.Parameter(torch.zeros(enc.config.vocab_size))

        def forward(self, corrupted, chosen):
            hidden = self.enc(input_ids=corrupted).last_hidden_state
            return self.transform(hidden[chosen]) @ self.enc.get_input_embeddings().weight.t() + self.bias

    return MLM(encoder)


def _estimate_output_bytes(n_params: int, n_docs: int) -> int:
    return 2 * n_params + 6 * n_docs + 64 * 1024  # fp16 weights, fp16 scores (before compression), small files


def _shard_limit(shard_mib: float) -> int:
    """Tensor bytes per shard, leaving room for the file's JSON header."""
    return int(shard_mib * MIB) - min(64 * 1024, int(shard_mib * MIB * 0.05))


def save_sharded_fp16(model, out: Path, shard_mib: float) -> list[str]:
    """``config.json`` and float16 safetensors shards of at most ``shard_mib`` MiB with a
    ``model.safetensors.index.json`` (the layout ``from_pretrained`` reads)."""
    from safetensors.torch import save_file

    limit = _shard_limit(shard_mib)
    state = {k: v.detach().to("cpu").half().contiguous() for k, v in model.state_dict().items()}
    shards: list[dict] = []
    sizes: list[int] = []
    # First fit, largest tensors first: fewer shards than filling them in order.
    for name, t in sorted(state.items(), key=lambda kv: -kv[1].numel()):
        nbytes = t.numel() * 2
        if nbytes > limit:
            raise ValueError(f"tensor {name} is {nbytes / MIB:.1f} MiB, over shard_mib {shard_mib}")
        i = next((i for i, size in enumerate(sizes) if size + nbytes <= limit), None)
        if i is None:
            shards.append({})
            sizes.append(0)
            i = len(shards) - 1
        shards[i][name] = t
        sizes[i] += nbytes
    files, weight_map = [], {}
    for i, shard in enumerate(shards, 1):
        fname = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(out / fname), metadata={"format": "pt"})
        files.append(fname)
        weight_map.update({k: fname for k in shard})
    index = {"metadata": {"total_size": sum(sizes)}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=1))
    model.config.dtype = "float16"  # what the shards hold
    model.config.save_pretrained(out)
    return ["config.json", "model.safetensors.index.json", *files]


# ------------------------------------------------------------------ phases


def _build_classifier(cfg: TeacherConfig, vocab_size: int, resume: str | None, cached: str | None, axes):
    """The sequence classifier whose encoder is pretrained, then fine-tuned."""
    from transformers import AutoModelForSequenceClassification

    from zhenping.training.pretrain import PretrainConfig, encoder_config

    id2label = {i: a for i, a in enumerate(axes)}
    extra = dict(num_labels=len(axes), id2label=id2label, label2id={a: i for i, a in id2label.items()},
                 problem_type="multi_label_classification")
    source = resume or cached
    if source:
        model = AutoModelForSequenceClassification.from_pretrained(source, ignore_mismatched_sizes=True, **extra)
        model = model.float()
        from zhenping.training.pretrain import _set_dropout

        _set_dropout(model, 0.0)
        return model
    pc = PretrainConfig(max_length=cfg.max_length, hidden_size=cfg.hidden_size, num_layers=cfg.num_layers,
                        num_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size, dropout=0.0)
    config = encoder_config(pc, vocab_size)
    for k, v in extra.items():
        setattr(config, k, v)
    config.classifier_dropout = 0.0
    return AutoModelForSequenceClassification.from_config(config)


def pretrain_phase(cfg, classifier, train_seqs, heldout_seqs, tok, device, seconds, log):
    import torch

    from zhenping.training.pretrain import (SPECIAL_TOKENS, _autocast, _lr_factor, build_rtd, evaluate_mlm,
                                   evaluate_rtd, mask_tokens, rtd_inputs)

    pc = _pretrain_config(cfg, seconds)
    pc.bf16 = cfg.bf16 and device.type == "cuda"
    special = [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]
    encoder = classifier.base_model
    model = build_rtd(encoder, pc) if cfg.objective == "rtd" else _mlm_model(encoder)
    model.to(device).train()
    params = list(model.parameters())
    opt = torch.optim.AdamW([{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
                             {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}],
                            lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    rng = np.random.default_rng(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    data = torch.from_numpy(train_seqs.astype(np.int64))
    step = tokens = 0
    t0 = time.time()
    loss_val = float("nan")
    while seconds > 0 and time.time() - t0 < seconds:
        # Sequences drawn at random (with replacement): the budget is time, not passes.
        idx = torch.from_numpy(rng.integers(0, len(data), cfg.batch_size))
        ids = data[idx]
        lr = cfg.lr * _lr_factor(pc, step, time.time() - t0, 0)
        for group in opt.param_groups:
            group["lr"] = lr
        with _autocast(pc, device):
            if cfg.objective == "rtd":
                chosen, gen_input = rtd_inputs(ids, tok, pc, g, special)
                loss = model(ids.to(device, non_blocking=True), chosen.to(device), gen_input.to(device),
                             cfg.rtd_weight)["loss"]
            else:
                corrupted, chosen, target = mask_tokens(ids, tok, cfg.mask_prob, g, special, cfg.mask_span,
                                                        cfg.max_span)
                logits = model(corrupted.to(device), chosen.to(device))
                loss = torch.nn.functional.cross_entropy(logits.float(), target.to(device))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        tokens += int(ids.numel())
        if step % 100 == 0:
            loss_val = float(loss)
            print(f"pretrain step {step:,}: loss {loss_val:.3f}, lr {lr:.2e}, "
                  f"{tokens / (time.time() - t0):,.0f} tokens/s", file=sys.stderr)
    train_seconds = time.time() - t0
    t1 = time.time()
    if cfg.objective == "rtd":
        metrics = evaluate_rtd(model, heldout_seqs, tok, pc, device, special)
    else:
        metrics = evaluate_mlm(model, heldout_seqs, tok, pc, device, special,
                               logits_fn=lambda m, corrupted, chosen: m(corrupted, chosen))
    log["pretrain"] = {"steps": step, "tokens": tokens, "seconds": round(train_seconds, 1),
                       "tokens_per_second": round(tokens / max(train_seconds, 1e-9)),
                       "eval_seconds": round(time.time() - t1, 1), "last_train_loss": loss_val,
                       "heldout": metrics}
    print(f"pretrain: {step:,} steps, {tokens:,} tokens in {train_seconds:.0f}s; held-out {metrics}",
          file=sys.stderr)
    model.to("cpu")
    del model, opt


def finetune_phase(cfg, classifier, labels, pad_id, device, seconds, log):
    import copy

    import torch

    train_ids, train_y = labels["train"]
    val_ids, val_y = labels["validation"]
    model = classifier.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.finetune_lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(train_ids) / cfg.finetune_batch_size))
    planned = steps_per_epoch * cfg.finetune_epochs
    warm = max(1, int(0.06 * planned))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (planned - s) / max(planned - warm, 1))))
    rng = np.random.default_rng(cfg.seed + 1)
    amp = _amp(cfg, device)
    best, best_state, history = -2.0, None, []
    t0 = time.time()
    for epoch in range(cfg.finetune_epochs):
        if time.time() - t0 > seconds:
            break
        order = rng.permutation(len(train_ids))
        for i in range(0, len(order), cfg.finetune_batch_size):
            b = order[i : i + cfg.finetune_batch_size]
            ids, mask = _pad_batch([train_ids[j] for j in b], pad_id)
            y = torch.from_numpy(train_y[b]).to(device)
            with amp():
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            if time.time() - t0 > seconds:
                break
        pred = predict(model, val_ids, pad_id, device, cfg.score_batch_size, amp)
        rho = {a: spearman(pred[:, j], val_y[:, j]) for j, a in enumerate(labels["axes"])}
        mean = float(np.mean(list(rho.values())))
        history.append({"epoch": epoch + 1, "seconds": round(time.time() - t0, 1), "mean": mean, **rho})
        print(f"fine-tune epoch {epoch + 1}: validation ρ {json.dumps(rho)} (mean {mean:.3f})", file=sys.stderr)
        if mean > best:
            best, best_state = mean, copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        model.train()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    best_row = max(history, key=lambda h: h["mean"]) if history else {}
    log["finetune"] = {"seconds": round(time.time() - t0, 1), "epochs": len(history), "train_rows": len(train_ids),
                       "validation_rows": len(val_ids), "history": history,
                       "validation_spearman": {a: best_row.get(a) for a in labels["axes"]},
                       "validation_mean_spearman": best_row.get("mean")}


def _amp(cfg, device):
    import contextlib

    import torch

    if cfg.bf16 and device.type == "cuda":
        return lambda: torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext


def predict(model, seqs: list[np.ndarray], pad_id: int, device, batch_size: int, amp,
            progress: bool = False) -> np.ndarray:
    """Sigmoid scores ``[n, 3]`` (float32), batches of similar length."""
    import torch

    t0 = time.time()
    step = max(1, len(seqs) // 10)

    out = np.zeros((len(seqs), model.config.num_labels), dtype=np.float32)
    order = np.argsort([len(s) for s in seqs], kind="stable")
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(order), batch_size):
            b = order[i : i + batch_size]
            ids, mask = _pad_batch([seqs[j] for j in b], pad_id)
            with amp():
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            out[b] = torch.sigmoid(logits.float()).cpu().numpy()
            if progress and (i // step) != ((i + len(b)) // step):
                print(f"scored {i + len(b):,} of {len(seqs):,} documents ({time.time() - t0:.0f}s)", file=sys.stderr)
    return out


def score_pack(cfg, model, pk, tok, device, log) -> np.ndarray:
    t0 = time.time()
    body = cfg.max_length - 2
    cls, sep = tok.cls_token_id, tok.sep_token_id
    seqs = [np.concatenate([[cls], pk.doc(i)[:body], [sep]]).astype(np.int64) for i in range(pk.n_docs)]
    scores = predict(model, seqs, tok.pad_token_id, device, cfg.score_batch_size, _amp(cfg, device), progress=True)
    seconds = time.time() - t0
    log["score"] = {"documents": len(seqs), "seconds": round(seconds, 1),
                    "documents_per_second": round(len(seqs) / max(seconds, 1e-9)),
                    "mean": [round(float(x), 4) for x in scores.mean(0)]}
    print(f"scored {len(seqs):,} documents in {seconds:.0f}s", file=sys.stderr)
    return scores


# ------------------------------------------------------------------ run


def run(cfg: TeacherConfig, resume: str | None = None) -> Path:
    """The whole run; returns the output folder."""
    t_start = time.time()
    import torch
    import transformers

    from zhenping.training.pack import load_label_pack, load_pack

    out = Path(cfg.out or os.environ.get("OUT") or "runs/teacher")
    out.mkdir(parents=True, exist_ok=True)
    if cfg.objective not in ("rtd", "mlm"):
        raise ValueError(f"objective must be 'rtd' or 'mlm', got {cfg.objective!r}")
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if cfg.device == "auto" else cfg.device))
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32 for what autocast leaves in float32
    torch.manual_seed(cfg.seed)
    print("teacher config:\n" + format_config(cfg), file=sys.stderr)
    log: dict = {"config": config_to_dict(cfg), "resume": resume,
                 "versions": {"python": platform.python_version(), "torch": torch.__version__,
                              "transformers": transformers.__version__},
                 "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu", "phases": {}}

    cached = find_cached_encoders()
    log["cached_encoders"] = cached
    if cached:
        for c in cached:
            print(f"cached encoder: {c['name']} ({c['model_type']}, vocabulary {c['vocab_size']}, "
                  f"license {c['license'] or 'unknown'}{', Chinese' if c['chinese'] else ''})", file=sys.stderr)
    else:
        print("cached encoders: none found in the Hugging Face cache folders", file=sys.stderr)

    t = time.time()
    pk = load_pack(cfg.pack)
    tok = pk.tokenizer()
    labels = load_label_pack(cfg.labels or Path(cfg.pack))
    if labels["tokenizer_sha1"] != pk.header["tokenizer_sha1"]:
        raise ValueError("the label pack was tokenised with another tokenizer than the pack; "
                         f"rerun `zhenping pack --labels --out {cfg.pack}`")
    from zhenping.training.pack import pack_sequences

    train_seqs = pack_sequences(pk, None, pk.train_docs, cfg.max_length, tok.cls_token_id, tok.sep_token_id,
                                cfg.seed)
    heldout = pack_sequences(pk, None, pk.heldout_docs, cfg.max_length, tok.cls_token_id, tok.sep_token_id,
                             cfg.seed + 1)[: cfg.eval_sequences]
    if len(train_seqs) == 0 or len(heldout) == 0:
        raise ValueError(f"{cfg.pack}: too few tokens for one {cfg.max_length}-token sequence of training and "
                         "held-out data")
    log["phases"]["load_seconds"] = round(time.time() - t, 1)
    log["data"] = {"documents": pk.n_docs, "tokens": int(pk.header["tokens"]), "train_sequences": len(train_seqs),
                   "heldout_sequences": len(heldout), "train_rows": len(labels["train"][0]),
                   "validation_rows": len(labels["validation"][0]),
                   "tokenizer_sha1": pk.header["tokenizer_sha1"], "pack": str(cfg.pack),
                   "tokens_sha1": pk.header["tokens_sha1"], "corpus_sha1": pk.header.get("corpus_sha1")}

    chosen_cache = None
    if cfg.use_cached_encoder:
        from zhenping.training.pack import tokenizer_sha1

        for c in cached:
            if not c["chinese"] or (c["license"] or "") not in PERMISSIVE:
                continue
            try:
                from transformers import AutoTokenizer

                same = tokenizer_sha1(AutoTokenizer.from_pretrained(c["path"])) == pk.header["tokenizer_sha1"]
            except (OSError, ValueError):
                same = False
            if same:
                chosen_cache = c["path"]
                break
            print(f"cached encoder {c['name']}: its tokenizer differs from the pack's; not used", file=sys.stderr)
    log["cached_encoder_used"] = chosen_cache

    classifier = _build_classifier(cfg, len(tok), resume, chosen_cache, labels["axes"])
    n_params = sum(p.numel() for p in classifier.parameters())
    estimate = _estimate_output_bytes(n_params, pk.n_docs)
    if estimate > cfg.max_output_mib * MIB:
        raise ValueError(f"the teacher ({n_params / 1e6:.1f}M parameters) would write about {estimate / MIB:.0f} MiB, "
                         f"over max_output_mib {cfg.max_output_mib}; make it smaller (hidden_size, num_layers)")
    n_shards = math.ceil(2 * n_params / _shard_limit(cfg.shard_mib) * 1.05)
    if n_shards + 4 > 8:
        raise ValueError(f"{n_shards} weight shards of {cfg.shard_mib} MiB plus 4 files exceed 8 files; "
                         "raise shard_mib or make the teacher smaller")
    log["parameters"] = n_params
    print(f"teacher: {n_params / 1e6:.1f}M parameters on {device}; pack {pk.n_docs:,} documents, "
          f"{len(train_seqs):,} training sequences", file=sys.stderr)

    budget = cfg.total_minutes * 60
    left = lambda: budget - (time.time() - t_start)  # noqa: E731
    pre_s = max(0.0, min(cfg.pretrain_minutes * 60, left() - (cfg.finetune_minutes + cfg.reserve_minutes) * 60))
    t = time.time()
    pretrain_phase(cfg, classifier, train_seqs, heldout, tok, device, pre_s, log)
    log["phases"]["pretrain_seconds"] = round(time.time() - t, 1)
    del train_seqs
    if device.type == "cuda":
        torch.cuda.empty_cache()

    ft_s = max(0.0, min(cfg.finetune_minutes * 60, left() - cfg.reserve_minutes * 60))
    t = time.time()
    finetune_phase(cfg, classifier, labels, tok.pad_token_id, device, ft_s, log)
    log["phases"]["finetune_seconds"] = round(time.time() - t, 1)

    t = time.time()
    scores = score_pack(cfg, classifier, pk, tok, device, log)
    log["phases"]["score_seconds"] = round(time.time() - t, 1)

    t = time.time()
    written = save_sharded_fp16(classifier.to("cpu"), out, cfg.shard_mib)
    # With the pack's corpus mapping (document k is corpus line doc_lines(header)[k]), so the
    # scores map back to corpus texts without the pack (training/pack_scores.py).
    h = pk.header
    np.savez_compressed(out / "scores.npz", scores=scores.astype(np.float16),
                        axes=np.asarray(labels["axes"]), tokens_sha1=np.asarray(h["tokens_sha1"]),
                        corpus_sha1=np.asarray(h["corpus_sha1"]), corpus_lines=np.asarray(h["corpus_lines"]),
                        seed=np.asarray(h["seed"]), documents=np.asarray(pk.n_docs),
                        corpus_file=np.asarray(str(h.get("corpus_file") or "")))
    written.append("scores.npz")
    log["phases"]["write_seconds"] = round(time.time() - t, 1)
    log["phases"]["total_seconds"] = round(time.time() - t_start, 1)
    written.append("log.json")
    (out / "log.json").write_text(json.dumps(log, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    sizes = {f: (out / f).stat().st_size for f in written}
    total = sum(sizes.values())
    log["files"] = sizes
    (out / "log.json").write_text(json.dumps(log, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    print(f"wrote {len(written)} files, {total / MIB:.1f} MiB, to {out} in {log['phases']['total_seconds']:.0f}s "
          f"(validation mean ρ {log['finetune'].get('validation_mean_spearman')})", file=sys.stderr)
    if len(written) > 8 or total > cfg.max_output_mib * MIB:
        raise ValueError(f"output over the limits: {len(written)} files, {total / MIB:.1f} MiB")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="gpu_teacher.toml", help="TOML file (bare names: training/configs/)")
    parser.add_argument("--resume", default=None, help="folder an earlier run wrote: start from its weights")
    args, rest = parser.parse_known_args(argv)
    joined: list[str] = []  # "--key value" as well as "--key=value"
    for item in rest:
        if joined and joined[-1].startswith("--") and "=" not in joined[-1] and not item.startswith("--"):
            joined[-1] += "=" + item
        else:
            joined.append(item)
    try:
        cfg = load_config(TeacherConfig, args.config, parse_overrides(joined))
        if args.resume and not (Path(args.resume) / "config.json").is_file():
            raise FileNotFoundError(f"--resume {args.resume}: no config.json there; pass the folder a run wrote")
        run(cfg, resume=args.resume)
    except (FileNotFoundError, ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
