"""Scorer: loading (and every way it can fail), scoring, batching, normalisation."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from zhenping.model import DEFAULT_MODEL_DIR, CommentScores, ModelLoadError, Scorer
from zhenping.model.axes import AXES
from zhenping.model.normalize import normalize_text
from zhenping.model.scorer import pad_batch, plan_batches
from tests.helpers import BATCHING_TOL, TINY_TEXTS


def as_array(scores: list[CommentScores]) -> np.ndarray:
    return np.array([dataclasses.astuple(s) for s in scores], dtype=np.float64)


def close(a: CommentScores, b: CommentScores, tol: float = 1e-6) -> bool:
    """Equal up to float rounding (rows of one batch can take different kernels)."""
    return bool(np.abs(np.subtract(dataclasses.astuple(a), dataclasses.astuple(b))).max() <= tol)


def copy_dir(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------ CommentScores


def test_comment_scores_levels_and_dict():
    s = CommentScores(warmth=0.9, substance=0.1, template=0.5)
    assert s.levels == {"warmth": 3, "substance": 0, "template": 2}
    assert s.as_dict() == {"warmth": 0.9, "substance": 0.1, "template": 0.5}
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.warmth = 0.1  # type: ignore[misc]


# ------------------------------------------------------------------------ loading


def test_loads_and_describes_itself(spread_scorer, spread_model_dir):
    s = spread_scorer
    assert s.axes == AXES
    assert s.max_length == 64
    assert s.model_version == "spread-test"
    assert s.model_id == spread_model_dir.name
    assert s.model_dir == spread_model_dir
    assert s.backend == "torch"
    assert s.config["axes"] == list(AXES)
    assert s._runner.model.training is False


def test_default_model_missing_is_explained(monkeypatch, tmp_path):
    monkeypatch.setattr("zhenping.model.scorer.DEFAULT_MODEL_DIR", tmp_path / "default")
    with pytest.raises(ModelLoadError) as err:
        Scorer.from_pretrained()
    msg = str(err.value)
    assert msg.startswith("no default model is installed")
    assert str(tmp_path / "default") in msg
    assert "--model DIR" in msg
    assert DEFAULT_MODEL_DIR.name == "default"


@pytest.mark.parametrize(
    ("remove", "named"),
    [
        (["config.json"], "config.json"),
        (["scorer_config.json"], "scorer_config.json"),
        (["model.safetensors"], "model weights (model.safetensors)"),
        (["tokenizer.json", "vocab.txt"], "tokenizer (tokenizer.json or vocab.txt)"),
    ],
)
def test_missing_file_is_named(tiny_model_dir, tmp_path, remove, named):
    d = copy_dir(tiny_model_dir, tmp_path / "m")
    for f in remove:
        (d / f).unlink()
    with pytest.raises(ValueError) as err:
        Scorer.from_pretrained(d)
    assert str(err.value) == f"model directory {d} is incomplete: missing {named}"


def test_every_missing_file_is_named_at_once(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    with pytest.raises(ValueError) as err:
        Scorer.from_pretrained(d)
    assert str(err.value) == (
        f"model directory {d} is incomplete: missing config.json, scorer_config.json, "
        "model weights (model.safetensors), tokenizer (tokenizer.json or vocab.txt)"
    )


def test_nonexistent_path_and_file_path(tmp_path, tiny_model_dir):
    with pytest.raises(ModelLoadError, match="does not exist"):
        Scorer.from_pretrained(tmp_path / "nope")
    with pytest.raises(ModelLoadError, match="is a file; expected a model directory"):
        Scorer.from_pretrained(tiny_model_dir / "config.json")


def test_bad_arguments(tiny_model_dir):
    with pytest.raises(ValueError, match="backend must be one of \\['torch', 'onnx', 'auto'\\], got 'tf'"):
        Scorer.from_pretrained(tiny_model_dir, backend="tf")
    with pytest.raises(ValueError, match="num_threads must be a positive int or None, got 0"):
        Scorer.from_pretrained(tiny_model_dir, num_threads=0)


def test_pickle_weights_refused_unless_allowed(spread_model_dir, spread_scorer, tmp_path):
    import torch
    from safetensors.torch import load_file

    d = copy_dir(spread_model_dir, tmp_path / "m")
    torch.save(load_file(d / "model.safetensors"), d / "pytorch_model.bin")
    (d / "model.safetensors").unlink()
    with pytest.raises(ValueError) as err:
        Scorer.from_pretrained(d)
    msg = str(err.value)
    assert "pytorch_model.bin holds pickle weights, which are refused" in msg
    assert "unpickling can run arbitrary code" in msg
    assert "allow_pickle=True" in msg
    trusted = Scorer.from_pretrained(d, allow_pickle=True)
    np.testing.assert_allclose(
        as_array(trusted.score(TINY_TEXTS)), as_array(spread_scorer.score(TINY_TEXTS)), atol=1e-6
    )


@pytest.mark.parametrize("name", ["config.json", "scorer_config.json"])
def test_corrupt_json_is_named(tiny_model_dir, tmp_path, name):
    d = copy_dir(tiny_model_dir, tmp_path / "m")
    (d / name).write_text('{"axes": ["warmth", ', encoding="utf-8")
    with pytest.raises(ValueError) as err:
        Scorer.from_pretrained(d)
    assert str(err.value).startswith(f"{d / name} is not valid JSON (line 1, column ")


def test_corrupt_weights_are_named(tiny_model_dir, tmp_path):
    d = copy_dir(tiny_model_dir, tmp_path / "m")
    (d / "model.safetensors").write_bytes(b"\x00\x01 not a tensor file")
    with pytest.raises(ValueError) as err:
        Scorer.from_pretrained(d)
    assert str(err.value).startswith(f"{d / 'model.safetensors'} is not a readable safetensors file: ")


def test_weights_without_head_are_refused(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    d = copy_dir(tiny_model_dir, tmp_path / "m")
    tensors = {k: v for k, v in load_file(d / "model.safetensors").items() if not k.startswith("classifier")}
    save_file(tensors, d / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match=r"do not fit its config: missing \['classifier.bias', 'classifier.weight'\]"):
        Scorer.from_pretrained(d)


def test_axes_must_match_label_order(tiny_model_dir, tmp_path):
    d = copy_dir(tiny_model_dir, tmp_path / "m")
    cfg = json.loads((d / "scorer_config.json").read_text(encoding="utf-8"))
    cfg["axes"] = ["substance", "warmth", "template"]
    (d / "scorer_config.json").write_text(json.dumps(cfg), encoding="utf-8")
    with pytest.raises(ModelLoadError) as err:
        Scorer.from_pretrained(d)
    assert str(err.value) == (
        f"config.json of {d}: id2label order ['warmth', 'substance', 'template'] does not match "
        "scorer_config.json axes ['substance', 'warmth', 'template']"
    )
    cfg["axes"] = ["warmth", "substance"]
    (d / "scorer_config.json").write_text(json.dumps(cfg), encoding="utf-8")
    with pytest.raises(ModelLoadError, match=r"axes must be \['warmth', 'substance', 'template'\] in some order"):
        Scorer.from_pretrained(d)


def test_max_length_beyond_position_embeddings(tiny_model_dir, tmp_path):
    d = copy_dir(tiny_model_dir, tmp_path / "m")
    cfg = json.loads((d / "scorer_config.json").read_text(encoding="utf-8"))
    cfg["max_length"] = 512
    (d / "scorer_config.json").write_text(json.dumps(cfg), encoding="utf-8")
    with pytest.raises(ModelLoadError, match=r"max_length 512 is more than the 66 tokens this model has positions for \(its max_position_embeddings is 66\)"):
        Scorer.from_pretrained(d)


def test_max_length_given_at_load_replaces_the_exports(tiny_model_dir):
    base = Scorer.from_pretrained(tiny_model_dir)
    assert base.max_length == 64
    text = "质量很好物流很快" * 4  # 32 characters: 34 tokens with [CLS] and [SEP]
    short = Scorer.from_pretrained(tiny_model_dir, max_length=16)
    assert short.max_length == 16 and short.config["max_length"] == 16
    assert base.config["max_length"] == 64  # the export's own config is untouched
    assert len(short._encode([text])[0]) == 16
    cut, whole = short.score([text])[0], base.score([text])[0]
    assert cut.truncated and not whole.truncated
    assert close(cut, base.score(["质量很好物流很快质量很"])[0], tol=BATCHING_TOL)  # 14 characters + 2 = 16 tokens
    assert Scorer.from_pretrained(tiny_model_dir, max_length=66).max_length == 66  # every position it has


@pytest.mark.parametrize("value, message", [
    (67, "max_length 67 is more than the 66 tokens this model has positions for"),
    (1, "max_length must be an int of at least 2 or None, got 1"),
    (True, "max_length must be an int of at least 2 or None, got True"),
    ("128", "max_length must be an int of at least 2 or None, got '128'"),
])
def test_max_length_given_at_load_is_checked(tiny_model_dir, value, message):
    with pytest.raises(ValueError, match=message):
        Scorer.from_pretrained(tiny_model_dir, max_length=value)


def test_roberta_positions_start_after_the_padding_id(tmp_path):
    from transformers import RobertaConfig

    from zhenping.model.scorer import _position_limit

    assert _position_limit(RobertaConfig(max_position_embeddings=514, pad_token_id=1)) == 512
    assert _position_limit(RobertaConfig(max_position_embeddings=514, pad_token_id=0)) == 513


def test_vocab_txt_alone_is_a_tokenizer(tiny_model_dir, tmp_path):
    d = copy_dir(tiny_model_dir, tmp_path / "m")
    # A plain BERT vocabulary, as older exports and other tools write it.
    (d / "tokenizer.json").unlink()
    (d / "tokenizer_config.json").unlink()
    s = Scorer.from_pretrained(d)
    assert len(s.score(["好评", "質量很好"])) == 2


def test_num_threads_is_applied(tiny_model_dir):
    import torch

    before = torch.get_num_threads()
    try:
        Scorer.from_pretrained(tiny_model_dir, num_threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------- Hub


def _fake_hub_cache(cache: Path, repo_id: str, src: Path, without: tuple[str, ...] = ()) -> None:
    """Lay out ``src`` as the Hugging Face cache holds a downloaded repository."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in src.iterdir():
        if f.name not in without:
            shutil.copyfile(f, snap / f.name)
    # What the cache records when the Hub answered "no such file".
    for name in without:
        (repo / ".no_exist" / commit).mkdir(parents=True, exist_ok=True)
        (repo / ".no_exist" / commit / name).touch()


