"""Model subcommands of `zhenping`: pretrain, train (fine-tune), export."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

# This module's subcommands; zhenping/cli.py adds them to the `zhenping` command.
app = typer.Typer()

EXTRA_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True}


def _input_error(message: str) -> None:
    """A user's mistake: one line on standard error, exit code 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _config(cls, path: str, ctx: typer.Context, **fixed):
    """A typed run config from a TOML file, the command's extra ``--key=value``
    arguments and the command's own options; a bad key or value is a usage error."""
    from zhenping.training.config import load_config, parse_overrides

    try:
        overrides = parse_overrides(ctx.args)
        overrides.update({k: v for k, v in fixed.items() if v is not None})
        return load_config(cls, path, overrides)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        raise typer.BadParameter(str(exc)) from None


@app.command(
    "pretrain",
    context_settings=EXTRA_ARGS,
)
def pretrain_cmd(
    ctx: typer.Context,
    config: str = typer.Option("pretrain_cpu.toml", help="TOML file (bare names: training/configs/)."),
    corpora: Optional[str] = typer.Option(None, help="Corpora root (default: $ZHENPING_CORPORA or ../shared)."),
) -> None:
    """Pretrain the Chinese encoder with masked-language modelling or replaced-token
    detection (--objective=rtd), from the corpora or a pack (--pack=runs/pack),
    optionally starting from a model folder (--init_from=default); resumable.

    Extra --key=value arguments override the config, e.g. --max_minutes=60.
    """
    from zhenping.training.pretrain import PretrainConfig, run

    cfg = _config(PretrainConfig, config, ctx, corpora=corpora)
    try:
        run(cfg)
    except (FileNotFoundError, ValueError) as exc:  # a missing pack or model folder, a bad value
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command(
    "multitask",
    context_settings=EXTRA_ARGS,
)
def multitask_cmd(
    ctx: typer.Context,
    config: str = typer.Option("multitask.toml", help="TOML file (bare names: training/configs/)."),
) -> None:
    """Intermediate multi-task stage on the corpora's own labels (offensive, sexism,
    AI text, sentiment, emotion) between pretraining and fine-tuning."""
    from zhenping.training.corpora import corpora_root
    from zhenping.training.multitask import MultitaskConfig, run

    cfg = _config(MultitaskConfig, config, ctx)
    try:
        corpora_root(getattr(cfg, "corpora", None))
    except FileNotFoundError:
        _input_error("no corpora folder found, and the multi-task stage trains on the corpora's own labels; "
                     "pass --corpora=DIR or set ZHENPING_CORPORA=DIR (`zhenping corpora download DIR` "
                     "fetches the public files)")
    from zhenping.training.pack_scores import TeacherDataError

    try:
        run(cfg)
    except (FileNotFoundError, TeacherDataError) as exc:
        _input_error(str(exc).splitlines()[0])


