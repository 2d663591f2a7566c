"""Two reference models every fine-tuned model must beat (``zhenping baselines``).

* **rules**: stock-phrase, insult and warm-phrase lexicons
  (``model/lexicon/*.txt``) plus length and repetition heuristics, combined with
  fixed hand-set weights into one raw score per axis; the only thing fitted is a
  linear map from raw score to [0, 1] per axis on the training split.
* **tfidf_ridge**: character 1-3-gram TF-IDF of the normalised text with one
  ridge regression per axis on the score, ``alpha`` chosen per axis by
  validation Spearman ρ, predictions clipped to [0, 1].

Both are measured with :func:`zhenping.training.evaluate.evaluate` on the prepared
validation and test splits; the results go to ``training/results/baselines.json``
and ``baselines.md``, the fitted models to ``runs/baselines/``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from zhenping.model.axes import AXES
from zhenping.model.lexicons import LEXICON_DIR, STOCK_PHRASES, TONE_PHRASES, load_lexicon  # noqa: F401 - re-exported
from zhenping.model.normalize import normalize_text

DEFAULT_RESULTS = Path("training/results")
DEFAULT_MODELS = Path("runs/baselines")
RIDGE_ALPHAS = (0.3, 1.0, 3.0, 10.0, 30.0)  # searched per axis on validation
NGRAMS = (1, 3)  # character n-gram range
MIN_DF = 2  # n-grams seen in fewer training texts are dropped

STOCK_CATEGORIES = ("filler", "forward", "stock_praise", "review", "ad", "slogan", "buzzword",
                    "ai_phrase")


# ------------------------------------------------------------------ lexicons


@lru_cache(maxsize=None)
def _lexicons(stock: str, tone: str) -> tuple[dict, dict]:
    return load_lexicon(stock), load_lexicon(tone)


# ------------------------------------------------------------------ features

_PUNCT_CATS = ("P", "S", "Z")
_BRACKET_EMOTE = re.compile(r"\[[^\[\]\s]{1,8}\]")  # platform emoticons: [doge], [心]
_MENTION = re.compile(r"@[^\s@,:;!?，。:]{1,30}")
_URL = re.compile(r"https?://\S+|www\.\S+", re.IGNORECASE)
_CLAUSE = re.compile(r"[,.!?;:，。！？；：、\n]+")
_DETAIL = re.compile(r"\d|[a-zA-Z]{2,}")


def _is_emoji(ch: str) -> bool:
    cp = ord(ch)
    return cp >= 0x1F000 or 0x2600 <= cp <= 0x27BF or unicodedata.category(ch) == "So"


def _coverage(text: str, phrases: Sequence[str], covered: list[bool], core: str) -> int:
    """Mark the characters of ``text`` inside any of ``phrases``; return the hit count.

    A one-character phrase counts only when the comment's core (letters and
    digits) is that character, possibly repeated.
    """
    hits = 0
    for ph in phrases:
        if len(ph) == 1:
            if core and set(core) == {ph}:
                hits += 1
                for i, ch in enumerate(text):
                    if ch == ph:
                        covered[i] = True
            continue
        start = text.find(ph)
        while start != -1:
            hits += 1
            for i in range(start, start + len(ph)):
                covered[i] = True
            start = text.find(ph, start + len(ph))
    return hits


@dataclass(frozen=True)
class TextFeatures:
    """What the rules look at in one normalised comment."""

    length: int  # characters, white space excluded; a bracket emoticon counts as one
    core_length: int  # letters and digits only (CJK counts as letters)
    clauses: int
    distinct_ratio: float  # distinct characters / characters
    repeated_bigrams: float  # 1 - distinct bigrams / bigrams
    run_share: float  # share of characters in runs of 3+ of one character
    emoji_share: float  # emoji and bracket emoticons, share of characters
    stock_coverage: float  # share of core characters inside stock phrases
    stock_hits: dict = field(default_factory=dict)  # category -> hits
    tone_hits: dict = field(default_factory=dict)  # category -> hits
    mention_only: bool = False  # nothing but @mentions / URLs / emoticons
    details: int = 0  # digits and Latin words: sizes, prices, models, dates
    urls: int = 0
    hashtags: int = 0  # #topic# tags
    first_person: int = 0  # 我 / 我们: the writer speaking of themselves


_EMOTE_MARK = "\u2b50"  # stands in for one bracket emoticon while measuring
_HASHTAG = re.compile(r"#[^#\s]{1,30}#")


def text_features(
    norm: str, stock: Mapping[str, Sequence[str]], tone: Mapping[str, Sequence[str]]
) -> TextFeatures:
    """Features of one comment already passed through :func:`normalize_text`."""
    text = norm.lower()
    urls = len(_URL.findall(text))
    stripped = _BRACKET_EMOTE.sub("", _URL.sub("", _MENTION.sub("", text)))
    mention_only = bool(text.strip()) and not any(c.isalnum() for c in stripped) and (
        "@" in text or urls > 0 or _BRACKET_EMOTE.search(text) is not None
    )
    # Shape measures see an emoticon like [doge] as one symbol, not six letters.
    shape = _BRACKET_EMOTE.sub(_EMOTE_MARK, _URL.sub("", text))
    chars = [c for c in shape if not c.isspace()]
    n = len(chars)
    core = "".join(c for c in shape if c.isalnum())
    emoji = sum(1 for c in chars if _is_emoji(c))
    runs = 0
    i = 0
    while i < n:
        j = i
        while j < n and chars[j] == chars[i]:
            j += 1
        if j - i >= 3:
            runs += j - i
        i = j
    squeezed = "".join(chars)
    bigrams = [squeezed[k:k + 2] for k in range(len(squeezed) - 1)]
    rep_bi = 1 - len(set(bigrams)) / len(bigrams) if len(bigrams) >= 4 else 0.0

    covered = [False] * len(text)
    stock_hits = {c: _coverage(text, stock.get(c, ()), covered, core) for c in STOCK_CATEGORIES}
    core_idx = [k for k, c in enumerate(text) if c.isalnum()]
    stock_cov = (sum(covered[k] for k in core_idx) / len(core_idx)) if core_idx else 0.0
    scratch = [False] * len(text)
    tone_hits = {c: _coverage(text, p, scratch, core) for c, p in tone.items()}
    plain = _BRACKET_EMOTE.sub("", _URL.sub("", _MENTION.sub("", text)))
    return TextFeatures(
        length=n,
        core_length=len(core),
        clauses=len([c for c in _CLAUSE.split(plain) if c.strip()]),
        distinct_ratio=len(set(chars)) / n if n else 0.0,
        repeated_bigrams=rep_bi,
        run_share=runs / n if n else 0.0,
        emoji_share=emoji / n if n else 0.0,
        stock_coverage=stock_cov,
        stock_hits=stock_hits,
        tone_hits=tone_hits,
        mention_only=mention_only,
        details=len(_DETAIL.findall(plain)),
        urls=urls,
        hashtags=len(_HASHTAG.findall(text)),
        first_person=plain.count("我"),
    )


def _clip(x: float) -> float:
    return 0.0 if x < 0 else 1.0 if x > 1 else x


def rule_scores(f: TextFeatures) -> tuple[float, float, float]:
    """Raw (warmth, substance, template) in [0, 1] from hand-set rules.

    The weights encode the annotation guidelines: stock phrases, repetition,
    emoji walls, ads, links, hashtags and buzzword stacks make a comment
    template-like; length, several clauses and concrete details (numbers,
    names) give it substance; insults make it cold, and thanks, comfort and
    first-person disclosure warm.
    """
    h = f.stock_hits
    repetition = max(f.run_share, f.repeated_bigrams, 1 - f.distinct_ratio if f.length >= 6 else 0)
    empty = f.core_length == 0 or f.mention_only

    # template: generic text that could sit under any post
    t = 0.35 + 0.5 * f.stock_coverage + 0.45 * repetition + 0.5 * f.emoji_share
    if f.core_length <= 2:
        t += 0.3
    elif f.core_length <= 5:
        t += 0.18
    elif f.core_length <= 10:
        t += 0.06
    elif f.core_length > 60:
        t -= 0.2
    elif f.core_length > 25:
        t -= 0.1
    t += 0.3 * min(2, h["ad"]) + 0.35 * min(1, h["forward"])
    t += 0.12 * min(3, h["buzzword"]) + 0.04 * min(4, h["ai_phrase"])
    t += 0.1 * min(2, h["slogan"]) + 0.2 * min(1, f.urls) + 0.1 * min(2, f.hashtags)
    t -= 0.03 * min(4, f.details) + 0.03 * min(3, f.first_person)
    if empty:
        t = 1.0

    # substance: information a reader gains
    s = math.log1p(f.core_length) / math.log1p(150)
    s += 0.04 * min(6, f.clauses - 1) + 0.04 * min(5, f.details)
    s -= 0.45 * f.stock_coverage + 0.4 * repetition + 0.4 * f.emoji_share
    s -= 0.25 * min(1, h["ad"]) + 0.05 * min(3, h["buzzword"])
    if empty or f.core_length <= 2:
        s = 0.0

    # warmth: care toward people; neutral sits at level 1 (1/3)
    tone = f.tone_hits
    w = 0.36 + 0.12 * min(2, tone.get("warm", 0)) + 0.25 * min(2, tone.get("strong_warm", 0))
    w += 0.05 * min(1, h["stock_praise"]) + 0.04 * min(1, h["slogan"])
    w += 0.04 * min(3, f.first_person)
    w -= 0.3 * min(2, tone.get("insult", 0))
    return _clip(w), _clip(s), _clip(t)


class RulesBaseline:
    """Lexicon and heuristic scores, linearly calibrated per axis on training data.

    Example:
        >>> rules = RulesBaseline()
        >>> rules.predict(["沙发"]).shape
        (1, 3)
    """

    name = "rules"

    def __init__(self, stock_path: str | os.PathLike = STOCK_PHRASES,
                 tone_path: str | os.PathLike = TONE_PHRASES, axes: Sequence[str] = AXES):
        self.axes = tuple(axes)
        self.stock_path, self.tone_path = str(stock_path), str(tone_path)
        self.stock, self.tone = _lexicons(self.stock_path, self.tone_path)
        # score = clip(a * raw + b); identity until fitted
        self.calibration = {a: (1.0, 0.0) for a in self.axes}

    def raw(self, texts: Sequence[str]) -> np.ndarray:
        """Uncalibrated rule scores, shape ``(n, 3)`` in AXES order."""
        return np.array(
            [rule_scores(text_features(normalize_text(t), self.stock, self.tone)) for t in texts],
            dtype=np.float64,
        ).reshape(len(texts), 3)

    def _columns(self, raw: np.ndarray) -> np.ndarray:
        return raw[:, [AXES.index(a) for a in self.axes]]

    def fit(self, texts: Sequence[str], scores: np.ndarray) -> "RulesBaseline":
        """Least-squares ``a * raw + b`` per axis (a kept positive so ranks stay)."""
        raw = self._columns(self.raw(texts))
        for k, a in enumerate(self.axes):
            x, y = raw[:, k], scores[:, k]
            if np.ptp(x) == 0:
                self.calibration[a] = (0.0, float(np.mean(y)))
                continue
            slope, intercept = np.polyfit(x, y, 1)
            if slope <= 0:  # a rule that ranks backwards on this data: fall back to identity
                slope, intercept = 1.0, 0.0
            self.calibration[a] = (float(slope), float(intercept))
        return self

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        raw = self._columns(self.raw(texts))
        out = np.empty_like(raw)
        for k, a in enumerate(self.axes):
            slope, intercept = self.calibration[a]
            out[:, k] = np.clip(slope * raw[:, k] + intercept, 0.0, 1.0)
        return out

    def params(self) -> dict:
        return {
            "lexicons": {Path(self.stock_path).name: _sha1(self.stock_path),
                         Path(self.tone_path).name: _sha1(self.tone_path)},
            "phrases": {c: len(p) for c, p in {**self.stock, **self.tone}.items()},
            "calibration": {a: {"slope": round(s, 6), "intercept": round(i, 6)}
                            for a, (s, i) in self.calibration.items()},
        }


class TfidfRidgeBaseline:
    """Character n-gram TF-IDF with one ridge regression per axis.

    Example:
        >>> m = TfidfRidgeBaseline().fit(texts, y, val_texts, val_y)  # doctest: +SKIP
        >>> m.predict(["沙发"]).shape  # doctest: +SKIP
        (1, 3)
    """

    name = "tfidf_ridge"

    def __init__(self, axes: Sequence[str] = AXES, alphas: Sequence[float] = RIDGE_ALPHAS,
                 ngram_range: tuple[int, int] = NGRAMS, min_df: int = MIN_DF):
        if not alphas:
            raise ValueError("alphas must not be empty")
        self.axes = tuple(axes)
        self.alphas = tuple(alphas)
        self.ngram_range = tuple(ngram_range)
        self.min_df = min_df
        self.vectorizer = None
        self.models: dict = {}
        self.alpha: dict[str, float] = {}
        self.validation_spearman: dict[str, dict[str, float | None]] = {}

    def _vectorizer(self):
        from sklearn.feature_extraction.text import TfidfVectorizer

        return TfidfVectorizer(
            analyzer="char", ngram_range=self.ngram_range, min_df=self.min_df,
            sublinear_tf=True, lowercase=True, dtype=np.float32,
        )

    def fit(self, texts: Sequence[str], scores: np.ndarray,
            val_texts: Sequence[str] | None = None, val_scores: np.ndarray | None = None
            ) -> "TfidfRidgeBaseline":
        """Fit on training rows; pick each axis's alpha by validation Spearman ρ
        (the middle alpha when no validation rows are given)."""
        from scipy.stats import spearmanr
        from sklearn.linear_model import Ridge

        norm = [normalize_text(t) for t in texts]
        # min_df above the number of texts would leave no features on tiny data.
        self.vectorizer = self._vectorizer()
        if len(norm) < 2 * self.min_df:
            self.vectorizer.set_params(min_df=1)
        x = self.vectorizer.fit_transform(norm)
        xv = None
        if val_texts is not None and len(val_texts) >= 3:
            xv = self.vectorizer.transform([normalize_text(t) for t in val_texts])
        for k, a in enumerate(self.axes):
            y = scores[:, k]
            best = None
            self.validation_spearman[a] = {}
            for alpha in self.alphas:
                model = Ridge(alpha=alpha).fit(x, y)
                if xv is None:
                    continue
                pred = np.clip(model.predict(xv), 0, 1)
                rho = None
                if np.ptp(pred) > 0 and np.ptp(val_scores[:, k]) > 0:
                    rho = float(spearmanr(val_scores[:, k], pred).statistic)
                self.validation_spearman[a][str(alpha)] = None if rho is None else round(rho, 6)
                if rho is not None and (best is None or rho > best[0]):
                    best = (rho, alpha, model)
            if best is None:
                alpha = self.alphas[len(self.alphas) // 2]
                best = (None, alpha, Ridge(alpha=alpha).fit(x, y))
            self.alpha[a] = best[1]
            self.models[a] = best[2]
        return self

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        if self.vectorizer is None:
            raise RuntimeError("TfidfRidgeBaseline.predict called before fit")
        x = self.vectorizer.transform([normalize_text(t) for t in texts])
        return np.stack([np.clip(self.models[a].predict(x), 0, 1) for a in self.axes], axis=1)

    def params(self) -> dict:
        return {
            "ngram_range": list(self.ngram_range),
            "min_df": self.vectorizer.min_df if self.vectorizer is not None else self.min_df,
            "features": len(self.vectorizer.vocabulary_) if self.vectorizer is not None else 0,
            "alphas_searched": list(self.alphas),
            "alpha": dict(self.alpha),
            "validation_spearman_by_alpha": self.validation_spearman,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted model with joblib (a pickle: load only files you made)."""
        import joblib

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        joblib.dump({"format": "zhenping-tfidf-ridge-v1", "model": self}, tmp)
        os.replace(tmp, path)
        return path

    @staticmethod
    def load(path: str | os.PathLike) -> "TfidfRidgeBaseline":
        import joblib

        with _old_module_names():
            blob = joblib.load(path)
        if not isinstance(blob, dict) or blob.get("format") != "zhenping-tfidf-ridge-v1":
            raise ValueError(f"{path} is not a zhenping TF-IDF baseline file")
        return blob["model"]


