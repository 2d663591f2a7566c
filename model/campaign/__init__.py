"""Copy-paste campaigns: what a per-comment scorer cannot see.

The same or nearly the same text posted again and again marks 刷评 and
copy-paste campaigns. This package adds, on top of a scorer's scores:

* :mod:`~zhenping.model.campaign.window`: exact and near-duplicate counts and a stable
  cluster id per comment, over a rolling window of recent comments (MinHash +
  LSH over character shingles), in process or shared through Redis
  (:mod:`~zhenping.model.campaign.redis_store`);
* :mod:`~zhenping.model.campaign.clusters`: per-cluster evidence over the window (size,
  distinct authors, arrival rate, template mean, variants, author overlap) and
  the campaign score built on it;
* :mod:`~zhenping.model.campaign.fusion`: a template score raised by copies;
* :mod:`~zhenping.model.campaign.evidence`: the stock phrases and AI boilerplate markers
  a comment contains;
* :mod:`~zhenping.model.campaign.actions`: a suggested pass / review / fold;
* :mod:`~zhenping.model.campaign.likes`: like counts far above what quality and age
  predict, and the quality-and-engagement ordering;
* :mod:`~zhenping.model.campaign.authors`: per-author summaries over the window.

:class:`CampaignDetector` ties them together for one batch.

Example:
    >>> from zhenping.model.campaign import CampaignConfig, CampaignDetector, CampaignInput
    >>> detector = CampaignDetector.build(CampaignConfig())
    >>> report = detector.process([CampaignInput("加微信领券")] * 2, scorer.score(["加微信领券"] * 2))  # doctest: +SKIP
"""

from zhenping.model.campaign.actions import ACTIONS, ActionPolicy, CopyRule
from zhenping.model.campaign.authors import AuthorSummary, AuthorWindow
from zhenping.model.campaign.clusters import CampaignModel, ClusterEvidence, ClusterWindow
from zhenping.model.campaign.config import CampaignConfig, WindowConfig
from zhenping.model.campaign.detector import CampaignDetector, CampaignInput, CampaignReport, CampaignResult, WindowPass
from zhenping.model.campaign.evidence import Evidence, EvidenceFinder
from zhenping.model.campaign.fusion import Fusion
from zhenping.model.campaign.likes import LikesModel
from zhenping.model.campaign.window import Duplicates, DuplicateWindow, MemoryStore, WindowItem

__all__ = [
    "ACTIONS",
    "ActionPolicy",
    "AuthorSummary",
    "AuthorWindow",
    "CampaignConfig",
    "CampaignModel",
    "CampaignDetector",
    "CampaignInput",
    "CampaignReport",
    "CampaignResult",
    "ClusterEvidence",
    "ClusterWindow",
    "CopyRule",
    "Duplicates",
    "DuplicateWindow",
    "Evidence",
    "EvidenceFinder",
    "Fusion",
    "LikesModel",
    "MemoryStore",
    "WindowConfig",
    "WindowItem",
    "WindowPass",
]
