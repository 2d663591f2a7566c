"""Request dependencies: the loaded service, the settings and the parsed score request."""

from __future__ import annotations

import email.message
import json
import re
import sys
from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic import ValidationError

from zhenping.api.errors import ApiError, format_loc, validation_message
from zhenping.api.schemas import RankRequest, ScoreRequest
from zhenping.api.service import ScoringService
from zhenping.api.settings import Settings


async def get_settings(request: Request) -> Settings:
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


async def get_service(request: Request) -> ScoringService:
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


# JSON escapes can spell UTF-16 surrogates; a lone one is not a Unicode character
# and cannot be written back out (or hashed, or stored) as UTF-8.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def parse_json_body(raw: bytes, example: str) -> Any:
    """Decode a request body as UTF-8 JSON, or raise the 400 that says what is wrong.

    Args:
        raw: the body (already bounded by ``max_body_bytes``).
        example: a minimal valid body, quoted in the answer to an empty one.

    Raises:
        ApiError: 400 ``empty_body``, ``invalid_utf8``, ``malformed_json`` (also
            for nesting deeper than the parser's recursion limit and integers
            over Python's 4,300-digit limit) or ``invalid_unicode`` (a lone
            surrogate escape such as ``\\ud800``).
    """
    if not raw:
        raise ApiError(400, "empty_body", f"request body is empty; send {example}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(
            400, "invalid_utf8", f"request body is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        ) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        reason = exc.msg.removesuffix(" at")  # "Invalid control character at"
        raise ApiError(
            400, "malformed_json", f"request body is not valid JSON: {reason} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise ApiError(400, "malformed_json", "request body is nested too deeply; send a flat JSON object") from None
    except ValueError:  # an integer literal longer than sys.get_int_max_str_digits()
        raise ApiError(
            400, "malformed_json",
            f"request body holds a number with more than {sys.get_int_max_str_digits()} digits",
        ) from None
    if _SURROGATE_ESCAPE.search(text):
        where = _lone_surrogate_at(doc)
        if where is not None:
            raise ApiError(
                400, "invalid_unicode",
                f"{where} holds a lone UTF-16 surrogate escape (\\ud800-\\udfff without its pair); "
                "send whole Unicode characters",
            )
    return doc


def _lone_surrogate_at(doc: Any) -> str | None:
    """Where the first string (key or value) with a lone surrogate is, as ``comments[0].id``; else ``None``."""
    stack: list[tuple[Any, tuple]] = [(doc, ())]
    while stack:  # iterative: the document may be nested as deep as the parser allowed
        node, loc = stack.pop()
        if isinstance(node, str):
            if _LONE_SURROGATE.search(node):
                return format_loc(loc)
        elif isinstance(node, dict):
            for key in node:
                if _LONE_SURROGATE.search(key):
                    return f"a key of {format_loc(loc)}"
            stack.extend(reversed([(value, (*loc, key)) for key, value in node.items()]))
        elif isinstance(node, list):
            stack.extend(reversed([(value, (*loc, i)) for i, value in enumerate(node)]))
    return None


async def read_score_request(request: Request, settings: SettingsDep) -> ScoreRequest:
    """Parse and check a score request body.

    The body is already bounded by ``max_body_bytes`` (see :mod:`zhenping.api.main`).
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
    doc = parse_json_body(await request.body(), '{"comments": [{"text": "..."}]}')
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
    if too_long and settings.strict_max_chars:
        shown = ", ".join(f"comments[{i}].text ({len(body.comments[i].text)} characters)" for i in too_long[:5])
        more = f" and {len(too_long) - 5} more" if len(too_long) > 5 else ""
        raise ApiError(
            422,
            "comment_too_long",
            f"{shown}{more} over the limit of {settings.max_chars} characters per comment; shorten or split them",
        )
    return body


def comment_texts(comments, max_chars: int) -> tuple[list[str], list[bool]]:
    """The text of each comment as scored, and whether it was cut.

    A comment over ``max_chars`` characters (allowed unless ``strict_max_chars``)
    is scored on its first ``max_chars`` characters; the model reads at most its
    ``max_length`` tokens of those anyway.
    """
    texts = [c.text[:max_chars] for c in comments]
    return texts, [len(c.text) > max_chars for c in comments]


ScoreBody = Annotated[ScoreRequest, Depends(read_score_request)]
RankBody = Annotated[RankRequest, Depends(read_rank_request)]