@contextlib.contextmanager
def _old_module_names():
    """Let a baseline pickled before the code moved under ``zhenping`` load.

    Such a file names its classes under the old top-level packages (``training``,
    ``model``); while it loads, those names resolve to this package's modules
    (``zhenping.training.…``), and nothing sees them afterwards (a user's own
    ``training`` or ``model`` stays untouched).
    """
    import sys

    parts = __name__.split(".")  # zhenping.training.baselines
    if len(parts) < 3:  # imported under the old name itself: nothing to map
        yield
        return
    aliases = {}
    for name, module in list(sys.modules.items()):
        head, _, rest = name.partition(".")
        if head == parts[0] and rest.split(".")[0] in ("model", "api", "training") and module is not None:
            aliases[rest] = module
    saved = {name: sys.modules.get(name) for name in aliases}
    sys.modules.update(aliases)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def _sha1(path: str | os.PathLike) -> str:
    import hashlib

    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


# ------------------------------------------------------------------ the stage


def _markdown(results: dict) -> str:
    from zhenping.training.evaluate import comparison_table, per_source_table

    models = results["models"]
    data = results["data"]
    lines = [
        "# Baselines",
        "",
        "Generated by `zhenping baselines` from the prepared splits in "
        f"`{data['dir']}`. Scores are in [0, 1] (level / 3); ρ is Spearman's rank "
        "correlation with the gold score, MAE the mean absolute error; template≥2 is "
        "detecting gold template level 2-3 by the template score, hostile is detecting "
        "gold warmth 0 by 1 − warmth (AUROC and average precision, AP).",
        "",
        "Label files: " + ", ".join(f"`{k}` ({v[:10]})" for k, v in data["label_files"].items()) + ".",
        "Rows: " + ", ".join(f"{s} {n:,}" for s, n in data["rows"].items()) + ".",
        "",
    ]
    for split in ("test", "validation"):
        lines += [f"## {split.capitalize()} split", "",
                  comparison_table({name: m[split] for name, m in models.items()}), ""]
    lines += ["## Models", ""]
    lines += [
        "- **rules**: stock-phrase lexicon (`model/lexicon/stock_phrases.txt`), insult and "
        "warm-phrase lexicons (`model/lexicon/tone_phrases.txt`), length, clause and detail "
        "counts, character-repetition and distinct-character ratios and emoji share, combined "
        "by fixed weights; a linear map to [0, 1] per axis fitted on the training split: "
        + ", ".join(
            f"{a} {c['slope']:.3f}·raw{c['intercept']:+.3f}"
            for a, c in models["rules"]["params"]["calibration"].items()
        ) + ".",
        "- **tfidf_ridge**: character "
        f"{models['tfidf_ridge']['params']['ngram_range'][0]}-"
        f"{models['tfidf_ridge']['params']['ngram_range'][1]}-gram TF-IDF "
        f"({models['tfidf_ridge']['params']['features']:,} features, min_df "
        f"{models['tfidf_ridge']['params']['min_df']}, sublinear tf) of the normalised text, "
        "ridge regression per axis on the score, clipped to [0, 1]; alpha chosen by "
        "validation ρ: "
        + ", ".join(f"{a} {v:g}" for a, v in models["tfidf_ridge"]["params"]["alpha"].items())
        + ".",
        "",
    ]
    for name, m in models.items():
        lines += [f"## Per source, test split: {name}", "", per_source_table(m["test"]), ""]
    return "\n".join(lines)


