"""Request dependencies: the loaded service, the settings and the parsed score request."""

from __future__ import annotations

import email.message
import json
from typing import Annotated

from fastapi import Depends, Request
from pydantic import ValidationError

from api.errors import ApiError, validation_message
from api.schemas import RankRequest, ScoreRequest
from api.service import ScoringService
from api.settings import Settings


def get_settings(request: Request) -> Settings:
    """The app's settings."""
    return request.app.state.settings


def not_ready_error(state) -> ApiError:
    """The 503 that explains why the service cannot score now."""
    if state.phase == "draining":
        return ApiError(503, "shutting_down", "server is shutting down; retry on another instance",
                        {"Retry-After": "1"})
    if state.phase == "failed":
        return ApiError(503, "not_ready", f"model failed to load: {state.load_error}")
    return ApiError(503, "not_ready", "model is still loading; retry shortly", {"Retry-After": "1"})


def get_service(request: Request) -> ScoringService:
    """The scoring service, or 503 while the model loads or the server drains."""
    state = request.app.state
    if state.phase != "ready" or state.service is None:
        raise not_ready_error(state)
    return state.service


SettingsDep = Annotated[Settings, Depends(get_settings)]
ServiceDep = Annotated[ScoringService, Depends(get_service)]


def _check_json_content_type(request: Request) -> None:
    value = request.headers.get("content-type")
    if not value:
        raise ApiError(415, "unsupported_media_type", "missing Content-Type; send the body as application/json")
    msg = email.message.Message()
    msg["content-type"] = value
    subtype = msg.get_content_subtype()
    if msg.get_content_maintype() != "application" or not (subtype == "json" or subtype.endswith("+json")):
        raise ApiError(
            415, "unsupported_media_type", f"Content-Type must be application/json, got {msg.get_content_type()!r}"
        )
    charset = msg.get_param("charset")
    if isinstance(charset, str) and charset.lower().replace("_", "-") not in ("utf-8", "utf8"):
        raise ApiError(415, "unsupported_media_type", f"charset must be utf-8, got {charset!r}")


async def read_score_request(request: Request, settings: SettingsDep) -> ScoreRequest:
    """Parse and check a score request body.

    The body is already bounded by ``max_body_bytes`` (see :mod:`api.main`).
    415 for a non-JSON content type, 400 for invalid UTF-8 or JSON, 413 for more
    than ``max_comments`` comments, 422 naming the field for anything else.
    """
    return await read_comments_body(request, settings, ScoreRequest)


async def read_rank_request(request: Request, settings: SettingsDep) -> RankRequest:
    """Parse and check a rank request body, with the same answers as a score request."""
    return await read_comments_body(request, settings, RankRequest)


async def read_comments_body(request: Request, settings: Settings, schema):
    """Parse a body of ``{"comments": [...], ...}`` into ``schema`` (see :func:`read_score_request`)."""
    _check_json_content_type(request)
    raw = await request.body()
    if not raw:
        raise ApiError(400, "empty_body", 'request body is empty; send {"comments": [{"text": "..."}]}')
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(
            400, "invalid_utf8", f"request body is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        ) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError(
            400, "malformed_json", f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    comments = doc.get("comments") if isinstance(doc, dict) else None
    # Counted before validation: an oversized batch is refused without inspecting each item.
    if isinstance(comments, list) and len(comments) > settings.max_comments:
        raise ApiError(
            413,
            "too_many_comments",
            f"{len(comments)} comments in one request; the limit is {settings.max_comments}, split the request",
        )
    try:
        body = schema.model_validate(doc)
    except ValidationError as exc:
        raise ApiError(422, "validation_error", validation_message(exc.errors(include_input=False))) from None
    too_long = [i for i, c in enumerate(body.comments) if len(c.text) > settings.max_chars]
    if too_long:
        shown = ", ".join(f"comments[{i}].text ({len(body.comments[i].text)} characters)" for i in too_long[:5])
        more = f" and {len(too_long) - 5} more" if len(too_long) > 5 else ""
        raise ApiError(
            422,
            "comment_too_long",
            f"{shown}{more} over the limit of {settings.max_chars} characters per comment; shorten or split them",
        )
    return body


ScoreBody = Annotated[ScoreRequest, Depends(read_score_request)]
RankBody = Annotated[RankRequest, Depends(read_rank_request)]
