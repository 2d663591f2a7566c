"""The scorer: comments in, three scores in [0, 1] per comment out.

:class:`Scorer` loads an exported model directory (see README: model directory)
or a zhenping model on the Hugging Face Hub, and scores lists of comments with
either PyTorch or ONNX Runtime. Every text goes through
:func:`zhenping.model.normalize.normalize_text` first, exactly as at training time; texts
are tokenised, truncated at the model's ``max_length``, sorted by length and
batched so that a batch pads to similar lengths, and the scores come back in
input order as :class:`CommentScores`.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass, fields
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from zhenping.model.axes import AXES, check_level_thresholds, score_to_level
from zhenping.model.normalize import normalize_text

log = logging.getLogger(__name__)

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default"

CONFIG_FILE = "config.json"
SCORER_CONFIG_FILE = "scorer_config.json"
SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")


class Backend(str, Enum):
    """Inference runtime: PyTorch, ONNX Runtime, or ``auto`` (ONNX Runtime when the model ships an ONNX file, on CPU)."""

    torch = "torch"
    onnx = "onnx"
    auto = "auto"


BACKENDS = tuple(b.value for b in Backend)  # ("torch", "onnx", "auto")

# owner/name as the Hub spells repository ids; anything else that does not exist
# on disk is reported as a missing directory.
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+")


class ModelLoadError(ValueError):
    """A model directory or Hub model that cannot be used for scoring."""


@dataclass(frozen=True)
class CommentScores:
    """Scores of one comment, each in [0, 1] (``sigmoid`` of the model's logit).

    Example:
        >>> s = CommentScores(warmth=0.9, substance=0.1, template=0.5)
        >>> s.levels
        {'warmth': 3, 'substance': 0, 'template': 2}
    """

    warmth: float
    substance: float
    template: float

    # Per-axis cut points of the model that produced the scores (its
    # scorer_config.json "level_thresholds"); set by Scorer, not a dataclass field,
    # so equality, astuple and as_dict see the three scores only.
    _level_thresholds: ClassVar[dict[str, list[float]] | None] = None
    # Whether the text was longer than the model's max_length tokens, so that only
    # its first max_length tokens (special tokens included) were read; set by Scorer,
    # outside equality like the cut points.
    _truncated: ClassVar[bool] = False

    @property
    def truncated(self) -> bool:
        """True when the model read only the first ``max_length`` tokens of the text."""
        return self._truncated

    @property
    def levels(self) -> dict[str, int]:
        """The annotation level 0-3 per axis: through the model's calibrated cut points
        (``level_thresholds`` in its ``scorer_config.json``) where it has them, else the
        nearest level, ``round(score * 3)``."""
        cuts = self._level_thresholds or {}
        return {f.name: score_to_level(getattr(self, f.name), cuts.get(f.name)) for f in fields(self)}

    def with_level_thresholds(self, thresholds: dict[str, list[float]] | None) -> "CommentScores":
        """The same scores, read into levels with ``thresholds`` (``{axis: [t1, t2, t3]}``;
        ``None``: ``round(score * 3)``)."""
        out = CommentScores(self.warmth, self.substance, self.template)
        if thresholds:
            object.__setattr__(out, "_level_thresholds", thresholds)
        if self._truncated:
            object.__setattr__(out, "_truncated", True)
        return out

    def as_dict(self) -> dict[str, float]:
        """``{"warmth": .., "substance": .., "template": ..}`` as plain floats."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


class Scorer:
    """Scores Chinese comments for warmth, substance and template-likeness.

    Build one with :meth:`from_pretrained`, once per process; it is stateless
    between calls. Attributes describe the loaded model: ``axes`` (from the
    model's ``scorer_config.json``), ``max_length`` (tokens per text, special
    tokens included), ``model_id``, ``model_version``, ``config`` (the whole
    ``scorer_config.json``), ``backend`` (``"torch"`` or ``"onnx"``, the one
    actually in use), ``model_dir`` (``None`` for a Hub model), ``model_config``
    (the ``transformers`` config) and ``tokenizer``.

    ``model_id`` is ``scorer_config["model_id"]`` when the export sets one, else
    the Hub id or the directory's name.

    Example:
        >>> scorer = Scorer.from_pretrained("model/default")
        >>> scorer.score(["谢谢分享,挺有用的"])[0].warmth  # doctest: +SKIP
    """

    def __init__(
        self,
        runner,
        tokenizer,
        config: dict,
        model_config,
        model_id: str,
        model_dir: Path | None = None,
    ) -> None:
        self._runner = runner
        self.tokenizer = tokenizer
        self.config = config
        self.model_config = model_config
        self.axes: tuple[str, ...] = tuple(config["axes"])
        self.max_length: int = int(config["max_length"])
        # Calibrated score -> level cut points per axis; None: round(score * 3).
        self.level_thresholds: dict[str, list[float]] | None = _level_thresholds_of(config)
        self.model_version: str = str(config.get("model_version", "unknown"))
        self.model_id = model_id
        self.model_dir = model_dir
        self.backend: str = runner.name
        self.pad_token_id = _pad_id(tokenizer)
        # A private copy of the Rust tokenizer with truncation set once: the
        # shared one would be reconfigured on every call, which is not safe when
        # two threads score at the same time.
        backend_tok = getattr(tokenizer, "backend_tokenizer", None)
        if backend_tok is not None:
            from tokenizers import Tokenizer

            self._fast = Tokenizer.from_str(backend_tok.to_str())
            self._fast.no_padding()
            self._fast.enable_truncation(self.max_length)
        else:  # pragma: no cover - every tokenizer transformers 5 loads is Rust-backed
            self._fast = None

    def __repr__(self) -> str:
        return (
            f"Scorer(model_id={self.model_id!r}, model_version={self.model_version!r}, "
            f"backend={self.backend!r}, axes={self.axes}, max_length={self.max_length})"
        )

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(
        cls,
        path_or_hub_id: str | os.PathLike | None = None,
        device: str = "cpu",
        backend: str = "torch",
        allow_pickle: bool = False,
        num_threads: int | None = None,
        *,
        onnx_file: str | None = None,
        fallback_to_torch: bool = False,
        spinning: bool = True,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        max_length: int | None = None,
    ) -> "Scorer":
        """Load a scorer from an exported model directory or the Hugging Face Hub.

        Args:
            path_or_hub_id: a model directory, an ``owner/name`` Hub id, or
                ``None`` for the shipped model in ``model/default``.
            device: ``"cpu"`` or a torch device such as ``"cuda:0"``.
            backend: ``"torch"``, or ``"onnx"`` for ONNX Runtime (needs
                ``model.onnx`` or ``model.int8.onnx``, see ``zhenping export-onnx``),
                or ``"auto"``: ONNX Runtime when the directory ships an ONNX file
                that loads (on CPU), else PyTorch. ``scorer.backend`` says which ran.
            allow_pickle: also accept ``pytorch_model.bin`` weights. Loading a
                pickle can run arbitrary code, so only do this for files you trust.
            num_threads: CPU threads for the forward pass (``torch.set_num_threads``,
                which is process-wide, or the ONNX Runtime session's intra-op pool).
            onnx_file: the ONNX file in the model directory (default: the int8
                model if present, else ``model.onnx``); a path is used as given.
            fallback_to_torch: with ``backend="onnx"``, log a warning and use
                PyTorch when the ONNX file is missing or unreadable.
            spinning: ONNX Runtime: whether idle pool threads busy-wait between
                runs (the fastest for back-to-back batches). Pass ``False`` in a
                server, where the spinning takes CPU from request handling.
            revision: Hub branch, tag or commit.
            cache_dir: Hub cache folder (default: the Hugging Face cache).
            local_files_only: use only the local Hub cache, never the network.
            max_length: tokens read per text, special tokens included, in place of
                the export's ``max_length`` (``None``: the export's); at most the
                positions the model has.

        Returns:
            A ready scorer (the model is in eval mode).

        Raises:
            ModelLoadError: (a ``ValueError``) naming every missing file, a
                corrupt file and what is wrong with it, refused pickle weights, or
                a Hub model that has no trained scoring head.

        Example:
            >>> scorer = Scorer.from_pretrained("runs/export")  # doctest: +SKIP
            >>> scorer.axes  # doctest: +SKIP
            ('warmth', 'substance', 'template')
        """
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
        if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
            raise ValueError(f"num_threads must be a positive int or None, got {num_threads!r}")
        if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int)
                                       or max_length < 2):
            raise ValueError(f"max_length must be an int of at least 2 or None, got {max_length!r}")
        scorer = cls._load(path_or_hub_id, device, backend, allow_pickle, num_threads, onnx_file,
                           fallback_to_torch, spinning, revision, cache_dir, local_files_only)
        if max_length is not None:
            scorer._set_max_length(max_length)
        return scorer

    @classmethod
    def _load(cls, path_or_hub_id, device, backend, allow_pickle, num_threads, onnx_file, fallback_to_torch,
              spinning, revision, cache_dir, local_files_only) -> "Scorer":
        if path_or_hub_id is None:
            if not DEFAULT_MODEL_DIR.is_dir():
                raise ModelLoadError(
                    f"no default model is installed (expected a model directory at {DEFAULT_MODEL_DIR}); "
                    "pass one explicitly: Scorer.from_pretrained('path/to/model_dir'), "
                    "`zhenping score --model DIR`, or SCORER_MODEL_DIR for the service"
                )
            path_or_hub_id = DEFAULT_MODEL_DIR
        path = Path(path_or_hub_id).expanduser()
        if path.is_dir():
            return cls._from_dir(
                path.resolve(), device, backend, allow_pickle, num_threads, onnx_file, fallback_to_torch,
                spinning,
            )
        if path.exists():
            raise ModelLoadError(f"model path {str(path)!r} is a file; expected a model directory")
        name = str(path_or_hub_id)
        local = _local_reason(name)
        if local is not None:
            raise ModelLoadError(f"model directory {name!r} does not exist ({local}); check the path")
        if _HUB_ID.fullmatch(name):
            if backend == "onnx":
                raise ModelLoadError(
                    f"backend={backend!r} needs a local model directory; download {name!r} and run "
                    "`zhenping export-onnx --model DIR`, or use backend='torch'"
                )
            return cls._from_hub(name, device, allow_pickle, num_threads, revision, cache_dir, local_files_only)
        raise ModelLoadError(
            f"model directory {name!r} does not exist (and it is not a Hugging Face Hub id of the form owner/name)"
        )

    @classmethod
    def _from_dir(cls, path, device, backend, allow_pickle, num_threads, onnx_file, fallback_to_torch,
                  spinning=True):
        if backend == "auto":
            # Use what the folder has: ONNX Runtime where the export ships a model it can
            # run here (falling back to PyTorch only when the folder also has its weights,
            # so an ONNX-only folder from `export-onnx --out` loads); PyTorch otherwise.
            backend = "onnx" if device == "cpu" and _onnx_available(path, onnx_file) else "torch"
            fallback_to_torch = backend == "onnx" and _has_torch_weights(path, allow_pickle)
        need_torch_weights = backend == "torch" or fallback_to_torch
        _check_files(path, allow_pickle, need_torch_weights)
        scorer_cfg = read_json(path / SCORER_CONFIG_FILE)
        config = _load_model_config(path, path / CONFIG_FILE)
        _validate(scorer_cfg, config, where=str(path))
        tokenizer = _load_tokenizer(path, where=str(path))
        runner = None
        if backend == "onnx":
            from zhenping.model.onnx_backend import OnnxRunner

            try:
                runner = OnnxRunner.from_dir(path, onnx_file=onnx_file, device=device, num_threads=num_threads,
                                             spinning=spinning)
            except ModelLoadError as err:
                if not fallback_to_torch:
                    raise
                log.warning("ONNX backend unavailable, scoring with PyTorch instead: %s", err)
        if runner is None:
            model = _load_torch_model(path, config, allow_pickle, where=str(path))
            runner = TorchRunner(model, device=device, num_threads=num_threads)
        model_id = str(scorer_cfg.get("model_id") or path.name)
        return cls(runner, tokenizer, scorer_cfg, config, model_id=model_id, model_dir=path)

    @classmethod
    def _from_hub(cls, repo_id, device, allow_pickle, num_threads, revision, cache_dir, local_files_only):
        import huggingface_hub
        from huggingface_hub import errors as hub_errors

        where = f"{repo_id!r} on the Hugging Face Hub"
        # Unreachable Hub: use the local cache only, at once, instead of the client's
        # retries (about 24 s of them before it gives up).
        local_files_only = local_files_only or not _hub_reachable()
        hub_kw = dict(revision=revision, cache_dir=cache_dir, local_files_only=local_files_only)
        try:
            scorer_cfg_path = huggingface_hub.hf_hub_download(repo_id, SCORER_CONFIG_FILE, **hub_kw)
        except hub_errors.LocalEntryNotFoundError as err:
            # Offline (or unreachable) and not cached. The cache remembers files
            # the Hub said do not exist, which tells a plain checkpoint apart.
            cached = huggingface_hub.try_to_load_from_cache(
                repo_id, SCORER_CONFIG_FILE, cache_dir=cache_dir, revision=revision
            )
            if cached is huggingface_hub.file_download._CACHED_NO_EXIST:
                raise ModelLoadError(_no_head_message(where)) from err
            raise ModelLoadError(
                f"could not fetch {repo_id!r} from the Hugging Face Hub: it is not in the local cache and the "
                "Hub cannot be reached (offline mode: HF_HUB_OFFLINE=1 or local_files_only=True, or no network). "
                "Download it where the Hub is reachable, or pass a local model directory"
            ) from err
        except hub_errors.EntryNotFoundError as err:
            raise ModelLoadError(_no_head_message(where)) from err
        except hub_errors.RepositoryNotFoundError as err:
            raise ModelLoadError(
                f"no local directory {repo_id!r} and no such model on the Hugging Face Hub "
                "(or it is private or gated: log in with `hf auth login`)"
            ) from err
        except hub_errors.RevisionNotFoundError as err:
            raise ModelLoadError(f"{where} has no revision {revision!r}") from err
        except (OSError, ValueError) as err:
            raise ModelLoadError(f"could not fetch {SCORER_CONFIG_FILE} of {where}: {err}") from err

        from transformers import AutoConfig

        scorer_cfg = read_json(Path(scorer_cfg_path), name=f"{SCORER_CONFIG_FILE} of {where}")
        try:
            config = AutoConfig.from_pretrained(repo_id, **hub_kw)
        except (OSError, ValueError, KeyError) as err:
            raise ModelLoadError(f"{CONFIG_FILE} of {where} could not be loaded: {err}") from err
        _validate(scorer_cfg, config, where=where)
        tokenizer = _load_tokenizer(repo_id, where=where, **hub_kw)
        model = _load_torch_model(repo_id, config, allow_pickle, where=where, **hub_kw)
        runner = TorchRunner(model, device=device, num_threads=num_threads)
        model_id = str(scorer_cfg.get("model_id") or repo_id)
        return cls(runner, tokenizer, scorer_cfg, config, model_id=model_id, model_dir=None)

    def _set_max_length(self, max_length: int) -> None:
        problem = _beyond_positions(max_length, self.model_config)
        if problem:
            raise ValueError(problem)
        self.max_length = max_length
        self.config = {**self.config, "max_length": max_length}
        if self._fast is not None:
            self._fast.enable_truncation(max_length)

    # ------------------------------------------------------------------ scoring

    def score(
        self, texts: Sequence[str], batch_size: int = 32, max_tokens: int | None = None
    ) -> list[CommentScores]:
        """Score comments.

        Args:
            texts: the comments, raw; each is normalised with ``normalize_text``.
                A single comment goes in a one-element list.
            batch_size: the most texts per forward pass.
            max_tokens: optional cap on ``texts × padded length`` per forward
                pass, which keeps batches of long texts small; ``None`` for no cap.

        Returns:
            One :class:`CommentScores` per text, in input order. An empty list
            gives ``[]``; a text that is empty after normalisation still gets
            scores (the model sees ``[CLS] [SEP]``).

        Raises:
            TypeError: ``texts`` is a bare string or holds a non-string (the
                index is named).
            ValueError: ``batch_size`` or ``max_tokens`` is not positive.

        Example:
            >>> scores = scorer.score(["默认好评", "抱抱你,会好起来的"])  # doctest: +SKIP
            >>> scores[1].levels["warmth"]  # doctest: +SKIP
        """
        texts = _check_texts(texts)
        return self.score_normalized([normalize_text(t) for t in texts], batch_size, max_tokens)

    def score_normalized(
        self, texts: Sequence[str], batch_size: int = 32, max_tokens: int | None = None
    ) -> list[CommentScores]:
        """Like :meth:`score`, for texts that already went through ``normalize_text``.

        For callers that normalise anyway (a cache keyed by normalised text, say);
        passing raw text here scores it without normalisation, which the model was
        not trained on.
        """
        texts = _check_texts(texts)
        _check_batching(batch_size, max_tokens)
        if not texts:
            return []
        ids, truncated = self._encode_marked(texts)
        probs = np.empty((len(texts), len(self.axes)), dtype=np.float64)
        for batch in plan_batches([len(x) for x in ids], batch_size, max_tokens):
            input_ids, attention_mask = pad_batch([ids[i] for i in batch], self.pad_token_id)
            logits = self._runner(input_ids, attention_mask)
            probs[batch] = _sigmoid(np.asarray(logits, dtype=np.float64))
        out = [CommentScores(**dict(zip(self.axes, map(float, row)))) for row in probs]
        if self.level_thresholds:
            for s in out:
                object.__setattr__(s, "_level_thresholds", self.level_thresholds)
        for s, cut in zip(out, truncated):
            if cut:
                object.__setattr__(s, "_truncated", True)
        return out

    def _encode(self, texts: list[str]) -> list[list[int]]:
        return self._encode_marked(texts)[0]

    def _encode_marked(self, texts: list[str]) -> tuple[list[list[int]], list[bool]]:
        """Token ids cut at ``max_length``, and whether each text was cut."""
        if self._fast is not None:
            encs = self._fast.encode_batch(texts, add_special_tokens=True)
            return [enc.ids for enc in encs], [bool(enc.overflowing) for enc in encs]
        full = self.tokenizer(texts, truncation=False, padding=False)["input_ids"]  # pragma: no cover
        return [x[:self.max_length - 1] + x[-1:] if len(x) > self.max_length else x  # pragma: no cover
                for x in full], [len(x) > self.max_length for x in full]


