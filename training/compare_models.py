"""Compare fine-tuned models side by side from what their folders record.

Each exported folder's ``metrics.json`` carries the pretraining summary of its
encoder (objective, tokens, time, held-out accuracy), the fine-tuning summary
(best validation mean Spearman) and the test-split metrics. This module puts
them in one table, so a choice between pretraining objectives or recipes is
made on validation and shown beside test:

    python -m zhenping.training.compare_models rtd=runs/cmp_rtd mlm=runs/cmp_mlm none=runs/cmp_none \\
        --out training/results/objectives --title "RTD vs MLM at equal compute"

writes ``objectives.md`` and ``objectives.json``; the row with the best
validation mean Spearman is marked as chosen.

With ``--data DIR`` every run is scored afresh on the validation and test
splits of that prepared folder, so models trained on different label versions
(or a fitted baseline, ``NAME=path.joblib``) are compared on exactly the same
rows; the pretraining columns still come from each folder's ``metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from zhenping.model.axes import AXES
from zhenping.model.normalize import normalize_text
from zhenping.training.config import split_named


def summarise(name: str, model_dir: str | Path) -> dict:
    """One row: pretraining, fine-tuning and test figures of an exported folder.

    Raises:
        FileNotFoundError: the folder has no ``metrics.json``.
    """
    path = Path(model_dir) / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: pass folders written by `zhenping train`")
    m = json.loads(path.read_text(encoding="utf-8"))
    training = m.get("training") or {}
    pre = training.get("pretrain") or {}
    ev = pre.get("final_eval") or {}
    ft = training.get("finetune") or {}
    overall = m["overall"]
    heldout = {k: ev[k] for k in ("mlm_accuracy", "rtd_accuracy", "rtd_replaced_accuracy", "gen_mlm_accuracy")
               if ev.get(k) is not None}
    return {
        "name": name,
        "model": str(model_dir),
        "objective": pre.get("objective") or ("none" if not pre else "mlm"),
        "pretrain_tokens": pre.get("tokens"),
        "pretrain_seconds": pre.get("seconds"),
        "tokens_per_second": pre.get("tokens_per_second"),
        "heldout": heldout,
        "finetune_epochs": ft.get("epochs_run"),
        "finetune_seconds": ft.get("train_seconds"),
        "validation_mean_spearman": ft.get("best_validation_mean_spearman"),
        "test_spearman": {a: overall[a]["spearman"] for a in AXES},
        "test_template_auroc": overall["template_ge2"]["auroc"],
        "test_hostile_auroc": overall["hostile"]["auroc"],
    }


def rescore(row: dict, spec: str, data_dir: str | Path) -> dict:
    """``row`` with its validation mean Spearman and test figures measured afresh on
    the validation and test splits of ``data_dir`` (``spec``: a scorer folder or a
    fitted baseline's ``.joblib``)."""
    from zhenping.training.evaluate import evaluate
    from zhenping.training.multitask import teacher_scores
    from zhenping.training.prepare import load_split, read_manifest

    figures = {}
    for split in ("validation", "test"):
        data = load_split(data_dir, split, AXES)
        pred = teacher_scores(spec, [normalize_text(t) for t in data.texts])
        figures[split] = evaluate(data.scores, pred, None, AXES)["overall"]
    val, test = figures["validation"], figures["test"]
    manifest = read_manifest(data_dir)
    return {
        **row,
        "validation_mean_spearman": sum(val[a]["spearman"] for a in AXES) / len(AXES),
        "test_spearman": {a: test[a]["spearman"] for a in AXES},
        "test_template_auroc": test["template_ge2"]["auroc"],
        "test_hostile_auroc": test["hostile"]["auroc"],
        "data": {"dir": str(data_dir), "label_files": manifest.get("label_files", {}),
                 "rows": {s: figures[s]["n"] for s in figures}},
    }


def _baseline_row(name: str, path: str) -> dict:
    """A fitted baseline's row: no pretraining or fine-tuning figures of its own."""
    return {"name": name, "model": path, "objective": "–", "pretrain_tokens": None, "pretrain_seconds": None,
            "tokens_per_second": None, "heldout": {}, "finetune_epochs": None, "finetune_seconds": None}


def _f(v, digits: int = 3) -> str:
    return "–" if v is None else f"{v:,.{digits}f}"


def to_markdown(rows: list[dict], title: str, note: str | None = None) -> str:
    chosen = max(rows, key=lambda r: r["validation_mean_spearman"] or -1.0)["name"]
    data = next((r["data"] for r in rows if r.get("data")), None)
    how = ("each run scored afresh on the same prepared rows" if data else "fine-tuning's best epoch")
    out = [f"# {title}", "",
           f"Chosen by validation mean Spearman ({how}); test figures are shown, not used.", ""]
    if data:
        files = ", ".join(f"`{k}`" for k in data["label_files"]) or "–"
        out += [f"Rows: `{data['dir']}` (label files {files}): validation {data['rows']['validation']:,}, "
                f"test {data['rows']['test']:,}.", ""]
    out += ["| run | objective | pretraining tokens | minutes | tokens/s | held-out accuracy | validation mean ρ "
            "| test warmth ρ | test substance ρ | test template ρ | template≥2 AUROC | hostile AUROC |",
            "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        held = ", ".join(f"{k} {v:.3f}" for k, v in r["heldout"].items()) or "–"
        mins = None if r["pretrain_seconds"] is None else r["pretrain_seconds"] / 60
        tokens = "–" if r["pretrain_tokens"] is None else f"{r['pretrain_tokens']:,}"
        mark = " (chosen)" if r["name"] == chosen else ""
        t = r["test_spearman"]
        out.append(f"| {r['name']}{mark} | {r['objective']} | {tokens} | {_f(mins, 1)} | {_f(r['tokens_per_second'], 0)} "
                   f"| {held} | {_f(r['validation_mean_spearman'], 4)} | {_f(t['warmth'])} | {_f(t['substance'])} "
                   f"| {_f(t['template'])} | {_f(r['test_template_auroc'])} | {_f(r['test_hostile_auroc'])} |")
    if note:
        out += ["", note]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Compare fine-tuned model folders (pretraining, validation, test).")
    p.add_argument("runs", nargs="+", help="NAME=MODEL_DIR, one per run")
    p.add_argument("--out", required=True, help="path stem: writes STEM.md and STEM.json")
    p.add_argument("--title", default="Model comparison")
    p.add_argument("--data", default=None,
                   help="prepared folder: score every run afresh on its validation and test splits "
                        "(NAME=path.joblib then adds a fitted baseline on the same rows)")
    p.add_argument("--note", default=None,
                   help="a paragraph under the table, e.g. what ships when speed or size weighs against the best "
                        "validation figure")
    args = p.parse_args(argv)
    rows = []
    for spec in args.runs:
        try:
            name, folder = split_named(spec, "NAME=MODEL_DIR")
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        try:
            if folder.endswith(".joblib"):
                if not args.data:
                    print(f"error: {spec}: a fitted baseline needs --data", file=sys.stderr)
                    return 2
                row = _baseline_row(name, folder)
            else:
                row = summarise(name, folder)
            rows.append(rescore(row, folder, args.data) if args.data else row)
        except (FileNotFoundError, KeyError, ValueError) as err:
            print(f"error: {folder}: {err}", file=sys.stderr)
            return 2
    md = to_markdown(rows, args.title, args.note)
    stem = Path(args.out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".md").write_text(md, encoding="utf-8")
    stem.with_suffix(".json").write_text(json.dumps({"title": args.title, "note": args.note, "runs": rows}, indent=2) + "\n",
                                         encoding="utf-8")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
