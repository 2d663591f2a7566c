"""`export-onnx` never changes the shipped model; `backend=auto` runs the ONNX-only folder it writes."""

from __future__ import annotations

import hashlib
import json
import shutil

import httpx
import pytest
from typer.testing import CliRunner

import zhenping.model.commands
from zhenping import model
from zhenping.model.onnx_backend import FP32_FILE, INT8_FILE
from zhenping.model.scorer import SAFE_WEIGHTS, Scorer, parity
from tests.api.conftest import start_server
from tests.helpers import TINY_TEXTS
from zhenping.training.cli import app


def fingerprint(folder) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def shipped(spread_model_dir, tmp_path, monkeypatch):
    """A stand-in for model/default (with an int8 file, as shipped), so no test can touch the real one."""
    from zhenping.model.onnx_backend import export_onnx

    d = shutil.copytree(spread_model_dir, tmp_path / "default")
    export_onnx(d, d, quantize=True)
    (d / FP32_FILE).unlink()  # the shipped folder holds only the int8 file
    monkeypatch.setattr(model.commands, "DEFAULT_MODEL_DIR", d)
    return d


@pytest.mark.parametrize("args", [
    ["export-onnx", "--no-quantize"],
    ["export-onnx"],
    ["export-onnx", "--model", "{shipped}"],
    ["export-onnx", "--model", "{shipped}", "--out", "{shipped}/."],
])
def test_export_onnx_never_writes_into_the_shipped_model(shipped, args):
    before = fingerprint(shipped)
    result = CliRunner().invoke(app, [a.format(shipped=shipped) for a in args])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: export-onnx does not write into the shipped model ({shipped})")
    assert "pass --out DIR for an ONNX-only copy of it" in result.stderr
    assert fingerprint(shipped) == before
    assert (shipped / INT8_FILE).is_file()


def test_export_onnx_of_the_shipped_model_writes_a_new_folder_and_says_where(shipped, tmp_path):
    before = fingerprint(shipped)
    out = tmp_path / "onnx-copy"
    result = CliRunner().invoke(app, ["export-onnx", "--no-quantize", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"ONNX-only model folder: {out} (use it with --model {out})" in result.stderr
    assert fingerprint(shipped) == before
    assert (out / FP32_FILE).is_file() and not (out / INT8_FILE).exists()
    assert not any((out / f).exists() for f in SAFE_WEIGHTS)


@pytest.fixture(scope="module")
def onnx_only(spread_model_dir, tmp_path_factory):
    """What the README's `zhenping export-onnx --model DIR --out DIR` makes: no torch weights."""
    out = tmp_path_factory.mktemp("onnx-only") / "model"
    result = CliRunner().invoke(app, ["export-onnx", "--model", str(spread_model_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert not any((out / f).exists() for f in SAFE_WEIGHTS)
    return out


def test_auto_backend_loads_an_onnx_only_folder(onnx_only, spread_scorer):
    s = Scorer.from_pretrained(onnx_only, backend="auto")
    assert s.backend == "onnx" and s._runner.path.name == INT8_FILE
    fp32 = Scorer.from_pretrained(onnx_only, backend="auto", onnx_file=FP32_FILE)
    assert fp32.backend == "onnx" and parity(spread_scorer, fp32, TINY_TEXTS)["max_abs"] < 1e-4
    # torch, asked for by name, still names what is missing.
    with pytest.raises(ValueError, match=r"missing model weights \(model.safetensors\)"):
        Scorer.from_pretrained(onnx_only, backend="torch")


def test_score_command_on_an_onnx_only_folder(onnx_only, tmp_path):
    src = tmp_path / "two.txt"
    src.write_text("沙发\n谢谢分享,挺有用的\n", encoding="utf-8")
    out = tmp_path / "two.jsonl"
    result = CliRunner().invoke(app, ["score", str(src), "--model", str(onnx_only), "-o", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "(onnx)" in result.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in rows] == ["沙发", "谢谢分享,挺有用的"]


def test_serve_on_an_onnx_only_folder(onnx_only, tmp_path):
    server = start_server(onnx_only, tmp_path / "serve.log", {"ZHENPING_CAMPAIGN": "false"})
    try:
        info = httpx.get(f"{server.base_url}/info", timeout=10).json()
        assert info["backend"] == "onnx", info
        r = httpx.post(f"{server.base_url}/v1/score", json={"comments": [{"text": "沙发"}]}, timeout=30)
        assert r.status_code == 200, r.text
        assert 0.0 <= r.json()["results"][0]["warmth"] <= 1.0
    finally:
        server.stop()
