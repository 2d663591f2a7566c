"""Model sizes side by side: test-split quality beside comments/s on the best Scorer path.

For every model folder given, reads its validation mean Spearman (the figure a size is
chosen by) and its test metrics (``metrics.json``, written by ``zhenping train``) and
measures its throughput on the path the service uses (ONNX Runtime int8, length-sorted
passes of at most 2,048 padded tokens, 128 comments a call) on one sample of corpus
comments, in the same run, so that the ratios between sizes hold even on a shared
machine. The best of ``--rounds`` is kept; the rate per CPU-second is printed beside
the wall-clock rate.

    python benchmarks/bench_sizes.py model/default runs/model_small --n 1000 \\
        --out model/default/sizes.json

The JSON written with ``--out`` is what the model card's "Sizes" table shows.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_scorer import sample_texts, timed  # noqa: E402

from zhenping.model.axes import AXES  # noqa: E402
from zhenping.model.scorer import Scorer  # noqa: E402

BATCH, MAX_TOKENS = 128, 2048  # the best Scorer path measured by bench_scorer.py


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", help="exported model folders (the first is the reference)")
    p.add_argument("--n", type=int, default=1000, help="comments in the sample (default 1000)")
    p.add_argument("--rounds", type=int, default=3, help="measurements per model, best kept (default 3)")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: all cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--corpora", default=None)
    p.add_argument("--out", default=None, help="write the table as JSON here")
    p.add_argument("--earlier", default=None,
                   help="a sizes JSON of an earlier run: its rows for sizes not measured now are kept, "
                        "marked with that run's date (their comments/s are that run's, not this one's)")
    return p.parse_args(argv)


def encoder_size(scorer: Scorer) -> dict:
    cfg = scorer.model_config
    return {"layers": cfg.num_hidden_layers, "hidden": cfg.hidden_size, "heads": cfg.num_attention_heads}


def onnx_scorer(model_dir: Path, work: Path, threads: int | None) -> tuple[Scorer, str]:
    """The int8 ONNX scorer of a folder, exported into ``work`` when the folder has none."""
    from zhenping.model.onnx_backend import INT8_FILE, export_onnx

    if (model_dir / INT8_FILE).is_file():
        return Scorer.from_pretrained(model_dir, backend="onnx", onnx_file=INT8_FILE, num_threads=threads), "shipped int8"
    out = work / model_dir.name
    export_onnx(model_dir, out, quantize=True)
    return Scorer.from_pretrained(out, backend="onnx", onnx_file=INT8_FILE, num_threads=threads), "int8 exported for this run"


def main(argv=None) -> None:
    args = parse_args(argv)
    texts, origin = sample_texts(args.n, args.seed, args.corpora)
    print(f"comments: {len(texts):,} from {origin}", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory(prefix="zhenping-sizes-") as tmp:
        scorers = []
        for m in args.models:
            model_dir = Path(m)
            metrics_path = model_dir / "metrics.json"
            if not metrics_path.is_file():
                sys.exit(f"error: {metrics_path} not found; pass folders written by `zhenping train`")
            scorer, how = onnx_scorer(model_dir, Path(tmp), args.threads)
            scorer.score(texts[:64], batch_size=BATCH, max_tokens=MAX_TOKENS)  # warm-up
            scorers.append((model_dir, scorer, how, json.loads(metrics_path.read_text(encoding="utf-8"))))
        best: dict[str, tuple[float, float]] = {}
        for r in range(args.rounds):  # rounds interleave the models, so load changes hit all alike
            for model_dir, scorer, _, _ in scorers:
                rate, cpu_rate = timed(lambda: scorer.score(texts, batch_size=BATCH, max_tokens=MAX_TOKENS), len(texts))
                old = best.get(str(model_dir), (0.0, 0.0))
                best[str(model_dir)] = (max(rate, old[0]), max(cpu_rate, old[1]))
                print(f"  round {r + 1}: {model_dir}  {rate:,.1f} comments/s  {cpu_rate:,.1f} per CPU-second",
                      file=sys.stderr)
        ref = best[str(scorers[0][0])][0]
        for model_dir, scorer, how, metrics in scorers:
            test = metrics["overall"]
            rate, cpu_rate = best[str(model_dir)]
            rows.append({
                "model": str(model_dir),
                "version": scorer.model_version,
                **encoder_size(scorer),
                "parameters": parameter_count(model_dir),
                **validation_figure(metrics),
                "spearman": {a: test[a]["spearman"] for a in AXES},
                "template_auroc": test["template_ge2"]["auroc"],
                "hostile_auroc": test["hostile"]["auroc"],
                "comments_per_s": round(rate, 1),
                "comments_per_cpu_s": round(cpu_rate, 1),
                "speed_vs_first": round(rate / ref, 2),
                "onnx": how,
            })
    if args.earlier:
        rows += earlier_rows(Path(args.earlier), rows)
    result = {"measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "comments": len(texts),
              "sample": origin, "path": f"ONNX int8, batch {BATCH}, max_tokens {MAX_TOKENS}",
              "rounds": args.rounds, "models": rows}
    print(format_table(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)


def earlier_rows(path: Path, measured: list[dict]) -> list[dict]:
    """Rows of an earlier ``--out`` file for sizes (layers × width) not measured in this run,
    each marked with the date of the run that measured it."""
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
        rows = earlier["models"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        sys.exit(f"error: --earlier {path}: not a sizes file written by this script ({e})")
    if not rows:
        sys.exit(f"error: --earlier {path} holds no models")
    first, now = (rows[0].get("layers"), rows[0].get("hidden")), (measured[0]["layers"], measured[0]["hidden"])
    if first != now:
        sys.exit(f"error: --earlier {path}: its first model is {first[0]} × {first[1]}, not {now[0]} × {now[1]} "
                 "like this run's first, so its speeds are relative to another size")
    have = {(r["layers"], r["hidden"]) for r in measured}
    kept = []
    for r in rows:
        if (r.get("layers"), r.get("hidden")) in have:
            continue
        kept.append({**r, "measured": r.get("measured") or earlier.get("measured")})
    return kept


def validation_figure(metrics: dict) -> dict:
    """The validation mean Spearman the run was chosen by, and its rows (empty if not recorded)."""
    finetune = (metrics.get("training") or {}).get("finetune") or {}
    value = finetune.get("best_validation_mean_spearman")
    if value is None:
        return {}
    return {"validation_mean_spearman": round(float(value), 6), "validation_rows": finetune.get("validation_rows")}


def parameter_count(model_dir: Path) -> int:
    """Parameters in the folder's safetensors weights (embeddings and head included)."""
    import math

    from safetensors import safe_open

    with safe_open(str(model_dir / "model.safetensors"), framework="pt") as f:
        return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())


def format_table(result: dict) -> str:
    """The sizes as a markdown table: the model card's "Sizes" table."""
    from zhenping.training.card import sizes_section

    return "\n".join(line for line in sizes_section(result) if line.startswith("|"))


if __name__ == "__main__":
    main()
