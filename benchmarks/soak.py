"""Soak test: minutes of steady load on a real `zhenping serve`, nothing lost, nothing leaking.

Starts ``zhenping serve`` on loopback (defaults, campaign detection on; the
duplicate window is kept small so that it fills during warm-up), measures the
server's capacity with a short closed-loop calibration, then sends requests at a
fixed rate (``--rate``, default 70 % of that capacity) for ``--minutes``. Every
request carries 1-8 synthetic comments of 4-120 characters, nearly all distinct,
so the score cache and the duplicate window keep evicting.

It prints requests sent, errors, p50/p99/max latency per minute and the
server's resident memory at the start and the end of the measured phase, then
stops the server with SIGTERM. Exit status 1 when a criterion fails:

* any error (a non-200 answer, a transport error, a request the client could
  not send on time);
* memory growth of 10 % or more (``--max-rss-growth``);
* unstable latency: a minute's p99 over twice the median minute's plus 20 ms
  (``--max-p99-drift``), or a minute's p50 over 1.5 times the median's plus
  10 ms (``--max-p50-drift``);
* an achieved rate under 95 % of the target (the client fell behind);
* the server not exiting 0 on SIGTERM.

Latency is measured from each request's scheduled send time, so a stalled
server cannot hide queueing delay (no coordinated omission).

The model is ``--model``, else the shipped ``model/default``.

Usage:
    python benchmarks/soak.py                          # 5 minutes at 70 % of capacity
    python benchmarks/soak.py --minutes 30 --rate 40   # fixed rate, requests/s
    python benchmarks/soak.py --minutes 0.5 --bucket-seconds 10 --calibrate-seconds 5   # smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_service  # noqa: E402 - the benchmarks' shared server launcher
DEFAULT_MODEL_DIR = ROOT / "model" / "default"

FRAGMENTS = [
    "谢谢分享", "这个方法很有用", "物流很快", "质量一般", "客服态度很好", "下次还会再来", "屏幕有点暗",
    "电池续航一天", "味道偏咸", "包装破损了", "性价比很高", "孩子很喜欢", "说明书写得不清楚", "第三步我也踩过坑",
    "希望出个续集", "音质比想象中好", "房间干净但隔音差", "早餐种类少", "前台帮忙叫车", "默认好评", "沙发",
    "👍👍", "哈哈哈", "加油", "抱抱你", "会好起来的", "不推荐", "已回购三次", "尺码偏小一码", "配送员很辛苦",
]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=5.0, help="Length of the measured phase (default 5).")
    p.add_argument("--rate", type=float, default=None,
                   help="Requests per second; default: --load-fraction of the calibrated capacity.")
    p.add_argument("--load-fraction", type=float, default=0.7, help="Share of capacity when --rate is not given.")
    p.add_argument("--calibrate-seconds", type=float, default=20.0, help="Closed-loop capacity measurement.")
    p.add_argument("--calibrate-concurrency", type=int, default=8, help="Clients during calibration.")
    p.add_argument("--warmup-seconds", type=float, default=20.0,
                   help="Load at the target rate before measuring starts (fills caches and windows).")
    p.add_argument("--bucket-seconds", type=float, default=60.0, help="Latency is reported per bucket (a minute).")
    p.add_argument("--model", type=Path, default=None, help="Model directory (default: model/default).")
    p.add_argument("--threads", type=int, default=1, help="Server's torch threads (ZHENPING_NUM_THREADS).")
    p.add_argument("--window-size", type=int, default=2000, help="Server's duplicate window (ZHENPING_DUP_WINDOW_SIZE).")
    p.add_argument("--max-rss-growth", type=float, default=0.10, help="Largest allowed memory growth (0.10: 10 %%).")
    p.add_argument("--max-p99-drift", type=float, default=2.0, help="Largest allowed p99 / the median minute's p99.")
    p.add_argument("--max-p50-drift", type=float, default=1.5, help="Largest allowed p50 / the median minute's p50.")
    p.add_argument("--max-in-flight", type=int, default=256, help="Requests the client keeps open at most.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="Also write the figures to this file.")
    args = p.parse_args(argv)
    if args.model is None:
        if not DEFAULT_MODEL_DIR.is_dir():
            p.error(f"no model at {DEFAULT_MODEL_DIR}; pass --model DIR")
        args.model = DEFAULT_MODEL_DIR
    for name in ("minutes", "calibrate_seconds", "bucket_seconds"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be > 0")
    if args.rate is not None and args.rate <= 0:
        p.error("--rate must be > 0")
    return args


# ----------------------------------------------------------------- the server


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (Linux /proc)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    log_path: Path

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]


def start_server(args, log_path: Path) -> Server:
    proc, url = bench_service.start_server(
        Path(args.model), args.threads, None, log_path, cache_size=None,
        env_extra={"ZHENPING_DUP_WINDOW_SIZE": str(args.window_size),
                   "ZHENPING_DATA_DIR": str(log_path.parent / "data")})
    return Server(proc, url, log_path)


def stop_server(server: Server, timeout: float = 60) -> int:
    return bench_service.stop_server(server.process, timeout)


# ----------------------------------------------------------------- load


class Bodies:
    """Request bodies of 1-8 synthetic comments; nearly every comment is new."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.n = 0

    def next(self) -> bytes:
        comments = []
        for _ in range(self.rng.randint(1, 8)):
            self.n += 1
            parts = self.rng.choices(FRAGMENTS, k=self.rng.randint(1, 6))
            text = ",".join(parts) + f"#{self.n}"
            comments.append({"text": text[: self.rng.randint(4, 120)] + str(self.n), "id": self.n})
        return json.dumps({"comments": comments}, ensure_ascii=False).encode("utf-8")