@app.command(
    "train",
    context_settings=EXTRA_ARGS,
)
def train_cmd(
    ctx: typer.Context,
    config: str = typer.Option("finetune.toml", help="TOML file (bare names: training/configs/)."),
    extra: list[str] = typer.Option([], "--extra", help="More labelled files (JSONL/CSV/Parquet/HF dataset) for training; repeatable."),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Drop (and list) invalid rows of --extra "
                                      "files instead of stopping."),
    out: str = typer.Option("runs/model", help="Where the exported scorer folder goes."),
    base: Optional[str] = typer.Option(None, help="Encoder to start from: a local folder or a Hugging Face id."),
    version: Optional[str] = typer.Option(None, help="Model version written into the export (default: a timestamp)."),
    promote: bool = typer.Option(False, "--promote", help="Then add it to the model store and make it current "
                                 "if it is not worse than the current version (see `zhenping promote`)."),
    store: Optional[str] = typer.Option(None, "--store", help="Model store for --promote (default: "
                                        "$ZHENPING_MODEL_STORE, else runs/store)."),
) -> None:
    """Fine-tune (by default the shipped model), evaluate on the held-out test split
    beside the baselines and the starting model, and export.

    Training rows: the prepared splits in data_dir; else the gold labels joined to
    the corpora; else, with no corpora, your --extra files alone (a stable share held
    out for validation and test). Extra --key=value arguments override the config,
    e.g. --lr=5e-5 --epochs=3. Rerunning the same command after a crash resumes from
    the newest checkpoint; a different run (config, data or base) never does.
    """
    from zhenping.training.finetune import FinetuneConfig
    from zhenping.training.pack_scores import TeacherDataError
    from zhenping.training.prepare import PrepareError
    from zhenping.training.train import TrainInputError, run_train
    from zhenping.training.userdata import LabelFileError, error_line

    if extra:
        missing = [f for f in extra if not _exists_or_dataset_name(f)]
        if missing:
            _input_error(f"--extra {missing[0]}: no such file; give the path of a labelled JSONL, CSV or "
                         "Parquet file (columns text, warmth, substance, template)")
    cfg = _config(FinetuneConfig, config, ctx, base=base, extra_train=list(extra) or None,
                  skip_invalid=skip_invalid or None)
    try:
        metrics = run_train(cfg, out, model_version=version)
    except LabelFileError as exc:
        _input_error(error_line(exc, "--skip-invalid"))
    except (TrainInputError, PrepareError, TeacherDataError) as exc:
        _input_error(str(exc))
    o = metrics["overall"]
    for a in metrics["axes"]:
        typer.echo(f"test {a}: spearman {o[a]['spearman']}, pearson {o[a]['pearson']}, mae {o[a]['mae']}")
    typer.echo(f"test template>=2 AUROC {o['template_ge2']['auroc']}, hostile AUROC {o['hostile']['auroc']}")
    if "base_on_test" in metrics:
        from zhenping.training.evaluate import comparison_table

        held = "your held-out rows" if metrics.get("data_mode") == "extra-only" else "the test split"
        typer.echo(f"\nnew and current model on {held} ({metrics['n']:,} rows):")
        typer.echo(comparison_table({f"new ({out})": metrics,
                                     f"current ({metrics['base_on_test']['dir']})": metrics["base_on_test"]}))
    if promote:
        from zhenping.training.feedback_commands import promote_or_exit

        promote_or_exit(out, store, data_dir=cfg.data_dir, version=version)


def _exists_or_dataset_name(spec: str) -> bool:
    """A path that exists, or something that can only be a Hugging Face dataset name."""
    if Path(spec).expanduser().exists():
        return True
    looks_like_path = (spec.startswith((".", "/", "~")) or spec.count("/") > 1
                       or spec.lower().endswith((".jsonl", ".csv", ".tsv", ".parquet", ".pq", ".gz", ".json")))
    return not looks_like_path


