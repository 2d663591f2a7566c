"""The scoring path behind ``POST /v1/score``: normalise, cache, batch, score.

Also the model loading used by the app and by ``zhenping serve``.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from zhenping.api.batcher import Batcher
from zhenping.api.cache import LRUCache
from zhenping.model.axes import AXES
from zhenping.model.normalize import normalize_text
from zhenping.model.store import StoreError, is_store, resolve_model_dir

logger = logging.getLogger("zhenping.api")

# Requests with more characters than this are normalised on a thread, so that a
# large request does not stall the event loop (normalisation is ~5 us/char).
_INLINE_NORMALIZE_CHARS = 4000

CONFIG_FILES = ("config.json", "scorer_config.json")


def _find_malloc_trim():
    """glibc's ``malloc_trim``, or ``None`` where the C library has none (musl, macOS, Windows)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_MALLOC_TRIM = _find_malloc_trim()


class ModelLoadError(Exception):
    """The model directory cannot be served; the message names the problem."""


def check_model_dir(model_dir: str | Path) -> None:
    """Fast checks of a model directory, before torch is imported.

    The scorer's own load names every other missing or corrupt file; this only
    makes the common mistakes (wrong path, not an export) fail in milliseconds.

    Raises:
        ModelLoadError: the directory is missing, or a config file is missing,
            not valid JSON, or declares other axes than the service's.
    """
    path = Path(model_dir)
    if is_store(path):  # a model store: serve its current version
        try:
            path = resolve_model_dir(path)
        except StoreError as exc:
            raise ModelLoadError(str(exc)) from None
    if not path.exists():
        raise ModelLoadError(
            f"model directory {path} does not exist; pass --model DIR or set ZHENPING_MODEL_DIR "
            "to an exported scorer directory"
        )
    if not path.is_dir():
        raise ModelLoadError(f"model path {path} is not a directory")
    missing = [name for name in CONFIG_FILES if not (path / name).is_file()]
    if missing:
        raise ModelLoadError(f"model directory {path} is missing {', '.join(missing)}; is it a complete export?")
    docs = {}
    for name in CONFIG_FILES:
        try:
            docs[name] = json.loads((path / name).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"{path / name} is not valid JSON: {exc}") from exc
        if not isinstance(docs[name], dict):
            raise ModelLoadError(f"{path / name} must hold a JSON object, found {type(docs[name]).__name__}")
    axes = docs["scorer_config.json"].get("axes")
    if axes is not None and tuple(axes) != AXES:
        raise ModelLoadError(f"model axes {axes} differ from the service's {list(AXES)}")


def load_scorer(settings):
    """Load the scorer the settings name; returns ``(scorer, backend_in_use)``.

    Raises:
        ModelLoadError: naming the directory and what failed.
    """
    check_model_dir(settings.model_dir)
    from zhenping.model.scorer import Scorer

    _, threads = settings.workers_and_threads
    try:
        scorer = Scorer.from_pretrained(
            resolve_model_dir(settings.model_dir),
            device="cpu",
            backend=settings.backend,
            num_threads=threads,
            fallback_to_torch=settings.onnx_fallback,
            spinning=False,  # the event loop needs the cores between forward passes
            max_length=settings.max_length or None,
        )
    except Exception as exc:  # noqa: BLE001 - any load failure means: do not serve
        raise ModelLoadError(f"cannot load the model from {settings.model_dir}: {exc}") from exc
    if tuple(scorer.axes) != AXES:
        raise ModelLoadError(f"model axes {list(scorer.axes)} differ from the service's {list(AXES)}")
    return scorer, getattr(scorer, "backend", settings.backend)


def model_name(scorer) -> str:
    """``'<model id>@<model version>'``, as responses name the model."""
    return f"{scorer.model_id}@{scorer.model_version}"


class ScoringService:
    """Score comments through the cache and the shared batcher.

    Args:
        scorer: a loaded ``zhenping.model.scorer.Scorer`` (or anything with its interface).
        settings: :class:`zhenping.api.settings.Settings`.
        metrics: :class:`zhenping.api.metrics.ServiceMetrics`, optional.
        backend: the runtime actually in use, for ``/info``.
    """

    def __init__(self, scorer, settings, metrics=None, backend: str | None = None):
        self.scorer = scorer
        self.settings = settings
        self.metrics = metrics
        self.backend = backend or getattr(scorer, "backend", settings.backend)
        self.model_version = str(scorer.model_version)
        self.model = model_name(scorer)
        self.cache: LRUCache = LRUCache(settings.cache_size)
        normalize_text("warm-up")  # builds normalisation's tables now, not on the first request
        self._score_normalized = getattr(scorer, "score_normalized", None)
        self.batcher = Batcher(
            self._score_batch,
            max_length=int(scorer.max_length),
            max_batch_tokens=settings.max_batch_tokens,
            max_wait_ms=settings.max_wait_ms,
            queue_size=settings.queue_size,
            metrics=metrics,
            workers=settings.workers_and_threads[0],
        )

    async def start(self) -> None:
        """Start the batcher on the running loop."""
        await self.batcher.start()

    async def close(self) -> None:
        """Finish queued work and stop the worker thread."""
        await self.batcher.close()

    def _score_batch(self, texts: list[str]):
        # Runs on the batcher's worker thread. One batch is one forward pass.
        try:
            # Length-sorted forward passes of at most max_pass_tokens padded tokens:
            # one long comment does not pad a whole batch of short ones.
            budget = self.settings.max_pass_tokens
            if self._score_normalized is not None:
                return self._score_normalized(texts, batch_size=len(texts), max_tokens=budget)
            return self.scorer.score(texts, batch_size=len(texts), max_tokens=budget)
        finally:
            if _MALLOC_TRIM is not None:
                # Batches of ever-changing shapes leave glibc's heap fragmented,
                # and freed activations are kept, not returned: resident memory
                # then grows by hundreds of MiB over minutes. Trimming after each
                # batch keeps it flat for ~2 ms a batch (see benchmarks/soak.py).
                _MALLOC_TRIM(0)

    async def score(self, texts: Sequence[str]) -> list:
        """Scores for ``texts`` (raw comments), one per text, in order.

        Raises:
            zhenping.api.batcher.QueueFull: the queue cannot take this request's new texts.
            zhenping.api.batcher.ShuttingDown: the service is draining.
        """
        return await self.score_normalized(await self.normalize(texts))

    async def normalize(self, texts: Sequence[str]) -> list[str]:
        """``normalize_text`` of each text, off the event loop for large requests."""
        if sum(len(t) for t in texts) > _INLINE_NORMALIZE_CHARS:
            return await asyncio.to_thread(lambda: [normalize_text(t) for t in texts])
        return [normalize_text(t) for t in texts]

    async def score_normalized(self, normalized: Sequence[str]) -> list:
        """Scores for texts already passed through ``normalize_text`` (see :meth:`score`)."""
        found: dict[str, object] = {}
        missing: list[str] = []
        for text in dict.fromkeys(normalized):  # each distinct text once, in order
            hit = self.cache.get((self.model_version, text))
            if hit is None:
                missing.append(text)
            else:
                found[text] = hit
        if self.metrics is not None:
            self.metrics.cache_hits.inc(len(found))
            self.metrics.cache_misses.inc(len(missing))
        if missing:
            scored = await self.batcher.submit(missing)
            for text, result in zip(missing, scored):
                found[text] = result
                self.cache.put((self.model_version, text), result)
        if self.metrics is not None:
            self.metrics.comments.inc(len(normalized))
        return [found[text] for text in normalized]