@dataclass
class Bucket:
    start: float
    latencies: list[float] = field(default_factory=list)
    sent: int = 0
    errors: int = 0

    def figures(self) -> dict:
        lat = sorted(self.latencies)
        return {
            "start_s": round(self.start, 1),
            "sent": self.sent,
            "ok": len(lat),
            "errors": self.errors,
            "p50_ms": round(percentile(lat, 50) * 1000, 1) if lat else None,
            "p99_ms": round(percentile(lat, 99) * 1000, 1) if lat else None,
            "max_ms": round(lat[-1] * 1000, 1) if lat else None,
        }


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted values."""
    k = max(0, math.ceil(q / 100 * len(sorted_values)) - 1)
    return sorted_values[k]


async def calibrate(url: str, seconds: float, concurrency: int, bodies: Bodies) -> float:
    """Requests per second the server answers with ``concurrency`` clients sending back to back."""
    done = 0
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def worker():
            nonlocal done
            while time.monotonic() < deadline:
                r = await client.post("/v1/score", content=bodies.next(), headers={"Content-Type": "application/json"})
                if r.status_code != 200:
                    raise RuntimeError(f"calibration request answered {r.status_code}: {r.text[:300]}")
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.monotonic() - started)


async def open_loop(url: str, rate: float, seconds: float, bucket_seconds: float, bodies: Bodies,
                    max_in_flight: int, errors_seen: list[str]) -> tuple[list[Bucket], float]:
    """Send at a fixed ``rate`` for ``seconds``; returns per-bucket figures and the achieved rate."""
    n_buckets = max(1, math.ceil(seconds / bucket_seconds - 1e-9))
    buckets = [Bucket(i * bucket_seconds) for i in range(n_buckets)]
    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)
    in_flight: set[asyncio.Task] = set()
    interval = 1.0 / rate
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        start = time.monotonic()

        async def one(scheduled: float, bucket: Bucket, body: bytes):
            try:
                r = await client.post("/v1/score", content=body, headers={"Content-Type": "application/json"})
                ok = r.status_code == 200 and len(r.json()["results"]) == body.count(b'"text"')
                if not ok:
                    errors_seen.append(f"HTTP {r.status_code}: {r.text[:200]}")
            except httpx.HTTPError as exc:
                ok = False
                errors_seen.append(f"{type(exc).__name__}: {exc}")
            if ok:
                bucket.latencies.append(time.monotonic() - scheduled)
            else:
                bucket.errors += 1

        i = 0
        while True:
            scheduled = start + i * interval
            elapsed = scheduled - start
            if elapsed >= seconds:
                break
            delay = scheduled - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            bucket = buckets[min(int(elapsed // bucket_seconds), n_buckets - 1)]
            bucket.sent += 1
            if len(in_flight) >= max_in_flight:
                bucket.errors += 1  # the server fell so far behind that the client cannot keep up
                errors_seen.append(f"client backlog: {max_in_flight} requests in flight")
            else:
                task = asyncio.create_task(one(scheduled, bucket, bodies.next()))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            i += 1
        sent_seconds = time.monotonic() - start
        if in_flight:
            await asyncio.gather(*in_flight)
    return buckets, i / sent_seconds


# ----------------------------------------------------------------- the run


def judge(buckets: list[dict], rss_start: int, rss_end: int, rate: float, achieved: float, exit_code: int,
          args) -> list[str]:
    """The failed criteria, in words; empty when the run passed."""
    failed = []
    errors = sum(b["errors"] for b in buckets)
    if errors:
        failed.append(f"{errors} errors")
    growth = (rss_end - rss_start) / rss_start
    if growth >= args.max_rss_growth:
        failed.append(f"server memory grew {growth:.1%} (limit {args.max_rss_growth:.0%})")
    measured = [b for b in buckets if b["p99_ms"] is not None]
    if measured:
        typical_p99 = statistics.median(b["p99_ms"] for b in measured)
        typical_p50 = statistics.median(b["p50_ms"] for b in measured)
        for b in measured:
            if b["p99_ms"] > args.max_p99_drift * typical_p99 + 20:
                failed.append(f"p99 {b['p99_ms']} ms at {b['start_s']:.0f} s is over {args.max_p99_drift}x the "
                              f"median minute's {typical_p99} ms")
            if b["p50_ms"] > args.max_p50_drift * typical_p50 + 10:
                failed.append(f"p50 {b['p50_ms']} ms at {b['start_s']:.0f} s is over {args.max_p50_drift}x the "
                              f"median minute's {typical_p50} ms")
    if achieved < 0.95 * rate:
        failed.append(f"achieved {achieved:.1f} requests/s of the {rate:.1f} targeted")
    if exit_code != 0:
        failed.append(f"server exited with {exit_code} on SIGTERM")
    return failed


def main(argv=None) -> int:
    args = parse_args(argv)
    bodies = Bodies(args.seed)
    with tempfile.TemporaryDirectory(prefix="zhenping-soak-") as tmp:
        log_path = Path(tmp) / "server.log"
        print(f"model {args.model}; starting the server", flush=True)
        server = start_server(args, log_path)
        exit_code = None
        try:
            capacity = asyncio.run(calibrate(server.url, args.calibrate_seconds, args.calibrate_concurrency, bodies))
            rate = args.rate if args.rate is not None else args.load_fraction * capacity
            print(f"calibration: {capacity:.1f} requests/s with {args.calibrate_concurrency} clients "
                  f"({args.calibrate_seconds:g} s); soak rate {rate:.1f} requests/s "
                  f"({'given' if args.rate is not None else f'{args.load_fraction:.0%} of capacity'})", flush=True)
            errors_seen: list[str] = []
            if args.warmup_seconds > 0:
                warm, _ = asyncio.run(open_loop(server.url, rate, args.warmup_seconds, args.warmup_seconds, bodies,
                                                args.max_in_flight, errors_seen))
                print(f"warm-up: {warm[0].sent} requests in {args.warmup_seconds:g} s, {warm[0].errors} errors",
                      flush=True)
            rss_start = rss_bytes(server.process.pid)
            seconds = args.minutes * 60
            started = time.monotonic()
            raw, achieved = asyncio.run(open_loop(server.url, rate, seconds, args.bucket_seconds, bodies,
                                                  args.max_in_flight, errors_seen))
            wall = time.monotonic() - started
            rss_end = rss_bytes(server.process.pid)
            health = httpx.get(f"{server.url}/ready", timeout=10).status_code
        finally:
            exit_code = stop_server(server)
        buckets = [b.figures() for b in raw]

        print(f"\nsoak: {seconds:g} s at {rate:.1f} requests/s (achieved {achieved:.1f}), "
              f"comments 1-8 per request, wall {wall:.0f} s")
        print(f"{'from':>7} {'sent':>7} {'ok':>7} {'errors':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
        for b in buckets:
            print(f"{b['start_s']:>6.0f}s {b['sent']:>7} {b['ok']:>7} {b['errors']:>6} "
                  f"{b['p50_ms'] if b['p50_ms'] is not None else '-':>8} "
                  f"{b['p99_ms'] if b['p99_ms'] is not None else '-':>8} "
                  f"{b['max_ms'] if b['max_ms'] is not None else '-':>8}")
        all_lat = sorted(x for b in raw for x in b.latencies)
        total_sent = sum(b["sent"] for b in buckets)
        total_errors = sum(b["errors"] for b in buckets)
        print(f"{'total':>7} {total_sent:>7} {len(all_lat):>7} {total_errors:>6} "
              f"{percentile(all_lat, 50) * 1000 if all_lat else float('nan'):>8.1f} "
              f"{percentile(all_lat, 99) * 1000 if all_lat else float('nan'):>8.1f} "
              f"{all_lat[-1] * 1000 if all_lat else float('nan'):>8.1f}")
        growth = (rss_end - rss_start) / rss_start
        print(f"server memory (RSS): {rss_start / 2**20:.1f} MiB at start, {rss_end / 2**20:.1f} MiB at end "
              f"({growth:+.1%})")
        print(f"/ready after the soak: {health}; server exit status on SIGTERM: {exit_code}")
        for line in errors_seen[:10]:
            print(f"  error: {line}")

        failed = judge(buckets, rss_start, rss_end, rate, achieved, exit_code, args)
        if health != 200:
            failed.append(f"/ready answered {health} after the soak")
        if args.json is not None:
            args.json.write_text(json.dumps({
                "seconds": seconds, "rate": rate, "achieved_rate": achieved, "capacity": capacity,
                "buckets": buckets, "sent": total_sent, "errors": total_errors,
                "rss_start": rss_start, "rss_end": rss_end, "exit_code": exit_code, "failed": failed,
            }, indent=2) + "\n", encoding="utf-8")
        if failed:
            print("FAIL: " + "; ".join(failed))
            if exit_code not in (0, None):
                print(server.log_tail())
            return 1
        print("PASS: no errors, stable latency, memory growth under "
              f"{args.max_rss_growth:.0%}, clean exit")
        return 0


if __name__ == "__main__":
    sys.exit(main())
