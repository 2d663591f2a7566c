"""How fast the HTTP service scores, next to the scorer called in-process.

Starts ``zhenping serve`` on loopback (score cache off, so every comment reaches
the model), then a minimal asyncio HTTP/1.1 keep-alive client sends

* single comments, and
* batches of 64 comments,

from 1, 4 and 16 concurrent clients, on a comment-length mix sampled from the
corpora with a fixed seed, for each server layout in ``--processes`` (one
process with one model call per core, and ``--workers N`` processes). For each case it prints comments/s, requests/s, p50
and p99 latency, and the ratio to the in-process ``Scorer`` on the same texts
(one comment per call for the single case, batches of 64 for the batch case);
at the end, the server's peak resident memory. Client and server share the
machine's cores, so the ratios are a floor.

The model is ``--model``, else the shipped ``model/default``, else a random
4-layer, 256-wide BERT exported into a temporary folder (speed does not depend
on the weights).

Usage:
    python benchmarks/bench_service.py --quick     # well under a minute of load
    python benchmarks/bench_service.py             # 15 s per case
    python benchmarks/bench_service.py --model runs/export --threads 4
    python benchmarks/bench_service.py --processes 2   # only the one-process-per-core layout
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from bench_scorer import random_model_dir, sample_texts  # noqa: E402

from zhenping.model.scorer import DEFAULT_MODEL_DIR, Scorer  # noqa: E402

BATCH = 64
MAX_CHARS = 2000  # the service's default per-comment limit


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="few texts, 3 s per case")
    p.add_argument("--n", type=int, default=None, help="texts in the mix (default 2000; --quick 400)")
    p.add_argument("--seconds", type=float, default=None, help="time cap per case (default 15; --quick 3)")
    p.add_argument("--clients", default="1,4,16", help="concurrent clients, comma-separated (default 1,4,16)")
    p.add_argument("--seed", type=int, default=0, help="seed of the comment sample and the random model")
    p.add_argument("--model", default=None, help="model directory (default: model/default, else a random model)")
    p.add_argument("--corpora", default=None, help="corpora folder (default: as zhenping.training.corpora finds it)")
    p.add_argument("--threads", type=int, default=0, help="torch threads, server and in-process (0: torch's default)")
    p.add_argument("--max-wait-ms", type=float, default=0.0, help="the server's batch wait (ZHENPING_MAX_WAIT_MS)")
    p.add_argument("--processes", default="1,2", help="server processes (--workers) to measure, comma-separated")
    args = p.parse_args(argv)
    args.n = args.n or (400 if args.quick else 2000)
    args.seconds = args.seconds or (3.0 if args.quick else 15.0)
    # Request caps keep every case bounded even on a fast machine; --quick sends
    # one batch per client, enough for every client to have one in flight.
    args.max_single = 200 if args.quick else 5000
    args.max_batches_per_client = 1 if args.quick else None
    args.max_batches = 400
    try:
        args.clients = [int(c) for c in args.clients.split(",") if c.strip()]
    except ValueError:
        p.error(f"--clients must be comma-separated integers, got {args.clients!r}")
    try:
        args.processes = [int(c) for c in args.processes.split(",") if c.strip()]
    except ValueError:
        p.error(f"--processes must be comma-separated integers, got {args.processes!r}")
    if not args.clients or min(args.clients) < 1:
        p.error(f"--clients must be positive, got {args.clients}")
    if args.n < BATCH:
        p.error(f"--n must be >= {BATCH}, got {args.n}")
    return args


# ------------------------------------------------------------------ in-process


def in_process(model_dir: Path, texts: list[str], threads: int, seconds: float) -> dict[str, float]:
    """Comments/s of ``Scorer`` called one comment at a time and in batches of 64."""
    scorer = Scorer.from_pretrained(model_dir, backend="auto", num_threads=threads or None)
    scorer.score(texts[:BATCH], batch_size=BATCH)  # warm up
    out = {}
    done, start = 0, time.perf_counter()
    for text in itertools.cycle(texts):
        scorer.score([text])
        done += 1
        if time.perf_counter() - start > seconds or done >= len(texts):
            break
    out["single"] = done / (time.perf_counter() - start)
    done, start = 0, time.perf_counter()
    for i in itertools.count(0, BATCH):
        chunk = [texts[(i + j) % len(texts)] for j in range(BATCH)]
        scorer.score(chunk, batch_size=BATCH)
        done += BATCH
        if time.perf_counter() - start > seconds or done >= len(texts):
            break
    out["batch"] = done / (time.perf_counter() - start)
    del scorer
    gc.collect()
    return out


# ---------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model_dir: Path, threads: int, max_wait_ms: float | None, log_path: Path,
                 extra_args: tuple[str, ...] = (), cache_size: int | None = 0,
                 env_extra: dict[str, str] | None = None,
                 ready_timeout: float = 180.0) -> tuple[subprocess.Popen, str]:
    """Start ``zhenping serve`` on a free loopback port and wait for /ready; the
    benchmarks' one way to run the service. ``None`` leaves a setting at its default.

    Returns the process and its base URL.

    Raises:
        RuntimeError: the server exited or was not ready in time (with its log's tail).
    """
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZHENPING_")}
    env.update(
        {
            "ZHENPING_NUM_THREADS": str(threads),
            "ZHENPING_LOG_LEVEL": "warning",
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if cache_size is not None:
        env["ZHENPING_CACHE_SIZE"] = str(cache_size)  # 0: measure the model path, not the cache
    if max_wait_ms is not None:
        env["ZHENPING_MAX_WAIT_MS"] = str(max_wait_ms)
    env.update(env_extra or {})
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from zhenping.training.cli import app; app()", "serve",
             "--host", "127.0.0.1", "--port", str(port), "--model", str(model_dir), *extra_args],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    import httpx

    def tail() -> str:
        return log_path.read_text(encoding="utf-8", errors="replace")[-3000:]

    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{tail()}")
        try:
            if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server not ready after {ready_timeout:.0f} s:\n{tail()}")


def stop_server(proc: subprocess.Popen, timeout: float = 60) -> int:
    """SIGTERM (the service drains), then wait; returns the exit code (-9 if it had to be killed)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return -9
    return proc.returncode


def rss_mib(pid: int, field: str = "VmHWM") -> float:
    """A memory figure of a process from /proc (VmHWM: peak resident set)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


# ---------------------------------------------------------------------- client


@dataclass
class Case:
    mode: str
    clients: int
    requests: int
    comments: int
    seconds: float
    latencies: list[float]
    errors: Counter

    @property
    def comments_per_s(self) -> float:
        return self.comments / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered))) - 1))] * 1000


class _Connection:
    """One keep-alive HTTP/1.1 connection with a minimal client: the load generator
    shares the machine with the server, so it should cost as little CPU as it can
    (a general-purpose client such as httpx spends about a millisecond per request)."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        reused = self.writer is not None
        try:
            return await self._post(path, body)
        except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError):
            if not reused:
                raise
            # The server closed the idle keep-alive connection (uvicorn does after a few
            # seconds): reconnect and send again, as HTTP clients do.
            await self.close()
            return await self._post(path, body)

    async def _post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        self.writer.write(head + body)
        assert self.reader is not None
        header = await self.reader.readuntil(b"\r\n\r\n")
        lines = header.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        payload = await self.reader.readexactly(length)
        if close:
            await self.close()
        return status, payload

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        self.reader = self.writer = None


