"""The service's one error body and the handlers that produce it.

Every error response is ``{"error": "<reason a caller can act on>",
"error_type": "<snake_case>"}``. Unexpected exceptions are logged with their
traceback and answered as a plain 500 that reveals nothing internal.
"""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("zhenping.api")

INTERNAL_BODY = {"error": "internal server error", "error_type": "internal"}

# Error types of the plain HTTP errors the router raises itself.
_HTTP_ERROR_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "queue_full",
    503: "not_ready",
}


class ApiError(Exception):
    """An error answered with the service's error body.

    Args:
        status: HTTP status code.
        error_type: snake_case machine-readable kind, e.g. ``"queue_full"``.
        message: what was wrong and, where possible, how to fix it.
        headers: extra response headers (``Retry-After``, ``WWW-Authenticate``).

    Example:
        >>> raise ApiError(413, "too_many_comments", "300 comments sent; the limit is 256")
    """

    def __init__(self, status: int, error_type: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.headers = headers or {}


def error_body(message: str, error_type: str) -> dict[str, str]:
    """The error body as a dict."""
    return {"error": message, "error_type": error_type}


def error_response(status: int, error_type: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """A JSON response carrying the error body."""
    return JSONResponse(error_body(message, error_type), status_code=status, headers=headers)


def format_loc(loc) -> str:
    """``("comments", 3, "text")`` -> ``"comments[3].text"``; the body root is ``"body"``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


MAX_LISTED_ERRORS = 10  # a body with thousands of bad fields gets a short answer, not one line per field


def validation_message(errors) -> str:
    """One line naming each invalid field: ``"comments[0].text: Field required"``.

    At most :data:`MAX_LISTED_ERRORS` are listed, then how many more there are.
    """
    errors = list(errors)
    parts = []
    for err in errors[:MAX_LISTED_ERRORS]:
        loc = list(err.get("loc", ()))
        if loc and loc[0] == "body":
            loc = loc[1:]
        parts.append(f"{format_loc(loc)}: {err.get('msg', 'invalid value')}")
    if len(errors) > MAX_LISTED_ERRORS:
        parts.append(f"and {len(errors) - MAX_LISTED_ERRORS} more")
    return "; ".join(parts) or "invalid request"


async def _api_error_handler(request: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.error_type, exc.message, exc.headers)


async def _http_error_handler(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    status = exc.status_code
    if status == 404:
        message = f"no route {request.url.path}; see /docs for the API"
    elif status == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        message = f"method {request.method} is not allowed on {request.url.path}" + (
            f"; use {allowed}" if allowed else ""
        )
    else:
        message = str(exc.detail)
    return error_response(status, _HTTP_ERROR_TYPES.get(status, "http_error"), message, exc.headers)


async def _validation_error_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    return error_response(422, "validation_error", validation_message(exc.errors()))


def install_error_handlers(app: FastAPI) -> None:
    """Route every handled error through the one error body."""
    app.add_exception_handler(ApiError, _api_error_handler)
    app.add_exception_handler(StarletteHTTPException, _http_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_error_handler)


class CatchAllMiddleware:
    """Answer any unexpected exception with a plain 500 and log its traceback once.

    Sits inside Starlette's own error middleware so that the traceback is logged
    here, once, under the service's logger, and the client sees nothing internal.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            logger.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                # Headers are out; the connection is all that can still be closed.
                raise
            body = json.dumps(INTERNAL_BODY).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})
