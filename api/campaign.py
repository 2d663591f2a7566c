"""Campaign detection in the service, and ``POST /v1/rank``.

With campaign detection on (``ZHENPING_CAMPAIGN``, the default), each
``/v1/score`` result also carries ``duplicates``, ``template_fused``,
``evidence``, ``action``, ``campaign``, ``cluster``, ``suspicious_likes`` and
``expected_likes``, and the response ``authors`` when comments carry an
``author_id``; the scored comments join the rolling window. ``/v1/rank`` orders
a batch by weighted quality, or with ``order=quality_engagement`` (优质互动榜) by
quality plus discounted likes; it reads the window but adds nothing to it, so
ranking the same batch twice gives the same order.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone

from fastapi import APIRouter, Depends, Request

from zhenping.api.auth import require_api_key
from zhenping.api.batcher import QueueFull, ShuttingDown
from zhenping.api.deps import RankBody, ServiceDep, comment_texts, not_ready_error
from zhenping.api.errors import ApiError
from zhenping.api.schemas import ErrorBody, RankResponse
from zhenping.api.settings import Settings
from zhenping.model.campaign import CampaignConfig, CampaignDetector, CampaignResult, WindowConfig, WindowPass
from zhenping.model.campaign.clusters import SINGLE, rounded
from zhenping.model.campaign.likes import engagement, rank_by_engagement
from zhenping.model.campaign.window import WindowUnavailable
from zhenping.model.ranking import check_weights, quality, rank

logger = logging.getLogger("zhenping.api")

RANK_PATHS = frozenset({"/v1/rank"})


def redacted_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, for logs.

    Example:
        >>> redacted_url("redis://:s3cret@cache:6379/0")
        'redis://:***@cache:6379/0'
    """
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def campaign_config(settings: Settings) -> CampaignConfig:
    """The detector's settings from the service's."""
    return CampaignConfig(
        window=WindowConfig(max_size=settings.dup_window_size, ttl_seconds=settings.dup_ttl_seconds,
                            threshold=settings.dup_threshold, num_perm=settings.dup_num_perm),
        exact_weight=settings.fusion_exact_weight,
        near_weight=settings.fusion_near_weight,
        fold_template=settings.action_fold_template,
        review_template=settings.action_review_template,
        fold_hostile=settings.action_fold_hostile,
        review_hostile=settings.action_review_hostile,
        fold_campaign=settings.action_fold_campaign,
        review_campaign=settings.action_review_campaign,
        copy_fold_copies=settings.action_fold_copies,
        copy_fold_length=settings.action_fold_copy_length,
        copy_fold_authors=settings.action_fold_copy_authors,
        copy_fold_template=settings.action_fold_copy_template,
        likes_margin=settings.likes_margin,
        likes_min=settings.likes_min,
        rank_like_weight=settings.rank_like_weight,
        lexicon_extra=tuple(settings.lexicon_extra),
        authors=settings.author_summaries,
    )


def build_detector(settings: Settings) -> CampaignDetector | None:
    """The service's detector, or ``None`` when campaign detection is off.

    The Redis backend connects on first use; an unreachable Redis answers 503
    on the scoring routes, not a failed start.
    """
    if not settings.campaign:
        return None
    config = campaign_config(settings)
    if settings.dup_backend == "redis":
        from zhenping.model.campaign.redis_store import RedisAuthorStore, RedisStore, redis_client

        client = redis_client(settings.dup_redis_url)
        return CampaignDetector.build(config, window_store=RedisStore(client, settings.dup_redis_prefix),
                                      author_store=RedisAuthorStore(client, settings.dup_redis_prefix))
    return CampaignDetector.build(config)


SINGLE_FIELDS = SINGLE.as_dict()  # the cluster of a comment without copies, shared by every such result