def run_baselines(
    data_dir: str | os.PathLike = "runs/data",
    out: str | os.PathLike = DEFAULT_RESULTS,
    models_dir: str | os.PathLike = DEFAULT_MODELS,
    echo: Callable[[str], None] = print,
    reports: bool = True,
) -> dict:
    """Fit both baselines on the train split, evaluate on validation and test, and
    write ``baselines.json`` and ``baselines.md`` to ``out``.

    Args:
        data_dir: the folder ``zhenping prepare`` wrote.
        out: folder for the committed results.
        models_dir: folder for the fitted models and per-model reports.
        echo: where progress and tables go.
        reports: also write a full :func:`zhenping.training.evaluate.write_report` per
            model and split under ``models_dir``.

    Returns:
        The results written to ``baselines.json``.
    """
    from zhenping.training.evaluate import comparison_table, evaluate, write_report
    from zhenping.training.prepare import load_split, read_manifest, versions

    data = {s: load_split(data_dir, s) for s in ("train", "validation", "test")}
    if len(data["train"]) == 0:
        raise ValueError(f"{data_dir}/train.jsonl has no rows; nothing to fit")
    manifest = read_manifest(data_dir)
    echo("rows: " + ", ".join(f"{s} {len(d):,}" for s, d in data.items()))

    fitted = {
        "rules": RulesBaseline().fit(data["train"].texts, data["train"].scores),
        "tfidf_ridge": TfidfRidgeBaseline().fit(
            data["train"].texts, data["train"].scores,
            data["validation"].texts, data["validation"].scores,
        ),
    }
    models_dir = Path(models_dir)
    fitted["tfidf_ridge"].save(models_dir / "tfidf_ridge.joblib")

    results: dict = {
        "data": {
            "dir": str(data_dir),
            "label_files": manifest.get("label_files", {}),
            "prepared_files": manifest.get("output_files", {}),
            "rows": {s: len(d) for s, d in data.items()},
        },
        "models": {},
        "versions": versions(),
    }
    for name, model in fitted.items():
        entry = {"params": model.params()}
        for split in ("validation", "test"):
            d = data[split]
            if len(d) == 0:
                continue
            pred = model.predict(d.texts)
            metrics = evaluate(d.scores, pred, d.sources)
            entry[split] = metrics
            if reports:
                write_report(metrics, d.scores, pred, models_dir / name / split,
                             f"{name} baseline on {split}")
        results["models"][name] = entry

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "baselines.json").write_text(
        json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    (out / "baselines.md").write_text(_markdown(results), encoding="utf-8")
    for split in ("validation", "test"):
        if all(split in m for m in results["models"].values()):
            echo(f"\n{split}:")
            echo(comparison_table({n: m[split] for n, m in results["models"].items()}))
    echo(f"\nwrote {out / 'baselines.json'}, {out / 'baselines.md'}; models in {models_dir}")
    return results
