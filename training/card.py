"""The model card (``README.md`` of an exported model): measured numbers filled in
from the run, intended use and limitations written by people."""

from __future__ import annotations

import json
from pathlib import Path

from zhenping.training.evaluate import (
    comparison_table,
    confusion_tables,
    detection_table,
    level_mapping_note,
    level_table,
    per_axis_table,
)

INTENDED_USE = """\
## Intended use

- Ranking and moderation teams scoring Chinese user comments (video, music, shopping,
  food-delivery, hotel, forum and Weibo-style comments) for three qualities defined in
  `data_cards/labels.md`: **warmth** 温度 (care and empathy toward people; 0 = hostile),
  **substance** 实质 (information a reader gains) and **template-likeness** 模板化
  (generic text that could be pasted under anything).
- Signals for ranking experiments (优质评论 / 热评), for folding filler and copy-paste
  comments, and for routing likely-hostile comments to human review.
- Offline analysis of large comment sets, self-hosted; retraining on a platform's own labels
  (`zhenping train --extra FILE`).

## Out of scope

- Deciding alone to remove content or sanction accounts: scores are probabilistic signals,
  to be combined with human review and platform policy.
- Legal or safety judgements (illegal content, self-harm, threats): the warmth axis measures
  tone toward people, it is not a toxicity or safety classifier.
- Languages other than Chinese; long documents (only the first `max_length` tokens are read).
- Judging a comment's truth: substance counts concrete details, it does not check them.

## Limitations

- A small encoder (the shipped one: 5.3M parameters, pretrained from scratch on a 20M-token pack
  of public comment corpora alone: 41M tokens of masked-LM and a stage on the corpora's own
  labels, then 59M of replaced-token detection) knows little world knowledge; it learns
  surface cues well (stock phrases, emoji walls, length, concrete nouns and numbers) and
  subtle sarcasm, unseen insults, ad copy and buzzword boilerplate poorly (see the
  behavioural tests).
- Warmth level 3 and template level 3 are rare in the gold labels (about 5 % and 8 %), so
  scores near the top of those axes are less reliable than the middle.
- Gold labels come from one annotator per comment; agreement measured on a separate double-
  labelled set is high (Spearman 0.90-0.95) but label noise remains.
- Copy-paste campaigns are a property of the stream, not of one comment: a single scored
  comment cannot tell that it was posted a thousand times.
- Corpora skew to music, Weibo, shopping and offensive-language sources; other domains
  (gaming, finance forums, news comments) are under-represented.
"""


PRETRAIN_OBJECTIVES = {
    "mlm": "Masked-language-model pretraining",
    "rtd": "Replaced-token detection pretraining (a small generator sharing the embeddings)",
}


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _speed(ratio) -> str:
    return "–" if ratio is None else f"{float(ratio):.2f}×"


def levels_section(metrics: dict) -> list[str]:
    """Card lines on exact-level agreement and the confusion of levels (test split)."""
    if not metrics.get("levels"):
        return []
    return ["### Levels", "",
            "The level shown with each score (0-3) against the gold level on the same test rows. "
            + level_mapping_note(metrics), "",
            level_table(metrics), "",
            "Confusion of levels (rows: gold level, columns: predicted level):", "",
            confusion_tables(metrics), ""]


