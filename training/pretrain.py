"""Masked-language-model pretraining of zhenping's small Chinese encoder.

Stages, each cached under ``out_dir`` so a rerun skips what is done:

1. ``corpus.txt``: every usable corpus text, normalised and deduplicated, minus
   the texts of the labelled validation and test splits (they must stay unseen).
2. ``tokenizer/``: the WordPiece tokenizer trained on that corpus.
3. ``packed.npy``: the token ids packed into full-length sequences
   (``[CLS] text [SEP] text [SEP] ...``), no padding, so every position trains.
4. Training with the vocabulary projection run only at masked positions (about
   3x faster on CPU than the stock head), checkpointed every few minutes to
   ``checkpoint/`` (written to a temporary folder, then renamed) and resumed
   from there by running the same command again.
5. ``encoder/``: the final masked-LM model and tokenizer, the starting point
   for fine-tuning.

Held-out masked-token accuracy is measured on a fixed set of sequences at every
checkpoint and at the end of each epoch and appended to ``log.jsonl``.

With ``pack`` set, stages 1-3 are replaced by a folder from ``zhenping pack``
(token ids of the whole corpus, tokenised once, with a held-out slice of
documents), so pretraining runs where the corpora are not.

Two objectives (``objective``):

* ``mlm`` — masked-language modelling (BERT masking 80/10/10).
* ``rtd`` — replaced-token detection (ELECTRA, Clark et al. 2020): a small
  generator, trained as a masked LM, fills the masked positions with tokens
  sampled from its output (Gumbel-max, no gradient through the sample); the
  discriminator — the encoder that gets exported — labels every token as
  original or replaced. Loss = generator MLM loss + ``rtd_weight`` x discriminator
  loss. Taken from ELECTRA(-small): ``rtd_weight`` = 50; the generator shares the
  discriminator's token, position and segment embeddings (and their layer norm)
  and projects them to its own width, about a third of the discriminator's, same
  depth; generator input is 85 % [MASK] and 15 % kept at the chosen positions;
  the discriminator loss covers every position, the generator's only the masked
  ones; sampling at temperature 1. Taken from the BabyLM winners (LTG-BERT,
  ELC-BERT), which train small encoders on little text: pre-layer-norm blocks
  (``roberta-prelayernorm``), span masking as an option (``mask_span``: mean span
  length, geometric, cut at ``max_span``), no dropout at this scale (the RTD
  configs set ``dropout = 0``). The generator is a plain ``torch`` pre-LN
  transformer (it is thrown away); the discriminator is a standard
  ``transformers`` encoder, exported as such (``RobertaPreLayerNormModel``).

``init_from`` starts the encoder from any Hugging Face folder with the same
tokenizer, e.g. the shipped ``model/default`` (a sequence-classification
checkpoint): its encoder weights become the starting MLM encoder (with a fresh LM
head tied to the embeddings) or the starting discriminator (fresh generator and
detection head); its sizes replace the configured ones.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zhenping.model.normalize import normalize_text
from zhenping.training.config import config_to_dict, format_config

PACK_DTYPE = np.uint16


@dataclass
class PretrainConfig:
    out_dir: str = "runs/pretrain"  # corpus, tokenizer, packed ids, checkpoints, encoder
    corpora: str | None = None  # corpora root; None: $ZHENPING_CORPORA or ../shared
    gold: str | None = None  # gold label folder whose validation/test texts are excluded
    vocab_size: int = 8000  # tokens, special tokens included
    min_frequency: int = 3  # occurrences for a WordPiece merge or a rare character
    max_length: int = 128  # tokens per packed sequence, [CLS] and [SEP] included
    architecture: str = "roberta-prelayernorm"  # or "bert" (post-LN; slower to leave the unigram plateau)
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 1024
    dropout: float = 0.1
    mask_prob: float = 0.2  # share of tokens chosen for prediction (80/10/10 mask/random/keep)
    batch_size: int = 64  # sequences per optimiser step
    lr: float = 5e-4  # peak, after warmup; linear decay to 0 at the planned last step
    warmup_steps: int = 200
    weight_decay: float = 0.01
    epochs: float = 1.0  # passes over the packed corpus
    max_steps: int = 0  # stop after this many steps in all (0: epochs decide)
    max_minutes: float = 0.0  # stop this run after this wall time, with a checkpoint (0: no limit)
    checkpoint_minutes: float = 5.0  # minutes between checkpoints
    eval_sequences: int = 512  # held-out packed sequences for masked-token accuracy
    seed: int = 13
    num_threads: int = 0  # torch threads (0: library default)
    device: str = "auto"  # auto | cpu | cuda
    objective: str = "mlm"  # mlm (masked LM) | rtd (replaced-token detection, ELECTRA)
    pack: str | None = None  # folder from `zhenping pack`: read token ids there instead of the corpora
    init_from: str | None = None  # start the encoder from this model folder ("default": the shipped model)
    mask_span: float = 1.0  # mean masked span in tokens (1: single tokens; >1: geometric span lengths)
    max_span: int = 10  # longest masked span, tokens
    rtd_weight: float = 50.0  # rtd: weight of the discriminator loss beside the generator's MLM loss
    generator_hidden_size: int = 0  # rtd: generator width (0: a third of the encoder's, a multiple of 32)
    generator_layers: int = 0  # rtd: generator depth (0: the encoder's)
    generator_heads: int = 0  # rtd: generator attention heads (0: one per 32 of width)
    time_schedule_minutes: float = 0.0  # >0: lr warmup then linear decay over this much training time, not steps
    bf16: bool = False  # autocast to bfloat16 (GPU)


OBJECTIVES = ("mlm", "rtd")
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def validate_config(cfg: PretrainConfig) -> None:
    """Refuse values a run cannot use, naming the key, the value and what is expected."""
    if cfg.objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {cfg.objective!r}")
    if cfg.architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {cfg.architecture!r}")
    for key in ("batch_size", "max_length", "max_span"):
        if getattr(cfg, key) <= 0:
            raise ValueError(f"{key} must be > 0, got {getattr(cfg, key)}")
    if not 0.0 < cfg.mask_prob < 1.0:
        raise ValueError(f"mask_prob must be in (0, 1), got {cfg.mask_prob}")
    if cfg.mask_span < 1.0:
        raise ValueError(f"mask_span must be >= 1 (mean span length in tokens), got {cfg.mask_span}")
    if cfg.max_length < 8:
        raise ValueError(f"max_length must be >= 8, got {cfg.max_length}")


# ------------------------------------------------------------------ corpus


def _heldout_texts(cfg: PretrainConfig) -> set[str]:
    """Normalised texts of the labelled validation and test splits."""
    from zhenping.training.labels import gold_files, join_gold, read_gold
    from zhenping.training.splits import split_of_normalized

    try:
        rows, _ = join_gold(read_gold(gold_files(cfg.gold)), cfg.corpora)
    except FileNotFoundError:
        return set()
    out = set()
    for r in rows:
        norm = normalize_text(r.text)
        if split_of_normalized(norm) != "train":
            out.add(norm)
    return out


def build_corpus(cfg: PretrainConfig, out: Path) -> Path:
    """Write ``corpus.txt`` (one normalised, unique text per line) and its manifest."""
    from zhenping.training.corpora import iter_texts

    path = out / "corpus.txt"
    if path.exists() and (out / "corpus_manifest.json").exists():
        return path
    heldout = _heldout_texts(cfg)
    seen: set[bytes] = set()
    stats = {"rows": 0, "empty": 0, "duplicates": 0, "heldout": 0, "texts": 0, "chars": 0}
    per_source: dict[str, int] = {}
    tmp = path.with_suffix(".part")
    with open(tmp, "w", encoding="utf-8") as fh:
        for rid, text in iter_texts(cfg.corpora):
            stats["rows"] += 1
            norm = normalize_text(text)
            if not norm:
                stats["empty"] += 1
                continue
            key = hashlib.blake2b(norm.encode("utf-8"), digest_size=12).digest()
            if key in seen:
                stats["duplicates"] += 1
                continue
            seen.add(key)
            # Labels were judged on the first 300 characters; the gold text is cut there.
            if norm in heldout or normalize_text(text.strip()[:300]) in heldout:
                stats["heldout"] += 1
                continue
            fh.write(norm + "\n")
            stats["texts"] += 1
            stats["chars"] += len(norm)
            src = rid.split("/", 1)[0]
            per_source[src] = per_source.get(src, 0) + 1
    tmp.replace(path)
    manifest = {"stats": stats, "per_source": per_source, "heldout_texts": len(heldout)}
    (out / "corpus_manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2))
    print(f"corpus: {stats['texts']:,} unique texts, {stats['chars']:,} characters "
          f"({stats['duplicates']:,} duplicates, {stats['empty']:,} empty, "
          f"{stats['heldout']:,} labelled validation/test texts left out)", file=sys.stderr)
    return path


def _read_lines(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as fh:
        return [line.rstrip("\n") for line in fh]


def build_tokenizer(cfg: PretrainConfig, out: Path, corpus: Path):
    from transformers import AutoTokenizer

    from zhenping.training.tokenizer import save_tokenizer, train_tokenizer

    tok_dir = out / "tokenizer"
    if (tok_dir / "tokenizer.json").exists():
        return AutoTokenizer.from_pretrained(tok_dir)
    t0 = time.time()
    tok = train_tokenizer(_read_lines(corpus), vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency)
    save_tokenizer(tok, tok_dir)
    print(f"tokenizer: {len(tok):,} tokens in {time.time() - t0:.0f}s", file=sys.stderr)
    return AutoTokenizer.from_pretrained(tok_dir)


def pack(cfg: PretrainConfig, out: Path, corpus: Path, tok, suffix: str = "") -> np.ndarray:
    """Token ids packed into ``[n, max_length]`` sequences, shuffled with the seed."""
    path = out / f"packed_{cfg.max_length}{suffix}.npy"
    if path.exists():
        return np.load(path, mmap_mode="r")
    lines = _read_lines(corpus)
    rng = random.Random(cfg.seed)
    rng.shuffle(lines)  # mix sources inside sequences
    body = cfg.max_length - 2
    sep = tok.sep_token_id
    ids: list[int] = []
    for i in range(0, len(lines), 4096):
        enc = tok(lines[i : i + 4096], add_special_tokens=False)["input_ids"]
        for seq in enc:
            ids.extend(seq[: body * 4])  # very long answers: keep the first few sequences' worth
            ids.append(sep)
    n = len(ids) // body
    arr = np.asarray(ids[: n * body], dtype=PACK_DTYPE).reshape(n, body)
    packed = np.empty((n, cfg.max_length), dtype=PACK_DTYPE)
    packed[:, 0] = tok.cls_token_id
    packed[:, 1:-1] = arr
    packed[:, -1] = sep
    np.save(path, packed)
    print(f"packed: {n:,} sequences of {cfg.max_length} tokens ({len(ids):,} tokens)", file=sys.stderr)
    return np.load(path, mmap_mode="r")


# ------------------------------------------------------------------ masking


def choose_positions(input_ids, mask_prob: float, generator, special_ids, mean_span: float = 1.0,
                     max_span: int = 10):
    """Positions to predict (bool, same shape as ``input_ids``); special tokens never.

    ``mean_span`` 1 picks single tokens with probability ``mask_prob``; above 1,
    spans start with probability ``mask_prob / mean_span`` and run a geometric
    number of tokens (mean ``mean_span``, cut at ``max_span``), as in the span
    masking of SpanBERT and LTG-BERT (overlaps make the share slightly lower).
    """
    import torch

    special = torch.zeros_like(input_ids, dtype=torch.bool)
    for sid in special_ids:
        special |= input_ids == sid
    if mean_span <= 1.0:
        prob = torch.full(input_ids.shape, mask_prob)
        prob.masked_fill_(special, 0.0)
        return torch.bernoulli(prob, generator=generator).bool()
    starts = torch.rand(input_ids.shape, generator=generator) < mask_prob / mean_span
    q = 1.0 / mean_span  # geometric: P(length = k) = (1 - q)^(k - 1) q
    u = torch.rand(input_ids.shape, generator=generator).clamp_min(1e-12)
    lengths = (torch.floor(torch.log(u) / math.log(1.0 - q)) + 1).clamp(1, max_span)
    chosen = torch.zeros_like(special)
    width = input_ids.shape[-1]
    for k in range(min(max_span, width)):
        chosen[..., k:] |= (starts & (lengths > k))[..., : width - k]
    return chosen & ~special


def mask_tokens(input_ids, tok, mask_prob: float, generator, special_ids, mean_span: float = 1.0,
                max_span: int = 10, mask_share: float = 0.8, random_share: float = 0.1):
    """BERT masking: choose ``mask_prob`` of non-special tokens; 80 % [MASK], 10 % random, 10 % kept.

    Returns the corrupted ids, the positions chosen (bool) and their original ids.
    """
    import torch

    labels = input_ids.clone()
    chosen = choose_positions(input_ids, mask_prob, generator, special_ids, mean_span, max_span)
    corrupted = input_ids.clone()
    r = torch.rand(input_ids.shape, generator=generator)
    corrupted[chosen & (r < mask_share)] = tok.mask_token_id
    rand_pos = chosen & (r >= mask_share) & (r < mask_share + random_share)
    corrupted[rand_pos] = torch.randint(
        len(special_ids), len(tok), (int(rand_pos.sum()),), generator=generator
    )
    return corrupted, chosen, labels[chosen]


# ------------------------------------------------------------------ model


def _mlm_head(model):
    return model.cls if hasattr(model, "cls") else model.lm_head


def mlm_logits(model, input_ids, chosen):
    """Encoder forward, vocabulary projection only at the chosen positions."""
    hidden = model.base_model(input_ids=input_ids).last_hidden_state
    return _mlm_head(model)(hidden[chosen])


ARCHITECTURES = ("roberta-prelayernorm", "bert")


def encoder_config(cfg: PretrainConfig, vocab_size: int):
    """The ``transformers`` config of an encoder of the configured size."""
    common = dict(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout,
        pad_token_id=0,
    )
    if cfg.architecture == "bert":
        from transformers import BertConfig

        return BertConfig(max_position_embeddings=max(cfg.max_length, 512), **common)
    if cfg.architecture == "roberta-prelayernorm":
        from transformers import RobertaPreLayerNormConfig

        # RoBERTa numbers positions from pad_token_id + 1, hence the +2.
        return RobertaPreLayerNormConfig(max_position_embeddings=max(cfg.max_length, 512) + 2,
                                         type_vocab_size=2, bos_token_id=2, eos_token_id=3, **common)
    raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {cfg.architecture!r}")


def build_model(cfg: PretrainConfig, vocab_size: int):
    """A masked-LM model of the configured size.

    ``roberta-prelayernorm`` (layer norm before each sublayer) trains stably at a
    higher learning rate and leaves the early unigram plateau of MLM training much
    sooner than post-LN BERT, which matters when the budget is a few million tokens.
    Both are standard ``transformers`` architectures.
    """
    from transformers import AutoModelForMaskedLM

    return AutoModelForMaskedLM.from_config(encoder_config(cfg, vocab_size))


def resolve_model_dir(path: str) -> Path:
    """``"default"`` → the shipped model folder; anything else must be a folder with ``config.json``."""
    if path == "default":
        from zhenping.model.scorer import DEFAULT_MODEL_DIR

        return Path(DEFAULT_MODEL_DIR)
    p = Path(path)
    if not (p / "config.json").is_file():
        raise FileNotFoundError(f"init_from {path!r}: no config.json there; pass a Hugging Face model folder "
                                "(e.g. model/default or an encoder from `zhenping pretrain`)")
    return p


def load_encoder(path: str | Path, dropout: float):
    """The bare encoder (no pooler, no head) of any supported Hugging Face folder.

    Works for encoders, masked-LM and sequence-classification checkpoints alike:
    the head's weights are left out and the encoder's kept.
    """
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(path)
    if config.model_type not in ("roberta-prelayernorm", "bert", "roberta"):
        raise ValueError(f"init_from {path}: model type {config.model_type!r} is not supported; "
                         "expected roberta-prelayernorm, bert or roberta")
    enc = AutoModel.from_pretrained(path, add_pooling_layer=False)
    _set_dropout(enc, dropout)
    return enc


def _set_dropout(model, p: float) -> None:
    """Apply the configured dropout to a model loaded from a checkpoint (the rate is a training choice)."""
    import torch

    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = p
    for key in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
        if hasattr(model.config, key):
            setattr(model.config, key, p)


def generator_size(cfg_or_hidden, num_layers: int | None = None, width: int = 0, layers: int = 0,
                   heads: int = 0) -> tuple[int, int, int]:
    """(width, layers, heads) of the RTD generator for an encoder ``hidden`` wide and ``num_layers`` deep."""
    if isinstance(cfg_or_hidden, PretrainConfig):
        c = cfg_or_hidden
        hidden, num_layers = c.hidden_size, c.num_layers
        width, layers, heads = c.generator_hidden_size, c.generator_layers, c.generator_heads
    else:
        hidden = cfg_or_hidden
    width = width or max(32, int(round(hidden / 3 / 32)) * 32)
    heads = heads or max(1, width // 32)
    if width % heads:
        raise ValueError(f"generator_hidden_size {width} must be a multiple of generator_heads {heads}")
    return width, layers or num_layers, heads


def _rtd_modules():
    import torch

    class Generator(torch.nn.Module):
        """The RTD generator: a small pre-LN transformer on the discriminator's embeddings.

        It owns no embeddings: it reads the shared embedding output, projects it to
        its width, and predicts tokens through the shared word-embedding matrix.
        """

        def __init__(self, emb_dim: int, width: int, layers: int, heads: int, vocab_size: int):
            super().__init__()
            self.proj_in = torch.nn.Linear(emb_dim, width)
            layer = torch.nn.TransformerEncoderLayer(width, heads, dim_feedforward=4 * width, dropout=0.0,
                                                     activation="gelu", batch_first=True, norm_first=True)
            self.encoder = torch.nn.TransformerEncoder(layer, layers, norm=torch.nn.LayerNorm(width),
                                                       enable_nested_tensor=False)
            self.proj_out = torch.nn.Sequential(torch.nn.Linear(width, emb_dim), torch.nn.GELU(),
                                                torch.nn.LayerNorm(emb_dim))
            self.bias = torch.nn.Parameter(torch.zeros(vocab_size))

        def forward(self, embedded, chosen, word_embeddings):
            h = self.encoder(self.proj_in(embedded))
            return self.proj_out(h[chosen]) @ word_embeddings.t() + self.bias

    class RTDModel(torch.nn.Module):
        """Discriminator (a ``transformers`` encoder) + detection head + generator."""

        def __init__(self, disc, width: int, layers: int, heads: int):
            super().__init__()
            hidden = disc.config.hidden_size
            self.disc = disc
            self.head = torch.nn.Sequential(torch.nn.Linear(hidden, hidden), torch.nn.GELU(),
                                            torch.nn.Linear(hidden, 1))
            emb_dim = disc.get_input_embeddings().embedding_dim
            self.generator = Generator(emb_dim, width, layers, heads, disc.config.vocab_size)

        def parts_state_dict(self) -> dict:
            """Generator and head weights (the discriminator is saved as a model folder)."""
            return {k: v for k, v in self.state_dict().items() if not k.startswith("disc.")}

        def forward(self, input_ids, chosen, gen_input, rtd_weight: float, temperature: float = 1.0,
                    noise_generator=None) -> dict:
            """Losses and counts for one batch.

            Args:
                input_ids: the original ids ``[B, L]``.
                chosen: bool ``[B, L]``, the positions the generator fills.
                gen_input: ``input_ids`` with [MASK] at (most of) the chosen positions.
                rtd_weight: weight of the discriminator loss (ELECTRA: 50).
                noise_generator: a ``torch.Generator`` for the Gumbel noise (fixed samples in evaluation).
            """
            f = torch.nn.functional
            emb = self.disc.embeddings(input_ids=gen_input)
            logits = self.generator(emb, chosen, self.disc.get_input_embeddings().weight)
            target = input_ids[chosen]
            gen_loss = f.cross_entropy(logits.float(), target)
            with torch.no_grad():
                u = torch.rand(logits.shape, device=logits.device, generator=noise_generator)
                gumbel = -torch.log(-torch.log(u.clamp(1e-9, 1.0 - 1e-7)))
                sampled = (logits.float() / temperature + gumbel).argmax(-1)
                replaced_ids = input_ids.clone()
                replaced_ids[chosen] = sampled
                is_replaced = replaced_ids != input_ids  # a sample equal to the original counts as original
            hidden = self.disc(input_ids=replaced_ids).last_hidden_state
            disc_logits = self.head(hidden).squeeze(-1).float()
            disc_loss = f.binary_cross_entropy_with_logits(disc_logits, is_replaced.float())
            with torch.no_grad():  # counts as tensors: reading them waits for the device
                pred = disc_logits > 0
                stats = {
                    "gen_correct": (logits.argmax(-1) == target).sum(),
                    "masked": target.numel(),
                    "replaced_correct": (pred & is_replaced).sum(),
                    "replaced": is_replaced.sum(),
                    "original_correct": (~pred & ~is_replaced).sum(),
                    "original": (~is_replaced).sum(),
                }
            return {"loss": gen_loss + rtd_weight * disc_loss, "gen_loss": gen_loss, "disc_loss": disc_loss,
                    **stats}

    return Generator, RTDModel


def build_rtd(disc, cfg: PretrainConfig):
    """Discriminator ``disc`` wrapped with a fresh generator and detection head."""
    _, RTDModel = _rtd_modules()
    width, layers, heads = generator_size(disc.config.hidden_size, disc.config.num_hidden_layers,
                                          cfg.generator_hidden_size, cfg.generator_layers, cfg.generator_heads)
    return RTDModel(disc, width, layers, heads)


def rtd_inputs(ids, tok, cfg: PretrainConfig, generator, special_ids):
    """(chosen positions, generator input): 85 % of the chosen get [MASK], 15 % stay (ELECTRA)."""
    import torch

    chosen = choose_positions(ids, cfg.mask_prob, generator, special_ids, cfg.mask_span, cfg.max_span)
    gen_input = ids.clone()
    keep = torch.rand(ids.shape, generator=generator) >= 0.85
    gen_input[chosen & ~keep] = tok.mask_token_id
    return chosen, gen_input


def evaluate_mlm(model, data, tok, cfg, device, special_ids, logits_fn=None) -> dict:
    """Masked-token accuracy and loss on the held-out sequences (fixed masks).

    ``logits_fn(model, corrupted, chosen)`` gives the logits at the chosen
    positions (default :func:`mlm_logits`, for ``transformers`` masked-LM models).
    """
    logits_fn = logits_fn or mlm_logits
    import torch

    g = torch.Generator().manual_seed(cfg.seed + 7)
    model.eval()
    correct = total = 0
    loss_sum = 0.0
    with torch.inference_mode(), _autocast(cfg, device):
        for i in range(0, len(data), 64):
            ids = torch.from_numpy(np.asarray(data[i : i + 64], dtype=np.int64))
            corrupted, chosen, target = mask_tokens(ids, tok, cfg.mask_prob, g, special_ids, cfg.mask_span,
                                                    cfg.max_span)
            logits = logits_fn(model, corrupted.to(device), chosen.to(device)).float()
            target = target.to(device)
            loss_sum += float(torch.nn.functional.cross_entropy(logits, target, reduction="sum"))
            correct += int((logits.argmax(-1) == target).sum())
            total += int(target.numel())
    model.train()
    return {"mlm_accuracy": correct / max(total, 1), "mlm_loss": loss_sum / max(total, 1), "masked_tokens": total}


def evaluate_rtd(model, data, tok, cfg, device, special_ids) -> dict:
    """Discriminator accuracy (replaced / original / all tokens) and generator masked-token
    accuracy on the held-out sequences (fixed masks and samples)."""
    import torch

    g = torch.Generator().manual_seed(cfg.seed + 7)
    noise = torch.Generator(device=device).manual_seed(cfg.seed + 11)
    model.eval()
    sums = {"gen_correct": 0, "masked": 0, "replaced_correct": 0, "replaced": 0, "original_correct": 0,
            "original": 0}
    gen_loss = disc_loss = 0.0
    n_batches = 0
    with torch.inference_mode(), _autocast(cfg, device):
        for i in range(0, len(data), 64):
            ids = torch.from_numpy(np.asarray(data[i : i + 64], dtype=np.int64))
            chosen, gen_input = rtd_inputs(ids, tok, cfg, g, special_ids)
            out = model(ids.to(device), chosen.to(device), gen_input.to(device), cfg.rtd_weight,
                        noise_generator=noise)
            for k in sums:
                sums[k] += int(out[k])
            gen_loss += float(out["gen_loss"])
            disc_loss += float(out["disc_loss"])
            n_batches += 1
    model.train()
    n_tokens = sums["replaced"] + sums["original"]
    return {
        "rtd_accuracy": (sums["replaced_correct"] + sums["original_correct"]) / max(n_tokens, 1),
        "rtd_replaced_accuracy": sums["replaced_correct"] / max(sums["replaced"], 1),
        "rtd_original_accuracy": sums["original_correct"] / max(sums["original"], 1),
        "replaced_share": sums["replaced"] / max(n_tokens, 1),
        "gen_mlm_accuracy": sums["gen_correct"] / max(sums["masked"], 1),
        "gen_loss": gen_loss / max(n_batches, 1),
        "disc_loss": disc_loss / max(n_batches, 1),
        "masked_tokens": sums["masked"],
    }


def _autocast(cfg, device):
    import contextlib

    import torch

    if cfg.bf16:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ------------------------------------------------------------------ checkpoints

RTD_PARTS = "rtd_parts.safetensors"


def save_checkpoint(ckpt: Path, model, optimizer, scheduler, state: dict) -> None:
    """Write the checkpoint to a temporary folder, then swap it in.

    An RTD model is saved as its discriminator (a model folder) plus
    ``rtd_parts.safetensors`` (generator and detection head).
    """
    import torch

    tmp = ckpt.with_name(ckpt.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if hasattr(model, "parts_state_dict"):
        from safetensors.torch import save_file

        model.disc.save_pretrained(tmp, safe_serialization=True)
        save_file({k: v.detach().contiguous() for k, v in model.parts_state_dict().items()}, str(tmp / RTD_PARTS))
    else:
        model.save_pretrained(tmp, safe_serialization=True)
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "optim.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=2))
    old = ckpt.with_name(ckpt.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if ckpt.exists():
        ckpt.rename(old)
    tmp.rename(ckpt)
    shutil.rmtree(old, ignore_errors=True)


def _log(out: Path, record: dict) -> None:
    with open(out / "log.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


# ------------------------------------------------------------------ data


def _init_tokenizer_check(init_dir: Path, tok) -> None:
    from transformers import AutoTokenizer

    from zhenping.training.pack import tokenizer_sha1

    try:
        init_tok = AutoTokenizer.from_pretrained(init_dir)
    except (OSError, ValueError) as exc:
        raise ValueError(f"init_from {init_dir}: cannot read its tokenizer ({exc})") from None
    if tokenizer_sha1(init_tok) != tokenizer_sha1(tok):
        raise ValueError(f"init_from {init_dir}: its tokenizer differs from the training data's; "
                         f"write the pack with `zhenping pack --tokenizer {init_dir}`")


def load_data(cfg: PretrainConfig, out: Path):
    """(tokenizer, training sequences, held-out sequences) from the pack or the corpora."""
    if cfg.pack:
        from zhenping.training.pack import load_pack, pack_sequences

        pk = load_pack(cfg.pack)
        tok = pk.tokenizer()
        t0 = time.time()
        train = pack_sequences(pk, None, pk.train_docs, cfg.max_length, tok.cls_token_id, tok.sep_token_id,
                               cfg.seed)
        heldout = pack_sequences(pk, None, pk.heldout_docs, cfg.max_length, tok.cls_token_id,
                                 tok.sep_token_id, cfg.seed + 1)
        print(f"pack {cfg.pack}: {len(train):,} training and {len(heldout):,} held-out sequences of "
              f"{cfg.max_length} tokens ({time.time() - t0:.0f}s)", file=sys.stderr)
        return tok, train, heldout[: cfg.eval_sequences]
    corpus = build_corpus(cfg, out)
    if cfg.init_from:
        # The encoder's own tokenizer; the packed ids are cached under its vocabulary's hash.
        from transformers import AutoTokenizer

        from zhenping.training.pack import tokenizer_sha1

        tok = AutoTokenizer.from_pretrained(resolve_model_dir(cfg.init_from))
        packed = pack(cfg, out, corpus, tok, suffix="_" + tokenizer_sha1(tok)[:8])
    else:
        tok = build_tokenizer(cfg, out, corpus)
        packed = pack(cfg, out, corpus, tok)
    n_eval = min(cfg.eval_sequences, len(packed) // 10)
    return tok, packed[n_eval:], packed[:n_eval]


# ------------------------------------------------------------------ run


def _new_model(cfg: PretrainConfig, tok):
    """The model a fresh run starts from: built from the config or from ``init_from``."""
    from transformers import AutoModelForMaskedLM

    if cfg.init_from:
        init_dir = resolve_model_dir(cfg.init_from)
        _init_tokenizer_check(init_dir, tok)
        if cfg.objective == "rtd":
            model = build_rtd(load_encoder(init_dir, cfg.dropout), cfg)
        else:
            load_encoder(init_dir, cfg.dropout)  # refuses unsupported model types with a clear message
            model = AutoModelForMaskedLM.from_pretrained(init_dir)
            _set_dropout(model, cfg.dropout)
        c = (model.disc if cfg.objective == "rtd" else model).config
        print(f"encoder initialised from {init_dir}: {c.num_hidden_layers} layers x {c.hidden_size} "
              f"(its sizes replace the configured ones)", file=sys.stderr)
        return model
    if cfg.objective == "rtd":
        from transformers import AutoModel

        disc = AutoModel.from_config(encoder_config(cfg, len(tok)), add_pooling_layer=False)
        return build_rtd(disc, cfg)
    return build_model(cfg, len(tok))


def _resume_model(cfg: PretrainConfig, ckpt: Path, state: dict):
    from transformers import AutoModelForMaskedLM

    written_by = state.get("config", {}).get("objective", "mlm")
    if written_by != cfg.objective:
        raise ValueError(f"{ckpt} was written with objective {written_by!r}, this run asks for "
                         f"{cfg.objective!r}; use another out_dir or the same objective")
    if cfg.objective == "mlm":
        model = AutoModelForMaskedLM.from_pretrained(ckpt)
        _set_dropout(model, cfg.dropout)
        return model
    from safetensors.torch import load_file

    model = build_rtd(load_encoder(ckpt, cfg.dropout), cfg)
    missing, unexpected = model.load_state_dict(load_file(str(ckpt / RTD_PARTS)), strict=False)
    missing = [k for k in missing if not k.startswith("disc.")]
    if missing or unexpected:
        raise ValueError(f"{ckpt / RTD_PARTS}: generator sizes differ from the config "
                         f"(missing {missing[:3]}, unexpected {list(unexpected)[:3]}); keep the generator_* keys")
    return model


def _lr_factor(cfg: PretrainConfig, step: int, seconds: float, total_steps: int) -> float:
    """Warmup then linear decay, over steps or (``time_schedule_minutes``) over training time."""
    if cfg.time_schedule_minutes > 0:
        budget = cfg.time_schedule_minutes * 60
        return min(1.0, (step + 1) / max(cfg.warmup_steps, 1)) * max(0.0, 1.0 - seconds / budget)
    if step < cfg.warmup_steps:
        return (step + 1) / max(cfg.warmup_steps, 1)
    return max(0.0, (total_steps - step) / max(total_steps - cfg.warmup_steps, 1))


def run(cfg: PretrainConfig) -> Path:
    """Run (or resume) pretraining; returns the ``encoder/`` directory."""
    import torch
    from tqdm import tqdm

    validate_config(cfg)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    print("pretrain config:\n" + format_config(cfg), file=sys.stderr)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if cfg.device == "auto" else cfg.device))

    tok, train_data, eval_data = load_data(cfg, out)
    if len(train_data) < cfg.batch_size:
        raise ValueError(f"corpus too small: {len(train_data)} sequences for batch_size {cfg.batch_size}")
    steps_per_epoch = len(train_data) // cfg.batch_size
    total_steps = cfg.max_steps or max(1, int(math.ceil(steps_per_epoch * cfg.epochs)))
    special_ids = [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]

    ckpt = out / "checkpoint"
    torch.manual_seed(cfg.seed)
    if (ckpt / "state.json").exists():
        state = json.loads((ckpt / "state.json").read_text())
        model = _resume_model(cfg, ckpt, state)
        # Where the data stands is counted in sequences, so a resumed run may use another batch size.
        state.setdefault("sequences", state["step"] * state.get("config", {}).get("batch_size", cfg.batch_size))
        print(f"resuming from step {state['step']:,} of {total_steps:,} "
              f"({state['sequences']:,} sequences seen)", file=sys.stderr)
    else:
        model = _new_model(cfg, tok)
        state = {"step": 0, "tokens": 0, "sequences": 0, "seconds": 0.0}
    state["config"] = config_to_dict(cfg)  # the checkpoint records the config that wrote it
    encoder = model.disc if cfg.objective == "rtd" else model
    if encoder.config.vocab_size < len(tok):
        raise ValueError(f"the encoder's vocabulary ({encoder.config.vocab_size:,}) is smaller than the "
                         f"tokenizer's ({len(tok):,})")
    model.to(device).train()
    # No weight decay on biases and layer-norm gains: the one-dimensional parameters.
    params = list(model.parameters())
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)  # lr is set each step below
    if (ckpt / "optim.pt").exists():
        saved = torch.load(ckpt / "optim.pt", map_location=device, weights_only=True)
        optimizer.load_state_dict(saved["optimizer"])

    n_params = sum(p.numel() for p in encoder.base_model.parameters())
    print(f"encoder: {n_params / 1e6:.1f}M parameters ({cfg.objective}); {len(train_data):,} training sequences, "
          f"{steps_per_epoch:,} steps per epoch, {total_steps:,} steps planned", file=sys.stderr)
    evaluate = evaluate_rtd if cfg.objective == "rtd" else evaluate_mlm

    gen = torch.Generator().manual_seed(cfg.seed + state["step"])
    start = time.time()
    last_ckpt = time.time()
    run_seconds0 = state["seconds"]
    bar = tqdm(total=total_steps, initial=state["step"], desc="pretrain", unit="step", file=sys.stderr,
               mininterval=5.0)
    loss_ema = None
    stopped_early = False
    orders: dict[int, np.ndarray] = {}
    epoch_size = steps_per_epoch * cfg.batch_size  # sequences in one pass
    while state["step"] < total_steps:
        epoch, pos = divmod(state["sequences"], epoch_size)
        if epoch not in orders:  # the same order on resume: it depends on the epoch alone
            orders = {epoch: np.random.default_rng(cfg.seed + epoch).permutation(len(train_data))}
        order = orders[epoch]
        idx = np.sort(order[pos : pos + cfg.batch_size])
        ids = torch.from_numpy(np.asarray(train_data[idx], dtype=np.int64))
        lr = cfg.lr * _lr_factor(cfg, state["step"], state["seconds"], total_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with _autocast(cfg, device):
            if cfg.objective == "rtd":
                chosen, gen_input = rtd_inputs(ids, tok, cfg, gen, special_ids)
                loss = model(ids.to(device), chosen.to(device), gen_input.to(device), cfg.rtd_weight)["loss"]
            else:
                corrupted, chosen, target = mask_tokens(ids, tok, cfg.mask_prob, gen, special_ids,
                                                        cfg.mask_span, cfg.max_span)
                logits = mlm_logits(model, corrupted.to(device), chosen.to(device))
                loss = torch.nn.functional.cross_entropy(logits.float(), target.to(device))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state["step"] += 1
        state["tokens"] += int(ids.numel())
        state["sequences"] += len(idx)
        state["seconds"] = run_seconds0 + (time.time() - start)
        loss_val = loss.item()
        loss_ema = loss_val if loss_ema is None else 0.98 * loss_ema + 0.02 * loss_val
        bar.update(1)
        if state["step"] % 20 == 0:
            bar.set_postfix(loss=f"{loss_ema:.3f}", tok_s=f"{state['tokens'] / max(state['seconds'], 1e-9):.0f}")
        end_of_epoch = state["sequences"] // epoch_size > (state["sequences"] - len(idx)) // epoch_size
        out_of_time = cfg.max_minutes and (time.time() - start) > cfg.max_minutes * 60
        schedule_done = cfg.time_schedule_minutes > 0 and state["seconds"] >= cfg.time_schedule_minutes * 60
        if schedule_done:
            total_steps = state["step"]  # the lr reached 0: this is the last step
        if end_of_epoch or out_of_time or state["step"] == total_steps or \
                time.time() - last_ckpt > cfg.checkpoint_minutes * 60:
            metrics = evaluate(model, eval_data, tok, cfg, device, special_ids)
            record = {"step": state["step"], "epoch": state["sequences"] / epoch_size,
                      "train_loss": loss_ema, "tokens": state["tokens"], "seconds": round(state["seconds"], 1),
                      "lr": lr, "objective": cfg.objective, **metrics}
            if end_of_epoch:
                record["end_of_epoch"] = int(state["sequences"] // epoch_size)
            _log(out, record)
            bar.write(json.dumps(record))
            state["last_eval"] = record
            save_checkpoint(ckpt, model, optimizer, scheduler, state)
            last_ckpt = time.time()
            if out_of_time and state["step"] < total_steps:
                stopped_early = True
                break
    bar.close()
    if stopped_early:
        print(f"stopped after {cfg.max_minutes} minutes at step {state['step']:,}; "
              "run the same command again to resume", file=sys.stderr)
        return ckpt
    enc = out / "encoder"
    tmp = out / "encoder.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    encoder.save_pretrained(tmp, safe_serialization=True)
    from zhenping.training.tokenizer import save_tokenizer

    save_tokenizer(tok, tmp)
    summary = {"steps": state["step"], "tokens": state["tokens"], "seconds": state["seconds"],
               "tokens_per_second": state["tokens"] / max(state["seconds"], 1e-9),
               "objective": cfg.objective, "final_eval": state.get("last_eval"), "encoder_parameters": n_params,
               "config": config_to_dict(cfg)}
    (tmp / "pretrain_summary.json").write_text(json.dumps(summary, indent=2))
    shutil.rmtree(enc, ignore_errors=True)
    tmp.rename(enc)
    print(f"encoder written to {enc}", file=sys.stderr)
    return enc
