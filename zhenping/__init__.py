"""zhenping (真评): warmth, substance and template-likeness scores for Chinese comments.

The public Python API, importable under the project's own name::

    >>> from zhenping import Scorer
    >>> scorer = Scorer.from_pretrained()  # the shipped model  # doctest: +SKIP
    >>> scorer.score(["谢谢分享,挺有用的"])[0].levels  # doctest: +SKIP
    {'warmth': 3, 'substance': 1, 'template': 0}

The code lives in three packages: ``model`` (inference: the scorer, the model
store's read side, campaign detection), ``api`` (the HTTP service) and
``training`` (data, training, evaluation, promotion). Imports point one way,
``api → model ← training``; this package re-exports what callers use and holds
the ``zhenping`` command's root (:mod:`zhenping.cli`).
"""

from model.axes import AXES
from model.scorer import DEFAULT_MODEL_DIR, Backend, CommentScores, ModelLoadError, Scorer, parity
from model.store import StoreError, resolve_model_dir

__all__ = [
    "AXES",
    "DEFAULT_MODEL_DIR",
    "Backend",
    "CommentScores",
    "ModelLoadError",
    "Scorer",
    "StoreError",
    "parity",
    "resolve_model_dir",
]
