"""The zhenping scoring service: app factory, routes and lifecycle.

Run it with ``zhenping serve`` (or ``uvicorn --factory zhenping.api.main:create_app``).
The model loads in the background after the server starts: ``/health`` answers
at once, ``/ready`` and the scoring routes answer 503 until the model is in.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import signal
from collections.abc import Callable
from contextlib import asynccontextmanager
from importlib import metadata
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic_core import to_json
from starlette.types import ASGIApp, Receive, Scope, Send

from zhenping.api.auth import require_api_key
from zhenping.api.batcher import QueueFull, ShuttingDown
from zhenping.api.campaign import RANK_PATHS, build_detector, campaign_fields, campaign_info, score_with_window_pass
from zhenping.api.campaign import router as rank_router
from zhenping.api.deps import ScoreBody, ServiceDep, comment_texts, not_ready_error
from zhenping.api.errors import ApiError, CatchAllMiddleware, install_error_handlers
from zhenping.api.feedback import FEEDBACK_PATHS
from zhenping.api.feedback import router as feedback_router
from zhenping.api.metrics import MetricsMiddleware, ServiceMetrics
from zhenping.api.readiness import Dependencies
from zhenping.api.schemas import ErrorBody as ErrorSchema
from zhenping.api.schemas import Info, RankRequest, ScoreRequest, ScoreResponse, Status
from zhenping.api.service import ModelLoadError, ScoringService, load_scorer
from zhenping.api.settings import Settings
from zhenping.model.axes import LEVELS

logger = logging.getLogger("zhenping.api")

STATIC_DIR = Path(__file__).resolve().parent / "static"

KNOWN_PATHS = frozenset(
    {"/", "/v1/score", "/health", "/ready", "/info", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc",
     "/openapi.json"}
)


def _package_version() -> str:
    try:
        return metadata.version("zhenping")
    except metadata.PackageNotFoundError:
        return "unknown"


def _errors(*codes: int) -> dict:
    return {code: {"model": ErrorSchema, "description": desc} for code, desc in _ERROR_DESCRIPTIONS.items()
            if code in codes}


_ERROR_DESCRIPTIONS = {
    400: "Body is not valid UTF-8 JSON.",
    401: "Missing or invalid API key (when keys are configured).",
    413: "Body larger than max_body_bytes, or more than max_comments comments.",
    415: "Content-Type is not application/json.",
    422: "Body does not match the schema, or (with strict_max_chars) a comment is longer than max_chars.",
    429: "Scoring queue is full; retry after the Retry-After header's seconds.",
    503: "Model not loaded yet, the server is shutting down, or the shared duplicate window is unavailable.",
}


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` before anything parses them.

    A declared ``Content-Length`` over the limit is refused without reading; a
    streamed body is counted as it arrives and refused as soon as it passes the
    limit. Accepted bodies are buffered and handed on unchanged.
    """

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, send: Send) -> None:
        message = (
            f"request body is larger than {self.max_bytes} bytes; send fewer or shorter comments per request"
        )
        body = json.dumps({"error": message, "error_type": "payload_too_large"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1  # the server rejects a malformed length before we see it
                if declared > self.max_bytes:
                    await self._refuse(send)
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def begin_drain(app: FastAPI) -> None:
    """Mark the app as shutting down: ``/ready`` turns 503, queued work finishes without waiting.

    Safe to call from a signal handler.
    """
    state = app.state
    if state.phase in ("ready", "loading"):
        state.phase = "draining"
    state.metrics.ready.set(0)
    if state.service is not None:
        state.service.batcher.begin_drain()


def _raise_sigterm(message: str) -> None:
    # Under uvicorn this starts its graceful shutdown; the process then ends on SIGTERM.
    signal.raise_signal(signal.SIGTERM)


def create_app(
    settings: Settings | None = None,
    scorer=None,
    loader: Callable | None = None,
    on_load_failure: Callable[[str], None] | None = _raise_sigterm,
    load_in_background: bool = True,
) -> FastAPI:
    """Build the service app.

    Args:
        settings: defaults to :class:`Settings` read from the environment.
        scorer: an already loaded scorer; the app is ready as soon as it starts.
        loader: ``settings -> (scorer, backend)`` used in the background when
            ``scorer`` is not given; defaults to :func:`zhenping.api.service.load_scorer`.
        on_load_failure: called with the reason when the background load fails;
            the default stops the server (a server without a model only answers
            503). ``None`` keeps it running with ``/ready`` reporting the failure.
        load_in_background: ``True``: the server answers at once (``/ready``
            503 until the model is in). ``False``: the model loads during
            startup and a failure stops startup; for worker processes behind a
            shared socket, which then take connections only once they can score.

    Returns:
        The FastAPI app; serve it with uvicorn.

    Example:
        >>> app = create_app(Settings(model_dir="model/default"))
        >>> # uvicorn.run(app, port=8000)
    """
    settings = settings or Settings()
    _configure_logging(settings.log_level)
    metrics = ServiceMetrics()
    load = loader or load_scorer

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        task = None
        if scorer is not None:
            await _activate(app, scorer, getattr(scorer, "backend", settings.backend))
        elif not load_in_background:
            logger.info("loading model from %s (backend %s)", settings.model_dir, settings.backend)
            await _activate(app, *await asyncio.to_thread(load, settings))
        else:
            task = asyncio.create_task(_load_in_background(app), name="zhenping-model-load")
        try:
            yield
        finally:
            begin_drain(app)
            if task is not None and not task.done():
                task.cancel()
            if app.state.service is not None:
                await app.state.service.close()
                logger.info("scoring queue drained")
            metrics.close()

    async def _activate(app: FastAPI, loaded, backend: str) -> None:
        service = ScoringService(loaded, settings, metrics, backend=backend)
        await service.start()
        app.state.service = service
        # The libraries and the model leave a few hundred thousand long-lived
        # objects; freezing them keeps the collector's full passes (run every few
        # thousand requests) from walking them all and stalling every request.
        gc.collect()
        gc.freeze()
        # A request makes a few thousand short-lived objects (campaign detection
        # most of them): at the interpreter's 700 a young pass lands in nearly every
        # request; at 10,000 one in about thirty (bench_campaign.py: 0.4 ms less
        # per 32-comment request on average, a young pass of about 1 ms when one runs).
        if settings.gc_young_threshold:
            gc.set_threshold(settings.gc_young_threshold, *gc.get_threshold()[1:])
        if app.state.phase == "loading":
            app.state.phase = "ready"
            metrics.ready.set(1)
        logger.info("model %s ready (backend %s)", service.model, service.backend)

    async def _load_in_background(app: FastAPI) -> None:
        logger.info("loading model from %s (backend %s)", settings.model_dir, settings.backend)
        try:
            loaded, backend = await asyncio.to_thread(load, settings)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported on /ready and stops the server
            reason = str(exc) or type(exc).__name__
            logger.error("model failed to load: %s", reason, exc_info=not isinstance(exc, ModelLoadError))
            app.state.phase = "failed"
            app.state.load_error = reason
            if on_load_failure is not None:
                on_load_failure(reason)
            return
        await _activate(app, loaded, backend)

    app = FastAPI(
        title="zhenping",
        summary="Score Chinese comments for warmth, substance and template-likeness.",
        version=_package_version(),
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc are served below from local files: no internet needed
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.service = None
    app.state.phase = "loading"
    app.state.load_error = None
    app.state.campaign = build_detector(settings)
    app.state.dependencies = Dependencies(settings)
    install_error_handlers(app)
    _add_routes(app)
    app.include_router(feedback_router)
    app.include_router(rank_router)
    app.openapi = lambda: _openapi(app)

    # add_middleware wraps: the last added is the outermost.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(CatchAllMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=metrics, known_paths=KNOWN_PATHS | FEEDBACK_PATHS | RANK_PATHS)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Content-Type", "X-API-Key", "Authorization"],
            expose_headers=["Retry-After"],
        )
    return app


def create_worker_app() -> FastAPI:
    """App factory for ``zhenping serve --workers N``: settings from the
    environment, model loaded before the worker takes connections."""
    return create_app(load_in_background=False)


def _configure_logging(level: str) -> None:
    log = logging.getLogger("zhenping")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(level.upper())


def _add_routes(app: FastAPI) -> None:
    @app.post(
        "/v1/score",
        response_model=ScoreResponse,  # documents the body; the route writes it (campaign fields only when on)
        summary="Score a batch of comments.",
        dependencies=[Depends(require_api_key)],
        responses=_errors(400, 401, 413, 415, 422, 429, 503),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ScoreRequest"}}},
            }
        },
    )
    async def score(request: Request, service: ServiceDep, body: ScoreBody):
        """Score each comment; ``results[i]`` answers ``comments[i]``."""
        settings: Settings = request.app.state.settings
        texts, cut = comment_texts(body.comments, settings.max_chars)
        if settings.log_text:
            logger.info("scoring texts: %r", texts)
        detector = request.app.state.campaign
        observed = None
        try:
            normalized = await service.normalize(texts)
            if detector is None:
                scores = await service.score_normalized(normalized)
            else:
                scores, observed = await score_with_window_pass(service, detector, normalized, body.comments)
        except QueueFull as exc:
            raise ApiError(429, "queue_full", str(exc), {"Retry-After": str(exc.retry_after)}) from None
        except ShuttingDown:
            raise not_ready_error(request.app.state) from None
        axes = service.scorer.axes
        results = [
            {"id": c.id, **{axis: getattr(s, axis) for axis in axes}, "levels": s.levels,
             "truncated": cut_here or bool(getattr(s, "truncated", False))}
            for c, s, cut_here in zip(body.comments, scores, cut)
        ]
        response = {"model": service.model, "results": results}
        if detector is not None:
            _, authors = await campaign_fields(detector, body.comments, normalized, scores, record=True,
                                               into=results, observed=observed)
            if authors is not None:
                response["authors"] = authors
        # Built in ScoreResponse's field order and written by pydantic-core's JSON writer, the one
        # response_model would use, without validating every result into models first: that
        # validation cost more than campaign detection itself (tests hold the two outputs equal).
        return Response(to_json(response), media_type="application/json")

    @app.get("/health", response_model=Status, summary="Liveness: 200 while the process serves HTTP.")
    async def health():
        """Always 200 while the process answers."""
        return {"status": "alive"}

    @app.get("/ready", response_model=Status,
             summary="Readiness: 200 once the model is loaded and every dependency of scoring answers.",
             responses=_errors(503))
    async def ready(request: Request):
        """200 when scoring requests will be served; 503 with the reason otherwise."""
        state = request.app.state
        if state.phase != "ready":
            raise not_ready_error(state)
        problem = await state.dependencies.problem()
        if problem is not None:
            raise ApiError(503, "dependency_unavailable", problem, {"Retry-After": "1"})
        return {"status": "ready"}

    @app.get("/info", response_model=Info, summary="Model, limits and batching of this server.",
             responses=_errors(503))
    async def info(request: Request):
        """What this server runs: model id and version, axes, limits, batching, cache."""
        service = request.app.state.service
        if service is None:
            raise not_ready_error(request.app.state)
        settings: Settings = request.app.state.settings
        scorer = service.scorer
        config = getattr(scorer, "config", {}) or {}
        return {
            "model_id": service.model.rsplit("@", 1)[0],
            "model_version": service.model_version,
            "axes": list(scorer.axes),
            "level_scale": int(config.get("level_scale", LEVELS)),
            "max_length": int(scorer.max_length),
            "normalization": config.get("normalization"),
            "backend": service.backend,
            "auth_required": settings.auth_enabled,
            "limits": {
                "max_comments": settings.max_comments,
                "max_chars": settings.max_chars,
                "strict_max_chars": settings.strict_max_chars,
                "max_body_bytes": settings.max_body_bytes,
            },
            "batching": {
                "max_batch_tokens": settings.max_batch_tokens,
                "max_pass_tokens": settings.max_pass_tokens,
                "max_wait_ms": settings.max_wait_ms,
                "inference_workers": service.batcher.workers,
                "threads_per_call": settings.workers_and_threads[1],
                "queue_size": settings.queue_size,
                "queue_depth": service.batcher.pending,
            },
            "cache": {
                "capacity": service.cache.capacity,
                "entries": len(service.cache),
                "hits": service.cache.hits,
                "misses": service.cache.misses,
            },
            "campaign": campaign_info(request.app.state.campaign),
            "version": _package_version(),
        }

    @app.get("/metrics", summary="Prometheus metrics.", response_class=Response,
             responses={200: {"description": "Prometheus text exposition format.",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}})
    async def metrics(request: Request):
        """Prometheus text exposition of the service's metrics."""
        body, content_type = request.app.state.metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/", include_in_schema=False)
    async def page():
        """The scoring web page."""
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _add_docs(app)