async def run_case(base: str, mode: str, bodies: list[bytes], per_body: int, clients: int,
                   max_requests: int, seconds: float) -> Case:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    counter = itertools.count()
    latencies: list[float] = []
    errors: Counter = Counter()
    conns = [_Connection(host, int(port)) for _ in range(clients)]
    for i, conn in enumerate(conns):  # open every connection and warm the model
        await conn.post("/v1/score", bodies[i % len(bodies)])
    start = time.perf_counter()
    deadline = start + seconds

    async def worker(conn: _Connection):
        while True:
            i = next(counter)
            if i >= max_requests or time.perf_counter() > deadline:
                return
            t = time.perf_counter()
            try:
                status, _ = await conn.post("/v1/score", bodies[i % len(bodies)])
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                errors[type(exc).__name__] += 1
                await conn.close()
                continue
            if status == 200:
                latencies.append(time.perf_counter() - t)
            else:
                errors[status] += 1

    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.perf_counter() - start
    for conn in conns:
        await conn.close()
    return Case(mode, clients, len(latencies), len(latencies) * per_body, elapsed, latencies, errors)


def run_async(coro):
    """Run a coroutine on uvloop where it is installed (less client CPU), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def bodies_for(texts: list[str], size: int) -> list[bytes]:
    out = []
    for i in range(0, len(texts), size):
        chunk = texts[i:i + size]
        if len(chunk) == size:
            out.append(json.dumps({"comments": [{"text": t} for t in chunk]}, ensure_ascii=False).encode())
    return out


# ------------------------------------------------------------------------ main


def server_rss_mib(proc: subprocess.Popen) -> float:
    """Peak resident memory of the server and its worker processes, summed."""
    pids = [proc.pid]
    try:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    return sum(v for v in (rss_mib(pid) for pid in pids) if v == v)


def service_cases(model_dir: Path, texts: list[str], *, processes: int = 1, threads: int = 0,
                  max_wait_ms: float = 0.0, clients: Sequence[int] = (1, 4, 16), seconds: float = 15.0,
                  max_single: int = 5000, max_batches: int = 400, max_batches_per_client: int | None = None,
                  log_path: Path) -> tuple[list[Case], float]:
    """Run ``zhenping serve`` (score cache off) and measure single comments and batches of 64
    from each number of concurrent clients; returns the cases and the server's peak RSS (MiB)."""
    extra = ("--workers", str(processes)) if processes > 1 else ()
    proc, base = start_server(model_dir, threads, max_wait_ms, log_path, extra)
    cases: list[Case] = []
    try:
        plans = [("single", bodies_for(texts, 1), 1), (f"batch{BATCH}", bodies_for(texts, BATCH), BATCH)]
        for mode, bodies, per_body in plans:
            for n in clients:
                if per_body == 1:
                    cap = max(max_single, 2 * n)
                else:
                    cap = max_batches_per_client * n if max_batches_per_client else max_batches
                cases.append(run_async(run_case(base, mode, bodies, per_body, n, cap, seconds)))
        peak = server_rss_mib(proc)
    finally:
        stop_server(proc)
    return cases, peak


