"""Settings of campaign detection, with their defaults in one place.

The fitted numbers come from ``calibration.json`` beside this file: the fusion
weights from ``training/campaign_eval.py`` (gold validation split); the campaign
model, the action thresholds, the likes model and the like weight of the
engagement ordering from ``training/campaign_bench.py`` (the injected-campaign
benchmark's validation seeds). The service's settings default to them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

CALIBRATION_FILE = Path(__file__).resolve().parent / "calibration.json"
COPY_RULE_OFF = {"copies": 0, "length": 0, "authors": 1, "template": 0.0}  # a calibration without the rule


def load_calibration(path: str | Path = CALIBRATION_FILE) -> dict:
    """The fitted fusion weights and action thresholds.

    Raises:
        ValueError: the file is missing a number, naming the file and key.
    """
    path = Path(path)
    doc = json.loads(path.read_text(encoding="utf-8"))
    for section, names in (("fusion", ("exact_weight", "near_weight")),
                           ("actions", ("fold_template", "review_template", "fold_hostile", "review_hostile",
                                        "fold_campaign", "review_campaign")),
                           ("campaign", ("intercept", "min_size")),
                           ("likes", ("intercept", "quality", "log_age", "campaign", "margin", "min_likes",
                                      "default_age_hours")),
                           ("rank", ("like_weight",))):
        for name in names:
            value = doc.get(section, {}).get(name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(f"{path}: {section}.{name} must be a number, got {value!r}")
    rule = doc.get("copy_rule", {})
    for name in ("copies", "length", "authors", "template"):
        value = rule.get(name, COPY_RULE_OFF[name])
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise ValueError(f"{path}: copy_rule.{name} must be a number, got {value!r}")
    doc["copy_rule"] = {**COPY_RULE_OFF, **rule}
    weights = doc["campaign"].get("weights")
    if not isinstance(weights, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in weights.values()):
        raise ValueError(f"{path}: campaign.weights must map feature names to numbers, got {weights!r}")
    return doc


CALIBRATION = load_calibration()


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class WindowConfig:
    """The rolling window of recent comments that duplicates are counted in."""

    max_size: int = 100_000  # comments kept; the oldest leave first
    ttl_seconds: float = 86_400.0  # a comment leaves this long after it was seen; 0: no time limit
    threshold: float = 0.5  # estimated Jaccard similarity of shingle sets that makes a near duplicate
    num_perm: int = 64  # MinHash permutations: more estimate similarity better and cost memory
    shingle: int = 2  # characters per shingle; shorter texts are matched whole
    seed: int = 1  # MinHash seed; every replica sharing a window must use the same

    def __post_init__(self):
        _check(isinstance(self.max_size, int) and self.max_size > 0, f"max_size must be > 0, got {self.max_size!r}")
        _check(self.ttl_seconds >= 0, f"ttl_seconds must be >= 0 (0: no time limit), got {self.ttl_seconds!r}")
        _check(0 < self.threshold <= 1, f"threshold must be in (0, 1], got {self.threshold!r}")
        _check(isinstance(self.num_perm, int) and 8 <= self.num_perm <= 512,
               f"num_perm must be an int in [8, 512], got {self.num_perm!r}")
        _check(isinstance(self.shingle, int) and 1 <= self.shingle <= 10,
               f"shingle must be an int in [1, 10], got {self.shingle!r}")


@dataclass(frozen=True)
class CampaignConfig:
    """Everything :class:`zhenping.model.campaign.CampaignDetector` is built from.

    Example:
        >>> CampaignConfig(window=WindowConfig(max_size=10_000)).window.max_size
        10000
    """

    window: WindowConfig = field(default_factory=WindowConfig)
    exact_weight: float = CALIBRATION["fusion"]["exact_weight"]  # fusion: pull of each exact copy toward 1
    near_weight: float = CALIBRATION["fusion"]["near_weight"]  # fusion: pull of each near copy toward 1
    fold_template: float = CALIBRATION["actions"]["fold_template"]  # fold at template_fused >= this
    review_template: float = CALIBRATION["actions"]["review_template"]  # review at template_fused >= this
    fold_hostile: float = CALIBRATION["actions"]["fold_hostile"]  # fold at 1 - warmth >= this
    review_hostile: float = CALIBRATION["actions"]["review_hostile"]  # review at 1 - warmth >= this
    fold_campaign: float = CALIBRATION["actions"]["fold_campaign"]  # fold at campaign score >= this
    review_campaign: float = CALIBRATION["actions"]["review_campaign"]  # review at campaign score >= this
    copy_fold_copies: int = int(CALIBRATION["copy_rule"]["copies"])  # copy rule: fold at this many exact copies; 0: off
    copy_fold_length: int = int(CALIBRATION["copy_rule"]["length"])  # ... of a text this long (dedup characters)
    copy_fold_authors: int = int(CALIBRATION["copy_rule"]["authors"])  # ... in a cluster of this many authors
    copy_fold_template: float = CALIBRATION["copy_rule"]["template"]  # ... with this mean model template score
    campaign_weights: tuple[tuple[str, float], ...] = tuple(CALIBRATION["campaign"]["weights"].items())  # logistic weights per feature
    campaign_intercept: float = CALIBRATION["campaign"]["intercept"]  # logistic intercept
    campaign_min_size: int = CALIBRATION["campaign"]["min_size"]  # clusters smaller than this score 0
    likes_intercept: float = CALIBRATION["likes"]["intercept"]  # expected log(1 + likes): b0
    likes_quality: float = CALIBRATION["likes"]["quality"]  # ... + b1 * quality
    likes_log_age: float = CALIBRATION["likes"]["log_age"]  # ... + b2 * log(1 + age in hours)
    likes_campaign: float = CALIBRATION["likes"]["campaign"]  # ... + b3 * campaign score
    likes_context: float = CALIBRATION["likes"].get("context", 1.0)  # ... + c * the request's median log(1 + likes)
    likes_margin: float = CALIBRATION["likes"]["margin"]  # suspicious at log(1 + likes) - expected >= this
    likes_min: int = CALIBRATION["likes"]["min_likes"]  # counts below this are never suspicious
    likes_default_age_hours: float = CALIBRATION["likes"]["default_age_hours"]  # age assumed without posted_at
    rank_like_weight: float = CALIBRATION["rank"]["like_weight"]  # quality_engagement: weight of discounted log(1 + likes)
    lexicon_extra: tuple[Path, ...] = ()  # more <category>\t<phrase> files for evidence
    authors: bool = True  # keep per-author summaries over the window
