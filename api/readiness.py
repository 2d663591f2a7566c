"""What ``/ready`` checks besides the model: the dependencies the scoring path needs.

With ``ZHENPING_DUP_BACKEND=redis`` every ``/v1/score`` call reads and writes
the shared duplicate window in Redis; when Redis cannot be reached, scoring
answers 503 ``window_unavailable``, so ``/ready`` answers 503 too and a load
balancer sends the traffic elsewhere. The check is a Redis ``PING`` with a short
timeout, remembered for :data:`CHECK_TTL` seconds so that frequent probes cost
the Redis server little.
"""

from __future__ import annotations

import asyncio
import logging
import time

logger = logging.getLogger("zhenping.api")

CHECK_TTL = 1.0  # seconds a dependency check's answer is reused
PING_TIMEOUT = 0.5  # seconds to connect to and hear back from Redis


class Dependencies:
    """Checks the service's external dependencies; :meth:`problem` names the first one that is down.

    Args:
        settings: :class:`zhenping.api.settings.Settings`.

    Example:
        >>> deps = Dependencies(Settings(dup_backend="memory"))  # doctest: +SKIP
        >>> asyncio.run(deps.problem()) is None  # doctest: +SKIP
        True
    """

    def __init__(self, settings) -> None:
        self._redis = None
        self._where = None
        if settings.campaign and settings.dup_backend == "redis":
            from zhenping.api.campaign import redacted_url

            self._url = settings.dup_redis_url
            self._where = redacted_url(settings.dup_redis_url)
        self._checked_at = float("-inf")
        self._answer: str | None = None
        self._lock = asyncio.Lock()

    @property
    def names(self) -> list[str]:
        """What is checked (for logs and docs)."""
        return [f"duplicate window (Redis at {self._where})"] if self._where else []

    async def problem(self) -> str | None:
        """``None`` when every dependency answers, else why scoring cannot work now."""
        if self._where is None:
            return None
        async with self._lock:
            if time.monotonic() - self._checked_at >= CHECK_TTL:
                self._answer = await asyncio.to_thread(self._ping)
                self._checked_at = time.monotonic()
            return self._answer

    def _ping(self) -> str | None:
        try:
            if self._redis is None:
                import redis

                self._redis = redis.Redis.from_url(self._url, socket_timeout=PING_TIMEOUT,
                                                   socket_connect_timeout=PING_TIMEOUT)
            self._redis.ping()
        except Exception as exc:  # noqa: BLE001 - any failure means the window cannot be used
            reason = type(exc).__name__ if not str(exc) else str(exc).splitlines()[0]
            logger.warning("readiness: the duplicate window's Redis at %s cannot be reached: %s", self._where, reason)
            return (f"the duplicate window (ZHENPING_DUP_BACKEND=redis) cannot be reached at {self._where}: "
                    f"{reason}; /v1/score answers 503 window_unavailable until it can")
        return None
