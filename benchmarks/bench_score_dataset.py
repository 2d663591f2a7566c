"""Comments per second of `zhenping score-dataset` with the local and the ray engine, on one file.

The input is a Parquet file of ``--rows`` comments: the NetEase Cloud Music hot
comments (``netease_music_comments/hot_comments.csv.gz``, read through
:mod:`zhenping.training.corpora`) when the corpora are present, else a synthetic mix.
Both engines score the same file with the same model; Ray is started before
the clock runs (``ray.init(num_cpus=...)``), so its figure is the steady
pipeline, actor start-up and model shipping included. The two outputs are
checked against each other (largest score difference).

Usage:
    python benchmarks/bench_score_dataset.py --quick            # a few hundred rows
    python benchmarks/bench_score_dataset.py --rows 20000 --num-actors 4 --cpus-per-actor 1
    python benchmarks/bench_score_dataset.py --model runs/model --engines local
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=5000, help="comments in the file (default 5000; --quick: 400)")
    p.add_argument("--quick", action="store_true", help="a short run")
    p.add_argument("--model", default=None, help="model folder or store (default: model/default, else a tiny random model)")
    p.add_argument("--corpora", default=None, help="corpora folder (default: as zhenping.training.corpora finds it)")
    p.add_argument("--engines", default="local,ray", help="comma-separated: local, ray")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-actors", type=int, default=None, help="ray scorer actors (default: CPUs - 1, at least 1)")
    p.add_argument("--cpus-per-actor", type=float, default=1.0)
    p.add_argument("--ray-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    p.add_argument("--no-campaign", action="store_true", help="scores only, no copy detection columns")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.quick and args.rows == p.get_default("rows"):
        args.rows = 400
    return args


def corpus_texts(n: int, seed: int, corpora: str | None) -> tuple[list[str], str]:
    """``n`` NetEase hot comments (repeated if the file is shorter), or a synthetic mix without corpora."""
    try:
        from zhenping.training.corpora import corpora_root, get_file, iter_rows, row_text

        corpus, cf = get_file("netease_music_comments", "hot_comments.csv.gz")
        path = corpora_root(corpora) / corpus.name / cf.name
        if not path.is_file():
            raise FileNotFoundError(path)
        texts = [t for _, rec in iter_rows(path, cf) if (t := row_text(rec, cf)).strip()]
        source = f"{corpus.name}/{cf.name}"
    except FileNotFoundError as err:
        print(f"no corpus file ({err}); using a synthetic mix", file=sys.stderr)
        rng = random.Random(seed)
        chars = "的一是不了人我在有他这为之大来以个中上们到说国和地也子时道出而要于就下得可你年生好评很质量物流快差歌"
        texts = ["".join(rng.choice(chars) for _ in range(max(1, int(rng.lognormvariate(math.log(20), 1.0)))))
                 for _ in range(n)]
        source = "synthetic"
    rng = random.Random(seed)
    rng.shuffle(texts)
    return (texts * (n // len(texts) + 1))[:n], source


def model_dir(args, tmp: Path) -> tuple[Path, str]:
    from zhenping.model.scorer import DEFAULT_MODEL_DIR

    if args.model:
        return Path(args.model), args.model
    if DEFAULT_MODEL_DIR.is_dir():
        return DEFAULT_MODEL_DIR, "model/default"
    from tests.helpers import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp / "tiny"), "tiny random model (no model/default): pipeline overhead only"


def main(argv=None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from zhenping.training.score_dataset import score_dataset

    args = parse_args(argv)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    cpus = args.ray_cpus or os.cpu_count() or 1
    num_actors = args.num_actors or max(1, int((cpus - 1) // args.cpus_per_actor))
    with tempfile.TemporaryDirectory(prefix="zhenping-bench-dataset-") as tmp_name:
        tmp = Path(tmp_name)
        texts, source = corpus_texts(args.rows, args.seed, args.corpora)
        src = tmp / "in.parquet"
        pq.write_table(pa.table({"row": list(range(len(texts))), "text": texts}), src)
        model, model_name = model_dir(args, tmp)
        print(f"input: {len(texts):,} comments from {source}; model: {model_name}; CPUs: {os.cpu_count()}")
        results = {}
        for engine in engines:
            kwargs = {}
            if engine == "ray":
                import ray

                started = time.perf_counter()
                ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False,
                         runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})  # workers import this checkout
                print(f"ray.init: {time.perf_counter() - started:.1f} s (not counted); "
                      f"{num_actors} actors x {args.cpus_per_actor:g} CPUs")
                kwargs = {"num_actors": num_actors, "cpus_per_actor": args.cpus_per_actor}
            cpu0 = time.process_time()
            summary = score_dataset(str(src), str(tmp / f"out_{engine}.parquet"), engine=engine, model_dir=model,
                                    batch_size=args.batch_size, campaign=not args.no_campaign, progress=False,
                                    **kwargs)
            driver_cpu = time.process_time() - cpu0
            if engine == "ray":
                import ray

                ray.shutdown()
            results[engine] = summary
            print(f"{engine:>5}: {summary['rows']:,} comments in {summary['seconds']:.1f} s = "
                  f"{summary['comments_per_second']:,.1f} comments/s (driver CPU {driver_cpu:.1f} s)")
        if len(results) == 2:
            a = pq.read_table(tmp / "out_local.parquet")
            b = pq.read_table(tmp / "out_ray.parquet")
            diff = max(abs(x - y) for axis in ("warmth", "substance", "template")
                       for x, y in zip(a[axis].to_pylist(), b[axis].to_pylist()))
            print(f"largest score difference local vs ray: {diff:.2e}; "
                  f"ray / local speed: {results['ray']['comments_per_second'] / results['local']['comments_per_second']:.2f}x")


if __name__ == "__main__":
    main()
