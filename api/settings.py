"""Service settings, read from ``ZHENPING_*`` environment variables.

Every knob of the scoring service lives here with its default and unit; the
rest of ``api/`` reads them from one :class:`Settings` object.
"""

from __future__ import annotations

import os

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from zhenping.model.campaign.config import CampaignConfig, WindowConfig
from zhenping.model.ranking import DEFAULT_WEIGHTS, check_weights

# The model shipped inside the package (model/default is package data).
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "model" / "default"

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _split_csv(value):
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return list(value)


class Settings(BaseSettings):
    """Configuration of the scoring service.

    Each field is read from ``ZHENPING_<FIELD>`` (case-insensitive), e.g.
    ``ZHENPING_MAX_COMMENTS=64``. Invalid values stop the service at start with
    the field named.

    Example:
        >>> Settings(max_comments=64, api_keys="k1,k2").api_keys
        ['k1', 'k2']
    """

    model_config = SettingsConfigDict(env_prefix="ZHENPING_", extra="ignore", validate_default=True)

    model_dir: Path = DEFAULT_MODEL_DIR  # exported scorer directory to serve
    backend: Literal["auto", "torch", "onnx"] = "auto"  # inference runtime; auto: ONNX Runtime when the model ships an ONNX file
    onnx_fallback: bool = False  # backend=onnx and the ONNX model fails to load: use torch instead of refusing to start
    host: str = "127.0.0.1"  # `zhenping serve` bind address
    port: int = Field(8000, ge=0, le=65535)  # `zhenping serve` port
    max_comments: int = Field(256, gt=0)  # comments per request; more is a 413
    max_length: int = Field(0, ge=0)  # tokens the model reads per comment, [CLS] and [SEP] included; 0: the model's own max_length
    max_chars: int = Field(20000, gt=0)  # characters read per comment (before normalisation); the rest is not scored (truncated: true), or a 422 with strict_max_chars
    strict_max_chars: bool = False  # true: a comment over max_chars is refused (422 comment_too_long) instead of scored on its first max_chars characters
    max_body_bytes: int = Field(1 << 20, gt=0)  # request body bytes, checked before parsing; more is a 413
    max_batch_tokens: int = Field(8192, gt=0)  # tokens per model call (sum over its texts); a larger queue waits
    max_pass_tokens: int = Field(2048, gt=0)  # padded tokens per forward pass (texts x longest); a call's texts are length-sorted into passes
    max_wait_ms: float = Field(0.0, ge=0)  # how long the first queued text waits for others when a worker is idle; 0: score at once (the queue grows while workers are busy)
    queue_size: int = Field(4096, gt=0)  # texts waiting for the model; more is a 429
    cache_size: int = Field(10000, ge=0)  # LRU entries of (model version, normalised text); 0 disables
    gc_young_threshold: int = Field(10000, ge=0)  # objects made (less those freed) between the garbage collector's young passes; 0: the interpreter's own (700)
    api_keys: Annotated[list[str], NoDecode] = []  # comma-separated; empty: no authentication
    cors_origins: Annotated[list[str], NoDecode] = []  # comma-separated origins, or "*"; empty: CORS off
    log_text: bool = False  # false: comment text never appears in logs
    num_threads: int = Field(0, ge=0)  # threads of one model call; 0: cores / inference_workers
    inference_workers: int = Field(0, ge=0)  # model calls at once, each on its own thread; 0: one per core (at most 4)
    log_level: str = "info"  # critical, error, warning, info or debug
    # Campaign detection (duplicates, fused template score, evidence, actions, authors); see model/campaign.
    campaign: bool = True  # false: /v1/score answers the model's scores only, nothing is remembered
    dup_backend: Literal["memory", "redis"] = "memory"  # where the window lives; redis: shared by replicas
    dup_redis_url: str = "redis://127.0.0.1:6379/0"  # Redis of the shared window (dup_backend=redis)
    dup_redis_prefix: str = "zhenping:campaign"  # key prefix in Redis; one prefix, one window
    dup_window_size: int = Field(WindowConfig.max_size, gt=0)  # comments kept in the window; the oldest leave first
    dup_ttl_seconds: float = Field(WindowConfig.ttl_seconds, ge=0)  # seconds a comment stays; 0: no time limit
    dup_threshold: float = Field(WindowConfig.threshold, gt=0, le=1)  # shingle Jaccard similarity of near duplicates
    dup_num_perm: int = Field(WindowConfig.num_perm, ge=8, le=512)  # MinHash permutations
    fusion_exact_weight: float = Field(CampaignConfig.exact_weight, ge=0)  # pull of exact copies on template_fused
    fusion_near_weight: float = Field(CampaignConfig.near_weight, ge=0)  # pull of near copies on template_fused
    action_fold_template: float = Field(CampaignConfig.fold_template, ge=0)  # fold at template_fused >= this; > 1: off
    action_review_template: float = Field(CampaignConfig.review_template, ge=0)  # review at template_fused >= this
    action_fold_hostile: float = Field(CampaignConfig.fold_hostile, ge=0)  # fold at 1 - warmth >= this; > 1: off
    action_review_hostile: float = Field(CampaignConfig.review_hostile, ge=0)  # review at 1 - warmth >= this
    action_fold_campaign: float = Field(CampaignConfig.fold_campaign, ge=0)  # fold at campaign score >= this; > 1: off
    action_review_campaign: float = Field(CampaignConfig.review_campaign, ge=0)  # review at campaign score >= this
    action_fold_copies: int = Field(CampaignConfig.copy_fold_copies, ge=0)  # copy rule: fold at this many exact copies in the window; 0: off
    action_fold_copy_length: int = Field(CampaignConfig.copy_fold_length, ge=0)  # copy rule: of a text at least this long (characters, white space aside, an emoji code one)
    action_fold_copy_authors: int = Field(CampaignConfig.copy_fold_authors, ge=0)  # copy rule: in a cluster of at least this many authors
    action_fold_copy_template: float = Field(CampaignConfig.copy_fold_template, ge=0, le=1)  # copy rule: with at least this mean model template score
    likes_margin: float = Field(CampaignConfig.likes_margin, gt=0)  # suspicious_likes at log(1 + likes) this far above the expected
    likes_min: int = Field(CampaignConfig.likes_min, ge=0)  # like counts below this are never suspicious
    rank_like_weight: float = Field(CampaignConfig.rank_like_weight, ge=0)  # quality_engagement: weight of log(1 + discounted likes)
    lexicon_extra: Annotated[list[Path], NoDecode] = []  # comma-separated extra phrase files for evidence
    author_summaries: bool = True  # per-author summaries when comments carry author_id
    rank_weights: Annotated[dict[str, float], NoDecode] = dict(DEFAULT_WEIGHTS)  # /v1/rank default; "warmth=1,substance=1,template=-1"

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value):
        return _split_csv(value)

    @field_validator("lexicon_extra", mode="before")
    @classmethod
    def _lexicon_files(cls, value):
        paths = [Path(p) for p in _split_csv(value)]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise ValueError(f"lexicon file {missing[0]} does not exist")
        return paths

    @field_validator("rank_weights", mode="before")
    @classmethod
    def _weights(cls, value):
        if isinstance(value, str):
            parsed = {}
            for part in _split_csv(value):
                axis, sep, number = part.partition("=")
                try:
                    parsed[axis.strip()] = float(number)
                except ValueError:
                    raise ValueError(f"expected axis=weight pairs such as 'warmth=1,template=-1', got {part!r}") from None
                if not sep:
                    raise ValueError(f"expected axis=weight pairs such as 'warmth=1,template=-1', got {part!r}")
            value = parsed
        return check_weights(value)

    @field_validator("log_level", mode="before")
    @classmethod
    def _known_level(cls, value):
        level = str(value).strip().lower()
        if level not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
        return level

    @model_validator(mode="after")
    def _queue_holds_a_request(self):
        # A request's texts enter the queue together; a queue smaller than the
        # largest request would turn every full-size request into a 429.
        if self.queue_size < self.max_comments:
            raise ValueError(
                f"queue_size ({self.queue_size}) must be >= max_comments ({self.max_comments}), "
                "otherwise a request of max_comments texts could never be queued"
            )
        return self

    @model_validator(mode="after")
    def _actions_in_order(self):
        for reason in ("template", "hostile", "campaign"):
            review, fold = getattr(self, f"action_review_{reason}"), getattr(self, f"action_fold_{reason}")
            if review > fold:
                raise ValueError(f"action_review_{reason} ({review}) must be <= action_fold_{reason} ({fold}); "
                                 "whatever is folded would otherwise skip review")
        if self.action_fold_copies == 1:
            raise ValueError("action_fold_copies must be 0 (off) or >= 2, got 1: one comment is not a copy")
        return self

    @property
    def workers_and_threads(self) -> tuple[int, int]:
        """``(inference workers, threads per model call)`` with the zeros resolved
        for the cores this process may use (see :meth:`resolve_workers`)."""
        return self.resolve_workers(available_cores())

    def resolve_workers(self, cores: int) -> tuple[int, int]:
        """``(inference workers, threads per model call)`` for ``cores`` cores.

        By default one single-threaded model call per core (at most 4): with
        small batches two one-thread calls keep two cores busier than one
        two-thread call, and the event loop is not starved by a busy thread pool.
        """
        workers = self.inference_workers
        if not workers:
            workers = max(1, min(4, cores // self.num_threads if self.num_threads else cores))
        threads = self.num_threads or max(1, cores // workers)
        return workers, threads

    @property
    def auth_enabled(self) -> bool:
        """Whether scoring routes require an API key."""
        return bool(self.api_keys)