def result_fields(result: CampaignResult, clusters: dict | None = None, times: dict | None = None,
                  out: dict | None = None) -> dict:
    """The campaign fields of one result, in ScoreResult's field order, as the API writes them:
    added to ``out`` (a result's dict, which then holds them after its own fields) when given,
    else in a new dict.

    ``clusters`` remembers, across one request's results, cluster dicts by evidence object (the
    detector hands every comment of a cluster the same evidence) and evidence dicts by evidence
    object (evidence is immutable and shared between comments); ``times``, first-seen times by
    their seconds.
    """
    dup = result.duplicates
    cluster = result.cluster
    if clusters is None:
        clusters = {}
    if times is None:
        times = {}
    if cluster is SINGLE:
        cluster_fields = SINGLE_FIELDS
    else:
        cluster_fields = clusters.get(id(cluster))
        if cluster_fields is None:
            cluster_fields = clusters[id(cluster)] = cluster.as_dict()
    first_seen = times.get(dup.first_seen)
    if first_seen is None:
        first_seen = times[dup.first_seen] = datetime.fromtimestamp(dup.first_seen, tz=timezone.utc)
    evidence = []
    for e in result.evidence:
        fields = clusters.get(id(e))
        if fields is None:
            fields = clusters[id(e)] = e.as_dict()
        evidence.append(fields)
    if out is None:
        out = {}
    out["duplicates"] = {"exact_count": dup.exact_count, "near_count": dup.near_count, "cluster_id": dup.cluster_id,
                         "first_seen": first_seen}
    out["template_fused"] = result.template_fused
    out["evidence"] = evidence
    out["action"] = result.action
    out["campaign"] = result.campaign
    out["cluster"] = cluster_fields
    out["suspicious_likes"] = result.suspicious_likes
    expected = result.expected_likes
    out["expected_likes"] = None if expected is None else rounded(expected, 3)
    return out


def campaign_info(detector: CampaignDetector | None) -> dict | None:
    """``/info``'s ``campaign`` block: where the duplicate window lives and how full it is."""
    if detector is None:
        return None
    window = detector.window
    store = window.store
    try:
        held = len(window)
    except WindowUnavailable:  # a shared window that cannot be reached: /info still answers
        held = None
    return {"store": window.backend, "core": getattr(store, "index", None), "comments_held": held,
            "max_size": window.config.max_size, "ttl_seconds": window.config.ttl_seconds}