def _add_docs(app: FastAPI) -> None:
    """Swagger UI at /docs and ReDoc at /redoc from the fastapi-offline package's
    files, so that the API docs render on a machine without internet access."""
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html

    try:
        import fastapi_offline
    except ImportError:  # not installed: the pages' files come from FastAPI's default CDN
        swagger: dict[str, str] = {}
        redoc: dict[str, str] = {}
    else:
        folder = Path(fastapi_offline.__file__).resolve().parent / "static"
        app.mount("/docs/assets", StaticFiles(directory=folder), name="docs-assets")
        swagger = {"swagger_js_url": "/docs/assets/swagger-ui-bundle.js",
                   "swagger_css_url": "/docs/assets/swagger-ui.css",
                   "swagger_favicon_url": "/docs/assets/favicon.png"}
        redoc = {"redoc_js_url": "/docs/assets/redoc.standalone.js",
                 "redoc_favicon_url": "/docs/assets/favicon.png", "with_google_fonts": False}

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return get_swagger_ui_html(openapi_url="/openapi.json", title="zhenping API",
                                   oauth2_redirect_url="/docs/oauth2-redirect", **swagger)

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def docs_redirect():
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc_page():
        return get_redoc_html(openapi_url="/openapi.json", title="zhenping API", **redoc)


def _openapi(app: FastAPI) -> dict:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    # The score body is parsed by hand (for exact 400/413/415 answers), so its
    # schema is added here for /docs.
    for body_model in (ScoreRequest, RankRequest):
        request_schema = body_model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in request_schema.pop("$defs", {}).items():
            components.setdefault(name, sub)
        components[body_model.__name__] = request_schema
    app.openapi_schema = schema
    return schema