@app.command("reproduce-default")
def reproduce_default_cmd(
    out: str = typer.Option("model/default", help="Where the scorer folder goes."),
    pretrain_steps: int = typer.Option(1300, help="First-stage pretraining steps (the shipped model used 1300)."),
    continue_steps: int = typer.Option(
        8800, help="Steps in all after the second stage, pretrain_cpu_stage2.toml (the shipped model used 8800; "
                   "0 skips the stage)."),
    multitask_steps: int = typer.Option(2000, help="Multi-task steps (the shipped model used 2000)."),
    corpora: Optional[str] = typer.Option(None, help="Corpora root (default: $ZHENPING_CORPORA or ../shared)."),
    model_version: str = typer.Option("zhenping-small-v12", help="Version the export is named with."),
) -> None:
    """Rebuild the shipped default model from the corpora and gold labels, end to end.

    v2 stage (gold v1-v3, as v2 was built): pretrain (two stages) → prepare → baselines →
    multi-task → fine-tune (finetune_shipped.toml) → runs/model_v2. v3 stage (gold v1-v6,
    as v3 and v4 were built, runs/data_v6): prepare → baselines → fine-tune v2
    (finetune_v3.toml) → self-training with the TF-IDF + stage-1 ensemble as teacher
    (finetune_v3_distill.toml) → pack → replaced-token detection continued from v2's
    encoder (pretrain_rtd_v3.toml) → fine-tuning that encoder with the TF-IDF + stage-2
    ensemble as teacher (finetune_v3_rtd.toml) → runs/model_v3. v4 stage: distillation
    from the TF-IDF + v3 ensemble on 120,000 corpus texts (finetune_v4_distill.toml) →
    a short gold-only fine-tune (finetune_v4.toml) → runs/model_v4b. v5 stage (gold v1-v7,
    as v5 and v8 were built, runs/data_v7): prepare → baselines → the RTD run resumed to 5,560 steps
    (pretrain_rtd_v5.toml) → that encoder fine-tuned with the TF-IDF + v4 ensemble as
    teacher (finetune_v5_rtd.toml) → distilled from it on 120,000 texts
    (finetune_v5_distill.toml) → gold only (finetune_v5.toml) → the average of the last
    two (training/soup.py) → runs/model_v5s. v8 stage: the RTD run resumed to 14,499 steps
    (pretrain_rtd_v6.toml on a step schedule) → fine-tuned as in v5 (finetune_v7_rtd.toml)
    → distilled from TF-IDF + v4 + v5 with trailing-mark copies of the gold rows
    (finetune_v8_distill.toml) → gold only with them (finetune_v8.toml) → the average of
    the last two → runs/model_v8. v9 stage (gold v1-v8, as v9 was built, runs/data_v8):
    prepare → baselines → v8's distilled stage fine-tuned on the gold rows with the copies
    (finetune_v9.toml) → its average with v8's distilled stage → runs/model_v9. v10 stage
    (gold v1-v9, runs/data_v9): prepare → baselines → v9 fine-tuned on the gold rows
    (finetune_v10.toml) → runs/model_v10q → v9 distilled on 240,000 texts from TF-IDF +
    v9 + v10q, reading 256 tokens per comment (finetune_v12_distill.toml) → runs/model_v12b.
    v13 stage (all gold labels, runs/data): prepare → baselines → the same recipe
    (finetune_v13_distill.toml) → runs/model_v13b → the average of the two, levels and
    behavioural tests on the v1-v9 rows → ONNX int8 check. All on the CPU; where a
    GPU teacher was run (training/gpu_teacher.py), its output can join the teacher as
    `pseudo_teacher`. Every stage resumes or reuses its output under runs/ when rerun."""
    from zhenping.training.baselines import run_baselines
    from zhenping.training.config import load_config
    from zhenping.training.finetune import FinetuneConfig
    from zhenping.training.multitask import MultitaskConfig
    from zhenping.training.multitask import run as run_multitask
    from zhenping.training.prepare import prepare
    from zhenping.training.pretrain import PretrainConfig
    from zhenping.training.pretrain import run as run_pretrain
    from zhenping.training.train import run_train

    pre = load_config(PretrainConfig, "pretrain_cpu.toml", {"max_steps": pretrain_steps, "corpora": corpora})
    encoder = run_pretrain(pre)
    if continue_steps > pretrain_steps:
        pre2 = load_config(PretrainConfig, "pretrain_cpu_stage2.toml",
                           {"max_steps": continue_steps, "corpora": corpora})
        encoder = run_pretrain(pre2)

    # v2 stage: the label files v2 was trained on, its own baselines as teacher.
    _prepare_labels(V2_LABEL_FILES, "runs/gold_v2", "runs/data_v2", corpora)
    run_baselines(data_dir="runs/data_v2", out="runs/results_v2", models_dir="runs/baselines_v2")
    teacher_v2 = "runs/baselines_v2/tfidf_ridge.joblib"
    mt = load_config(MultitaskConfig, "multitask.toml",
                     {"base": str(encoder), "steps": multitask_steps, "corpora": corpora,
                      "distill_teacher": teacher_v2})
    mt_encoder = run_multitask(mt)
    ft = load_config(FinetuneConfig, "finetune_shipped.toml",
                     {"base": str(mt_encoder), "data_dir": "runs/data_v2", "pseudo_teacher": teacher_v2,
                      "out_dir": "runs/finetune_v2"})
    run_train(ft, "runs/model_v2", model_version="zhenping-small-v2")

    # v3 and v4 stages: the label files they were trained on (v1-v6), their own baselines.
    d6, b6 = _prepare_labels(V4_LABEL_FILES, "runs/gold_v6", "runs/data_v6", corpora), "runs/baselines_v6"
    run_baselines(data_dir=d6, out="runs/results_v6", models_dir=b6)
    tfidf6 = f"{b6}/tfidf_ridge.joblib"
    stage1 = load_config(FinetuneConfig, "finetune_v3.toml", {"data_dir": d6})
    stage1_out = "runs/model_v3a"
    run_train(stage1, stage1_out, model_version="zhenping-small-v3-stage1")
    distill = load_config(FinetuneConfig, "finetune_v3_distill.toml",
                          {"base": stage1_out, "data_dir": d6, "pseudo_teacher": f"{tfidf6},{stage1_out}"})
    teacher_out = "runs/model_v3d"
    run_train(distill, teacher_out, model_version="zhenping-small-v3-teacher")

    # Replaced-token detection continued from v2's encoder, read from the pack; then the
    # last fine-tune with the TF-IDF + stage-2 ensemble as teacher.
    from zhenping.training.pack import build_pack

    if not Path("runs/pack/header.json").is_file():
        build_pack("runs/pack", "runs/model_v2", work_dir="runs/pretrain", corpora=corpora, max_mib=28)
    rtd = load_config(PretrainConfig, "pretrain_rtd_v3.toml", {})
    run_pretrain(load_config(PretrainConfig, "pretrain_rtd_v3.toml", {"max_steps": RTD_FIRST_STEPS}))
    rtd_encoder = run_pretrain(rtd)
    final = load_config(FinetuneConfig, "finetune_v3_rtd.toml",
                        {"base": str(rtd_encoder), "data_dir": d6, "pseudo_teacher": f"{tfidf6},{teacher_out}"})
    v3_out = "runs/model_v3"
    run_train(final, v3_out, model_version="zhenping-small-v3")

    # v4 stage: distillation at scale from the TF-IDF + v3 ensemble (the best teacher on
    # validation, training/results/teachers_v4.md) on 120,000 corpus texts, then a short
    # gold-only fine-tune.
    distilled = "runs/model_v4a"
    run_train(load_config(FinetuneConfig, "finetune_v4_distill.toml",
                          {"base": v3_out, "data_dir": d6, "pseudo_teacher": f"{tfidf6},{v3_out}"}),
              distilled, model_version="zhenping-small-v4-distilled")
    v4_out = "runs/model_v4b"
    run_train(load_config(FinetuneConfig, "finetune_v4.toml", {"base": distilled, "data_dir": d6}), v4_out,
              model_version="zhenping-small-v4")

    # v5 stage: the label files v5 and v8 were trained on (v1-v7, runs/data_v7) and their
    # own baselines; the RTD run resumed to 5,560 steps; that encoder fine-tuned and
    # distilled from the TF-IDF + v4 ensemble (the best teacher on validation,
    # training/results/teachers.md), then gold only; v5 is the average of the distilled and
    # the gold-tuned weights (both chosen on validation, training/results/candidates_v5.md).
    # A GPU teacher's output joins the teacher here when there is one.
    from zhenping.training.soup import run_soup

    d7 = _prepare_labels(V8_LABEL_FILES, "runs/gold_v7", "runs/data_v7", corpora)
    run_baselines(data_dir=d7, out="runs/results_v7", models_dir="runs/baselines_v7")
    v5_teacher = f"runs/baselines_v7/tfidf_ridge.joblib,{v4_out}"
    rtd5_encoder = run_pretrain(load_config(PretrainConfig, "pretrain_rtd_v5.toml", {}))
    run_train(load_config(FinetuneConfig, "finetune_v5_rtd.toml",
                          {"base": str(rtd5_encoder), "data_dir": d7, "pseudo_teacher": v5_teacher}),
              "runs/model_v5a", model_version="zhenping-small-v5-stage1")
    run_train(load_config(FinetuneConfig, "finetune_v5_distill.toml",
                          {"base": "runs/model_v5a", "data_dir": d7, "pseudo_teacher": v5_teacher}),
              "runs/model_v5b", model_version="zhenping-small-v5-distilled")
    run_train(load_config(FinetuneConfig, "finetune_v5.toml", {"base": "runs/model_v5b", "data_dir": d7}),
              "runs/model_v5c", model_version="zhenping-small-v5-gold")
    run_soup(["runs/model_v5b", "runs/model_v5c"], "runs/model_v5s", d7, version="zhenping-small-v5")

    # v8 stage: the RTD run resumed once more, to 14,499 steps (59.4M tokens; the shipped
    # run scheduled its learning rate over 300 minutes of training time, which brought it
    # back to 0.6 of its peak at step 5,560 and down to 0 at the end: a step schedule over
    # 14,499 steps does the same); that encoder fine-tuned as in the v5 stage, distilled
    # from TF-IDF + v4 + v5 (the best teacher on validation, teachers_with_v5.md) with half
    # of the gold rows added again with one trailing mark, then gold only with the same
    # copies; zhenping-small-v8 is the average of the last two (candidates_v8.md).
    rtd8_encoder = run_pretrain(load_config(PretrainConfig, "pretrain_rtd_v6.toml", {
        "out_dir": "runs/pretrain_rtd_v3", "init_from": "runs/model_v2", "max_steps": RTD_V6_STEPS, "time_schedule_minutes": 0.0,
        "max_minutes": 0.0}))
    run_train(load_config(FinetuneConfig, "finetune_v7_rtd.toml",
                          {"base": str(rtd8_encoder), "data_dir": d7, "pseudo_teacher": v5_teacher}),
              "runs/model_v7a", model_version="zhenping-small-v7-stage1")
    run_train(load_config(FinetuneConfig, "finetune_v8_distill.toml",
                          {"base": "runs/model_v7a", "data_dir": d7, "pseudo_teacher": f"{v5_teacher},runs/model_v5s"}),
              "runs/model_v8b", model_version="zhenping-small-v8-distilled")
    run_train(load_config(FinetuneConfig, "finetune_v8.toml", {"base": "runs/model_v8b", "data_dir": d7}),
              "runs/model_v8c", model_version="zhenping-small-v8-gold")
    run_soup(["runs/model_v8b", "runs/model_v8c"], "runs/model_v8", d7, version="zhenping-small-v8")

    # v9 stage: the label files v9 was trained on (v1-v8, runs/data_v8; gold_v8 adds short
    # filler and emoji walls) and their own baselines; v8's distilled stage fine-tuned on
    # those gold rows with the trailing-mark copies, averaged with that distilled stage (the
    # best of the v9 candidates on validation, candidates_v9.md).
    d8 = _prepare_labels(V9_LABEL_FILES, "runs/gold_v8", "runs/data_v8", corpora)
    run_baselines(data_dir=d8, out="runs/results_v8", models_dir="runs/baselines_v8")
    run_train(load_config(FinetuneConfig, "finetune_v9.toml", {"base": "runs/model_v8b", "data_dir": d8}),
              "runs/model_v9q", model_version="zhenping-small-v9-gold")
    run_soup(["runs/model_v8b", "runs/model_v9q"], "runs/model_v9", d8, version="zhenping-small-v9")

    # v10 stage: the label files v10 was built on (v1-v9, runs/data_v9; gold_v9 adds hostile
    # comments and heartfelt comfort) and their own baselines; v9 fine-tuned on those gold rows
    # with the copies (finetune_v10.toml): it joins TF-IDF and v9 as the teacher of the last
    # stages (the best average on validation, teachers_v10.md, and again at 256 tokens on the
    # v1-v10 rows, teachers_v13.md).
    d9 = _prepare_labels(V10_LABEL_FILES, "runs/gold_v9", "runs/data_v9", corpora)
    run_baselines(data_dir=d9, out="runs/results_v9", models_dir="runs/baselines_v9")
    run_train(load_config(FinetuneConfig, "finetune_v10.toml", {"base": "runs/model_v9", "data_dir": d9}),
              "runs/model_v10q", model_version="zhenping-small-v10-gold")

    # v12 stage: v9 distilled on 240,000 corpus texts from TF-IDF + v9 + v10q on the v1-v9
    # rows, student and teachers reading 256 tokens per comment (finetune_v12_distill.toml).
    run_train(load_config(FinetuneConfig, "finetune_v12_distill.toml", {
        "base": "runs/model_v9", "data_dir": d9,
        "pseudo_teacher": "runs/baselines_v9/tfidf_ridge.joblib,runs/model_v9,runs/model_v10q"}),
        "runs/model_v12b", model_version="zhenping-small-v12-distilled")

    # v13 stage: all label files (v1-v10, runs/data; gold_v10 adds long comments and comments
    # the model and TF-IDF scored apart on warmth) and the committed baselines; the same recipe
    # (finetune_v13_distill.toml). zhenping-small-v12 is the average of the v12 and v13 stages,
    # the best validation figure of the candidates on the v1-v9 rows (candidates_v13.md), its
    # levels fitted and its test figures measured there.
    prepare(corpora=corpora, out="runs/data")
    run_baselines(data_dir="runs/data")
    run_train(load_config(FinetuneConfig, "finetune_v13_distill.toml", {
        "base": "runs/model_v9", "pseudo_teacher": "runs/baselines/tfidf_ridge.joblib,runs/model_v9,runs/model_v10q"}),
        "runs/model_v13b", model_version="zhenping-small-v13-distilled")
    run_soup(["runs/model_v12b", "runs/model_v13b"], out, d9, version=model_version)
    check_backends_cmd(model=out, data=d9, split="test", keep_fp32=False)