def _beyond_positions(max_length: int, model_config) -> str | None:
    """What is wrong when a model cannot read ``max_length`` tokens (None: it can)."""
    limit = _position_limit(model_config)
    if limit is None or max_length <= limit:
        return None
    return (f"max_length {max_length} is more than the {limit} tokens this model has positions for "
            f"(its max_position_embeddings is {model_config.max_position_embeddings})")


def _position_limit(model_config) -> int | None:
    """Tokens per text the model has position embeddings for (None: unknown).

    RoBERTa-family models number positions from ``pad_token_id + 1``, so two of
    their ``max_position_embeddings`` are never used.
    """
    n = getattr(model_config, "max_position_embeddings", None)
    if not isinstance(n, int):
        return None
    if "roberta" in str(getattr(model_config, "model_type", "")):
        return n - int(getattr(model_config, "pad_token_id", 1) or 0) - 1
    return n


# --------------------------------------------------------------------- runners


class TorchRunner:
    """Forward pass with PyTorch: padded ids and mask in, logits (numpy) out."""

    name = "torch"

    def __init__(self, model, device: str = "cpu", num_threads: int | None = None) -> None:
        import torch

        if num_threads is not None:
            torch.set_num_threads(num_threads)
        try:
            self.device = torch.device(device)
        except RuntimeError as err:
            raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda:0', got {device!r}") from err
        self.model = model.to(self.device).eval()
        self._torch = torch

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        torch = self._torch
        ids = torch.from_numpy(input_ids).to(self.device)
        mask = torch.from_numpy(attention_mask).to(self.device)
        with torch.inference_mode():
            logits = self.model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)).logits
        return logits.float().cpu().numpy()


