"""Feedback routes: corrected levels for a comment, stored for retraining.

``POST /v1/feedback`` takes a comment (its text, its id, or both) and corrected
levels 0-3 for one or more axes, with an optional submitter and note::

    {"text": "默认好评", "id": "c-42", "levels": {"template": 3, "substance": 0},
     "submitter": "moderator-7", "note": "stock phrase"}

The first submission for a comment and submitter answers **201** with the
stored record; a repeat of the same comment (same normalised text, or the same
id when no text is sent) and submitter answers **200** with the same record,
updated: the axes it names are overwritten, the others kept. ``GET
/v1/feedback/stats`` summarises what is stored. Both need the API key when the
service has keys configured. Storage: :mod:`zhenping.api.db`.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError, create_model
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as SATimeoutError

from zhenping.api.auth import require_api_key
from zhenping.api.db import MAX_ID_CHARS, MAX_NOTE_CHARS, FeedbackStore, LazyStore
from zhenping.api.deps import _check_json_content_type, parse_json_body
from zhenping.api.errors import ApiError, validation_message
from zhenping.api.schemas import ErrorBody
from zhenping.model.axes import AXES, LEVELS
from zhenping.model.normalize import normalize_text

logger = logging.getLogger("zhenping.api")

FEEDBACK_PATHS = frozenset({"/v1/feedback", "/v1/feedback/stats"})

CorrectedLevels = create_model(
    "CorrectedLevels",
    __config__=ConfigDict(extra="forbid"),
    **{axis: (StrictInt | None, Field(None, ge=0, le=LEVELS, description=f"corrected {axis} level")) for axis in AXES},
)
CorrectedLevels.__doc__ = f"Corrected levels, integers 0..{LEVELS}; give at least one axis, leave out the others."


class FeedbackRequest(BaseModel):
    """A correction of one comment's levels."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"text": "默认好评", "id": "c-42", "levels": {"template": 3}, "submitter": "moderator-7"}]
        },
    )

    text: StrictStr | None = Field(None, description="The comment as posted. It identifies the comment when given.")
    id: StrictStr | StrictInt | None = Field(
        None, description="Your id of the comment (stored as a string); identifies it when no text is sent."
    )
    levels: CorrectedLevels = Field(description="Corrected levels of one or more axes.")  # type: ignore[valid-type]
    submitter: StrictStr | None = Field(
        None, max_length=MAX_ID_CHARS, description="Who corrected it; one record per comment and submitter."
    )
    note: StrictStr | None = Field(None, max_length=MAX_NOTE_CHARS, description="Free text, e.g. the reason.")


class FeedbackRecordBody(BaseModel):
    """A stored feedback record."""

    feedback_id: int
    text: str | None
    id: str | None
    text_sha256: str | None = Field(description="SHA-256 of the normalised text, the record's key with the submitter.")
    levels: dict[str, int] = Field(description="The corrected axes and their levels.")
    submitter: str | None
    note: str | None
    model_version: str | None = Field(description="The model served when the latest submission arrived.")
    submissions: int = Field(description="How many times this comment was submitted by this submitter.")
    created_at: str
    updated_at: str


class FeedbackStats(BaseModel):
    """What the feedback store holds."""

    count: int = Field(description="Records (one per comment and submitter).")
    comments: int = Field(description="Distinct comments.")
    levels: dict[str, dict[str, int]] = Field(description="Per axis, records per corrected level '0'..'3'.")
    corrected: dict[str, int] = Field(description="Per axis, records that correct it.")
    submitters: int = Field(description="Distinct named submitters.")
    anonymous: int = Field(description="Records without a submitter.")
    first: str | None = Field(description="Time of the first submission (ISO 8601, UTC).")
    last: str | None = Field(description="Time of the latest submission or update.")


_ERRORS = {
    400: "Body is not valid UTF-8 JSON.",
    401: "Missing or invalid API key (when keys are configured).",
    413: "Body larger than max_body_bytes.",
    415: "Content-Type is not application/json.",
    422: "Body does not match the schema, no text and no id, no level, or text longer than max_chars.",
    503: "The feedback database cannot be reached.",
}