def sizes_section(sizes: dict) -> list[str]:
    """The "Sizes" table from ``sizes.json`` (written by ``benchmarks/bench_sizes.py``):
    validation and test-split quality beside comments/s, all measured in one run."""
    lines = ["## Sizes", "",
             f"Quality beside throughput on the best Scorer path ({sizes.get('path')}), "
             f"{sizes.get('comments', 0):,} corpus comments, best of {sizes.get('rounds')} rounds in one run "
             f"(`benchmarks/bench_sizes.py`, {sizes.get('measured')}). A size is chosen by its validation mean "
             "Spearman (the figure its training kept) and its speed; the test columns are shown, not used. "
             "Comments/s is wall-clock on the 2-core machine; per CPU-second counts all threads' time.", "",
             "| model | layers × width | parameters | validation mean ρ | warmth ρ | substance ρ | template ρ "
             "| template≥2 AUROC | hostile AUROC | comments/s | per CPU-second | speed vs first |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    earlier = False
    for r in sizes["models"]:
        s = r["spearman"]
        mark = ""
        if r.get("measured") and r["measured"] != sizes.get("measured"):
            mark, earlier = " *", True
        val = r.get("validation_mean_spearman")
        lines.append(
            f"| {r['version']}{mark} | {r['layers']} × {r['hidden']} | {r['parameters'] / 1e6:.1f}M "
            f"| {'–' if val is None else f'{val:.4f}'} | {_fmt(s.get('warmth'))} "
            f"| {_fmt(s.get('substance'))} | {_fmt(s.get('template'))} | {_fmt(r.get('template_auroc'))} "
            f"| {_fmt(r.get('hostile_auroc'))} | {r['comments_per_s']:,.0f} | {r['comments_per_cpu_s']:,.0f} "
            f"| {_speed(r.get('speed_vs_first'))} |")
    rows = sorted({r["validation_rows"] for r in sizes["models"] if r.get("validation_rows")})
    if len(rows) > 1:
        lines += ["", f"Validation figures are on splits of different sizes ({', '.join(f'{n:,}' for n in rows)} rows): "
                  "only rows on the same split compare."]
    if earlier:
        dates = sorted({r["measured"] for r in sizes["models"] if r.get("measured") and r["measured"] != sizes.get("measured")})
        lines += ["", f"\\* Measured in an earlier run ({', '.join(dates)}) of the same script, perhaps on another "
                  "machine: its comments/s are that run's, and its speed is relative to that run's first model, "
                  "of the same layers × width as the first row here; its test figures are on the test split of "
                  "the label files it was trained on."]
    return lines + [""]


def render_card(scorer_config: dict, metrics: dict, baselines: dict | None, info: dict,
                prepare_manifest: dict | None = None, behaviour: dict | None = None,
                sizes: dict | None = None) -> str:
    """Build the model card from the run's measured values (``behaviour``: the
    folder's ``behaviour.json``, shown as a "Behavioural tests" section; ``sizes``:
    its ``sizes.json``, shown as a "Sizes" table)."""
    from zhenping.training.behaviour import card_section

    version = scorer_config.get("model_version", "unknown")
    axes = scorer_config["axes"]
    lines = [
        f"# zhenping scorer `{version}`",
        "",
        "A Chinese comment scorer: one BERT-style encoder, three sigmoid outputs "
        f"({', '.join(axes)}), each a score in [0, 1] (gold level / 3). A standard Hugging Face "
        "sequence-classification checkpoint (multi-label), loadable by `transformers` alone:",
        "",
        "```python",
        "from transformers import pipeline",
        'clf = pipeline("text-classification", model="PATH", function_to_apply="sigmoid", top_k=None)',
        "```",
        "",
        "With zhenping (applies the text normalisation the model was trained with):",
        "",
        "```python",
        "from zhenping import Scorer",
        'Scorer.from_pretrained("PATH").score(["质量很好,物流很快,会回购的"])',
        "```",
        "",
        "## Test-split results",
        "",
        f"Held-out test split: {metrics.get('n', 0):,} gold-labelled comments never seen in "
        "pretraining or fine-tuning (split by a hash of the normalised text).",
        "",
        per_axis_table(metrics),
        "",
        detection_table(metrics),
        "",
    ]
    if baselines:
        lines += ["### Against the baselines (same test rows)", "",
                  comparison_table({"this model": metrics, **baselines}), ""]
        ref = baselines.get("tfidf_ridge") or baselines.get("tfidf_ridge baseline")
        if ref:
            o, r = metrics["overall"], ref["overall"]
            checks = [(f"{a} ρ", o[a]["spearman"], r[a]["spearman"]) for a in axes]
            checks += [("template≥2 AUROC", o["template_ge2"]["auroc"], r["template_ge2"]["auroc"]),
                       ("hostile AUROC", o["hostile"]["auroc"], r["hostile"]["auroc"])]
            ahead = [f"{n} ({_fmt(m)} vs {_fmt(b)})" for n, m, b in checks if m is not None and b is not None and m > b]
            behind = [f"{n} ({_fmt(m)} vs {_fmt(b)})" for n, m, b in checks if m is not None and b is not None and m <= b]
            lines += [f"Against the TF-IDF baseline this model is ahead on {', '.join(ahead) or 'nothing'}"
                      + (f" and not ahead on {', '.join(behind)}." if behind else "."), ""]
    lines += levels_section(metrics)
    lines += ["Per-source figures and plots: `report.md` and `metrics.json` in this folder.", ""]
    if behaviour and behaviour.get("categories"):
        lines += [card_section(behaviour)]
    if sizes and sizes.get("models"):
        lines += sizes_section(sizes)
    lines += ["## Training data", ""]
    if prepare_manifest:
        rows = (prepare_manifest.get("counts") or {}).get("rows") or {}
        if rows:
            lines += ["| split | rows |", "| --- | --- |"]
            lines += [f"| {s} | {_fmt(rows.get(s))} |" for s in ("train", "validation", "test")]
            lines.append("")
    lf = scorer_config.get("label_files") or {}
    if lf:
        lines += ["Label files (SHA-1):", ""]
        lines += [f"- `{name}`: `{sha}`" for name, sha in lf.items()]
        lines.append("")
    pre = info.get("pretrain")
    if pre:
        ev = pre.get("final_eval") or {}
        lines += [
            "## Pretraining",
            "",
            f"{PRETRAIN_OBJECTIVES.get(pre.get('objective') or 'mlm', 'Pretraining')}: {pre.get('steps', 0):,} steps, "
            f"{pre.get('tokens', 0):,} tokens in {pre.get('seconds', 0) / 60:.0f} minutes "
            f"({pre.get('tokens_per_second', 0):,.0f} tokens/s); "
            + (f"held-out replaced-token accuracy {_fmt(ev.get('rtd_replaced_accuracy'))} (original tokens "
               f"{_fmt(ev.get('rtd_original_accuracy'))}), generator masked-token accuracy "
               f"{_fmt(ev.get('gen_mlm_accuracy'))}" if pre.get("objective") == "rtd" else
               f"held-out masked-token accuracy {_fmt(ev.get('mlm_accuracy'))}")
            + f". Encoder parameters: {pre.get('encoder_parameters', 0) / 1e6:.1f}M.",
            "",
        ]
    mt = info.get("multitask")
    if mt:
        lines += ["## Intermediate multi-task stage", "",
                  f"Tasks: {', '.join(mt.get('tasks', []))}; {mt.get('steps', 0):,} steps in "
                  f"{mt.get('seconds', 0) / 60:.0f} minutes.", ""]
    soup = info.get("soup")
    if soup:
        lines += ["## Weight averaging", "",
                  "The weights are the average of fine-tuned models that share a pretrained ancestor "
                  "(`python -m zhenping.training.soup`); validation mean Spearman of each:", "",
                  "| model | weight | validation mean ρ |", "| --- | ---: | ---: |"]
        lines += [f"| `{part['dir']}` | {w:.3f} | {_fmt(part.get('validation_mean_spearman'))} |"
                  for part, w in zip(soup.get("parts", []), soup.get("weights", []))]
        lines.append("")
    ft = info.get("finetune", {})
    lines += [
        "## Fine-tuning",
        "",
        (f"Each part's own fine-tuning is in its folder; the average's validation mean Spearman "
         f"({ft.get('validation_rows', 0):,} comments): {_fmt(ft.get('best_validation_mean_spearman'))}."
         if soup else
         f"{ft.get('train_rows', 0):,} training and {ft.get('validation_rows', 0):,} validation "
         f"comments; {_fmt(ft.get('epochs_run'), 1)} epochs in {ft.get('train_seconds', 0) / 60:.1f} minutes; "
         f"best validation mean Spearman {_fmt(ft.get('best_validation_mean_spearman'))}."),
        "",
        "Hyperparameters:",
        "",
        "```json",
        json.dumps(ft.get("config", {}), ensure_ascii=False, indent=2),
        "```",
        "",
        f"Max length: {scorer_config.get('max_length')} tokens. Normalisation: "
        f"`{scorer_config.get('normalization')}`. Versions: "
        + ", ".join(f"{k} {v}" for k, v in (scorer_config.get("versions") or {}).items())
        + ".",
        "",
        INTENDED_USE,
    ]
    return "\n".join(lines)


def rerender_card(model_dir: str | Path, prepare_manifest: dict | None = None) -> str:
    """Rebuild a model folder's card from what the folder holds (metrics.json,
    scorer_config.json, backends.json, behaviour.json) and write it to README.md.

    A ``prepare_manifest`` from other label files than the model's is not used."""
    from zhenping.training.backends import backends_card_section

    d = Path(model_dir)
    metrics = json.loads((d / "metrics.json").read_text(encoding="utf-8"))
    sc = json.loads((d / "scorer_config.json").read_text(encoding="utf-8"))
    behaviour = None
    if (d / "behaviour.json").is_file():
        behaviour = json.loads((d / "behaviour.json").read_text(encoding="utf-8"))
    if prepare_manifest and sc.get("label_files") and prepare_manifest.get("label_files") != sc["label_files"]:
        prepare_manifest = None  # prepared from other labels: its row counts are not this model's
    if not prepare_manifest:
        # Keep the rows per split the card was built with (metrics.json, or the card itself).
        rows = (metrics.get("data") or {}).get("rows") or _rows_in_card(d / "README.md")
        if rows:
            prepare_manifest = {"counts": {"rows": rows}}
    info = dict(metrics.get("training", {}))
    baselines = metrics.get("compare") or load_baselines(
        Path(__file__).resolve().parent / "results" / "baselines.json", metrics.get("split", "test"), sc["axes"])
    sizes = None
    if (d / "sizes.json").is_file():
        sizes = json.loads((d / "sizes.json").read_text(encoding="utf-8"))
    card = render_card(sc, metrics, baselines, info, prepare_manifest, behaviour=behaviour, sizes=sizes)
    if (d / "backends.json").is_file():
        section = backends_card_section(json.loads((d / "backends.json").read_text()))
        head, sep, rest = card.partition("## Intended use")
        card = head + section + "\n" + sep + rest
    (d / "README.md").write_text(card, encoding="utf-8")
    return card


def _rows_in_card(path: Path) -> dict[str, int]:
    """The "| split | rows |" table of an existing card, as {split: rows} (empty if none)."""
    import re

    if not path.is_file():
        return {}
    rows = {}
    for split, n in re.findall(r"^\| (train|validation|test) \| ([0-9,]+) \|$", path.read_text(encoding="utf-8"),
                               flags=re.M):
        rows[split] = int(n.replace(",", ""))
    return rows


def load_baselines(path: str | Path, split: str = "test", axes=None) -> dict:
    """Baseline metrics for ``split`` from ``baselines.json`` (empty if absent)."""
    p = Path(path)
    if not p.is_file():
        return {}
    stored = json.loads(p.read_text(encoding="utf-8"))
    out = {}
    for name, res in stored.get("models", {}).items():
        if split in res and (axes is None or res[split].get("axes") == list(axes)):
            out[name] = res[split]
    return out
