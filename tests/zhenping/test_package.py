"""The ``zhenping`` package: the public Python API and the command's root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zhenping import model
import zhenping
from zhenping.model.scorer import Backend, CommentScores, Scorer
from zhenping.cli import app

runner = CliRunner()


def test_public_api_is_the_model_packages():
    assert zhenping.Scorer is Scorer
    assert zhenping.CommentScores is CommentScores
    assert zhenping.Backend is Backend
    for name in model.__all__:
        assert getattr(zhenping, name) is getattr(model, name)
    assert all(hasattr(zhenping, name) for name in zhenping.__all__)


def test_scores_through_the_facade(tiny_model_dir):
    scorer = zhenping.Scorer.from_pretrained(str(tiny_model_dir))
    scores = scorer.score(["谢谢分享,挺有用的", "好"])
    assert len(scores) == 2
    assert all(isinstance(s, zhenping.CommentScores) for s in scores)


def test_one_backend_enum():
    import zhenping.api.commands
    import zhenping.model.commands
    from zhenping import api, model

    assert api.commands.Backend is Backend and model.commands.Backend is Backend
    assert [b.value for b in Backend] == ["torch", "onnx", "auto"]


def test_root_lists_every_packages_commands():
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for command in ("prepare", "train", "serve", "score", "export-onnx", "promote", "rollback", "score-dataset",
                    "behaviour", "calibrate", "pack", "corpora", "feedback", "models"):
        assert f" {command} " in result.output, command


def test_earlier_import_path_is_the_same_app():
    from zhenping.training.cli import app as earlier

    assert earlier is app


def test_importing_a_package_does_not_load_the_command_line():
    code = ("import sys, zhenping, zhenping.model, zhenping.api.service, zhenping.training.store; "
            "print(sorted(m for m in ('zhenping.cli', 'zhenping.training.cli', 'typer') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_local_model_py_does_not_shadow_the_package(tmp_path):
    (tmp_path / "model.py").write_text("VALUE = 1\n", encoding="utf-8")
    # this checkout on the path, as an install would put it (tests/zhenping/test_install.py installs it)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    run = subprocess.run([sys.executable, "-c", "from zhenping import Scorer"], cwd=tmp_path,
                         capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
