"""The package under its own name only: installed, editable, or a checkout on the path.

zhenping installs its code as ``zhenping.model``, ``zhenping.api`` and ``zhenping.training``
(the repository keeps the folders ``model/``, ``api/``, ``training/``). A user's folder that
holds its own ``model.py``, ``api/`` package and ``training.py`` must neither shadow zhenping
nor be shadowed by it. Each install goes into a fresh virtual environment that reuses this
environment's libraries (``--system-site-packages``, ``--no-deps --no-build-isolation``), so
nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import copy_package_sources

ROOT = Path(__file__).resolve().parents[2]

CHECK = """
import json, sys
from zhenping import Scorer
import zhenping, zhenping.model, zhenping.api.main, zhenping.training.store
from zhenping.model import DEFAULT_MODEL_DIR
import model, api, training
print(json.dumps({
    "zhenping": zhenping.__file__, "zhenping.model": zhenping.model.__file__,
    "zhenping.api.main": zhenping.api.main.__file__, "zhenping.training.store": zhenping.training.store.__file__,
    "scorer_module": Scorer.__module__, "model_dir": str(DEFAULT_MODEL_DIR),
    "shipped": (DEFAULT_MODEL_DIR / "scorer_config.json").is_file(),
    "user": [model.VALUE, api.NAME, training.VALUE],
    "generic": sorted(m for m in ("model.scorer", "api.main", "training.store") if m in sys.modules),
}))
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZHENPING_", "PYTHONPATH", "VIRTUAL_ENV"))}
    env.update({"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                "OMP_NUM_THREADS": "1", **extra})
    return env


def _user_folder(path: Path) -> Path:
    """A project of the user's own: ``model.py``, an ``api`` package, ``training.py``."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "model.py").write_text("VALUE = 1\n", encoding="utf-8")
    (path / "api").mkdir(exist_ok=True)
    (path / "api" / "__init__.py").write_text("NAME = 'theirs'\n", encoding="utf-8")
    (path / "training.py").write_text("VALUE = 3\n", encoding="utf-8")
    return path


def _copy_sources(dst: Path) -> Path:
    return copy_package_sources(dst)


def _venv(tmp: Path, *pip_args: str) -> Path:
    env_dir = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(env_dir)],
                   check=True)
    python = env_dir / "bin" / "python"
    built = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                            *pip_args], capture_output=True, text=True, timeout=900, env=_env(), cwd=tmp)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-3000:]
    return python


def _check(python: Path | str, cwd: Path, **env: str) -> dict:
    run = subprocess.run([str(python), "-c", CHECK], cwd=cwd, env=_env(**env), capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def _assert_ours(found: dict, where: Path) -> None:
    for key in ("zhenping", "zhenping.model", "zhenping.api.main", "zhenping.training.store", "model_dir"):
        assert found[key].startswith(str(where)), (key, found[key], where)
    assert found["scorer_module"] == "zhenping.model.scorer"
    assert found["shipped"], found["model_dir"]
    assert found["user"] == [1, "theirs", 3]  # the user's own modules, untouched
    assert found["generic"] == []  # zhenping loaded nothing under the generic names


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("regular")
    src = _copy_sources(tmp / "src")
    return _venv(tmp, str(src))


@pytest.mark.slow
def test_regular_install_imports_beside_a_local_model_py(wheel_venv, tmp_path):
    venv = wheel_venv.parent.parent
    found = _check(wheel_venv, _user_folder(tmp_path / "project"))
    _assert_ours(found, venv)
    assert "site-packages" in found["zhenping.model"] and "/zhenping/model/" in found["zhenping.model"]


@pytest.mark.slow
def test_regular_install_puts_nothing_at_the_top_level(wheel_venv):
    venv = wheel_venv.parent.parent
    records = list(venv.glob("lib/python*/site-packages/zhenping-*.dist-info/RECORD"))
    assert len(records) == 1, records
    tops = {line.split("/", 1)[0] for line in records[0].read_text(encoding="utf-8").splitlines() if line}
    assert "zhenping" in tops and not {"model", "api", "training"} & tops, tops
    shipped = [line.split(",")[0] for line in records[0].read_text(encoding="utf-8").splitlines()]
    assert "zhenping/model/default/scorer_config.json" in shipped
    assert "zhenping/training/configs/gpu_teacher.toml" in shipped
    assert "zhenping/api/static/index.html" in shipped


@pytest.mark.slow
def test_regular_install_runs_a_training_module_and_the_command(wheel_venv, tmp_path):
    cwd = _user_folder(tmp_path / "project")
    run = subprocess.run([str(wheel_venv), "-m", "zhenping.training.gpu_teacher", "--help"], cwd=cwd, env=_env(),
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and "--config" in run.stdout, run.stderr[-3000:]
    run = subprocess.run([str(wheel_venv.parent / "zhenping"), "--help"], cwd=cwd, env=_env(COLUMNS="200"),
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and " score " in run.stdout, run.stderr[-3000:]


@pytest.mark.slow
def test_editable_install_imports_beside_a_local_model_py(tmp_path):
    src = _copy_sources(tmp_path / "src")
    python = _venv(tmp_path, "-e", str(src))
    found = _check(python, _user_folder(tmp_path / "project"))
    _assert_ours(found, src)
    assert found["zhenping.model"] == str(src / "model" / "__init__.py")
    # An edit in the checkout shows without reinstalling.
    (src / "model" / "axes.py").write_text((src / "model" / "axes.py").read_text(encoding="utf-8")
                                           + "\nEDITED = True\n", encoding="utf-8")
    run = subprocess.run([str(python), "-c", "from zhenping.model.axes import EDITED; print(EDITED)"],
                         cwd=tmp_path / "project", env=_env(), capture_output=True, text=True, timeout=300)
    assert run.stdout.strip() == "True", run.stderr[-3000:]


def test_checkout_on_the_path_imports_beside_a_local_model_py(tmp_path):
    found = _check(sys.executable, _user_folder(tmp_path / "project"), PYTHONPATH=str(ROOT))
    _assert_ours(found, ROOT)
    assert found["zhenping.model"] == str(ROOT / "model" / "__init__.py")


@pytest.mark.parametrize("module", ["zhenping.training.gpu_teacher", "training.gpu_teacher"])
def test_a_bare_checkout_runs_training_modules(module):
    """The GPU machine runs the teacher from a plain checkout with no install (new and old form)."""
    run = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, env=_env(), capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0 and "--config" in run.stdout, run.stderr[-3000:]


def test_a_baseline_saved_under_the_old_module_names_loads(tmp_path, monkeypatch):
    import pickle

    import joblib
    import numpy as np

    import zhenping.training
    from zhenping.training import baselines
    from zhenping.training.baselines import TfidfRidgeBaseline

    texts = ["物流很快质量不错", "客服态度差", "谢谢分享", "房间干净早餐一般", "隔音差会回购", "性价比高"] * 3
    scores = np.random.default_rng(0).random((len(texts), 3))
    model = TfidfRidgeBaseline(alphas=(1.0,), min_df=1).fit(texts, scores)
    expected = model.predict(["物流很快"])
    # Write it as a checkout from before the move did: the class under ``training.baselines``.
    with monkeypatch.context() as m:
        m.setattr(TfidfRidgeBaseline, "__module__", "training.baselines")
        m.setitem(sys.modules, "training", zhenping.training)
        m.setitem(sys.modules, "training.baselines", baselines)
        joblib.dump({"format": "zhenping-tfidf-ridge-v1", "model": model}, tmp_path / "old.joblib")
    assert b"training.baselines" in (tmp_path / "old.joblib").read_bytes()
    assert b"zhenping.training" not in (tmp_path / "old.joblib").read_bytes()
    assert "training" not in sys.modules or sys.modules["training"] is not zhenping.training
    before = {k: sys.modules.get(k) for k in ("training", "training.baselines")}

    loaded = TfidfRidgeBaseline.load(tmp_path / "old.joblib")
    assert type(loaded) is TfidfRidgeBaseline
    assert np.allclose(loaded.predict(["物流很快"]), expected)
    assert {k: sys.modules.get(k) for k in ("training", "training.baselines")} == before
    # A new file names the new module.
    model.save(tmp_path / "new.joblib")
    assert b"zhenping.training.baselines" in (tmp_path / "new.joblib").read_bytes()
    assert type(pickle.loads(pickle.dumps(model))) is TfidfRidgeBaseline
