"""Request and response bodies of the scoring API.

Axis fields are built from :data:`zhenping.model.axes.AXES`, the one place the names are
written; the service refuses to start with a model whose axes differ.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, StrictInt, StrictStr, create_model

from zhenping.model.axes import AXES, LEVELS


class Comment(BaseModel):
    """One comment to score."""

    model_config = ConfigDict(extra="forbid")

    text: StrictStr = Field(description="The comment as posted; any Unicode, may be empty.")
    id: StrictStr | StrictInt | None = Field(None, description="Caller's id, echoed back in the result.")
    author_id: StrictStr | None = Field(
        None, description="Caller's author id: counted in the cluster's distinct authors and author summaries "
                          "(campaign detection); not used by the text model.")
    likes: StrictInt | None = Field(
        None, ge=0, description="The comment's like count, for `suspicious_likes` and the quality_engagement order.")
    posted_at: datetime | None = Field(
        None, description="When the comment was posted (ISO 8601, UTC when no offset is given, or seconds since "
                          "the epoch): its age for the likes check; the time of the request when absent.",
        # The parser takes both forms; the schema says so (pydantic alone would declare the string only).
        json_schema_extra={"anyOf": [{"type": "string", "format": "date-time"}, {"type": "number"},
                                     {"type": "null"}]})


class ScoreRequest(BaseModel):
    """A batch of comments; results come back in the same order."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"comments": [{"text": "谢谢分享,挺有用的", "id": 1}, {"text": "沙发"}]}]},
    )

    comments: list[Comment] = Field(min_length=1, description="One or more comments (the server sets the maximum).")


Levels = create_model(
    "Levels",
    __config__=ConfigDict(extra="forbid"),
    **{axis: (int, Field(ge=0, le=LEVELS)) for axis in AXES},
)
Levels.__doc__ = f"Each axis's nearest level, 0..{LEVELS} (score x {LEVELS}, rounded)."

class Duplicates(BaseModel):
    """The comment's repeats in the rolling window and the request (campaign detection)."""

    exact_count: int = Field(ge=0, description="Other comments with the same text (case and white space aside).")
    near_count: int = Field(ge=0, description="Other comments that are near duplicates but not exact repeats.")
    cluster_id: str = Field(description="16 hex digits naming the cluster of copies; stable across requests.")
    first_seen: datetime = Field(description="When the cluster was first seen (UTC).")


class Evidence(BaseModel):
    """One reason the comment looks templated."""

    kind: Literal["stock_phrase", "ai_marker", "duplicate"]
    category: str = Field(description="Lexicon category ('filler', 'ad', 'buzzword'...), or 'exact' / 'near'.")
    match: str | None = Field(None, description="The matched phrase as normalised; null for duplicates.")
    count: int | None = Field(None, description="Copies, for duplicates; null otherwise.")


class Cluster(BaseModel):
    """The comment's cluster of copies in the rolling window: the campaign score's evidence."""

    size: int = Field(ge=1, description="Comments of the cluster in the window, this one included.")
    authors: int = Field(ge=1, description="Distinct authors among them (a comment without author_id counts "
                                           "as its own author).")
    arrival_rate: float = Field(ge=0, description="Comments per hour since the cluster's oldest comment in the "
                                                  "window (span at least 60 s).")
    span_seconds: float = Field(ge=0, description="Seconds from the cluster's oldest comment in the window to now.")
    template_mean: float = Field(ge=0, le=1, description="Mean text-model template score of the cluster's comments.")
    variants: int = Field(ge=1, description="Distinct texts in the cluster (edited copies make many).")
    author_overlap: float = Field(ge=0, le=1, description="Share of the cluster's authors who also posted into "
                                                          "another cluster of 2+ comments.")


class AuthorSummary(BaseModel):
    """An author's comments in the rolling window, this request included."""

    author_id: str
    comments: int = Field(ge=0)
    template_rate: float = Field(ge=0, le=1, description="Share with a fused template level of 2 or more.")
    duplicate_rate: float = Field(ge=0, le=1, description="Share that had copies when seen.")
    mean_warmth: float = Field(ge=0, le=1)
    mean_substance: float = Field(ge=0, le=1)


ScoreResult = create_model(
    "ScoreResult",
    __config__=ConfigDict(extra="forbid"),
    id=(StrictStr | StrictInt | None, Field(None, description="The comment's id as sent, or null.")),
    **{axis: (float, Field(ge=0.0, le=1.0, description=f"{axis} score in [0, 1]")) for axis in AXES},
    levels=(Levels, ...),
    truncated=(bool, Field(False, description=(
        "True when the model read only the start of the comment: its first max_length tokens "
        "(the model's limit, in /info) of its first max_chars characters (/info limits); the rest was not scored."))),
    # Campaign detection; present unless the server turns it off (ZHENPING_CAMPAIGN=false).
    duplicates=(Duplicates | None, Field(None, description="Repeats of this comment.")),
    template_fused=(float | None, Field(None, ge=0.0, le=1.0,
                                        description="The template score raised by copies of the comment and by "
                                                    "its campaign score; `template` stays the text model's.")),
    evidence=(list[Evidence] | None, Field(None, description="Why the comment looks templated.")),
    action=(Literal["pass", "review", "fold"] | None, Field(
        None, description="Suggested moderation action, from the campaign score, the text template score, "
                          "hostility (1 - warmth) and the copy rule (long exact copies from many accounts fold).")),
    campaign=(float | None, Field(None, ge=0.0, le=1.0,
                                  description="Campaign score in [0, 1]: how much the comment's cluster in the "
                                              "window looks like a copy-paste campaign (size, distinct authors, "
                                              "arrival rate, templated text, author overlap); 0 for clusters "
                                              "under the minimum size.")),
    cluster=(Cluster | None, Field(None, description="The cluster evidence behind the campaign score.")),
    suspicious_likes=(bool | None, Field(
        None, description="The like count is far above what the comment's quality and age predict; null "
                          "without `likes`.")),
    expected_likes=(float | None, Field(None, ge=0.0, description="The like count quality and age predict; "
                                                                   "null without `likes`.")),
)
ScoreResult.__doc__ = "Scores of one comment."


