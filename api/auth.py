"""API-key check for the scoring routes.

Keys come from ``ZHENPING_API_KEYS`` (comma-separated); with none set,
authentication is off. A caller sends its key as ``X-API-Key: <key>`` or
``Authorization: Bearer <key>``. Health, readiness, metrics, info and the web
page never need a key.
"""

from __future__ import annotations

import hmac

from fastapi import Request

from zhenping.api.errors import ApiError

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="zhenping"'}


def presented_key(request: Request) -> str | None:
    """The key a request carries, from ``X-API-Key`` or ``Authorization: Bearer``."""
    key = request.headers.get("x-api-key")
    if key:
        return key.strip()
    auth = request.headers.get("authorization", "")
    scheme, _, credentials = auth.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return None


def key_matches(candidate: str, keys: list[str]) -> bool:
    """Whether ``candidate`` equals one of ``keys``, comparing in constant time.

    Every key is compared, so the time taken does not reveal which one matched.

    Example:
        >>> key_matches("k2", ["k1", "k2"]), key_matches("k3", ["k1", "k2"])
        (True, False)
    """
    given = candidate.encode("utf-8")
    found = False
    for key in keys:
        found |= hmac.compare_digest(given, key.encode("utf-8"))
    return found


async def require_api_key(request: Request) -> None:
    """Dependency of the scoring routes: 401 unless a configured key is presented."""
    keys = request.app.state.settings.api_keys
    if not keys:
        return
    candidate = presented_key(request)
    if candidate is None:
        raise ApiError(
            401,
            "unauthorized",
            "missing API key; send it as 'X-API-Key: <key>' or 'Authorization: Bearer <key>'",
            _CHALLENGE,
        )
    if not key_matches(candidate, keys):
        raise ApiError(401, "unauthorized", "invalid API key", _CHALLENGE)