def _prepare_labels(files: tuple[str, ...], gold_dir: str, out: str, corpora: str | None) -> str:
    """Prepare ``out`` from the named label files only (as an earlier stage was built); returns ``out``."""
    import shutil

    from zhenping.training.labels import gold_files
    from zhenping.training.prepare import prepare

    gold = Path(gold_dir)
    gold.mkdir(parents=True, exist_ok=True)
    for f in gold_files():
        if f.name in files:
            shutil.copyfile(f, gold / f.name)
    prepare(corpora=corpora, gold=gold, out=out)
    return out


RTD_FIRST_STEPS = 272  # the first RTD run's steps; its schedule decayed to 0 there before the resumed run
RTD_V6_STEPS = 14499  # where pretrain_rtd_v6.toml's 300-minute schedule ended


V2_LABEL_FILES = ("gold_v1.jsonl", "gold_v2.jsonl", "gold_v3.jsonl")  # what zhenping-small-v2 was trained on
V4_LABEL_FILES = V2_LABEL_FILES + ("gold_v4.jsonl", "gold_v5.jsonl", "gold_v6.jsonl")  # v3 and v4
V8_LABEL_FILES = V4_LABEL_FILES + ("gold_v7.jsonl",)  # v5 and v8
V9_LABEL_FILES = V8_LABEL_FILES + ("gold_v8.jsonl",)  # v9
V10_LABEL_FILES = V9_LABEL_FILES + ("gold_v9.jsonl",)  # v10


@app.command("check-backends")
def check_backends_cmd(
    model: str = typer.Option("runs/model", help="Exported scorer folder (ONNX files are written into it)."),
    data: str = typer.Option("runs/data", help="Prepared splits."),
    split: str = typer.Option("test", help="Split to compare the backends on."),
    keep_fp32: bool = typer.Option(False, help="Keep model.onnx (fp32) beside the int8 file."),
) -> None:
    """Export ONNX fp32 and int8, compare them with PyTorch on a labelled split, keep
    only the backends within tolerance and add the figures to the model card."""
    from zhenping.training.backends import check_backends

    from zhenping.training.card import rerender_card
    from zhenping.training.prepare import read_manifest

    check_backends(model, data, split, keep_fp32=keep_fp32)
    if (Path(model) / "metrics.json").is_file():
        try:
            manifest = read_manifest(data)
        except FileNotFoundError:
            manifest = None
        rerender_card(model, manifest)