class ScoreResponse(BaseModel):
    """Scores for every comment of the request, ``results[i]`` for ``comments[i]``."""

    model: str = Field(description="The model that scored, as '<model id>@<model version>'.")
    results: list[ScoreResult]  # type: ignore[valid-type]
    authors: list[AuthorSummary] | None = Field(
        None, description="One summary per author_id in the request (campaign detection).")


class RankRequest(BaseModel):
    """A batch of comments to order by weighted quality."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"comments": [{"text": "沙发"}, {"text": "谢谢分享,第三步我也踩过坑"}],
                                         "weights": {"warmth": 1, "substance": 1, "template": -1}}]},
    )

    comments: list[Comment] = Field(min_length=1, description="One or more comments (the server sets the maximum).")
    weights: dict[str, Annotated[float, Strict()]] | None = Field(
        None,
        description="Weight per axis (axes left out weigh 0); the server's default when absent. "
                    "quality = sum(weight x score), with template_fused for template when present.")
    order: Literal["quality", "quality_engagement"] = Field(
        "quality",
        description="`quality`: by weighted quality. `quality_engagement` (优质互动榜): quality + like_weight x "
                    "log(1 + likes), the likes discounted by (1 - template_fused) x (1 - campaign) and a "
                    "suspicious count cut to its expectation.")


RankResult = create_model(
    "RankResult",
    __base__=ScoreResult,
    rank=(int, Field(ge=1, description="1 for the best.")),
    index=(int, Field(ge=0, description="The comment's position in the request.")),
    quality=(float, Field(description="The weighted quality score.")),
    engagement=(float | None, Field(None, description="quality_engagement order: the discounted log(1 + likes) "
                                                      "added to quality, before like_weight.")),
    order_score=(float | None, Field(None, description="quality_engagement order: the value the comments are "
                                                       "ordered by.")),
)
RankResult.__doc__ = "One comment in ranked order, with its scores."


class RankResponse(BaseModel):
    """The comments best first."""

    model: str = Field(description="The model that scored, as '<model id>@<model version>'.")
    weights: dict[str, float] = Field(description="The weights used, one per axis.")
    order: Literal["quality", "quality_engagement"] = Field("quality", description="The ordering used.")
    like_weight: float | None = Field(None, description="quality_engagement order: the weight of engagement.")
    results: list[RankResult]  # type: ignore[valid-type]


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: str = Field(description="What was wrong, in words a caller can act on.")
    error_type: str = Field(description="Machine-readable kind, snake_case (e.g. 'queue_full').")


class Limits(BaseModel):
    """Request limits of this server."""

    max_comments: int
    max_chars: int
    strict_max_chars: bool = Field(description="True: a comment over max_chars is refused (422); false: its first "
                                               "max_chars characters are scored and it is marked truncated.")
    max_body_bytes: int


class Batching(BaseModel):
    """How concurrent requests are merged into model batches."""

    max_batch_tokens: int
    max_pass_tokens: int
    max_wait_ms: float
    inference_workers: int
    threads_per_call: int
    queue_size: int
    queue_depth: int


class CacheInfo(BaseModel):
    """The score cache."""

    capacity: int
    entries: int
    hits: int
    misses: int


class CampaignInfo(BaseModel):
    """Campaign detection's duplicate window."""

    store: str = Field(description="Where the window lives: `memory` (this process) or `redis` (shared).")
    core: str | None = Field(description="For an in-process window: `compiled` (the C core built at install) "
                                         "or `python` (no C compiler at install: the same answers, slower); "
                                         "null for a shared window.")
    comments_held: int | None = Field(description="Comments in the window now; null when a shared window "
                                                  "cannot be reached.")
    max_size: int = Field(description="Comments the window holds at most (ZHENPING_DUP_WINDOW_SIZE).")
    ttl_seconds: float = Field(description="How long a comment stays at most (ZHENPING_DUP_TTL_SECONDS).")


class Info(BaseModel):
    """What this server runs and with which limits."""

    model_id: str
    model_version: str
    axes: list[str]
    level_scale: int
    max_length: int
    normalization: str | None
    backend: str
    auth_required: bool
    limits: Limits
    batching: Batching
    cache: CacheInfo
    campaign: CampaignInfo | None = Field(None, description="Campaign detection's window; null when it is off.")
    version: str = Field(description="zhenping package version.")


class Status(BaseModel):
    """Liveness and readiness answers."""

    status: str
