"""Merge concurrent requests' texts into model batches.

Texts from every caller wait in one bounded queue. A batch closes when its
size (the sum of its texts' approximate tokens) would pass the token
budget, or when its first text has waited ``max_wait_ms``, and only once one of
the ``workers`` model calls is free; its distinct texts are sorted by length and
scored in one call on that worker's thread, off the event loop, and each caller
gets back its own slice in its own order.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("zhenping.api")


class QueueFull(Exception):
    """The queue cannot take the texts; ``retry_after`` is a whole number of seconds."""

    def __init__(self, pending: int, capacity: int, requested: int, retry_after: int):
        super().__init__(
            f"scoring queue is full ({pending} of {capacity} texts waiting, {requested} more requested); "
            f"retry after {retry_after} s"
        )
        self.retry_after = retry_after


class ShuttingDown(Exception):
    """The batcher is draining and takes no new work."""


def approx_tokens(text: str, max_length: int) -> int:
    """Tokens a normalised text is likely to need: one per character plus [CLS]/[SEP], capped.

    The tokenizer gives CJK characters and emoji one token each, so characters
    are a close, cheap upper bound for Chinese comments.
    """
    return min(len(text) + 2, max_length)


@dataclass(eq=False)
class _Job:
    future: asyncio.Future
    results: list
    remaining: int


@dataclass(eq=False)
class _Entry:
    job: _Job
    index: int
    text: str
    tokens: int
    enqueued: float = field(default=0.0)


class Batcher:
    """Score texts from many concurrent callers in shared batches.

    Args:
        score_fn: scores a list of (normalised) texts, returning one result per
            text in the same order; called on the worker thread.
        max_length: the model's max_length; caps each text's token estimate.
        max_batch_tokens: token budget of one call (the sum of its distinct texts'
            estimated tokens). A single text always forms a batch even if it alone
            exceeds it.
        max_wait_ms: how long the first text of a batch waits for others.
        queue_size: the most texts waiting; a submit that would pass it raises
            :class:`QueueFull`.
        metrics: optional :class:`zhenping.api.metrics.ServiceMetrics`.
        workers: model calls that may run at once, each on its own thread.
            Two single-threaded calls use two cores better than one call on two
            threads when batches are small (single comments from many clients).
            A batch is formed only when a worker is free, so while all are busy
            the queue grows into the next, larger batch.

    Example (inside a coroutine)::

        batcher = Batcher(lambda ts: [len(t) for t in ts], 64, 1024, 5, 100); await batcher.start()
        await batcher.submit(["好", "你好"])  # -> [1, 2]
    """

    def __init__(
        self,
        score_fn: Callable[[list[str]], Sequence[Any]],
        max_length: int,
        max_batch_tokens: int,
        max_wait_ms: float,
        queue_size: int,
        metrics=None,
        workers: int = 1,
    ):
        for name, value in (("max_length", max_length), ("max_batch_tokens", max_batch_tokens),
                            ("queue_size", queue_size), ("workers", workers)):
            if value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self._score_fn = score_fn
        self.max_length = max_length
        self.max_batch_tokens = max_batch_tokens
        self.max_wait = max_wait_ms / 1000.0
        self.queue_size = queue_size
        self._metrics = metrics
        self.workers = workers
        self._slots: asyncio.Semaphore | None = None
        self._running: set[asyncio.Task] = set()
        self._queue: deque[_Entry] = deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closing = False
        self._seconds_per_text = 0.0  # moving average of model time per text, for Retry-After
        self.batches_run = 0

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the collector task and the worker thread (call on the serving loop)."""
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(self.workers)
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="zhenping-scorer")
        self._task = asyncio.create_task(self._collect(), name="zhenping-batcher")

    def begin_drain(self) -> None:
        """Refuse new work and score what is queued without waiting; safe from a signal handler."""
        if self._closing:
            return
        self._closing = True
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._notify)

    async def close(self) -> None:
        """Drain: refuse new work, finish every queued text, stop the worker thread."""
        self.begin_drain()
        self._notify()
        if self._task is not None:
            await self._task
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    @property
    def closing(self) -> bool:
        """Whether the batcher has stopped taking work."""
        return self._closing

    @property
    def pending(self) -> int:
        """Texts waiting for the model (not counting the batch being scored)."""
        return len(self._queue)

    # ------------------------------------------------------------------ submit

    async def submit(self, texts: Sequence[str]) -> list:
        """Score ``texts`` in shared batches; results in the order given.

        Raises:
            QueueFull: the queue cannot take ``len(texts)`` more texts.
            ShuttingDown: the batcher is draining.
        """
        if self._closing or self._task is None:
            raise ShuttingDown("the scoring service is shutting down")
        n = len(texts)
        if n == 0:
            return []
        if len(self._queue) + n > self.queue_size:
            if self._metrics is not None:
                self._metrics.rejected.inc(n)
            raise QueueFull(len(self._queue), self.queue_size, n, self._retry_after())
        loop = asyncio.get_running_loop()
        job = _Job(loop.create_future(), [None] * n, n)
        now = loop.time()
        for i, text in enumerate(texts):
            self._queue.append(_Entry(job, i, text, approx_tokens(text, self.max_length), now))
        self._update_depth()
        self._notify()
        return await job.future

    def _retry_after(self) -> int:
        # Time for the queue ahead to clear at the recent rate; at least 1 s.
        estimate = len(self._queue) * self._seconds_per_text
        return max(1, math.ceil(estimate))

    # ------------------------------------------------------------------ collector

    def _notify(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    def _update_depth(self) -> None:
        if self._metrics is not None:
            self._metrics.queue_depth.set(len(self._queue))

    def _fit_count(self) -> int:
        """How many queued entries, from the front, fit the token budget (at least 1).

        The budget counts each distinct text's tokens once: the scorer sorts a
        call's texts by length into forward passes, so padding adds little.
        """
        seen: set[str] = set()
        total = 0
        count = 0
        for entry in self._queue:
            if entry.text not in seen:
                if seen and total + entry.tokens > self.max_batch_tokens:
                    break
                seen.add(entry.text)
                total += entry.tokens
            count += 1
        return count

    async def _collect(self) -> None:
        try:
            await self._collect_forever()
        except BaseException as exc:
            # A bug here must not leave callers waiting forever: fail them all.
            if not isinstance(exc, asyncio.CancelledError):
                logger.exception("batch collector stopped")
            self._closing = True
            while self._queue:
                entry = self._queue.popleft()
                if not entry.job.future.done():
                    entry.job.future.set_exception(ShuttingDown("the scoring service stopped"))
            self._update_depth()
            raise

    async def _collect_forever(self) -> None:
        try:
            await self._collect_batches()
        finally:
            if self._running:  # drain: the calls in flight finish and answer their callers
                await asyncio.gather(*self._running, return_exceptions=True)

    async def _collect_batches(self) -> None:
        assert self._wakeup is not None and self._loop is not None and self._slots is not None
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            # A batch is formed only when a worker can take it: meanwhile the queue grows.
            await self._slots.acquire()
            if not self._queue:
                self._slots.release()
                continue
            deadline = self._queue[0].enqueued + self.max_wait
            # Wait for more texts until the budget is full, the first text's wait
            # is over, or a drain begins.
            while not self._closing and self._fit_count() == len(self._queue):
                remaining = deadline - self._loop.time()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except TimeoutError:
                    break
            batch = [self._queue.popleft() for _ in range(self._fit_count())]
            self._update_depth()
            task = asyncio.create_task(self._run_and_release(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run_and_release(self, batch: list[_Entry]) -> None:
        assert self._slots is not None
        try:
            await self._run_batch(batch)
        finally:
            self._slots.release()

    async def _run_batch(self, batch: list[_Entry]) -> None:
        live = [e for e in batch if not e.job.future.done()]  # skip callers that went away or already failed
        if not live:
            return
        by_text: dict[str, list[_Entry]] = {}
        for entry in live:
            by_text.setdefault(entry.text, []).append(entry)
        texts = sorted(by_text, key=len)
        assert self._executor is not None and self._loop is not None
        start = time.perf_counter()
        try:
            results = await self._loop.run_in_executor(self._executor, self._score_fn, texts)
            if len(results) != len(texts):
                raise RuntimeError(f"scorer returned {len(results)} results for {len(texts)} texts")
        except BaseException as exc:  # noqa: BLE001 - every waiting caller must hear of the failure
            for entry in live:
                if not entry.job.future.done():
                    entry.job.future.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        elapsed = time.perf_counter() - start
        self.batches_run += 1
        per_text = elapsed / len(texts) / self.workers  # the queue drains through every worker
        self._seconds_per_text = per_text if self._seconds_per_text == 0 else 0.8 * self._seconds_per_text + 0.2 * per_text
        if self._metrics is not None:
            self._metrics.inference.observe(elapsed)
            self._metrics.batch_size.observe(len(texts))
            self._metrics.batch_tokens.observe(sum(approx_tokens(t, self.max_length) for t in texts))
        for text, result in zip(texts, results):
            for entry in by_text[text]:
                job = entry.job
                if job.future.done():
                    continue
                job.results[entry.index] = result
                job.remaining -= 1
                if job.remaining == 0:
                    job.future.set_result(job.results)
