"""Batcher: merging, slicing, order, token budget, queue bound, drain."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from zhenping.api.batcher import Batcher, QueueFull, ShuttingDown, approx_tokens


class RecordingScorer:
    """Scores a text as its length; records every call."""

    def __init__(self, delay: float = 0.0, fail: Exception | None = None, drop_last: bool = False):
        self.calls: list[list[str]] = []
        self.threads: set[str] = set()
        self.delay = delay
        self.fail = fail
        self.drop_last = drop_last

    def __call__(self, texts: list[str]) -> list[int]:
        self.calls.append(list(texts))
        self.threads.add(threading.current_thread().name)
        if self.delay:
            time.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        out = [len(t) for t in texts]
        return out[:-1] if self.drop_last else out


def run(coro):
    return asyncio.run(coro)


async def started(scorer, **kw) -> Batcher:
    params = dict(max_length=64, max_batch_tokens=10_000, max_wait_ms=50, queue_size=1000)
    params.update(kw)
    batcher = Batcher(scorer, **params)
    await batcher.start()
    return batcher


def test_approx_tokens_counts_characters_plus_specials_capped():
    assert approx_tokens("", 64) == 2
    assert approx_tokens("你好👍", 64) == 5
    assert approx_tokens("长" * 500, 64) == 64


def test_concurrent_callers_share_one_batch_and_get_their_own_slices():
    scorer = RecordingScorer()

    async def main():
        batcher = await started(scorer)
        results = await asyncio.gather(
            batcher.submit(["aaaa", "b"]), batcher.submit(["cc"]), batcher.submit(["ddddd", "eee", "f"])
        )
        await batcher.close()
        return results

    assert run(main()) == [[4, 1], [2], [5, 3, 1]]
    assert len(scorer.calls) == 1
    # Distinct texts only, shortest first.
    assert scorer.calls[0] == ["b", "f", "cc", "eee", "aaaa", "ddddd"]
    assert scorer.threads == {"zhenping-scorer_0"}


def test_duplicate_texts_are_scored_once():
    scorer = RecordingScorer()

    async def main():
        batcher = await started(scorer)
        out = await asyncio.gather(batcher.submit(["x", "yy", "x"]), batcher.submit(["yy"]))
        await batcher.close()
        return out

    assert run(main()) == [[1, 2, 1], [2]]
    assert scorer.calls == [["x", "yy"]]


def test_token_budget_splits_batches_by_padded_size():
    # 8 characters -> 10 tokens; a budget of 20 padded tokens holds two texts.
    scorer = RecordingScorer()
    texts = [f"{i}" * 8 for i in range(5)]

    async def main():
        batcher = await started(scorer, max_batch_tokens=20, max_wait_ms=0)
        out = await batcher.submit(texts)
        await batcher.close()
        return out

    assert run(main()) == [8] * 5
    assert [len(c) for c in scorer.calls] == [2, 2, 1]
    assert [t for c in scorer.calls for t in c] == texts  # arrival order across batches


def test_budget_sums_the_tokens_of_distinct_texts():
    # Tokens are characters + 2: "aa" costs 4, "c" * 20 costs 22. A budget of 30
    # holds aa + bb + the long text (30); a repeat of a text in the batch is free.
    scorer = RecordingScorer()

    async def main():
        batcher = await started(scorer, max_batch_tokens=30, max_wait_ms=0)
        out = await batcher.submit(["aa", "bb", "c" * 20, "aa", "dd", "ee", "ff"])
        await batcher.close()
        return out

    assert run(main()) == [2, 2, 20, 2, 2, 2, 2]
    assert scorer.calls == [["aa", "bb", "c" * 20], ["dd", "ee", "ff"]]  # each batch shortest first


def test_workers_score_batches_at_the_same_time():
    # Two workers: while the first batch blocks, a second batch runs on the other thread.
    import threading

    release = threading.Event()
    calls: list[list[str]] = []
    lock = threading.Lock()

    def score(texts):
        with lock:
            calls.append(list(texts))
            first = len(calls) == 1
        if first:
            assert release.wait(10), "the second batch never ran beside the first"
        else:
            release.set()
        return [len(t) for t in texts]

    async def main():
        batcher = Batcher(score, max_length=64, max_batch_tokens=10_000, max_wait_ms=0, queue_size=100, workers=2)
        await batcher.start()
        first = asyncio.ensure_future(batcher.submit(["a"]))
        while not calls:
            await asyncio.sleep(0.005)
        second = await batcher.submit(["bb", "ccc"])  # answered while the first batch still blocks
        out = (await first, second)
        await batcher.close()
        return out

    assert run(main()) == ([1], [2, 3])
    assert calls == [["a"], ["bb", "ccc"]]


def test_one_worker_scores_one_batch_at_a_time():
    # With one worker, texts that arrive during a call wait and form the next batch together.
    import threading

    started_call = threading.Event()
    release = threading.Event()
    calls: list[list[str]] = []

    def score(texts):
        calls.append(list(texts))
        if len(calls) == 1:
            started_call.set()
            assert release.wait(10)
        return [len(t) for t in texts]

    async def main():
        batcher = Batcher(score, max_length=64, max_batch_tokens=10_000, max_wait_ms=0, queue_size=100, workers=1)
        await batcher.start()
        first = asyncio.ensure_future(batcher.submit(["a"]))
        while not started_call.is_set():
            await asyncio.sleep(0.005)
        later = [asyncio.ensure_future(batcher.submit([t])) for t in ("bb", "ccc", "dddd")]
        await asyncio.sleep(0.05)
        assert len(calls) == 1  # nothing ran beside the blocked call
        release.set()
        out = [await first] + [await f for f in later]
        await batcher.close()
        return out

    assert run(main()) == [[1], [2], [3], [4]]
    assert calls == [["a"], ["bb", "ccc", "dddd"]]


def test_a_text_over_the_budget_alone_still_forms_a_batch():
    scorer = RecordingScorer()

    async def main():
        batcher = await started(scorer, max_batch_tokens=5, max_wait_ms=0)
        out = await batcher.submit(["a" * 30, "b"])
        await batcher.close()
        return out

    assert run(main()) == [30, 1]
    assert scorer.calls == [["a" * 30], ["b"]]


def test_a_full_budget_does_not_wait_for_max_wait():
    scorer = RecordingScorer()

    async def main():
        batcher = await started(scorer, max_batch_tokens=20, max_wait_ms=10_000)
        start = time.perf_counter()
        task = asyncio.ensure_future(batcher.submit(["a" * 8, "b" * 8, "c" * 8]))
        while not scorer.calls:
            await asyncio.sleep(0.01)
        first_batch_after = time.perf_counter() - start
        await batcher.close()  # the last text would otherwise wait 10 s
        return await task, first_batch_after

    out, seconds = run(main())
    assert out == [8, 8, 8]
    assert seconds < 5  # against the 10 s wait
    assert scorer.calls == [["a" * 8, "b" * 8], ["c" * 8]]


def test_max_wait_closes_a_partial_batch():
    scorer = RecordingScorer()

    async def main():
        batcher = await started(scorer, max_wait_ms=100)
        start = time.perf_counter()
        out = await batcher.submit(["a"])
        elapsed = time.perf_counter() - start
        await batcher.close()
        return out, elapsed

    out, elapsed = run(main())
    assert out == [1]
    assert 0.09 <= elapsed < 5  # at least the wait; the upper bound only catches a hang


def test_queue_full_raises_with_retry_after():
    scorer = RecordingScorer()

    async def main():
        batcher = await started(scorer, queue_size=3, max_wait_ms=10_000)
        waiting = asyncio.ensure_future(batcher.submit(["a", "b"]))
        await asyncio.sleep(0)
        assert batcher.pending == 2
        with pytest.raises(QueueFull) as info:
            await batcher.submit(["c", "d"])
        assert await batcher.submit([]) == []
        await batcher.close()
        return info.value, await waiting

    error, out = run(main())
    assert str(error) == "scoring queue is full (2 of 3 texts waiting, 2 more requested); retry after 1 s"
    assert error.retry_after == 1
    assert out == [1, 1]


def test_close_drains_queued_texts_then_refuses_new_work():
    scorer = RecordingScorer()

    async def main():
        batcher = await started(scorer, max_wait_ms=30_000)
        waiting = asyncio.ensure_future(batcher.submit(["queued"]))
        await asyncio.sleep(0.01)
        start = time.perf_counter()
        await batcher.close()
        drained_in = time.perf_counter() - start
        with pytest.raises(ShuttingDown):
            await batcher.submit(["late"])
        return await waiting, drained_in, batcher.closing

    out, drained_in, closing = run(main())
    assert out == [6]
    assert drained_in < 10  # against the 30 s wait
    assert closing is True


def test_submit_before_start_is_refused():
    async def main():
        with pytest.raises(ShuttingDown):
            await Batcher(RecordingScorer(), 64, 100, 1, 10).submit(["a"])

    run(main())


def test_a_failing_batch_fails_its_callers_only():
    scorer = RecordingScorer(fail=RuntimeError("model exploded"))

    async def main():
        batcher = await started(scorer, max_wait_ms=20)
        results = await asyncio.gather(batcher.submit(["a"]), batcher.submit(["b"]), return_exceptions=True)
        scorer.fail = None
        after = await batcher.submit(["cc"])
        await batcher.close()
        return results, after

    results, after = run(main())
    assert [str(r) for r in results] == ["model exploded", "model exploded"]
    assert after == [2]


def test_result_count_mismatch_is_an_error():
    async def main():
        batcher = await started(RecordingScorer(drop_last=True), max_wait_ms=0)
        with pytest.raises(RuntimeError, match="scorer returned 1 results for 2 texts"):
            await batcher.submit(["a", "bb"])
        await batcher.close()

    run(main())


def test_scoring_runs_off_the_event_loop():
    scorer = RecordingScorer(delay=0.3)

    async def main():
        batcher = await started(scorer, max_wait_ms=0)
        task = asyncio.ensure_future(batcher.submit(["slow"]))
        ticks = 0
        while not task.done():
            await asyncio.sleep(0.01)
            ticks += 1
        await batcher.close()
        return ticks

    assert run(main()) >= 10  # the loop kept running while the model worked


@pytest.mark.parametrize(
    "kw,message",
    [
        ({"max_batch_tokens": 0}, "max_batch_tokens must be > 0, got 0"),
        ({"queue_size": -1}, "queue_size must be > 0, got -1"),
        ({"max_wait_ms": -5}, "max_wait_ms must be >= 0, got -5"),
        ({"workers": 0}, "workers must be > 0, got 0"),
    ],
)
def test_invalid_parameters(kw, message):
    params = dict(max_length=64, max_batch_tokens=100, max_wait_ms=1, queue_size=10)
    params.update(kw)
    with pytest.raises(ValueError, match=message):
        Batcher(RecordingScorer(), **params)
