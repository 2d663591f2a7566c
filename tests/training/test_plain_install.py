"""Retraining from a plain (non-editable) install with no corpora anywhere in sight.

The package is built from a copy of the source and installed into a fresh virtual
environment (reusing this environment's libraries, so nothing is downloaded); the
commands then run from an empty folder, as a user's would.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import copy_package_sources

ROOT = Path(__file__).resolve().parents[2]

WORDS = ["物流很快", "质量不错", "客服态度差", "谢谢分享", "房间干净", "早餐一般", "隔音差", "会回购",
         "包装破了", "性价比高", "味道偏咸", "送货准时"]


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A virtual environment with zhenping installed from a wheel build of this source."""
    tmp = tmp_path_factory.mktemp("plain")
    src = copy_package_sources(tmp / "src")
    env_dir = tmp / "venv"
    # No pip of its own: this environment's pip and setuptools build and install the package.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(env_dir)],
                   check=True)
    python = env_dir / "bin" / "python"
    built = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(src)],
                           capture_output=True, text=True, timeout=600, env=_env())
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-3000:]
    return env_dir


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZHENPING_", "PYTHONPATH", "VIRTUAL_ENV"))}
    env.update({"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1",
                "PIP_DISABLE_PIP_VERSION_CHECK": "1", "OMP_NUM_THREADS": "2"})
    return env


def zhenping(venv: Path, cwd: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([str(venv / "bin" / "zhenping"), *args], cwd=cwd, env=_env(), capture_output=True,
                          text=True, timeout=timeout)


def write_labels(path: Path, n: int) -> None:
    rng = random.Random(n)
    rows = []
    for i in range(n):
        rows.append({"text": "".join(rng.sample(WORDS, 3)) + f",第{i}单", "warmth": rng.randint(0, 3),
                     "substance": rng.randint(0, 3), "template": rng.randint(0, 3)})
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


@pytest.mark.slow
def test_installed_package_ships_the_gold_labels_and_is_the_one_imported(venv, tmp_path):
    code = ("from zhenping import training; import zhenping.training.labels as l; print(training.__file__); "
            "print(len(l.gold_files()), l.gold_dir())")
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code], cwd=tmp_path, env=_env(),
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0].startswith(str(venv)), out  # the installed copy, not this checkout
    count, folder = out[1].split(" ", 1)
    assert int(count) == len(list((ROOT / "training" / "gold").glob("gold_v*.jsonl"))) >= 6
    assert folder.startswith(str(venv))


@pytest.mark.slow
def test_train_on_my_file_alone_from_a_plain_install(venv, tmp_path):
    write_labels(tmp_path / "my.jsonl", 120)
    result = zhenping(venv, tmp_path, "train", "--extra", "my.jsonl", "--out", "m", "--epochs=1")
    assert result.returncode == 0, result.stderr[-4000:]
    assert "no corpora found: training on my.jsonl alone" in result.stderr
    assert "Traceback" not in result.stderr
    assert (tmp_path / "m" / "model.safetensors").is_file() and (tmp_path / "m" / "README.md").is_file()
    # Both the new and the shipped model, measured on the same held-out rows.
    assert "new and current model on your held-out rows" in result.stdout
    table = [line for line in result.stdout.splitlines() if line.startswith("| new (m)") or
             line.startswith("| current (")]
    assert len(table) == 2, result.stdout
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["data_mode"] == "extra-only" and metrics["base_on_test"]["n"] == metrics["n"] >= 2
    sc = json.loads((tmp_path / "m" / "scorer_config.json").read_text(encoding="utf-8"))
    assert "my.jsonl" in sc["label_files"]


@pytest.mark.slow
@pytest.mark.parametrize("make, args, message", [
    (None, ("--extra", "missing.jsonl"),
     "error: --extra missing.jsonl: no such file; give the path of a labelled JSONL, CSV or Parquet file "
     "(columns text, warmth, substance, template)"),
    ("few", ("--extra", "few.jsonl"), "distinct labelled rows leave"),
    ("columns", ("--extra", "cols.jsonl"),
     "error: cols.jsonl: line 1: missing column(s) ['text'] (and 1 more invalid row); a labelled file needs the "
     "columns text, warmth, substance, template (optional: id, source); rename yours to these"),
    ("bad", ("--extra", "bad.jsonl"),
     "error: bad.jsonl: line 2: warmth: level must be an integer 0-3, got 9; fix the row, or pass "
     "--skip-invalid to drop and list bad rows"),
    (None, (), "error: nothing to train on: runs/data has no prepared split files and no corpora were found"),
])
def test_user_mistakes_are_one_line_and_exit_2(venv, tmp_path, make, args, message):
    if make == "few":
        write_labels(tmp_path / "few.jsonl", 6)
    elif make == "columns":
        (tmp_path / "cols.jsonl").write_text(
            "".join(json.dumps({"content": f"好{i}", "warmth": 1, "substance": 1, "template": 1}) + "\n"
                    for i in range(2)), encoding="utf-8")
    elif make == "bad":
        write_labels(tmp_path / "bad.jsonl", 60)
        lines = (tmp_path / "bad.jsonl").read_text(encoding="utf-8").splitlines()
        lines[1] = json.dumps({"text": "坏", "warmth": 9, "substance": 1, "template": 1})
        (tmp_path / "bad.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = zhenping(venv, tmp_path, "train", *args, "--out", "m", "--epochs=1")
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "m").exists()

    if make == "bad":  # train accepts the advice it gives
        fixed = zhenping(venv, tmp_path, "train", *args, "--out", "m", "--epochs=1", "--skip-invalid")
        assert fixed.returncode == 0, fixed.stderr[-3000:]
        assert "skipped bad.jsonl: line 2: warmth: level must be an integer 0-3, got 9" in fixed.stderr


@pytest.mark.slow
def test_multitask_without_corpora_says_so(venv, tmp_path):
    result = zhenping(venv, tmp_path, "multitask", timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: no corpora folder found, and the multi-task stage trains on the corpora's own labels; pass "
        "--corpora=DIR or set ZHENPING_CORPORA=DIR (`zhenping corpora download DIR` fetches the public files)")