def epoch_seconds(when: datetime | None) -> float | None:
    """Seconds since the epoch of a request's ``posted_at``; naive times are UTC."""
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def _retrieve(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()  # a pass whose request went away raises nothing further


async def score_with_window_pass(service, detector: CampaignDetector, normalized: list[str],
                                 comments, record: bool = True) -> tuple[list, WindowPass | None]:
    """The model's scores of ``normalized`` and, while the model runs, the detector's window pass
    (:meth:`CampaignDetector.observe`, adding the comments to the window when ``record``) on a
    worker thread: the pass needs no scores, and runs while the request waits for the model.
    ``None`` for the pass when every score came from the cache (nothing to wait for) or the
    detector's windows are not in this process.

    The scores' texts are queued before the pass starts, so a request refused for a full queue or
    a drain adds nothing to the window; one whose model call fails after that has been recorded.

    Raises:
        QueueFull, ShuttingDown: from the scoring service.
    """
    if not detector.in_process:
        return await service.score_normalized(normalized), None
    scoring = asyncio.ensure_future(service.score_normalized(normalized))
    try:
        await asyncio.sleep(0)  # the scoring task queues its texts, or fails at once (queue full, draining)
        if scoring.done():
            return scoring.result(), None
        observing = asyncio.ensure_future(asyncio.to_thread(detector.observe, normalized, [c.id for c in comments],
                                                            None, record))
        observing.add_done_callback(_retrieve)
        scores = await scoring
        return scores, await observing
    except BaseException:
        scoring.cancel()
        raise


async def campaign_fields(detector: CampaignDetector, comments, normalized, scores,
                          record: bool, into: list[dict] | None = None,
                          observed: WindowPass | None = None) -> tuple[list[dict], list[dict] | None]:
    """Campaign fields per comment and author summaries (``None`` without author ids).

    With ``into`` (one result dict per comment), each comment's fields are added to its
    result dict, and those dicts are returned: no separate dict per comment to merge. With
    ``observed`` (these comments' window pass, :func:`score_with_window_pass`), only the rest
    of the detection runs here.

    Raises:
        ApiError: 503 ``window_unavailable`` when a shared window cannot be reached.
    """
    # The detector's columns straight from the request's comments: no input object per comment.
    columns = (normalized, [c.id for c in comments], [c.author_id for c in comments], [c.likes for c in comments],
               [None if c.posted_at is None else epoch_seconds(c.posted_at) for c in comments])
    try:
        if detector.in_process:
            # Pure CPU under the interpreter lock (the rest of detection after a window pass, about
            # 0.45 ms for 32 comments): a worker thread would not let the event loop run meanwhile,
            # only add a hand-off to every request.
            report = detector.process_columns(*columns, scores, None, record, observed)
        else:  # network round trips to Redis: off the event loop
            report = await asyncio.to_thread(detector.process_columns, *columns, scores, None, record)
    except WindowUnavailable as exc:
        logger.error("%s", exc)
        raise ApiError(503, "window_unavailable",
                       "the duplicate window is unavailable; retry shortly", {"Retry-After": "1"}) from None
    authors = None
    if detector.authors is not None and any(c.author_id is not None for c in comments):
        authors = [a.as_dict() for a in report.authors]
    clusters: dict = {}
    times: dict = {}
    if into is None:
        return [result_fields(r, clusters, times) for r in report.results], authors
    for r, out in zip(report.results, into):
        result_fields(r, clusters, times, out)
    return into, authors


router = APIRouter()


@router.post(
    "/v1/rank",
    response_model=RankResponse,
    response_model_exclude_unset=True,
    summary="Order a batch of comments by weighted quality.",
    dependencies=[Depends(require_api_key)],
    responses={
        code: {"model": ErrorBody, "description": desc}
        for code, desc in {
            400: "Body is not valid UTF-8 JSON.",
            401: "Missing or invalid API key (when keys are configured).",
            413: "Body larger than max_body_bytes, or more than max_comments comments.",
            415: "Content-Type is not application/json.",
            422: "Body does not match the schema, a comment is too long, or the weights are invalid.",
            429: "Scoring queue is full; retry after the Retry-After header's seconds.",
            503: "Model not loaded yet, the server is shutting down, or the duplicate window is unavailable.",
        }.items()
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RankRequest"}}},
        }
    },
)
async def rank_comments(request: Request, service: ServiceDep, body: RankBody):
    """Score the comments and return them best first, with their quality."""
    settings: Settings = request.app.state.settings
    try:
        weights = check_weights(body.weights if body.weights is not None else settings.rank_weights)
    except ValueError as exc:
        raise ApiError(422, "invalid_weights", str(exc)) from None
    detector = request.app.state.campaign
    observed = None
    try:
        texts, cut = comment_texts(body.comments, settings.max_chars)
        normalized = await service.normalize(texts)
        if detector is None:
            scores = await service.score_normalized(normalized)
        else:
            scores, observed = await score_with_window_pass(service, detector, normalized, body.comments,
                                                            record=False)
    except QueueFull as exc:
        raise ApiError(429, "queue_full", str(exc), {"Retry-After": str(exc.retry_after)}) from None
    except ShuttingDown:
        raise not_ready_error(request.app.state) from None
    axes = service.scorer.axes
    results = [{"id": c.id, **{axis: getattr(s, axis) for axis in axes}, "levels": s.levels,
                "truncated": cut_here or bool(getattr(s, "truncated", False))}
               for c, s, cut_here in zip(body.comments, scores, cut)]
    if detector is not None:
        await campaign_fields(detector, body.comments, normalized, scores, record=False, into=results,
                              observed=observed)
    if body.order == "quality_engagement":
        like_weight = settings.rank_like_weight
        qualities = [quality(r, weights) for r in results]
        engaged = [engagement(c.likes, r.get("expected_likes"), r.get("suspicious_likes"),
                              r.get("template_fused", r["template"]), r.get("campaign", 0.0))
                   for c, r in zip(body.comments, results)]
        order = rank_by_engagement(results, qualities, engaged, like_weight)
        return {
            "model": service.model,
            "weights": weights,
            "order": body.order,
            "like_weight": like_weight,
            "results": [{**results[i], "rank": place, "index": i, "quality": qualities[i],
                         "engagement": engaged[i], "order_score": value}
                        for place, (i, value) in enumerate(order, 1)],
        }
    ranked = rank(results, weights)
    return {
        "model": service.model,
        "weights": weights,
        "order": body.order,
        "results": [{**r.comment, "rank": r.rank, "index": r.index, "quality": r.quality} for r in ranked],
    }