@pytest.fixture
def offline(monkeypatch):
    """HF_HUB_OFFLINE=1 for this test: no request leaves the machine."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def test_hub_id_offline_and_not_cached_is_a_clean_error(offline, tmp_path):
    with pytest.raises(ModelLoadError) as err:
        Scorer.from_pretrained("zhenping-test/not-cached", cache_dir=tmp_path)
    msg = str(err.value)
    assert msg.startswith("could not fetch 'zhenping-test/not-cached' from the Hugging Face Hub")
    assert "HF_HUB_OFFLINE=1" in msg


def test_hub_scorer_loads_from_cache(offline, tmp_path, spread_model_dir, spread_scorer):
    _fake_hub_cache(tmp_path, "zhenping-test/scorer", spread_model_dir)
    s = Scorer.from_pretrained("zhenping-test/scorer", cache_dir=tmp_path)
    assert s.model_id == "zhenping-test/scorer"
    assert s.model_dir is None
    np.testing.assert_allclose(as_array(s.score(TINY_TEXTS)), as_array(spread_scorer.score(TINY_TEXTS)), atol=1e-6)


def test_hub_plain_checkpoint_is_refused(offline, tmp_path, tiny_model_dir):
    _fake_hub_cache(tmp_path, "someone/chinese-bert", tiny_model_dir, without=("scorer_config.json",))
    with pytest.raises(ModelLoadError) as err:
        Scorer.from_pretrained("someone/chinese-bert", cache_dir=tmp_path)
    msg = str(err.value)
    assert msg.startswith("'someone/chinese-bert' on the Hugging Face Hub has no scorer_config.json")
    assert "no trained warmth/substance/template head" in msg


def test_hub_missing_scorer_config_online_is_refused(monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError

    def not_there(repo_id, filename, **kw):
        raise EntryNotFoundError(f"{filename} not found in {repo_id}")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", not_there)
    with pytest.raises(ModelLoadError, match="has no scorer_config.json, so it is not a zhenping scorer"):
        Scorer.from_pretrained("google-bert/bert-base-chinese")


def test_hub_id_with_onnx_backend_is_refused():
    with pytest.raises(ModelLoadError, match="backend='onnx' needs a local model directory"):
        Scorer.from_pretrained("zhenping-test/scorer", backend="onnx")


# ------------------------------------------------------------------------ scoring


def test_scores_shape_order_and_range(spread_scorer):
    scores = spread_scorer.score(TINY_TEXTS)
    assert len(scores) == len(TINY_TEXTS)
    assert all(isinstance(s, CommentScores) for s in scores)
    arr = as_array(scores)
    assert ((arr > 0) & (arr < 1)).all()
    assert all(type(v) is float for s in scores for v in dataclasses.astuple(s))
    # Texts score differently, so order can be checked: each text alone gives its own row.
    assert arr.std(axis=0).min() > 0.01
    for i in (0, 7, len(TINY_TEXTS) - 1):
        np.testing.assert_allclose(as_array(spread_scorer.score([TINY_TEXTS[i]]))[0], arr[i], atol=BATCHING_TOL)


def test_scores_are_deterministic(spread_scorer):
    assert spread_scorer.score(TINY_TEXTS) == spread_scorer.score(TINY_TEXTS)


def test_empty_input_and_empty_text(spread_scorer):
    assert spread_scorer.score([]) == []
    assert spread_scorer.score(()) == []
    blank, spaces = spread_scorer.score(["", " \u200b\t "])
    assert close(blank, spaces)  # both normalise to "" and the model sees [CLS] [SEP]
    assert 0 < blank.warmth < 1
    assert spread_scorer._encode([""]) == [[2, 3]]


def test_bare_string_and_non_strings_are_type_errors(spread_scorer):
    with pytest.raises(TypeError, match=r"texts must be a sequence of str, got a bare str; wrap a single comment in a list"):
        spread_scorer.score("好评")
    with pytest.raises(TypeError, match=r"texts\[2\] must be str, got int: 3"):
        spread_scorer.score(["a", "b", 3])
    with pytest.raises(TypeError, match=r"texts\[0\] must be str, got NoneType"):
        spread_scorer.score_normalized([None])
    with pytest.raises(TypeError, match="texts must be a sequence of str, got int"):
        spread_scorer.score(5)


@pytest.mark.parametrize(("kw", "msg"), [
    ({"batch_size": 0}, "batch_size must be > 0, got 0"),
    ({"batch_size": 2.0}, "batch_size must be > 0, got 2.0"),
    ({"max_tokens": 0}, "max_tokens must be > 0 or None, got 0"),
])
def test_batching_arguments_are_checked(spread_scorer, kw, msg):
    with pytest.raises(ValueError, match=msg):
        spread_scorer.score(["a"], **kw)


def test_batching_does_not_change_scores(spread_scorer):
    texts = TINY_TEXTS + ["好評" * 200, ""]
    ref = as_array(spread_scorer.score(texts, batch_size=1))
    for kw in ({"batch_size": 32}, {"batch_size": 3}, {"batch_size": 32, "max_tokens": 40}):
        np.testing.assert_allclose(as_array(spread_scorer.score(texts, **kw)), ref, atol=BATCHING_TOL)
    # Internally sorted by length; the answer follows the caller's order.
    np.testing.assert_allclose(as_array(spread_scorer.score(texts[::-1]))[::-1], ref, atol=BATCHING_TOL)


def test_long_text_is_truncated_at_max_length(spread_scorer):
    long = "质量很好物流很快" * 625  # 5,000 characters
    assert len(spread_scorer._encode([long])[0]) == spread_scorer.max_length
    a, b = spread_scorer.score([long, long + "你脑子有病吧" * 10])
    assert close(a, b)  # what follows the first max_length tokens is not seen
    assert a.truncated and b.truncated
    fits = "质量很好" * ((spread_scorer.max_length - 2) // 4)  # max_length tokens or fewer, [CLS] and [SEP] included
    short, whole = spread_scorer.score(["质量很好", fits])
    assert not short.truncated and not whole.truncated
    assert a.with_level_thresholds(None).truncated  # carried along; equality still sees the scores only
    assert a == dataclasses.replace(a)


def test_normalisation_is_applied(spread_scorer):
    simplified = "质量很好,物流很快"
    traditional = "質量很好，物流很快"  # traditional characters, full-width comma
    assert normalize_text(traditional) == simplified
    a, b = spread_scorer.score([simplified, traditional])
    assert close(a, b)
    # score_normalized trusts its caller: the raw traditional text reads differently.
    (raw,) = spread_scorer.score_normalized([traditional])
    assert not close(raw, a, tol=1e-3)
    assert close(spread_scorer.score_normalized([simplified])[0], a)


def test_matches_a_plain_transformers_pipeline(spread_scorer, spread_model_dir):
    from transformers import pipeline

    texts = [normalize_text(t) for t in TINY_TEXTS]
    clf = pipeline(
        "text-classification", model=str(spread_model_dir), function_to_apply="sigmoid", top_k=None, device="cpu"
    )
    expected = np.array([[{d["label"]: d["score"] for d in row}[a] for a in AXES] for row in clf(texts)])
    np.testing.assert_allclose(as_array(spread_scorer.score(texts)), expected, atol=BATCHING_TOL)


# ------------------------------------------------------------------------ helpers


def test_plan_batches_sorts_and_caps():
    assert plan_batches([5, 1, 3, 2], batch_size=2) == [[1, 3], [2, 0]]
    assert plan_batches([], batch_size=4) == []
    # 3 texts of 10 tokens fit a 30-token budget, the 4th does not.
    assert plan_batches([10, 10, 10, 10], batch_size=8, max_tokens=30) == [[0, 1, 2], [3]]
    # A text longer than the budget still goes, alone.
    assert plan_batches([2, 50], batch_size=8, max_tokens=10) == [[0], [1]]


def test_pad_batch():
    ids, mask = pad_batch([[2, 7, 3], [2, 3]], pad_id=0)
    assert ids.tolist() == [[2, 7, 3], [2, 3, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 1, 0]]
    assert ids.dtype == np.int64 and mask.dtype == np.int64