# --------------------------------------------------------------------- helpers


def plan_batches(lengths: Sequence[int], batch_size: int, max_tokens: int | None = None) -> list[list[int]]:
    """Group indices into batches of similar length.

    Indices are sorted by length (shortest first, ties in input order) and cut
    into runs of at most ``batch_size``; with ``max_tokens``, a run also ends
    before ``len(run) × longest`` would exceed it (a single text always fits).

    Example:
        >>> plan_batches([5, 1, 3, 2], batch_size=2)
        [[1, 3], [2, 0]]
    """
    _check_batching(batch_size, max_tokens)
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        # Sorted ascending, so the newcomer is the longest of the run.
        if cur and (
            len(cur) >= batch_size or (max_tokens is not None and (len(cur) + 1) * lengths[i] > max_tokens)
        ):
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token id lists to the longest; returns ``(input_ids, attention_mask)`` as int64."""
    width = max(len(s) for s in seqs)
    ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for row, s in enumerate(seqs):
        ids[row, : len(s)] = s
        mask[row, : len(s)] = 1
    return ids, mask


def parity(scorer_a: Scorer, scorer_b: Scorer, texts: Sequence[str], batch_size: int = 32) -> dict[str, float]:
    """Largest and mean absolute score difference between two scorers on ``texts``.

    Used to check an ONNX or quantised model against the PyTorch one.

    Returns:
        ``{"max_abs": .., "mean_abs": .., "n": len(texts)}`` over every text and axis.

    Example:
        >>> parity(torch_scorer, onnx_scorer, ["好评", "差评"])  # doctest: +SKIP
        {'max_abs': 3.1e-07, 'mean_abs': 9.8e-08, 'n': 2}
    """
    if tuple(scorer_a.axes) != tuple(scorer_b.axes):
        raise ValueError(f"scorers have different axes: {scorer_a.axes} vs {scorer_b.axes}")
    a = np.array([astuple(s) for s in scorer_a.score(texts, batch_size=batch_size)], dtype=np.float64)
    b = np.array([astuple(s) for s in scorer_b.score(texts, batch_size=batch_size)], dtype=np.float64)
    if a.size == 0:
        return {"max_abs": 0.0, "mean_abs": 0.0, "n": 0}
    diff = np.abs(a - b)
    return {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()), "n": len(a)}


def read_json(path: Path, name: str | None = None) -> dict:
    """Read a JSON object, raising :class:`ModelLoadError` naming the file on any problem."""
    name = name or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ModelLoadError(f"{name} could not be read: {err}") from err
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise ModelLoadError(
            f"{name} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})"
        ) from err
    if not isinstance(obj, dict):
        raise ModelLoadError(f"{name} must hold a JSON object, got {type(obj).__name__}")
    return obj


def _onnx_available(path: Path, onnx_file: str | None) -> bool:
    """Whether ``backend="auto"`` should try ONNX Runtime for the model directory ``path``."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    from zhenping.model.onnx_backend import FP32_FILE, INT8_FILE

    return onnx_file is not None or any((path / name).is_file() for name in (INT8_FILE, FP32_FILE))