def _inline_schema(model: type[BaseModel]) -> dict:
    """The model's JSON schema with its ``$defs`` written in place (the body is parsed by hand, so /docs needs it)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node):
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.rsplit("/", 1)[1]])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(schema)


_REQUEST_SCHEMA = _inline_schema(FeedbackRequest)


def _errors(*codes: int) -> dict:
    return {code: {"model": ErrorBody, "description": _ERRORS[code]} for code in codes}


@asynccontextmanager
async def _lifespan(app: FastAPI):
    store = feedback_store(app)
    logger.info("feedback store: %s", store.location)
    try:
        yield
    finally:
        await asyncio.to_thread(store.close)


router = APIRouter(prefix="/v1/feedback", tags=["feedback"], lifespan=_lifespan,
                   dependencies=[Depends(require_api_key)])


def feedback_store(app: FastAPI) -> LazyStore:
    """The app's feedback store holder, created on first use."""
    holder = getattr(app.state, "feedback_store", None)
    if holder is None:
        holder = app.state.feedback_store = LazyStore()
    return holder


def _unavailable(exc: Exception) -> ApiError:
    logger.error("feedback database error: %s", exc, exc_info=not isinstance(exc, SQLAlchemyError))
    return ApiError(503, "feedback_unavailable", "the feedback database cannot be reached; retry shortly",
                    {"Retry-After": "5"})


async def _run(request: Request, fn):
    """Run ``fn(store)`` off the event loop; an unreachable database becomes 503."""
    holder = feedback_store(request.app)
    try:
        return await asyncio.to_thread(lambda: fn(holder.get()))
    except (OperationalError, InterfaceError, SATimeoutError, OSError) as exc:
        raise _unavailable(exc) from None
    except SQLAlchemyError as exc:
        # Anything else the database refuses (a constraint, a trigger) is a server
        # fault, not a retry: a plain 500. The engine hides statement parameters,
        # so the log names the error without the comment text.
        logger.error("feedback database error: %s", exc)
        raise ApiError(500, "internal", "internal server error") from None


async def read_feedback_request(request: Request) -> FeedbackRequest:
    """Parse and check a feedback body: 415 non-JSON, 400 bad UTF-8 or JSON, 422 naming the field."""
    _check_json_content_type(request)
    doc = parse_json_body(await request.body(), '{"text": "...", "levels": {"warmth": 2}}')
    try:
        body = FeedbackRequest.model_validate(doc)
    except ValidationError as exc:
        raise ApiError(422, "validation_error", validation_message(exc.errors(include_input=False))) from None
    if body.text is None and body.id is None:
        raise ApiError(422, "validation_error", "give the comment's text, its id, or both")
    if not body.levels.model_dump(exclude_none=True):
        raise ApiError(422, "validation_error", f"levels: give a corrected level for at least one of {list(AXES)}")
    max_chars = request.app.state.settings.max_chars
    if body.text is not None:
        if len(body.text) > max_chars:
            raise ApiError(422, "comment_too_long",
                           f"text has {len(body.text)} characters, over the limit of {max_chars}")
        if not normalize_text(body.text):
            raise ApiError(422, "validation_error", "text is empty after normalisation; send the comment as posted")
    if body.id is not None and len(str(body.id)) > MAX_ID_CHARS:
        raise ApiError(422, "validation_error",
                       f"id has {len(str(body.id))} characters, over the limit of {MAX_ID_CHARS}")
    for name in ("text", "id", "submitter", "note"):
        value = getattr(body, name)
        if isinstance(value, str) and "\x00" in value:
            # PostgreSQL text cannot hold NUL; refuse it everywhere so that both databases agree.
            raise ApiError(422, "validation_error", f"{name} contains a NUL character (U+0000)")
    return body


def _served_version(request: Request) -> str | None:
    service = getattr(request.app.state, "service", None)
    return getattr(service, "model_version", None) if service is not None else None


@router.post(
    "",
    response_model=FeedbackRecordBody,
    status_code=201,
    summary="Correct a comment's levels (201 new record, 200 repeat).",
    responses={200: {"model": FeedbackRecordBody, "description": "Repeat for the same comment and submitter: "
                     "the existing record, updated."}, **_errors(400, 401, 413, 415, 422, 503)},
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": _REQUEST_SCHEMA}}}},
)
async def submit_feedback(request: Request, response: Response,
                          body: FeedbackRequest = Depends(read_feedback_request)):
    """Store corrected levels; a repeat for the same comment and submitter updates the record."""
    levels = body.levels.model_dump(exclude_none=True)
    comment_id = None if body.id is None else str(body.id)
    version = _served_version(request)

    def submit(store: FeedbackStore):
        return store.submit(levels=levels, text=body.text, comment_id=comment_id,
                            submitter=body.submitter, note=body.note, model_version=version)

    record, created = await _run(request, submit)
    response.status_code = 201 if created else 200
    return record.as_dict()


@router.get("/stats", response_model=FeedbackStats, summary="Summary of the stored feedback.",
            responses=_errors(401, 503))
async def feedback_stats(request: Request):
    """Counts per axis and level, submitters, first and last submission."""
    return await _run(request, lambda store: store.stats())


