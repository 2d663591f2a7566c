"""`zhenping reproduce-default` runs the shipped recipe's stages in order, with the right inputs.

The stages themselves are tested elsewhere; here each is replaced by a recorder, so
the test checks the plan: which labels each stage sees, which model each stage
starts from and which teacher scores the unlabelled text.
"""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

import zhenping.training.backends
import zhenping.training.baselines
import zhenping.training.multitask
import zhenping.training.pack
import zhenping.training.prepare
import zhenping.training.pretrain
import zhenping.training.soup
import zhenping.training.train
from zhenping import training
from zhenping.training.cli import app


def test_reproduce_default_runs_the_v2_v3_v4_v5_v8_v9_v10_v12_then_v13_stages(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    calls: list[tuple] = []

    pretrain_dirs: list[tuple] = []
    augment: list[float] = []
    lengths: list[int] = []

    def pretrain(cfg):
        calls.append(("pretrain", cfg.max_steps, cfg.objective, cfg.init_from))
        pretrain_dirs.append((cfg.out_dir, cfg.time_schedule_minutes, cfg.max_minutes))
        return Path(cfg.out_dir) / "encoder"

    def prepare(corpora=None, gold=None, out=None, **_):
        files = sorted(p.name for p in Path(gold).glob("gold_v*.jsonl")) if gold else "all"
        calls.append(("prepare", out, files))

    def baselines(data_dir="runs/data", out=None, models_dir=None, **_):
        calls.append(("baselines", data_dir, str(out) if out else None, str(models_dir) if models_dir else None))

    def multitask(cfg):
        calls.append(("multitask", cfg.base, cfg.distill_teacher))
        return Path("runs/multitask/encoder")

    def train(cfg, out, model_version=None, **_):
        calls.append(("train", cfg.base, cfg.data_dir, cfg.pseudo_teacher, cfg.pseudo_texts, out, model_version))
        augment.append(cfg.augment_tails)
        lengths.append(cfg.max_length)
        return {}

    monkeypatch.setattr(training.pretrain, "run", pretrain)
    monkeypatch.setattr(training.prepare, "prepare", prepare)
    monkeypatch.setattr(training.baselines, "run_baselines", baselines)
    monkeypatch.setattr(training.multitask, "run", multitask)
    monkeypatch.setattr(training.train, "run_train", train)
    monkeypatch.setattr(training.pack, "build_pack",
                        lambda out, tok, **k: calls.append(("pack", str(out), str(tok), k.get("max_mib"))))
    monkeypatch.setattr(training.soup, "run_soup", lambda models, out, data_dir, version=None, **_:
                        calls.append(("soup", list(models), str(out), str(data_dir), version)))
    monkeypatch.setattr(training.backends, "check_backends", lambda *a, **k: calls.append(("check-backends", a[0])))

    result = CliRunner().invoke(app, ["reproduce-default", "--out", "out-model"])
    assert result.exit_code == 0, result.output

    assert calls[0] == ("pretrain", 1300, "mlm", None) and calls[1] == ("pretrain", 8800, "mlm", None)
    # v2 stage: only the label files v2 was trained on, its own baselines as teacher
    assert calls[2] == ("prepare", "runs/data_v2", ["gold_v1.jsonl", "gold_v2.jsonl", "gold_v3.jsonl"])
    assert calls[3] == ("baselines", "runs/data_v2", "runs/results_v2", "runs/baselines_v2")
    assert calls[4] == ("multitask", "runs/pretrain/encoder", "runs/baselines_v2/tfidf_ridge.joblib")
    assert calls[5] == ("train", "runs/multitask/encoder", "runs/data_v2", "runs/baselines_v2/tfidf_ridge.joblib",
                        12000, "runs/model_v2", "zhenping-small-v2")
    # v3 stage: the label files v3 and v4 were trained on (v1-v6), their own baselines
    v6 = ["gold_v1.jsonl", "gold_v2.jsonl", "gold_v3.jsonl", "gold_v4.jsonl", "gold_v5.jsonl", "gold_v6.jsonl"]
    t6 = "runs/baselines_v6/tfidf_ridge.joblib"
    assert calls[6] == ("prepare", "runs/data_v6", v6)
    assert calls[7] == ("baselines", "runs/data_v6", "runs/results_v6", "runs/baselines_v6")
    assert calls[8] == ("train", "runs/model_v2", "runs/data_v6", None, 0, "runs/model_v3a", "zhenping-small-v3-stage1")
    assert calls[9] == ("train", "runs/model_v3a", "runs/data_v6", f"{t6},runs/model_v3a",
                        10000, "runs/model_v3d", "zhenping-small-v3-teacher")
    # the pack with v2's tokenizer, RTD from v2's encoder (first run, then resumed), the final fine-tune
    assert calls[10] == ("pack", "runs/pack", "runs/model_v2", 28)
    assert calls[11] == ("pretrain", 272, "rtd", "runs/model_v2")
    assert calls[12] == ("pretrain", 1428, "rtd", "runs/model_v2")
    assert calls[13] == ("train", "runs/pretrain_rtd_v3/encoder", "runs/data_v6", f"{t6},runs/model_v3d",
                         10000, "runs/model_v3", "zhenping-small-v3")
    # v4 stage: distillation from the TF-IDF + v3 ensemble at scale, then gold only
    assert calls[14] == ("train", "runs/model_v3", "runs/data_v6", f"{t6},runs/model_v3",
                         120000, "runs/model_v4a", "zhenping-small-v4-distilled")
    assert calls[15] == ("train", "runs/model_v4a", "runs/data_v6", None, 0, "runs/model_v4b", "zhenping-small-v4")
    # v5 stage: the label files v5 and v8 were trained on (v1-v7), their own baselines; the
    # RTD run resumed to 5,560 steps, fine-tuned and distilled from the TF-IDF + v4 ensemble,
    # gold only, then the average
    t = "runs/baselines_v7/tfidf_ridge.joblib,runs/model_v4b"
    assert calls[16] == ("prepare", "runs/data_v7", v6 + ["gold_v7.jsonl"])
    assert calls[17] == ("baselines", "runs/data_v7", "runs/results_v7", "runs/baselines_v7")
    assert calls[18] == ("pretrain", 5560, "rtd", "runs/model_v2")
    assert calls[19] == ("train", "runs/pretrain_rtd_v3/encoder", "runs/data_v7", t, 10000, "runs/model_v5a",
                         "zhenping-small-v5-stage1")
    assert calls[20] == ("train", "runs/model_v5a", "runs/data_v7", t, 120000, "runs/model_v5b",
                         "zhenping-small-v5-distilled")
    assert calls[21] == ("train", "runs/model_v5b", "runs/data_v7", None, 0, "runs/model_v5c",
                         "zhenping-small-v5-gold")
    assert calls[22] == ("soup", ["runs/model_v5b", "runs/model_v5c"], "runs/model_v5s", "runs/data_v7",
                         "zhenping-small-v5")
    # v8 stage: the same RTD run resumed to 14,499 steps; fine-tuned as in v5, distilled from
    # TF-IDF + v4 + v5 with trailing-mark copies, gold only with them, then the average
    assert calls[23] == ("pretrain", 14499, "rtd", "runs/model_v2")
    assert pretrain_dirs[-1] == ("runs/pretrain_rtd_v3", 0.0, 0.0)
    assert calls[24] == ("train", "runs/pretrain_rtd_v3/encoder", "runs/data_v7", t, 10000, "runs/model_v7a",
                         "zhenping-small-v7-stage1")
    assert calls[25] == ("train", "runs/model_v7a", "runs/data_v7", f"{t},runs/model_v5s", 120000, "runs/model_v8b",
                         "zhenping-small-v8-distilled")
    assert calls[26] == ("train", "runs/model_v8b", "runs/data_v7", None, 0, "runs/model_v8c",
                         "zhenping-small-v8-gold")
    assert calls[27] == ("soup", ["runs/model_v8b", "runs/model_v8c"], "runs/model_v8", "runs/data_v7",
                         "zhenping-small-v8")
    # v9 stage: the label files v9 was trained on (v1-v8), their own baselines; v8's distilled
    # stage fine-tuned on them with the copies, then its average with that distilled stage
    assert calls[28] == ("prepare", "runs/data_v8", v6 + ["gold_v7.jsonl", "gold_v8.jsonl"])
    assert calls[29] == ("baselines", "runs/data_v8", "runs/results_v8", "runs/baselines_v8")
    assert calls[30] == ("train", "runs/model_v8b", "runs/data_v8", None, 0, "runs/model_v9q",
                         "zhenping-small-v9-gold")
    assert calls[31] == ("soup", ["runs/model_v8b", "runs/model_v9q"], "runs/model_v9", "runs/data_v8",
                         "zhenping-small-v9")
    # v10 stage: the label files v10 was built on (v1-v9), their own baselines; v9 fine-tuned
    # on them with the copies (a teacher of the last stage)
    assert calls[32] == ("prepare", "runs/data_v9", v6 + ["gold_v7.jsonl", "gold_v8.jsonl", "gold_v9.jsonl"])
    assert calls[33] == ("baselines", "runs/data_v9", "runs/results_v9", "runs/baselines_v9")
    assert calls[34] == ("train", "runs/model_v9", "runs/data_v9", None, 0, "runs/model_v10q",
                         "zhenping-small-v10-gold")
    # v12 stage: v9 distilled on 240,000 texts from TF-IDF + v9 + v10q on the v1-v9 rows,
    # reading 256 tokens per comment
    assert calls[35] == ("train", "runs/model_v9", "runs/data_v9",
                         "runs/baselines_v9/tfidf_ridge.joblib,runs/model_v9,runs/model_v10q", 240000,
                         "runs/model_v12b", "zhenping-small-v12-distilled")
    # v13 stage: all label files and the committed baselines; the same recipe; the shipped
    # model is the average of the two, its levels and test figures on the v1-v9 rows
    assert calls[36] == ("prepare", "runs/data", "all")
    assert calls[37] == ("baselines", "runs/data", None, None)
    assert calls[38] == ("train", "runs/model_v9", "runs/data",
                         "runs/baselines/tfidf_ridge.joblib,runs/model_v9,runs/model_v10q", 240000,
                         "runs/model_v13b", "zhenping-small-v13-distilled")
    assert calls[39] == ("soup", ["runs/model_v12b", "runs/model_v13b"], "out-model", "runs/data_v9",
                         "zhenping-small-v12")
    assert augment[-6:] == [0.5] * 6 and not any(augment[:-6])  # trailing-mark copies from the v8 stage on
    assert lengths[-2:] == [256, 256] and set(lengths[:-2]) <= {128}  # only the last two stages read 256
    assert calls[40] == ("check-backends", "out-model")
    assert len(calls) == 41