def _local_reason(name: str) -> str | None:
    """Why a path that is not on disk reads as a local path rather than a Hub id (``None``: it does not).

    Local: it starts with ``.``, ``/``, ``~`` or ``\\``, or its parent folder exists
    (``runs/model-mine`` where ``runs/`` is there). Only other ``owner/name`` forms go to the Hub.
    """
    if name.startswith((".", "/", "~", "\\")):
        return "a file-system path, not a Hub id"
    parent = Path(name).expanduser().parent
    if str(parent) not in ("", ".") and parent.is_dir():
        return f"its parent folder {str(parent) + os.sep!r} exists, so it is read as a local path, not a Hub id"
    return None


HUB_PROBE_TIMEOUT = 2.0  # seconds to open a connection to the Hub before treating it as offline


def _hub_reachable(timeout: float = HUB_PROBE_TIMEOUT) -> bool:
    """Whether the Hugging Face Hub answers a TCP connection now (``False`` when HF_HUB_OFFLINE is set)."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # through a proxy: the client finds out itself
    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def _has_torch_weights(path: Path, allow_pickle: bool) -> bool:
    names = SAFE_WEIGHTS + (PICKLE_WEIGHTS if allow_pickle else ())
    return any((path / name).is_file() for name in names)


def _level_thresholds_of(config: dict) -> dict[str, list[float]] | None:
    """The ``level_thresholds`` of a scorer_config (``None`` when absent: old folders)."""
    value = config.get("level_thresholds")
    if value is None:
        return None
    try:
        return check_level_thresholds(value, tuple(config["axes"])) or None
    except ValueError as err:
        raise ModelLoadError(f"{SCORER_CONFIG_FILE}: {err}") from None


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _check_texts(texts: Any) -> list[str]:
    if isinstance(texts, (str, bytes)):
        raise TypeError(
            f"texts must be a sequence of str, got a bare {type(texts).__name__}; "
            "wrap a single comment in a list: score([text])"
        )
    if not isinstance(texts, Iterable):
        raise TypeError(f"texts must be a sequence of str, got {type(texts).__name__}")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] must be str, got {type(t).__name__}: {t!r:.60}")
    return texts


def _check_batching(batch_size: Any, max_tokens: Any) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be > 0, got {batch_size!r}")
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise ValueError(f"max_tokens must be > 0 or None, got {max_tokens!r}")


def _pad_id(tokenizer) -> int:
    pad = getattr(tokenizer, "pad_token_id", None)
    if pad is None:
        raise ModelLoadError("the tokenizer has no padding token ([PAD]); the model directory's tokenizer is incomplete")
    return int(pad)


def _no_head_message(where: str) -> str:
    return (
        f"{where} has no {SCORER_CONFIG_FILE}, so it is not a zhenping scorer: a plain pretrained "
        "checkpoint has no trained warmth/substance/template head and would give meaningless scores. "
        "Fine-tune it on the labels and export it (see README: training), then load the export directory"
    )


def _check_files(path: Path, allow_pickle: bool, need_weights: bool) -> None:
    """Raise one error naming every required file the directory lacks."""
    missing = [f for f in (CONFIG_FILE, SCORER_CONFIG_FILE) if not (path / f).is_file()]
    has_safe = any((path / f).is_file() for f in SAFE_WEIGHTS)
    has_pickle = any((path / f).is_file() for f in PICKLE_WEIGHTS)
    if need_weights and not has_safe and not (allow_pickle and has_pickle):
        if has_pickle:
            pickle_name = next(f for f in PICKLE_WEIGHTS if (path / f).is_file())
            prefix = f"model directory {path} is incomplete: missing {', '.join(missing)}; also, " if missing else ""
            raise ModelLoadError(
                f"{prefix}{path / pickle_name} holds pickle weights, which are refused: unpickling can run "
                "arbitrary code. Convert them to model.safetensors (load once where you trust the file and "
                "save_pretrained(dir, safe_serialization=True)), or pass allow_pickle=True if you trust it"
            )
        missing.append("model weights (model.safetensors)")
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        missing.append("tokenizer (tokenizer.json or vocab.txt)")
    if missing:
        raise ModelLoadError(f"model directory {path} is incomplete: missing {', '.join(missing)}")


def _load_model_config(source, config_path: Path | None = None, **hub_kw):
    from transformers import AutoConfig

    if config_path is not None:
        read_json(config_path)  # a precise message for malformed JSON
    name = str(config_path) if config_path is not None else f"{CONFIG_FILE} of {source!r}"
    try:
        return AutoConfig.from_pretrained(source, **hub_kw)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ModelLoadError(f"{name} is not a usable model config: {err}") from err


def _validate(scorer_cfg: dict, config, where: str) -> None:
    """Check that scorer_config.json and config.json agree on the axes and length."""
    axes = scorer_cfg.get("axes")
    if not isinstance(axes, list) or not all(isinstance(a, str) for a in axes):
        raise ModelLoadError(f"{SCORER_CONFIG_FILE} of {where}: 'axes' must be a list of names, got {axes!r}")
    if sorted(axes) != sorted(AXES):
        raise ModelLoadError(
            f"{SCORER_CONFIG_FILE} of {where}: axes must be {list(AXES)} in some order, got {axes}"
        )
    max_length = scorer_cfg.get("max_length")
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
        raise ModelLoadError(
            f"{SCORER_CONFIG_FILE} of {where}: 'max_length' must be an int >= 2, got {max_length!r}"
        )
    problem = _beyond_positions(max_length, config)
    if problem:
        raise ModelLoadError(f"{SCORER_CONFIG_FILE} of {where}: {problem}")
    id2label = getattr(config, "id2label", None) or {}
    labels = [id2label.get(i, id2label.get(str(i))) for i in range(len(id2label))]
    if labels != axes:
        raise ModelLoadError(
            f"{CONFIG_FILE} of {where}: id2label order {labels} does not match "
            f"{SCORER_CONFIG_FILE} axes {axes}"
        )


def _load_tokenizer(source, where: str, **hub_kw):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source, **hub_kw)
    except Exception as err:  # noqa: BLE001 - the Rust tokenizers library raises plain Exception
        raise ModelLoadError(f"the tokenizer of {where} could not be loaded: {err}") from err


def _load_torch_model(source, config, allow_pickle: bool, where: str, attn_implementation=None, **hub_kw):
    import torch
    from transformers import AutoModelForSequenceClassification

    if isinstance(source, Path):
        safe = next((source / f for f in SAFE_WEIGHTS if (source / f).is_file()), None)
        if safe is not None and safe.suffix == ".safetensors":
            _check_safetensors(safe)
        use_safetensors = True if safe is not None else False
    else:
        use_safetensors = None if allow_pickle else True
    from transformers.utils import logging as hf_logging

    # No per-tensor progress bar on every load: the service and the CLI print their own.
    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            source,
            config=config,
            use_safetensors=use_safetensors,
            dtype=torch.float32,
            output_loading_info=True,
            **({"attn_implementation": attn_implementation} if attn_implementation else {}),
            **hub_kw,
        )
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as err:
        raise ModelLoadError(f"the weights of {where} could not be loaded: {err}") from err
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()
    # transformers fills absent weights with random values and only warns;
    # a scorer with a random head would silently give meaningless scores.
    missing = sorted(info.get("missing_keys") or ())
    mismatched = sorted(str(k) for k in (info.get("mismatched_keys") or ()))
    if missing or mismatched:
        raise ModelLoadError(
            f"the weights of {where} do not fit its config: missing {missing[:8]}"
            f"{' …' if len(missing) > 8 else ''}, mismatched {mismatched[:8]}"
        )
    return model.eval()


def _check_safetensors(path: Path) -> None:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            keys = list(fh.keys())
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelLoadError(f"{path} is not a readable safetensors file: {err}") from err
    if not keys:
        raise ModelLoadError(f"{path} holds no tensors")


__all__ = [
    "DEFAULT_MODEL_DIR",
    "CommentScores",
    "ModelLoadError",
    "Scorer",
    "TorchRunner",
    "pad_batch",
    "parity",
    "plan_batches",
    "read_json",
]
