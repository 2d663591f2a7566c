"""Request and response bodies of the scoring API.

Axis fields are built from :data:`model.axes.AXES`, the one place the names are
written; the service refuses to start with a model whose axes differ.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, create_model

from model.axes import AXES, LEVELS


class Comment(BaseModel):
    """One comment to score."""

    model_config = ConfigDict(extra="forbid")

    text: StrictStr = Field(description="The comment as posted; any Unicode, may be empty.")
    id: StrictStr | StrictInt | None = Field(None, description="Caller's id, echoed back in the result.")
    author_id: StrictStr | None = Field(None, description="Caller's author id; accepted, not used for scoring.")


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

ScoreResult = create_model(
    "ScoreResult",
    __config__=ConfigDict(extra="forbid"),
    id=(StrictStr | StrictInt | None, Field(None, description="The comment's id as sent, or null.")),
    **{axis: (float, Field(ge=0.0, le=1.0, description=f"{axis} score in [0, 1]")) for axis in AXES},
    levels=(Levels, ...),
)
ScoreResult.__doc__ = "Scores of one comment."


class ScoreResponse(BaseModel):
    """Scores for every comment of the request, ``results[i]`` for ``comments[i]``."""

    model: str = Field(description="The model that scored, as '<model id>@<model version>'.")
    results: list[ScoreResult]  # type: ignore[valid-type]


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: str = Field(description="What was wrong, in words a caller can act on.")
    error_type: str = Field(description="Machine-readable kind, snake_case (e.g. 'queue_full').")


class Limits(BaseModel):
    """Request limits of this server."""

    max_comments: int
    max_chars: int
    max_body_bytes: int


class Batching(BaseModel):
    """How concurrent requests are merged into model batches."""

    max_batch_tokens: int
    max_wait_ms: float
    queue_size: int
    queue_depth: int


class CacheInfo(BaseModel):
    """The score cache."""

    capacity: int
    entries: int
    hits: int
    misses: int


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
    version: str = Field(description="zhenping package version.")


class Status(BaseModel):
    """Liveness and readiness answers."""

    status: str