def repeat_speedup(model_dir: Path, texts: list[str], log_path: Path, threads: int = 0,
                   size: int = BATCH, requests: int = 12, campaign: bool = True) -> dict[str, float]:
    """Requests of ``size`` comments sent twice to a server with the score cache on:
    the first time every comment goes through the model, the second time every one
    is a repeat answered from the cache. Returns both latencies (ms, median) and their ratio."""
    bodies = bodies_for(texts, size)[:requests]
    proc, base = start_server(model_dir, threads, 0.0, log_path, cache_size=100_000,
                              env_extra={"ZHENPING_CAMPAIGN": "true" if campaign else "false"})
    try:
        async def once(body_list):
            host, port = base.removeprefix("http://").rsplit(":", 1)
            conn = _Connection(host, int(port))
            await conn.post("/health", b"")  # open the connection
            out = []
            for body in body_list:
                t = time.perf_counter()
                status, _ = await conn.post("/v1/score", body)
                if status != 200:
                    raise RuntimeError(f"status {status}")
                out.append(time.perf_counter() - t)
            await conn.close()
            return out

        warm = bodies_for(list(reversed(texts)), size)[-1:]
        run_async(once(warm))  # load paths and allocate, on texts not in the measured bodies
        first = run_async(once(bodies))
        again = run_async(once(bodies))
    finally:
        stop_server(proc)
    model_ms = statistics.median(first) * 1000
    cached_ms = statistics.median(again) * 1000
    return {"model_ms": model_ms, "cached_ms": cached_ms, "speedup": model_ms / cached_ms, "size": size,
            "campaign": campaign}


def print_cases(cases: list[Case], reference: dict[str, float], ref_label: str, title: str) -> None:
    print(title)
    header = f"{'mode':<9}{'clients':>8}{'requests':>10}{'comments/s':>12}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}" \
             f"{'errors':>8}{ref_label:>16}"
    print(header)
    print("-" * len(header))
    for case in cases:
        ref = reference["single" if case.mode == "single" else "batch"]
        errors = sum(case.errors.values())
        print(f"{case.mode:<9}{case.clients:>8}{case.requests:>10}{case.comments_per_s:>12.1f}"
              f"{case.requests / case.seconds:>9.1f}{case.pct(0.5):>9.1f}{case.pct(0.99):>9.1f}"
              f"{errors:>8}{case.comments_per_s / ref:>15.2f}x")
        if errors:
            print(f"{'':<9}errors by status or exception: {dict(case.errors)}")


def main(argv=None) -> None:
    args = parse_args(argv)
    texts, source = sample_texts(args.n, args.seed, args.corpora)
    texts = [t[:MAX_CHARS] for t in texts]
    lengths = [len(t) for t in texts]
    with tempfile.TemporaryDirectory(prefix="zhenping-bench-service-") as tmp:
        tmp = Path(tmp)
        if args.model:
            model_dir, model_note = Path(args.model), args.model
        elif DEFAULT_MODEL_DIR.is_dir():
            model_dir, model_note = DEFAULT_MODEL_DIR, "shipped model/default"
        else:
            spec = SimpleNamespace(seed=args.seed, vocab=8000, hidden=256, layers=4, heads=4,
                                   intermediate=1024, max_length=128)
            model_dir = random_model_dir(spec, texts, tmp / "model")
            model_note = "random 4-layer/256 BERT (no model/default installed)"

        print(f"texts: {len(texts)} from {source}; length median {statistics.median(lengths):.0f}, "
              f"p90 {sorted(lengths)[int(0.9 * len(lengths))]} characters")
        print(f"model: {model_note}; threads: {args.threads or 'default'}; "
              f"server: cache off, max_wait_ms={args.max_wait_ms}; loopback; client on the same machine")

        reference = in_process(model_dir, texts, args.threads, args.seconds)
        print(f"in-process Scorer (backend auto): single {reference['single']:.1f} comments/s, "
              f"batch{BATCH} {reference['batch']:.1f} comments/s")
        for processes in args.processes:
            cases, peak = service_cases(
                model_dir, texts, processes=processes, threads=args.threads, max_wait_ms=args.max_wait_ms,
                clients=args.clients, seconds=args.seconds, max_single=args.max_single,
                max_batches=args.max_batches, max_batches_per_client=args.max_batches_per_client,
                log_path=tmp / f"server-{processes}.log")
            print()
            print_cases(cases, reference, "vs in-process",
                        f"service, {processes} process{'es' if processes > 1 else ''}; peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
